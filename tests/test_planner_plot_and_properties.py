"""`plan --plot` (through the shared plotting helper) and property tests on the planner."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcalc.planner.plan import PlanRequest, plan
from kvcalc.planner.plotting import concurrency_curve, curve_contexts, kv_curves
from kvcalc.registry import get_builtin
from kvcalc.units import GiB, MiB


def test_concurrency_curve_is_monotone() -> None:
    req = PlanRequest(model=get_builtin("llama-2-7b"), kv_budget_bytes=50 * GiB, max_model_len=4096)
    curve = concurrency_curve(req, plan(req))
    # Powers of two from 1k up to the model's maximum (4,096). A block is 16 tokens x 524,288 B =
    # 8 MiB, so 50 GiB is 6,400 blocks, 6,399 usable (one null block): 6,399 // 64 blocks = 99
    # requests at 1k, // 128 = 49 at 2k, // 256 = 24 at 4k.
    assert curve == [(1024, 99), (2048, 49), (4096, 24)]
    # vLLM runs at most max_num_seqs = 256 (kvcalc's default with --kv-budget alone): at 256 tokens the
    # blocks hold 6,399 // 16 = 399 requests, but only 256 run.
    short = plan(dataclasses.replace(req, max_model_len=256))
    assert (short.max_sequences_by_memory, short.max_sequences, short.max_running_requests) == (399, 256, 256)


def test_curves_reach_the_models_maximum_and_mark_the_plans_context() -> None:
    # qwen3-32b stops at 40,960 tokens: a 32k plan is drawn to 40,960 (not past it), both included.
    req = PlanRequest(model=get_builtin("qwen3-32b"), kv_budget_bytes=50 * GiB, max_model_len=32768)
    result = plan(req)
    assert curve_contexts(req, result) == [1024, 2048, 4096, 8192, 16384, 32768, 40960]
    curves, refused = kv_curves(req, result)
    assert refused == [] and list(curves) == ["bf16", "fp8_e4m3"]
    for dtype, points in curves.items():
        for n, per_gpu in points:
            again = plan(PlanRequest(model=req.model, kv_budget_bytes=50 * GiB, max_model_len=n, kv_dtype=dtype,
                                     solve_tp=False))
            assert per_gpu == again.per_gpu_bytes
    # fp8 halves every point (one byte per element instead of two; vLLM blocks round the same way).
    assert [b for _, b in curves["fp8_e4m3"]] == [b // 2 for _, b in curves["bf16"]]


def test_plot_writes_file(tmp_path: Path, cli: Any) -> None:
    pytest.importorskip("kvcalc.show.plot")
    pytest.importorskip("matplotlib")
    out = tmp_path / "plan.png"
    res = cli("plan", "llama-2-7b", "--kv-budget", "50GiB", "--context", "4096", "--users", "8", "--plot", str(out))
    assert res.exit_code == 0, res.stderr
    assert out.exists() and out.stat().st_size > 0


@settings(max_examples=40, deadline=None)
@given(budget_mib=st.integers(min_value=1, max_value=200_000), length=st.integers(min_value=1, max_value=8192),
       model=st.sampled_from(["llama-2-7b", "gemma-2-27b", "mistral-7b-v0.1", "deepseek-v3"]))
def test_max_sequences_fit_and_one_more_does_not(budget_mib: int, length: int, model: str) -> None:
    p = plan(PlanRequest(model=get_builtin(model), kv_budget_bytes=budget_mib * MiB, max_model_len=length,
                         kv_dtype="bf16", solve_tp=False))
    assert p.vllm is not None
    usable = max(p.vllm["num_blocks"] - 1, 0)
    bpr = p.vllm["blocks_per_request"]
    if p.fits:
        n = p.max_sequences_by_memory
        assert n * bpr <= usable < (n + 1) * bpr
        assert p.max_sequences == min(n, p.max_num_seqs or n)
    else:
        assert p.max_sequences == 0


@settings(max_examples=25, deadline=None)
@given(budget_gib=st.integers(min_value=1, max_value=400), tp=st.sampled_from([1, 2, 4, 8]))
def test_more_budget_never_fewer_blocks(budget_gib: int, tp: int) -> None:
    a = plan(PlanRequest(model=get_builtin("llama-3-70b"), kv_budget_bytes=budget_gib * GiB, max_model_len=8192,
                         tp=tp, solve_tp=False))
    b = plan(PlanRequest(model=get_builtin("llama-3-70b"), kv_budget_bytes=(budget_gib + 1) * GiB,
                         max_model_len=8192, tp=tp, solve_tp=False))
    assert (b.num_blocks or 0) >= (a.num_blocks or 0) and b.max_sequences >= a.max_sequences


def test_plot_calls_the_shared_helper_with_its_signature(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          cli: Any) -> None:
    # The helper belongs to another module (kvcalc.show.plot); stand in for it to check the call.
    import sys
    import types

    calls: list[dict[str, Any]] = []

    def plot_series(path: Any, *, title: str, xlabel: str, ylabel: str,
                    series: dict[str, list[tuple[float, float]]], hlines: dict[str, float] | None = None,
                    vlines: dict[str, float] | None = None, x_log2: bool = False, y_log2: bool = False) -> Path:
        calls.append({"path": path, "title": title, "series": series, "hlines": hlines, "vlines": vlines,
                      "log2": (x_log2, y_log2)})
        Path(path).write_text("plot")
        return Path(path)

    fake = types.ModuleType("kvcalc.show.plot")
    fake.plot_series = plot_series  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "kvcalc.show", types.ModuleType("kvcalc.show"))
    monkeypatch.setitem(sys.modules, "kvcalc.show.plot", fake)
    out = tmp_path / "plan.svg"
    res = cli("plan", "llama-2-7b", "--kv-budget", "50GiB", "--context", "4096", "--users", "8", "--plot", str(out))
    assert res.exit_code == 0, res.stderr
    assert out.read_text() == "plot" and len(calls) == 1
    (points,) = calls[0]["series"].values()
    assert points[-1] == (4096.0, 24.0)
    # The users line, and vLLM's cap on running requests (256 with --kv-budget alone), both on a log2 axis.
    assert calls[0]["hlines"] == {"8 users": 8.0, "--max-num-seqs 256 (the engine runs no more at once)": 256.0}
    assert calls[0]["vlines"] == {"--max-model-len 4k": 4096.0, "llama-2-7b maximum context 4,096": 4096.0}
    assert calls[0]["log2"] == (True, True)
