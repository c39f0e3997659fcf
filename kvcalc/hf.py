"""Hugging Face ``config.json`` -> ``ModelConfig``: the keys decide the layer kinds.

No network and no ``transformers``: the JSON is read as data, structure first, whatever the
``model_type``:

* ``layer_types`` (or a family's own spelling of it: ``layers_block_type``, Nemotron-H's
  ``hybrid_override_pattern``, MiMo-V2-Flash's ``hybrid_layer_pattern``, Mllama's
  ``cross_attention_layers``, DeciLM/Nemotron-NAS ``block_configs``) decides each layer's kind;
  every value is mapped explicitly (``LAYER_TYPES``), and a value kvcalc cannot place is refused;
* a latent (MLA) when ``kv_lora_rank`` is set (``qk_rope_head_dim`` required), with a DSA indexer
  key cache when ``index_head_dim`` is set;
* per-kind overrides: ``swa_num_key_value_heads`` / ``swa_head_dim`` / ``swa_v_head_dim`` for sliding
  layers, ``v_head_dim`` for a V head size that differs from K, Gemma-4's ``global_head_dim``;
* ``use_sliding_window: false`` switches a window off for every family; ``max_window_layers`` 0 is a
  value (every layer slides).

A rule per ``model_type`` (``_DEFAULTS``) only supplies what that family's code alone knows: the
default layer pattern when a config has no ``layer_types``, and window off-by-ones; each cites the
transformers 5.23 ``configuration_*.py`` it follows. A default transformers fills in is filled the
same way and reported in ``source.assumptions`` (printed as a warning), never silently.

Refusals (``UnplacedConfigKeyError``, exit 2) name the key, the value and what is understood;
``assume_standard=True`` (CLI ``--assume-standard``) proceeds with the stated standard reading
instead and records it as an assumption. An unknown ``model_type`` is read when every
cache-shaping key it has is understood (``CACHE_KEYS``), with a warning naming what was inferred.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kvcalc.errors import InvalidConfigError, UnplacedConfigKeyError
from kvcalc.models import LayerGroup, ModelConfig, MoE, Source
from kvcalc.specs import (
    ChunkedAttention,
    CrossAttention,
    FixedState,
    FullAttention,
    IndexedLatentAttention,
    LatentAttention,
    NoCache,
    SlidingWindowAttention,
    Spec,
    StatefulAttention,
)
from kvcalc.units import parse_count

_TORCH_DTYPES = {
    "float32": "fp32", "float": "fp32", "fp32": "fp32",
    "float16": "fp16", "half": "fp16", "fp16": "fp16",
    "bfloat16": "bf16", "bf16": "bf16",
}
DEFAULT_DTYPE = "fp32"
"""transformers builds a model in torch's default dtype (float32) when a config names none."""

LAYER_TYPES: dict[str, str] = {
    "full_attention": "full",
    "attention": "full",  # legacy name (configuration_utils.py _LEGACY_LAYER_TYPE_REMAP)
    "sliding_attention": "sliding",
    "chunked_attention": "chunked",
    "indexed_attention": "indexed",  # DSA: DynamicIndexedLayer (cache_utils.py)
    "deepseek_sparse_attention": "indexed",  # legacy name of indexed_attention
    "linear_attention": "linear",  # Gated DeltaNet / Mamba2 state: LinearAttentionLayer
    "mamba": "linear",  # legacy name of linear_attention
    "cross_attention": "cross",
    # A Mamba2 state and a full-attention KV cache in one layer: LinearAttentionAndFullAttentionLayer
    # (Falcon-H1: every layer; Zamba2: the layers running the shared attention block).
    "hybrid": "hybrid",
    "dummy": "none",  # DummyLayer: KV-sharing consumers, MLP/MoE-only layers
    "moe": "moe",  # no attention: nothing cached (get_layer_types_and_kwargs maps it to "dummy")
    "mlp": "mlp",
}
"""Every ``layer_types`` value kvcalc places, mapped to its layer kind (transformers 5.23
``cache_utils.py`` ``DYNAMIC_LAYER_TYPE_MAPPING`` and ``get_layer_types_and_kwargs``). Not here, so
refused: ``hybrid_sliding`` (a Mamba state with a sliding KV cache; no family in transformers 5.23
uses it), ``conv`` (LFM2 short-conv state), and anything else."""

_UNPLACED_TYPES = {
    "hybrid_sliding": "a layer holding both a Mamba state and a sliding KV cache is not modelled",
    "conv": "a short-convolution state layer (LFM2) is not modelled",
}


