"""Weights: parameter counts (published, computed from the architecture, or read exactly from
safetensors files) and their bytes at a weight dtype.

Computed count, per decoder layer (biases ignored: they are < 0.01 % of any catalogued model):

* attention: q ``h x n_h x d``, k ``h x H x d``, v ``h x H x d_v``, o ``n_h x d_v x h``; MLA
  (DeepSeek-V2/V3 ``modeling_deepseek.py``): ``q_a h x q_lora`` + norm + ``q_b q_lora x n_h x
  (nope + rope)`` (or ``q h x n_h x (nope + rope)`` without q_lora), ``kv_a h x (kv_lora + rope)``
  + norm + ``kv_b kv_lora x n_h x (nope + v)``, ``o n_h x v x h``;
* MLP: gated (SwiGLU/GeGLU, 3 matrices ``h x I``) except the GPT-2/GPT-NeoX/Falcon families
  (2 matrices; ``NON_GATED_FAMILIES``); MoE: ``E x 3 x h x I_moe`` + router ``h x E`` + shared experts, with the first
  ``first_dense_layers`` dense;
* two norms of ``h``.

Plus embeddings ``V x h``, an untied LM head ``V x h``, a final norm, and GPT-2's learned
positions (``n_ctx x h``). Recurrent (Mamba/linear-attention) layers are not modelled: the count
is then unknown (None), as is any count missing ``vocab_size`` or ``intermediate_size``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from kvcalc.errors import InvalidConfigError, InvalidRequestError
from kvcalc.models import ModelConfig
from kvcalc.specs import FixedState, FullAttention, LatentAttention, NoCache

MAX_HEADER_BYTES = 100 * (1 << 20)
"""A safetensors header larger than this is rejected (the format stores it as a u64 length)."""


@dataclass(frozen=True, kw_only=True)
class WeightDtype:
    name: str
    bits: int
    group_size: int | None = None
    """Quantization group (AWQ/GPTQ): each group of this many weights carries a scale and a zero."""
    scale_bits: int = 0
    """Bits of scale + zero point per group (AWQ/GPTQ: fp16 scale + packed 4-bit zero ~ 20 bits;
    we count an fp16 scale and an fp16-equivalent zero, 32 bits, an upper bound)."""

    def bytes_for(self, params: int) -> int:
        """Bytes of ``params`` weights, rounded up to whole bytes (and whole groups)."""
        bits = params * self.bits
        if self.group_size:
            groups = -(-params // self.group_size)
            bits += groups * self.scale_bits
        return -(-bits // 8)


WEIGHT_DTYPES: dict[str, WeightDtype] = {
    d.name: d
    for d in (
        WeightDtype(name="fp32", bits=32),
        WeightDtype(name="bf16", bits=16),
        WeightDtype(name="fp16", bits=16),
        WeightDtype(name="fp8", bits=8),
        WeightDtype(name="int8", bits=8),
        WeightDtype(name="int4", bits=4, group_size=128, scale_bits=32),
    )
}
WEIGHT_ALIASES = {"auto": "", "float16": "fp16", "bfloat16": "bf16", "float32": "fp32", "awq": "int4",
                  "gptq": "int4", "w4a16": "int4", "fp8_e4m3": "fp8"}


def get_weight_dtype(name: str, model_dtype: str) -> WeightDtype:
    """``auto`` is the model's dtype; int4 is AWQ/GPTQ-style with group-128 scales and zeros."""
    key = name.strip().lower()
    key = WEIGHT_ALIASES.get(key, key) or model_dtype
    dtype = WEIGHT_DTYPES.get(key)
    if dtype is None:
        raise InvalidRequestError("--weight-dtype", name, "auto, bf16, fp16, fp32, fp8, int8 or int4 (AWQ/GPTQ)")
    return dtype


NON_GATED_FAMILIES = ("gpt2", "gpt-neox", "pythia", "falcon", "gpt-j", "opt-", "bloom", "starcoder", "santacoder")
"""Families whose MLP is two matrices (fc_in/fc_out with GELU); every other family is gated (SwiGLU/GeGLU:
gate, up, down). ModelConfig has no activation field, so the family is read from the name or HF repo."""


def is_gated_mlp(model: ModelConfig) -> bool:
    ref = f"{model.name} {model.source.hf_repo or ''}".lower()
    return not any(f in ref for f in NON_GATED_FAMILIES)


def _mlp_params(model: ModelConfig, h: int, inter: int) -> int:
    return (3 if is_gated_mlp(model) else 2) * h * inter


def _attention_params(model: ModelConfig, spec: object, h: int) -> int | None:
    n_h = model.num_attention_heads
    if isinstance(spec, LatentAttention):
        if spec.qk_nope_head_dim is None or spec.v_head_dim is None:
            return None
        qk = spec.qk_nope_head_dim + spec.qk_rope_head_dim
        if spec.q_lora_rank:
            q = h * spec.q_lora_rank + spec.q_lora_rank + spec.q_lora_rank * n_h * qk
        else:
            q = h * n_h * qk
        kv = h * (spec.kv_lora_rank + spec.qk_rope_head_dim) + spec.kv_lora_rank
        kv += spec.kv_lora_rank * n_h * (spec.qk_nope_head_dim + spec.v_head_dim)
        return q + kv + n_h * spec.v_head_dim * h
    if isinstance(spec, FullAttention):
        d, dv, kvh = spec.head_dim, spec.v_dim, spec.num_kv_heads
        return h * n_h * d + h * kvh * d + h * kvh * dv + n_h * dv * h
    return 0


