"""Weights: parameter counts (published, computed from the architecture, or read exactly from
safetensors files) and their bytes at a weight dtype.

Computed count, per decoder layer (biases ignored: they are < 0.01 % of any catalogued model):

* attention: q ``h x n_h x d``, k ``h x H x d``, v ``h x H x d_v``, o ``n_h x d_v x h``; MLA
  (DeepSeek-V2/V3 ``modeling_deepseek.py``): ``q_a h x q_lora`` + norm + ``q_b q_lora x n_h x
  (nope + rope)`` (or ``q h x n_h x (nope + rope)`` without q_lora), ``kv_a h x (kv_lora + rope)``
  + norm + ``kv_b kv_lora x n_h x (nope + v)``, ``o n_h x v x h``;
* MLP: gated (SwiGLU/GeGLU, 3 matrices ``h x I``) except the architectures in
  ``NON_GATED_ARCHITECTURES`` (2 matrices); MoE: ``E x 3 x h x I_moe`` + router ``h x E`` + shared
  experts, with the first ``first_dense_layers`` dense;
* two norms of ``h``.

Plus embeddings ``V x h``, an untied LM head ``V x h``, a final norm, and learned positions
(``n_ctx x h``) for ``LEARNED_POSITION_ARCHITECTURES``. The count is read from the structure (the
config's ``architectures[0]``, the layers), never from the model's name: a renamed copy of a
config counts the same. Recurrent (Mamba/linear-attention) layers are not modelled: the count
is then unknown (None), as is any count missing ``vocab_size`` or ``intermediate_size``.
"""

from __future__ import annotations

import fnmatch
import json
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvcalc.errors import InvalidConfigError, InvalidRequestError
from kvcalc.models import ModelConfig
from kvcalc.specs import CrossAttention, FixedState, FullAttention, LatentAttention, NoCache, Spec, StatefulAttention

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
WEIGHT_ALIASES = {"auto": "", "float16": "fp16", "bfloat16": "bf16", "float32": "fp32", "f16": "fp16", "f32": "fp32",
                  "awq": "int4",
                  "gptq": "int4", "w4a16": "int4", "fp8_e4m3": "fp8"}


def get_weight_dtype(name: str, model_dtype: str) -> WeightDtype:
    """``auto`` is the model's dtype; int4 is AWQ/GPTQ-style with group-128 scales and zeros."""
    key = name.strip().lower()
    key = WEIGHT_ALIASES.get(key, key) or model_dtype
    dtype = WEIGHT_DTYPES.get(key)
    if dtype is None:
        raise InvalidRequestError("--weight-dtype", name, "auto, bf16, fp16, fp32, fp8, int8, int4 (AWQ/GPTQ), "
                                  "a GGUF block type (q4_k, q6_k, q8_0, iq4_xs, ...) or preset (q4_k_m, q5_k_m, ...)")
    return dtype


NON_GATED_ARCHITECTURES = frozenset({
    # Two-matrix MLPs (fc_in/fc_out or c_fc/c_proj with GELU/ReLU), per transformers' modeling files.
    "GPT2LMHeadModel", "GPTNeoXForCausalLM", "GPTJForCausalLM", "GPTNeoForCausalLM", "GPTBigCodeForCausalLM",
    "FalconForCausalLM", "RWForCausalLM", "OPTForCausalLM", "BloomForCausalLM", "Starcoder2ForCausalLM",
    "PhiForCausalLM", "MPTForCausalLM", "NemotronForCausalLM",
})
"""Architectures (HF ``architectures[0]``) whose MLP is two matrices; every other one is gated
(gate, up, down). The architecture is the config's structure, not its name: renaming a model (or
its folder, or its repo) never changes its count."""

LEARNED_POSITION_ARCHITECTURES = frozenset({"GPT2LMHeadModel", "GPTBigCodeForCausalLM", "GPTNeoForCausalLM"})
"""Architectures with a learned position table ``wpe = nn.Embedding(max_position_embeddings, h)``
(transformers ``modeling_gpt2.py``, ``modeling_gpt_bigcode.py``, ``modeling_gpt_neo.py``)."""


def is_gated_mlp(model: ModelConfig) -> bool:
    return model.architecture not in NON_GATED_ARCHITECTURES


def _learned_positions(model: ModelConfig) -> bool:
    return model.architecture in LEARNED_POSITION_ARCHITECTURES


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
    if _learned_positions(model):
        total += model.max_position_embeddings * h  # the learned position table (wpe)
    moe = model.moe
    for i, spec in enumerate(model.layer_specs):
        if isinstance(spec, FixedState | StatefulAttention | CrossAttention):
            # Mamba mixers and cross-attention blocks (with the vision tower behind them) have weights
            # this count does not model: unknown, never a silent undercount.
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


# ---------------------------------------------------------------------------------------------
# Weights as the checkpoint stores them.


@dataclass(frozen=True, kw_only=True)
class WeightTensor:
    """One weight matrix (or ``count`` identical ones: MoE experts), as ``[rows, cols]`` = ``[out,
    in]`` (PyTorch ``nn.Linear.weight``; ggml ``ne = (cols, rows)``). Norms are one row."""

    module: str
    """Hugging Face module path, e.g. ``model.layers.3.self_attn.q_proj`` (what ignore lists match)."""
    category: str
    """llama.cpp's tensor category: token_embd, output, attn_q, attn_k, attn_v, attn_output, attn_q_a,
    attn_q_b, attn_kv_a_mqa, attn_kv_b, ffn_gate, ffn_up, ffn_down, ffn_gate_inp (router), norm, pos_embd."""
    role: str
    """embed, lm_head, norm, attn, mlp, router, expert, shared_expert, pos."""
    rows: int
    cols: int
    count: int = 1
    layer: int | None = None

    @property
    def numel(self) -> int:
        return self.rows * self.cols * self.count

    @property
    def is_linear(self) -> bool:
        return self.role in ("attn", "mlp", "expert", "shared_expert")


