"""vLLM (V1 engine, commit 001cabc1): paged blocks, what vLLM reserves for one request.

``estimate --engine vllm`` reports, per layer, vLLM's ``max_memory_usage_bytes`` for one request
of ``--seq-len`` tokens (``vllm/v1/kv_cache_interface.py`` @ 001cabc1), the same quantity the
planner's fit check uses (``kvcalc.planner.vllm_kv``), expressed as tokens held:

* full attention and MLA: ``cdiv(L, B) x B`` tokens (whole blocks);
* sliding window W: ``(cdiv(min(W - 1 + max_num_batched_tokens, L), B) + 1) x B`` (the +1 block
  covers a window that does not start on a block boundary);
* chunked local attention C: ``cdiv(min(C + max_num_batched_tokens, L), B) x B``;
* recurrent state layers: their state, no tokens.

Page bytes per token: H x (d + d_v) x b (plus per-token-head scales), MLA the latent
(kv_lora_rank + rope) x b with no factor 2. The block size is 16 (``CacheConfig``), forced to 64
for MLA models only when no ``--block-size`` is given (FlashMLA); an explicit block size wins.
Per-tensor fp8 scales live outside the page and are not counted (``KVQuantMode.FP8_PER_TENSOR``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kvcalc.dtypes import KVDtype, cdiv
from kvcalc.engines.base import StoragePolicy, Workload
from kvcalc.errors import UnsupportedByEngineError
from kvcalc.planner.vllm_kv import DEFAULT_BLOCK_SIZE, MLA_BLOCK_SIZE, VLLM_VERSION
from kvcalc.specs import (
    ChunkedAttention,
    CrossAttention,
    IndexedLatentAttention,
    LatentAttention,
    SlidingWindowAttention,
    Spec,
)

if TYPE_CHECKING:
    from kvcalc.models import ModelConfig


DSA_INDEXER_QUANT_BLOCK = 128
"""``Indexer.quant_block_size`` (vllm/model_executor/models/deepseek_v2.py): one float32 scale per 128
fp8 indexer values."""
FP8_DS_MLA_BYTES = 656
"""``fp8_ds_mla`` entry: 512 fp8 latent values + 4 float32 scales (16 B) + 64 bf16 rope values (128 B)
(vllm/v1/attention/backends/mla/flashmla_sparse.py; kvcalc reference 1.2)."""


def vllm_dsa_bytes_per_token(spec: IndexedLatentAttention, dtype: KVDtype) -> int:
    """One token of a DSA layer in vLLM: the MLA page plus the indexer's own cache.

    * The indexer key lives in a separate ``DeepseekV32IndexerCache`` layer whatever ``--kv-cache-dtype``
      says: ``head_dim = index_head_dim + index_head_dim // 128 x 4`` bytes of ``torch.uint8`` (fp8
      values and float32 scales; vllm/model_executor/models/deepseek_v2.py ``Indexer.__init__``, vLLM
      main 2026): 132 B for ``index_head_dim`` 128.
    * An fp8 cache for the latent becomes ``fp8_ds_mla`` (``DeepseekV32ForCausalLM.verify_and_update_config``):
      656 B per token, valid only for the 512 + 64 latent of DeepSeek-V3.2 / GLM-5.
    """
    indexer = spec.index_head_dim + spec.index_head_dim // DSA_INDEXER_QUANT_BLOCK * 4
    if dtype.name == "fp8_e4m3":
        if (spec.kv_lora_rank, spec.qk_rope_head_dim) != (512, 64):
            raise UnsupportedByEngineError(
                f"--engine vllm: fp8_ds_mla is laid out for a 512 + 64 latent, not "
                f"{spec.kv_lora_rank} + {spec.qk_rope_head_dim}")
        return FP8_DS_MLA_BYTES + indexer
    return spec.latent_bytes_per_token(dtype) + indexer


class VllmPolicy(StoragePolicy):
    name = "vllm"
    title = "vLLM (paged blocks)"
    version = VLLM_VERSION
    source = (
        "vLLM V1 @ 001cabc1, vllm/v1/kv_cache_interface.py max_memory_usage_bytes: whole blocks of "
        "--block-size tokens (16; 64 for MLA unless given); sliding layers cdiv(min(W-1+chunk, L), B)+1 blocks"
    )

    def auto_dtype(self, model: ModelConfig) -> tuple[str, str]:
        # vllm/config/model.py _resolve_auto_dtype (0.33.0, and since 2024): a float32 config is
        # downcast to the platform's first supported dtype, bf16 on Ampere and newer (fp16 on
        # V100/T4: the same 2 bytes); the cache dtype "auto" follows the model dtype.
        if model.dtype == "fp32":
            return "bf16", "vLLM downcasts a float32 model"
        return model.dtype, "model dtype"

    # MambaStateDtypeCalculator (vllm/model_executor/layers/mamba/mamba_utils.py, 0.19.1): conv
    # state in get_kv_cache_torch_dtype(mamba_cache_dtype "auto", model dtype), the temporal state
    # the same unless mamba_ssm_cache_dtype is set (NemotronH: float16, 2 bytes like the bf16
    # model); --kv-cache-dtype does not apply to them.
    states_in_model_dtype = True

    @staticmethod
    def block_size(spec: Spec, work: Workload) -> int:
        if work.block_size is not None:
            return work.block_size
        return MLA_BLOCK_SIZE if isinstance(spec, LatentAttention) else DEFAULT_BLOCK_SIZE

    def _blocks(self, spec: Spec, work: Workload) -> int:
        b = self.block_size(spec, work)
        length = work.seq_len
        if isinstance(spec, SlidingWindowAttention):
            return cdiv(min(spec.window - 1 + work.max_num_batched_tokens, length), b) + 1
        if isinstance(spec, ChunkedAttention):
            return cdiv(min(spec.chunk_size + work.max_num_batched_tokens, length), b)
        return cdiv(length, b)

    def tokens_held(self, spec: Spec, work: Workload) -> int:
        if isinstance(spec, CrossAttention):
            # vLLM V1 would hold it as a CrossAttentionSpec (cdiv(max_num_encoder_input_tokens, B) pages),
            # but no vLLM release since 0.10.2 serves Mllama (its model file was removed), and the
            # version modelled here is later.
            raise UnsupportedByEngineError(
                f"--engine vllm: {VLLM_VERSION} does not serve cross-attention (Mllama) models; "
                "vLLM dropped Mllama in 0.10.2")
        if not spec.grows:
            return 0
        return self._blocks(spec, work) * self.block_size(spec, work)

    def bytes_per_token(self, spec: Spec, dtype: KVDtype) -> int:
        if isinstance(spec, IndexedLatentAttention):
            return vllm_dsa_bytes_per_token(spec, dtype)
        return spec.bytes_per_token(dtype)

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


POLICY = VllmPolicy()
