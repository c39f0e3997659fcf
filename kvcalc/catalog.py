"""Listing, describing and exporting models (the data behind `kvcalc models` and `import`)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Any

from kvcalc.dtypes import resolve_dtype
from kvcalc.models import ModelConfig
from kvcalc.registry import builtin_names, get_builtin


@dataclass(frozen=True, kw_only=True)
class ModelRow:
    name: str
    num_layers: int
    layer_summary: str
    kv_dtype: str
    bytes_per_token: int
    """Each new token while every window is still filling: every caching layer grows by its row."""
    bytes_per_1k_tokens: int
    """Engine-neutral KV bytes for one sequence of 1,024 tokens (windows and fixed state applied)."""
    max_position_embeddings: int
    family: str = ""
    """The name's family (``llama-3.1-8b`` -> ``llama``), for ``kvcalc models --family``."""
    bytes_per_token_long: int = 0
    """Each new token once every window is full: only full-attention and latent (MLA) layers grow
    (0 for an all-sliding model such as mistral-7b-v0.1 past 4,096 tokens)."""
    state_bytes_per_sequence: int = 0
    """Per-sequence bytes that do not grow with tokens (Mamba / linear-attention state)."""
    engine_kv_dtypes: dict[str, str] = dataclasses.field(default_factory=dict)
    """For ``auto``: the cache dtype each serving engine picks when it differs from the config's
    (a float32 config is served in 16 bits: gemma-2 in bf16)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def family_of(name: str) -> str:
    """The leading words of a model name before its first word with a digit; if the very first
    word has one, its letters: ``gpt-oss-20b`` -> ``gpt-oss``, ``qwen2.5-7b`` -> ``qwen``,
    ``deepseek-v3`` -> ``deepseek``, ``gpt2`` -> ``gpt``."""
    words: list[str] = []
    for word in name.lower().split("-"):
        if any(ch.isdigit() for ch in word):
            if not words:
                words.append(word[: next(i for i, ch in enumerate(word) if ch.isdigit())] or word)
            break
        words.append(word)
    return "-".join(words) or name.lower()


def layer_summary(model: ModelConfig) -> str:
    counts = Counter(s.kind for s in model.layer_specs)
    return ", ".join(f"{n} {kind}" for kind, n in counts.items())


_LONG = 1 << 40
"""A context past any window: a layer still growing here grows without bound."""


def model_rows(kv_dtype: str = "auto", family: str | None = None) -> list[ModelRow]:
    """One row per built-in model, sorted by family then name order; ``family`` keeps one family
    (an unknown one is an error with a "did you mean")."""
    from kvcalc.dtypes import canonical_dtype_name
    from kvcalc.engines import get_policy
    from kvcalc.errors import UnknownNameError
    from kvcalc.estimate import estimate

    names = builtin_names()
    families = {n: family_of(n) for n in names}
    if family is not None:
        wanted = family.strip().lower()
        if wanted not in families.values():
            raise UnknownNameError("family", family, families.values())
        names = [n for n in names if families[n] == wanted]
    order = list(dict.fromkeys(families[n] for n in names))
    rows = []
    for name in sorted(names, key=lambda n: order.index(families[n])):
        model = get_builtin(name)
        est = estimate(model, 1024, 1, kv_dtype)
        dtype = resolve_dtype(est.kv_dtype, model.dtype)
        engines: dict[str, str] = {}
        if canonical_dtype_name(kv_dtype) == "auto":
            for engine in ("vllm", "sglang"):
                served = get_policy(engine).auto_dtype(model)[0]
                if served != est.kv_dtype:
                    engines[engine] = served
        rows.append(ModelRow(
            name=name, num_layers=model.num_layers, layer_summary=layer_summary(model),
            kv_dtype=est.kv_dtype, bytes_per_token=est.bytes_per_token,
            bytes_per_1k_tokens=est.total_bytes, max_position_embeddings=model.max_position_embeddings,
            family=families[name],
            bytes_per_token_long=sum(s.bytes_per_token(dtype) for s in model.layer_specs
                                     if s.grows and s.tokens_held(_LONG + 1) > s.tokens_held(_LONG)),
            state_bytes_per_sequence=sum(s.fixed_bytes(dtype) for s in model.layer_specs),
            engine_kv_dtypes=engines,
        ))
    return rows


def describe_model(model: ModelConfig) -> list[str]:
    dtype = resolve_dtype("auto", model.dtype)
    lines = [f"{model.name}"]
    if model.aliases:
        lines.append(f"  aliases: {', '.join(model.aliases)}")
    if model.source.hf_repo:
        lines.append(f"  source: {model.source.hf_repo} ({model.source.config or 'config.json'})")
    lines += [
        f"  dtype: {model.dtype}   max_position_embeddings: {model.max_position_embeddings:,}",
        f"  hidden_size: {model.hidden_size:,}   attention heads: {model.num_attention_heads}"
        + (f"   parameters: {model.num_parameters:,}" if model.num_parameters else ""),
        f"  layers: {model.num_layers} ({layer_summary(model)})",
    ]
    seen: dict[Any, int] = {}
    for spec in model.layer_specs:
        seen[spec] = seen.get(spec, 0) + 1
    for spec, n in seen.items():
        per_token = spec.bytes_per_token(dtype)
        fixed = spec.fixed_bytes(dtype)
        cost = f"{per_token:,} B/token" if spec.grows else (f"{fixed:,} B/sequence" if fixed else "no cache")
        lines.append(f"    {n:>4} x {spec.describe()}: {cost} each in {dtype.name}")
    for note in model.source.notes:
        lines.append(f"  note: {note}")
    for assumption in model.source.assumptions:
        lines.append(f"  assumed: {assumption}")
    return lines


def to_yaml(model: ModelConfig) -> str:
    """The model as kvcalc YAML (layer specs one per line, in flow style)."""
    import yaml

    data = model.to_dict()
    structural = {k: data.pop(k) for k in ("layers", "layout", "legend") if k in data}
    text = yaml.safe_dump(data, sort_keys=False, width=100, allow_unicode=True)

    def flow(obj: Any) -> str:
        text = str(yaml.safe_dump(obj, default_flow_style=True, width=400, sort_keys=False))
        # A plain top-level scalar ("F", a layout string) is dumped with a "..." document-end marker.
        return text.removesuffix("\n...\n").strip()

    if "layers" in structural:
        text += "layers:\n"
        for g in structural["layers"]:
            text += f"  - repeat: {g['repeat']}\n    pattern:\n"
            text += "".join(f"      - {flow(s)}\n" for s in g["pattern"])
    if "layout" in structural:
        text += f"layout: {flow(structural['layout'])}\nlegend:\n"
        text += "".join(f"  {flow(k)}: {flow(v)}\n" for k, v in structural["legend"].items())
    return text


def import_to_yaml(path: str, name: str | None = None, assume_standard: bool = False) -> tuple[ModelConfig, str]:
    from kvcalc.registry import load_model

    model = load_model(path, assume_standard)
    if name:
        model = model.replace(name=name)
    return model, to_yaml(model)


__all__ = ["ModelRow", "describe_model", "get_builtin", "import_to_yaml", "model_rows", "to_yaml"]
