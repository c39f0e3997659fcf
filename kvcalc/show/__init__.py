"""Showing the numbers: sweeps over a grid, waste simulations, the cache-speed benchmark, plots."""
