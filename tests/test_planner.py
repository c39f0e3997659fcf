"""`kvcalc plan`: the issue's "Must show" figures, the JSON contract, the fit error and the
boundary of every solver (N fits, N + 1 does not). Arithmetic in comments."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest

from kvcalc.dtypes import resolve_dtype
from kvcalc.planner.plan import Plan, PlanRequest, plan
from kvcalc.planner.vllm_kv import num_blocks_interval, vllm_kv
from kvcalc.registry import get_builtin
from kvcalc.units import GiB, MiB, parse_size

CONTRACT = ["fits", "kv_budget_bytes", "num_blocks", "kv_cache_tokens", "max_concurrency",
            "estimated_max_model_len", "weights_bytes", "per_gpu_bytes"]


def kv_plan(model: str, budget: int, length: int, **kw: Any) -> Plan:
    kw.setdefault("engine", "vllm@0.20")  # the reference figures follow 0.20's rules (0.34 has 64-token blocks)
    return plan(PlanRequest(model=get_builtin(model), kv_budget_bytes=budget, max_model_len=length, **kw))


# --- reference §8.2: blocks for a 50 GiB KV budget ------------------------------------------

def test_llama2_7b_50gib() -> None:
    # page 16 x 32 heads x 256 x 2 B = 262,144 B per layer; 50 GiB = 53,687,091,200 B
    # // 262,144 // 32 layers = 6,400 blocks; tokens 6,400 // 1 group x 16 = 102,400;
    # concurrency 6,400 / cdiv(4096, 16) = 6,400 / 256 = 25.0.
    p = kv_plan("llama-2-7b", 50 * GiB, 4096)
    assert (p.num_blocks, p.kv_cache_tokens, p.max_concurrency, p.fits) == (6400, 102_400, 25.0, True)
    assert "Maximum concurrency for 4,096 tokens per request: 25.00x" in p.log_lines
    assert "GPU KV cache size: 102,400 tokens" in p.log_lines
    # Resident at once: 6,399 usable blocks (block 0 is the null block) // 256 = 24, not 25.
    assert p.max_sequences == 24


def test_llama3_70b_50gib() -> None:
    # page 16 x 8 x 256 x 2 = 65,536 B; x 80 layers = 5,242,880 B per block; 53,687,091,200 // that = 10,240.
    p = kv_plan("llama-3-70b", 50 * GiB, 8192)
    assert (p.num_blocks, p.kv_cache_tokens) == (10_240, 163_840)
    assert p.max_concurrency == 10_240 / 512 == 20.0


def test_deepseek_v3_block_64_50gib() -> None:
    # MLA page 64 x 576 x 2 = 73,728 B x 61 layers = 4,497,408 B per block; 50 GiB // that = 11,937;
    # tokens 11,937 x 64 = 763,968; concurrency 11,937 / cdiv(163,840, 64) = 11,937 / 2,560.
    p = kv_plan("deepseek-v3", 50 * GiB, 163_840, block_size=64)
    assert (p.num_blocks, p.kv_cache_tokens, p.block_size) == (11_937, 763_968, 64)
    assert p.max_concurrency == 11_937 / 2_560
    # fp8: 36,864 B pages -> 23,874 blocks (reference §8.2).
    assert kv_plan("deepseek-v3", 50 * GiB, 163_840, kv_dtype="fp8").num_blocks == 23_874


def test_gemma2_27b_hybrid_groups() -> None:
    # bf16, 2 groups of 23 (sliding, full), page 131,072: 50 GiB // 131,072 // 23 = 17,808 blocks;
    # blocks per request 512 (full) + (cdiv(min(4095 + 8192, 8192), 16) + 1 = 513) = 1,025.
    p = kv_plan("gemma-2-27b", 50 * GiB, 8192, kv_dtype="bf16")
    assert p.vllm is not None
    assert (p.num_blocks, p.vllm["num_groups"], p.vllm["group_size"]) == (17_808, 2, 23)
    assert p.vllm["blocks_per_request"] == 1025
    # 001cabc1 logs num_blocks // 2 groups x 16 = 142,464 tokens.
    assert p.kv_cache_tokens == 142_464


def test_full_derivation_80gib() -> None:
    # total 80 GiB = 85,899,345,920; ceil(x 0.92) = 79,027,398,247; weights 6,738,415,616 x 2 =
    # 13,476,831,232; activation 1.5 GiB (1,610,612,736) and non-torch 0.5 GiB (536,870,912) ->
    # 63,403,083,367 B (59.05 GiB) // 262,144 // 32 = 7,558 blocks; 120,928 tokens; 7,558 / 256 = 29.52x.
    # The subject is the budget arithmetic, not the activation model: both terms pinned.
    p = plan(PlanRequest(model=get_builtin("llama-2-7b"), gpu_memory_bytes=80 * GiB, max_model_len=4096,
                         engine="vllm@0.20", activation_bytes=1536 * MiB, non_torch_bytes=512 * MiB))
    assert p.budget["requested_bytes"] == 79_027_398_247
    assert p.weights_bytes == 13_476_831_232
    assert p.kv_budget_bytes == 63_403_083_367
    assert (p.num_blocks, p.kv_cache_tokens) == (7_558, 120_928)
    assert p.log_lines == [
        "Available KV cache memory: 59.05 GiB",
        "GPU KV cache size: 120,928 tokens",
        "Maximum concurrency for 4,096 tokens per request: 29.52x",
    ]
    # The same with every overhead stated explicitly.
    q = plan(PlanRequest(model=get_builtin("llama-2-7b"), gpu_memory_bytes=80 * GiB, max_model_len=4096,
                         engine="vllm@0.20", fraction="0.92", activation_bytes=parse_size("1.5GiB"),
                         non_torch_bytes=parse_size("0.5GiB")))
    assert q.kv_budget_bytes == p.kv_budget_bytes


def test_vllm_issue_12330_reproduced() -> None:
    # A100-40GB: total 39.50 GiB x 0.90; weights Llama-3-8B bf16 8,030,261,248 x 2 = 16,060,522,496 B
    # (14.96 GiB as logged); non-torch 0.10 GiB; activation 9.37 GiB. Block = 32 layers x 65,536 = 2 MiB.
    p = plan(PlanRequest(model=get_builtin("llama-3-8b"), gpu="a100-40gb", fraction="0.90", max_model_len=8192,
                         engine="vllm@0.20", activation_bytes=parse_size("9.37GiB"),
                         non_torch_bytes=parse_size("0.10GiB")))
    assert p.weights_bytes == 16_060_522_496
    assert p.vllm is not None and p.vllm["block_bytes"] == 2 * MiB
    assert "Available KV cache memory: 11.12 GiB" in p.log_lines
    assert "Maximum concurrency for 8,192 tokens per request: 11.12x" in p.log_lines
    # The log rounds each input to 0.01 GiB: the budget lies anywhere within +-0.005 GiB of each.
    half = Decimal("0.005")

    def gib(x: str, d: Decimal) -> int:
        return int((Decimal(x) + d) * GiB)

    def budget(d: Decimal) -> int:
        total = gib("39.50", d)
        requested = -(-(total * 9) // 10)
        return requested - gib("14.96", -d) - gib("0.10", -d) - gib("9.37", -d)

    low, high = num_blocks_interval(budget(-half), budget(half), 2 * MiB)
    assert low <= 5691 <= high  # the logged count: 5,683 .. 5,703 allowed
    assert low <= p.num_blocks <= high  # kvcalc's 5,694 from the rounded inputs
    assert f"{5691 / 512:.2f}" == "11.12"  # 5,691 / cdiv(8192, 16) = 11.115 -> "11.12x"


def test_fit_error_one_gib() -> None:
    # Needed 256 blocks x 32 layers x 262,144 B = 2 GiB > 1 GiB; 001cabc1 does not hold the null
    # block back in the check, so the largest length is 1 GiB // (32 x 262,144) = 128 blocks x 16 = 2,048.
    p = kv_plan("llama-2-7b", GiB, 4096)
    assert p.fits is False
    assert p.estimated_max_model_len == 2048
    assert p.reason is not None and "the estimated maximum model length is 2048" in p.reason
    assert "(2.0 GiB KV cache is needed" in p.reason and "(1.0 GiB)" in p.reason
    assert "001cabc1" in p.engine_version


@pytest.mark.parametrize("budget", [0, -5 * GiB])
def test_zero_or_negative_budget_is_an_answer(budget: int) -> None:
    p = kv_plan("llama-2-7b", budget, 4096)
    assert p.fits is False and p.num_blocks == 0 and p.max_sequences == 0
    assert p.reason is not None and p.reason.startswith("No available memory for the cache blocks")


def test_weights_too_big_leaves_negative_budget() -> None:
    # Llama-3-70B bf16 on one 24 GiB GPU: 141 GB of weights -> negative budget, fits false, a hint.
    p = plan(PlanRequest(model=get_builtin("llama-3-70b"), gpu="rtx-4090", max_model_len=8192))
    assert p.kv_budget_bytes < 0 and p.fits is False
    assert any("--gpu-memory-utilization" in h for h in p.hints)


def test_kv_budget_with_unknown_parameters_gives_null_weights() -> None:
    p = kv_plan("nemotron-h-56b", 50 * GiB, 8192)
    assert p.weights_bytes is None and p.fits is True


# --- solver boundaries: N fits, N + 1 does not ------------------------------------------------

def test_boundary_max_sequences() -> None:
    p = kv_plan("llama-3-8b", 7 * GiB, 8192)
    n = p.max_sequences
    usable = p.num_blocks - 1  # type: ignore[operator]
    bpr = p.vllm["blocks_per_request"]  # type: ignore[index]
    assert n * bpr <= usable < (n + 1) * bpr
    assert kv_plan("llama-3-8b", 7 * GiB, 8192, users=n).users_fit is True
    assert kv_plan("llama-3-8b", 7 * GiB, 8192, users=n + 1).users_fit is False


def test_boundary_longest_context_at_batch() -> None:
    p = kv_plan("llama-2-7b", 10 * GiB, 4096, batch=9)
    length = p.longest_context_at_batch
    assert 0 < length < 4096
    assert kv_plan("llama-2-7b", 10 * GiB, length).max_sequences >= 9
    assert kv_plan("llama-2-7b", 10 * GiB, length + 1).max_sequences < 9


def test_boundary_estimated_max_model_len() -> None:
    model = get_builtin("mistral-7b-v0.1")
    dtype = resolve_dtype("auto", model.dtype)
    budget = 300 * MiB
    r = vllm_kv(model.layer_specs, dtype, budget, 32_768)
    n = r.estimated_max_model_len
    assert n is not None and n > 0
    assert vllm_kv(model.layer_specs, dtype, budget, n).fits
    assert not vllm_kv(model.layer_specs, dtype, budget, n + 1).fits


def test_boundary_smallest_tp_for_users() -> None:
    p = plan(PlanRequest(model=get_builtin("llama-3-70b"), gpu="h100:8", kv_dtype="fp8", max_model_len=8192,
                         users=64))
    assert p.min_tp_for_users == 4
    by_tp = {o["tp"]: o["max_sequences"] for o in p.tp_options}
    assert by_tp[4] >= 64 > by_tp[2]
    # Fewest GPUs: TP 4 x 1 replica = 4 (TP 2 needs cdiv(64, 8) = 8 replicas = 16 GPUs).
    assert p.min_gpus_for_users == 4


def test_shared_prefix_saves_blocks() -> None:
    # 2,048-token shared prefix = 128 full blocks stored once: each request needs 256 - 128 = 128
    # more; (6,399 - 128) // 128 = 48 requests instead of 24.
    p = kv_plan("llama-2-7b", 50 * GiB, 4096, shared_prefix_tokens=2048)
    assert p.max_sequences == 48
    assert p.max_sequences_without_prefix_sharing == 24
    # Saving at 48 requests: 47 x 128 blocks x 8 MiB.
    assert p.shared_prefix_saving_bytes == 47 * 128 * 8 * MiB


def test_other_engines() -> None:
    # SGLang: 50 GiB // 524,288 B per token = 102,400 tokens; DeepSeek-V3 // 70,272 = 763,989.
    assert kv_plan("llama-2-7b", 50 * GiB, 4096, engine="sglang").kv_cache_tokens == 102_400
    ds = kv_plan("deepseek-v3", 50 * GiB, 4096, engine="sglang")
    assert ds.kv_cache_tokens == 763_989
    assert ds.max_sequences == 53_687_091_200 // (4096 * 70_272) == 186
    # TRT-LLM: (total - weights - overheads) x 0.9; kvCacheManager.cpp calculateMaxNumBlocks:
    # ceilDiv(floor(bytes / 524,288 B a token), 32 tokens per block).
    t = plan(PlanRequest(model=get_builtin("llama-2-7b"), engine="trtllm", gpu_memory_bytes=80 * GiB,
                         max_model_len=4096))
    free = 80 * GiB - 13_476_831_232 - parse_size("1.5GiB") - parse_size("0.5GiB")
    assert t.kv_budget_bytes == free * 9 // 10
    assert t.num_blocks == -(-(t.kv_budget_bytes // 524_288) // 32)


def test_planner_output_fits_the_budget() -> None:
    # Fed back into the calculator: max_sequences requests of max_model_len fit the KV budget.
    p = kv_plan("qwen2.5-7b", 20 * GiB, 16_384)
    again = kv_plan("qwen2.5-7b", 20 * GiB, 16_384, batch=p.max_sequences, users=p.max_sequences)
    assert again.per_gpu_bytes <= p.kv_budget_bytes
    assert again.users_fit is True


# --- CLI: contract, exit codes, the one screen -------------------------------------------------

def test_cli_json_contract(cli: Any) -> None:
    res = cli("plan", "llama-2-7b", "--kv-budget", "50GiB", "--engine", "vllm@0.20", "--max-model-len", "4096",
              "--json")
    assert res.exit_code == 0, res.stderr
    data = res.json()
    assert list(data)[: len(CONTRACT)] == CONTRACT
    core = kv_plan("llama-2-7b", 50 * GiB, 4096)
    assert data == core.to_dict()
    assert isinstance(data["num_blocks"], int) and data["max_concurrency"] == 25.0


def test_cli_does_not_fit_exits_zero(cli: Any) -> None:
    res = cli("plan", "llama-2-7b", "--kv-budget", "1GiB", "--context", "4096", "--json", "--engine", "vllm@0.20")
    assert res.exit_code == 0
    assert res.json()["fits"] is False and res.json()["estimated_max_model_len"] == 2048


def test_cli_aliases(cli: Any) -> None:
    a = cli("plan", "llama-3-70b", "--gpu", "h100:4", "--kv-cache-dtype", "fp8", "-tp", "4",
            "--max-model-len", "8192", "--json").json()
    b = cli("plan", "llama-3-70b", "--gpu", "h100:4", "--kv-dtype", "fp8", "--tensor-parallel-size", "4",
            "--context", "8192", "--json").json()
    assert a == b and a["tp"] == 4 and a["max_num_batched_tokens"] == 8192


def test_cli_newcomer_screen(cli: Any) -> None:
    res = cli("plan", "llama-3-70b", "--gpu", "h100:4", "--kv-dtype", "fp8", "--context", "8192", "--users", "64",
              "--engine", "vllm@0.20")
    assert res.exit_code == 0, res.stderr
    out = res.stdout
    core = plan(PlanRequest(model=get_builtin("llama-3-70b"), gpu="h100:4", kv_dtype="fp8", max_model_len=8192,
                            users=64, engine="vllm@0.20"))
    assert "Serve 64 users x 8,192 tokens per request? YES" in out
    assert f"{core.num_blocks:,}" in out and f"{core.max_concurrency:.2f}x" in out
    assert "--gpu-memory-utilization 0.92" in out and "--max-num-batched-tokens" in out
    assert len(out.splitlines()) <= 50


def test_cli_errors_leave_stdout_empty(cli: Any) -> None:
    for args in (["plan", "llama-2-7b"], ["plan", "llama-2-7b", "--gpu", "h10"],
                 ["plan", "llama-2-7b", "--gpu", "h100", "--mem-fraction-static", "0.8"]):
        res = cli(*args)
        assert res.exit_code != 0 and res.stdout == "" and res.stderr.startswith("Error:")


def test_plan_request_is_frozen() -> None:
    req = PlanRequest(model=get_builtin("llama-2-7b"), kv_budget_bytes=GiB)
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.engine = "sglang"  # type: ignore[misc]


@pytest.mark.parametrize(("model", "tp", "length"), [("llama-3-70b", 4, 8192), ("gemma-2-27b", 1, 8192),
                                                      ("deepseek-v3", 8, 4096), ("mistral-7b-v0.1", 2, 32_768)])
def test_plan_and_estimate_share_vllm_reservation(model: str, tp: int, length: int) -> None:
    # One implementation of vLLM's per-request reservation: plan's per_gpu_bytes for 3 users is
    # `estimate --engine vllm --batch 3`'s per_gpu_bytes.
    from kvcalc.estimate import estimate

    p = plan(PlanRequest(model=get_builtin(model), kv_budget_bytes=60 * GiB, max_model_len=length, tp=tp, users=3,
                         solve_tp=False))
    est = estimate(get_builtin(model), length, 3, engine="vllm", tp=tp)
    assert p.per_gpu_bytes == est.per_gpu_bytes


def test_cli_fit_error_screen_names_the_flag(cli: Any) -> None:
    res = cli("plan", "llama-2-7b", "--kv-budget", "1GiB", "--context", "4096", "--engine", "vllm@0.20")
    assert res.exit_code == 0
    assert "fit? NO" in res.stdout
    flat = " ".join(res.stdout.split())  # the console wraps long lines
    assert "estimated maximum model length is 2048" in flat
    assert "Try: lower --max-model-len to 2,048" in flat


def test_users_need_more_gpus_hint(cli: Any) -> None:
    # Llama-3-70B bf16 (141 GB) on 24 GiB cards: no KV at TP 1; the search finds TP 8.
    p = plan(PlanRequest(model=get_builtin("llama-3-70b"), gpu="rtx-4090", max_model_len=8192, users=10))
    assert p.fits is False and p.users_fit is False and p.min_tp_for_users == 8
    assert "--tp 8 serves all users in one replica" in p.hints
    by_tp = {o["tp"]: o["max_sequences"] for o in p.tp_options}
    assert by_tp[8] >= 10 > by_tp[4]


# --- SGLang's default mem_fraction_static (0.5.23 memory_hook.py) -----------------------------

@pytest.mark.parametrize("gpu_mem,tp,pp,mla,name,want", [
    # H100 80GB (nvidia-smi 81,559 MiB), tp 1: chunk 8192, decode max_bs 256, prefill graph sizes
    # for max_bs 8192: 8 + 14 + 8 + 8 + 12 + 8 = 58. reserved = 512 + 8192 x 1.5 (12,288)
    # + 1/8 x 1024 (128) + 256 x 2 (512) + 58 x 8 (464) = 13,904 MiB;
    # (81,559 - 13,904) / 81,559 = 0.82952 -> 0.83.
    (81_559, 1, 1, False, "llama-3-8b", "0.83"),
    # tp 4: max_bs 512, + 4/8 x 1024: 512 + 12,288 + 512 + 1,024 + 464 = 14,800 -> 0.81853 -> 0.819.
    (81_559, 4, 1, False, "llama-3-8b", "0.819"),
    # A100 40GB (40,960 MiB): chunk 4096, max_bs 32, 50 prefill sizes, no 10 GiB floor (not > 60 GiB):
    # 512 + 6,144 + 128 + 64 + 400 = 7,248 -> 33,712 / 40,960 = 0.82305 -> 0.823.
    (40_960, 1, 1, False, "llama-3-8b", "0.823"),
    # RTX 4090 (24,564 MiB): chunk 4096, max_bs 48: 512 + 6,144 + 128 + 96 + 400 = 7,280 -> 0.70363 -> 0.704.
    (24_564, 1, 1, False, "llama-3-8b", "0.704"),
    # H200 (143,771 MiB) tp 8: 512 + 12,288 + 1,024 + 1,024 + 464 = 15,312 -> 128,459 / 143,771 = 0.89350
    # (0.893497...) -> 0.893.
    (143_771, 8, 1, False, "llama-3-70b", "0.893"),
    # MLA: the prefill graph term is a flat 1.5 GiB: 512 + 12,288 + 128 + 512 + 1,536 = 14,976 -> 0.81638.
    (81_559, 1, 1, True, "deepseek-v3", "0.816"),
    # A "llama-2" model path caps the prefill graph at 4096 tokens: 50 sizes: 13,840 -> 0.83030 -> 0.83.
    (81_559, 1, 1, False, "llama-2-7b", "0.83"),
    # PP 2 turns the prefill graph off: 512 + 12,288 + 256 + 512 = 13,568 -> 0.83364 -> 0.834.
    (81_559, 1, 2, False, "llama-3-8b", "0.834"),
    # T4 (15,360 MiB): chunk 2048, max_bs 8, 42 sizes: 512 + 3,072 + 128 + 16 + 336 = 4,064 -> 0.73542 -> 0.735.
    (15_360, 1, 1, False, "llama-3-8b", "0.735"),
    # B200 (183,359 MiB): chunk 16,384, max_bs 512, 74 sizes: 512 + 24,576 + 128 + 1,024 + 592 = 26,832
    # -> 0.85366 -> 0.854.
    (183_359, 1, 1, False, "llama-3-8b", "0.854"),
])
def test_sglang_default_mem_fraction_static(gpu_mem: int, tp: int, pp: int, mla: bool, name: str,
                                            want: str) -> None:
    from kvcalc.planner.budget import sglang_default_fraction

    assert sglang_default_fraction(gpu_mem, tp=tp, pp=pp, mla=mla, model_name=name)[0] == want


def test_sglang_plan_uses_its_default_and_says_how() -> None:
    # H100 (usable 85,029,615,042 B as torch sees it) with SGLang's default 0.83 for its nvidia-smi
    # 81,559 MiB: (85,029,615,042 - 536,870,912 non-torch) x 0.83 = 70,128,977,627.9 -> floor
    # 70,128,977,627; - 16,060,522,496 (8,030,261,248 params x 2) = 54,068,455,131 B of KV;
    # // 131,072 B per token (32 x 8 x 128 x 2 x 2) = 412,509 tokens.
    p = plan(PlanRequest(model=get_builtin("llama-3-8b"), gpu="h100", engine="sglang", max_model_len=8192))
    assert p.budget["fraction"] == "0.83"
    assert p.kv_budget_bytes == 54_068_455_131 and p.kv_cache_tokens == 412_509
    assert any("13,904 MiB" in n and "= 0.83" in n for n in p.notes)
    given = plan(PlanRequest(model=get_builtin("llama-3-8b"), gpu="h100", engine="sglang", max_model_len=8192,
                             fraction="0.88"))
    assert given.budget["fraction"] == "0.88" and not any("mem-fraction-static not given" in n for n in given.notes)


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm", "llama.cpp", "hf"])
def test_memory_table_rows_add_up(cli: Any, engine: str) -> None:
    """The 'Memory per GPU' rows are in the order the engine applies them, so reading down the
    column with each row's operator gives the budget (to the byte, fractions floored/ceiled as the
    engine does)."""
    import re

    res = cli("plan", "llama-3-8b", "--gpu", "h100", "--engine", engine, "--context", "8192")
    assert res.exit_code == 0, res.stderr
    table = res.stdout.split("Memory per GPU")[1].split("KV cache (")[0]
    value: Decimal | None = None
    pending_fraction: Decimal | None = None
    for line in table.splitlines():
        m = re.match(r"│ (.+?)\s+│.*?(?:\(([\d,]+) B\))?\s*│$", line)
        if not m:
            continue
        label, number = m.group(1), m.group(2)
        n = Decimal(number.replace(",", "")) if number else None
        if label.startswith("GPU memory"):
            value = n
        elif label.startswith("x "):
            frac = Decimal(label.split()[2])
            if n is None:
                pending_fraction = frac
            else:
                assert value is not None and abs(value * frac - n) <= 1, label
                value = n
        elif label.startswith("- "):
            assert value is not None and n is not None
            value -= n
        elif label.startswith("= "):
            assert value is not None and n is not None
            if pending_fraction is not None:
                value = value * pending_fraction
            assert abs(value - n) <= 1, (engine, value, n)
            break
    else:
        raise AssertionError(f"no budget row for {engine}")


# --- SGLang pools (0.5.23 pool_configurator.py) --------------------------------------------------

def test_sglang_default_pool_reference_figures() -> None:
    # Reference §8.2, 50 GiB = 53,687,091,200 B, page 1: Llama-2-7B 32 x 32 x 128 x 2 x 2 = 524,288 B/token
    # -> 102,400; Mistral-7B (MistralForCausalLM is not hybrid: every layer at full length)
    # 32 x 8 x 128 x 2 x 2 = 131,072 -> 409,600; DeepSeek-V3 61 x 576 x 2 = 70,272 -> 763,989.
    for name, want in (("llama-2-7b", 102_400), ("mistral-7b-v0.1", 409_600), ("deepseek-v3", 763_989)):
        p = kv_plan(name, 50 * GiB, 4096, engine="sglang")
        assert p.kv_cache_tokens == want, name
        assert not any("Use sliding window memory pool" in line for line in p.log_lines)
    # Gemma-2 is a sliding/full hybrid, but SGLang forces its hybrid pool off (gemma2_gemma3.py):
    # 46 x 16 x 128 x 2 x 2 (bf16; the published config says float32) = 376,832 B/token -> 142,469.
    assert kv_plan("gemma-2-27b", 50 * GiB, 8192, engine="sglang", kv_dtype="bf16").kv_cache_tokens == 142_469


def test_sglang_hybrid_swa_pool_gpt_oss() -> None:
    # gpt-oss-20b (GptOssForCausalLM, on SGLang's hybrid list): 12 full + 12 sliding layers of
    # 8 x (64 + 64) x 2 B = 2,048 B. cell = 2,048 x 12 + 0.8 x 2,048 x 12 = 44,236.8 B;
    # full = int(53,687,091,200 // 44,236.8) = 1,213,629; swa = int(1,213,629 x 0.8) = 970,903.
    p = kv_plan("gpt-oss-20b", 50 * GiB, 8192, engine="sglang")
    assert p.kv_cache_tokens == 1_213_629
    assert "Use sliding window memory pool. full_layer_tokens=1213629, swa_layer_tokens=970903" in p.log_lines
    # Requests hold their whole length in the full-layer pool: 1,213,629 // 8,192 = 148 at once,
    # leaving 1,213,629 - 148 x 8,192 = 1,213 tokens; in bytes at the pool's floored share of the
    # budget per full-layer token, 53,687,091,200 // 1,213,629 = 44,236 B: 1,213 x 44,236 = 53,658,268 B.
    assert p.max_sequences == 148 and p.fits
    assert (p.capacity_unit, p.headroom_units, p.headroom_bytes) == ("tokens", 1_213, 53_658_268)
    # gpt-oss-120b: 18 + 18 layers: cell 66,355.2 -> 809,086 full, 647,268 SWA tokens.
    big = kv_plan("gpt-oss-120b", 50 * GiB, 8192, engine="sglang")
    assert "full_layer_tokens=809086, swa_layer_tokens=647268" in big.log_lines[0]
    # The same layers under an architecture SGLang does not split: one pool, 24 x 2,048 B per token.
    plain = dataclasses.replace(get_builtin("gpt-oss-20b"), architecture="Gemma2ForCausalLM")
    p2 = plan(PlanRequest(model=plain, kv_budget_bytes=50 * GiB, max_model_len=8192, engine="sglang"))
    assert p2.kv_cache_tokens == 53_687_091_200 // (24 * 2048) == 1_092_266


def test_sglang_hybrid_swa_pool_too_small_to_start() -> None:
    # SGLang refuses when window + page >= swa tokens: with 200 full tokens the SWA pool holds
    # int(200 x 0.8) = 160 >= 128 + 1 still starts; at 161 full tokens (128 SWA) it does not.
    ok = kv_plan("gpt-oss-20b", int(200 * 44_236.8) + 1, 100, engine="sglang")
    assert ok.kv_cache_tokens == 200 and ok.fits
    bad = kv_plan("gpt-oss-20b", int(161 * 44_236.8) + 1, 100, engine="sglang")
    assert bad.kv_cache_tokens == 161 and not bad.fits
    assert bad.max_concurrency == 0.0 and "SWA pool (128 tokens) cannot hold even one request" in str(bad.reason)


# --- vLLM's batch defaults (EngineArgs.get_batch_defaults, vllm serve) ---------------------------

def test_vllm_batch_defaults_follow_the_gpu() -> None:
    from kvcalc.planner.gpus import get_gpu
    from kvcalc.planner.plan import vllm_batch_defaults

    def for_gpu(name: str, length: int = 8192) -> tuple[int, int]:
        g = get_gpu(name)
        tokens, seqs, _ = vllm_batch_defaults(g.memory_bytes, f"{g.name} {g.title}", length)
        return tokens, seqs

    # >= 70 GiB and not an A100: 8192 tokens, 1024 sequences; A100 (PR #17885) and smaller: 2048, 256.
    assert for_gpu("h100") == (8192, 1024) and for_gpu("h200") == (8192, 1024) and for_gpu("b200") == (8192, 1024)
    assert for_gpu("a100-80gb") == (2048, 256) and for_gpu("l40s") == (2048, 256) and for_gpu("rtx-4090") == (2048, 256)
    # Defaulted values are capped: tokens <= seqs x max_model_len, then seqs <= tokens.
    assert for_gpu("h100", length=4) == (4096, 1024)
    assert for_gpu("a100-80gb", length=1) == (256, 256)
    # No GPU named (--kv-budget): kvcalc's documented 8192 and 256; given values win.
    assert vllm_batch_defaults(None, "", 8192)[:2] == (8192, 256)
    assert vllm_batch_defaults(get_gpu("h100").memory_bytes, "h100", 8192, 512, 64) == (512, 64, "given")


def test_sliding_window_reservation_uses_the_gpus_default() -> None:
    # Mistral-7B (sliding window 4096 on all 32 layers) at 32,768 tokens on an A100: vllm serve's
    # max_num_batched_tokens is 2048 there, so one request reserves cdiv(min(4095 + 2048, 32768), 16)
    # + 1 = 385 blocks; on an H100 (8192) cdiv(min(4095 + 8192, 32768), 16) + 1 = 769.
    a100 = plan(PlanRequest(model=get_builtin("mistral-7b-v0.1"), gpu="a100-80gb", max_model_len=32768,
                            engine="vllm@0.20"))
    h100 = plan(PlanRequest(model=get_builtin("mistral-7b-v0.1"), gpu="h100", max_model_len=32768,
                            engine="vllm@0.20"))
    assert a100.max_num_batched_tokens == 2048 and a100.vllm is not None and a100.vllm["blocks_per_request"] == 385
    assert h100.max_num_batched_tokens == 8192 and h100.vllm is not None and h100.vllm["blocks_per_request"] == 769
    assert a100.num_blocks is not None and a100.max_concurrency == a100.num_blocks / 385
