"""GGUF files and llama.cpp's weight types: block sizes, the mixed presets, and the file reader.

Block types (``q4_k``, ``q8_0``, ...): ``(values per block, bytes per block)`` as ggml defines
them; the table below is ``gguf.constants.GGML_QUANT_SIZES`` (gguf 0.19.0, the ``gguf``
package of llama.cpp's ``gguf-py``), copied so that sizing needs no optional package;
``tests/test_gguf.py`` checks it against the installed package. A row of ``n`` values takes
``n / block x bytes`` (llama.cpp ``ggml_row_size``; rows must be whole blocks).

Mixed presets (``q4_k_m``, ``q5_k_m``, ...): the file type names a default block type and
llama.cpp's quantizer picks each tensor's type by rule: ``llama_tensor_get_type_impl`` and
``llama_ftype_get_default_type`` in ``src/llama-quant.cpp`` (ggml-org/llama.cpp @ 007dbbf3).
kvcalc follows those rules for the tensors a decoder has (token_embd, output, attn_q/k/v/output,
attn_qkv/kv_b, ffn_gate/up/down, experts); the exact mix of a real file is its tensor table,
which ``read_gguf`` returns.

Reading a file (``read_gguf``) uses the ``gguf`` package (``pip install 'kvcalc[hf]'``), which
memory-maps the file and parses the header and tensor table: no tensor data is read.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kvcalc.errors import InvalidConfigError, InvalidRequestError

if TYPE_CHECKING:
    from kvcalc.models import LayerGroup, ModelConfig

GGML_BLOCKS: dict[str, tuple[int, int]] = {
    "f32": (1, 4), "f16": (1, 2), "bf16": (1, 2), "f64": (1, 8),
    "i8": (1, 1), "i16": (1, 2), "i32": (1, 4), "i64": (1, 8),
    "q4_0": (32, 18), "q4_1": (32, 20), "q5_0": (32, 22), "q5_1": (32, 24), "q8_0": (32, 34), "q8_1": (32, 40),
    "q2_k": (256, 84), "q3_k": (256, 110), "q4_k": (256, 144), "q5_k": (256, 176), "q6_k": (256, 210),
    "q8_k": (256, 292),
    "iq2_xxs": (256, 66), "iq2_xs": (256, 74), "iq3_xxs": (256, 98), "iq1_s": (256, 50), "iq4_nl": (32, 18),
    "iq3_s": (256, 110), "iq2_s": (256, 82), "iq4_xs": (256, 136), "iq1_m": (256, 56),
    "tq1_0": (256, 54), "tq2_0": (256, 66), "mxfp4": (32, 17),
}
"""ggml type -> (values per block, bytes per block): gguf 0.19.0 ``GGML_QUANT_SIZES``. E.g. q4_k:
256 values in 144 B (2 fp16 super-scales + 12 B of 6-bit scales/mins + 128 B of 4-bit values), 4.5
bits per weight; q8_0: 32 values in 34 B (an fp16 scale + 32 int8)."""

PRESETS: dict[str, str] = {
    "q2_k": "q2_k", "q2_k_s": "q2_k", "q3_k_s": "q3_k", "q3_k_m": "q3_k", "q3_k_l": "q3_k",
    "q4_k_s": "q4_k", "q4_k_m": "q4_k", "q5_k_s": "q5_k", "q5_k_m": "q5_k", "q6_k": "q6_k",
    "q4_0": "q4_0", "q4_1": "q4_1", "q5_0": "q5_0", "q5_1": "q5_1", "q8_0": "q8_0",
    "iq4_nl": "iq4_nl", "iq4_xs": "iq4_xs",
}
"""File type (``llama-quantize`` preset) -> its default block type (``llama_ftype_get_default_type``).
Presets kvcalc sizes by rule; the IQ1/IQ2/IQ3 presets need an importance matrix and are not modelled."""

FILE_TYPES: dict[int, str] = {
    0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 7: "q8_0", 8: "q5_0", 9: "q5_1", 10: "q2_k", 11: "q3_k_s",
    12: "q3_k_m", 13: "q3_k_l", 14: "q4_k_s", 15: "q4_k_m", 16: "q5_k_s", 17: "q5_k_m", 18: "q6_k",
    19: "iq2_xxs", 20: "iq2_xs", 21: "q2_k_s", 22: "iq3_xs", 23: "iq3_xxs", 24: "iq1_s", 25: "iq4_nl",
    26: "iq3_s", 27: "iq3_m", 28: "iq2_s", 29: "iq2_m", 30: "iq4_xs", 31: "iq1_m", 32: "bf16",
    36: "tq1_0", 37: "tq2_0", 38: "mxfp4_moe",
}
"""``general.file_type`` (llama.h ``enum llama_ftype``, ``LLAMA_FTYPE_MOSTLY_*``) -> preset name."""

FALLBACK = {"q2_k": "q4_0", "q3_k": "q4_0", "q4_k": "q5_0", "q5_k": "q5_1", "q6_k": "q8_0", "iq4_xs": "iq4_nl"}
"""``tensor_type_fallback``: a tensor whose rows are not whole 256-blocks takes this 32-block type
(then f16 if rows are not whole 32-blocks either)."""


def block_type(name: str) -> tuple[int, int] | None:
    return GGML_BLOCKS.get(name.strip().lower())


def row_bytes(type_name: str, values: int) -> int:
    """Bytes of one row of ``values`` (``ggml_row_size``): whole blocks only."""
    block, size = GGML_BLOCKS[type_name]
    if values % block:
        raise InvalidRequestError("--weight-dtype", type_name, f"rows that are whole {block}-value blocks")
    return values // block * size


def _use_more_bits(i_layer: int, n_layers: int) -> bool:
    """llama-quant.cpp ``use_more_bits``: the first and last eighth, and every third layer between."""
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


def _attn_v_type(p: str, new: str, i_layer: int, n_layers: int, n_gqa: int, n_expert: int, falcon: bool) -> str:
    """attn_v and attn_kv_b (attn_qkv is ``_attn_qkv_type``)."""
    if p == "q2_k":
        new = "q4_k" if n_gqa >= 4 else "q3_k"
    elif p == "q2_k_s" and n_gqa >= 4:
        new = "q4_k"
    elif p in ("iq4_nl", "iq4_xs") and n_gqa >= 4:
        new = "q5_k"
    elif p == "q3_k_m":
        new = "q5_k" if i_layer < 2 else "q4_k"
    elif p == "q3_k_l":
        new = "q5_k"
    elif p in ("q4_k_m", "q5_k_m") and _use_more_bits(i_layer, n_layers):
        new = "q6_k"
    elif p == "q4_k_s" and i_layer < 4:
        new = "q5_k"
    if n_expert == 8:
        new = "q8_0"
    return new


def _attn_qkv_type(p: str, new: str, i_layer: int, n_layers: int, n_gqa: int, n_expert: int, falcon: bool) -> str:
    return {"q3_k_m": "q4_k", "q3_k_l": "q4_k", "q4_k_m": "q5_k", "q5_k_m": "q6_k"}.get(p, new)


def _attn_k_type(p: str, new: str, i_layer: int, n_layers: int, n_gqa: int, n_expert: int, falcon: bool) -> str:
    return "q8_0" if n_expert == 8 else new


def _ffn_down_q3_q4_type(p: str, new: str, i_layer: int, n_layers: int, falcon: bool) -> str:
    """ffn_down under q3_k_m, q3_k_l and q4_k_m, where the falcon rules differ."""
    if p == "q3_k_m":
        if i_layer < n_layers // 16:
            return "q5_k"
        return "q4_k" if not falcon or _use_more_bits(i_layer, n_layers) else "q3_k"
    if p == "q3_k_l":
        return "q4_k" if falcon else "q5_k"
    if falcon:
        return "q6_k" if i_layer < n_layers // 16 else ("q5_k" if _use_more_bits(i_layer, n_layers) else "q4_k")
    return "q6_k" if _use_more_bits(i_layer, n_layers) else new


def _ffn_down_type(p: str, new: str, i_layer: int, n_layers: int, n_gqa: int, n_expert: int, falcon: bool) -> str:
    if p == "q2_k":
        return "q3_k"
    if p == "q2_k_s":
        return "q4_k" if i_layer < n_layers // 8 else new
    if p in ("q3_k_m", "q3_k_l", "q4_k_m"):
        return _ffn_down_q3_q4_type(p, new, i_layer, n_layers, falcon)
    if p in ("iq4_nl", "iq4_xs") and i_layer < n_layers // 8:
        return "q5_k"
    if p == "q5_k_m" and _use_more_bits(i_layer, n_layers):
        return "q6_k"
    if p == "q4_k_s" and not falcon and i_layer < n_layers // 8:
        return "q5_k"
    return new


def _attn_output_type(p: str, new: str, i_layer: int, n_layers: int, n_gqa: int, n_expert: int,
                      falcon: bool) -> str:
    if falcon:
        return "q4_k" if p == "q3_k_l" else new
    if n_expert == 8:
        return "q5_k" if p in ("q2_k", "q3_k_s", "q3_k_m", "iq4_nl", "q4_k_s", "q4_k_m", "iq4_xs") else new
    return {"q2_k": "q3_k", "q3_k_m": "q4_k", "q3_k_l": "q5_k"}.get(p, new)


_PresetRule = Callable[[str, str, int, int, int, int, bool], str]

_TYPE_BY_CATEGORY: dict[str, _PresetRule] = {
    "attn_v": _attn_v_type, "attn_kv_b": _attn_v_type, "attn_qkv": _attn_qkv_type, "attn_k": _attn_k_type,
    "ffn_down": _ffn_down_type, "attn_output": _attn_output_type,
}
"""One rule per tensor category, each ``(preset, preset's type, i_layer, n_layers, n_gqa, n_expert, falcon)``;
a category not here (attn_q, ffn_gate, ffn_up, ...) takes the preset's type."""


def preset_tensor_type(preset: str, category: str, i_layer: int, n_layers: int, *, n_gqa: int = 1,
                       n_expert: int = 0, tied_embeddings: bool = False, falcon: bool = False) -> str:
    """The block type ``llama_tensor_get_type_impl`` gives a tensor of ``category`` (token_embd,
    output, attn_q, attn_k, attn_v, attn_qkv, attn_kv_b, attn_output, ffn_gate, ffn_up,
    ffn_down) in layer ``i_layer`` under the K-quant and legacy presets. ``i_layer`` counts attn_v
    tensors for attn_v (one per layer in a decoder, so the layer index). The 70B-only attn_v bump
    (``LLM_TYPE_70B``) is applied by the caller, who knows the model."""
    new = PRESETS[preset]
    if category == "output" or (tied_embeddings and category == "token_embd"):
        return "q8_0" if falcon or new == "q8_0" else "q6_k"
    rule = _TYPE_BY_CATEGORY.get(category)
    if rule is None:
        return new
    return rule(preset, new, i_layer, n_layers, n_gqa, n_expert, falcon)


def fit_row_type(type_name: str, cols: int) -> str:
    """``tensor_type_fallback``: the type a tensor of rows of ``cols`` values really takes."""
    block = GGML_BLOCKS[type_name][0]
    if cols % block == 0:
        return type_name
    fallback = FALLBACK.get(type_name, "f16")
    return fallback if cols % GGML_BLOCKS[fallback][0] == 0 else "f16"


# ---------------------------------------------------------------------------------------------
# Reading a GGUF file.

SWA_PERIODS: dict[str, int] = {"gemma2": 2, "gemma3": 6, "cohere2": 4, "gpt-oss": 2}
"""llama.cpp's sliding-window period per architecture when the GGUF has no
``sliding_window_pattern`` (``hparams.set_swa_pattern(n)`` in each model's loader, e.g.
src/models/gemma2.cpp ``swa_period = 2``; the key, an int or a per-layer bool array, overrides it)."""

SPLIT_RE = re.compile(r"^(?P<stem>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")
"""llama.cpp ``llama_split_path``: ``PREFIX-%05d-of-%05d.gguf``, numbered from 1."""
MAX_GGUF_FILES = 1000


@dataclass(frozen=True, kw_only=True)
class GgufTensor:
    name: str
    type: str
    shape: tuple[int, ...]
    """ggml order: ``ne[0]`` (values per row) first."""
    n_bytes: int


@dataclass(frozen=True, kw_only=True)
class GgufFile:
    path: str
    files: int
    architecture: str
    metadata: dict[str, Any]
    tensors: tuple[GgufTensor, ...] = field(default_factory=tuple)

    @property
    def tensor_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)

    @property
    def parameters(self) -> int:
        total = 0
        for t in self.tensors:
            n = 1
            for d in t.shape:
                n *= d
            total += n
        return total

    def bytes_by_type(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tensors:
            out[t.type] = out.get(t.type, 0) + t.n_bytes
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def split_files(path: Path) -> list[Path]:
    """The files of a split GGUF (``model-00001-of-00003.gguf`` names all three), else [path]."""
    m = SPLIT_RE.match(path.name)
    if not m:
        return [path]
    count = int(m.group("count"))
    if not 1 <= count <= MAX_GGUF_FILES:
        raise InvalidConfigError(str(path), f"split count {count} is outside 1 to {MAX_GGUF_FILES}")
    files = [path.with_name(f"{m.group('stem')}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise InvalidConfigError(str(path), f"split GGUF is missing {len(missing)} of {count} files, e.g. {missing[0]}")
    return files


def _value(field_: Any) -> Any:
    """A metadata field's value as plain Python (strings decoded, arrays as lists or their length)."""
    import gguf

    types = field_.types
    if not types:
        return None
    if types[0] == gguf.GGUFValueType.ARRAY:
        # Arrays: only their length matters to kvcalc (tokens -> vocab size) and short int arrays
        # (per-layer head counts, the sliding-window pattern).
        n = len(field_.data)
        if n <= 4096 and len(types) > 1 and types[1] not in (gguf.GGUFValueType.STRING, gguf.GGUFValueType.ARRAY):
            return [field_.parts[i].tolist()[0] for i in field_.data]
        return {"array_length": n}
    part = field_.parts[field_.data[0]]
    if types[0] == gguf.GGUFValueType.STRING:
        return bytes(part).decode("utf-8", errors="replace")
    value = part.tolist()[0]
    return bool(value) if types[0] == gguf.GGUFValueType.BOOL else value


def read_gguf(path: str | Path) -> GgufFile:
    """Header and tensor table of a GGUF file (all parts of a split one). Needs ``gguf``."""
    p = Path(path)
    if not p.exists():
        raise InvalidRequestError("--config", str(path), "an existing .gguf file")
    if not p.is_file():
        raise InvalidRequestError("--config", str(path), "a regular .gguf file")
    try:
        import gguf
    except ImportError:
        raise InvalidRequestError("--config", str(path), "the gguf package for GGUF files: pip install 'kvcalc[hf]'")\
            from None
    metadata: dict[str, Any] = {}
    tensors: list[GgufTensor] = []
    files = split_files(p)
    for i, f in enumerate(files):
        with f.open("rb") as fh:
            if fh.read(4) != b"GGUF":
                raise InvalidConfigError(str(f), "not a GGUF file (no GGUF magic)")
        try:
            reader = gguf.GGUFReader(str(f), "r")
        except (ValueError, KeyError, IndexError, OverflowError, OSError, TypeError, struct.error) as exc:
            raise InvalidConfigError(str(f), f"malformed GGUF: {str(exc)[:120]}") from None
        if i == 0:
            metadata = {name: _value(fld) for name, fld in reader.fields.items() if not name.startswith("GGUF.")}
        for t in reader.tensors:
            tensors.append(GgufTensor(name=t.name, type=t.tensor_type.name.lower(),
                                      shape=tuple(int(d) for d in t.shape), n_bytes=int(t.n_bytes)))
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise InvalidConfigError(str(p), "GGUF header has no general.architecture")
    return GgufFile(path=str(p), files=len(files), architecture=arch, metadata=metadata, tensors=tuple(tensors))


def _meta_int(g: GgufFile, key: str, *, required: bool = True) -> int | None:
    value = g.metadata.get(f"{g.architecture}.{key}")
    if value is None:
        if required:
            raise InvalidConfigError(g.path, f"GGUF header lacks {g.architecture}.{key}")
        return None
    if isinstance(value, list):  # per-layer arrays (e.g. head_count_kv): kvcalc needs one value
        if not value or any(v != value[0] for v in value):
            raise InvalidConfigError(g.path, f"{g.architecture}.{key} varies per layer ({str(value)[:60]}); "
                                     "not supported")
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidConfigError(g.path, f"{g.architecture}.{key} = {value!r}: expected a non-negative integer")
    return value


def _gguf_vocab(g: GgufFile) -> Any:
    """The vocabulary: the token_embd rows (what the weights hold), else the tokenizer's token count
    (as the header holds it: ``ModelConfig`` validates it)."""
    embd = next((t for t in g.tensors if t.name == "token_embd.weight" and len(t.shape) == 2), None)
    tokens = g.metadata.get("tokenizer.ggml.tokens")
    return embd.shape[1] if embd is not None else (
        tokens.get("array_length") if isinstance(tokens, dict) else _meta_int(g, "vocab_size", required=False))


def _gguf_window_specs(g: GgufFile, full: Any, swa: Any, window: int, layers: int, ctx: int,
                       notes: list[str]) -> list[Any]:
    """Each layer's spec under ``{arch}.attention.sliding_window``: the layers
    ``sliding_window_pattern`` (or the architecture's period) marks slide; none when the window
    exceeds the context."""
    pattern = g.metadata.get(f"{g.architecture}.attention.sliding_window_pattern")
    if pattern is None:
        pattern = SWA_PERIODS.get(g.architecture)
    if isinstance(pattern, list) and len(pattern) == layers:
        specs = [swa if bool(v) else full for v in pattern]
    elif isinstance(pattern, int) and not isinstance(pattern, bool) and pattern >= 0:
        # llama.cpp set_swa_pattern(n): layer il is SWA when n == 0 or il % n < n - 1.
        specs = [swa if pattern == 0 or (i % pattern) < pattern - 1 else full for i in range(layers)]
    else:
        raise InvalidConfigError(g.path, f"{g.architecture}.attention.sliding_window is set but kvcalc does not "
                                 f"know which layers llama.cpp slides for architecture {g.architecture!r} "
                                 f"(sliding_window_pattern = {str(pattern)[:40]})")
    if window > ctx:
        specs = [full] * layers
        notes.append(f"sliding window {window} exceeds the context length {ctx}: every layer keeps every token")
    return specs


def _layer_groups(specs: list[Any]) -> list[LayerGroup]:
    """Consecutive equal specs as one repeated group."""
    from kvcalc.models import LayerGroup

    groups: list[LayerGroup] = []
    for s in specs:
        if groups and groups[-1].pattern[0] == s:
            groups[-1] = LayerGroup(repeat=groups[-1].repeat + 1, pattern=groups[-1].pattern)
        else:
            groups.append(LayerGroup(pattern=[s]))
    return groups


def model_from_gguf(g: GgufFile) -> ModelConfig:
    """A ``ModelConfig`` from the GGUF header: layers, heads, KV heads, head dims, context length,
    sliding window (``{arch}.attention.sliding_window``; with ``sliding_window_pattern`` the
    layers it marks true are sliding, as llama.cpp's ``swa_layers``), vocab (token count)."""
    from kvcalc.models import ModelConfig, Source
    from kvcalc.specs import FullAttention, SlidingWindowAttention

    recurrent = sorted(k for k in g.metadata if k.startswith((f"{g.architecture}.ssm.", f"{g.architecture}.wkv.")))
    if recurrent:
        raise InvalidConfigError(g.path, f"recurrent (Mamba/RWKV) layers ({recurrent[0]}) are not read from GGUF "
                                 "files; give the model's config.json")
    layers = _meta_int(g, "block_count")
    heads = _meta_int(g, "attention.head_count")
    hidden = _meta_int(g, "embedding_length")
    ctx = _meta_int(g, "context_length")
    assert layers is not None and heads is not None and hidden is not None and ctx is not None
    kv_heads = _meta_int(g, "attention.head_count_kv", required=False) or heads
    key_len = _meta_int(g, "attention.key_length", required=False)
    if key_len is None:
        if heads == 0 or hidden % heads:
            raise InvalidConfigError(g.path, f"no attention.key_length and embedding_length {hidden} is not a "
                                     f"multiple of head_count {heads}")
        key_len = hidden // heads
    value_len = _meta_int(g, "attention.value_length", required=False) or key_len
    window = _meta_int(g, "attention.sliding_window", required=False)
    if window is None and g.architecture == "gemma2":
        window = 4096  # llama.cpp src/models/gemma2.cpp: n_swa = 4096, "default value of gemma 2"
    ffn = _meta_int(g, "feed_forward_length", required=False)
    vocab = _gguf_vocab(g)
    v_dim = value_len if value_len != key_len else None
    full: Any = FullAttention(num_kv_heads=kv_heads, head_dim=key_len, v_head_dim=v_dim)
    kv_lora = _meta_int(g, "attention.kv_lora_rank", required=False)
    if kv_lora:
        # MLA (deepseek2 and kin): one latent of kv_lora_rank + the rope dims per token.
        from kvcalc.specs import LatentAttention

        rope = _meta_int(g, "rope.dimension_count")
        assert rope is not None
        full = LatentAttention(kv_lora_rank=kv_lora, qk_rope_head_dim=rope,
                               q_lora_rank=_meta_int(g, "attention.q_lora_rank", required=False) or None)
    specs: list[Any] = [full] * layers
    notes = [f"read from the GGUF header ({g.files} file(s)), architecture {g.architecture}"]
    if window and kv_lora:
        raise InvalidConfigError(g.path, "a sliding window on latent (MLA) attention is not supported")
    if window:
        swa = SlidingWindowAttention(num_kv_heads=kv_heads, head_dim=key_len, window=window,
                                     v_head_dim=value_len if value_len != key_len else None)
        specs = _gguf_window_specs(g, full, swa, window, layers, ctx, notes)
    name = g.metadata.get("general.name")
    label = Path(g.path).name
    try:
        return ModelConfig(
            name=str(name) if isinstance(name, str) and name else label,
            dtype="fp16", max_position_embeddings=ctx, num_attention_heads=heads, hidden_size=hidden,
            intermediate_size=ffn or None, vocab_size=vocab or None,
            tie_word_embeddings=not any(t.name == "output.weight" for t in g.tensors),
            layers=_layer_groups(specs), architecture=g.architecture,
            source=Source(config=g.path, notes=notes),
        )
    except (ValueError, TypeError) as exc:
        raise InvalidConfigError(g.path, str(exc)) from None
