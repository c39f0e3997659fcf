"""KV-cache storage types: bytes per element, block formats and scale overhead.

Every type is a block format: ``block_bytes`` bytes store ``block_values`` values, so a row
of ``n`` values takes ``cdiv(n, block_values) * block_bytes`` bytes (a partial block still
occupies a whole block: rounding up). Plain types are blocks of one value.

Sources: fp16/bf16/fp32/fp8/int8 element sizes as in vLLM ``STR_DTYPE_TO_TORCH_DTYPE``
(fp8 variants are stored as one byte); GGUF blocks from llama.cpp ``ggml/src/ggml-common.h``
(``block_q8_0`` = fp16 scale + 32 int8 = 34 B, ``block_q4_0`` = fp16 scale + 16 B = 18 B, ...).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from kvcalc.errors import InvalidRequestError, UnknownNameError


def cdiv(a: int, b: int) -> int:
    """Ceiling division for non-negative integers (vLLM ``cdiv``)."""
    return -(-a // b)


@dataclass(frozen=True, kw_only=True)
class KVDtype:
    """How one cache element (or block of elements) is stored."""

    name: str
    block_bytes: int
    block_values: int = 1
    torch_dtype: str
    """The torch dtype a real allocation uses (``uint8`` for packed and block formats)."""
    description: str
    scale_bytes_per_token_head: int = 0
    """Extra bytes per token, per KV head, for K and again for V (per-token-head scales)."""
    scale_bytes_per_layer: int = 0
    """Fixed bytes per layer for K and V scales (per-tensor scales: one float32 each)."""
    block_scale_bytes: int = 0
    """Bytes of each block that are scales / zero points rather than values (q8_0: the fp16 d)."""
    residual_tokens: int = 0
    """Quantized caches (transformers ``QuantizedLayer``): the most recent tokens kept unquantized."""
    residual_dtype: str = ""
    """The dtype of that full-precision residual (the model's compute dtype)."""

    def values_only(self) -> KVDtype:
        """The same format with every scale byte removed: ``total(self) - total(values_only)`` is the
        scale overhead (all byte formulas are linear in these fields)."""
        return dataclasses.replace(
            self, block_bytes=self.block_bytes - self.block_scale_bytes, block_scale_bytes=0,
            scale_bytes_per_token_head=0, scale_bytes_per_layer=0,
        )

    @property
    def has_scales(self) -> bool:
        return bool(self.block_scale_bytes or self.scale_bytes_per_token_head or self.scale_bytes_per_layer)

    def row_bytes(self, n_values: int) -> int:
        """Bytes of a row of ``n_values`` values, rounded up to whole blocks."""
        return cdiv(n_values, self.block_values) * self.block_bytes

    @property
    def is_block_format(self) -> bool:
        return self.block_values > 1


def _plain(name: str, nbytes: int, torch_dtype: str, description: str) -> KVDtype:
    return KVDtype(name=name, block_bytes=nbytes, torch_dtype=torch_dtype, description=description)


def _gguf(name: str, nbytes: int, description: str, scale_bytes: int = 2) -> KVDtype:
    # scale_bytes: the fp16 ``d`` (and ``m`` for the _1 types) at the head of each block
    # (ggml-common.h ``block_q8_0 { ggml_half d; int8_t qs[QK8_0]; }``, ``block_q4_1 { d, m; qs }``).
    return KVDtype(
        name=name, block_values=32, block_bytes=nbytes, torch_dtype="uint8", description=description,
        block_scale_bytes=scale_bytes,
    )


_DTYPES: dict[str, KVDtype] = {
    d.name: d
    for d in (
        _plain("fp32", 4, "float32", "IEEE float32"),
        _plain("fp16", 2, "float16", "IEEE float16"),
        _plain("bf16", 2, "bfloat16", "bfloat16"),
        _plain("fp8_e4m3", 1, "float8_e4m3fn", "fp8 E4M3 (vLLM stores it as uint8)"),
        _plain("fp8_e5m2", 1, "float8_e5m2", "fp8 E5M2 (vLLM stores it as uint8)"),
        _plain("int8", 1, "int8", "int8"),
        KVDtype(
            name="int4", block_values=2, block_bytes=1, torch_dtype="uint8",
            description="int4, two values packed per byte, no scales",
        ),
        KVDtype(
            name="fp8_per_tensor", block_bytes=1, torch_dtype="float8_e4m3fn",
            scale_bytes_per_layer=8,
            description="fp8 E4M3 with one float32 scale for K and one for V per layer",
        ),
        KVDtype(
            name="fp8_per_token_head", block_bytes=1, torch_dtype="float8_e4m3fn",
            scale_bytes_per_token_head=4,
            description="fp8 E4M3 with a float32 scale per token and head, for K and for V "
            "(vLLM AttentionSpec.page_size_bytes)",
        ),
        KVDtype(
            name="int8_per_token_head", block_bytes=1, torch_dtype="int8",
            scale_bytes_per_token_head=4,
            description="int8 with a float32 scale per token and head, for K and for V",
        ),
        _gguf("q8_0", 34, "GGUF q8_0: fp16 scale + 32 int8 (34 B / 32 values)"),
        _gguf("q5_1", 24, "GGUF q5_1: fp16 d, fp16 m, 4 B high bits, 16 B nibbles", 4),
        _gguf("q5_0", 22, "GGUF q5_0: fp16 d, 4 B high bits, 16 B nibbles"),
        _gguf("q4_1", 20, "GGUF q4_1: fp16 d, fp16 m, 16 B nibbles", 4),
        _gguf("q4_0", 18, "GGUF q4_0: fp16 scale + 16 B nibbles (18 B / 32 values)"),
        _gguf("iq4_nl", 18, "GGUF iq4_nl: fp16 scale + 16 B nibbles, non-linear grid"),
    )
}

ALIASES: dict[str, str] = {
    "fp8": "fp8_e4m3",
    "float8": "fp8_e4m3",
    "float8_e4m3fn": "fp8_e4m3",
    "float32": "fp32",
    "f32": "fp32",
    "float": "fp32",
    "float16": "fp16",
    "f16": "fp16",
    "half": "fp16",
    "bfloat16": "bf16",
    "float8_e5m2": "fp8_e5m2",
}

MODEL_DTYPES = ("fp32", "fp16", "bf16")
"""Dtypes a model computes in: ``auto`` resolves to one of these."""


QUANTIZED_CACHES: dict[str, tuple[str, int]] = {
    f"{backend}-int{bits}": (backend, bits)
    for backend, all_bits in (("quanto", (2, 4)), ("hqq", (1, 2, 3, 4, 8)))
    for bits in all_bits
}
"""transformers ``QuantizedCache`` backends (``cache_utils.py``: ``QuantoQuantizedLayer`` takes
nbits 2 or 4, ``HQQQuantizedLayer`` 1, 2, 3, 4 or 8) -> (backend, bits per value)."""
DEFAULT_Q_GROUP_SIZE = 64
"""transformers 5.23 ``QuantizedLayer(q_group_size=64)``."""
DEFAULT_RESIDUAL_LENGTH = 128
"""transformers 5.23 ``QuantizedLayer(residual_length=128)``."""

for _alias, _target in (("fp8-per-tensor", "fp8_per_tensor"), ("fp8-per-token-head", "fp8_per_token_head"),
                        ("int8-per-token-head", "int8_per_token_head")):
    ALIASES[_alias] = _target
for _name in QUANTIZED_CACHES:
    ALIASES[_name.replace("-", "_")] = _name


def dtype_names() -> list[str]:
    """Every accepted ``--kv-dtype`` spelling, canonical names first."""
    return ["auto", *_DTYPES, *QUANTIZED_CACHES, *ALIASES]


def canonical_dtype_name(name: str) -> str:
    if not isinstance(name, str):
        raise InvalidRequestError("kv_dtype", name, "a dtype name such as auto, fp16, bf16, fp8, q8_0")
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key == "auto" or key in _DTYPES or key in QUANTIZED_CACHES:
        return key
    raise UnknownNameError("kv dtype", name, dtype_names())


def quantized_cache_dtype(
    name: str, model_dtype: str, group_size: int = DEFAULT_Q_GROUP_SIZE,
    residual_length: int = DEFAULT_RESIDUAL_LENGTH,
) -> KVDtype:
    """A transformers quantized-cache format as a block format (KIVI-style, ``QuantizedLayer``).

    Each group of ``group_size`` values is stored as ``group_size x bits / 8`` packed bytes plus one
    scale and one zero point in the model's compute dtype (optimum-quanto ``MaxOptimizer`` and HQQ
    both return scale and shift/zero in the input dtype), so a block is
    ``group_size x bits / 8 + 2 x model-dtype bytes``. The most recent tokens stay unquantized:
    ``QuantizedLayer.update`` moves the residual into the quantized store once it reaches
    ``residual_length``, so at most ``residual_length - 1`` tokens are full precision.
    """
    backend, bits = QUANTIZED_CACHES[name]
    # A bool or float is never a count: 8.0 would make every byte count a float, True a group of 1.
    if type(group_size) is not int:
        raise InvalidRequestError("--kv-group-size", group_size, "an integer group size")
    if type(residual_length) is not int:
        raise InvalidRequestError("--residual-length", residual_length, "an integer number of tokens")
    if model_dtype not in MODEL_DTYPES:
        raise InvalidRequestError("model dtype", model_dtype, f"one of {', '.join(MODEL_DTYPES)}")
    if backend == "hqq" and bits == 3:
        # hqq BitPack.pack_3bit_32 (hqq 0.2.8): ten 3-bit values per int32, the group's values
        # padded to a multiple of ten (quantize reshapes to [group_size, -1] for axis 0 and packs
        # along the group), so a group of 64 takes 7 x 4 = 28 bytes, not 24.
        if group_size < 1:
            raise InvalidRequestError("--kv-group-size", group_size, "a positive group size")
        packed = -(-group_size // 10) * 4
    else:
        if group_size < 1 or (group_size * bits) % 8:
            raise InvalidRequestError(
                "--kv-group-size", group_size, f"a positive group size whose {bits}-bit values fill whole bytes"
            )
        packed = group_size * bits // 8
    if residual_length < 1:
        raise InvalidRequestError("--residual-length", residual_length, "a positive number of tokens")
    compute = _DTYPES[model_dtype]
    scale_bytes = 2 * compute.block_bytes
    return KVDtype(
        name=name, block_values=group_size, block_bytes=packed + scale_bytes,
        block_scale_bytes=scale_bytes, torch_dtype="uint8", residual_tokens=residual_length - 1,
        residual_dtype=model_dtype,
        description=f"transformers QuantizedCache ({backend}, {bits}-bit, group {group_size}, "
        f"scale + zero point in {model_dtype}, residual up to {residual_length - 1} tokens in {model_dtype})",
    )


def get_dtype(name: str) -> KVDtype:
    """Look up a concrete dtype by name or alias (not ``auto``: resolve it against a model first)."""
    key = canonical_dtype_name(name)
    if key == "auto" or key in QUANTIZED_CACHES:
        # Both depend on the model's dtype: callers with a model use ``resolve_dtype``.
        raise UnknownNameError("kv dtype", name, list(_DTYPES))
    return _DTYPES[key]


def resolve_dtype(
    name: str, model_dtype: str, *, group_size: int | None = None, residual_length: int | None = None
) -> KVDtype:
    """``auto`` means the model's own dtype (a config's ``torch_dtype``). Quantized-cache names
    (``quanto-int4`` ...) take ``group_size`` and ``residual_length`` (transformers defaults)."""
    key = canonical_dtype_name(name)
    if not isinstance(model_dtype, str) or model_dtype not in MODEL_DTYPES:
        raise InvalidRequestError("model dtype", model_dtype, f"one of {', '.join(MODEL_DTYPES)}")
    if key in QUANTIZED_CACHES:
        return quantized_cache_dtype(
            key, model_dtype, DEFAULT_Q_GROUP_SIZE if group_size is None else group_size,
            DEFAULT_RESIDUAL_LENGTH if residual_length is None else residual_length,
        )
    return get_dtype(model_dtype if key == "auto" else key)