LayerTensor = Callable[..., WeightTensor]
"""Makes one of layer ``i``'s tensors: ``t(module, category, role, rows, cols, count=1)``."""


def _layer_tensor(i: int) -> LayerTensor:
    pre = f"model.layers.{i}"

    def t(module: str, category: str, role: str, rows: int, cols: int, count: int = 1) -> WeightTensor:
        return WeightTensor(module=f"{pre}.{module}", category=category, role=role, rows=rows, cols=cols,
                            count=count, layer=i)
    return t


def _latent_attention_tensors(spec: LatentAttention, n_h: int, h: int, t: LayerTensor) -> list[WeightTensor] | None:
    if spec.qk_nope_head_dim is None or spec.v_head_dim is None:
        return None
    qk = spec.qk_nope_head_dim + spec.qk_rope_head_dim
    out: list[WeightTensor] = []
    if spec.q_lora_rank:
        out += [t("self_attn.q_a_proj", "attn_q_a", "attn", spec.q_lora_rank, h),
                t("self_attn.q_a_layernorm", "norm", "norm", 1, spec.q_lora_rank),
                t("self_attn.q_b_proj", "attn_q_b", "attn", n_h * qk, spec.q_lora_rank)]
    else:
        out.append(t("self_attn.q_proj", "attn_q", "attn", n_h * qk, h))
    kv_a = spec.kv_lora_rank + spec.qk_rope_head_dim
    out += [t("self_attn.kv_a_proj_with_mqa", "attn_kv_a_mqa", "attn", kv_a, h),
            t("self_attn.kv_a_layernorm", "norm", "norm", 1, spec.kv_lora_rank),
            t("self_attn.kv_b_proj", "attn_kv_b", "attn", n_h * (spec.qk_nope_head_dim + spec.v_head_dim),
              spec.kv_lora_rank),
            t("self_attn.o_proj", "attn_output", "attn", h, n_h * spec.v_head_dim)]
    return out


def _attention_tensors(spec: Spec, n_h: int, h: int, t: LayerTensor) -> list[WeightTensor] | None:
    """One layer's attention matrices by its kind, or None for a kind this count does not model."""
    if isinstance(spec, LatentAttention):
        return _latent_attention_tensors(spec, n_h, h, t)
    if isinstance(spec, FullAttention):
        d, dv, kvh = spec.head_dim, spec.v_dim, spec.num_kv_heads
        return [t("self_attn.q_proj", "attn_q", "attn", n_h * d, h),
                t("self_attn.k_proj", "attn_k", "attn", kvh * d, h),
                t("self_attn.v_proj", "attn_v", "attn", kvh * dv, h),
                t("self_attn.o_proj", "attn_output", "attn", h, n_h * dv)]
    if isinstance(spec, NoCache):
        return []
    return None


def _mlp_tensors(model: ModelConfig, i: int, inter: int, t: LayerTensor) -> list[WeightTensor]:
    """Layer ``i``'s feed-forward matrices: routed experts (and shared ones), or a dense MLP."""
    h, moe = model.hidden_size, model.moe
    if moe is not None and i >= moe.first_dense_layers:
        e_inter, e = moe.moe_intermediate_size or inter, moe.num_experts
        router = "mlp.router" if (model.architecture or "").startswith("GptOss") else "mlp.gate"
        out = [t(router, "ffn_gate_inp", "router", e, h),
               t("mlp.experts.gate_proj", "ffn_gate", "expert", e_inter, h, e),
               t("mlp.experts.up_proj", "ffn_up", "expert", e_inter, h, e),
               t("mlp.experts.down_proj", "ffn_down", "expert", h, e_inter, e)]
        if moe.num_shared_experts:
            s_inter = (moe.shared_expert_intermediate_size or e_inter) * moe.num_shared_experts
            out += [t("mlp.shared_experts.gate_proj", "ffn_gate", "shared_expert", s_inter, h),
                    t("mlp.shared_experts.up_proj", "ffn_up", "shared_expert", s_inter, h),
                    t("mlp.shared_experts.down_proj", "ffn_down", "shared_expert", h, s_inter)]
        return out
    if is_gated_mlp(model):
        return [t("mlp.gate_proj", "ffn_gate", "mlp", inter, h), t("mlp.up_proj", "ffn_up", "mlp", inter, h),
                t("mlp.down_proj", "ffn_down", "mlp", h, inter)]
    return [t("mlp.up_proj", "ffn_up", "mlp", inter, h), t("mlp.down_proj", "ffn_down", "mlp", h, inter)]


