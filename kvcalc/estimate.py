"""The formula engine: pure functions from (model, workload, KV dtype, engine) to an exact
integer estimate. No I/O, no torch, no printing.

For every layer: ``bytes = tokens_held x bytes_per_token x batch + fixed_state x batch
+ fixed_layer``; the model total is the sum over layers. Layers with equal specs are grouped
for the breakdown. All arithmetic is on ``int``; there is no true division anywhere here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from kvcalc.dtypes import KVDtype, resolve_dtype
from kvcalc.engines import DEFAULT_ENGINE, get_engine
from kvcalc.engines.base import Engine, StoragePolicy, Workload
from kvcalc.errors import InvalidRequestError
from kvcalc.layout import RankLayout, pp_partition
from kvcalc.models import ModelConfig
from kvcalc.specs import FixedState, FullAttention, SlidingWindowAttention, Spec, StatefulAttention

__all__ = ["Estimate", "GroupEstimate", "StoragePolicy", "apply_overrides", "apply_window", "bytes_per_token",
           "check_int", "estimate", "pp_partition", "preallocation_waste"]

MAX_TOKENS = 10**12
"""Physically absurd beyond this (a trillion tokens of context); rejected with this limit."""
MAX_BATCH = 10**9
MAX_LAYERS = 10**6
MAX_DIM = 10**7
MAX_GROUP_SIZE = 1 << 20
"""Quantized caches: values per scale group (transformers uses 32 to 128)."""


def check_model(value: object, field_name: str = "model") -> ModelConfig:
    """The API's model argument: a ``ModelConfig``, never a name, None or a dict (they would
    fail later as an AttributeError deep inside)."""
    if not isinstance(value, ModelConfig):
        raise InvalidRequestError(
            field_name, value, "a ModelConfig, e.g. kvcalc.load_model('llama-2-7b') (a name is not loaded implicitly)"
        )
    return value


def check_int(field_name: str, value: object, *, minimum: int = 1, maximum: int) -> int:
    """Validate an integer request value: a real int (not bool/float/str) within bounds."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(field_name, value, f"an integer from {minimum} to {maximum:,}")
    if not minimum <= value <= maximum:
        raise InvalidRequestError(field_name, value, f"an integer from {minimum} to {maximum:,}")
    return value


@dataclass(frozen=True, kw_only=True)
class GroupEstimate:
    """The layers that share one spec, and what they hold."""

    kind: str
    description: str
    layers: int
    tokens_held: int
    """Tokens each of these layers holds per sequence."""
    bytes_per_token: int
    """Bytes one token costs in one of these layers."""
    fixed_bytes_per_sequence: int
    """Per-layer, per-sequence state bytes (recurrent layers)."""
    fixed_layer_bytes: int
    total_bytes: int
    formula: str


@dataclass(frozen=True, kw_only=True)
class Estimate:
    """The result of ``estimate``: exact integers, a breakdown per layer group, the formula."""

    model: str
    seq_len: int
    batch: int
    kv_dtype: str
    kv_dtype_source: str
    engine: str
    total_bytes: int
    """The whole deployment (every rank)."""
    per_gpu_bytes: int
    """The largest rank's share (equals ``total_bytes`` on one GPU)."""
    bytes_per_token: int
    """One more cached token across every growing layer, before any window cap."""
    num_layers: int
    layers: list[GroupEstimate]
    tp: int = 1
    pp: int = 1
    formula: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    engine_source: str = ""
    engine_version: str = ""
    scale_bytes: int = 0
    """Of ``total_bytes``, the bytes that are quantization scales / zero points (whole deployment)."""
    bookkeeping_bytes: int = 0
    """Engine bookkeeping outside the K/V payload, not in ``total_bytes`` (transformers' int64
    position scalars), whole deployment."""
    k_bytes: int | None = None
    """K part of ``total_bytes``, for engines that report K and V apart (llama.cpp)."""
    v_bytes: int | None = None
    what_if: list[str] = field(default_factory=list)
    """Hypothetical changes applied to the model (``--window``, ``--layers`` ...)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; integers stay integers (the ``--json`` contract)."""
        return dataclasses.asdict(self)

    model_dump = to_dict


