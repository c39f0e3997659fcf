"""Decode-step roofline: an upper bound on tokens/s from memory bandwidth and from compute.

Per decode step every GPU of a tensor-parallel group reads its share of the weights once and
the KV of every sequence in the batch (kvcalc's per-GPU KV bytes at the average context):
``t_memory = (weights_per_gpu + batch x kv_per_sequence_per_gpu) / bandwidth``. The compute
bound is ``t_compute = batch x 2 x active_parameters_per_gpu / dense_flops`` (2 FLOPs per
weight per token; attention FLOPs ignored). The step takes at least ``max(t_memory,
t_compute)``; tokens/s per sequence is at most ``1 / t_step``, aggregate ``batch / t_step``.
These are upper bounds (perfect overlap, peak bandwidth and FLOPs), labelled as such.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Roofline:
    batch: int
    bytes_per_step: int
    """Bytes one GPU reads per decode step (weights share + the batch's KV share)."""
    bandwidth_bytes_per_s: int
    memory_bound_tokens_per_s: float
    """Per sequence, from bandwidth alone (upper bound)."""
    compute_bound_tokens_per_s: float | None
    """Per sequence, from dense FLOPs alone (upper bound); None when the GPU's FLOPs are unknown."""
    tokens_per_s_per_sequence: float
    aggregate_tokens_per_s: float
    bound: str
    """memory or compute: the tighter of the two."""
    label: str = "upper bound (peak bandwidth and FLOPs, perfect overlap)"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def decode_roofline(
    *,
    batch: int,
    weights_per_gpu: int,
    kv_per_sequence_per_gpu: int,
    active_params_per_gpu: int | None,
    bandwidth_bytes_per_s: int,
    dense_flops: int | None,
) -> Roofline:
    step_bytes = weights_per_gpu + batch * kv_per_sequence_per_gpu
    mem_tps = bandwidth_bytes_per_s / step_bytes
    comp_tps: float | None = None
    if dense_flops and active_params_per_gpu:
        comp_tps = dense_flops / (batch * 2 * active_params_per_gpu)
    per_seq = mem_tps if comp_tps is None else min(mem_tps, comp_tps)
    bound = "memory" if comp_tps is None or mem_tps <= comp_tps else "compute"
    return Roofline(
        batch=batch, bytes_per_step=step_bytes, bandwidth_bytes_per_s=bandwidth_bytes_per_s,
        memory_bound_tokens_per_s=mem_tps, compute_bound_tokens_per_s=comp_tps,
        tokens_per_s_per_sequence=per_seq, aggregate_tokens_per_s=per_seq * batch, bound=bound,
    )
