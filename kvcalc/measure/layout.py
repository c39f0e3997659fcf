"""The exact tensors each engine lays out for one layer (pure Python, no torch).

The numbers come from the engine's storage policy (``kvcalc.engines``): tokens held per
sequence, bytes per token, per-sequence state and per-layer scales. This module only chooses
the *shapes* the engine uses, so that the bytes the tensors occupy can be compared, exactly,
with the prediction (``estimate``): a difference is a bug in one of the two.

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
* ``neutral``: contiguous per-layer tensors K ``[b, T, H, d]``, V ``[b, T, H, d_v]``; MLA
  ``[b, T, latent]``.

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
from kvcalc.engines.base import StoragePolicy, Workload
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


def engine_family(policy: StoragePolicy) -> str:
    """The layout family of a policy: hf (both hf engines), vllm, sglang, llama.cpp or neutral."""
    name = policy.name
    return "hf" if name in ("hf", "hf-static") else name


def layer_bytes(spec: Spec, policy: StoragePolicy, dtype: KVDtype, work: Workload,
                state_dtype: KVDtype | None = None) -> int:
    """The prediction for one layer, exactly as ``kvcalc.estimate`` computes it (``state_dtype``:
    what ``policy.state_dtype`` chose for Mamba / linear-attention states; the KV dtype if None)."""
    fixed_dtype = state_dtype if state_dtype is not None and isinstance(spec, FixedState) else dtype
    return (
        policy.tokens_held(spec, work) * policy.bytes_per_token(spec, dtype) * work.batch
        + policy.fixed_bytes(spec, fixed_dtype) * work.batch
        + policy.fixed_layer_bytes(spec, dtype)
    )


def layer_tensors(spec: Spec, policy: StoragePolicy, dtype: KVDtype, work: Workload,
                  state_dtype: KVDtype | None = None) -> list[TensorLayout]:
    """Every tensor one layer of ``spec`` occupies under ``policy``."""
    tensors: list[TensorLayout] = []
    family = engine_family(policy)
    if spec.grows:
        tokens = policy.tokens_held(spec, work)
        if tokens > 0:
            if isinstance(spec, IndexedLatentAttention):
                tensors += _indexed(spec, family, dtype, policy, work, tokens)
            elif isinstance(spec, LatentAttention):
                tensors += _latent(spec, family, dtype, policy, work, tokens)
            elif isinstance(spec, FullAttention):
                tensors += _attention(spec, family, dtype, policy, work, tokens)
    sd = state_dtype if state_dtype is not None else dtype
    if isinstance(spec, FixedState) and policy.fixed_bytes(spec, sd):
        for key, n, row_dtype in policy.state_rows(spec, sd):
            tensors.append(_row(f"state.{key}", (work.batch,), n, row_dtype))
    fixed_layer = policy.fixed_layer_bytes(spec, dtype)
    if fixed_layer:
        if fixed_layer == 2 * ELEMENT_BYTES[_SCALE]:
            tensors += [TensorLayout(name=n, shape=(1,), torch_dtype=_SCALE) for n in ("k_scale", "v_scale")]
        else:
            tensors.append(TensorLayout(name="layer_scales", shape=(fixed_layer,), torch_dtype="uint8"))
    return tensors


def _row(name: str, lead: tuple[int, ...], n_values: int, dtype: KVDtype) -> TensorLayout:
    """A row of ``n_values`` per leading index: typed, or exact block bytes as uint8."""
    if dtype.is_block_format:
        return TensorLayout(name=name, shape=(*lead, dtype.row_bytes(n_values)), torch_dtype="uint8")
    return TensorLayout(name=name, shape=(*lead, n_values), torch_dtype=dtype.torch_dtype)


def _typed(name: str, shape: tuple[int, ...], dtype: KVDtype) -> TensorLayout:
    return TensorLayout(name=name, shape=shape, torch_dtype=dtype.torch_dtype)


def _blocks(policy: StoragePolicy, spec: Spec, work: Workload, tokens: int) -> tuple[int, int] | None:
    """(num_blocks, block_size) for a paged policy that exposes ``block_size``, else None."""
    size_of = getattr(policy, "block_size", None)
    if size_of is None:
        return None
    block = int(size_of(spec, work))
    if block <= 0 or tokens % block:
        return None
    return work.batch * tokens // block, block


def _attention(spec: FullAttention, family: str, dtype: KVDtype, policy: StoragePolicy,
               work: Workload, tokens: int) -> list[TensorLayout]:
    b, d, dv = work.batch, spec.head_dim, spec.v_dim
    heads = spec.num_kv_heads
    if family == "hf" and spec.hf_cache_heads is not None:
        heads = spec.hf_cache_heads
    out: list[TensorLayout] = []
    if dtype.is_block_format or family == "llama.cpp":
        # One row of H x d values per token (llama.cpp n_embd_k_gqa); block formats cannot be
        # split per head exactly, so every engine's rows are laid out this way for them.
        lead = (b * tokens,) if family in ("llama.cpp", "sglang", "vllm") else (b, tokens)
        out += [_row("k", lead, heads * d, dtype), _row("v", lead, heads * dv, dtype)]
    elif family == "hf":
        out += [_typed("keys", (b, heads, tokens, d), dtype), _typed("values", (b, heads, tokens, dv), dtype)]
    elif family == "vllm" and (paged := _blocks(policy, spec, work, tokens)) is not None:
        num_blocks, block = paged
        if d == dv:
            out.append(_typed("kv_cache", (2, num_blocks, block, heads, d), dtype))
        else:
            out += [_typed("k_cache", (num_blocks, block, heads, d), dtype),
                    _typed("v_cache", (num_blocks, block, heads, dv), dtype)]
    elif family in ("sglang", "vllm"):
        out += [_typed("k_buffer", (b * tokens, heads, d), dtype), _typed("v_buffer", (b * tokens, heads, dv), dtype)]
    else:
        out += [_typed("k", (b, tokens, heads, d), dtype), _typed("v", (b, tokens, heads, dv), dtype)]
    if dtype.scale_bytes_per_token_head:
        out += _token_scales(dtype, b, tokens, heads, ("k_scales", "v_scales"))
    return out


def _latent(spec: LatentAttention, family: str, dtype: KVDtype, policy: StoragePolicy,
            work: Workload, tokens: int) -> list[TensorLayout]:
    b, latent = work.batch, spec.latent_dim
    out: list[TensorLayout] = []
    if dtype.is_block_format:
        out.append(_row("latent", (b, tokens), latent, dtype))
    elif family == "hf":
        out += [_typed("keys", (b, 1, tokens, spec.kv_lora_rank), dtype),
                _typed("values", (b, 1, tokens, spec.qk_rope_head_dim), dtype)]
    elif family == "vllm" and (paged := _blocks(policy, spec, work, tokens)) is not None:
        num_blocks, block = paged
        out.append(_typed("kv_cache", (num_blocks, block, latent), dtype))
    elif family == "sglang":
        out.append(_typed("kv_buffer", (b * tokens, 1, latent), dtype))
    elif family == "llama.cpp":
        out.append(_typed("k", (b * tokens, latent), dtype))
    else:
        out.append(_typed("latent", (b, tokens, latent), dtype))
    if dtype.scale_bytes_per_token_head:
        out += _token_scales(dtype, b, tokens, 1, ("scales",))
    return out


def _indexed(spec: IndexedLatentAttention, family: str, dtype: KVDtype, policy: StoragePolicy,
             work: Workload, tokens: int) -> list[TensorLayout]:
    """A DSA layer: the latent, then the single-headed indexer key cache.

    transformers 5.23 ``DynamicIndexedLayer.indexer_keys`` ``[batch, seq, index_head_dim]``; vLLM a
    ``DeepseekV32IndexerCache`` of uint8 ``[num_blocks, block, index_head_dim + index_head_dim // 128 x 4]``
    (fp8 values and float32 scales) and, under fp8, the latent as ``fp8_ds_mla`` 656-byte entries; SGLang
    the same fp8 indexer row per token (``kvcalc.engines``)."""
    b, d = work.batch, spec.index_head_dim
    fp8_row = d + d // 128 * 4
    paged = _blocks(policy, spec, work, tokens) if family == "vllm" else None
    if paged is not None:
        num_blocks, block = paged
        latent = (
            [TensorLayout(name="kv_cache", shape=(num_blocks, block, 656), torch_dtype="uint8")]
            if dtype.name == "fp8_e4m3" else _latent(spec, family, dtype, policy, work, tokens)
        )
        return [*latent, TensorLayout(name="indexer_k_cache", shape=(num_blocks, block, fp8_row), torch_dtype="uint8")]
    out = _latent(spec, family, dtype, policy, work, tokens)
    if family == "sglang":
        return [*out, TensorLayout(name="index_k_buffer", shape=(b * tokens, 1, fp8_row), torch_dtype="uint8")]
    out.append(_row("indexer_keys", (b, tokens), d, dtype))
    if dtype.scale_bytes_per_token_head:
        out += _token_scales(dtype, b, tokens, 1, ("indexer_scales",))
    return out


def _token_scales(dtype: KVDtype, b: int, tokens: int, heads: int, names: tuple[str, ...]) -> list[TensorLayout]:
    per = dtype.scale_bytes_per_token_head
    if per % ELEMENT_BYTES[_SCALE] == 0:
        shape = (b, tokens, heads * (per // ELEMENT_BYTES[_SCALE]))
        return [TensorLayout(name=n, shape=shape, torch_dtype=_SCALE) for n in names]
    return [TensorLayout(name=n, shape=(b, tokens, heads * per), torch_dtype="uint8") for n in names]
