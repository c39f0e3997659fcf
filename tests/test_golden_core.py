"""Golden numbers from the seed articles and published configs, each derived by hand."""

from __future__ import annotations

from fractions import Fraction

import pytest

from kvcalc import apply_overrides, bytes_per_token, estimate, load_model
from kvcalc.estimate import preallocation_waste
from kvcalc.units import GiB, MiB


def test_llama2_7b_fp16_per_token() -> None:
    # 2 (K,V) x 32 layers x 32 kv_heads x 128 head_dim x 2 B = 524,288 B
    assert bytes_per_token(load_model("llama-2-7b")) == 2 * 32 * 32 * 128 * 2 == 524_288


@pytest.mark.parametrize(
    ("tokens", "expected"),
    # Seed 002's table (it writes MB/GB for binary units): 524,288 B x tokens.
    [(512, 256 * MiB), (1024, 512 * MiB), (2048, 1 * GiB), (4096, 2 * GiB), (8192, 4 * GiB)],
)
def test_llama2_7b_seed002_table(tokens: int, expected: int) -> None:
    est = estimate(load_model("llama-2-7b"), tokens, kv_dtype="fp16")
    assert est.total_bytes == 524_288 * tokens == expected


def test_llama2_70b_seed002_gqa_vs_mha() -> None:
    model = load_model("llama-2-70b")
    # Seed 002: 2 x 80 x 8 x 128 x 4096 x 2 = 1,342,177,280 B ("1.34 GB", decimal)
    gqa = estimate(model, 4096, kv_dtype="fp16").total_bytes
    assert gqa == 2 * 80 * 8 * 128 * 4096 * 2 == 1_342_177_280
    # The same with 64 KV heads (MHA): 2 x 80 x 64 x 128 x 4096 x 2 = 10,737,418,240 B
    mha = estimate(apply_overrides(model, kv_heads=64), 4096, kv_dtype="fp16").total_bytes
    assert mha == 10_737_418_240
    assert mha // gqa == 8 and mha % gqa == 0


def test_llama3_70b_and_seed001_error() -> None:
    model = load_model("llama-3-70b")
    # 2 x 80 layers x 8 kv_heads x 128 x 2 B (bf16) = 327,680 B/token
    est = estimate(model, 4096)
    assert est.kv_dtype == "bf16"
    assert est.bytes_per_token == 327_680
    # 327,680 x 4096 = 1,342,177,280 B = 1.25 GiB
    assert est.total_bytes == 1_342_177_280 == 5 * GiB // 4
    # Seed 001 ("about 2.5 MB per token, 10.5 GB for 4k") ignores GQA: with 64 KV heads,
    # 2 x 80 x 64 x 128 x 2 = 2,621,440 B = 2.5 MiB per token; x 4096 = 10 GiB = 10.74 GB.
    mha = estimate(apply_overrides(model, kv_heads=64), 4096)
    assert mha.bytes_per_token == 2_621_440 == 5 * MiB // 2
    assert mha.total_bytes == 10 * GiB == 10_737_418_240


def test_seed004_batch32_fp32() -> None:
    # batch 32 x 2 x 32 layers x (32 x 128) x 2048 tokens x 4 B = 68,719,476,736 B = 64 GiB
    model = apply_overrides(load_model("llama-2-7b"), layers=32, kv_heads=32, head_dim=128)
    est = estimate(model, 2048, batch=32, kv_dtype="fp32")
    assert est.total_bytes == 32 * 2 * 32 * 32 * 128 * 2048 * 4 == 68_719_476_736 == 64 * GiB


def test_seed002_concurrency_and_waste() -> None:
    # 32 requests x 2048 tokens x 524,288 B = 34,359,738,368 B = 32 GiB
    est = estimate(load_model("llama-2-7b"), 2048, batch=32)
    assert est.total_bytes == 32 * GiB
    # Preallocating 4096 tokens for a 100-token request wastes 3996/4096 = 97.56 % (seed: 97.5 %).
    wasted, reserved = preallocation_waste(4096, 100)
    assert Fraction(wasted, reserved) == Fraction(3996, 4096)
    assert f"{100 * wasted / reserved:.2f}" == "97.56"


def test_qwen3_32b_explicit_head_dim() -> None:
    # head_dim 128 (not hidden 5120 / 64 heads = 80): 2 x 64 x 8 x 128 x 2 = 262,144 B
    assert bytes_per_token(load_model("qwen3-32b")) == 262_144


def test_gemma2_27b_bf16_at_8192() -> None:
    # 23 full layers x 8192 tokens + 23 sliding layers x min(8192, 4096) tokens,
    # each 2 x 16 x 128 x 2 B = 8,192 B/token: 23 x 8192 x 8192 + 23 x 4096 x 8192
    est = estimate(load_model("gemma-2-27b"), 8192, kv_dtype="bf16")
    assert est.total_bytes == 23 * 8192 * 8192 + 23 * 4096 * 8192 == 2_315_255_808
    assert est.bytes_per_token == 46 * 8192 == 376_832


def test_gemma2_default_dtype_is_configs_float32() -> None:
    est = estimate(load_model("gemma-2-27b"), 1)
    assert est.kv_dtype == "fp32" and est.kv_dtype_source == "model dtype"


def test_deepseek_v3_mla_latent() -> None:
    # (512 kv_lora_rank + 64 rope) x 61 layers x 2 B = 70,272 B (MTP layer not cached)
    model = load_model("deepseek-v3")
    assert model.num_layers == 61
    assert bytes_per_token(model) == 576 * 61 * 2 == 70_272


def test_mistral_sliding_on_every_layer() -> None:
    model = load_model("mistral-7b")
    assert model.name == "mistral-7b-v0.1"
    # 32 layers x 2 x 8 x 128 x 2 B = 131,072 B/token, capped at 4096 tokens
    assert estimate(model, 32768).total_bytes == 131_072 * 4096
    assert estimate(model, 32768).total_bytes * 8 == 131_072 * 32768  # the paper's 8x at 32k


def test_hybrids_only_attention_grows() -> None:
    nemo = load_model("nemotron-h-56b")
    a = estimate(nemo, 1000).total_bytes
    b = estimate(nemo, 2000).total_bytes
    # 10 attention layers x 2 x 8 x 128 x 2 B = 40,960 B per extra token
    assert b - a == 1000 * 10 * 2 * 8 * 128 * 2
    qn = load_model("qwen3-next-80b-a3b")
    # 12 full-attention layers (every 4th of 48) x 2 x 2 heads x 256 x 2 B = 24,576 B/token
    assert bytes_per_token(qn) == 12 * 2 * 2 * 256 * 2 == 24_576


def test_seq_len_above_max_positions_warns_not_fails() -> None:
    est = estimate(load_model("llama-2-7b"), 8192)
    assert est.total_bytes == 4 * GiB
    assert any("max_position_embeddings" in w for w in est.warnings)


def test_tp_replicates_heads_beyond_kv_heads() -> None:
    # Llama-2-70B fp16 at TP 16: max(1, 8 // 16) = 1 head per rank:
    # 2 x 80 x 1 x 128 x 2 B = 40,960 B per token per GPU
    est = estimate(load_model("llama-2-70b"), 1, tp=16)
    assert est.per_gpu_bytes == 40_960
    assert est.total_bytes == 16 * 40_960