def weight_tensors(model: ModelConfig) -> list[WeightTensor] | None:
    """The weight matrices the architecture implies (the same count as ``computed_parameters``),
    or None when that count is unknown."""
    h, vocab, inter = model.hidden_size, model.vocab_size, model.intermediate_size
    if vocab is None or inter is None:
        return None
    out = [WeightTensor(module="model.embed_tokens", category="token_embd", role="embed", rows=vocab, cols=h)]
    if _learned_positions(model):
        out.append(WeightTensor(module="transformer.wpe", category="pos_embd", role="pos",
                                rows=model.max_position_embeddings, cols=h))
    for i, spec in enumerate(model.layer_specs):
        if isinstance(spec, FixedState | StatefulAttention | CrossAttention):
            # Mamba mixers and cross-attention blocks (with the vision tower behind them) have weights
            # this count does not model: unknown, never a silent undercount.
            return None
        t = _layer_tensor(i)
        attn = _attention_tensors(spec, model.num_attention_heads, h, t)
        if attn is None:
            return None
        out += [t("input_layernorm", "norm", "norm", 1, h), t("post_attention_layernorm", "norm", "norm", 1, h)]
        out += attn
        out += _mlp_tensors(model, i, inter, t)
    out.append(WeightTensor(module="model.norm", category="norm", role="norm", rows=1, cols=h))
    if not model.tie_word_embeddings:
        out.append(WeightTensor(module="lm_head", category="output", role="lm_head", rows=vocab, cols=h))
    return out


@dataclass(frozen=True, kw_only=True)
class WeightsEstimate:
    """All weights, every GPU together, and where the figure comes from."""

    bytes: int | None
    parameters: int | None
    parameters_source: str
    dtype: str
    """The weight dtype label the plan prints: ``bf16``, ``fp8``, ``fp8 block 128x128``, ``q4_k_m``, ``as stored``."""
    source: str
    """Which source sized the weights: ``--weight-dtype``, ``quantization_config``, a GGUF tensor table,
    safetensors headers, or the model dtype."""
    breakdown: dict[str, int] = field(default_factory=dict)
    """Bytes per storage kind (``fp8 e4m3``, ``fp32 scales``, ``bf16 (unquantized)``, ggml types ...)."""
    routed_expert_bytes: int | None = None
    """Of ``bytes``, the routed experts' (a MoE model's ``mlp.experts``; shared experts and routers
    excluded), when the source tells them apart; None otherwise (``--weights``, GGUF, dense models)."""


def routed_expert_parameters(model: ModelConfig) -> int | None:
    """Parameters of the routed experts (every MoE layer's ``E x 3`` matrices), from the architecture."""
    if model.moe is None:
        return None
    tensors = weight_tensors(model)
    if tensors is None:
        return None
    return sum(t.numel for t in tensors if t.role == "expert")


def rank_weight_bytes(w: WeightsEstimate, num_experts: int | None, *, tp: int, pp: int, dp: int = 1,
                      expert_parallel: bool = False) -> int | None:
    """Weights on the largest rank of a vLLM deployment of ``dp`` x ``tp`` x ``pp`` GPUs.

    Dense weights (attention, norms, embeddings, shared experts, routers) are split by TP and PP and
    replicated over DP. A MoE layer's routed experts are split over ``dp x tp`` ranks whenever
    ``dp > 1`` (vllm 0.34.0 ``model_executor/layers/fused_moe/config.py:1143-1151``,
    ``flatten_tp_across_dp_and_pcp``: "There are actually dp_size * pcp_size * tp_size devices"):
    without ``--enable-expert-parallel`` each expert's matrices are TP-sharded over them; with it
    (``:1235-1238``, ``:1270-1285``: ``ep_size`` = that flattened size, expert TP 1) each rank holds
    whole experts, ``E // ep_size`` plus one for the first ``E % ep_size`` ranks
    (``fused_moe/expert_map_manager.py:67``), so the largest holds ``cdiv(E, ep_size)``.
    PP divides the layers (and so the experts' bytes) as it divides the rest. 0.20.0 has the same
    rules (``fused_moe/config.py:1060-1066``, ``:1183``, ``fused_moe/layer.py:112``)."""
    if w.bytes is None:
        return None
    if not num_experts or (dp == 1 and not expert_parallel):
        return _cdiv(w.bytes, tp * pp)
    routed = w.routed_expert_bytes
    if routed is None:
        raise InvalidRequestError("--data-parallel-size", dp, "1 here: the routed experts' share of the "
                                  f"weights is unknown ({w.source}); give --weight-dtype or no --weights")
    flat = dp * tp
    dense = w.bytes - routed
    if expert_parallel:
        routed_rank = _cdiv(routed * _cdiv(num_experts, flat), num_experts * pp)
    else:
        routed_rank = _cdiv(routed, flat * pp)
    return _cdiv(dense, tp * pp) + routed_rank


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


# Each format: the bytes of one [rows, cols] matrix, by storage kind. Scale/zero tensors are the
# ones the checkpoint (and the engine's loader) holds; every formula rounds up to whole bytes.
MatrixBytes = Callable[[int, int], dict[str, int]]


@dataclass(frozen=True, kw_only=True)
class CheckpointFormat:
    label: str
    matrix: MatrixBytes
    skip: tuple[str, ...] = ()
    """Module patterns left unquantized (``modules_to_not_convert`` / ``ignore`` / ``exclude_modules``)."""
    quantize_roles: tuple[str, ...] = ("attn", "mlp", "expert", "shared_expert")
    """Roles the format quantizes (nn.Linear layers); embeddings, norms and routers stay as they are."""
    unquantized_bytes: int = 2
    """Bytes per value of what the format leaves alone (the checkpoint's bf16/fp16)."""
    unquantized_label: str = "bf16"

    def tensor_bytes(self, t: WeightTensor) -> dict[str, int]:
        if t.role in self.quantize_roles and not _skipped(t.module, self.skip):
            return {k: v * t.count for k, v in self.matrix(t.rows, t.cols).items()}
        return {f"{self.unquantized_label} (unquantized)": t.numel * self.unquantized_bytes}


