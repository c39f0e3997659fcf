"""Curves of a plan over context length, for ``kvcalc plan --plot FILE`` and ``--report FILE``.

Every point is a field of a ``plan()`` result for the same request at another context (or KV
dtype): requests resident at once (``max_sequences``) and the workload's KV bytes per GPU
(``per_gpu_bytes``). The PNG/SVG is drawn by the shared helper ``kvcalc.show.plot.plot_series``,
the HTML report by ``kvcalc.show.svg``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from kvcalc.errors import InvalidRequestError, MissingDependencyError
from kvcalc.planner.plan import Plan, PlanRequest, plan
from kvcalc.show.axes import context_label, context_points


def curve_contexts(req: PlanRequest, result: Plan) -> list[int]:
    """Powers of two from 1k to the longer of the plan's context and the model's maximum, plus both."""
    model_max = req.model.max_position_embeddings
    return context_points(max(result.max_model_len, model_max), extra=(result.max_model_len, model_max))


def _at(req: PlanRequest, length: int, **changes: object) -> Plan:
    return plan(dataclasses.replace(req, max_model_len=length, solve_tp=False, **changes))  # type: ignore[arg-type]


def concurrency_curve(req: PlanRequest, result: Plan) -> list[tuple[int, int]]:
    """(context, requests of that context resident at once per replica), from ``plan().max_sequences``."""
    return [(n, _at(req, n, users=None, batch=None).max_sequences) for n in curve_contexts(req, result)]


def kv_dtype_candidates(result: Plan) -> list[str]:
    """The plan's KV dtype first, then the 16-bit and fp8 alternatives engines offer."""
    return list(dict.fromkeys([result.kv_dtype, "auto", "fp8"]))


def kv_curves(req: PlanRequest, result: Plan) -> tuple[dict[str, list[tuple[int, int]]], list[str]]:
    """Per KV dtype: (context, the workload's KV bytes per GPU) from ``plan().per_gpu_bytes``, the
    workload being the plan's (``--users``, else ``--batch``, else one request). Returns the
    curves by resolved dtype name and the dtypes the engine refused (with why)."""
    curves: dict[str, list[tuple[int, int]]] = {}
    refused: list[str] = []
    for name in kv_dtype_candidates(result):
        try:
            points = [(n, _at(req, n, kv_dtype=name)) for n in curve_contexts(req, result)]
        except InvalidRequestError as exc:
            refused.append(f"{name}: {exc}")
            continue
        resolved = points[0][1].kv_dtype
        curves.setdefault(resolved, [(n, p.per_gpu_bytes) for n, p in points])
    return curves, refused


def plot_plan(req: PlanRequest, result: Plan, path: str | Path) -> Path:
    """Requests resident at once vs context (both axes base 2), the users and ``--max-num-seqs``
    lines, and the model's maximum context and the plan's ``--max-model-len`` marked."""
    import importlib

    try:
        plot_series: Callable[..., Path] = importlib.import_module("kvcalc.show.plot").plot_series
    except ImportError:
        raise MissingDependencyError("kvcalc.show.plot (the plotting helper)", "plot") from None
    curve = concurrency_curve(req, result)
    where = f"{result.gpu_count} x {result.gpu}" if result.gpu else "the given KV budget"
    series = {f"{result.model}, TP {result.tp} on {where} ({result.engine}), per replica":
              [(float(x), float(y)) for x, y in curve]}
    hlines: dict[str, float] = {}
    if result.users:
        hlines[f"{result.users:,} users"] = float(result.users)
    if result.max_num_seqs is not None:
        hlines[f"--max-num-seqs {result.max_num_seqs:,} (the engine runs no more at once)"] = float(result.max_num_seqs)
    model_max = req.model.max_position_embeddings
    vlines = {f"--max-model-len {context_label(result.max_model_len)}": float(result.max_model_len)}
    vlines[f"{result.model} maximum context {model_max:,}"] = float(model_max)
    return plot_series(
        path, title=f"{result.model}: requests resident at once vs context ({result.kv_dtype} KV)",
        xlabel="context per request (tokens, log2)", ylabel="requests resident at once (log2)", series=series,
        hlines=hlines, vlines=vlines, x_log2=True, y_log2=True,
    )
