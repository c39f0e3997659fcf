"""The planner's answers as a new user meets them (issue 12, "The planner's answers"), and the
hardening items of issue 14 that live in the planner. Arithmetic in comments."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kvcalc.engines import get_engine
from kvcalc.engines.base import Workload
from kvcalc.errors import InvalidRequestError
from kvcalc.planner.plan import PlanRequest, plan
from kvcalc.registry import get_builtin
from kvcalc.units import GiB, MiB, parse_tokens


def test_fits_answers_the_question_asked_in_table_and_json(cli: Any) -> None:
    # llama-3.1-70b fp8 on 2 x H100, 32k context: one request fits (2 resident per replica), 20
    # users do not: fits is the --users answer, in the JSON and in the table's verdict.
    args = ("plan", "llama-3.1-70b", "--gpu", "h100:2", "--kv-dtype", "fp8", "--context", "32768", "--users", "20")
    data = cli(*args, "--json").json()
    assert (data["fits"], data["users_fit"], data["one_request_fits"]) == (False, False, True)
    assert data["fits_question"] == "all 20 users at 32,768 tokens at once"
    table = cli(*args)
    assert table.exit_code == 0  # a plan that does not fit is an answer
    assert "Serve 20 users x 32,768 tokens per request? NO" in table.stdout
    one = cli("plan", "llama-3.1-70b", "--gpu", "h100:2", "--kv-dtype", "fp8", "--context", "32768", "--json").json()
    assert one["fits"] is True and one["users_fit"] is None and one["one_request_fits"] is True


def test_not_fitting_exits_zero(cli: Any) -> None:
    res = cli("plan", "llama-3-70b", "--gpu", "rtx-4090", "--context", "8192", "--json")
    assert res.exit_code == 0 and res.json()["fits"] is False


@pytest.mark.parametrize(("engine", "kv_dtype", "want"), [
    ("vllm", "auto", "--kv-dtype fp8"),
    ("vllm", "fp8", None),
    ("sglang", "fp8", None),
    ("trtllm", "fp8", None),
    ("llama.cpp", "auto", "--kv-dtype q8_0"),
    ("llama.cpp", "q8_0", "--kv-dtype q4_0"),
    ("llama.cpp", "q4_0", None),
])
def test_cache_dtype_hint_comes_from_the_engine(engine: str, kv_dtype: str, want: str | None) -> None:
    # 70 users of 8k on one 24 GiB GPU do not fit: the hint names a dtype the engine has and that is
    # smaller than the one in use (llama.cpp has no fp8 cache; q8_0 is 1,088 B per 1,024 values,
    # q4_0 576 B).
    p = plan(PlanRequest(model=get_builtin("llama-3-8b"), engine=engine, kv_dtype=kv_dtype, gpu_memory_bytes=24 * GiB,
                         max_model_len=8192, users=70, solve_tp=False))
    assert p.fits is False
    dtype_hints = [h for h in p.hints if h.startswith("--kv-dtype")]
    if want is None:
        assert dtype_hints == []
    else:
        assert len(dtype_hints) == 1 and dtype_hints[0].startswith(want)
    assert not any("fp8" in h for h in dtype_hints if engine == "llama.cpp")


def test_resident_requests_respect_max_num_seqs() -> None:
    # llama-3.1-8b on an H100 at 256 tokens: the KV cache holds 1,788 requests, vLLM runs 256.
    # The subject is the max_num_seqs cap: the budget terms pinned to 1.5 GiB / 0.5 GiB.
    p = plan(PlanRequest(model=get_builtin("llama-3.1-8b"), gpu="h100", max_model_len=256, max_num_seqs=256,
                         engine="vllm@0.20", activation_bytes=1536 * MiB, non_torch_bytes=512 * MiB))
    assert (p.max_sequences, p.max_sequences_by_memory, p.max_running_requests) == (256, 1788, 256)
    assert "--max-num-seqs 256" in p.binding_constraint


def test_headroom_is_after_the_batch() -> None:
    # qwen2.5-7b int4 weights, q4_0 cache, llama.cpp on an RTX 4090: budget 19,093,340,035 B; 4
    # requests of its 131,072-token context: 28 layers x (K + V: 2 x 512 values / 32 x 18 B) =
    # 16,128 B per cell x 131,072 cells x 4 = 8,455,716,864 B; headroom = budget - that =
    # 10,637,623,171 B (it said 64.83 MiB: the pool filled with max_sequences, not --batch 4).
    p = plan(PlanRequest(model=get_builtin("qwen2.5-7b"), gpu="rtx-4090", engine="llama.cpp", kv_dtype="q4_0",
                         weight_dtype="int4", batch=4))
    assert p.per_gpu_bytes == 8_455_716_864
    assert p.headroom_bytes == p.kv_budget_bytes - p.per_gpu_bytes == 10_637_623_171
    assert p.batch_fits is True


def test_users_hint_names_the_context() -> None:
    p = plan(PlanRequest(model=get_builtin("llama-3.1-8b"), gpu="h100", users=20, solve_tp=False))
    assert any(h.startswith("at --max-model-len 131,072 one replica holds") for h in p.hints), p.hints


def test_plan_refuses_more_stages_than_layers() -> None:
    with pytest.raises(InvalidRequestError, match="at most the number of layers"):
        plan(PlanRequest(model=get_builtin("llama-3-8b"), gpu="h100:33", pp=33))


def test_sglang_derived_fraction_that_cannot_work_says_why() -> None:
    # 4,096 GPUs per replica: SGLang's reserve (tp x pp / 8 x 1,024 MiB alone is 524,288 MiB) exceeds
    # the 81,559 MiB GPU, so its derived fraction is negative: the error says so, never blames
    # --mem-fraction-static, which was not given.
    with pytest.raises(InvalidRequestError) as err:
        plan(PlanRequest(model=get_builtin("llama-3-8b"), gpu="h100:4096", engine="sglang"))
    text = str(err.value)
    assert "-5.604" in text and "exceeds the GPU" in text and not text.startswith("--mem-fraction-static")


def test_context_parses_k_suffix(cli: Any) -> None:
    assert parse_tokens("32k") == 32768 and parse_tokens("1m") == 1 << 20 and parse_tokens("4096") == 4096
    a = cli("plan", "llama-2-7b", "--kv-budget", "50GiB", "--context", "4k", "--json").json()
    b = cli("plan", "llama-2-7b", "--kv-budget", "50GiB", "--context", "4096", "--json").json()
    assert a == b
    e = cli("estimate", "llama-2-7b", "--seq-len", "4k", "--json")
    assert json.loads(e.stdout)["seq_len"] == 4096
    bad = cli("plan", "llama-2-7b", "--kv-budget", "50GiB", "--context", "0")
    assert bad.exit_code == 2 and bad.stderr.startswith("Error: --context")


def test_million_layer_plan_is_per_group() -> None:
    """A model of 10**6 layers from two groups: the rank layout holds one spec per stage (its cost
    is in the groups, not the layers), and a byte-pool plan of it is exact: 500,000 sliding layers
    x min(4,096, window 4,096) tokens x 8 heads x 256 x 2 x 2 B on the first stage."""
    from kvcalc.layout import RankLayout
    from kvcalc.models import LayerGroup

    base = get_builtin("gemma-2-9b")
    sliding, full = base.layer_specs[0], base.layer_specs[1]
    big = base.replace(layers=[LayerGroup(pattern=[sliding], repeat=500_000),
                               LayerGroup(pattern=[full], repeat=500_000)])
    lay = RankLayout(big, 1, 2)
    assert [[n for _, n in st.counts] for st in lay.stages] == [[500_000], [500_000]]
    p = plan(PlanRequest(model=big, engine="trtllm", kv_budget_bytes=1 << 50, max_model_len=4096, pp=2))
    assert p.fits and p.per_gpu_bytes == 500_000 * 4096 * 8 * 256 * 2 * 2
    # vLLM: 2 groups of 500,000 layers (one per stage), the sliding layers reserving
    # cdiv(min(4,095 + 8,192, 4,096), 16) + 1 = 257 blocks of 16 tokens on the first stage.
    v = plan(PlanRequest(model=big, kv_budget_bytes=1 << 50, max_model_len=4096, pp=2, engine="vllm@0.20"))
    assert v.vllm is not None and (v.vllm["num_groups"], v.vllm["group_size"]) == (2, 500_000)
    assert v.per_gpu_bytes == 500_000 * 257 * 16 * 8 * 256 * 2 * 2
    assert plan(PlanRequest(model=big, engine="sglang", kv_budget_bytes=1 << 50, max_model_len=4096, pp=2)).fits
    assert p.per_gpu_bytes == get_engine("trtllm").request_bytes(lay, get_engine("trtllm").resolve_kv_dtype(
        "auto", big)[0], Workload(seq_len=4096))


@pytest.mark.parametrize("argv", [
    ["plan", "llama-3-8b", "--gpu", "h100", "--context", "8k"],
    ["plan", "llama-3.1-70b", "--gpu", "h100:2", "--kv-dtype", "fp8", "--context", "32768", "--users", "20", "--json"],
    ["plan", "qwen2.5-7b", "--gpu", "rtx-4090", "--engine", "llama.cpp", "--kv-dtype", "q4_0", "--weight-dtype",
     "int4", "--batch", "4"],
    ["plan", "llama-3-8b", "--gpu", "h100", "--engine", "tensorrt-llm", "--free-gpu-memory-fraction", "0.8"],
    ["plan", "llama-3-8b", "--gpu", "h100", "--engine", "sglang", "--free-gpu-memory-fraction", "0.8"],
    ["plan", "llama-2-7b", "--kv-budget", "-1GiB", "--max-model-len=4096"],
    ["plan", "--config", "tests/fixtures/meta-llama--Llama-3.1-8B.json", "--gpu", "a100-80gb", "--json"],
    ["estimate", "--config", "tests/fixtures/meta-llama--Llama-3.1-8B.json", "--seq-len", "4k"],
    ["estimate", "--config", "tests/fixtures/google--gemma-2-9b.json", "--seq-len", "8192", "--json"],
])
def test_fast_path_matches_typer(cli: Any, monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> None:
    """The lean start-up path (no typer, no pydantic) prints what the typer command prints."""
    import kvcalc.cli.fast as fast_mod

    assert (fast_mod.parse_plan(argv) if argv[0] == "plan" else fast_mod.parse(argv)) is not None
    fast = cli(*argv)
    monkeypatch.setattr(fast_mod, "try_fast", lambda _argv: None)
    monkeypatch.setattr(fast_mod, "try_fast_plan", lambda _argv: None)
    slow = cli(*argv)
    assert (fast.exit_code, fast.stdout, fast.stderr) == (slow.exit_code, slow.stdout, slow.stderr)