def _skipped(module: str, patterns: tuple[str, ...]) -> bool:
    """transformers' ``modules_to_not_convert`` (a name that is a substring of the module path, or a
    glob), compressed-tensors' ``ignore`` (``re:REGEX`` or an exact/suffix name)."""
    for p in patterns:
        if p.startswith("re:"):
            try:
                if re.match(p[3:], module):
                    return True
            except re.error:
                raise InvalidConfigError("quantization_config", f"ignore pattern {p!r} is not a valid regex") from None
        elif "*" in p or "?" in p:
            if fnmatch.fnmatchcase(module, p) or fnmatch.fnmatchcase(module, p + ".*"):
                return True
        elif module == p or module.endswith("." + p) or f".{p}." in f".{module}." or module.startswith(p + "."):
            return True
    return False


def _qc_int(qc: dict[str, Any], key: str, default: int | None = None, *, allowed: tuple[int, ...] = ()) -> int:
    value = qc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 and value != -1:
        raise InvalidConfigError("quantization_config", f"field {key!r} = {value!r}: expected a positive integer")
    if allowed and value not in allowed:
        raise InvalidConfigError("quantization_config", f"field {key!r} = {value!r}: kvcalc sizes "
                                 f"{', '.join(str(a) for a in allowed)}")
    return value


def _patterns(qc: dict[str, Any], *keys: str) -> tuple[str, ...]:
    out: list[str] = []
    for key in keys:
        value = qc.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidConfigError("quantization_config", f"field {key!r} must be a list of module names")
        out += value
    return tuple(out)


def _fp8_block(bn: int, bk: int) -> MatrixBytes:
    # DeepSeek-V3 layout (its safetensors: ``weight`` F8_E4M3 [out, in] + ``weight_scale_inv`` F32
    # [ceil(out/bn), ceil(in/bk)]); vLLM fp8.py ``Fp8LinearMethod.create_weights`` allocates the same
    # float32 block-scale tensor.
    return lambda r, c: {"fp8 e4m3": r * c, "fp32 block scales": _cdiv(r, bn) * _cdiv(c, bk) * 4}


def _fp8_tensor(static_input: bool) -> MatrixBytes:
    # Per-tensor fp8 (vLLM ``Fp8LinearMethod`` without blocks, ModelOpt FP8): one fp32 weight_scale,
    # plus one fp32 input_scale when activations are statically scaled.
    return lambda r, c: {"fp8 e4m3": r * c, "fp32 scales": 4 + (4 if static_input else 0)}


def _awq(bits: int, group: int) -> MatrixBytes:
    # AutoAWQ GEMM (transformers/vLLM awq.py ``AWQLinearMethod.create_weights``): qweight int32
    # [in, out*bits/32], qzeros int32 [in/group, out*bits/32], scales fp16 [in/group, out].
    def f(r: int, c: int) -> dict[str, int]:
        g = c if group == -1 else group
        groups = _cdiv(c, g)
        return {f"int{bits} packed": c * _cdiv(r * bits, 32) * 4,
                "fp16 scales + packed zeros": groups * r * 2 + groups * _cdiv(r * bits, 32) * 4}
    return f


def _gptq(bits: int, group: int, desc_act: bool) -> MatrixBytes:
    # AutoGPTQ / GPTQModel (vLLM gptq.py ``GPTQLinearMethod.create_weights``): qweight int32
    # [in*bits/32, out], qzeros int32 [groups, out*bits/32], scales fp16 [groups, out], g_idx int32 [in].
    def f(r: int, c: int) -> dict[str, int]:
        g = c if group == -1 else group
        groups = _cdiv(c, g)
        return {f"int{bits} packed": _cdiv(c * bits, 32) * 4 * r,
                "fp16 scales + packed zeros + g_idx": groups * r * 2 + groups * _cdiv(r * bits, 32) * 4 + c * 4}
    _ = desc_act  # g_idx is stored either way
    return f


def _bnb4(double_quant: bool) -> MatrixBytes:
    # bitsandbytes ``quantize_4bit`` (blocksize 64): packed uint8 n/2, an absmax per 64 values: fp32,
    # or with double quantization (``compress_statistics``) uint8 per block + fp32 per 256 blocks +
    # an fp32 offset + the 256-entry fp32 nested code; plus the 16-entry fp32 nf4/fp4 code.
    def f(r: int, c: int) -> dict[str, int]:
        n = r * c
        blocks = _cdiv(n, 64)
        stats = blocks + _cdiv(blocks, 256) * 4 + 4 + 256 * 4 if double_quant else blocks * 4
        return {"4-bit packed": _cdiv(n, 2), "absmax + codes": stats + 16 * 4}
    return f


def _bnb8(r: int, c: int) -> dict[str, int]:
    # bitsandbytes LLM.int8 (``Int8Params``): int8 weight + one fp32 scale per row (``SCB``).
    return {"int8": r * c, "fp32 row scales": r * 4}


def _mxfp4(r: int, c: int) -> dict[str, int]:
    # OCP MX FP4 (gpt-oss ``*_blocks`` U8 [.., in/32, 16] + ``*_scales`` U8 [.., in/32]): 32 fp4 values
    # in 16 bytes plus one e8m0 scale byte = 17 bytes per 32 values (ggml MXFP4 (32, 17) agrees).
    return {"mxfp4": _cdiv(c, 32) * 16 * r, "e8m0 scales": _cdiv(c, 32) * r}


