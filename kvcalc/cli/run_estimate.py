"""`kvcalc estimate`: shared by the typer command and the fast start-up path."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass

from kvcalc.errors import InvalidRequestError
from kvcalc.estimate import Estimate, apply_overrides, apply_window, estimate
from kvcalc.models import ModelConfig
from kvcalc.registry import load_model
from kvcalc.units import Units


@dataclass(frozen=True, kw_only=True)
class EstimateArgs:
    model: str | None
    config: str | None
    seq_len: int
    batch: int = 1
    kv_dtype: str = "auto"
    engine: str = "neutral"
    json: bool = False
    explain: bool = False
    units: Units = "iec"
    layers: int | None = None
    kv_heads: int | None = None
    head_dim: int | None = None
    tp: int = 1
    pp: int = 1
    block_size: int | None = None
    window: int | None = None
    sink_tokens: int = 0
    kv_group_size: int | None = None
    residual_length: int | None = None
    assume_standard: bool = False
    image_tokens: int | None = None


def resolve_model(model: str | None, config: str | None, assume_standard: bool = False) -> ModelConfig:
    """MODEL (a built-in name or alias) or --config PATH (kvcalc YAML, HF config, folder, hub id)."""
    if model and config:
        raise InvalidRequestError("--config", config, "either MODEL or --config, not both")
    ref = config or model
    if not ref:
        raise InvalidRequestError("MODEL", "", "a built-in model name (see `kvcalc models`) or --config PATH")
    if config is not None:  # --config org/name not in the local HF cache: fetched (kvcalc.hub)
        from kvcalc.hub import load_model_or_hub

        return load_model_or_hub(config, assume_standard)
    return load_model(ref, assume_standard)


def compute(args: EstimateArgs) -> tuple[ModelConfig, Estimate]:
    model = resolve_model(args.model, args.config, args.assume_standard)
    if args.image_tokens is not None:
        from kvcalc.hf import with_image_tokens

        model = with_image_tokens(model, args.image_tokens)
    model = apply_overrides(model, layers=args.layers, kv_heads=args.kv_heads, head_dim=args.head_dim)
    model, what_if = apply_window(model, args.window, args.sink_tokens)
    est = estimate(
        model, args.seq_len, args.batch, args.kv_dtype, engine=args.engine, tp=args.tp, pp=args.pp,
        block_size=args.block_size, kv_group_size=args.kv_group_size, residual_length=args.residual_length,
    )
    if what_if is not None:
        est = dataclasses.replace(est, what_if=[*est.what_if, what_if])
    return model, est


def run(args: EstimateArgs) -> int:
    from kvcalc.cli.output import print_json, warn

    model, est = compute(args)
    for assumption in model.source.assumptions:
        warn(assumption)
    for message in est.warnings:
        warn(message)
    if args.json:
        print_json(est.to_dict())
        return 0
    from kvcalc.cli.boxtable import styled_stdout, terminal_width
    from kvcalc.cli.render import estimate_lines

    lines = estimate_lines(est, args.units, args.explain, max_width=terminal_width(), style=styled_stdout())
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
