"""One cache spec per layer kind, each owning its own bytes arithmetic.

Modelled on vLLM ``vllm/v1/kv_cache_interface.py`` (``FullAttentionSpec``,
``SlidingWindowSpec``, ``MLAAttentionSpec``, ``MambaSpec``): frozen value objects; engines
only decide how many tokens a layer holds, the spec says what one token costs.

Engine-neutral holdings (``tokens_held``): a full layer holds every token, a sliding layer
``min(seq_len, window)``, a chunked-local layer ``min(seq_len, chunk)``, a latent (MLA) layer
every token of its latent, a fixed-state layer nothing per token (its state is per sequence).

The specs are stdlib frozen dataclasses so that a built-in estimate starts without importing
pydantic (75 ms of a 100 ms start-up budget); files are validated into them by pydantic v2
(``kvcalc.loader``), which honours ``__pydantic_config__`` (``extra="forbid"``) and runs
``__post_init__``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from kvcalc.dtypes import KVDtype, cdiv
from kvcalc.errors import InvalidConfigError

_STRICT: dict[str, Any] = {"extra": "forbid"}


def _invalid(obj: object, message: str) -> InvalidConfigError:
    """kvcalc's own error (also a ``ValueError``, which pydantic wraps when it validates a file):
    a model or spec built in Python with a bad value gets the same error type as a bad file."""
    return InvalidConfigError(type(obj).__name__, message)


def _require_positive(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise _invalid(obj, f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class Spec:
    """Base of every layer spec: the contract each kind states for itself.

    A kind says, in one place, what one token costs (``bytes_per_token``), what a sequence holds
    whatever its length (``fixed_bytes``), what a layer holds whatever the batch
    (``fixed_layer_bytes``), how many tokens it keeps (``tokens_held``), whether it grows, how it
    shards over TP ranks, and how to describe it. The base class has no defaults for these: a
    kind that forgets one raises ``NotImplementedError`` (and fails ``tests/test_engine_layer.py``),
    never costs a silent 0 bytes. ``page_bytes`` is derived from them.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT
    kind: str

    def _missing(self, what: str) -> NotImplementedError:
        return NotImplementedError(f"layer kind {type(self).__name__} ({self.kind!r}) does not define {what}")

    def bytes_per_token(self, dtype: KVDtype) -> int:
        """Bytes one cached token costs in this layer (K and V, scales included)."""
        raise self._missing("bytes_per_token")

    def fixed_bytes(self, dtype: KVDtype) -> int:
        """Bytes per sequence that do not grow with tokens (recurrent state)."""
        raise self._missing("fixed_bytes")

    def fixed_layer_bytes(self, dtype: KVDtype) -> int:
        """Bytes per layer, independent of batch and tokens (per-tensor quantization scales)."""
        raise self._missing("fixed_layer_bytes")

    def tokens_held(self, seq_len: int) -> int:
        """Engine-neutral: tokens this layer holds for a sequence of ``seq_len`` tokens."""
        raise self._missing("tokens_held")

    @property
    def grows(self) -> bool:
        """Whether this layer's cache grows with the sequence."""
        raise self._missing("grows")

    def shard(self, tp: int) -> Spec:
        """The spec one tensor-parallel rank holds (vLLM ``ModelConfig.get_num_kv_heads``)."""
        raise self._missing("shard")

    def page_bytes(self, dtype: KVDtype, block_tokens: int) -> int:
        """Bytes of one page of ``block_tokens`` tokens (a state layer: its state), as vLLM's
        ``page_size_bytes`` (before an engine pads pages to one size)."""
        if self.grows:
            return block_tokens * self.bytes_per_token(dtype)
        return self.fixed_bytes(dtype)

    def replace(self, **changes: Any) -> Spec:
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        raise self._missing("describe")

    def formula_terms(self, dtype: KVDtype) -> str:
        """Per-token arithmetic with numbers substituted, for ``--explain``."""
        raise self._missing("formula_terms")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True, kw_only=True)