def _nvfp4(group: int) -> MatrixBytes:
    # NVFP4 (ModelOpt and compressed-tensors ``nvfp4-pack-quantized``): uint8 packed fp4 [out, in/2],
    # fp8 e4m3 block scales [out, in/16], fp32 global weight scale and fp32 input scale.
    return lambda r, c: {"nvfp4": r * _cdiv(c, 2), "fp8 block scales + fp32 globals": r * _cdiv(c, group) + 8}


def _int_channel(bits: int, scale_bytes: int, group: int | None, zero_point: bool) -> MatrixBytes:
    # compressed-tensors ``pack-quantized``/``int-quantized`` (llm-compressor): weight_packed int32
    # [out, in*bits/32] (bits < 8) or int8 [out, in]; weight_scale [out, groups] in the model dtype;
    # weight_zero_point int32-packed [ceil(out*bits/32), groups] when asymmetric; weight_shape int64 [2].
    def f(r: int, c: int) -> dict[str, int]:
        groups = 1 if group is None else _cdiv(c, group)
        packed = r * c if bits == 8 else r * _cdiv(c * bits, 32) * 4
        extra = r * groups * scale_bytes + (_cdiv(r * bits, 32) * 4 * groups if zero_point else 0)
        return {f"int{bits}": packed, "scales (+ zeros, shape)": extra + (16 if bits < 8 else 0)}
    return f


def _compressed_tensors(qc: dict[str, Any], model_dtype_bytes: int) -> CheckpointFormat:
    groups = qc.get("config_groups")
    if not isinstance(groups, dict) or len(groups) != 1:
        raise InvalidConfigError("quantization_config", "compressed-tensors: kvcalc sizes exactly one config_groups "
                                 f"entry, got {len(groups) if isinstance(groups, dict) else type(groups).__name__}")
    group = next(iter(groups.values()))
    weights = group.get("weights") if isinstance(group, dict) else None
    if not isinstance(weights, dict):
        raise InvalidConfigError("quantization_config", "compressed-tensors: config_groups entry has no 'weights'")
    bits = _qc_int(weights, "num_bits", allowed=(4, 8))
    kind, strategy = weights.get("type"), weights.get("strategy")
    fmt = str(qc.get("format", ""))
    skip = _patterns(qc, "ignore")
    if kind == "float" and bits == 8:
        if strategy == "block":
            block = weights.get("block_structure")
            if not (isinstance(block, list) and len(block) == 2 and all(isinstance(b, int) and b > 0 for b in block)):
                raise InvalidConfigError("quantization_config", f"block_structure = {block!r}: expected [rows, cols]")
            return CheckpointFormat(label=f"fp8 block {block[0]}x{block[1]} (compressed-tensors)",
                                    matrix=_fp8_block(block[0], block[1]), skip=skip)
        if strategy == "channel":
            # weight_scale [out, 1] in the model dtype (llm-compressor FP8_DYNAMIC).
            return CheckpointFormat(label="fp8 per channel (compressed-tensors)", skip=skip,
                                    matrix=lambda r, c: {"fp8 e4m3": r * c, "channel scales": r * model_dtype_bytes})
        if strategy == "tensor":
            return CheckpointFormat(label="fp8 per tensor (compressed-tensors)", skip=skip,
                                    matrix=_fp8_tensor(not group.get("input_activations", {}).get("dynamic", True)
                                                       if isinstance(group.get("input_activations"), dict) else False))
    if kind == "float" and bits == 4 and (fmt.startswith("nvfp4") or strategy == "tensor_group"):
        return CheckpointFormat(label="nvfp4 (compressed-tensors)", matrix=_nvfp4(_qc_int(weights, "group_size", 16)),
                                skip=skip)
    if kind == "int" and strategy in ("channel", "group"):
        gsize = _qc_int(weights, "group_size") if strategy == "group" else None
        sym = weights.get("symmetric", True)
        label = f"int{bits} {strategy}" + (f" {gsize}" if gsize else "") + " (compressed-tensors)"
        return CheckpointFormat(label=label, matrix=_int_channel(bits, model_dtype_bytes, gsize, not sym), skip=skip)
    raise InvalidConfigError("quantization_config", f"compressed-tensors weights type={kind!r} num_bits={bits} "
                             f"strategy={strategy!r}: not a scheme kvcalc sizes (fp8 tensor/channel/block, "
                             "int4/int8 channel/group, nvfp4)")


def _fp8_format(qc: dict[str, Any], model_dtype_bytes: int) -> CheckpointFormat:
    block = qc.get("weight_block_size")
    if block is not None:
        if not (isinstance(block, list) and len(block) == 2
                and all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in block)):
            raise InvalidConfigError("quantization_config", f"weight_block_size = {block!r}: expected [n, k]")
        return CheckpointFormat(label=f"fp8 block {block[0]}x{block[1]}", matrix=_fp8_block(block[0], block[1]),
                                skip=_patterns(qc, "modules_to_not_convert", "ignored_layers"))
    return CheckpointFormat(label="fp8 per tensor", matrix=_fp8_tensor(qc.get("activation_scheme") == "static"),
                            skip=_patterns(qc, "modules_to_not_convert", "ignored_layers"))


def _awq_format(qc: dict[str, Any], model_dtype_bytes: int) -> CheckpointFormat:
    bits = _qc_int(qc, "bits", 4, allowed=(4,))
    group = _qc_int(qc, "group_size", 128)
    return CheckpointFormat(label=f"awq int{bits} g{group}", matrix=_awq(bits, group), unquantized_label="fp16",
                            skip=_patterns(qc, "modules_to_not_convert") or ("lm_head",))


