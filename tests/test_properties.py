"""Hypothesis properties of the formula engine."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kvcalc import estimate
from kvcalc.specs import FullAttention, SlidingWindowAttention
from tests.conftest import make_model

seq = st.integers(min_value=1, max_value=1 << 22)
batch = st.integers(min_value=1, max_value=512)
heads = st.sampled_from([1, 2, 4, 8, 16, 32])
dtypes = st.sampled_from(["fp32", "fp16", "bf16", "fp8", "int8", "int4", "q8_0", "q4_0"])


@given(seq, batch, heads, dtypes)
def test_linear_in_batch(seq_len: int, b: int, h: int, dtype: str) -> None:
    model = make_model(kv_heads=h, heads=32, head_dim=64)
    one = estimate(model, seq_len, 1, dtype).total_bytes
    assert estimate(model, seq_len, b, dtype).total_bytes == b * one


@given(seq, seq, heads, dtypes)
def test_non_decreasing_in_seq_len(a: int, b: int, h: int, dtype: str) -> None:
    model = make_model(specs=[SlidingWindowAttention(num_kv_heads=h, head_dim=64, window=4096),
                              FullAttention(num_kv_heads=h, head_dim=64)], heads=32,
                       max_position_embeddings=1 << 23)
    lo, hi = sorted((a, b))
    assert estimate(model, lo, 1, dtype).total_bytes <= estimate(model, hi, 1, dtype).total_bytes


@given(seq, st.integers(min_value=1, max_value=1 << 20), heads)
def test_sliding_never_above_full(seq_len: int, window: int, h: int) -> None:
    full = make_model(kv_heads=h, heads=32, max_position_embeddings=1 << 22)
    sliding = make_model(specs=[SlidingWindowAttention(num_kv_heads=h, head_dim=4, window=window)],
                         heads=32, max_position_embeddings=1 << 22)
    assert estimate(sliding, seq_len).total_bytes <= estimate(full, seq_len).total_bytes


@given(seq, st.sampled_from([1, 2, 4, 8, 16, 32]), st.sampled_from([1, 2, 4, 8, 16, 32]))
def test_fewer_kv_heads_never_more_bytes(seq_len: int, h1: int, h2: int) -> None:
    lo, hi = sorted((h1, h2))
    small = make_model(kv_heads=lo, heads=32)
    big = make_model(kv_heads=hi, heads=32)
    assert estimate(small, seq_len).total_bytes <= estimate(big, seq_len).total_bytes


@given(st.integers(min_value=1, max_value=10**12), st.integers(min_value=1, max_value=10**9))
def test_exact_integers_at_scale(seq_len: int, b: int) -> None:
    est = estimate(make_model(kv_heads=8, heads=32, head_dim=128, layers=80), seq_len, b)
    assert isinstance(est.total_bytes, int)
    assert est.total_bytes == 2 * 80 * 8 * 128 * 2 * seq_len * b
