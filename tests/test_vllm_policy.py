"""`estimate --engine vllm` / `--engine sglang`: what each engine reserves, by hand arithmetic."""

from __future__ import annotations

from typing import Any

from kvcalc.estimate import estimate
from kvcalc.registry import get_builtin


def test_deepseek_v3_vllm_block_64_at_4096() -> None:
    # Issue 3: 61 layers x 64 pages of 73,728 B; page = 64 x (512 + 64) x 2 B = 73,728.
    est = estimate(get_builtin("deepseek-v3"), 4096, engine="vllm@0.20", block_size=64)
    assert est.total_bytes == 61 * 64 * 73_728 == 287_834_112
    # MLA without --block-size: 0.20 picks the block by backend (16 with FLASH_ATTN_MLA on Hopper,
    # the GPU kvcalc assumes; 4,096 is a whole number of either), so the same answer.
    assert estimate(get_builtin("deepseek-v3"), 4096, engine="vllm@0.20").total_bytes == 287_834_112


def test_explicit_block_size_wins_for_mla() -> None:
    # Block 16 at 4100 tokens: cdiv(4100, 16) = 257 blocks x 16 = 4112 tokens x 61 x 1152 B.
    est = estimate(get_builtin("deepseek-v3"), 4100, engine="vllm@0.20", block_size=16)
    assert est.total_bytes == 61 * 4112 * 1152
    # Default: 0.20.0 platforms/interface.py update_block_size_for_backend keeps 16 for FLASH_ATTN_MLA
    # (MultipleOf(16), Hopper, 16-bit cache): the same 4112 tokens. vLLM 0.34's default 64:
    # cdiv(4100, 64) = 65 blocks x 64 = 4160 tokens.
    assert estimate(get_builtin("deepseek-v3"), 4100, engine="vllm@0.20").total_bytes == 61 * 4112 * 1152
    assert estimate(get_builtin("deepseek-v3"), 4100, engine="vllm@0.34").total_bytes == 61 * 4160 * 1152


def test_llama2_7b_whole_blocks_and_fp8() -> None:
    # 4097 tokens -> cdiv(4097, 16) = 257 blocks = 4112 tokens x 524,288 B.
    assert estimate(get_builtin("llama-2-7b"), 4097, engine="vllm@0.20").total_bytes == 4112 * 524_288
    # fp8 is one byte: 4096 x 262,144 = 1 GiB.
    assert estimate(get_builtin("llama-2-7b"), 4096, engine="vllm@0.20", kv_dtype="fp8").total_bytes == 1 << 30


def test_sliding_window_reservation() -> None:
    # Mistral-7B-v0.1, W 4096, L 8192, chunk 8192: min(4095 + 8192, 8192) = 8192 -> 512 + 1 = 513 blocks
    # = 8208 tokens x 32 layers x 2 x 8 x 128 x 2 B (4096 B per layer-token) = 1,075,838,976 B.
    est = estimate(get_builtin("mistral-7b-v0.1"), 8192, engine="vllm@0.20")
    assert est.total_bytes == 8208 * 32 * 4096 == 1_075_838_976
    # A smaller chunk: min(4095 + 512, 8192) = 4607 -> cdiv 288 + 1 = 289 blocks = 4624 tokens.
    small = estimate(get_builtin("mistral-7b-v0.1"), 8192, engine="vllm@0.20", max_num_batched_tokens=512)
    assert small.total_bytes == 4624 * 32 * 4096


def test_sglang_token_pool_and_mla_latent() -> None:
    # Page 1: exactly seq_len tokens; DeepSeek-V3 latent 61 x 576 x 2 = 70,272 B/token.
    assert estimate(get_builtin("deepseek-v3"), 4097, engine="sglang").total_bytes == 4097 * 70_272
    # Page 64: cdiv(4097, 64) x 64 = 4160 tokens.
    paged = estimate(get_builtin("llama-2-7b"), 4097, engine="sglang", block_size=64)
    assert paged.total_bytes == 4160 * 524_288


def test_cli_estimate_engine_vllm_json(cli: Any) -> None:
    res = cli("estimate", "deepseek-v3", "--seq-len", "4096", "--engine", "vllm", "--json")
    assert res.exit_code == 0, res.stderr
    data = res.json()
    assert data["engine"] == "vllm"
    assert data["total_bytes"] == 287_834_112