def _gptq_format(qc: dict[str, Any], model_dtype_bytes: int) -> CheckpointFormat:
    bits = _qc_int(qc, "bits", 4, allowed=(2, 4, 8))
    group = _qc_int(qc, "group_size", 128)
    return CheckpointFormat(label=f"gptq int{bits} g{group}", matrix=_gptq(bits, group, bool(qc.get("desc_act"))),
                            unquantized_label="fp16", skip=_patterns(qc, "modules_to_not_convert") or ("lm_head",))


def _bitsandbytes_format(qc: dict[str, Any], model_dtype_bytes: int) -> CheckpointFormat:
    skip = _patterns(qc, "llm_int8_skip_modules") or ("lm_head",)
    if qc.get("load_in_4bit"):
        qtype = qc.get("bnb_4bit_quant_type", "fp4")
        dq = bool(qc.get("bnb_4bit_use_double_quant"))
        return CheckpointFormat(label=f"bitsandbytes {qtype}" + (" double-quant" if dq else ""),
                                matrix=_bnb4(dq), skip=skip)
    if qc.get("load_in_8bit"):
        return CheckpointFormat(label="bitsandbytes int8", matrix=_bnb8, skip=skip)
    raise InvalidConfigError("quantization_config", "bitsandbytes: neither load_in_4bit nor load_in_8bit is true")


def _mxfp4_format(qc: dict[str, Any], model_dtype_bytes: int) -> CheckpointFormat:
    # gpt-oss: only the MoE experts are MXFP4 (modules_to_not_convert lists the rest).
    return CheckpointFormat(label="mxfp4 experts", matrix=_mxfp4, quantize_roles=("expert",),
                            skip=_patterns(qc, "modules_to_not_convert"))


def _modelopt_format(qc: dict[str, Any], model_dtype_bytes: int) -> CheckpointFormat:
    algo = qc.get("quant_algo")
    skip = _patterns(qc, "exclude_modules", "ignore")
    if algo == "NVFP4":
        return CheckpointFormat(label="nvfp4 (modelopt)", matrix=_nvfp4(_qc_int(qc, "group_size", 16)), skip=skip)
    if algo == "FP8":
        return CheckpointFormat(label="fp8 per tensor (modelopt)", matrix=_fp8_tensor(True), skip=skip)
    raise InvalidConfigError("quantization_config", f"modelopt quant_algo = {algo!r}: kvcalc sizes NVFP4 and FP8")


_FORMAT_BY_METHOD: dict[str, Callable[[dict[str, Any], int], CheckpointFormat]] = {
    "fp8": _fp8_format,
    "compressed-tensors": _compressed_tensors,
    "awq": _awq_format,
    "gptq": _gptq_format,
    "bitsandbytes": _bitsandbytes_format,
    "mxfp4": _mxfp4_format,
    "modelopt": _modelopt_format,
}
"""One reader per ``quant_method``; ``QUANT_METHODS`` (the names the refusal lists) is its key order."""

QUANT_METHODS = tuple(_FORMAT_BY_METHOD)


def checkpoint_format(qc: Any, model_dtype_bytes: int = 2) -> CheckpointFormat:
    """The storage a ``quantization_config`` describes; anything else is refused, naming it."""
    if not isinstance(qc, dict):
        raise InvalidConfigError("quantization_config", f"expected a mapping, got {type(qc).__name__}")
    method = qc.get("quant_method")
    reader = _FORMAT_BY_METHOD.get(method) if isinstance(method, str) else None
    if reader is None:
        raise InvalidConfigError("quantization_config", f"quant_method = {str(method)[:40]!r}: kvcalc sizes "
                                 f"{', '.join(QUANT_METHODS)}; pass --weight-dtype to size the weights yourself")
    return reader(qc, model_dtype_bytes)


LLAMA_CPP_LLAMA_ARCHITECTURES = frozenset({"LlamaForCausalLM", "MistralForCausalLM", "MixtralForCausalLM"})
"""HF architectures convert_hf_to_gguf.py writes as ``general.architecture = llama``."""


def _gguf_format(name: str, tensors: list[WeightTensor], model: ModelConfig) -> dict[str, int]:
    """Bytes per ggml type of the tensors under a preset (``q4_k_m``, ``q4_0``, ``q8_0``: what
    ``llama-quantize`` writes, by llama.cpp's per-tensor rules, ``kvcalc.gguf.preset_tensor_type``)
    or a bare block type (``q4_k``, ``iq4_xs``: every 2-D weight in it, as ``llama-quantize --pure``).
    Norms and routers stay f32, as convert_hf_to_gguf writes them; a tensor whose rows are not whole
    blocks takes llama.cpp's fallback type."""
    from kvcalc.gguf import PRESETS, fit_row_type, preset_tensor_type, row_bytes

    first = next((s for s in model.layer_specs if isinstance(s, FullAttention)), None)
    n_gqa = model.num_attention_heads // first.num_kv_heads if first is not None else 1
    # llama.cpp's LLM_TYPE_70B: LLM_ARCH_LLAMA (what convert_hf_to_gguf.py writes for these
    # architectures) with 80 layers; its falcon rules: LLM_ARCH_FALCON. By structure, not by name.
    llama_70b = model.num_layers == 80 and model.architecture in LLAMA_CPP_LLAMA_ARCHITECTURES
    falcon = model.architecture in ("FalconForCausalLM", "RWForCausalLM")
    out: dict[str, int] = {}
    for t in tensors:
        if t.role in ("norm", "router"):
            kind = "f32"
        elif name in PRESETS:
            cat = "attn_v" if t.category == "attn_kv_b" else t.category
            kind = preset_tensor_type(name, cat, t.layer or 0, model.num_layers, n_gqa=n_gqa,
                                      n_expert=model.moe.num_experts if model.moe else 0,
                                      tied_embeddings=model.tie_word_embeddings, falcon=falcon)
            if llama_70b and cat == "attn_v" and kind in ("q3_k", "q4_k"):
                kind = "q5_k"
        else:
            kind = name
        kind = fit_row_type(kind, t.cols) if kind != "f32" else kind
        out[kind] = out.get(kind, 0) + row_bytes(kind, t.cols) * t.rows * t.count
    return out


