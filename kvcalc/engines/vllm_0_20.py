"""vLLM 0.19.x-0.20.0 (V1 @ 001cabc1), as the release wheels run it: the engine of ``vllm@0.20``.

``VllmEngine`` (``vllm.py``) holds the 001cabc1 block model; this subclass corrects two choices
the 0.19.1 and 0.20.0 wheels make otherwise, and runs the pool through the release objects of
``vllm_releases`` so that every later release (``vllm_0_33``, ``vllm_0_34``) only names its rules:

* the MLA block size comes from the attention backend vLLM picks for the GPU and cache dtype
  (``platforms/interface.py update_block_size_for_backend``: 16 with FLASH_ATTN_MLA on Hopper
  and a 16-bit cache, 64 with FlashMLA for fp8, 32 with FlashInfer MLA on Blackwell), not always 64;
  without ``--block-size`` kvcalc assumes Hopper and says so;
* with chunked local attention vLLM turns the hybrid KV-cache manager off, so the local layers
  are allocated as full attention (``unify_hybrid_kv_cache_specs``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, ClassVar

from kvcalc.dtypes import KVDtype
from kvcalc.engines.vllm import VllmEngine
from kvcalc.engines.vllm_kv import Layout, cache_layout, cache_specs, check_stateful
from kvcalc.engines.vllm_releases import Vllm020
from kvcalc.specs import ChunkedAttention, FixedState, FullAttention, SlidingWindowAttention, Spec

if TYPE_CHECKING:
    from kvcalc.engines.base import Pool, PoolRequest, Workload
    from kvcalc.layout import RankLayout


class Vllm020Engine(VllmEngine):
    rules: ClassVar[Vllm020] = Vllm020()
    version = Vllm020.title
    dcp_flag = "--decode-context-parallel-size"
    data_parallel_flag = "--data-parallel-size"
    speculative_flag = "--speculative-config"
    """DCP is modelled (``PoolRequest.dcp``); vLLM refuses it with sliding, chunked or Mamba layers
    (0.34.0 ``v1/core/single_type_kv_cache_manager.py:989``, ``:1341``, ``:1490``)."""
    served_release: str | None = "vLLM 0.20.0"
    """The architecture table read from 0.20.0 (used for 0.19-0.20; ``kvcalc.engines.served``)."""

    def _flight(self, work: Workload) -> Workload:
        """The tokens a sliding / chunked layer keeps past its window (the release's rule, for the
        pipeline depth ``prepare`` saw; one stage when unprepared)."""
        flight = work.in_flight_tokens or self.rules.in_flight_tokens(work.max_num_batched_tokens, 1)
        return dataclasses.replace(work, max_num_batched_tokens=flight)

    @staticmethod
    def _local_as_full(spec: Spec, work: Workload) -> Spec:
        """Sliding / chunked layers allocated as full when the hybrid manager is off (``prepare``)."""
        if not work.windows and isinstance(spec, (SlidingWindowAttention, ChunkedAttention)):
            return FullAttention(num_kv_heads=spec.num_kv_heads, head_dim=spec.head_dim, v_head_dim=spec.v_head_dim)
        return spec

    def prepare(self, layout: RankLayout, dtype: KVDtype, state_dtype: KVDtype, work: Workload) -> Workload:
        check_stateful(layout.model)
        specs = cache_specs(layout.counts)  # a Falcon-H1 / Zamba2 layer: its attention and its Mamba mixer
        block = self.rules.block_size(specs, dtype, block_size=work.block_size).block_size
        block = self.rules.hybrid_block_size(specs, dtype, state_dtype, block)
        attn = [s.bytes_per_token(dtype) for s in specs if s.grows]
        page = block * attn[0] if attn and any(isinstance(s, FixedState) for s in specs) else None
        chunked = any(isinstance(s, ChunkedAttention) for s in specs)
        full = any(type(s) is FullAttention for s in specs)
        return dataclasses.replace(work, block_size=block, state_page_bytes=page,
                                   in_flight_tokens=self.rules.in_flight_tokens(work.max_num_batched_tokens, layout.pp),
                                   windows=work.windows and not (chunked and full))

    def tokens_held(self, spec: Spec, work: Workload) -> int:
        return super().tokens_held(self._local_as_full(spec, work), self._flight(work))

    def describe_tokens(self, spec: Spec, work: Workload) -> str:
        return super().describe_tokens(self._local_as_full(spec, work), self._flight(work))

    def fixed_bytes(self, spec: Spec, dtype: KVDtype, work: Workload | None = None) -> int:
        """A Mamba layer's state page(s): one, or the release's "align" mode count."""
        state = super().fixed_bytes(spec, dtype, work)
        if isinstance(spec, FixedState) and work is not None and work.state_page_bytes is not None:
            return state * self.rules.state_pages()
        return state

    def vllm_layout(self, layout: RankLayout, dtype: KVDtype, block_size: int | None) -> Layout:
        # The RankLayout, not ``model.layer_specs``: the work is per layer run, never per layer;
        # a Falcon-H1 / Zamba2 layer is its attention and its Mamba mixer (vllm_kv.cache_layout).
        layout = cache_layout(layout)
        choice = self.rules.block_size(layout, dtype, block_size=block_size)
        return self.rules.layout(layout, dtype, block_size=choice.block_size,
                                 state_dtype=self.state_dtype(dtype, layout.model))

    def pool(self, req: PoolRequest) -> Pool:
        from kvcalc.engines.vllm import block_pool

        rules, model = self.rules, req.model
        cache = cache_layout(req.layout)
        choice = rules.block_size(cache, req.dtype, gpu=req.gpu, block_size=req.block_size)
        vl = self.vllm_layout(cache, req.dtype, choice.block_size)
        flight = rules.in_flight_tokens(req.max_num_batched_tokens, req.layout.pp)
        vk = rules.kv(cache, req.dtype, req.kv_budget_bytes, req.max_model_len, tp=req.layout.tp,
                      pp=req.layout.pp, block_size=choice.block_size,
                      max_num_batched_tokens=req.max_num_batched_tokens, state_dtype=self.state_dtype(req.dtype, model),
                      dcp=req.dcp)
        return block_pool(req, vl, vk, flight, engine_version=self.version,
                          notes=(f"block size {vk.block_size}: {choice.reason}",))


ENGINE = Vllm020Engine()
