"""TensorRT-LLM's pool: blocks per attention window, max_tokens, host pool, the log lines.

Rules from TensorRT-LLM's kvCacheManager.cpp ``calculateMaxNumBlocks`` and llm_args.py
``KvCacheConfig`` (see ``kvcalc/engines/trtllm.py``); figures derived by hand below."""

from __future__ import annotations

from pathlib import Path

from kvcalc.engines.startup_log import check_log
from kvcalc.engines.trtllm import TOKENS_PER_BLOCK, window_pools
from kvcalc.planner.plan import PlanRequest, plan
from kvcalc.registry import get_builtin

LOGS = Path(__file__).parent / "fixtures" / "logs"
GiB = 1 << 30


def test_default_tokens_per_block_is_32() -> None:
    assert TOKENS_PER_BLOCK == 32


def test_blocks_round_up_after_flooring_tokens() -> None:
    # Llama-3-8B bf16: 32 layers x 8 x 128 x 2 (K, V) x 2 B = 131,072 B a token. 10 GiB + 1 B:
    # floor(10,737,418,241 / 131,072) = 81,920 tokens; ceil(81,920 / 32) = 2,560 blocks.
    [p] = window_pools(10 * GiB + 1, {8192: 131_072})
    assert (p.primary_blocks, p.secondary_blocks) == (2560, 0)
    # 10 GiB + 131,072 B: 81,921 tokens -> ceil(81,921 / 32) = 2,561 blocks (the ceiling of calculateMaxNumBlocks).
    assert window_pools(10 * GiB + 131_072, {8192: 131_072})[0].primary_blocks == 2561


def test_max_tokens_and_host_cache() -> None:
    # max_tokens 8,224 (< 81,920): ceil(8,224 / 32) = 257 blocks; host 8 GiB: 65,536 tokens / 32 = 2,048 blocks.
    [p] = window_pools(10 * GiB, {8192: 131_072}, max_tokens=8224, host_cache_bytes=8 * GiB)
    assert (p.primary_blocks, p.secondary_blocks) == (257, 2048)


def test_variable_sliding_window_shares_by_bytes() -> None:
    # Two windows, 1,024 (b = 32,768 B a token) and 8,192 (b = 98,304 B): shares 0.25 and 0.75 of 4 GiB
    # (exact in float32): 1 GiB / 32,768 = 32,768 tokens -> 1,024 blocks; 3 GiB / 98,304 = 32,768 -> 1,024.
    pools = window_pools(4 * GiB, {1024: 32_768, 8192: 98_304})
    assert [(p.window, p.primary_blocks) for p in pools] == [(1024, 1024), (8192, 1024)]


def test_qwen15_7b_blocks_from_issue_2268() -> None:
    # The log: available 21.89 GiB (two decimals), 631 primary blocks, fraction 0.9 (the default), an
    # engine of 64 tokens per block; 524,288 B a token (32 x 32 x 128 x 2 x 2 B). Both ends of the
    # printed rounding: floor(21.885 GiB x 0.9 / 524,288) = 40,339 -> ceil(/64) = 631;
    # floor(21.895 GiB x 0.9 / 524,288) = 40,358 -> 631.
    for avail in ("21.885", "21.895"):
        from decimal import Decimal

        allotted = int(Decimal(avail) * GiB * Decimal("0.9"))
        assert window_pools(allotted, {4096: 524_288}, tokens_per_block=64)[0].primary_blocks == 631


def test_check_log_lists_blocks_without_the_fraction() -> None:
    res = check_log(LOGS / "trtllm_0_13_qwen15_7b_issue2268.log", get_builtin("llama-2-7b"), block_size=64)
    assert res.engine == "trtllm"
    [c] = [c for c in res.checks if c.item == "primary blocks from available memory"]
    assert c.matches is None and "0.901" in c.basis  # 631 x 64 x 524,288 / 21.89 GiB


def test_check_log_compares_every_line_of_the_synthetic_log() -> None:
    # 0.9 x 20.00 GiB / 131,072 = 147,456 tokens, capped at max_tokens 8,224 -> 257 blocks x 32 = 8,224
    # tokens; 8,224 x 131,072 B = 1.0039 GiB, printed "1.00".
    res = check_log(LOGS / "trtllm_synthetic_max_tokens_llama3_8b.log", get_builtin("llama-3-8b"))
    by = {c.item: c for c in res.checks}
    assert by["tokens in paged KV cache"].matches is True
    assert by["paged KV cache (GiB)"].matches is True
    assert by["primary blocks from available memory"].matches is True


def test_plan_logs_trtllm_lines() -> None:
    # 10 GiB budget + 1 B (--kv-budget): 2,560 blocks (above); tokens 81,920; pool 81,920 x 131,072 B = 10.00 GiB.
    p = plan(PlanRequest(model=get_builtin("llama-3-8b"), engine="trtllm", kv_budget_bytes=10 * GiB + 1,
                         max_model_len=8192))
    assert p.num_blocks == 2560 and p.kv_cache_tokens == 81_920
    assert p.log_lines[-1].endswith("Allocated 10.00 GiB for max tokens in paged KV cache (81920).")
    # 8,192 tokens need 256 blocks: 2,560 // 256 = 10 requests at once.
    assert p.max_sequences == 10
    capped = plan(PlanRequest(model=get_builtin("llama-3-8b"), engine="trtllm", kv_budget_bytes=10 * GiB,
                              max_model_len=8192, max_tokens=8224))
    assert capped.kv_cache_tokens == 8224 and capped.max_sequences == 1
