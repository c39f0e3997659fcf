"""vLLM 0.31.0-0.33.0: the engine of ``vllm@0.33``, a subclass of the 0.20 engine overriding only
what changed (every rule, with the wheel's file and line, in ``vllm_releases.Vllm033`` and
``docs/engines.md`` §1):

* the fit check and the longest-context estimate hold back the null block (one block's bytes);
* sliding-window and chunked-local layers keep ``max_in_flight_tokens = (pp + 1) x
  max_num_batched_tokens`` past their window (async scheduling, on by default);
* a Mamba / linear-attention layer reserves 3 state pages a request ("align" mode: hybrid models
  get prefix caching by default);
* the MLA block size follows the GPU's attention backend (16 on Hopper with a 16-bit cache, 64
  with fp8, 32 on Blackwell); kvcalc assumes Hopper unless ``--block-size`` is given;
* chunked local attention turns the hybrid KV-cache manager off, so its layers are allocated as
  full attention (as in 0.20);
* the logged token figure is ``int(concurrency x max_model_len)``, printed on one line with the
  concurrency; the fit error says "model's".
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, ClassVar

from kvcalc.dtypes import KVDtype
from kvcalc.engines.vllm import VllmEngine
from kvcalc.engines.vllm_kv import Layout
from kvcalc.engines.vllm_releases import Vllm020, Vllm033
from kvcalc.specs import ChunkedAttention, FixedState, FullAttention, SlidingWindowAttention, Spec

if TYPE_CHECKING:
    from kvcalc.engines.base import Pool, PoolRequest, Workload
    from kvcalc.layout import RankLayout


class Vllm033Engine(VllmEngine):
    rules: ClassVar[Vllm020] = Vllm033()
    version = Vllm033.title
    source = (
        "vLLM 0.31.0-0.33.0 wheels: 0.20's paged blocks with the null block held back in the fit check, "
        "sliding layers cdiv(min(W-1+(pp+1)x chunk, L), B)+1 blocks, Mamba align mode (3 pages), MLA block by "
        "GPU backend; docs/engines.md"
    )

    def _flight(self, work: Workload) -> Workload:
        return dataclasses.replace(
            work, max_num_batched_tokens=self.rules.in_flight_tokens(work.max_num_batched_tokens, 1))

    def _local_as_full(self, spec: Spec, work: Workload) -> Spec:
        """Sliding / chunked layers allocated as full when the hybrid manager is off (``prepare``)."""
        if not work.windows and isinstance(spec, (SlidingWindowAttention, ChunkedAttention)):
            return FullAttention(num_kv_heads=spec.num_kv_heads, head_dim=spec.head_dim, v_head_dim=spec.v_head_dim)
        return spec

    def prepare(self, layout: RankLayout, dtype: KVDtype, state_dtype: KVDtype, work: Workload) -> Workload:
        specs = list(layout.counts)
        block = self.rules.block_size(specs, dtype, block_size=work.block_size).block_size
        block = self.rules.hybrid_block_size(specs, dtype, state_dtype, block)
        states = [s for s in specs if isinstance(s, FixedState)]
        attn = [s.bytes_per_token(dtype) for s in specs if s.grows]
        page = block * attn[0] if states and attn else None
        chunked = any(isinstance(s, ChunkedAttention) for s in specs)
        full = any(type(s) is FullAttention for s in specs)
        return dataclasses.replace(work, block_size=block, state_page_bytes=page,
                                   windows=work.windows and not (chunked and full))

    def tokens_held(self, spec: Spec, work: Workload) -> int:
        return super().tokens_held(self._local_as_full(spec, work), self._flight(work))

    def describe_tokens(self, spec: Spec, work: Workload) -> str:
        return super().describe_tokens(self._local_as_full(spec, work), self._flight(work))

    def fixed_bytes(self, spec: Spec, dtype: KVDtype, work: Workload | None = None) -> int:
        state = super().fixed_bytes(spec, dtype, work)
        if isinstance(spec, FixedState) and work is not None and work.state_page_bytes is not None:
            return state * self.rules.state_pages()
        return state

    def vllm_layout(self, layout: RankLayout, dtype: KVDtype, block_size: int | None) -> Layout:
        choice = self.rules.block_size(layout.model.layer_specs, dtype, block_size=block_size)
        return self.rules.layout(layout.model.layer_specs, dtype, tp=layout.tp, pp=layout.pp,
                                 block_size=choice.block_size, state_dtype=self.state_dtype(dtype, layout.model))

    def pool(self, req: PoolRequest) -> Pool:
        from kvcalc.engines.capacity import Capacity

        rules = self.rules
        model = req.model
        vl = self.vllm_layout(req.layout, req.dtype, req.block_size)
        flight = rules.in_flight_tokens(req.max_num_batched_tokens, req.layout.pp)
        vk = rules.kv(model.layer_specs, req.dtype, req.kv_budget_bytes, req.max_model_len, tp=req.layout.tp,
                      pp=req.layout.pp, block_size=req.block_size, max_num_batched_tokens=req.max_num_batched_tokens,
                      state_dtype=self.state_dtype(req.dtype, model))
        workers = vl.active

        def cost(length: int) -> int:
            return max(w.blocks_per_request(length, flight) for w in workers)

        def shared(p: int) -> int:
            return max(sum(p // g.spec.block_size for g in w.groups if g.spec.kind in ("full", "mla"))
                       for w in workers)

        cap = Capacity(unit="blocks", available=max(vk.num_blocks - 1, 0), cost=cost, shared=shared,
                       max_len=max(model.max_position_embeddings, vk.max_model_len))
        choice = rules.block_size(model.layer_specs, req.dtype, block_size=req.block_size)
        notes = [f"block size {vk.block_size}: {choice.reason}"]
        from kvcalc.engines.base import Pool

        return Pool(capacity=cap, fits=vk.fits, num_blocks=vk.num_blocks, kv_cache_tokens=vk.kv_cache_tokens,
                    max_concurrency=vk.max_concurrency, estimated_max_model_len=vk.estimated_max_model_len,
                    reason=vk.error, block_size=vk.block_size, unit_bytes=vk.block_bytes, engine_version=self.version,
                    log_lines=list(vk.log_lines), notes=notes, details=vk.to_dict(), max_running=req.max_num_seqs,
                    max_running_flag="--max-num-seqs")


ENGINE = Vllm033Engine()
