"""Capacity solvers: ``Capacity`` (an engine's pool and what a request costs) lives with the
engines (``kvcalc.engines.capacity``); kept here so older imports keep working."""

from kvcalc.engines.capacity import Capacity, TpOption, smallest_tp  # noqa: F401

__all__ = ["Capacity", "TpOption", "smallest_tp"]