def apply_overrides(
    model: ModelConfig,
    *,
    layers: int | None = None,
    kv_heads: int | None = None,
    head_dim: int | None = None,
) -> ModelConfig:
    """What-if overrides: replace the model's layer count, KV heads or head size.

    ``layers`` repeats or truncates the model's layer pattern to N layers; ``kv_heads`` and
    ``head_dim`` apply to every attention layer (not MLA or state layers).
    """
    check_model(model)
    if layers is None and kv_heads is None and head_dim is None:
        return model
    specs: list[Spec] = list(model.layer_specs)
    if kv_heads is not None or head_dim is not None:
        if kv_heads is not None:
            check_int("kv_heads", kv_heads, maximum=MAX_DIM)
        if head_dim is not None:
            check_int("head_dim", head_dim, maximum=MAX_DIM)
        if not any(isinstance(s, FullAttention) for s in specs):
            raise InvalidRequestError(
                "kv_heads" if kv_heads is not None else "head_dim",
                kv_heads if kv_heads is not None else head_dim,
                f"a model with attention layers ({model.name} has only MLA/state layers)",
            )
        new: list[Spec] = []
        for s in specs:
            if isinstance(s, FullAttention):
                changes: dict[str, Any] = {}
                if kv_heads is not None:
                    changes["num_kv_heads"] = kv_heads
                    changes["hf_cache_heads"] = None
                if head_dim is not None:
                    changes["head_dim"] = head_dim
                    changes["v_head_dim"] = None
                s = dataclasses.replace(s, **changes)
            new.append(s)
        specs = new
    if layers is not None:
        check_int("layers", layers, maximum=MAX_LAYERS)
        specs = [specs[i % len(specs)] for i in range(layers)]
    try:
        return model.with_layer_specs(specs)
    except ValueError as exc:
        field_name = "kv_heads" if kv_heads is not None else "head_dim"
        value = kv_heads if kv_heads is not None else head_dim
        raise InvalidRequestError(field_name, value, str(exc)) from None


def apply_window(model: ModelConfig, window: int | None, sink_tokens: int = 0) -> tuple[ModelConfig, str | None]:
    """What-if: every full-attention layer keeps only the last ``window`` tokens plus
    ``sink_tokens`` initial ones (StreamingLLM, Xiao et al. 2023, "attention sinks"), i.e. it
    becomes a sliding layer of ``window + sink_tokens`` positions. Layers that already slide or
    chunk, MLA and state layers are left alone. Returns the model and a sentence saying so."""
    if window is None:
        if sink_tokens:
            raise InvalidRequestError("--sink-tokens", sink_tokens, "used together with --window")
        return model, None
    check_int("window", window, maximum=MAX_TOKENS)
    check_int("sink_tokens", sink_tokens, minimum=0, maximum=MAX_TOKENS)
    specs = model.layer_specs
    changed = 0
    new: list[Spec] = []
    for s in specs:
        if type(s) is FullAttention:
            s = SlidingWindowAttention(
                num_kv_heads=s.num_kv_heads, head_dim=s.head_dim, v_head_dim=s.v_head_dim,
                hf_cache_heads=s.hf_cache_heads, window=window + sink_tokens,
            )
            changed += 1
        new.append(s)
    if not changed:
        raise InvalidRequestError(
            "--window", window, f"a model with full-attention layers ({model.name} has none)"
        )
    sink = f" + {sink_tokens} sink tokens" if sink_tokens else ""
    text = (
        f"what-if: {changed} full-attention layer(s) keep only the last {window:,} tokens{sink} "
        f"(a sliding window of {window + sink_tokens:,}); the real model attends to every token"
    )
    return model.with_layer_specs(new), text


def _check_request(
    seq_len: int, batch: int, tp: int, pp: int, block_size: int | None, max_num_batched_tokens: int
) -> None:
    check_int("seq_len", seq_len, maximum=MAX_TOKENS)
    check_int("batch", batch, maximum=MAX_BATCH)
    check_int("tp", tp, maximum=4096)
    check_int("pp", pp, maximum=4096)
    if block_size is not None:
        check_int("block_size", block_size, maximum=1 << 20)
    check_int("max_num_batched_tokens", max_num_batched_tokens, maximum=MAX_TOKENS)


def _resolve_policy(engine: object) -> Engine:
    if isinstance(engine, Engine | str):
        return get_engine(engine)
    raise InvalidRequestError("engine", engine, "an engine name such as neutral, hf, vllm, llama.cpp")