class _Reader:
    """Typed access to a config dict that records every default it fills in."""

    def __init__(self, data: dict[str, Any], source: str, assume_standard: bool = False) -> None:
        self.data = data
        self.source = source
        self.assume_standard = assume_standard
        self.assumptions: list[str] = []
        self.notes: list[str] = []

    def has(self, *keys: str) -> bool:
        return any(self.data.get(k) is not None for k in keys)

    def get_int(self, *keys: str, default: int | None = None, why: str = "") -> int:
        for key in keys:
            value = self.data.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InvalidConfigError(
                    self.source, f"field {key!r} = {value!r}: expected a positive integer"
                )
            return value
        if default is None:
            raise InvalidConfigError(
                self.source, f"missing required field {' / '.join(repr(k) for k in keys)}"
            )
        self.assumptions.append(f"{keys[0]} not set: using {default}{' (' + why + ')' if why else ''}")
        return default

    def opt_int(self, *keys: str) -> int | None:
        for key in keys:
            value = self.data.get(key)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                    raise InvalidConfigError(
                        self.source, f"field {key!r} = {value!r}: expected a positive integer"
                    )
                return value
        return None

    def opt_count(self, key: str) -> int | None:
        """A count where 0 is a value (``max_window_layers: 0``, ``first_k_dense_replace: 0``)."""
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidConfigError(self.source, f"field {key!r} = {value!r}: expected an integer >= 0")
        return value

    def get_bool(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise InvalidConfigError(self.source, f"field {key!r} = {value!r}: expected true or false")
        return value

    def refuse(self, key: str, value: object, understood: str, assumption: str) -> None:
        """A cache-shaping key kvcalc cannot place: an error naming it, or, under
        ``--assume-standard``, the stated assumption (recorded and printed) and the caller's fallback."""
        text = repr(value)
        if len(text) > 80:
            text = text[:77] + "..."
        if not self.assume_standard:
            raise UnplacedConfigKeyError(
                self.source, f"field {key!r} = {text}: {understood}; kvcalc refuses rather than guess "
                f"(--assume-standard would proceed assuming {assumption})")
        self.assumptions.append(f"--assume-standard: {key} = {text} not understood; assuming {assumption}")


def _head_dim(r: _Reader, hidden: int, heads: int, key: str = "head_dim") -> int:
    explicit = r.opt_int(key)
    if explicit is not None:
        return explicit
    if hidden % heads:
        raise InvalidConfigError(
            r.source, f"no '{key}' and hidden_size ({hidden}) is not divisible by "
            f"num_attention_heads ({heads}); add head_dim"
        )
    return hidden // heads


def _dtype(r: _Reader) -> str:
    raw = r.data.get("torch_dtype") or r.data.get("dtype")
    if raw is None:
        r.assumptions.append(
            f"no torch_dtype/dtype in the config: assuming {DEFAULT_DTYPE} "
            "(transformers' default); pass --kv-dtype to choose"
        )
        return DEFAULT_DTYPE
    name = _TORCH_DTYPES.get(str(raw).removeprefix("torch.").lower())
    if name is None:
        # fp8 checkpoints (e.g. float8_e4m3fn weights) still compute, and cache, in bf16.
        r.assumptions.append(f"torch_dtype {raw!r} is not a compute dtype: assuming bf16")
        return "bf16"
    return name


# ---------------------------------------------------------------------------------------------
# Layer patterns. ``layer_types`` wins wherever present; otherwise the family's own default.
# ---------------------------------------------------------------------------------------------

_SLIDING_OFF_BY_DEFAULT = frozenset({"qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "smollm3", "mimo"})
"""Families whose ``use_sliding_window`` defaults to false (Qwen2Config / Qwen2MoeConfig / Qwen3Config /
Qwen3MoeConfig / SmolLM3Config in transformers 5.23: ``sliding_window = sliding_window if
use_sliding_window else None``; ``mimo`` is XiaomiMiMo's Qwen2-derived remote code)."""


def _window(r: _Reader, family: str) -> int | None:
    """The sliding window, or None when ``use_sliding_window`` switches it off (any family)."""
    if not r.get_bool("use_sliding_window", family not in _SLIDING_OFF_BY_DEFAULT):
        if r.has("sliding_window"):
            r.notes.append("use_sliding_window is false: sliding_window is ignored")
        return None
    if family == "mimo_v2_flash" and r.opt_int("sliding_window_size") is not None:
        # MiMoV2FlashConfig.__post_init__: sliding_window = sliding_window_size + 1 (the reference
        # SGLang code attends to sliding_window_size previous tokens plus the query).
        return r.get_int("sliding_window_size") + 1
    window = r.opt_int("sliding_window")
    if window is not None and family in ("gemma3", "gemma3_text") and r.get_bool("use_bidirectional_attention", False):
        # Gemma3TextConfig.__post_init__: "due to fa we set exclusive bounds".
        window = window // 2 + 1
        r.notes.append(f"use_bidirectional_attention: sliding window becomes {window}")
    return window


def _every(kind: str) -> Callable[[int], str]:
    return lambda i: kind


def _by_pattern(r: _Reader, key: str, default: int, on: str, off: str) -> Callable[[int], str]:
    """``off`` on every ``pattern``-th layer, ``on`` elsewhere (Gemma-3, Cohere2, Exaone-4)."""
    value = r.data.get(key)
    if value is None:
        pattern = default
    elif isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        r.refuse(key, value, "a positive integer period is understood", f"the family default {default}")
        pattern = default
    else:
        pattern = value
    return lambda i: off if (i + 1) % pattern == 0 else on


def _rope_flags(r: _Reader, n: int) -> list[int]:
    """``no_rope_layers`` (1 = the layer uses RoPE) or its interval default (Llama-4, SmolLM3:
    ``int((i + 1) % no_rope_layer_interval != 0)``)."""
    flags = r.data.get("no_rope_layers")
    if flags:  # Llama4TextConfig: an empty list also means the default
        if not isinstance(flags, list) or len(flags) != n or any(f not in (0, 1) for f in flags):
            raise InvalidConfigError(r.source, f"field 'no_rope_layers' must list {n} values 0 or 1")
        return [int(f) for f in flags]
    interval = r.get_int("no_rope_layer_interval", default=4, why="transformers default")
    return [int((i + 1) % interval != 0) for i in range(n)]


def _mimo_types(r: _Reader, n: int) -> tuple[Callable[[int], str], str]:
    pattern = r.data.get("hybrid_layer_pattern")
    if pattern is not None:
        # XiaomiMiMo's config key: 0 = full attention, 1 = sliding (their modeling code); transformers
        # 5.23 ignores it and builds the default below, identical for the released checkpoint.
        if not isinstance(pattern, list) or any(p not in (0, 1) for p in pattern) or len(pattern) != n:
            r.refuse("hybrid_layer_pattern", pattern, f"a list of {n} values 0 (full) or 1 (sliding) "
                     "is understood", "the MiMoV2FlashConfig default pattern")
        else:
            return (lambda i: "sliding_attention" if pattern[i] else "full_attention"), "hybrid_layer_pattern"
    return (lambda i: "full_attention" if i == 0 or (i + 1) % 6 == 0 else "sliding_attention"), \
        "MiMoV2FlashConfig"


def _mllama_types(r: _Reader, n: int) -> tuple[Callable[[int], str], str]:
    cross = r.data.get("cross_attention_layers")
    if cross is None:
        cross = [3, 8, 13, 18, 23, 28, 33, 38]
        r.assumptions.append("cross_attention_layers not set: using MllamaTextConfig's default")
    if not isinstance(cross, list) or any(isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < n
                                          for c in cross):
        raise InvalidConfigError(r.source, f"field 'cross_attention_layers' must list layer indices below {n}")
    where = set(cross)
    return (lambda i: "cross_attention" if i in where else "full_attention"), "cross_attention_layers"


def _zamba2_types(r: _Reader, n: int) -> tuple[Callable[[int], str], str]:
    """Zamba2Config.__post_init__'s default ``layers_block_type`` (54 layers: Zamba2-2.7B); another
    layer count without the list has no default kvcalc can place."""
    default = (["linear_attention"] + (["linear_attention"] * 5 + ["hybrid"]) * 7 + ["linear_attention"] * 4
               + ["hybrid"] + ["linear_attention"] * 3 + ["hybrid"] + ["linear_attention"] * 2)
    if n != len(default):
        r.refuse("layers_block_type", None, f"Zamba2Config's default pattern has {len(default)} layers, not "
                 f"num_hidden_layers ({n})", "Mamba2 on every layer")
        return _every("linear_attention"), "Zamba2Config"
    return (lambda i: default[i]), "Zamba2Config (default layers_block_type)"


def _exaone4_types(r: _Reader, window: int | None) -> tuple[Callable[[int], str], str]:
    # Exaone4Config.__post_init__: no sliding_window -> every layer full.
    if window is None:
        return _every("full_attention"), "Exaone4Config"
    letters = r.data.get("sliding_window_pattern")
    if isinstance(letters, str) and letters and set(letters) <= {"L", "G"}:
        # Exaone4Config docstring: "LLLG" = three local (sliding) layers, then a global one, repeated.
        return (lambda i: "sliding_attention" if letters[i % len(letters)] == "L" else "full_attention"), \
            "Exaone4Config sliding_window_pattern"
    return _by_pattern(r, "sliding_window_pattern", 4, "sliding_attention", "full_attention"), "Exaone4Config"


def _default_types(r: _Reader, family: str, n: int, window: int | None) -> tuple[Callable[[int], str], str]:
    """The family's default ``layer_types`` (when the config has none), and where it comes from."""
    if family in ("qwen2", "qwen3", "mimo"):
        # Qwen2Config / Qwen3Config.__post_init__: sliding when a window is set and i >= max_window_layers.
        if window is None:
            return _every("full_attention"), "Qwen2/Qwen3Config"
        start = r.opt_count("max_window_layers")
        if start is None:
            start = 28
            r.assumptions.append("max_window_layers not set: using 28 (Qwen2Config default)")
        return (lambda i: "sliding_attention" if i >= start else "full_attention"), "Qwen2/Qwen3Config"
    if family == "qwen2_moe":
        # Qwen2MoeConfig.__post_init__: sliding on odd-numbered layers below max_window_layers.
        if window is None:
            return _every("full_attention"), "Qwen2MoeConfig"
        limit = r.opt_count("max_window_layers")
        limit = 28 if limit is None else limit
        return (lambda i: "sliding_attention" if (i + 1) % 2 and i < limit else "full_attention"), "Qwen2MoeConfig"
    if family in ("gemma2", "gpt_oss"):
        # Gemma2Config / GptOssConfig: sliding on even layers (0, 2, ...), global on odd ones.
        return (lambda i: "sliding_attention" if (i + 1) % 2 else "full_attention"), f"{family} config"
    if family in ("gemma3", "gemma3_text"):
        return _by_pattern(r, "sliding_window_pattern", 6, "sliding_attention", "full_attention"), "Gemma3TextConfig"
    if family == "cohere2":
        return _by_pattern(r, "sliding_window_pattern", 4, "sliding_attention", "full_attention"), "Cohere2Config"
    if family == "exaone4":
        return _exaone4_types(r, window)
    if family == "olmo3":
        return (lambda i: "full_attention" if (i + 1) % 4 == 0 else "sliding_attention"), "Olmo3Config"
    if family in ("llama4", "llama4_text"):
        # Llama4TextConfig.__post_init__: chunked where RoPE is used, full (NoPE) elsewhere.
        flags = _rope_flags(r, n)
        return (lambda i: "chunked_attention" if flags[i] else "full_attention"), "Llama4TextConfig"
    if family == "smollm3":
        # SmolLM3Config.__post_init__: NoPE layers still cache; sliding only on NoPE layers with a window.
        flags = _rope_flags(r, n)
        return (lambda i: "sliding_attention" if window is not None and not flags[i] else "full_attention"), \
            "SmolLM3Config"
    return _default_hybrid_types(r, family, n, window)


def _default_hybrid_types(r: _Reader, family: str, n: int, window: int | None) -> tuple[Callable[[int], str], str]:
    """``_default_types`` continued: families with state, DSA, cross-attention or hybrid layers."""
    chunk = r.opt_int("attention_chunk_size")
    if family in ("qwen3_next", "qwen3_5", "qwen3_5_text", "qwen3_5_moe", "qwen3_5_moe_text"):
        # Qwen3NextConfig / Qwen3_5TextConfig.__post_init__: full every full_attention_interval-th layer.
        interval = r.get_int("full_attention_interval", default=4, why="transformers default")
        return (lambda i: "full_attention" if (i + 1) % interval == 0 else "linear_attention"), f"{family} config"
    if family == "minimax":
        return (lambda i: "full_attention" if (i + 1) % 2 else "linear_attention"), "MiniMaxConfig"
    if family == "mimo_v2_flash":
        return _mimo_types(r, n)
    if family in ("deepseek_v32", "glm_moe_dsa"):
        return _every("indexed_attention"), f"{family} config (every layer DSA)"
    if family == "granitemoehybrid":
        return _every("linear_attention"), "GraniteMoeHybridConfig"
    if family == "jamba":
        period = r.get_int("attn_layer_period", default=8, why="JambaConfig default")
        offset = r.opt_count("attn_layer_offset")
        offset = 4 if offset is None else offset
        return (lambda i: "full_attention" if i % period == offset else "linear_attention"), "JambaConfig"
    if family == "falcon_h1":
        # FalconH1Config.layers_block_type (a property): every layer "hybrid".
        return _every("hybrid"), "FalconH1Config (every layer hybrid)"
    if family == "zamba2":
        return _zamba2_types(r, n)
    if family in ("mllama", "mllama_text_model"):
        return _mllama_types(r, n)
    # transformers' own fallback (cache_utils.py get_layer_types_and_kwargs): a sliding_window makes
    # every layer slide, else an attention_chunk_size makes it chunked, else full (Mistral, Phi-3, ...).
    if window is not None:
        return _every("sliding_attention"), "sliding_window on every layer"
    if chunk is not None:
        return _every("chunked_attention"), "attention_chunk_size on every layer"
    return _every("full_attention"), "full attention on every layer"


def _listed_types(r: _Reader, family: str, n: int) -> tuple[list[str], str] | None:
    """``layer_types`` or a family's explicit spelling of it, checked against the layer count."""
    for key in ("layer_types", "layers_block_type"):
        value = r.data.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise InvalidConfigError(r.source, f"field {key!r} must list one string per layer")
        if len(value) != n:
            r.refuse(key, f"{len(value)} entries", f"one entry per layer ({n}, num_hidden_layers) is understood",
                     f"the list's {len(value)} layers")
        return list(value), key
    pattern = r.data.get("hybrid_override_pattern")
    if pattern is not None:
        # NemotronHConfig._pattern_to_list: M Mamba2, * attention, - MLP, E MoE.
        codes = {"M": "linear_attention", "*": "full_attention", "-": "mlp", "E": "moe"}
        if not isinstance(pattern, str) or not pattern:
            raise InvalidConfigError(r.source, "field 'hybrid_override_pattern' must be a non-empty string")
        unknown = sorted(set(pattern) - set(codes))
        if unknown:
            r.refuse("hybrid_override_pattern", pattern, f"layer codes {unknown} are not understood "
                     "(M Mamba2, * attention, - MLP, E MoE)", "no cache for those layers")
        if len(pattern) != n:
            # transformers 5.23 warns and uses the pattern's length; a short pattern would silently
            # become a smaller model, so kvcalc refuses.
            r.refuse("hybrid_override_pattern", pattern, f"its length {len(pattern)} differs from "
                     f"num_hidden_layers ({n})", f"the pattern's {len(pattern)} layers, as transformers 5.23 does")
        return [codes.get(c, "mlp") for c in pattern], "hybrid_override_pattern"
    return None


def _layer_kinds(r: _Reader, family: str, n: int, window: int | None) -> tuple[list[str], str]:
    listed = _listed_types(r, family, n)
    if listed is not None:
        types, key = listed
    else:
        rule, origin = _default_types(r, family, n, window)
        types = [rule(i) for i in range(n)]
        key = "layer_types"
    kinds: list[str] = []
    for i, t in enumerate(types):
        kind = LAYER_TYPES.get(t)
        if kind is None:
            why = _UNPLACED_TYPES.get(t, "not a layer type kvcalc understands")
            if listed is None:
                why += f" (no layer_types in the config: the {origin} default)"
            r.refuse(f"{key}[{i}]", t, f"{why} (understood: {', '.join(sorted(LAYER_TYPES))})", "full attention")
            kind = "full"
        kinds.append(kind)
    return kinds, key


# ---------------------------------------------------------------------------------------------
# Geometry per kind.
# ---------------------------------------------------------------------------------------------


def _linear_state(r: _Reader, family: str) -> FixedState | None:
    """The recurrent state of a linear-attention layer, by the keys that describe it."""
    if r.has("linear_num_value_heads", "linear_key_head_dim"):
        # Gated DeltaNet (Qwen3-Next, Qwen3.5): vLLM MambaStateShapeCalculator.gated_delta_net_state_shape:
        # conv (kernel - 1) x (2 x key_dim + value_dim); recurrent v_heads x k_dim x v_dim.
        k_heads = r.get_int("linear_num_key_heads")
        v_heads = r.get_int("linear_num_value_heads")
        k_dim = r.get_int("linear_key_head_dim")
        v_dim = r.get_int("linear_value_head_dim")
        kernel = r.get_int("linear_conv_kernel_dim", default=4, why="transformers default")
        conv = (kernel - 1) * (2 * k_heads * k_dim + v_heads * v_dim)
        return FixedState(state_elements={"conv": conv, "recurrent": v_heads * k_dim * v_dim}, conv_kernel=kernel)
    if r.has("mamba_num_heads"):  # Nemotron-H spelling
        heads, head_dim = r.get_int("mamba_num_heads"), r.get_int("mamba_head_dim")
        groups = r.get_int("n_groups", default=1)
        state = r.get_int("ssm_state_size")
        kernel = r.get_int("conv_kernel", default=4)
    elif r.has("mamba_n_heads") or family == "falcon_h1":  # GraniteMoeHybrid / Falcon-H1 / Bamba spelling
        falcon = family == "falcon_h1"  # FalconH1Config's defaults: 128 heads, state 256, 1 group, conv 4
        heads = r.get_int("mamba_n_heads", default=128 if falcon else None, why="FalconH1Config default")
        raw = r.data.get("mamba_d_head")
        if raw in (None, "auto"):
            # GraniteMoeHybridConfig / FalconH1Config.__post_init__: mamba_d_head "auto" = the Mamba
            # intermediate size / heads; Falcon-H1's intermediate is mamba_d_ssm (default 1024; null:
            # mamba_expand x hidden_size, FalconH1Mixer.__init__).
            head_dim = _mamba_intermediate(r, family) // heads
        else:
            head_dim = r.get_int("mamba_d_head")
            if falcon and head_dim * heads != _mamba_intermediate(r, family):
                # FalconH1Config.__post_init__ raises the same: the conv spans mamba_d_ssm channels.
                raise InvalidConfigError(r.source, f"field 'mamba_d_head' = {head_dim}: mamba_d_head x mamba_n_heads "
                                         f"({head_dim * heads}) must equal mamba_d_ssm "
                                         f"({_mamba_intermediate(r, family)}), as FalconH1Config requires")
        groups = r.get_int("mamba_n_groups", default=1)
        state = r.get_int("mamba_d_state", default=256 if falcon else None, why="FalconH1Config default")
        kernel = r.get_int("mamba_d_conv", default=4)
    elif family == "zamba2":
        # Zamba2Config.__post_init__ / Zamba2MambaMixer.__init__: intermediate = mamba_expand x hidden_size,
        # mamba_headdim = intermediate // n_mamba_heads; the conv covers the whole intermediate.
        inner = r.get_int("mamba_expand", default=2, why="Zamba2Config default") * r.get_int("hidden_size")
        heads = r.get_int("n_mamba_heads", default=8, why="Zamba2Config default")
        groups = r.get_int("mamba_ngroups", default=1, why="Zamba2Config default")
        state = r.get_int("mamba_d_state", default=64, why="Zamba2Config default")
        kernel = r.get_int("mamba_d_conv", default=4, why="Zamba2Config default")
        return FixedState(state_elements={"conv": (kernel - 1) * (inner + 2 * groups * state),
                                          "ssm": heads * (inner // heads) * state}, conv_kernel=kernel)
    elif family == "jamba" and r.has("mamba_d_state"):
        # Mamba-1 (JambaMambaMixer, modeling_jamba.py): channels = mamba_expand x hidden_size; vLLM
        # MambaStateShapeCalculator.mamba1_state_shape: conv (d_conv - 1) x channels, ssm channels x d_state.
        channels = r.get_int("mamba_expand", default=2, why="JambaConfig default") * r.get_int("hidden_size")
        kernel = r.get_int("mamba_d_conv", default=4, why="JambaConfig default")
        return FixedState(state_elements={"conv": (kernel - 1) * channels,
                                          "ssm": channels * r.get_int("mamba_d_state")}, conv_kernel=kernel)
    else:
        r.refuse("layer_types", "linear_attention", f"no state keys kvcalc understands for {family!r} "
                 "(linear_* for Gated DeltaNet; mamba_num_heads / mamba_n_heads for Mamba2; mamba_d_state for "
                 "Jamba's Mamba-1; lightning attention (MiniMax-01) is not modelled)", "no state for those layers")
        return None
    # Mamba2 (vLLM MambaStateShapeCalculator.mamba2_state_shape): conv (kernel - 1) x (inner + 2 x groups x
    # state); ssm heads x head_dim x state.
    inner = heads * head_dim
    return FixedState(state_elements={"conv": (kernel - 1) * (inner + 2 * groups * state),
                                      "ssm": heads * head_dim * state}, conv_kernel=kernel)


def _mamba_intermediate(r: _Reader, family: str) -> int:
    if family == "falcon_h1" and r.data.get("mamba_d_ssm") is not None:
        return r.get_int("mamba_d_ssm")
    if family == "falcon_h1" and "mamba_d_ssm" not in r.data:
        r.assumptions.append("mamba_d_ssm not set: using 1024 (FalconH1Config default)")
        return 1024
    return r.get_int("mamba_expand", default=2) * r.get_int("hidden_size")


def _indexer_flags(r: _Reader, n: int) -> list[bool]:
    """Which layers run their own DSA indexer (GlmMoeDsaConfig.__post_init__ ``indexer_types``: "shared"
    layers reuse the previous layer's top-k and keep no indexer keys)."""
    types = r.data.get("indexer_types")
    if types is None:
        pattern = r.data.get("index_topk_pattern")
        if isinstance(pattern, str):
            types = [{"F": "full", "S": "shared"}.get(c, c) for c in pattern]
        elif pattern is not None:
            types = pattern
    if types is None:
        freq = r.get_int("index_topk_freq", default=1) if r.has("index_topk_freq") else 1
        offset = r.opt_count("index_skip_topk_offset")
        offset = 2 if offset is None else offset
        return [max(i - offset + 1, 0) % freq == 0 for i in range(n)]
    if not isinstance(types, list) or len(types) != n or any(t not in ("full", "shared") for t in types):
        r.refuse("indexer_types", types, f"{n} entries 'full' or 'shared' are understood", "an indexer on every layer")
        return [True] * n
    return [t == "full" for t in types]


def _nas_specs(r: _Reader, n: int, heads: int, d: int) -> list[Spec]:
    """DeciLM / Nemotron-NAS ``block_configs`` (remote code ``configuration_decilm.py`` /
    ``modeling_decilm.py``): per layer, attention is a no-op, a linear layer, or GQA with
    ``num_attention_heads // n_heads_in_group`` KV heads."""
    blocks = r.data.get("block_configs")
    if not isinstance(blocks, list) or len(blocks) != n or not all(isinstance(b, dict) for b in blocks):
        raise UnplacedConfigKeyError(r.source, f"field 'block_configs' must list {n} blocks (num_hidden_layers)")
    known = {"n_heads_in_group", "no_op", "replace_with_linear", "num_sink_tokens", "sparsify", "unshifted_sink",
             "use_prefill_window_in_sink_attention", "window_length"}
    specs: list[Spec] = []
    for i, block in enumerate(blocks):
        att = block.get("attention")
        if not isinstance(att, dict):
            raise UnplacedConfigKeyError(r.source, f"field 'block_configs[{i}].attention' must be a mapping")
        extra = sorted(set(att) - known)
        if extra:
            r.refuse(f"block_configs[{i}].attention.{extra[0]}", att[extra[0]],
                     f"understood: {', '.join(sorted(known))}", "it does not change the cache")
        for key in ("window_length", "num_sink_tokens", "sparsify"):
            if att.get(key) is not None:
                r.refuse(f"block_configs[{i}].attention.{key}", att[key], "windowed / sink / sparse NAS attention "
                         "is not modelled", "full attention")
        if att.get("no_op"):
            specs.append(NoCache(reason="no_op attention (block_configs)"))
        elif att.get("replace_with_linear"):
            specs.append(NoCache(reason="attention replaced by a linear layer (block_configs)"))
        else:
            group = att.get("n_heads_in_group")
            if isinstance(group, bool) or not isinstance(group, int) or group <= 0 or heads % group:
                raise UnplacedConfigKeyError(
                    r.source, f"field 'block_configs[{i}].attention.n_heads_in_group' = {group!r}: expected a "
                    f"positive divisor of num_attention_heads ({heads})")
            specs.append(FullAttention(num_kv_heads=heads // group, head_dim=d))
    return specs


def _attention_geometry(r: _Reader, family: str, heads: int, hidden: int) -> tuple[int, int, int | None]:
    kv = r.opt_int("num_key_value_heads")
    if kv is None and family == "falcon_h1":
        kv = 8
        r.assumptions.append("num_key_value_heads not set: using 8 (FalconH1Config default)")
    if kv is None:
        kv = heads
        r.assumptions.append(f"num_key_value_heads not set: using num_attention_heads ({heads}), i.e. MHA")
    if family == "cohere2":
        # Cohere2Config.__post_init__: head_dim = hidden_size // num_attention_heads, whatever the file says.
        d = hidden // heads
    elif family == "zamba2":
        # Zamba2Config.__post_init__: attention_head_dim = 2 x hidden_size // num_attention_heads (the shared
        # block attends over the concatenated 2 x hidden input), whatever the file says.
        d = 2 * hidden // heads
    elif family == "nemotron_h":
        d = r.opt_int("attention_head_dim") or r.opt_int("head_dim") or 0
        if not d:
            d = _head_dim(r, hidden, heads)
            r.assumptions.append(f"no attention_head_dim: using hidden_size / heads = {d}")
    else:
        d = _head_dim(r, hidden, heads)
    return kv, d, r.opt_int("v_head_dim")


def _latent(r: _Reader) -> LatentAttention | None:
    """An MLA latent when ``kv_lora_rank`` is set, whatever the model_type (needs ``qk_rope_head_dim``)."""
    rank = r.opt_int("kv_lora_rank")
    if rank is None:
        return None
    rope = r.opt_int("qk_rope_head_dim")
    if rope is None:
        r.refuse("kv_lora_rank", rank, "a latent (MLA) needs its qk_rope_head_dim", "qk_rope_head_dim 64")
        rope = 64
    nextn = r.opt_count("num_nextn_predict_layers") or 0
    if nextn:
        r.notes.append(f"{nextn} multi-token-prediction layer(s) (num_nextn_predict_layers) are not cached")
    return LatentAttention(kv_lora_rank=rank, qk_rope_head_dim=rope, qk_nope_head_dim=r.opt_int("qk_nope_head_dim"),
                           v_head_dim=r.opt_int("v_head_dim"), q_lora_rank=r.opt_int("q_lora_rank"))


def _indexed(r: _Reader, latent: LatentAttention, index_dim: int) -> IndexedLatentAttention:
    return IndexedLatentAttention(
        kv_lora_rank=latent.kv_lora_rank, qk_rope_head_dim=latent.qk_rope_head_dim,
        qk_nope_head_dim=latent.qk_nope_head_dim, v_head_dim=latent.v_head_dim, q_lora_rank=latent.q_lora_rank,
        index_head_dim=index_dim, index_n_heads=r.opt_int("index_n_heads"))


def _local_spec(r: _Reader, family: str, kind: str, size: int, full: FullAttention) -> Spec:
    """A sliding or chunked layer: the full layer's geometry with the ``swa_*`` overrides."""
    if kind == "chunked":
        return ChunkedAttention(num_kv_heads=full.num_kv_heads, head_dim=full.head_dim,
                                v_head_dim=full.v_head_dim, chunk_size=size)
    kv = r.opt_int("swa_num_key_value_heads")
    hf_heads = None
    if family == "mimo_v2_flash":
        # MiMoV2FlashAttention.__init__: sliding layers get num_key_value_heads x 2 heads
        # (swa_num_key_value_heads is not read by transformers 5.23).
        if kv is None:
            kv = 2 * full.num_kv_heads
        elif kv != 2 * full.num_kv_heads:
            hf_heads = 2 * full.num_kv_heads
    v_dim = r.opt_int("swa_v_head_dim")
    return SlidingWindowAttention(num_kv_heads=kv or full.num_kv_heads, head_dim=r.opt_int("swa_head_dim") or
                                  full.head_dim, v_head_dim=v_dim if v_dim is not None else full.v_head_dim,
                                  window=size, hf_cache_heads=hf_heads)


def _layer_count(r: _Reader) -> int:
    """``num_hidden_layers``; without it, the length of the config's own layer list (transformers 5.23
    NemotronHConfig: ``num_hidden_layers`` is deprecated and ``layers_block_type`` decides)."""
    n = r.opt_int("num_hidden_layers", "n_layer", "num_layers")
    if n is not None:
        return n
    for key in ("layer_types", "layers_block_type", "hybrid_override_pattern"):
        listed = r.data.get(key)
        if isinstance(listed, (list, str)) and listed:
            r.notes.append(f"no num_hidden_layers: {len(listed)} layers, the length of {key}")
            return len(listed)
    return r.get_int("num_hidden_layers", "n_layer", "num_layers")


_PER_LAYER_KEYS = {"num_key_value_heads": "num_kv_heads", "head_dim": "head_dim", "v_head_dim": "v_head_dim",
                   "sliding_window": "window"}


def _per_layer(r: _Reader, specs: list[Spec]) -> list[Spec]:
    """transformers 5.23 ``per_layer_config`` (HeterogeneousConfigMixin: ``{layer index: {attribute:
    value}}``, sparse overrides of the global config) applied to the attention layers it names."""
    import dataclasses

    raw = r.data.get("per_layer_config")
    if raw is None:
        return specs
    if not isinstance(raw, dict):
        raise InvalidConfigError(r.source, "field 'per_layer_config' must map layer indices to settings")
    out = list(specs)
    for key, overrides in raw.items():
        index = parse_count(str(key))
        if index is None or index >= len(out) or not isinstance(overrides, dict):
            raise InvalidConfigError(
                r.source, f"per_layer_config entry {str(key)[:40]!r}: expected a layer index < {len(out)}")
        changes: dict[str, Any] = {}
        for name, value in overrides.items():
            if name in _PER_LAYER_KEYS:
                if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                    raise InvalidConfigError(r.source, f"field 'per_layer_config.{key}.{name}' = {value!r}: "
                                             "expected a positive integer")
                changes[_PER_LAYER_KEYS[name]] = value
            elif isinstance(name, str) and CACHE_KEY_RE.search(name) and name not in NOT_CACHE_KEYS:
                r.refuse(f"per_layer_config.{key}.{name}", value, f"per-layer overrides understood: "
                         f"{', '.join(sorted(_PER_LAYER_KEYS))}", "the global value")
        spec = out[index]
        if "window" in changes and not isinstance(spec, SlidingWindowAttention):
            r.refuse(f"per_layer_config.{key}.sliding_window", changes["window"], "a window override on a layer "
                     "that does not slide is not understood", "no window")
            changes.pop("window")
        if changes and not isinstance(spec, FullAttention):
            r.refuse(f"per_layer_config.{key}", overrides, f"layer {index} is {spec.kind}: only attention "
                     "layers take head overrides", "the global value")
            continue
        if changes:
            out[index] = dataclasses.replace(spec, **changes)
    return out


def _structural(r: _Reader, family: str) -> list[Spec]:
    return _per_layer(r, _structural_layers(r, family))


def _structural_layers(r: _Reader, family: str) -> list[Spec]:
    n = _layer_count(r)
    heads = r.get_int("num_attention_heads", "n_head")
    hidden = r.get_int("hidden_size", "n_embd", "d_model")
    if r.has("block_configs"):
        return _nas_specs(r, n, heads, _head_dim(r, hidden, heads))
    window = _window(r, family)
    kinds, key = _layer_kinds(r, family, n, window)
    chunk = r.opt_int("attention_chunk_size")
    if family in ("llama4", "llama4_text") and chunk is None and "chunked" in kinds:
        chunk = 8192
        r.assumptions.append("attention_chunk_size not set: using 8192 (Llama4TextConfig default)")
    latent = _latent(r)
    index_dim = r.opt_int("index_head_dim")
    if index_dim is not None and latent is None:
        r.refuse("index_head_dim", index_dim, "a DSA indexer key cache is understood next to an MLA latent "
                 "(kv_lora_rank) only", "no indexer keys")
    if latent is not None and index_dim is not None:
        kinds = ["indexed" if k == "full" else k for k in kinds]
    elif "indexed" in kinds:
        r.refuse(key, "indexed_attention", "an indexed (DSA) layer needs kv_lora_rank, qk_rope_head_dim and "
                 "index_head_dim", "full attention")
        kinds = ["full" if k == "indexed" else k for k in kinds]
    if latent is not None and ("sliding" in kinds or "chunked" in kinds):
        r.refuse(key, "sliding_attention", "a sliding or chunked MLA layer is not understood", "full MLA")
        kinds = ["full" if k in ("sliding", "chunked") else k for k in kinds]
    kv, d, v_dim = _attention_geometry(r, family, heads, hidden) if latent is None else (heads, 1, None)
    attention = FullAttention(num_kv_heads=kv, head_dim=d, v_head_dim=v_dim)
    indexer = _indexer_flags(r, len(kinds)) if "indexed" in kinds else []
    made: dict[str, Spec] = {"full": latent or attention, "none": NoCache(reason="no attention (layer_types)"),
                             "mlp": NoCache(reason="MLP"), "moe": NoCache(reason="MoE")}
    specs: list[Spec] = []
    for i, kind in enumerate(kinds):
        if kind == "indexed":
            assert latent is not None and index_dim is not None
            specs.append(_indexed(r, latent, index_dim) if indexer[i] else latent)
            continue
        if kind in ("sliding", "chunked") and (window if kind == "sliding" else chunk) is None:
            r.refuse(f"{key}[{i}]", f"{kind}_attention", "a sliding/chunked layer needs sliding_window / "
                     "attention_chunk_size (or use_sliding_window is false)", "full attention")
            kind = "full"
        if kind not in made:
            if kind == "linear":
                made[kind] = _linear_state(r, family) or NoCache(reason="state not understood (--assume-standard)")
            elif kind == "cross":
                made[kind] = CrossAttention(num_kv_heads=kv, head_dim=d)
            elif kind == "hybrid":
                made[kind] = _hybrid(r, family, f"{key}[{i}]", attention if latent is None else None)
            else:
                size = window if kind == "sliding" else chunk
                assert size is not None
                made[kind] = _local_spec(r, family, kind, size, attention)
        specs.append(made[kind])
    return specs


def _hybrid(r: _Reader, family: str, key: str, attention: FullAttention | None) -> Spec:
    """A layer holding a Mamba2 state next to plain attention (transformers 5.23 ``"hybrid"``)."""
    state = _linear_state(r, family)
    if attention is None or state is None:
        r.refuse(key, "hybrid", "a hybrid layer is a Mamba state (mamba_* keys) next to plain attention",
                 "attention only")
        return attention or NoCache(reason="hybrid layer not understood (--assume-standard)")
    return StatefulAttention(attention=attention, state=state)


def _attention(kind: str, heads: int, d: int, window: int | None, chunk: int | None,
               v_dim: int | None = None, hf_heads: int | None = None) -> Spec:
    if kind == "sliding_attention" and window is not None:
        return SlidingWindowAttention(num_kv_heads=heads, head_dim=d, v_head_dim=v_dim,
                                      window=window, hf_cache_heads=hf_heads)
    if kind == "chunked_attention" and chunk is not None:
        return ChunkedAttention(num_kv_heads=heads, head_dim=d, v_head_dim=v_dim,
                                chunk_size=chunk, hf_cache_heads=hf_heads)
    return FullAttention(num_kv_heads=heads, head_dim=d, v_head_dim=v_dim, hf_cache_heads=hf_heads)


def _layer_types(r: _Reader, n: int, default: Callable[[int], str]) -> list[str]:
    types = r.data.get("layer_types")
    if types is not None:
        if not isinstance(types, list) or len(types) != n or not all(isinstance(t, str) for t in types):
            raise InvalidConfigError(
                r.source, f"field 'layer_types' must list {n} strings (one per layer)"
            )
        return list(types)
    return [default(i) for i in range(n)]


def _gemma4(r: _Reader, family: str) -> tuple[list[Spec], dict[str, Any]]:
    """Gemma-4 text (transformers 5.23 ``Gemma4TextConfig.__post_init__`` / ``kv_sharing_modes``).

    * ``layer_types`` default: sliding unless ``(i + 1) % 6 == 0``; the last layer is forced to
      ``full_attention``.
    * ``per_layer_config`` ({layer index: {head_dim, num_key_value_heads}}) overrides per layer;
      when absent, full layers get ``head_dim = global_head_dim`` (default 512) and, when
      ``attention_k_eq_v``, ``num_key_value_heads = num_global_key_value_heads``.
    * The last ``num_kv_shared_layers`` layers reuse an earlier layer's KV ("reuse" ->
      ``DummyLayer`` in ``get_layer_types_and_kwargs``): they cache nothing.
    * ``attention_k_eq_v`` shares the projection weights, but K and V are both still cached.
    """
    n = r.get_int("num_hidden_layers")
    r.get_int("num_attention_heads")  # required (model_from_hf reads it too)
    kv = r.get_int("num_key_value_heads", default=4, why="Gemma4TextConfig default")
    d = r.get_int("head_dim", default=256, why="Gemma4TextConfig default")
    window = r.get_int("sliding_window", default=512, why="Gemma4TextConfig default")
    if r.data.get("use_bidirectional_attention") == "all":
        # Gemma4TextConfig.__post_init__: "due to fa we set exclusive bounds".
        window = window // 2 + 1
        r.notes.append(f"use_bidirectional_attention 'all': sliding window becomes {window}")
    types = _layer_types(r, n, lambda i: "full_attention" if (i + 1) % 6 == 0 else "sliding_attention")
    for i, t in enumerate(types):
        if LAYER_TYPES.get(t) not in ("full", "sliding"):
            r.refuse(f"layer_types[{i}]", t, "Gemma-4 layers are full_attention or sliding_attention", "full attention")
            types[i] = "full_attention"
    if types[-1] != "full_attention":
        r.assumptions.append("the last layer is forced to full_attention (Gemma4TextConfig)")
        types = [*types[:-1], "full_attention"]
    per_layer = r.data.get("per_layer_config")
    overrides: dict[int, dict[str, Any]] = {}
    if per_layer is not None:
        if not isinstance(per_layer, dict):
            raise InvalidConfigError(r.source, "field 'per_layer_config' must map layer indices to settings")
        for key, value in per_layer.items():
            index = parse_count(str(key))
            if index is None or index >= n or not isinstance(value, dict):
                raise InvalidConfigError(
                    r.source, f"per_layer_config entry {str(key)[:40]!r}: expected a layer index < {n}")
            overrides[index] = value
    else:
        global_d = r.get_int("global_head_dim", default=512, why="Gemma4TextConfig default")
        full: dict[str, Any] = {"head_dim": global_d}
        global_kv = r.opt_int("num_global_key_value_heads")
        if r.get_bool("attention_k_eq_v", False) and global_kv is not None:
            full["num_key_value_heads"] = global_kv
        overrides = {i: full for i, t in enumerate(types) if t == "full_attention"}
    shared = r.data.get("num_kv_shared_layers") or 0
    if isinstance(shared, bool) or not isinstance(shared, int) or not 0 <= shared < n:
        raise InvalidConfigError(r.source, f"field 'num_kv_shared_layers' = {shared!r}: expected 0 to {n - 1}")
    specs: list[Spec] = []
    for i, t in enumerate(types):
        if i >= n - shared:
            specs.append(NoCache(reason="reuses an earlier layer's KV"))
            continue
        o = overrides.get(i, {})
        sub = _Reader(o, r.source)
        specs.append(_attention(t, sub.opt_int("num_key_value_heads") or kv, sub.opt_int("head_dim") or d,
                                window, None))
    if shared:
        r.notes.append(f"the last {shared} layers (num_kv_shared_layers) reuse earlier layers' KV")
    return specs, {}


def _gpt2(r: _Reader, family: str) -> tuple[list[Spec], dict[str, Any]]:
    if r.get_bool("add_cross_attention", False):
        # GPT2Block with add_cross_attention caches the encoder's states too (an encoder-decoder setup).
        r.refuse("add_cross_attention", True, "cross-attention over an encoder's states is not modelled for "
                 f"{family}", "self-attention only")
    n = r.get_int("n_layer", "num_hidden_layers")
    heads = r.get_int("n_head", "num_attention_heads")
    hidden = r.get_int("n_embd", "hidden_size")
    d = _head_dim(r, hidden, heads)
    # GPTBigCode: multi_query caches one KV head (transformers GPTBigCodeAttention).
    kv = 1 if family == "gpt_bigcode" and r.get_bool("multi_query", True) else heads
    return [FullAttention(num_kv_heads=kv, head_dim=d)] * n, {}


def _falcon(r: _Reader, family: str) -> tuple[list[Spec], dict[str, Any]]:
    n = r.get_int("num_hidden_layers", "n_layer")
    heads = r.get_int("num_attention_heads", "n_head")
    hidden = r.get_int("hidden_size")
    d = _head_dim(r, hidden, heads)
    new_arch = r.get_bool("new_decoder_architecture", False)
    if new_arch:
        kv = r.get_int("num_kv_heads", default=heads, why="FalconConfig default")
        # transformers FalconAttention broadcasts K/V to every query head before caching.
        hf_heads: int | None = heads if kv != heads else None
    elif r.get_bool("multi_query", True):
        kv, hf_heads = 1, None
    else:
        kv = r.opt_int("num_kv_heads") or heads
        hf_heads = None
    return [FullAttention(num_kv_heads=kv, head_dim=d, hf_cache_heads=hf_heads)] * n, {}


_SPECIAL: dict[str, Callable[[_Reader, str], tuple[list[Spec], dict[str, Any]]]] = {
    "gemma4_text": _gemma4,
    "gemma4": _gemma4,
    "gpt2": _gpt2,
    "gpt_bigcode": _gpt2,
    "falcon": _falcon,
}
"""Families whose cache geometry lives in their own code rather than in generic keys."""

KNOWN_FAMILIES = frozenset({
    *_SPECIAL,
    "llama", "mistral", "mixtral", "ministral", "ministral3", "mistral3", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe",
    "qwen3_next", "qwen3_5", "qwen3_5_text", "qwen3_5_moe", "qwen3_5_moe_text", "gemma", "gemma2", "gemma3",
    "gemma3_text", "gpt_neox", "phi3", "phi", "gpt_oss", "llama4", "llama4_text", "starcoder2", "olmo", "olmo2",
    "olmo3", "granite", "cohere", "cohere2", "internlm2", "deepseek_v2", "deepseek_v3", "deepseek_v32",
    "glm4_moe", "glm4_moe_lite", "glm_moe_dsa", "minimax_m2", "mimo_v2_flash", "nemotron_h", "smollm3", "exaone4",
    "granitemoehybrid", "jamba", "falcon_h1", "mllama", "mllama_text_model", "minimax", "zamba2",
})
"""``model_type``s read without the unknown-family warning: transformers 5.23 ships each, and kvcalc
knows what its code alone decides (``_default_types``, ``_SPECIAL``)."""

CACHE_KEY_RE = re.compile(
    r"window|layer_types|block_type|key_value|kv_|head_dim|lora|index|linear|mamba|ssm|conv|cross|"
    r"block_config|pattern|chunk|global|sink|hybrid|nope|rope_layer|interval|period|offset|compress|"
    r"attention_type|attn_type|full_attention|shared_layer|state_size|num_layers|n_layer|hidden_layers"
)
"""Config keys that look as if they shape the cache (the completeness test uses the same pattern)."""

UNDERSTOOD_KEYS = frozenset({
    "layer_types", "layers_block_type", "hybrid_override_pattern", "hybrid_layer_pattern", "cross_attention_layers",
    "block_configs", "num_hidden_layers", "n_layer", "num_layers", "num_key_value_heads", "num_kv_heads",
    "head_dim", "attention_head_dim", "v_head_dim", "swa_num_key_value_heads", "swa_head_dim", "swa_v_head_dim",
    "sliding_window", "sliding_window_size", "use_sliding_window", "max_window_layers", "sliding_window_pattern",
    "attention_chunk_size", "no_rope_layers", "no_rope_layer_interval", "full_attention_interval",
    "kv_lora_rank", "q_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "index_head_dim", "index_n_heads",
    "indexer_types", "index_topk_pattern", "index_topk_freq", "index_skip_topk_offset",
    "linear_num_key_heads", "linear_num_value_heads", "linear_key_head_dim", "linear_value_head_dim",
    "linear_conv_kernel_dim", "mamba_num_heads", "mamba_head_dim", "n_groups", "ssm_state_size", "conv_kernel",
    "mamba_n_heads", "mamba_d_head", "mamba_n_groups", "mamba_d_state", "mamba_d_conv", "mamba_expand",
    "attn_layer_period", "attn_layer_offset", "global_head_dim", "num_global_key_value_heads", "attention_k_eq_v",
    "num_kv_shared_layers", "per_layer_config", "use_bidirectional_attention", "num_nextn_predict_layers",
    "new_decoder_architecture", "multi_query", "first_k_dense_replace", "add_cross_attention",
    "mamba_d_ssm", "n_mamba_heads", "mamba_ngroups",
})
"""Every cache-looking key kvcalc reads (``CACHE_KEY_RE`` matches them)."""

NOT_CACHE_KEYS: dict[str, str] = {
    "index_topk": "how many tokens the DSA indexer selects: compute, not storage",
    "indexer_rope_interleave": "RoPE layout inside the indexer: values, not sizes",
    "qk_head_dim": "qk_nope_head_dim + qk_rope_head_dim of the decompressed query/key: weights, not the latent",
    "rope_interleave": "RoPE layout: values, not sizes",
    "mamba_ssm_dtype": "the recurrent state's dtype, applied by the engine policy, not its shape",
    "mamba_ssm_cache_dtype": "the recurrent state's dtype, applied by the engine policy, not its shape",
    "mamba_chunk_size": "the SSD scan's chunk length: compute, not storage",
    "chunk_size": "the Mamba2 scan's chunk length: compute, not storage",
    "mamba_conv_bias": "a bias term: weights",
    "use_conv_bias": "a bias term: weights",
    "mamba_proj_bias": "a bias term: weights",
    "mamba_hidden_act": "an activation",
    "mamba_dt_rank": "a projection rank: weights",
    "mtp_num_hidden_layers": "multi-token-prediction layers: not part of the served model's cache",
    "num_mtp_modules": "multi-token-prediction modules: not part of the served model's cache",
    "mtp_transformer_layers": "multi-token-prediction layers: not part of the served model's cache",
    "swa_rope_theta": "RoPE base of the sliding layers: values, not sizes",
    "add_swa_attention_sink_bias": "a learned sink logit per head: weights, nothing cached",
    "add_full_attention_sink_bias": "a learned sink logit per head: weights, nothing cached",
    "first_dense_layers": "dense-MLP layers: weights",
    "moe_layer_freq": "MoE placement: weights",
    "interleave_moe_layer_step": "MoE placement: weights",
    "decoder_sparse_step": "MoE placement: weights",
    "mlp_only_layers": "MLP placement: weights",
    "pretraining_tp": "a training setting",
    "num_hidden_layers_mtp": "multi-token-prediction layers: not cached",
    "hidden_size_per_layer_input": "Gemma per-layer input embeddings: weights",
    "vocab_size_per_layer_input": "Gemma per-layer input embeddings: weights",
    "image_token_index": "a token id",
    "video_token_index": "a token id",
    "attention_value_scale": "a scale applied to values: no size",
    "kv_sharing_modes": "set by Gemma-4's own code from num_kv_shared_layers",
    "mlp_layer_types": "dense or MoE MLP per layer: weights",
    "expert_layer_period": "MoE placement (Jamba): weights",
    "expert_layer_offset": "MoE placement (Jamba): weights",
    "boi_token_index": "a token id",
    "eoi_token_index": "a token id",
    "eoa_token_index": "a token id",
    "use_mamba_kernels": "which kernels run the scan: compute",
    "use_mambapy": "which kernels run the scan: compute",
    "mamba_dt_init_floor": "time-step initialisation: weights",
    "mamba_dt_limit": "time-step clamp: values",
    "mamba_dt_max": "time-step initialisation: weights",
    "mamba_dt_min": "time-step initialisation: weights",
    "mtp_hybrid_override_pattern": "multi-token-prediction layers: not part of the served model's cache",
    "mtp_layers_block_type": "multi-token-prediction layers: not part of the served model's cache",
    "qkv_bias": "a bias term: weights",
    "chunk_size_feed_forward": "a PreTrainedConfig default (feed-forward chunking): compute",
    "mamba_norm_before_gate": "where the gated RMSNorm sits (Falcon-H1): compute",
    "mamba_rms_norm": "whether the Mamba output is normalised (Falcon-H1): weights",
    "ssm_in_multiplier": "a muP scale on the Mamba input (Falcon-H1): values",
    "ssm_out_multiplier": "a muP scale on the Mamba output (Falcon-H1): values",
    "ssm_multipliers": "muP scales of the Mamba projections (Falcon-H1): values",
    "add_bias_linear": "bias terms of Zamba2's linear layers: weights",
    "cross_attention_hidden_size": "a PreTrainedConfig default for encoder-decoder models (add_cross_attention "
                                   "decides whether such layers exist)",
}
"""Cache-looking keys that do not change the cache, each with the reason."""


def cache_keys_not_understood(data: dict[str, Any]) -> list[str]:
    """Keys of a config that look cache-shaping and are neither read nor listed as irrelevant."""
    return sorted(k for k in data if isinstance(k, str) and CACHE_KEY_RE.search(k)
                  and k not in UNDERSTOOD_KEYS and k not in NOT_CACHE_KEYS)


def _moe(r: _Reader) -> MoE | None:
    experts = r.opt_int("num_local_experts", "n_routed_experts", "num_experts")
    if experts is None:
        return None
    # 0 is a value here (Qwen3-Coder-480B shared_expert_intermediate_size 0: no shared expert).
    shared = r.opt_count("shared_expert_intermediate_size")
    return MoE(
        num_experts=experts,
        experts_per_token=r.get_int("num_experts_per_tok", "experts_per_token", default=2),
        moe_intermediate_size=r.opt_int("moe_intermediate_size"),
        num_shared_experts=r.opt_count("n_shared_experts") or 0,
        shared_expert_intermediate_size=shared or None,
        first_dense_layers=r.opt_count("first_k_dense_replace") or 0,
    )


def _summary(specs: list[Spec]) -> str:
    counts: dict[str, int] = {}
    for spec in specs:
        counts[spec.describe()] = counts.get(spec.describe(), 0) + 1
    return "; ".join(f"{n} x {what}" for what, n in counts.items())


def model_from_hf(data: Any, source: str, name: str | None = None, assume_standard: bool = False) -> ModelConfig:
    """Build a ``ModelConfig`` from a parsed Hugging Face config (see the module docstring)."""
    if not isinstance(data, dict):
        raise InvalidConfigError(source, f"expected a JSON object, got {type(data).__name__}")
    text = data.get("text_config")
    outer = data
    if isinstance(text, dict) and "num_hidden_layers" not in data:
        # Multimodal wrappers (Gemma-3/4, Llama-4, Mllama, Qwen3.5, Mistral-3) nest the language model.
        data = {**text, "torch_dtype": text.get("torch_dtype") or text.get("dtype") or data.get("torch_dtype")
                or data.get("dtype")}
    r = _Reader(data, source, assume_standard)
    family = str(data.get("model_type") or outer.get("model_type") or "")
    known = family in KNOWN_FAMILIES
    if not known:
        for key in cache_keys_not_understood(data):
            r.refuse(key, data[key], f"unknown model_type {family or '(none)'!r} with a cache-shaping key kvcalc "
                     "does not understand", "it does not change the cache")
    if r.get_bool("add_cross_attention", False) and family not in ("gpt2", "gpt_bigcode"):
        r.refuse("add_cross_attention", True, "decoder layers cross-attending to an encoder's states are not "
                 "modelled", "self-attention only")
    rule = _SPECIAL.get(family)
    specs = rule(r, family)[0] if rule is not None else _structural(r, family)
    if not specs:
        raise InvalidConfigError(source, "the config describes no layers")
    if not known:
        r.assumptions.append(f"unknown model_type {family or '(none)'!r}: read by its keys as {_summary(specs)}")
    heads = r.get_int("num_attention_heads", "n_head")
    hidden = r.get_int("hidden_size", "n_embd", "d_model")
    if family == "falcon":
        max_pos = r.get_int("max_position_embeddings", default=2048, why="FalconConfig default")
    else:
        max_pos = r.get_int("max_position_embeddings", "n_positions", "n_ctx")
    dtype = _dtype(r)
    inter = r.opt_int("intermediate_size", "n_inner", "ffn_hidden_size")
    if inter is None and family in ("gpt2", "gpt_bigcode"):
        inter = 4 * hidden
    tie_default = family in ("gpt2", "gpt_bigcode", "gemma", "gemma2", "gemma3", "gemma3_text", "falcon")
    from kvcalc.loader import hf_model_name

    hf_name = name or hf_model_name(data, source)
    for spec in specs:
        window = getattr(spec, "window", None)
        if window is not None and window > max_pos:
            r.assumptions.append(
                f"sliding window {window} exceeds max_position_embeddings {max_pos}: "
                "every token stays in the window"
            )
            specs = [FullAttention(num_kv_heads=s.num_kv_heads, head_dim=s.head_dim, v_head_dim=s.v_head_dim,
                                   hf_cache_heads=s.hf_cache_heads)
                     if isinstance(s, (SlidingWindowAttention, ChunkedAttention)) and s.window > max_pos else s
                     for s in specs]
            break
    groups = _runs(specs)
    try:
        return ModelConfig(
            name=hf_name,
            dtype=dtype,  # type: ignore[arg-type]
            max_position_embeddings=max_pos,
            num_attention_heads=heads,
            hidden_size=hidden,
            intermediate_size=inter,
            vocab_size=r.opt_int("vocab_size"),
            tie_word_embeddings=r.get_bool("tie_word_embeddings", tie_default),
            moe=_moe(r),
            architecture=_architecture(data) or _architecture(outer),
            layers=groups,
            source=Source(
                hf_repo=name if name and "/" in name else None,
                config=source,
                notes=[f"imported from a Hugging Face config (model_type {family!r})", *r.notes],
                assumptions=r.assumptions,
            ),
        )
    except ValueError as exc:
        raise InvalidConfigError(source, str(exc)) from None


def _architecture(data: dict[str, Any]) -> str | None:
    """``architectures[0]`` when it is a short string (engines key code paths on it)."""
    archs = data.get("architectures")
    if isinstance(archs, list) and archs and isinstance(archs[0], str) and 0 < len(archs[0]) <= 200:
        return archs[0]
    return None


def _runs(specs: list[Spec]) -> list[LayerGroup]:
    """Compress a layer list into groups: the shortest repeating pattern, else runs."""
    n = len(specs)
    for period in range(1, min(n, 8) + 1):
        if n % period == 0 and all(specs[i] == specs[i % period] for i in range(n)):
            return [LayerGroup(repeat=n // period, pattern=list(specs[:period]))]
    groups: list[LayerGroup] = []
    for spec in specs:
        if groups and groups[-1].pattern[0] == spec:
            groups[-1] = LayerGroup(repeat=groups[-1].repeat + 1, pattern=groups[-1].pattern)
        else:
            groups.append(LayerGroup(pattern=[spec]))
    return groups


def load_hf_config(path: Path, data: Any = None, name: str | None = None,
                   assume_standard: bool = False) -> ModelConfig:
    """Read a ``config.json`` (size-capped) and build the model."""
    from kvcalc.loader import parse_json, read_text_capped

    if data is None:
        data = parse_json(read_text_capped(path), str(path))
    return model_from_hf(data, str(path), name, assume_standard)


def with_image_tokens(model: ModelConfig, tokens: int) -> ModelConfig:
    """``model`` with ``tokens`` encoder (vision) tokens held by every cross-attention layer
    (``--image-tokens``; Llama-3.2-Vision: 1601 per tile x up to 4 tiles per image, as transformers'
    ``MllamaVisionModel`` outputs them). Refused for a model without cross-attention layers."""
    import dataclasses

    if not any(isinstance(s, CrossAttention) for s in model.layer_specs):
        from kvcalc.errors import InvalidRequestError

        raise InvalidRequestError("--image-tokens", tokens, "a model with cross-attention layers (e.g. mllama)")
    return model.with_layer_specs([dataclasses.replace(s, encoder_tokens=tokens) if isinstance(s, CrossAttention)
                                   else s for s in model.layer_specs])


def hf_cache_dirs() -> list[Path]:
    """Hub cache folders in the order huggingface_hub looks: HF_HUB_CACHE, HF_HOME/hub, default."""
    dirs: list[Path] = []
    if os.environ.get("HF_HUB_CACHE"):
        dirs.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        dirs.append(Path(os.environ["HF_HOME"]) / "hub")
    xdg = os.environ.get("XDG_CACHE_HOME")
    dirs.append((Path(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub")
    return dirs


def find_in_hf_cache(repo_id: str) -> Path | None:
    """``org/name`` -> the cached ``config.json`` (``models--org--name/snapshots/*/``), offline.

    Prefers the snapshot ``refs/main`` points to, else the newest snapshot.
    """
    folder = "models--" + repo_id.replace("/", "--")
    for base in hf_cache_dirs():
        repo = base / folder
        snaps = repo / "snapshots"
        if not snaps.is_dir():
            continue
        ref = repo / "refs" / "main"
        if ref.is_file():
            from kvcalc.loader import read_text_capped

            # Through the size cap and UTF-8 check like every file kvcalc reads; a commit name only
            # (no "/", no ".."), so the lookup never leaves the snapshots folder.
            commit = read_text_capped(ref, "HF cache ref").strip()
            if not commit or commit in (".", "..") or not all(c.isalnum() or c in "._-" for c in commit):
                raise InvalidConfigError(str(ref), f"refs/main = {commit[:60]!r}: expected a commit hash")
            snapshot = snaps / commit
            candidate = snapshot / "config.json"  # itself a link into blobs/, as huggingface_hub writes it
            if candidate.is_file() and snapshot.resolve().parent == snaps.resolve():
                return candidate
        inside = snaps.resolve()
        configs = sorted((c for c in snaps.glob("*/config.json") if c.parent.resolve().parent == inside),
                         key=lambda p: p.stat().st_mtime, reverse=True)
        if configs:
            return configs[0]
    return None
