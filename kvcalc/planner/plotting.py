"""``kvcalc plan --plot FILE``: requests resident at once versus context length, for the plan's
deployment, drawn by the shared plotting helper (``kvcalc.show.plot.plot_series``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from kvcalc.errors import MissingDependencyError
from kvcalc.planner.plan import Plan, PlanRequest, plan


def concurrency_curve(req: PlanRequest, max_len: int, points: int = 12) -> list[tuple[int, int]]:
    """(context, requests resident at once) at contexts doubling up to ``max_len``."""
    lengths: list[int] = []
    length = max_len
    while length >= 256 and len(lengths) < points:
        lengths.append(length)
        length //= 2
    out: list[tuple[int, int]] = []
    for n in sorted(lengths):
        sub = dataclasses.replace(req, max_model_len=n, users=None, solve_tp=False, batch=None)
        out.append((n, plan(sub).max_sequences))
    return out


def plot_plan(req: PlanRequest, result: Plan, path: str | Path) -> Path:
    import importlib

    try:
        plot_series: Callable[..., Path] = importlib.import_module("kvcalc.show.plot").plot_series
    except ImportError:
        raise MissingDependencyError("kvcalc.show.plot (the plotting helper)", "plot") from None
    curve = concurrency_curve(req, result.max_model_len)
    series = {f"{result.model}, {result.gpu_count} x {result.gpu or 'GPU'} ({result.engine})":
              [(float(x), float(y)) for x, y in curve]}
    hlines = {f"{result.users} users": float(result.users)} if result.users else None
    written = plot_series(
        path, title=f"{result.model}: requests resident at once vs context ({result.kv_dtype} KV)",
        xlabel="context per request (tokens)", ylabel="requests resident at once", series=series, hlines=hlines,
    )
    return written
