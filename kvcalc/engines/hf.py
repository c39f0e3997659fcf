"""transformers ``DynamicCache`` as ``generate`` builds it (transformers 5.23.0).

Source: ``transformers/cache_utils.py`` @ 5.23.0. ``generate`` passes the model config to
``DynamicCache(config=...)``; ``get_layer_types_and_kwargs`` maps each layer type through
``DYNAMIC_LAYER_TYPE_MAPPING``:

* ``full_attention`` -> ``DynamicLayer``: K and V concatenated for every token
  (``[batch, heads, seq, head_dim]``);
* ``sliding_attention`` and ``chunked_attention`` -> ``DynamicSlidingWindowLayer``: after each
  update it keeps ``full_states[:, :, -sliding_window + 1:, :]``, i.e. the last ``window - 1``
  tokens (the chunk size plays the window for chunked layers), plus one int64 scalar
  ``_sliding_window_tensor``;
* MLA (DeepSeek-V2/V3 ``DeepseekV3Attention.forward``): ``past_key_values.update(kv_nope, k_rot)``
  caches the compressed latent (``kv_lora_rank``) as keys and the shared rope key
  (``qk_rope_head_dim``) as values, one head each;
* Falcon with ``new_decoder_architecture`` (``FalconAttention.forward``) broadcasts K/V to every
  query head before ``update``, so the cache holds ``num_attention_heads`` heads
  (``FullAttention.hf_cache_heads``); GQA heads are otherwise cached unexpanded;
* KV-sharing consumer layers (Gemma-4 ``kv_sharing_modes`` "reuse") are ``DummyLayer``: nothing.
* DSA layers (``indexed_attention`` -> ``DynamicIndexedLayer``; DeepSeek-V3.2, GLM-5) cache the MLA
  latent as above plus ``indexer_keys`` ``[batch, seq, index_head_dim]`` (one head), in the model dtype.
* Cross-attention layers (Mllama ``cross_attention_layers``) are ``DynamicLayer``s written once with
  the vision tokens (``MllamaTextCrossAttention.forward``); without an image they stay empty.

``--seq-len`` is the number of cached positions: ``generate`` with P prompt tokens and G new
tokens leaves P + G - 1 in the cache (the last token is sampled, never fed back).
``total_bytes`` is the K/V payload; the int64 ``_sliding_window_tensor`` of each sliding layer
(8 B) is reported apart, as bookkeeping.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kvcalc.dtypes import KVDtype
from kvcalc.engines.base import Engine, Workload
from kvcalc.specs import (
    ChunkedAttention,
    CrossAttention,
    FixedState,
    FullAttention,
    LatentAttention,
    SlidingWindowAttention,
    Spec,
)

if TYPE_CHECKING:
    from kvcalc.measure.layout import TensorLayout

TRANSFORMERS_VERSION = "transformers 5.23.0"
INT64_BYTES = 8
"""A torch.long scalar (``torch.tensor(n, dtype=torch.long)``)."""


def hf_bytes_per_token(spec: Spec, dtype: KVDtype) -> int:
    """Bytes per token with the heads transformers really caches (Falcon broadcasts K/V)."""
    if isinstance(spec, FullAttention) and spec.hf_cache_heads is not None:
        return spec.bytes_per_token_with_heads(dtype, spec.hf_cache_heads)
    return spec.bytes_per_token(dtype)


def hf_state_rows(spec: FixedState, dtype: KVDtype) -> list[tuple[str, int, KVDtype]]:
    """A linear-attention / Mamba layer's state as transformers 5.23 holds it (``LinearAttentionLayer``):
    ``conv_states`` ``[batch, channels, conv_kernel]`` in the model dtype (all ``conv_kernel``
    columns: ``lazy_initialization`` pads to the kernel), and ``recurrent_states`` (the GDN / SSM
    state) in float32 whatever the model dtype, as Qwen3-Next's gated delta rule and Nemotron-H's
    Mamba2 scan return it. Checked on random-weight models in tests/test_transformers_cache.py."""
    from kvcalc.dtypes import get_dtype

    rows: list[tuple[str, int, KVDtype]] = []
    for key, n in spec.state_elements.items():
        if key == "conv":
            k = spec.conv_kernel
            rows.append((key, -(-n * k // (k - 1)) if k else n, dtype))
        else:
            rows.append((key, n, get_dtype("fp32")))
    return rows


def local_window(spec: Spec) -> int | None:
    """The window a transformers sliding layer is built with (chunk size for chunked layers)."""
    if isinstance(spec, SlidingWindowAttention):
        return spec.window
    if isinstance(spec, ChunkedAttention):
        return spec.chunk_size
    return None


class HfTensors(Engine):
    """The tensors transformers' cache layers hold: K ``[b, H, T, d]``, V ``[b, H, T, d_v]`` (H is
    ``hf_cache_heads`` where transformers caches broadcast heads); MLA keys ``[b, 1, T,
    kv_lora_rank]`` and values ``[b, 1, T, qk_rope_head_dim]``."""

    def cache_heads(self, spec: FullAttention) -> int:
        return spec.hf_cache_heads if spec.hf_cache_heads is not None else spec.num_kv_heads

    def attention_tensors(self, spec: FullAttention, dtype: KVDtype, work: Workload,
                          tokens: int) -> list[TensorLayout]:
        from kvcalc.measure.layout import typed

        b, h = work.batch, self.cache_heads(spec)
        return [typed("keys", (b, h, tokens, spec.head_dim), dtype), typed("values", (b, h, tokens, spec.v_dim), dtype)]

    def latent_tensors(self, spec: LatentAttention, dtype: KVDtype, work: Workload,
                       tokens: int) -> list[TensorLayout]:
        from kvcalc.measure.layout import typed

        b = work.batch
        return [typed("keys", (b, 1, tokens, spec.kv_lora_rank), dtype),
                typed("values", (b, 1, tokens, spec.qk_rope_head_dim), dtype)]


class HfDynamicPolicy(HfTensors):
    name = "hf"
    title = "transformers DynamicCache"
    version = TRANSFORMERS_VERSION
    source = (
        "transformers 5.23.0 cache_utils.py DynamicCache(config=...): DynamicLayer keeps every token, "
        "DynamicSlidingWindowLayer (sliding and chunked) keeps the last window - 1; MLA caches the latent; "
        "Falcon new_decoder_architecture caches K/V broadcast to all query heads"
    )
    plannable = True

    def tokens_held(self, spec: Spec, work: Workload) -> int:
        if isinstance(spec, CrossAttention):
            return spec.encoder_tokens  # the vision tokens, written once at prefill
        if not spec.grows:
            return 0
        window = local_window(spec)
        if window is not None:
            return min(work.seq_len, window - 1)
        return work.seq_len

    def bytes_per_token(self, spec: Spec, dtype: KVDtype) -> int:
        return hf_bytes_per_token(spec, dtype)

    def bookkeeping_bytes(self, spec: Spec) -> int:
        # DynamicSlidingWindowLayer.__init__: self._sliding_window_tensor = torch.tensor(w, dtype=torch.long)
        return INT64_BYTES if local_window(spec) is not None else 0

    states_in_model_dtype = True  # LinearAttentionLayer: conv state in the model dtype, whatever the KV cache

    def state_rows(self, spec: FixedState, dtype: KVDtype) -> list[tuple[str, int, KVDtype]]:
        return hf_state_rows(spec, dtype)

    def describe_tokens(self, spec: Spec, work: Workload) -> str:
        window = local_window(spec)
        held = self.tokens_held(spec, work)
        if window is not None:
            return f"min({work.seq_len}, window {window} - 1) = {held} tokens"
        return f"{held} tokens"


HfDynamicEngine = HfDynamicPolicy
ENGINE = HfDynamicPolicy()
POLICY = ENGINE
