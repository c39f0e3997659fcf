"""transformers ``StaticCache(config, max_cache_len)`` (transformers 5.23.0), allocated up front.

Source: ``transformers/cache_utils.py`` @ 5.23.0, ``STATIC_LAYER_TYPE_MAPPING``:

* ``full_attention`` -> ``StaticLayer``: ``torch.zeros([batch, heads, max_cache_len, head_dim])``
  for K and for V at the first update (``lazy_initialization``), plus an int64 scalar
  ``cumulative_length``;
* ``sliding_attention`` / ``chunked_attention`` -> ``StaticSlidingWindowLayer``:
  ``effective_max_cache_len = min(sliding_window, max_cache_len)`` positions (the whole window,
  not window - 1), the same int64 ``cumulative_length``.

kvcalc's ``--seq-len`` is ``max_cache_len``. Head counts, MLA latents and Falcon's broadcast
heads are as in the ``hf`` policy (the model's ``forward`` decides what it passes to ``update``).
The int64 scalars (8 B per attention layer) are bookkeeping, reported apart from ``total_bytes``.
"""

from __future__ import annotations

from kvcalc.dtypes import KVDtype
from kvcalc.engines.base import Workload
from kvcalc.engines.hf import (
    INT64_BYTES,
    TRANSFORMERS_VERSION,
    HfTensors,
    hf_bytes_per_token,
    hf_state_rows,
    local_window,
)
from kvcalc.errors import UnsupportedByEngineError
from kvcalc.specs import CrossAttention, FixedState, IndexedLatentAttention, Spec


class HfStaticPolicy(HfTensors):
    name = "hf-static"
    title = "transformers StaticCache"
    version = TRANSFORMERS_VERSION
    source = (
        "transformers 5.23.0 cache_utils.py StaticCache: StaticLayer preallocates max_cache_len = --seq-len "
        "positions, StaticSlidingWindowLayer min(window, max_cache_len); int64 cumulative_length per layer"
    )

    def tokens_held(self, spec: Spec, work: Workload) -> int:
        if isinstance(spec, CrossAttention):
            # Text-only: the cross-attention layer is skipped and its StaticLayer never initialised
            # (modeling_mllama.py MllamaTextModel.forward). With vision tokens the StaticLayer
            # would be sized by max_cache_len, not by the image: not modelled, so refused.
            if spec.encoder_tokens:
                raise UnsupportedByEngineError(
                    "--engine hf-static: cross-attention layers holding --image-tokens are not modelled "
                    "for transformers StaticCache; use --engine hf")
            return 0
        if not spec.grows:
            return 0
        window = local_window(spec)
        if window is not None:
            return min(window, work.seq_len)
        return work.seq_len

    def bytes_per_token(self, spec: Spec, dtype: KVDtype) -> int:
        return hf_bytes_per_token(spec, dtype)

    states_in_model_dtype = True

    def state_rows(self, spec: FixedState, dtype: KVDtype) -> list[tuple[str, int, KVDtype]]:
        return hf_state_rows(spec, dtype)  # StaticCache builds the same LinearAttentionLayer

    def bookkeeping_bytes(self, spec: Spec) -> int:
        # StaticLayer.__init__: self.cumulative_length = torch.tensor(0, dtype=int); a StaticIndexedLayer
        # adds indexer_cumulative_length at its first update; a cross-attention layer is a StaticLayer too.
        if isinstance(spec, IndexedLatentAttention):
            return 2 * INT64_BYTES
        return INT64_BYTES if spec.grows or isinstance(spec, CrossAttention) else 0

    def describe_tokens(self, spec: Spec, work: Workload) -> str:
        window = local_window(spec)
        held = self.tokens_held(spec, work)
        if window is not None:
            return f"min(window {window}, max_cache_len {work.seq_len}) = {held} tokens"
        return f"max_cache_len {held} tokens"


ENGINE = HfStaticPolicy()
POLICY = ENGINE