def estimate(
    model: ModelConfig,
    seq_len: int,
    batch: int = 1,
    kv_dtype: str = "auto",
    *,
    engine: str | Engine = DEFAULT_ENGINE,
    tp: int = 1,
    pp: int = 1,
    block_size: int | None = None,
    max_num_batched_tokens: int = 8192,
    kv_group_size: int | None = None,
    residual_length: int | None = None,
    layout: RankLayout | None = None,
) -> Estimate:
    """Bytes of KV cache ``model`` holds for ``batch`` sequences of ``seq_len`` tokens.

    >>> from kvcalc import load_model
    >>> estimate(load_model("llama-2-7b"), 4096).total_bytes
    2147483648
    """
    check_model(model)
    _check_request(seq_len, batch, tp, pp, block_size, max_num_batched_tokens)
    if kv_group_size is not None:
        check_int("kv_group_size", kv_group_size, maximum=MAX_GROUP_SIZE)
    if residual_length is not None:
        check_int("residual_length", residual_length, maximum=MAX_TOKENS)
    policy = _resolve_policy(engine)
    dtype, dtype_source = policy.resolve_kv_dtype(kv_dtype, model, group_size=kv_group_size,
                                                  residual_length=residual_length)
    if (kv_group_size is not None or residual_length is not None) and not dtype.residual_dtype:
        raise InvalidRequestError(
            "--kv-group-size" if kv_group_size is not None else "--residual-length",
            kv_group_size if kv_group_size is not None else residual_length,
            "used with a quantized-cache --kv-dtype (quanto-int4, hqq-int4, ...)",
        )
    values_dtype = dtype.values_only()
    residual_dtype = resolve_dtype(dtype.residual_dtype, model.dtype) if dtype.residual_dtype else None
    # One rank layout (stages, sharded specs), computed per distinct layer group, not per layer.
    if layout is None or (layout.model, layout.tp, layout.pp) != (model, tp, pp):
        layout = RankLayout(model, tp, pp)
    # Mamba / linear-attention states: kvcalc's definition sizes them in the KV dtype; an engine
    # keeps them in its own dtype (Engine.state_dtype).
    state_d = policy.state_dtype(dtype, model)
    work = policy.prepare(layout, dtype, state_d, Workload(
        seq_len=seq_len, batch=batch, block_size=block_size, max_num_batched_tokens=max_num_batched_tokens))
    groups = layout.counts

    def layer_bytes(rank_spec: Spec, d: KVDtype = dtype) -> int:
        return policy.layer_bytes(rank_spec, d, work, state_d, residual_dtype)

    bytes_of = {rank_spec: layer_bytes(rank_spec) for rank_spec in groups}
    rank_total = sum(bytes_of[r] * n for r, n in groups.items())
    breakdown = [_group_estimate(r, n, policy, work, dtype, bytes_of[r], tp, state_d) for r, n in groups.items()]
    # TP ranks each hold every layer's (sharded or replicated) cache; PP stages hold a share
    # of the layers. The largest rank is the stage with the most bytes.
    per_gpu = max(sum(bytes_of[r] * n for r, n in st.counts) for st in layout.stages)
    total = rank_total * tp
    scale_bytes = 0
    if dtype.has_scales:
        scale_bytes = total - sum(layer_bytes(r, values_dtype) * n for r, n in groups.items()) * tp
    bookkeeping = sum(policy.bookkeeping_bytes(r) * n for r, n in groups.items()) * tp
    k_bytes: int | None = None
    v_bytes: int | None = None
    if policy.splits_kv:
        k_bytes = v_bytes = 0
        for r, n in groups.items():
            k, v = policy.kv_bytes_per_token(r, dtype)
            held = policy.tokens_held(r, work) * batch
            k_bytes += k * held * n * tp
            v_bytes += v * held * n * tp
    bytes_per_token = sum(
        policy.bytes_per_token(r, dtype) * n for r, n in groups.items() if r.grows
    ) * tp

    warnings: list[str] = []
    if work.seq_len != seq_len:
        # The engine's own cut (Engine.prepare: Ollama cuts num_ctx to the trained context).
        warnings.append(f"seq_len {seq_len:,}: {policy.name} caches {work.seq_len:,} tokens a sequence "
                        f"({model.name}'s trained context is {model.max_position_embeddings:,}); the table holds that")
    elif seq_len > model.max_position_embeddings:
        warnings.append(
            f"seq_len {seq_len:,} exceeds {model.name}'s max_position_embeddings "
            f"({model.max_position_embeddings:,}); the estimate assumes the cache still grows"
        )
    lines = [g.formula for g in breakdown]
    lines.append(f"total = {' + '.join(f'{g.total_bytes:,}' for g in breakdown)} = {total:,} B")
    return Estimate(
        model=model.name,
        seq_len=seq_len,
        batch=batch,
        kv_dtype=dtype.name,
        kv_dtype_source=dtype_source,
        engine=policy.name,
        engine_source=policy.source,
        engine_version=policy.version,
        scale_bytes=scale_bytes,
        bookkeeping_bytes=bookkeeping,
        k_bytes=k_bytes,
        v_bytes=v_bytes,
        total_bytes=total,
        per_gpu_bytes=per_gpu,
        bytes_per_token=bytes_per_token,
        num_layers=layout.num_layers,
        layers=breakdown,
        tp=tp,
        pp=pp,
        formula=lines,
        warnings=warnings,
    )