def gguf_weight_key(weight_dtype: str) -> str | None:
    """The GGUF block type or llama.cpp preset ``--weight-dtype`` names (sized tensor by tensor by
    llama-quant.cpp's rules), else None (a 16/32-bit float or a dtype over the parameter count)."""
    from kvcalc.gguf import GGML_BLOCKS, PRESETS

    key = weight_dtype.strip().lower()
    return key if (key in GGML_BLOCKS and key not in ("f32", "f16", "bf16", "f64")) or key in PRESETS else None


def model_gguf(model: ModelConfig) -> str | None:
    """The GGUF file a model was read from, if it was."""
    return model.source.config if (model.source.config or "").lower().endswith(".gguf") else None


def checkpoint_weights(model: ModelConfig, weight_dtype: str, compute_dtype: str,
                       weights_path: str | None = None) -> WeightsEstimate:
    """The weights a plan budgets, from the best source there is, and which one it used:

    1. ``--weights PATH``: safetensors headers or a GGUF tensor table, exact;
    2. ``--weight-dtype`` other than ``auto``: that dtype (a GGUF block type or preset sized tensor by
       tensor; ``fp8``/``int4``/... over the parameter count);
    3. a model read from a GGUF file: its tensor table, exact;
    4. the config's ``quantization_config``: each matrix in the checkpoint's format, scales included,
       unquantized layers (embeddings, lm_head, norms, routers, ignored modules) in the model dtype;
    5. the model dtype over the parameter count.
    """
    key = weight_dtype.strip().lower()
    gguf_source = model_gguf(model)
    if weights_path is not None:
        if weights_path.lower().endswith(".gguf"):
            return _gguf_weights(weights_path)
        from kvcalc.hub import hub_weights, looks_like_repo_id

        hub = looks_like_repo_id(weights_path) and not Path(weights_path).exists()
        st = hub_weights(weights_path) if hub else read_safetensors(weights_path)
        return WeightsEstimate(bytes=st.bytes, parameters=st.parameters or None,
                               parameters_source=f"safetensors ({st.source})", dtype="as stored",
                               source=f"--weights: {st.source}")
    if gguf_weight_key(key) is not None:
        tensors = weight_tensors(model)
        if tensors is None:
            raise InvalidRequestError("--weight-dtype", weight_dtype, "a dtype over a parameter count: "
                                      f"{model.name}'s config lacks what a per-tensor count needs")
        kinds = _gguf_format(key, tensors, model)
        return WeightsEstimate(bytes=sum(kinds.values()), parameters=sum(t.numel for t in tensors),
                               parameters_source="computed from the architecture", dtype=key,
                               source=f"--weight-dtype {key} (llama.cpp llama-quant.cpp rules per tensor)",
                               breakdown=kinds)
    if key in ("auto", "") and gguf_source is not None:
        return _gguf_weights(gguf_source)
    if key in ("auto", "") and model.quantization_config is not None:
        fmt = checkpoint_format(model.quantization_config, 4 if compute_dtype == "fp32" else 2)
        tensors = weight_tensors(model)
        if tensors is None:
            raise InvalidRequestError("--weight-dtype", weight_dtype, "an explicit dtype: "
                                      f"{model.name}'s config lacks what a per-tensor count needs")
        kinds = {}
        routed = 0
        for t in tensors:
            for k, v in fmt.tensor_bytes(t).items():
                kinds[k] = kinds.get(k, 0) + v
                routed += v if t.role == "expert" else 0
        params = sum(t.numel for t in tensors)
        published = model.num_parameters
        if published is not None and published > params:
            # Biases and anything else the architecture count leaves out, in the unquantized dtype.
            kinds[f"{fmt.unquantized_label} (uncounted: published - computed)"] = (published - params) * 2
        return WeightsEstimate(bytes=sum(kinds.values()), parameters=published or params,
                               parameters_source="computed from the architecture, per tensor",
                               dtype=fmt.label, source=f"quantization_config ({fmt.label})", breakdown=kinds,
                               routed_expert_bytes=routed if model.moe is not None else None)
    wdtype = get_weight_dtype(weight_dtype, compute_dtype)
    count = model_parameters(model)
    how = "--weight-dtype" if key not in ("auto", "") else "the model dtype (no quantization_config)"
    if count.parameters is None:
        return WeightsEstimate(bytes=None, parameters=None, parameters_source=count.source, dtype=wdtype.name,
                               source=how)
    experts = routed_expert_parameters(model)
    return WeightsEstimate(bytes=wdtype.bytes_for(count.parameters), parameters=count.parameters,
                           parameters_source=count.source, dtype=wdtype.name, source=how,
                           routed_expert_bytes=wdtype.bytes_for(experts) if experts is not None else None)


