"""vLLM's profile-run budget terms (kvcalc/engines/activation.py), by hand and against real logs.

Each corpus test names the fixture's source (tests/fixtures/logs/SOURCES.md). The logs are vLLM V0
(0.6.x-0.8): batch ``max(max_model_len, 2048)`` tokens, 256 sequences, the sampler's sort path.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from benchmarks.budget_vs_logs import Row, contains, modelled, rows
from kvcalc.engines.activation import (
    NON_TORCH_TP,
    NON_TORCH_TP1,
    V0_RELEASES,
    forward_bytes_per_token,
    vllm_activation,
    vllm_capture_sizes,
    vllm_cudagraph,
    vllm_non_torch,
    vllm_v0_batched_tokens,
    vllm_v0_profile_terms,
)
from kvcalc.planner.plan import PlanRequest, plan
from kvcalc.registry import load_model
from kvcalc.units import GiB, MiB

LLAMA3_8B_SAMPLER_ELEMENTS = 256 * 128_256  # V0's 256 sampler rows x Llama-3's vocabulary


def test_forward_phase_by_hand() -> None:
    # Llama-3.1-8B (H 4,096, I 14,336, bf16) at 20,000 tokens: best T x 2 x (3H + 3I) =
    # 20,000 x 2 x (12,288 + 43,008) = 2,211,840,000 B; low (2H + 3I): 20,000 x 2 x 51,200 =
    # 2,048,000,000; high (4H + 4I): 20,000 x 2 x 73,728 = 2,949,120,000. The sampler (256 x
    # 128,256 x 40 + 2 x 20,000 x 4,096 x 2 = 1,641,021,440) stays below: the forward dominates.
    t = vllm_activation(load_model("llama-3.1-8b"), tp=1, max_num_batched_tokens=20_000, max_num_seqs=256,
                        dtype="bfloat16", sampler="sort")
    assert (t.low_bytes, t.best_bytes, t.high_bytes) == (2_048_000_000, 2_211_840_000, 2_949_120_000)
    assert "forward MLP" in t.source


def test_forward_shards_the_intermediate_by_tp() -> None:
    # TP 2: I = 7,168 per rank, H stays whole: 2 x (12,288 + 21,504) = 67,584 B per token.
    m = load_model("llama-3.1-8b")
    assert forward_bytes_per_token(m, 2, 2)[1] == 67_584
    # at 20,000 tokens that is 1,351,680,000 B, now below the (unsharded) sampler's 256 x 128,256 x 38
    # + 2 x 20,000 x 4,096 x 2 = 1,575,354,368: TP shrinks the forward, not the sampler.
    t = vllm_activation(m, tp=2, max_num_batched_tokens=20_000, max_num_seqs=256, dtype="bfloat16", sampler="sort")
    assert t.best_bytes == 1_575_354_368 and "sampler" in t.source


def test_sampler_phase_v0_sort_path_by_hand() -> None:
    # Llama-3-8B at 8,192 tokens (V0, vllm#10511's run): sampler best = 256 x 128,256 x (2 + 36) +
    # 2 x 8,192 x 4,096 x 2 = 1,247,674,368 + 134,217,728 = 1,381,892,096 B (1.29 GiB), above the
    # forward's 8,192 x 110,592 = 905,969,664. Logged: 1.26 GiB at TP 1 and at TP 2 (not sharded).
    t = vllm_activation(load_model("llama-3-8b"), tp=1, max_num_batched_tokens=8192, max_num_seqs=256,
                        dtype="bfloat16", sampler="sort")
    assert t.best_bytes == LLAMA3_8B_SAMPLER_ELEMENTS * 38 + 2 * 8192 * 4096 * 2 == 1_381_892_096
    assert t.low_bytes == LLAMA3_8B_SAMPLER_ELEMENTS * 26 + 134_217_728
    assert t.high_bytes == LLAMA3_8B_SAMPLER_ELEMENTS * 46 + 134_217_728
    assert "sampler" in t.source


def test_sampler_phase_v1_triton_path_by_hand() -> None:
    # vLLM 0.20 on an H100: 1,024 sampler rows (max_num_seqs) on the Triton top-k/top-p path:
    # 1,024 x 128,256 x (2 + 12) + 2 x 8,192 x 4,096 x 2 = 1,838,678,016 + 134,217,728 = 1,972,895,744.
    t = vllm_activation(load_model("llama-3-8b"), tp=1, max_num_batched_tokens=8192, max_num_seqs=1024,
                        dtype="bfloat16")
    assert t.best_bytes == 1_972_895_744


def test_moe_uses_experts_intermediate_and_top_k() -> None:
    # DeepSeek-V3 (H 7,168, 8 of 256 experts of I_e 2,048, 3 dense layers of I 18,432), TP 8:
    # routed best 2 x (3 x 7,168 + 8 x (3 x 256 + 7,168)) = 2 x 84,992 = 169,984 B per token;
    # dense 2 x (3 x 7,168 + 3 x 2,304) = 56,832: the routed experts' caches are the peak.
    m = load_model("deepseek-v3")
    assert forward_bytes_per_token(m, 8, 2)[1] == 169_984
    t = vllm_activation(m, tp=8, max_num_batched_tokens=8192, max_num_seqs=1, dtype="bfloat16")
    assert t.best_bytes == 8192 * 169_984  # one sampler row is negligible


def test_non_torch_bounds_by_tp() -> None:
    one, many = vllm_non_torch(1), vllm_non_torch(4)
    assert (one.low_bytes, one.best_bytes, one.high_bytes) == NON_TORCH_TP1
    assert (many.low_bytes, many.best_bytes, many.high_bytes) == NON_TORCH_TP
    # vllm#10511 logged 1.79 GiB at TP 1 and 3.58 at TP 2: the high bounds hold them.
    assert one.high_bytes >= Decimal("1.79") * GiB and many.high_bytes >= Decimal("3.58") * GiB


def test_v0_batch_default() -> None:
    assert (vllm_v0_batched_tokens(1024), vllm_v0_batched_tokens(29_000)) == (2048, 29_000)


def _row(log: str) -> Row:
    (row,) = [r for r in rows() if r.log == log]
    return row


def _gib(n: int) -> Decimal:
    return Decimal(n) / GiB


@pytest.mark.parametrize("log", [
    # vllm-project/vllm PR #10511 (youkaichao, 2024-12-14): vllm serve meta-llama/Meta-Llama-3-8B, H100.
    "vllm_0_6_5_profiling_table_llama3_8b_h100.log",
    # vllm-project/vllm issue #10517 (kaspersiminski): Llama-3.1-8B-Instruct, RTX 3090, --max-model-len 20000.
    "vllm_0_6_4_oneline_llama31_8b_rtx3090_20k.log",
    # same thread, --max-model-len 29000 (the run that fails to fit).
    "vllm_0_6_4_oneline_llama31_8b_rtx3090_29k_fit_error.log",
])
def test_interval_holds_logged_kv_budget(log: str) -> None:
    row = _row(log)
    m = modelled(row)
    assert contains(row, m)
    # and the activation itself: best within 0.05 GiB of the logged figure, inside [low, high].
    logged_act = Decimal(row.activation_gib)
    assert abs(_gib(m.activation[1]) - logged_act) <= Decimal("0.05")
    assert _gib(m.activation[0]) <= logged_act <= _gib(m.activation[2])


@pytest.mark.parametrize("log", [
    # kubernetes-sigs/gateway-api-inference-extension PR #550 (liu-cong): model inferred from the
    # 8 MiB block (Llama-2-7B shape), serve flags not stated (the project serves LoRA adapters).
    "vllm_0_8_v0_gateway_api_h100.log",
    # vllm-project/vllm issue #12330 (Meta-Llama-3-8B on an A100 40GB): the thread's own lines,
    # serve flags not stated.
    "vllm_0_6_6_v0_llama3_8b_a100_40gb_issue12330.log",
])
def test_logs_without_flags_are_outside_the_default_model(log: str) -> None:
    """These logs lack the flags the profile run depends on; their activation (2.38 and 9.37 GiB)
    is several times what the default batch gives, so kvcalc does not claim them: the interval at
    default flags misses, and the benchmark names what is not stated."""
    row = _row(log)
    m = modelled(row)
    assert row.caveat
    assert Decimal(row.activation_gib) > 2 * _gib(m.activation[2])
    assert not contains(row, m)


def test_v0_terms_match_the_benchmark() -> None:
    act, non_torch = vllm_v0_profile_terms(load_model("llama-3.1-8b"), max_model_len=29_000, release="0.6.4")
    # 29,000 x 110,592 = 3,207,168,000 B = 2.987 GiB; logged 17.98 - 14.99 = 2.99 (vllm#10517).
    assert act.best_bytes == 29_000 * 110_592
    # 0.6.4's non-torch best, the middle of its calibration logs (0.15 and 0.47 GiB): 0.31 GiB -> 318 MiB.
    assert non_torch.best_bytes == V0_RELEASES["0.6.4"].tp1.best_bytes == 318 * MiB


def test_plan_default_is_modelled_with_interval_keys() -> None:
    p = plan(PlanRequest(model=load_model("llama-3-8b"), engine="vllm@0.20", gpu="h100", max_model_len=8192))
    act, graphs, non_torch = p.budget_terms
    assert (act["name"], graphs["name"], non_torch["name"]) == ("activation", "cudagraph", "non_torch")
    # the activation row is the activation peak plus the CUDA-graph estimate (vLLM subtracts both)
    assert p.budget["activation_bytes"] == act["best_bytes"] + graphs["best_bytes"]
    assert act["best_bytes"] == 1_972_895_744
    assert p.budget["non_torch_bytes"] == non_torch["best_bytes"] == NON_TORCH_TP1[1]
    assert {t["status"] for t in p.budget_terms} == {"modelled"}
    assert p.kv_budget_bytes_low is not None and p.kv_budget_bytes_high is not None
    assert p.kv_budget_bytes_low < p.kv_budget_bytes < p.kv_budget_bytes_high
    # low = every term high: the best budget less each term's high - best.
    assert p.kv_budget_bytes - p.kv_budget_bytes_low == sum(t["high_bytes"] - t["best_bytes"] for t in p.budget_terms)
    assert p.kv_budget_bytes_high - p.kv_budget_bytes == sum(t["best_bytes"] - t["low_bytes"] for t in p.budget_terms)
    assert p.max_concurrency_low is not None and p.max_concurrency_high is not None
    assert p.max_concurrency_low <= p.max_concurrency <= p.max_concurrency_high
    assert any(n.startswith("budget terms modelled") and "cudagraph" in n for n in p.notes)


def test_plan_pinned_terms() -> None:
    m = load_model("llama-3-8b")
    both = plan(PlanRequest(model=m, engine="vllm@0.20", gpu="h100", max_model_len=8192,
                            activation_bytes=1536 * MiB, non_torch_bytes=512 * MiB))
    assert both.kv_budget_bytes_low is None and both.budget_terms == []
    assert both.budget["activation_bytes"] == 1536 * MiB
    one = plan(PlanRequest(model=m, engine="vllm@0.20", gpu="h100", max_model_len=8192, activation_bytes=GiB))
    act, graphs, non_torch = one.budget_terms
    assert act["status"] == graphs["status"] == "given (--activation-memory)"
    assert one.budget["activation_bytes"] == GiB
    assert non_torch["status"] == "modelled"
    assert one.kv_budget_bytes_high is not None and one.kv_budget_bytes_low is not None
    assert one.kv_budget_bytes_high - one.kv_budget_bytes_low == non_torch["high_bytes"] - non_torch["low_bytes"]


def test_capture_sizes_by_hand() -> None:
    # vllm/config/vllm.py:1469-1521 @ 0.20.0: largest min(2 x 1,024, 512, 8,192) = 512: 1, 2, 4 (3),
    # 8..248 by 8 (31), 256..512 by 16 (17) = 51 sizes; 256 sequences at 2,048 tokens: also 512.
    sizes = vllm_capture_sizes(8192, 1024)
    assert (len(sizes), sizes[:5], sizes[-2:]) == (51, [1, 2, 4, 8, 16], [496, 512])
    assert vllm_capture_sizes(2048, 256)[-1] == 512
    assert vllm_capture_sizes(8192, 4) == [1, 2, 4, 8]  # 2 x 4 sequences


def test_cudagraph_estimate_by_hand() -> None:
    # Llama-3-8B, 51 sizes in 2 modes: best 512 x 110,592 (first capture) + 2 x 50 x 4 MiB =
    # 56,623,104 + 419,430,400 = 476,053,504 B; low 512 x 102,400 + 100 x 1 MiB = 52,428,800 + 104,857,600.
    t = vllm_cudagraph(load_model("llama-3-8b"), tp=1, max_num_batched_tokens=8192, max_num_seqs=1024,
                       dtype="bfloat16")
    assert (t.low_bytes, t.best_bytes) == (157_286_400, 476_053_504)
    assert t.high_bytes == 2 * 512 * 147_456 + 100 * 16 * MiB


def test_fit_error_gives_longest_context_interval() -> None:
    # Llama-3.1-8B at its full 131,072 on vllm#10517's 3090 (23.58 GiB x 0.90) does not fit: the
    # estimated longest context comes as an interval around the best figure.
    total = int(Decimal("23.58") * GiB)
    p = plan(PlanRequest(model=load_model("llama-3.1-8b"), engine="vllm@0.20", gpu_memory_bytes=total,
                         fraction="0.90", max_model_len=131_072))
    assert not p.one_request_fits
    assert p.estimated_max_model_len_low is not None and p.estimated_max_model_len_high is not None
    assert p.estimated_max_model_len is not None
    assert p.estimated_max_model_len_low <= p.estimated_max_model_len <= p.estimated_max_model_len_high


def test_engines_without_a_profile_model_keep_the_assumption() -> None:
    p = plan(PlanRequest(model=load_model("llama-3-8b"), engine="sglang", gpu="h100", max_model_len=8192))
    assert p.kv_budget_bytes_low is None and p.budget_terms == []
    assert any("assumed defaults" in n for n in p.notes)
