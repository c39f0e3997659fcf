"""SGLang: a token-granular pool (page size 1 by default), MLA stored as the latent.

Source: sgl-project/sglang ``python/sglang/srt/mem_cache/memory_pool.py`` (``MHATokenToKVPool``:
per layer K ``[size + page_size, H_rank, head_dim]`` and V ``[..., v_head_dim]``;
``MLATokenToKVPool``: one ``[size + page_size, 1, kv_lora_rank + qk_rope_head_dim]`` buffer) and
``model_runner.profile_max_num_token`` / ``pool_configurator.py`` (cell size per token:
``H_rank x (d + d_v) x L x b``, MLA ``(kv_lora_rank + rope) x L x b``), as described in the
kvcalc reference §2. A sequence of ``L`` tokens holds ``L`` slots per layer, rounded up to whole
pages when ``--block-size`` (SGLang ``--page-size``) is above 1. Sliding-window layers are
modelled with a full cache (SGLang's hybrid SWA pool is sized separately from a ratio and is a
planner concern); recurrent layers hold their state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kvcalc.dtypes import KVDtype, cdiv
from kvcalc.engines.base import StoragePolicy, Workload
from kvcalc.errors import UnsupportedByEngineError
from kvcalc.specs import CrossAttention, FixedState, IndexedLatentAttention, Spec

if TYPE_CHECKING:
    from kvcalc.models import ModelConfig

SGLANG_VERSION = "SGLang 0.5.23 (memory_pool.py token pools)"


class SglangPolicy(StoragePolicy):
    name = "sglang"
    title = "SGLang (token pool)"
    version = SGLANG_VERSION
    source = (
        "SGLang memory_pool.py MHATokenToKVPool/MLATokenToKVPool: one slot per token per layer "
        "(page_size 1 unless --block-size), MLA latent (kv_lora_rank + rope) x b, no window cap"
    )

    def auto_dtype(self, model: ModelConfig) -> tuple[str, str]:
        # sglang/srt/configs/model_config.py _get_and_verify_dtype (0.5.23): a float32 config runs
        # in float16, Gemma models in bfloat16; the cache dtype "auto" follows the model dtype.
        if model.dtype == "fp32":
            gemma = (model.architecture or "").lower().startswith("gemma") or model.name.lower().startswith("gemma")
            return ("bf16", "SGLang downcasts a float32 Gemma to bf16") if gemma else (
                "fp16", "SGLang downcasts a float32 model to fp16")
        return model.dtype, "model dtype"

    def state_rows(self, spec: FixedState, dtype: KVDtype) -> list[tuple[str, int, KVDtype]]:
        # sglang/srt/configs/mamba_utils.py mamba2_state_dtype (0.5.23): conv state bfloat16
        # (SGLANG_MAMBA_CONV_DTYPE default), temporal / SSM state float32 (mamba_ssm_dtype default),
        # in the separate Mamba pool; conv keeps conv_kernel - 1 columns, as vLLM's.
        from kvcalc.dtypes import get_dtype

        return [(key, n, get_dtype("bf16" if key == "conv" else "fp32")) for key, n in spec.state_elements.items()]

    def bytes_per_token(self, spec: Spec, dtype: KVDtype) -> int:
        if isinstance(spec, IndexedLatentAttention):
            # NSATokenToKVPool (memory_pool.py) / pool_configurator: the latent plus an fp8 indexer key
            # with one float32 scale per 128 values, index_head_dim + index_head_dim // 128 x 4 bytes
            # (kvcalc reference 2.4), whatever the latent's dtype.
            return spec.latent_bytes_per_token(dtype) + spec.index_head_dim + spec.index_head_dim // 128 * 4
        return spec.bytes_per_token(dtype)

    def tokens_held(self, spec: Spec, work: Workload) -> int:
        if isinstance(spec, CrossAttention):
            if spec.encoder_tokens:
                raise UnsupportedByEngineError(
                    "--engine sglang: cross-attention (Mllama) pools for vision tokens are not modelled")
            return 0
        if not spec.grows:
            return 0
        page = work.block_size or 1
        return cdiv(work.seq_len, page) * page

    def describe_tokens(self, spec: Spec, work: Workload) -> str:
        page = work.block_size or 1
        held = self.tokens_held(spec, work)
        if page == 1:
            return f"{held} tokens (page 1)"
        return f"cdiv({work.seq_len}, page {page}) x {page} = {held} tokens"


POLICY = SglangPolicy()
