"""Decode roofline: bytes per step over bandwidth, beside the compute bound."""

from __future__ import annotations

from kvcalc.planner.plan import PlanRequest, plan
from kvcalc.planner.roofline import decode_roofline
from kvcalc.registry import get_builtin


def test_memory_bound_hand_arithmetic() -> None:
    # 14 GB of weights + 4 x 2 GB of KV = 22e9 B per step at 2e12 B/s -> 11 ms -> 90.9 tok/s per seq.
    r = decode_roofline(batch=4, weights_per_gpu=14 * 10**9, kv_per_sequence_per_gpu=2 * 10**9,
                        active_params_per_gpu=7 * 10**9, bandwidth_bytes_per_s=2 * 10**12, dense_flops=10**15)
    assert r.bytes_per_step == 22 * 10**9
    assert r.memory_bound_tokens_per_s == 2e12 / 22e9
    # Compute: 1e15 / (4 x 2 x 7e9) = 17,857 tok/s per sequence: memory binds.
    assert r.compute_bound_tokens_per_s == 1e15 / (4 * 2 * 7e9)
    assert r.bound == "memory" and r.aggregate_tokens_per_s == 4 * r.tokens_per_s_per_sequence
    assert "upper bound" in r.label


def test_compute_bound_and_unknown_flops() -> None:
    r = decode_roofline(batch=1000, weights_per_gpu=10**9, kv_per_sequence_per_gpu=0,
                        active_params_per_gpu=10**9, bandwidth_bytes_per_s=10**12, dense_flops=10**14)
    assert r.bound == "compute" and r.tokens_per_s_per_sequence == 1e14 / (1000 * 2e9)
    u = decode_roofline(batch=1, weights_per_gpu=10**9, kv_per_sequence_per_gpu=0, active_params_per_gpu=None,
                        bandwidth_bytes_per_s=10**12, dense_flops=None)
    assert u.compute_bound_tokens_per_s is None and u.bound == "memory"


def test_plan_roofline_uses_gpu_bandwidth() -> None:
    p = plan(PlanRequest(model=get_builtin("llama-3-8b"), gpu="h100", max_model_len=8192, users=8))
    assert p.roofline is not None
    # Weights 16,060,522,496 B + 8 x 8192 x 131,072 B of KV = 24,650,457,088 B per step at 3.35e12 B/s.
    assert p.roofline["bytes_per_step"] == 16_060_522_496 + 8 * 8192 * 131_072
    assert p.roofline["memory_bound_tokens_per_s"] == 3.35e12 / p.roofline["bytes_per_step"]
