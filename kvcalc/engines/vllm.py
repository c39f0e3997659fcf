"""vLLM (V1 engine, commit 001cabc1): paged blocks, what vLLM reserves for one request.

``estimate --engine vllm`` reports, per layer, vLLM's ``max_memory_usage_bytes`` for one request
of ``--seq-len`` tokens (``vllm/v1/kv_cache_interface.py`` @ 001cabc1), the same quantity the
planner's fit check uses (``kvcalc.engines.vllm_kv``), expressed as tokens held:

* full attention and MLA: ``cdiv(L, B) x B`` tokens (whole blocks);
* sliding window W: ``(cdiv(min(W - 1 + max_num_batched_tokens, L), B) + 1) x B`` (the +1 block
  covers a window that does not start on a block boundary);
* chunked local attention C: ``cdiv(min(C + max_num_batched_tokens, L), B) x B``;
* recurrent state layers: their state, no tokens.

Page bytes per token: H x (d + d_v) x b (plus per-token-head scales), MLA the latent
(kv_lora_rank + rope) x b with no factor 2. The block size is 16 (``CacheConfig``), forced to 64
for MLA models only when no ``--block-size`` is given (FlashMLA); an explicit block size wins. A
hybrid attention + Mamba model raises the attention block so one page holds the Mamba state and
pads the state to that page (``prepare``), exactly as the planner's layout does.
Per-tensor fp8 scales live outside the page and are not counted (``KVQuantMode.FP8_PER_TENSOR``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar

from kvcalc.dtypes import KVDtype, cdiv
from kvcalc.engines.base import Engine, Pool, PoolRequest, Workload
from kvcalc.engines.vllm_kv import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_MAX_NUM_BATCHED_TOKENS,
    DSA_INDEXER_QUANT_BLOCK,
    FP8_DS_MLA_BYTES,
    MAMBA_ALIGN,
    MLA_BLOCK_SIZE,
    VLLM_VERSION,
    Layout,
    build_layout,
    cache_layout,
    cache_specs,
    check_stateful,
    default_block_size,
    refuse_cross_attention,
    vllm_dsa_bytes_per_token,
    vllm_kv,
)
from kvcalc.specs import (
    ChunkedAttention,
    CrossAttention,
    FixedState,
    FullAttention,
    IndexedLatentAttention,
    LatentAttention,
    SlidingWindowAttention,
    Spec,
)
from kvcalc.units import GiB

if TYPE_CHECKING:
    from kvcalc.engines.activation import Term
    from kvcalc.engines.memory import Budget
    from kvcalc.engines.vllm_kv import VllmKV
    from kvcalc.layout import RankLayout
    from kvcalc.measure.layout import TensorLayout
    from kvcalc.models import ModelConfig

DEFAULT_MAX_NUM_SEQS = 256
"""``max_num_seqs`` when no GPU is named (``--kv-budget`` alone); with a GPU, vLLM's own default."""