def _group_estimate(
    rank_spec: Spec, n: int, policy: StoragePolicy, work: Workload, dtype: KVDtype, per_layer: int, tp: int,
    state_d: KVDtype,
) -> GroupEstimate:
    return GroupEstimate(
        kind=rank_spec.kind,
        description=rank_spec.describe(),
        layers=n,
        tokens_held=policy.tokens_held(rank_spec, work),
        bytes_per_token=policy.bytes_per_token(rank_spec, dtype),
        fixed_bytes_per_sequence=policy.fixed_bytes(rank_spec, policy.fixed_dtype(rank_spec, dtype, state_d), work),
        fixed_layer_bytes=policy.fixed_layer_bytes(rank_spec, dtype),
        total_bytes=per_layer * n * tp,
        formula=_group_formula(rank_spec, n, policy, work, policy.fixed_dtype(rank_spec, dtype, state_d),
                               per_layer, tp, kv_dtype=dtype),
    )


def _group_formula(
    spec: Spec, n: int, policy: StoragePolicy, work: Workload, dtype: KVDtype, per_layer: int, tp: int,
    kv_dtype: KVDtype | None = None,
) -> str:
    tokens = policy.describe_tokens(spec, work)
    tp_text = f" x {tp} ranks" if tp > 1 else ""
    if isinstance(spec, StatefulAttention):
        # K/V per token in the cache dtype, plus the state per sequence in the state's dtype.
        text = (f"{spec.kind}: {n} layers x ([{spec.attention.formula_terms(kv_dtype or dtype)}] x {tokens} + "
                f"[{policy.describe_state(spec.state, dtype)}]) x {work.batch} batch{tp_text}")
    elif spec.grows:
        text = (
            f"{spec.kind}: {n} layers x [{spec.formula_terms(dtype)}] "
            f"x {tokens} x {work.batch} batch{tp_text}"
        )
    elif isinstance(spec, FixedState):
        text = f"{spec.kind}: {n} layers x [{policy.describe_state(spec, dtype)}] x {work.batch} batch{tp_text}"
    else:
        text = f"{spec.kind}: {n} layers x 0 B"
    return f"{text} = {per_layer * n * tp:,} B"


def bytes_per_token(model: ModelConfig, kv_dtype: str = "auto") -> int:
    """Bytes one more cached token costs across all growing layers (engine-neutral, TP 1)."""
    check_model(model)
    dtype = resolve_dtype(kv_dtype, model.dtype)
    return sum(s.bytes_per_token(dtype) * n for s, n in model.spec_counts() if s.grows)


def preallocation_waste(reserved_tokens: int, used_tokens: int) -> tuple[int, int]:
    """Wasted fraction of a contiguous preallocation, exact: ``(reserved - used, reserved)``.

    Seed 002: 4096 reserved, 100 used -> 3996/4096 (97.56 %; the seed rounds to 97.5 %).
    """
    check_int("reserved_tokens", reserved_tokens, maximum=MAX_TOKENS)
    check_int("used_tokens", used_tokens, minimum=0, maximum=reserved_tokens)
    return reserved_tokens - used_tokens, reserved_tokens