def computed_parameters(model: ModelConfig) -> int | None:
    """Parameters from the architecture (see the module docstring), or None when unknown."""
    h, vocab, inter = model.hidden_size, model.vocab_size, model.intermediate_size
    if vocab is None or inter is None:
        return None
    total = vocab * h * (1 if model.tie_word_embeddings else 2) + h
    if model.name.startswith("gpt2"):
        total += model.max_position_embeddings * h  # GPT-2's learned position embeddings (wpe)
    moe = model.moe
    for i, spec in enumerate(model.layer_specs):
        if isinstance(spec, FixedState):
            return None
        attn = 0 if isinstance(spec, NoCache) else _attention_params(model, spec, h)
        if attn is None:
            return None
        total += attn + 2 * h
        if moe is not None and i >= moe.first_dense_layers:
            e_inter = moe.moe_intermediate_size or inter
            total += moe.num_experts * 3 * h * e_inter + h * moe.num_experts
            if moe.num_shared_experts:
                s_inter = moe.shared_expert_intermediate_size or e_inter
                total += moe.num_shared_experts * 3 * h * s_inter
        else:
            total += _mlp_params(model, h, inter)
    return total


@dataclass(frozen=True, kw_only=True)
class ParamCount:
    parameters: int | None
    source: str
    """published (model YAML num_parameters), computed (architecture), safetensors (file headers)."""


def model_parameters(model: ModelConfig) -> ParamCount:
    """The published count when the model has one, else the computed count (or None)."""
    if model.num_parameters is not None:
        return ParamCount(parameters=model.num_parameters, source="published num_parameters")
    computed = computed_parameters(model)
    if computed is None:
        return ParamCount(parameters=None, source="unknown (the config lacks what a count needs)")
    return ParamCount(parameters=computed, source="computed from the architecture")


_ST_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                   "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U32": 4, "U16": 2, "U64": 8, "I4": 1}


@dataclass(frozen=True, kw_only=True)
class SafetensorsWeights:
    bytes: int
    """Sum over tensors of numel x element size, as stored (quantized packs included)."""
    parameters: int
    """Sum of numel over tensors (packed quantized tensors count their stored elements)."""
    files: int
    source: str


def _read_header(path: Path) -> dict[str, object]:
    if not path.is_file():  # a FIFO or device would block or never end
        raise InvalidRequestError("--weights", str(path), "a regular .safetensors file")
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise InvalidConfigError(str(path), "not a safetensors file (shorter than its 8-byte header length)")
        (length,) = struct.unpack("<Q", raw)
        if length > MAX_HEADER_BYTES:
            raise InvalidConfigError(str(path), f"safetensors header of {length:,} bytes exceeds the cap")
        try:
            header: dict[str, object] = json.loads(fh.read(length))
        except ValueError as exc:
            raise InvalidConfigError(str(path), f"malformed safetensors header: {exc}") from None
    return header


def read_safetensors(path: str | Path) -> SafetensorsWeights:
    """Exact weight bytes from safetensors headers (a file, or a folder of ``*.safetensors``), or
    the ``metadata.total_size`` of a ``model.safetensors.index.json``. Reads headers only."""
    p = Path(path)
    if p.is_dir():
        index = p / "model.safetensors.index.json"
        files = sorted(p.glob("*.safetensors"))
        if files:
            return _sum_headers(files)
        if index.exists():
            p = index
        else:
            raise InvalidRequestError("--weights", str(path), "a .safetensors file, a folder of them, or an index")
    if not p.exists():
        raise InvalidRequestError("--weights", str(path), "an existing file or folder")
    if not p.is_file():  # a FIFO or device would block or never end
        raise InvalidRequestError("--weights", str(path), "a regular file or a folder")
    if p.name.endswith(".json"):
        from kvcalc.loader import parse_json, read_text_capped

        data = parse_json(read_text_capped(p, "safetensors index"), str(p))  # capped, like every config
        try:
            total = int(data["metadata"]["total_size"])
        except (ValueError, KeyError, TypeError):
            raise InvalidConfigError(str(p), "expected a safetensors index with metadata.total_size") from None
        return SafetensorsWeights(bytes=total, parameters=0, files=0, source=f"{p.name} metadata.total_size")
    return _sum_headers([p])


def _sum_headers(files: list[Path]) -> SafetensorsWeights:
    total_bytes = total_params = 0
    for f in files:
        for name, info in _read_header(f).items():
            if name == "__metadata__" or not isinstance(info, dict):
                continue
            numel = 1
            for dim in info.get("shape", []):
                numel *= int(dim)
            size = _ST_DTYPE_BYTES.get(str(info.get("dtype")))
            offsets = info.get("data_offsets")
            if isinstance(offsets, list) and len(offsets) == 2:
                total_bytes += int(offsets[1]) - int(offsets[0])
            elif size is not None:
                total_bytes += numel * size
            total_params += numel
    return SafetensorsWeights(bytes=total_bytes, parameters=total_params, files=len(files),
                              source=f"{len(files)} safetensors header(s)")