class VllmEngine(Engine):
    name = "vllm"
    title = "vLLM (paged blocks)"
    version = VLLM_VERSION
    source = (
        "vLLM V1 @ 001cabc1, vllm/v1/kv_cache_interface.py max_memory_usage_bytes: whole blocks of "
        "--block-size tokens (16; 64 for MLA unless given); sliding layers cdiv(min(W-1+chunk, L), B)+1 blocks"
    )
    plannable = True
    fraction_flag = "--gpu-memory-utilization"
    default_fraction = "0.92"
    """vllm/config/cache.py @ 002f10e0 (0.92 since PR #38284, released in 0.20.0); see engines/memory.py."""
    shares_prefix = True
    refuses_when_free_below_request = True
    """vllm/v1/worker/utils.py ``request_memory`` (0.20.0-0.33.0): "Free memory on device (free/total
    GiB) on startup is less than desired GPU memory utilization (util, requested GiB)"."""
    log_engine = "vllm"
    dtype_spellings: ClassVar[dict[str, str]] = {"fp8_inc": "fp8_e4m3"}
    """vllm/config/cache.py CacheDType: ``fp8_inc`` is fp8 E4M3 for Intel Gaudi (1 byte a value)."""
    smaller_cache_dtypes = (("fp8", "vLLM --kv-cache-dtype fp8"),)
    beyond_context = "vLLM refuses this unless overridden (VLLM_ALLOW_LONG_MAX_MODEL_LEN)"

    # MambaStateDtypeCalculator (vllm/model_executor/layers/mamba/mamba_utils.py, 0.19.1): conv
    # state in get_kv_cache_torch_dtype(mamba_cache_dtype "auto", model dtype), the temporal state
    # the same unless mamba_ssm_cache_dtype is set (NemotronH: float16, 2 bytes like the bf16
    # model); --kv-cache-dtype does not apply to them.
    states_in_model_dtype = True

    def auto_dtype(self, model: ModelConfig) -> tuple[str, str]:
        # vllm/config/model.py _resolve_auto_dtype (0.33.0, and since 2024): a float32 config is
        # downcast to the platform's first supported dtype, bf16 on Ampere and newer (fp16 on
        # V100/T4: the same 2 bytes); the cache dtype "auto" follows the model dtype.
        if model.dtype == "fp32":
            return "bf16", "vLLM downcasts a float32 model"
        return model.dtype, "model dtype"

    def compute_dtype(self, model: ModelConfig) -> str:
        return self.auto_dtype(model)[0]

    @staticmethod
    def block_size(spec: Spec, work: Workload) -> int:
        if work.block_size is not None:
            return work.block_size
        return MLA_BLOCK_SIZE if isinstance(spec, LatentAttention) else DEFAULT_BLOCK_SIZE

    def prepare(self, layout: RankLayout, dtype: KVDtype, state_dtype: KVDtype, work: Workload) -> Workload:
        """The block size vLLM uses for every layer (``default_block_size``), raised for a hybrid
        attention + Mamba model to the smallest multiple of 16 whose page holds the state, and the
        state padded to that page (``HybridAttentionMambaModelConfig.verify_and_update_config``)."""
        import dataclasses

        check_stateful(layout.model)
        specs = cache_specs(layout.counts)  # a Falcon-H1 / Zamba2 layer: its attention and its Mamba mixer
        block = default_block_size(specs, work.block_size)
        states = [s.fixed_bytes(state_dtype) for s in specs if isinstance(s, FixedState)]
        attn = [s.bytes_per_token(dtype) for s in specs if s.grows]
        page: int | None = None
        if states and attn:
            if block * attn[0] < max(states):
                block = MAMBA_ALIGN * cdiv(max(states), MAMBA_ALIGN * attn[0])
            page = block * attn[0]
        return dataclasses.replace(work, block_size=block, state_page_bytes=page)

    def _blocks(self, spec: Spec, work: Workload) -> int:
        b = self.block_size(spec, work)
        length = work.seq_len
        if isinstance(spec, SlidingWindowAttention):
            return cdiv(min(spec.window - 1 + work.max_num_batched_tokens, length), b) + 1
        if isinstance(spec, ChunkedAttention):
            return cdiv(min(spec.chunk_size + work.max_num_batched_tokens, length), b)
        return cdiv(length, b)

    def tokens_held(self, spec: Spec, work: Workload) -> int:
        self.refuse_stateful_attention(spec)
        if isinstance(spec, CrossAttention):
            refuse_cross_attention([spec])
        if not spec.grows:
            return 0
        return self._blocks(spec, work) * self.block_size(spec, work)

    def bytes_per_token(self, spec: Spec, dtype: KVDtype) -> int:
        if isinstance(spec, IndexedLatentAttention):
            return vllm_dsa_bytes_per_token(spec, dtype)
        return spec.bytes_per_token(dtype)

    def fixed_bytes(self, spec: Spec, dtype: KVDtype, work: Workload | None = None) -> int:
        state = super().fixed_bytes(spec, dtype, work)
        if isinstance(spec, FixedState) and work is not None and work.state_page_bytes is not None:
            return max(state, work.state_page_bytes)  # the Mamba page padded to the attention page
        return state

    def fixed_layer_bytes(self, spec: Spec, dtype: KVDtype) -> int:
        # Per-tensor K/V scales are module attributes, not carved from the KV pages.
        return 0

    def describe_tokens(self, spec: Spec, work: Workload) -> str:
        if not spec.grows:
            return "0 tokens"
        b = self.block_size(spec, work)
        blocks = self._blocks(spec, work)
        if isinstance(spec, SlidingWindowAttention):
            span = min(spec.window - 1 + work.max_num_batched_tokens, work.seq_len)
            return (
                f"(cdiv(min({spec.window} - 1 + {work.max_num_batched_tokens}, {work.seq_len}) = {span}, {b}) + 1)"
                f" = {blocks} blocks x {b} = {blocks * b} tokens"
            )
        if isinstance(spec, ChunkedAttention):
            span = min(spec.chunk_size + work.max_num_batched_tokens, work.seq_len)
            return f"cdiv({span}, {b}) = {blocks} blocks x {b} = {blocks * b} tokens"
        return f"cdiv({work.seq_len}, {b}) = {blocks} blocks x {b} = {blocks * b} tokens"

    # -- tensors: FlashAttention's [2, num_blocks, B, H, d] per layer; MLA [num_blocks, B, latent]
    def _paged(self, spec: Spec, work: Workload, tokens: int) -> tuple[int, int] | None:
        block = self.block_size(spec, work)
        if block <= 0 or tokens % block:
            return None
        return work.batch * tokens // block, block

    def attention_tensors(self, spec: FullAttention, dtype: KVDtype, work: Workload,
                          tokens: int) -> list[TensorLayout]:
        from kvcalc.measure.layout import typed

        h, d, dv = spec.num_kv_heads, spec.head_dim, spec.v_dim
        paged = self._paged(spec, work, tokens)
        if paged is None:
            n = work.batch * tokens
            return [typed("k_buffer", (n, h, d), dtype), typed("v_buffer", (n, h, dv), dtype)]
        blocks, block = paged
        if d == dv:
            return [typed("kv_cache", (2, blocks, block, h, d), dtype)]
        return [typed("k_cache", (blocks, block, h, d), dtype), typed("v_cache", (blocks, block, h, dv), dtype)]

    def latent_tensors(self, spec: LatentAttention, dtype: KVDtype, work: Workload,
                       tokens: int) -> list[TensorLayout]:
        from kvcalc.measure.layout import TensorLayout as TensorLayoutCls
        from kvcalc.measure.layout import typed

        paged = self._paged(spec, work, tokens)
        if paged is None:
            return super().latent_tensors(spec, dtype, work, tokens)
        if isinstance(spec, IndexedLatentAttention) and dtype.name == "fp8_e4m3":
            return [TensorLayoutCls(name="kv_cache", shape=(paged[0], paged[1], FP8_DS_MLA_BYTES), torch_dtype="uint8")]
        return [typed("kv_cache", (paged[0], paged[1], spec.latent_dim), dtype)]

    def indexer_tensors(self, spec: IndexedLatentAttention, dtype: KVDtype, work: Workload,
                        tokens: int) -> list[TensorLayout]:
        # DeepseekV32IndexerCache: uint8 [num_blocks, block, index_head_dim + index_head_dim // 128 x 4].
        from kvcalc.measure.layout import TensorLayout as TL

        paged = self._paged(spec, work, tokens)
        blocks, block = paged if paged is not None else (work.batch, tokens)
        row = spec.index_head_dim + spec.index_head_dim // DSA_INDEXER_QUANT_BLOCK * 4
        return [TL(name="indexer_k_cache", shape=(blocks, block, row), torch_dtype="uint8")]

    def block_rows_lead(self, work: Workload, tokens: int) -> tuple[int, ...]:
        return (work.batch * tokens,)

    # -- memory -----------------------------------------------------------------------------
    def fraction_budget(self, frac: Decimal, total_bytes: int, weights: int, activation: int,
                        non_torch: int) -> Budget:
        from kvcalc.engines.memory import fraction_of_total

        assert self.fraction_flag is not None
        return fraction_of_total(self.name, self.fraction_flag, frac, total_bytes, weights, activation, non_torch)

    def profile_terms(self, model: ModelConfig, *, tp: int, max_num_batched_tokens: int,
                      max_num_seqs: int | None) -> tuple[Term, ...]:
        """The profile run's activation peak, the CUDA-graph estimate (subtracted since 0.20.0) and
        non-torch memory (kvcalc/engines/activation.py); the same profile run in every V1 release read."""
        from kvcalc.engines.activation import vllm_activation, vllm_cudagraph, vllm_non_torch

        dtype = self.compute_dtype(model)
        act = vllm_activation(model, tp=tp, max_num_batched_tokens=max_num_batched_tokens,
                              max_num_seqs=max_num_seqs, dtype=dtype)
        graphs = vllm_cudagraph(model, tp=tp, max_num_batched_tokens=max_num_batched_tokens,
                                max_num_seqs=max_num_seqs, dtype=dtype)
        return act, graphs, vllm_non_torch(tp)

    def no_memory_reason(self, bud: Budget) -> str:
        from kvcalc.engines.vllm_kv import CONSERVING_MEMORY_URL

        return ("No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
                f"initializing the engine. See {CONSERVING_MEMORY_URL} for more details.")

    def batch_defaults(self, driver_bytes: int | None, gpu_label: str, max_model_len: int,
                       max_num_batched_tokens: int | None, max_num_seqs: int | None) -> tuple[int, int | None, str]:
        """(max_num_batched_tokens, max_num_seqs, where they came from) as ``vllm serve`` sets them.

        vLLM ``EngineArgs.get_batch_defaults`` / ``_set_default_max_num_seqs_and_batched_tokens_args``
        (vllm/engine/arg_utils.py, the tree of 001cabc1): usage context OPENAI_API_SERVER; a GPU whose
        NVML total is >= 70 GiB and whose name has no "a100" gets 8192 tokens and 1024 sequences,
        any other 2048 and 256; then, for defaulted values, ``tokens = min(seqs x max_model_len,
        tokens)`` and ``seqs = min(seqs, tokens)`` (chunked prefill is on in V1). With no GPU named
        (``--kv-budget`` alone) kvcalc uses 8192 and 256.
        """
        if driver_bytes is None:
            tokens, seqs, why = DEFAULT_MAX_NUM_BATCHED_TOKENS, DEFAULT_MAX_NUM_SEQS, "kvcalc's default (no GPU named)"
        elif driver_bytes >= 70 * GiB and "a100" not in gpu_label.lower():
            tokens, seqs, why = 8192, 1024, "vllm serve's default for a GPU of 70 GiB or more (not A100)"
        else:
            tokens, seqs, why = 2048, 256, "vllm serve's default for this GPU (under 70 GiB, or an A100)"
        tokens = min((max_num_seqs or seqs) * max_model_len, tokens) if max_num_batched_tokens is None \
            else max_num_batched_tokens
        seqs = min(seqs, tokens) if max_num_seqs is None else max_num_seqs
        if max_num_batched_tokens is not None and max_num_seqs is not None:
            why = "given"
        return tokens, seqs, why

    # -- pool: vLLM's own block arithmetic (engines/vllm_kv.py) ------------------------------
    def vllm_layout(self, layout: RankLayout, dtype: KVDtype, block_size: int | None) -> Layout:
        return build_layout(cache_layout(layout), dtype, block_size=block_size,
                            state_dtype=self.state_dtype(dtype, layout.model))

    def pool(self, req: PoolRequest) -> Pool:
        vl = self.vllm_layout(req.layout, req.dtype, req.block_size)
        mnbt = req.max_num_batched_tokens
        vk = vllm_kv(cache_layout(req.layout), req.dtype, req.kv_budget_bytes, req.max_model_len,
                     block_size=req.block_size, max_num_batched_tokens=mnbt, layout=vl)
        return block_pool(req, vl, vk, mnbt, engine_version=vk.version)


