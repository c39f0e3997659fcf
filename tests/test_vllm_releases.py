"""vLLM releases side by side: 0.20 (001cabc1), 0.33 and 0.34 on the same inputs, each figure
derived by hand from that release's code (docs/engines.md §1 gives file and line)."""

from __future__ import annotations

import pytest

from kvcalc.dtypes import KVDtype, resolve_dtype
from kvcalc.engines.vllm_releases import (
    NEWEST,
    Vllm020,
    Vllm033,
    Vllm034,
    get_release,
    release_for_printed,
)
from kvcalc.errors import UnknownNameError
from kvcalc.models import ModelConfig
from kvcalc.registry import load_model
from kvcalc.units import GiB, MiB


def _auto(model: ModelConfig) -> KVDtype:
    return resolve_dtype("auto", model.dtype)


def test_null_block_in_the_fit_check_llama2_7b_1gib() -> None:
    """Llama-2-7B bf16, 1 GiB, max len 4,096. A 16-token block is 32 layers x 16 x 2 x 32 heads
    x 128 x 2 B = 8 MiB, so 1 GiB holds 128 blocks and one request needs 256."""
    m = load_model("llama-2-7b")
    dtype = _auto(m)
    old = Vllm020().kv(m.layer_specs, dtype, GiB, 4096)
    new = Vllm033().kv(m.layer_specs, dtype, GiB, 4096)
    assert old.block_bytes == new.block_bytes == 8 * MiB
    assert old.num_blocks == new.num_blocks == 128  # allocation still uses all of the memory
    # 0.20: 128 blocks x 16 = 2,048 tokens fit; 0.33 holds back the null block: 127 x 16 = 2,032.
    assert (old.fits, old.estimated_max_model_len) == (False, 2048)
    assert (new.fits, new.estimated_max_model_len) == (False, 2032)
    # The error prints the reduced memory: 1 GiB - 8 MiB = 0.9921875 GiB -> "0.99".
    assert new.error is not None and "available KV cache memory (0.99 GiB)" in new.error
    assert "the model's max seq len (4096), (2.0 GiB KV cache is needed" in new.error
    assert old.error is not None and "the models's max seq len" in old.error
    assert "available KV cache memory (1.0 GiB)" in old.error


def test_block_64_in_0_34_and_the_same_example() -> None:
    """0.34.0 config/cache.py:185: block 64 = 32 MiB; 32 blocks, 31 usable: 31 x 64 = 1,984.
    With --block-size 16 the 0.33 figure comes back (2,032)."""
    m = load_model("llama-2-7b")
    r = Vllm034().kv(m.layer_specs, _auto(m), GiB, 4096)
    assert (r.block_size, r.block_bytes, r.num_blocks, r.estimated_max_model_len) == (64, 32 * MiB, 32, 1984)
    r16 = Vllm034().kv(m.layer_specs, _auto(m), GiB, 4096, block_size=16)
    assert r16.estimated_max_model_len == 2032


def test_fit_boundary_with_the_null_block() -> None:
    """Exactly fits / one block short: a 4,096-token request needs 256 blocks = 2 GiB. 0.20 fits
    at 2 GiB; 0.33 needs one more block (2 GiB + 8 MiB) and fails at 2 GiB."""
    m = load_model("llama-2-7b")
    dtype = _auto(m)
    assert Vllm020().kv(m.layer_specs, dtype, 2 * GiB, 4096).fits
    assert not Vllm033().kv(m.layer_specs, dtype, 2 * GiB, 4096).fits
    assert Vllm033().kv(m.layer_specs, dtype, 2 * GiB + 8 * MiB, 4096).fits
    assert not Vllm033().kv(m.layer_specs, dtype, 2 * GiB + 8 * MiB - 1, 4096).fits


def test_logged_tokens_and_line_forms() -> None:
    """Llama-2-7B at 20 GiB: 2,560 blocks of 16; 4,096 / 16 = 256 blocks a request: 10.00x.
    0.20 logs 2,560 x 16 = 40,960 on two lines; 0.33 int(10.0 x 4,096) = 40,960 on one line."""
    m = load_model("llama-2-7b")
    old = Vllm020().kv(m.layer_specs, _auto(m), 20 * GiB, 4096)
    new = Vllm033().kv(m.layer_specs, _auto(m), 20 * GiB, 4096)
    assert old.log_lines == [
        "Available KV cache memory: 20.0 GiB",
        "GPU KV cache size: 40,960 tokens",
        "Maximum concurrency for 4,096 tokens per request: 10.00x",
    ]
    assert new.log_lines[1] == (
        "GPU KV cache size: 40,960 tokens, Maximum concurrency for 4,096 tokens per request: 10.00x")


def test_hybrid_token_figure_differs_by_release() -> None:
    """Gemma-2-27B at 40 GiB, 8,192 tokens: two groups (full, sliding 4,096) of 23 layers, page
    16 x 16 heads x 256 x 2 B = 262,144 B, a block id costs 23 pages: 40 GiB // 6,029,312 B =
    7,123 blocks. Blocks a request: full cdiv(8192, 16) = 512; sliding 0.20 cdiv(min(4095 + 8192,
    8192), 16) + 1 = 513 -> 1,025 (0.33: 4095 + 2 x 8192 is capped at 8192 as well: 1,025).
    0.20 logs 7,123 // 2 x 16 = 56,976 tokens; 0.33 int(7,123 / 1,025 x 8,192) = 56,928."""
    m = load_model("gemma-2-27b")
    old = Vllm020().kv(m.layer_specs, _auto(m), 40 * GiB, 8192)
    new = Vllm033().kv(m.layer_specs, _auto(m), 40 * GiB, 8192)
    assert (old.num_blocks, old.blocks_per_request, old.kv_cache_tokens) == (7123, 1025, 56976)
    assert (new.num_blocks, new.blocks_per_request, new.kv_cache_tokens) == (7123, 1025, 56928)
    assert new.kv_cache_tokens == int(7123 / 1025 * 8192)


