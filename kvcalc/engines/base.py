"""The storage-policy interface every engine implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kvcalc.dtypes import KVDtype
from kvcalc.specs import FixedState, FullAttention, LatentAttention, Spec

if TYPE_CHECKING:
    from kvcalc.models import ModelConfig


@dataclass(frozen=True, kw_only=True)
class Workload:
    """What an engine is asked to hold: one request shape, repeated ``batch`` times."""

    seq_len: int
    batch: int = 1
    block_size: int | None = None
    max_num_batched_tokens: int = 8192


class StoragePolicy:
    """Engine-neutral by default: subclasses override only what their engine does differently.

    ``tokens_held`` is per sequence and per layer; the estimate multiplies by ``batch``.
    """

    name = "neutral"
    title = "engine-neutral"
    version = ""
    source = "kvcalc definition: a full layer holds seq_len tokens, a sliding layer min(seq_len, window)"

    def tokens_held(self, spec: Spec, work: Workload) -> int:
        return spec.tokens_held(work.seq_len)

    def auto_dtype(self, model: ModelConfig) -> tuple[str, str]:
        """The cache dtype ``--kv-dtype auto`` means under this engine, and why (shown in the output)."""
        return model.dtype, "model dtype"

    def bytes_per_token(self, spec: Spec, dtype: KVDtype) -> int:
        return spec.bytes_per_token(dtype)

    def fixed_bytes(self, spec: Spec, dtype: KVDtype) -> int:
        """Per-sequence bytes that do not grow (recurrent state)."""
        if isinstance(spec, FixedState):
            return sum(d.row_bytes(n) for _, n, d in self.state_rows(spec, dtype))
        return spec.fixed_bytes(dtype)

    def state_rows(self, spec: FixedState, dtype: KVDtype) -> list[tuple[str, int, KVDtype]]:
        """(name, values, dtype) of each tensor a fixed-state layer holds per sequence; ``verify``
        allocates exactly these. ``dtype`` is what ``state_dtype`` chose. Engine-neutral: the
        declared element counts in that dtype."""
        return [(key, n, dtype) for key, n in spec.state_elements.items()]

    states_in_model_dtype = False
    """Whether Mamba / linear-attention states are kept in the model's compute dtype (as this
    engine runs the model) rather than the KV dtype; engines set it (``--kv-dtype fp8`` does not
    touch their states); kvcalc's neutral definition applies the KV dtype."""

    def state_dtype(self, kv_dtype: KVDtype, model: ModelConfig) -> KVDtype:
        """The dtype handed to ``state_rows`` for ``model`` under a ``kv_dtype`` cache."""
        if not self.states_in_model_dtype:
            return kv_dtype
        from kvcalc.dtypes import resolve_dtype

        return resolve_dtype(self.auto_dtype(model)[0], model.dtype)

    def describe_state(self, spec: FixedState, dtype: KVDtype) -> str:
        """The state's formula terms, for ``--explain``."""
        return " + ".join(f"{key} {n:,} x {d.block_bytes} B" for key, n, d in self.state_rows(spec, dtype)) + \
            " per sequence"

    def fixed_layer_bytes(self, spec: Spec, dtype: KVDtype) -> int:
        """Per-layer bytes independent of batch (per-tensor scales)."""
        return spec.fixed_layer_bytes(dtype)

    splits_kv = False
    """Whether the engine reports K and V apart (llama.cpp logs ``K (q8_0): ... MiB, V ...``)."""

    def bookkeeping_bytes(self, spec: Spec) -> int:
        """Per-layer engine bookkeeping outside the K/V payload (transformers' int64 position
        scalars); reported apart from ``total_bytes``."""
        return 0

    def kv_bytes_per_token(self, spec: Spec, dtype: KVDtype) -> tuple[int, int]:
        """(K, V) bytes of one token in this layer; they sum to ``bytes_per_token``."""
        total = self.bytes_per_token(spec, dtype)
        if isinstance(spec, FullAttention):
            heads = spec.num_kv_heads
            k = dtype.row_bytes(heads * spec.head_dim) + heads * dtype.scale_bytes_per_token_head
            return k, total - k
        if isinstance(spec, LatentAttention):
            # The latent is one K-like row; there is no separate V (llama.cpp MLA caches, recent builds).
            return total, 0
        return 0, 0

    def describe_tokens(self, spec: Spec, work: Workload) -> str:
        """How ``tokens_held`` was reached, for ``--explain``."""
        held = self.tokens_held(spec, work)
        window = getattr(spec, "window", None)
        if window is not None and held < work.seq_len:
            return f"min({work.seq_len}, window {window}) = {held} tokens"
        return f"{held} tokens"