def block_pool(req: PoolRequest, vl: Layout, vk: VllmKV, in_flight_tokens: int, *, engine_version: str,
               notes: tuple[str, ...] = ()) -> Pool:
    """The pool of a vLLM block count ``vk`` over the layout ``vl`` (every vLLM release's): a
    request of L tokens costs the blocks its largest worker needs (``in_flight_tokens`` of a
    chunked prefill held at once); a shared prefix saves the whole blocks of its full-attention /
    MLA groups; block 0 is vLLM's null block. Under decode context parallelism a rank holds
    ``cdiv(L, dcp)`` tokens of each request (kv_cache_interface.py:654-659 @ 0.34.0)."""
    from kvcalc.engines.capacity import Capacity

    workers = vl.active
    dcp = req.dcp

    def cost(length: int) -> int:
        return max(w.blocks_per_request(cdiv(length, dcp), in_flight_tokens) for w in workers)

    def shared(p: int) -> int:
        # Prefix caching hashes whole blocks of full-attention / MLA groups only.
        return max(sum(p // (v.block_size * dcp) for v, _ in w.groups if v.kind in ("full", "mla"))
                   for w in workers)

    cap = Capacity(unit="blocks", available=max(vk.num_blocks - 1, 0), cost=cost, shared=shared,
                   max_len=max(req.model.max_position_embeddings, vk.max_model_len))
    return Pool(capacity=cap, fits=vk.fits, num_blocks=vk.num_blocks, kv_cache_tokens=vk.kv_cache_tokens,
                max_concurrency=vk.max_concurrency, estimated_max_model_len=vk.estimated_max_model_len,
                reason=vk.error, block_size=vk.block_size, unit_bytes=vk.block_bytes, engine_version=engine_version,
                log_lines=list(vk.log_lines), notes=list(notes), details=vk.to_dict(), max_running=req.max_num_seqs,
                max_running_flag="--max-num-seqs")


VllmPolicy = VllmEngine
"""The former name."""
ENGINE = VllmEngine()
POLICY = ENGINE