class FullAttention(Spec):
    """Standard (MHA/GQA/MQA) attention: K and V for every token.

    bytes/token = H x (d + d_v) x b (vLLM ``FullAttentionSpec.real_page_size_bytes``),
    the textbook ``2 x H x d x b`` when ``d == d_v``.
    """

    kind: Literal["full"] = "full"
    num_kv_heads: int
    head_dim: int
    v_head_dim: int | None = None
    hf_cache_heads: int | None = None
    """Heads transformers really caches when it differs from ``num_kv_heads`` (Falcon with
    ``new_decoder_architecture`` broadcasts K/V to every query head before caching)."""

    def __post_init__(self) -> None:
        _require_positive(self, "num_kv_heads", "head_dim", "v_head_dim", "hf_cache_heads")

    @property
    def v_dim(self) -> int:
        return self.v_head_dim if self.v_head_dim is not None else self.head_dim

    @property
    def grows(self) -> bool:
        return True

    def bytes_per_token(self, dtype: KVDtype) -> int:
        return self.bytes_per_token_with_heads(dtype, self.num_kv_heads)

    def bytes_per_token_with_heads(self, dtype: KVDtype, heads: int) -> int:
        # A row is one token's K (or V) over this layer's heads, as llama.cpp lays it out
        # (n_embd_k_gqa = H x d); block formats round each row up to whole blocks.
        return (
            dtype.row_bytes(heads * self.head_dim)
            + dtype.row_bytes(heads * self.v_dim)
            + 2 * heads * dtype.scale_bytes_per_token_head
        )

    def fixed_bytes(self, dtype: KVDtype) -> int:
        return 0  # nothing per sequence beyond its tokens

    def fixed_layer_bytes(self, dtype: KVDtype) -> int:
        return dtype.scale_bytes_per_layer

    def tokens_held(self, seq_len: int) -> int:
        return seq_len

    def shard(self, tp: int) -> FullAttention:
        # vLLM/SGLang: max(1, H // tp), so heads are replicated once tp exceeds them.
        return dataclasses.replace(self, num_kv_heads=max(1, self.num_kv_heads // tp))

    def describe(self) -> str:
        dims = str(self.head_dim) if self.v_dim == self.head_dim else f"{self.head_dim}+{self.v_dim}"
        return f"{self.kind}, {self.num_kv_heads} KV heads x {dims}"

    def formula_terms(self, dtype: KVDtype) -> str:
        if self.v_dim == self.head_dim:
            base = f"2 x {self.num_kv_heads} kv_heads x {self.head_dim} head_dim"
        else:
            base = f"{self.num_kv_heads} kv_heads x ({self.head_dim} + {self.v_dim})"
        if dtype.is_block_format:
            return f"{base} values at {dtype.block_bytes} B per {dtype.block_values} ({dtype.name})"
        text = f"{base} x {dtype.block_bytes} B"
        if dtype.scale_bytes_per_token_head:
            text += f" + 2 x {self.num_kv_heads} x {dtype.scale_bytes_per_token_head} B scales"
        return text


@dataclass(frozen=True, kw_only=True)
class SlidingWindowAttention(FullAttention):
    """Local attention over the last ``window`` tokens (Mistral, Gemma-2, gpt-oss)."""

    kind: Literal["sliding"] = "sliding"  # type: ignore[assignment]
    window: int

    def __post_init__(self) -> None:
        super().__post_init__()
        _require_positive(self, "window")

    def tokens_held(self, seq_len: int) -> int:
        return min(seq_len, self.window)

    def describe(self) -> str:
        return f"{super().describe()}, window {self.window}"


@dataclass(frozen=True, kw_only=True)
class ChunkedAttention(FullAttention):
    """Chunked local attention (Llama-4 ``attention_chunk_size``): attends within its chunk."""

    kind: Literal["chunked"] = "chunked"  # type: ignore[assignment]
    chunk_size: int

    def __post_init__(self) -> None:
        super().__post_init__()
        _require_positive(self, "chunk_size")

    @property
    def window(self) -> int:
        return self.chunk_size

    def tokens_held(self, seq_len: int) -> int:
        return min(seq_len, self.chunk_size)

    def describe(self) -> str:
        return f"{super().describe()}, chunk {self.chunk_size}"


@dataclass(frozen=True, kw_only=True)
class LatentAttention(Spec):
    """Multi-head latent attention (DeepSeek-V2/V3): one compressed latent per token.

    bytes/token = (kv_lora_rank + qk_rope_head_dim) x b: no factor 2, one "head", not split
    by TP (vLLM ``MLAAttentionSpec``; DeepSeek-V2 paper, Table 1: (d_c + d_h^R) per layer).
    """

    kind: Literal["mla"] = "mla"
    kv_lora_rank: int
    qk_rope_head_dim: int
    qk_nope_head_dim: int | None = None
    """Per-head sizes of the decompressed K/V (weights, and caches that decompress)."""
    v_head_dim: int | None = None
    q_lora_rank: int | None = None

    def __post_init__(self) -> None:
        _require_positive(self, "kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim",
                          "v_head_dim", "q_lora_rank")

    @property
    def latent_dim(self) -> int:
        return self.kv_lora_rank + self.qk_rope_head_dim

    @property
    def grows(self) -> bool:
        return True

    def bytes_per_token(self, dtype: KVDtype) -> int:
        return dtype.row_bytes(self.latent_dim) + dtype.scale_bytes_per_token_head

    def fixed_bytes(self, dtype: KVDtype) -> int:
        return 0

    def fixed_layer_bytes(self, dtype: KVDtype) -> int:
        return dtype.scale_bytes_per_layer

    def tokens_held(self, seq_len: int) -> int:
        return seq_len

    def shard(self, tp: int) -> LatentAttention:
        return self  # one latent "head", replicated on every TP rank (vLLM MLAAttentionSpec)

    def describe(self) -> str:
        return f"mla, latent {self.kv_lora_rank} + rope {self.qk_rope_head_dim}"

    def formula_terms(self, dtype: KVDtype) -> str:
        dims = f"({self.kv_lora_rank} kv_lora_rank + {self.qk_rope_head_dim} rope)"
        if dtype.is_block_format:
            return f"{dims} values at {dtype.block_bytes} B per {dtype.block_values} ({dtype.name})"
        return f"{dims} x {dtype.block_bytes} B"


@dataclass(frozen=True, kw_only=True)
class FixedState(Spec):
    """No growing cache (Mamba/SSM, linear attention, recurrent layers): a fixed state per
    sequence, declared as named element counts so the dtype still applies."""

    kind: Literal["state"] = "state"
    state_elements: dict[str, int]
    """e.g. ``{conv: 61440, ssm: 4194304}`` for one Nemotron-H Mamba layer, as vLLM sizes them
    (``MambaStateShapeCalculator``: the conv state keeps ``conv_kernel - 1`` columns)."""
    conv_kernel: int | None = None
    """The causal-conv kernel width behind ``state_elements["conv"]``; transformers keeps all
    ``conv_kernel`` columns (``LinearAttentionLayer``), one more than vLLM."""

    def __post_init__(self) -> None:
        if not self.state_elements:
            raise _invalid(self, "state_elements must name at least one state")
        for key, value in self.state_elements.items():
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise _invalid(self, f"state_elements.{key} must be a positive integer, got {value!r}")
        if self.conv_kernel is not None:
            if isinstance(self.conv_kernel, bool) or not isinstance(self.conv_kernel, int) or self.conv_kernel < 2:
                raise _invalid(self, f"conv_kernel must be an integer of at least 2, got {self.conv_kernel!r}")
            if "conv" not in self.state_elements:
                raise _invalid(self, "conv_kernel needs a 'conv' entry in state_elements")

    def __hash__(self) -> int:
        return hash((self.kind, tuple(sorted(self.state_elements.items())), self.conv_kernel))

    @property
    def grows(self) -> bool:
        return False

    def bytes_per_token(self, dtype: KVDtype) -> int:
        return 0  # a state does not grow with tokens

    def tokens_held(self, seq_len: int) -> int:
        return 0

    def fixed_bytes(self, dtype: KVDtype) -> int:
        return sum(dtype.row_bytes(n) for n in self.state_elements.values())

    def fixed_layer_bytes(self, dtype: KVDtype) -> int:
        return 0

    def formula_terms(self, dtype: KVDtype) -> str:
        return "0 per token (a fixed state per sequence)"

    def shard(self, tp: int) -> FixedState:
        # vLLM shards Mamba/GDN heads across TP ranks; round up so no rank is understated.
        return dataclasses.replace(
            self, state_elements={k: cdiv(v, tp) for k, v in self.state_elements.items()}
        )

    def describe(self) -> str:
        parts = " + ".join(f"{k} {v:,}" for k, v in self.state_elements.items())
        return f"state, {parts} elements per sequence"


@dataclass(frozen=True, kw_only=True)
class NoCache(Spec):
    """A layer that caches nothing (an MLP-only layer, or one that reuses another's KV)."""

    kind: Literal["none"] = "none"
    reason: str = ""

    @property
    def grows(self) -> bool:
        return False

    def bytes_per_token(self, dtype: KVDtype) -> int:
        return 0  # caches nothing, by definition

    def fixed_bytes(self, dtype: KVDtype) -> int:
        return 0

    def fixed_layer_bytes(self, dtype: KVDtype) -> int:
        return 0

    def tokens_held(self, seq_len: int) -> int:
        return 0

    def shard(self, tp: int) -> NoCache:
        return self

    def formula_terms(self, dtype: KVDtype) -> str:
        return "0"

    def describe(self) -> str:
        return f"none ({self.reason})" if self.reason else "none"


SPEC_KINDS: dict[str, type[Spec]] = {
    "full": FullAttention,
    "sliding": SlidingWindowAttention,
    "chunked": ChunkedAttention,
    "mla": LatentAttention,
    "state": FixedState,
    "none": NoCache,
}
"""``kind`` key in YAML -> spec class: the single place a kind name selects a class."""


def spec_from_dict(data: dict[str, Any]) -> Spec:
    """Build a spec from trusted data (already validated); files go through ``kvcalc.loader``."""
    return SPEC_KINDS[data["kind"]](**data)


@dataclass(frozen=True, kw_only=True)
class IndexedLatentAttention(LatentAttention):
    """MLA with a DSA "lightning indexer" key cache (DeepSeek-V3.2 ``deepseek_v32``, GLM-5
    ``glm_moe_dsa``): per token, the latent (``kv_lora_rank + qk_rope_head_dim``) and one indexer
    key of ``index_head_dim`` values.

    The indexer's ``index_n_heads`` are query heads; its key is single-headed
    (transformers 5.23 ``cache_utils.py`` ``DynamicIndexedLayer``: ``indexer_keys`` is
    ``[batch, seq_len, index_head_dim]``; ``modeling_deepseek_v32.py`` ``DeepseekV32Indexer``:
    ``k = self.k_norm(self.wk(hidden_states))``), so they never multiply the cache. A GLM-5
    "shared" indexer layer (``indexer_types``) keeps no indexer key: it is a plain ``LatentAttention``.
    Every method is spelled out here: a layer kind must not inherit a silent zero.
    """

    kind: Literal["mla_indexed"] = "mla_indexed"  # type: ignore[assignment]
    index_head_dim: int
    index_n_heads: int | None = None
    """Indexer query heads (weights only; not cached)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _require_positive(self, "index_head_dim", "index_n_heads")

    @property
    def grows(self) -> bool:
        return True

    def latent_bytes_per_token(self, dtype: KVDtype) -> int:
        """The latent alone, as ``LatentAttention`` counts it."""
        return dtype.row_bytes(self.latent_dim) + dtype.scale_bytes_per_token_head

    def indexer_bytes_per_token(self, dtype: KVDtype) -> int:
        """One single-headed indexer key (with its per-token scale under per-token formats)."""
        return dtype.row_bytes(self.index_head_dim) + dtype.scale_bytes_per_token_head

    def bytes_per_token(self, dtype: KVDtype) -> int:
        return self.latent_bytes_per_token(dtype) + self.indexer_bytes_per_token(dtype)

    def fixed_bytes(self, dtype: KVDtype) -> int:
        return 0  # nothing per sequence that does not grow

    def fixed_layer_bytes(self, dtype: KVDtype) -> int:
        # Per-tensor scales: one for the latent, one for the indexer keys.
        return 2 * dtype.scale_bytes_per_layer

    def tokens_held(self, seq_len: int) -> int:
        return seq_len

    def shard(self, tp: int) -> IndexedLatentAttention:
        # Like the latent, the single indexer key is replicated on every TP rank (vLLM
        # ``DeepseekV32IndexerCache`` is built per layer with one head), never split.
        return self

    def describe(self) -> str:
        return (f"mla+indexer, latent {self.kv_lora_rank} + rope {self.qk_rope_head_dim}, "
                f"indexer key {self.index_head_dim}")

    def formula_terms(self, dtype: KVDtype) -> str:
        dims = f"({self.kv_lora_rank} kv_lora_rank + {self.qk_rope_head_dim} rope + {self.index_head_dim} indexer key)"
        if dtype.is_block_format:
            return f"{dims} values at {dtype.block_bytes} B per {dtype.block_values} ({dtype.name})"
        return f"{dims} x {dtype.block_bytes} B"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True, kw_only=True)
class CrossAttention(Spec):
    """Cross-attention over encoder (vision) tokens (Llama-3.2-Vision ``mllama``
    ``cross_attention_layers``): K and V of the ``encoder_tokens`` the sequence attends to, not
    of its own text. They do not grow with ``seq_len``: a text-only request holds none
    (transformers 5.23 ``modeling_mllama.py`` ``MllamaTextModel.forward`` skips a cross-attention
    layer without ``cross_attention_states``), a request with an image holds its vision tokens
    (``kvcalc estimate --image-tokens N``).

    bytes/token = H x 2d x b, as full attention (vLLM ``CrossAttentionSpec`` is an ``AttentionSpec``).
    """

    kind: Literal["cross"] = "cross"
    num_kv_heads: int
    head_dim: int
    encoder_tokens: int = 0
    """Encoder (vision) tokens each sequence holds in this layer; 0 for text-only requests."""

    def __post_init__(self) -> None:
        _require_positive(self, "num_kv_heads", "head_dim")
        if isinstance(self.encoder_tokens, bool) or not isinstance(self.encoder_tokens, int) or self.encoder_tokens < 0:
            raise ValueError(f"encoder_tokens must be an integer of at least 0, got {self.encoder_tokens!r}")

    @property
    def grows(self) -> bool:
        return False  # sized by the encoder input, not by the generated sequence

    def bytes_per_token(self, dtype: KVDtype) -> int:
        heads = self.num_kv_heads
        return 2 * dtype.row_bytes(heads * self.head_dim) + 2 * heads * dtype.scale_bytes_per_token_head

    def fixed_bytes(self, dtype: KVDtype) -> int:
        return 0  # everything it holds is per (encoder) token

    def fixed_layer_bytes(self, dtype: KVDtype) -> int:
        return dtype.scale_bytes_per_layer

    def tokens_held(self, seq_len: int) -> int:
        return self.encoder_tokens

    def shard(self, tp: int) -> CrossAttention:
        return dataclasses.replace(self, num_kv_heads=max(1, self.num_kv_heads // tp))

    def describe(self) -> str:
        return f"cross, {self.num_kv_heads} KV heads x {self.head_dim}, {self.encoder_tokens} encoder tokens"

    def formula_terms(self, dtype: KVDtype) -> str:
        base = f"2 x {self.num_kv_heads} kv_heads x {self.head_dim} head_dim"
        if dtype.is_block_format:
            return f"{base} values at {dtype.block_bytes} B per {dtype.block_values} ({dtype.name})"
        return f"{base} x {dtype.block_bytes} B"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


SPEC_KINDS["mla_indexed"] = IndexedLatentAttention
SPEC_KINDS["cross"] = CrossAttention


@dataclass(frozen=True, kw_only=True)
class StatefulAttention(Spec):
    """One layer holding a Mamba2 state and a full-attention KV cache at once (Falcon-H1
    ``falcon_h1``: every layer runs a Mamba mixer and attention in parallel; Zamba2 ``zamba2``:
    a "hybrid" layer runs the shared attention block, then its Mamba layer).

    transformers 5.23 caches such a layer as one ``LinearAttentionAndFullAttentionLayer``
    (``cache_utils.py``, layer type ``"hybrid"``): a ``DynamicLayer``'s K/V for every token plus
    ``LinearAttentionLayer``'s conv and recurrent states. Per token it costs its attention's bytes
    (``attention``); per sequence its state's (``state``). Every method is spelled out here: a layer
    kind must not inherit a silent zero. Engines that do not model the pair refuse it.
    """

    kind: Literal["hybrid"] = "hybrid"
    attention: FullAttention
    state: FixedState

    def __post_init__(self) -> None:
        # Trusted data (built-ins compiled to JSON) arrives as dicts; files are validated by pydantic.
        if isinstance(self.attention, dict):
            object.__setattr__(self, "attention", FullAttention(**self.attention))
        if isinstance(self.state, dict):
            object.__setattr__(self, "state", FixedState(**self.state))
        if type(self.attention) is not FullAttention:
            raise ValueError(f"attention must be a full-attention spec, got {type(self.attention).__name__}")
        if not isinstance(self.state, FixedState):
            raise ValueError(f"state must be a state spec, got {type(self.state).__name__}")

    @property
    def grows(self) -> bool:
        return True  # its K/V grow with the sequence

    def bytes_per_token(self, dtype: KVDtype) -> int:
        return self.attention.bytes_per_token(dtype)

    def fixed_bytes(self, dtype: KVDtype) -> int:
        return self.attention.fixed_bytes(dtype) + self.state.fixed_bytes(dtype)

    def fixed_layer_bytes(self, dtype: KVDtype) -> int:
        return self.attention.fixed_layer_bytes(dtype) + self.state.fixed_layer_bytes(dtype)

    def tokens_held(self, seq_len: int) -> int:
        return self.attention.tokens_held(seq_len)

    def shard(self, tp: int) -> StatefulAttention:
        return dataclasses.replace(self, attention=self.attention.shard(tp), state=self.state.shard(tp))

    def describe(self) -> str:
        return f"hybrid: {self.attention.describe()}; {self.state.describe()}"

    def formula_terms(self, dtype: KVDtype) -> str:
        return f"{self.attention.formula_terms(dtype)} (+ a fixed state per sequence)"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "attention": self.attention.to_dict(), "state": self.state.to_dict()}


SPEC_KINDS["hybrid"] = StatefulAttention
