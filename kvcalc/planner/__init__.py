"""Capacity planning: GPUs, weights, engine memory budgets, vLLM's block arithmetic, solvers,
a decode roofline and engine log checking. Pure functions over frozen dataclasses; no I/O
beyond reading the shipped catalog and files the user names."""
