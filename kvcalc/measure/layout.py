"""The exact tensors each engine lays out for one layer (pure Python, no torch).

The numbers come from the engine (``kvcalc.engines``): tokens held per sequence, bytes per
token, per-sequence state and per-layer scales; the *shapes* too (``Engine.attention_tensors``,
``latent_tensors``), so that the bytes the tensors occupy can be compared, exactly, with the
prediction (``estimate``, the same ``Engine.layer_bytes``): a difference is a bug in one of the two.
This module holds the shared pieces: one tensor, typed or block rows, scales, state rows, and a
quantized cache's full-precision residual.

Shapes, per layer (``b`` batch, ``T`` tokens held per sequence, ``H`` KV heads, ``d``/``d_v``
key/value head size):

* ``hf``/``hf-static``: K ``[b, H, T, d]`` and V ``[b, H, T, d_v]`` (transformers
  ``DynamicLayer``/``StaticLayer``, reference §4.1); H is ``hf_cache_heads`` where transformers
  caches broadcast heads (Falcon new architecture, §4.8). MLA as transformers 5.x stores it:
  keys ``[b, 1, T, kv_lora_rank]``, values ``[b, 1, T, qk_rope_head_dim]`` (§4.6).
* ``vllm``: ``[2, num_blocks, B, H, d]`` per layer (FlashAttention backend, §1.13), K and V
  apart when ``d != d_v``; MLA ``[num_blocks, B, kv_lora_rank + rope]``;
  ``num_blocks = b x T / B`` (the policy holds whole blocks).
* ``sglang``: K ``[b x T, H, d]``, V ``[b x T, H, d_v]``; MLA ``[b x T, 1, latent]``
  (``MHATokenToKVPool``/``MLATokenToKVPool``, §2).
* ``llama.cpp``: K and V as rows of ``H x d`` values per cell, ``[b x T, row]``; MLA one K row of
  the latent and no V (§5.2, §5.5).
* ``neutral`` (and TensorRT-LLM): contiguous per-layer tensors K ``[b, T, H, d]``, V
  ``[b, T, H, d_v]``; MLA ``[b, T, latent]``.
* A quantized cache (``quanto-int4`` ...): the quantized rows of ``T - r`` tokens and the
  residual's ``r = min(T, residual_length - 1)`` tokens in the model dtype, as the engine's own
  tensors (transformers ``QuantizedLayer``: ``_quantized_keys`` + the unquantized ``keys``).

Storage: fp8 as ``float8_e4m3fn``/``float8_e5m2``, int8 as ``int8``; block formats (packed int4,
GGUF q8_0/q4_0/...) as ``uint8`` rows of the exact block bytes per token (``KVDtype.row_bytes``),
whatever the engine (no engine stores a partial block). Per-token-head scales are float32
``[b, T, H]`` for K and for V (MLA: one); per-layer scales two float32 scalars. Recurrent
state: one tensor ``[b, n]`` per named state.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Any

from kvcalc.dtypes import KVDtype
from kvcalc.engines.base import Engine, Workload
from kvcalc.specs import FixedState, FullAttention, IndexedLatentAttention, LatentAttention, Spec

ELEMENT_BYTES: dict[str, int] = {
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
    "int8": 1,
    "uint8": 1,
}
"""torch dtype name -> ``element_size()`` (torch's own sizes for these dtypes)."""

_SCALE = "float32"


@dataclass(frozen=True, kw_only=True)
class TensorLayout:
    """One tensor to allocate: a name, a shape and a torch dtype name."""

    name: str
    shape: tuple[int, ...]
    torch_dtype: str

    @property
    def numel(self) -> int:
        return prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * ELEMENT_BYTES[self.torch_dtype]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.torch_dtype,
                "bytes": self.nbytes}

    def describe(self) -> str:
        return f"{self.name} {self.torch_dtype}[{', '.join(str(n) for n in self.shape)}]"


def layer_bytes(spec: Spec, policy: Engine, dtype: KVDtype, work: Workload,
                state_dtype: KVDtype | None = None) -> int:
    """The prediction for one layer: ``Engine.layer_bytes``, as ``kvcalc.estimate`` computes it
    (``state_dtype``: what ``policy.state_dtype`` chose for states; the KV dtype if None)."""
    return policy.layer_bytes(spec, dtype, work, state_dtype, _residual(dtype))


def _residual(dtype: KVDtype) -> KVDtype | None:
    from kvcalc.dtypes import get_dtype

    return get_dtype(dtype.residual_dtype) if dtype.residual_dtype else None