def _gguf_weights(path: str) -> WeightsEstimate:
    from kvcalc.gguf import FILE_TYPES, read_gguf

    g = read_gguf(path)
    ftype = g.metadata.get("general.file_type")
    label = FILE_TYPES.get(ftype, f"file_type {ftype}") if isinstance(ftype, int) else "as stored"
    return WeightsEstimate(bytes=g.tensor_bytes, parameters=g.parameters,
                           parameters_source=f"GGUF tensor table ({len(g.tensors)} tensors, {g.files} file(s))",
                           dtype=f"GGUF {label}",
                           source=f"GGUF tensor table of {Path(path).name}", breakdown=g.bytes_by_type())


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


MAX_TOTAL_BYTES = 1 << 50
"""A checkpoint above 1 PiB is refused as absurd (the largest published are under 2 TB)."""


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
        return parse_safetensors_header(fh.read(length), str(path))


def parse_safetensors_header(raw: bytes, source: str) -> dict[str, object]:
    """The JSON header of a safetensors file: a mapping of tensor name -> {dtype, shape,
    data_offsets}. Anything else (a list, a float where a size goes, 1e400) is refused by name."""
    try:
        header = json.loads(raw, parse_float=_no_float, parse_constant=_no_float)
    except (ValueError, RecursionError) as exc:
        raise InvalidConfigError(source, f"malformed safetensors header: {str(exc)[:120]}") from None
    if not isinstance(header, dict):
        raise InvalidConfigError(source, f"safetensors header must be a JSON object, got {type(header).__name__}")
    return header


def _no_float(text: str) -> object:
    raise ValueError(f"a number {text[:20]!r} where safetensors stores integers")


def _size_int(value: object, source: str, what: str) -> int:
    """A byte count or dimension: a non-negative int (never a bool or a float), below the cap."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > MAX_TOTAL_BYTES:
        raise InvalidConfigError(source, f"{what} = {str(value)[:40]!r}: expected an integer from 0 to "
                                 f"{MAX_TOTAL_BYTES:,}")
    return value


def tensor_bytes_and_numel(name: str, info: object, source: str) -> tuple[int, int]:
    """(bytes, elements) of one header entry, from ``data_offsets`` (what the file stores) and
    ``shape``; both validated."""
    if not isinstance(info, dict):
        raise InvalidConfigError(source, f"tensor {name[:60]!r}: expected {{dtype, shape, data_offsets}}")
    shape = info.get("shape")
    if not isinstance(shape, list):
        raise InvalidConfigError(source, f"tensor {name[:60]!r}: shape = {str(shape)[:40]!r}: expected a list")
    numel = 1
    for dim in shape:
        numel *= _size_int(dim, source, f"tensor {name[:60]!r} shape dimension")
        if numel > MAX_TOTAL_BYTES:
            raise InvalidConfigError(source, f"tensor {name[:60]!r}: shape {str(shape)[:60]} is absurdly large")
    offsets = info.get("data_offsets")
    if offsets is not None:
        if not (isinstance(offsets, list) and len(offsets) == 2):
            raise InvalidConfigError(source, f"tensor {name[:60]!r}: data_offsets = {str(offsets)[:40]!r}: "
                                     "expected [begin, end]")
        begin = _size_int(offsets[0], source, f"tensor {name[:60]!r} data_offsets begin")
        end = _size_int(offsets[1], source, f"tensor {name[:60]!r} data_offsets end")
        if end < begin:
            raise InvalidConfigError(source, f"tensor {name[:60]!r}: data_offsets end {end:,} < begin {begin:,}")
        return end - begin, numel
    size = _ST_DTYPE_BYTES.get(str(info.get("dtype")))
    if size is None:
        raise InvalidConfigError(source, f"tensor {name[:60]!r}: dtype {str(info.get('dtype'))[:20]!r} unknown "
                                 "and no data_offsets")
    return numel * size, numel


def index_total_size(data: object, source: str) -> int:
    """``metadata.total_size`` of a ``model.safetensors.index.json``: a non-negative int, never a
    bool, a float or an absurd size."""
    meta = data.get("metadata") if isinstance(data, dict) else None
    if not isinstance(meta, dict) or "total_size" not in meta:
        raise InvalidConfigError(source, "expected a safetensors index with metadata.total_size")
    return _size_int(meta["total_size"], source, "metadata.total_size")


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
        total = index_total_size(data, str(p))
        return SafetensorsWeights(bytes=total, parameters=0, files=0, source=f"{p.name} metadata.total_size")
    return _sum_headers([p])


def sum_header_entries(headers: list[tuple[str, dict[str, object]]]) -> tuple[int, int]:
    """(bytes, elements) over parsed headers [(source, header)], ``__metadata__`` skipped."""
    total_bytes = total_params = 0
    for source, header in headers:
        for name, info in header.items():
            if name == "__metadata__":
                continue
            nbytes, numel = tensor_bytes_and_numel(name, info, source)
            total_bytes += nbytes
            total_params += numel
    return total_bytes, total_params


def _sum_headers(files: list[Path]) -> SafetensorsWeights:
    total_bytes, total_params = sum_header_entries([(str(f), _read_header(f)) for f in files])
    return SafetensorsWeights(bytes=total_bytes, parameters=total_params, files=len(files),
                              source=f"{len(files)} safetensors header(s)")
