"""Hugging Face ``config.json`` -> ``ModelConfig``, one small rule per ``model_type``.

No network and no ``transformers``: the JSON is read as data. Which layers slide, chunk or
hold a recurrent state follows transformers 5.x (``configuration_*.py`` of each family):
``layer_types`` decides where present; otherwise each family's own default applies. A field
transformers fills with a default is filled the same way and reported in
``source.assumptions`` (printed as a warning), never silently.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kvcalc.errors import InvalidConfigError
from kvcalc.models import LayerGroup, ModelConfig, MoE, Source
from kvcalc.specs import (
    ChunkedAttention,
    FixedState,
    FullAttention,
    LatentAttention,
    NoCache,
    SlidingWindowAttention,
    Spec,
)
from kvcalc.units import parse_count

_TORCH_DTYPES = {
    "float32": "fp32", "float": "fp32", "fp32": "fp32",
    "float16": "fp16", "half": "fp16", "fp16": "fp16",
    "bfloat16": "bf16", "bf16": "bf16",
}
DEFAULT_DTYPE = "fp32"
"""transformers builds a model in torch's default dtype (float32) when a config names none."""


class _Reader:
    """Typed access to a config dict that records every default it fills in."""

    def __init__(self, data: dict[str, Any], source: str) -> None:
        self.data = data
        self.source = source
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

    def get_bool(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise InvalidConfigError(self.source, f"field {key!r} = {value!r}: expected true or false")
        return value


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
        return types
    return [default(i) for i in range(n)]


def _qwen_sliding(r: _Reader) -> Callable[[int], str]:
    # Qwen2/Qwen3: sliding_window only when use_sliding_window; then layers from
    # max_window_layers on slide (transformers Qwen2Config.__init__).
    if not r.get_bool("use_sliding_window", False) or r.data.get("sliding_window") is None:
        return lambda i: "full_attention"
    start = r.opt_int("max_window_layers") or 0
    return lambda i: "sliding_attention" if i >= start else "full_attention"


def _standard(r: _Reader, family: str) -> tuple[list[Spec], dict[str, Any]]:
    """Decoder-only attention families (llama, mistral, qwen, gemma, phi3, gpt-oss, ...)."""
    n = r.get_int("num_hidden_layers", "n_layer", "num_layers")
    heads = r.get_int("num_attention_heads", "n_head")
    hidden = r.get_int("hidden_size", "n_embd", "d_model")
    kv = r.opt_int("num_key_value_heads")
    if kv is None:
        kv = heads
        r.assumptions.append(f"num_key_value_heads not set: using num_attention_heads ({heads}), i.e. MHA")
    d = _head_dim(r, hidden, heads)
    window = r.opt_int("sliding_window")
    chunk = r.opt_int("attention_chunk_size")
    default: Callable[[int], str]
    if family in ("qwen2", "qwen2_moe", "qwen3", "qwen3_moe"):
        default = _qwen_sliding(r)
    elif family == "gemma2":
        # Gemma2Config: sliding on even layers, global on odd ones.
        default = lambda i: "sliding_attention" if (i + 1) % 2 else "full_attention"  # noqa: E731
    elif family in ("gemma3", "gemma3_text"):
        pattern = r.opt_int("sliding_window_pattern") or 6
        default = lambda i: "full_attention" if (i + 1) % pattern == 0 else "sliding_attention"  # noqa: E731
    elif family in ("llama4", "llama4_text"):
        no_rope = r.data.get("no_rope_layers")
        step = r.opt_int("interleave_moe_layer_step")  # noqa: F841 - MoE placement, not cache
        if isinstance(no_rope, list) and len(no_rope) == n:
            default = lambda i: "chunked_attention" if no_rope[i] else "full_attention"  # noqa: E731
        else:
            # Llama4TextConfig: every 4th layer is a global NoPE layer, the others chunked.
            default = lambda i: "full_attention" if (i + 1) % 4 == 0 else "chunked_attention"  # noqa: E731
    elif window is not None:
        # mistral, phi3, starcoder2, ...: a sliding_window applies to every layer.
        default = lambda i: "sliding_attention"  # noqa: E731
    else:
        default = lambda i: "full_attention"  # noqa: E731
    types = _layer_types(r, n, default)
    specs = [_attention(t, kv, d, window, chunk) for t in types]
    return specs, {}


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


def _deepseek(r: _Reader, family: str) -> tuple[list[Spec], dict[str, Any]]:
    n = r.get_int("num_hidden_layers")
    rank = r.opt_int("kv_lora_rank")
    if rank is None:
        return _standard(r, family)
    rope = r.get_int("qk_rope_head_dim")
    nextn = r.data.get("num_nextn_predict_layers") or 0
    if nextn:
        r.notes.append(
            f"{nextn} multi-token-prediction layer(s) (num_nextn_predict_layers) are not cached"
        )
    specs: list[Spec] = [LatentAttention(
        kv_lora_rank=rank, qk_rope_head_dim=rope, qk_nope_head_dim=r.opt_int("qk_nope_head_dim"),
        v_head_dim=r.opt_int("v_head_dim"), q_lora_rank=r.opt_int("q_lora_rank"),
    )] * n
    return specs, {}


def _gpt2(r: _Reader, family: str) -> tuple[list[Spec], dict[str, Any]]:
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


def _qwen3_next(r: _Reader, family: str) -> tuple[list[Spec], dict[str, Any]]:
    n = r.get_int("num_hidden_layers")
    heads = r.get_int("num_attention_heads")
    hidden = r.get_int("hidden_size")
    kv = r.get_int("num_key_value_heads", default=heads)
    d = _head_dim(r, hidden, heads)
    interval = r.get_int("full_attention_interval", default=4, why="Qwen3NextConfig default")
    types = _layer_types(
        r, n, lambda i: "full_attention" if (i + 1) % interval == 0 else "linear_attention"
    )
    # Gated DeltaNet state per sequence (vLLM MambaStateShapeCalculator.gated_delta_net_state_shape):
    # conv: (kernel - 1) x (2 x key_dim + value_dim); recurrent: v_heads x k_dim x v_dim.
    k_heads = r.get_int("linear_num_key_heads")
    v_heads = r.get_int("linear_num_value_heads")
    k_dim = r.get_int("linear_key_head_dim")
    v_dim = r.get_int("linear_value_head_dim")
    kernel = r.get_int("linear_conv_kernel_dim", default=4)
    conv = (kernel - 1) * (2 * k_heads * k_dim + v_heads * v_dim)
    state = FixedState(state_elements={"conv": conv, "recurrent": v_heads * k_dim * v_dim}, conv_kernel=kernel)
    full = FullAttention(num_kv_heads=kv, head_dim=d)
    return [full if t == "full_attention" else state for t in types], {}


def _nemotron_h(r: _Reader, family: str) -> tuple[list[Spec], dict[str, Any]]:
    pattern = r.data.get("hybrid_override_pattern")
    if not isinstance(pattern, str) or not pattern:
        raise InvalidConfigError(r.source, "missing required field 'hybrid_override_pattern'")
    heads = r.get_int("num_attention_heads")
    kv = r.get_int("num_key_value_heads", default=heads)
    d = r.opt_int("attention_head_dim") or r.opt_int("head_dim")
    if d is None:
        d = _head_dim(r, r.get_int("hidden_size"), heads)
        r.assumptions.append(f"no attention_head_dim: using hidden_size / heads = {d}")
    m_heads = r.get_int("mamba_num_heads")
    m_dim = r.get_int("mamba_head_dim")
    groups = r.get_int("n_groups", default=1)
    state_size = r.get_int("ssm_state_size")
    kernel = r.get_int("conv_kernel", default=4)
    inner = m_heads * m_dim
    # Mamba2 state per sequence (vLLM MambaStateShapeCalculator.mamba2_state_shape):
    # conv: (kernel - 1) x (inner + 2 x groups x state); ssm: heads x head_dim x state.
    mamba = FixedState(state_elements={
        "conv": (kernel - 1) * (inner + 2 * groups * state_size),
        "ssm": m_heads * m_dim * state_size,
    }, conv_kernel=kernel)
    legend: dict[str, Spec] = {
        "M": mamba,
        "*": FullAttention(num_kv_heads=kv, head_dim=d),
        "-": NoCache(reason="MLP"),
        "E": NoCache(reason="MoE"),
    }
    unknown = sorted(set(pattern) - set(legend))
    if unknown:
        raise InvalidConfigError(r.source, f"hybrid_override_pattern has unknown layer codes {unknown}")
    return [legend[c] for c in pattern], {}


_STANDARD_FAMILIES = (
    "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2", "gemma3",
    "gemma3_text", "gpt_neox", "phi3", "phi", "gpt_oss", "llama4", "llama4_text", "starcoder2", "olmo",
    "olmo2", "granite", "cohere", "internlm2",
)

_FAMILIES: dict[str, Callable[[_Reader, str], tuple[list[Spec], dict[str, Any]]]] = {
    **dict.fromkeys(_STANDARD_FAMILIES, _standard),
    "gemma4_text": _gemma4,
    "gemma4": _gemma4,
    "deepseek_v2": _deepseek,
    "deepseek_v3": _deepseek,
    "gpt2": _gpt2,
    "gpt_bigcode": _gpt2,
    "falcon": _falcon,
    "qwen3_next": _qwen3_next,
    "nemotron_h": _nemotron_h,
}


def _moe(r: _Reader) -> MoE | None:
    experts = r.opt_int("num_local_experts", "n_routed_experts", "num_experts")
    if experts is None:
        return None
    return MoE(
        num_experts=experts,
        experts_per_token=r.get_int("num_experts_per_tok", "experts_per_token", default=2),
        moe_intermediate_size=r.opt_int("moe_intermediate_size"),
        num_shared_experts=r.opt_int("n_shared_experts") or 0,
        shared_expert_intermediate_size=r.opt_int("shared_expert_intermediate_size"),
        first_dense_layers=r.opt_int("first_k_dense_replace") or 0,
    )


def model_from_hf(data: Any, source: str, name: str | None = None) -> ModelConfig:
    """Build a ``ModelConfig`` from a parsed Hugging Face config."""
    if not isinstance(data, dict):
        raise InvalidConfigError(source, f"expected a JSON object, got {type(data).__name__}")
    text = data.get("text_config")
    outer = data
    if isinstance(text, dict) and "num_hidden_layers" not in data:
        # Multimodal wrappers (Gemma-3, Llama-4) nest the language model's config.
        data = {**text, "torch_dtype": text.get("torch_dtype") or data.get("torch_dtype") or data.get("dtype")}
    r = _Reader(data, source)
    family = str(data.get("model_type") or outer.get("model_type") or "")
    rule = _FAMILIES.get(family)
    if rule is None:
        r.assumptions.append(
            f"unknown model_type {family or '(none)'!r}: read as a standard decoder "
            "(num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim)"
        )
        rule = _standard
    specs, _ = rule(r, family)
    if not specs:
        raise InvalidConfigError(source, "the config describes no layers")
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
    hf_name = name or str(data.get("_name_or_path") or "") or Path(source).stem
    for spec in specs:
        window = getattr(spec, "window", None)
        if window is not None and window > max_pos:
            r.assumptions.append(
                f"sliding window {window} exceeds max_position_embeddings {max_pos}: "
                "every token stays in the window"
            )
            specs = [FullAttention(num_kv_heads=s.num_kv_heads, head_dim=s.head_dim)
                     if isinstance(s, SlidingWindowAttention) else s for s in specs]
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
            architecture=_architecture(data),
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


def load_hf_config(path: Path, data: Any = None, name: str | None = None) -> ModelConfig:
    """Read a ``config.json`` (size-capped) and build the model."""
    from kvcalc.loader import parse_json, read_text_capped

    if data is None:
        data = parse_json(read_text_capped(path), str(path))
    return model_from_hf(data, str(path), name)


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