def layer_tensors(spec: Spec, policy: Engine, dtype: KVDtype, work: Workload,
                  state_dtype: KVDtype | None = None) -> list[TensorLayout]:
    """Every tensor one layer of ``spec`` occupies under ``policy``."""
    tensors: list[TensorLayout] = []
    if spec.grows:
        tokens = policy.tokens_held(spec, work)
        residual = _residual(dtype)
        kept = min(tokens, dtype.residual_tokens) if residual is not None else 0
        if tokens - kept > 0:
            tensors += _cache_tensors(spec, policy, dtype, work, tokens - kept)
        if kept and residual is not None:
            tensors += [TensorLayout(name=f"residual.{t.name}", shape=t.shape, torch_dtype=t.torch_dtype)
                        for t in _cache_tensors(spec, policy, residual, work, kept)]
    sd = state_dtype if state_dtype is not None else dtype
    if isinstance(spec, FixedState):
        rows = policy.state_rows(spec, sd)
        for key, n, row_dtype in rows:
            tensors.append(row(f"state.{key}", (work.batch,), n, row_dtype))
        pad = policy.fixed_bytes(spec, sd, work) - sum(d.row_bytes(n) for _, n, d in rows)
        if pad > 0:  # the engine pads the state to a page (vLLM hybrid models)
            tensors.append(TensorLayout(name="state.page_padding", shape=(work.batch, pad), torch_dtype="uint8"))
    fixed_layer = policy.fixed_layer_bytes(spec, dtype)
    if fixed_layer:
        if fixed_layer == 2 * ELEMENT_BYTES[_SCALE]:
            tensors += [TensorLayout(name=n, shape=(1,), torch_dtype=_SCALE) for n in ("k_scale", "v_scale")]
        else:
            tensors.append(TensorLayout(name="layer_scales", shape=(fixed_layer,), torch_dtype="uint8"))
    return tensors


def _cache_tensors(spec: Spec, policy: Engine, dtype: KVDtype, work: Workload, tokens: int) -> list[TensorLayout]:
    b = work.batch
    out: list[TensorLayout] = []
    if isinstance(spec, LatentAttention):
        if dtype.is_block_format:
            out.append(row("latent", (b, tokens), spec.latent_dim, dtype))
        else:
            out += policy.latent_tensors(spec, dtype, work, tokens)
        if dtype.scale_bytes_per_token_head:
            out += _token_scales(dtype, b, tokens, 1, ("scales",))
        if isinstance(spec, IndexedLatentAttention):
            out += policy.indexer_tensors(spec, dtype, work, tokens)  # the DSA indexer key cache
        return out
    if not isinstance(spec, FullAttention):
        raise TypeError(f"{type(spec).__name__} grows but has no tensor layout: add one in measure/layout.py")
    heads = policy.cache_heads(spec)
    if dtype.is_block_format:
        # One row of H x d values per token (llama.cpp n_embd_k_gqa); block formats cannot be
        # split per head exactly, so every engine's rows are laid out this way for them.
        lead = policy.block_rows_lead(work, tokens)
        out += [row("k", lead, heads * spec.head_dim, dtype), row("v", lead, heads * spec.v_dim, dtype)]
    else:
        out += policy.attention_tensors(spec, dtype, work, tokens)
    if dtype.scale_bytes_per_token_head:
        out += _token_scales(dtype, b, tokens, heads, ("k_scales", "v_scales"))
    return out


def row(name: str, lead: tuple[int, ...], n_values: int, dtype: KVDtype) -> TensorLayout:
    """A row of ``n_values`` per leading index: typed, or exact block bytes as uint8."""
    if dtype.is_block_format:
        return TensorLayout(name=name, shape=(*lead, dtype.row_bytes(n_values)), torch_dtype="uint8")
    return TensorLayout(name=name, shape=(*lead, n_values), torch_dtype=dtype.torch_dtype)


def typed(name: str, shape: tuple[int, ...], dtype: KVDtype) -> TensorLayout:
    return TensorLayout(name=name, shape=shape, torch_dtype=dtype.torch_dtype)


def _token_scales(dtype: KVDtype, b: int, tokens: int, heads: int, names: tuple[str, ...]) -> list[TensorLayout]:
    per = dtype.scale_bytes_per_token_head
    if per % ELEMENT_BYTES[_SCALE] == 0:
        shape = (b, tokens, heads * (per // ELEMENT_BYTES[_SCALE]))
        return [TensorLayout(name=n, shape=shape, torch_dtype=_SCALE) for n in names]
    return [TensorLayout(name=n, shape=(b, tokens, heads * per), torch_dtype="uint8") for n in names]


token_scales = _token_scales
"""Per-token scale tensors of a quantized cache (engines lay out the DSA indexer's with it)."""