def test_sliding_window_in_flight_tokens() -> None:
    """Gemma-2-27B at 32,768 tokens, 8,192-token batches: 0.20 keeps cdiv(4095 + 8192, 16) + 1 =
    769 sliding blocks; 0.33 keeps W - 1 + (pp + 1) x 8,192 = 20,479 tokens: cdiv(20479, 16) + 1 =
    1,281 (pp 1); with pp 2: 4095 + 3 x 8192 = 28,671 -> 1,793."""
    m = load_model("gemma-2-27b")
    full = 32768 // 16
    assert Vllm020().kv(m.layer_specs, _auto(m), 40 * GiB, 32768).blocks_per_request == full + 769
    assert Vllm033().kv(m.layer_specs, _auto(m), 40 * GiB, 32768).blocks_per_request == full + 1281
    assert Vllm033().in_flight_tokens(8192, 2) == 3 * 8192
    assert Vllm020().in_flight_tokens(8192, 2) == 8192


@pytest.mark.parametrize(
    ("gpu", "kv", "expected"),
    [(None, "auto", 16), ("h100", "auto", 16), ("h100", "fp8", 64), ("b200", "auto", 32),
     ("a100-80gb", "auto", 16), ("rtx-5090", "auto", 16)],
)
def test_mla_block_size_by_gpu_0_20_and_0_33(gpu: str | None, kv: str, expected: int) -> None:
    """0.20.0/0.33.0 platforms/cuda.py backend order: sm90 bf16 FLASH_ATTN_MLA (16), sm90 fp8
    FLASHMLA (64), sm100 FLASHINFER_MLA (32), other CUDA TRITON_MLA (16)."""
    m = load_model("deepseek-v3")
    dtype = resolve_dtype(kv, m.dtype)
    for release in (Vllm020(), Vllm033()):
        choice = release.block_size(m.layer_specs, dtype, gpu=gpu)
        assert choice.block_size == expected
        if gpu is None:
            assert "no --gpu given, Hopper assumed" in choice.reason
    assert Vllm034().block_size(m.layer_specs, dtype, gpu=gpu).block_size == 64
    assert Vllm020().block_size(m.layer_specs, dtype, gpu=gpu, block_size=128).block_size == 128


def test_mla_page_by_block() -> None:
    """DeepSeek-V3 at TP 8: the latent (512 + 64) x 2 B x 61 layers = 70,272 B a token, replicated.
    Block 16: 16 x 1,152 B = 18,432 B a layer page; 0.34's block 64: 73,728 B."""
    m = load_model("deepseek-v3")
    assert Vllm020().kv(m.layer_specs, _auto(m), 40 * GiB, 8192, tp=8).page_size_bytes == 18432
    assert Vllm034().kv(m.layer_specs, _auto(m), 40 * GiB, 8192, tp=8).page_size_bytes == 73728


def test_mamba_align_mode_three_pages() -> None:
    """Nemotron-H-56B at 8,192: 0.20 reserves one state page per Mamba layer group; 0.33 (align
    mode, Mamba2 mixers declare one prefill checkpoint block) reserves 2 + 0 + 1 = 3."""
    m = load_model("nemotron-h-56b")
    old = Vllm020().kv(m.layer_specs, _auto(m), 40 * GiB, 8192)
    new = Vllm033().kv(m.layer_specs, _auto(m), 40 * GiB, 8192)
    groups = Vllm020().layout(m.layer_specs, _auto(m), block_size=16).grouping.groups
    mamba_groups = sum(g.spec.kind == "mamba" for g in groups)
    assert new.blocks_per_request - old.blocks_per_request == 2 * mamba_groups
    assert new.page_size_bytes == old.page_size_bytes


def test_chunked_local_attention_allocated_as_full() -> None:
    """Chunked layers next to full ones: the hybrid manager is off by default, so every layer is
    allocated as full attention: one uniform group, cdiv(L, 16) blocks a request."""
    from kvcalc.specs import ChunkedAttention, FullAttention

    chunked = ChunkedAttention(num_kv_heads=8, head_dim=128, chunk_size=8192)
    full = FullAttention(num_kv_heads=8, head_dim=128)
    specs = [chunked, chunked, chunked, full] * 4
    dtype = resolve_dtype("bf16", "bf16")
    for release in (Vllm020(), Vllm033(), Vllm034()):
        r = release.kv(specs, dtype, 10 * GiB, 65536)
        assert (r.layout, r.num_groups) == ("uniform", 1)
        assert r.blocks_per_request == 65536 // r.block_size


def test_registry_and_printed_versions() -> None:
    assert get_release().key == NEWEST == "0.34"
    assert get_release("0.20").key == "0.20" and get_release("v0.19.1").key == "0.19"
    assert get_release("0.32.0").key == "0.33"
    with pytest.raises(UnknownNameError, match="unknown vLLM version '0.99'"):
        get_release("0.99")
    assert release_for_printed("0.24.0")[0].key == "0.20"
    assert "nearest older" in release_for_printed("0.24.0")[1]
    assert release_for_printed("0.33.0")[0].key == "0.33"
    assert release_for_printed("0.34.0")[0].key == "0.34"
    assert release_for_printed("0.6.4")[0].key == "0.20"
    assert "not understood" in release_for_printed("nightly")[1]
