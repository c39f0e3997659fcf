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
    bytes_per_1k_tokens: int
    """Engine-neutral KV bytes for one sequence of 1,024 tokens (windows applied)."""
    max_position_embeddings: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def layer_summary(model: ModelConfig) -> str:
    counts = Counter(s.kind for s in model.layer_specs)
    return ", ".join(f"{n} {kind}" for kind, n in counts.items())


def model_rows(kv_dtype: str = "auto") -> list[ModelRow]:
    from kvcalc.estimate import estimate

    rows = []
    for name in builtin_names():
        model = get_builtin(name)
        est = estimate(model, 1024, 1, kv_dtype)
        rows.append(ModelRow(
            name=name, num_layers=model.num_layers, layer_summary=layer_summary(model),
            kv_dtype=est.kv_dtype, bytes_per_token=est.bytes_per_token,
            bytes_per_1k_tokens=est.total_bytes, max_position_embeddings=model.max_position_embeddings,
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
