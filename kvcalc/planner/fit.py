"""``fit``: the capacity questions asked directly, and several models side by side.

Every figure is a field of a ``Plan`` (``kvcalc.planner.plan.plan``) for the same deployment, so
``fit`` and ``plan`` cannot disagree:

* the longest context for B users at once: ``plan(batch=B).longest_context_at_batch`` with
  ``max_model_len`` = the model's maximum (so the answer is capped there, and says so);
* the most users at a context L: the requests resident at once (``max_sequences``) times the
  replicas; for vLLM also capped by ``max_num_seqs`` (vLLM runs at most that many per replica);
  a context beyond the model's maximum has no answer (None);
* for each KV dtype the engine offers (``ENGINE_KV_DTYPES``) or those given.

``compare`` answers one row per model at one context: bytes per token, KV of one request,
weights (and their source), the most users, the longest context for one user.
"""

from __future__ import annotations

import dataclasses
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from kvcalc.errors import InvalidRequestError
from kvcalc.planner.plan import Plan, PlanRequest, plan

DEFAULT_BATCHES = (1, 8, 32)
DEFAULT_CONTEXTS = (4096, 8192, 32768, 131072)
ENGINE_KV_DTYPES: dict[str, tuple[str, ...]] = {
    "vllm": ("auto", "fp8"),
    "sglang": ("auto", "fp8_e4m3"),
    "trtllm": ("auto", "fp8"),
    "llama.cpp": ("f16", "q8_0", "q4_0"),
    "hf": ("auto",),
}
"""KV dtypes each engine offers by default: vLLM ``--kv-cache-dtype auto|fp8`` (fp8 = e4m3),
SGLang ``--kv-cache-dtype auto|fp8_e4m3``, TensorRT-LLM fp8 KV, llama.cpp ``-ctk/-ctv f16|q8_0|q4_0``
(the common ones; any GGUF cache type can be given), transformers the model dtype."""


def _engine(name: str) -> str:
    """The engine's canonical name (any registered spelling: tensorrt-llm, llama_cpp, ...)."""
    from kvcalc.planner.plan import plan_engine

    return plan_engine(name).name


@dataclass(frozen=True, kw_only=True)
class FitRow:
    kv_dtype: str
    """As the engine resolves it (``auto`` -> bf16 ...)."""
    longest_context: dict[int, int]
    """Users at once -> the longest context each can have (tokens; 0: not even one token)."""
    context_limited_by_model: dict[int, bool]
    """Users -> True when the answer is the model's maximum context (memory would allow more)."""
    max_users: dict[int, int | None]
    """Context (tokens) -> the most users at once; None beyond the model's maximum context."""
    kv_budget_bytes: int
    weights_bytes: int | None


@dataclass(frozen=True, kw_only=True)
class Fit:
    model: str
    engine: str
    gpu: str | None
    gpu_count: int
    tp: int
    replicas: int
    max_context: int
    """The model's maximum context (max_position_embeddings / GGUF context_length)."""
    weights_bytes: int | None
    weights_source: str
    batches: list[int]
    contexts: list[int]
    rows: list[FitRow]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for row in data["rows"]:  # JSON object keys are strings; keep them as the numbers printed
            for key in ("longest_context", "context_limited_by_model", "max_users"):
                row[key] = {str(k): v for k, v in row[key].items()}
        return data


def _users(p: Plan) -> int:
    """Requests at once on all replicas: what the pool holds, capped by the engine's running limit."""
    per_replica = p.max_sequences
    if p.max_running_requests is not None:
        per_replica = min(per_replica, p.max_running_requests)
    return per_replica * p.replicas


def _one_reading(bases: list[PlanRequest]) -> AbstractContextManager[object]:
    """``--gpu auto``: one reading of the local GPUs for every plan of the command."""
    from kvcalc.planner.gpus import is_auto

    if any(is_auto(b.gpu) for b in bases):
        from kvcalc.planner.localgpu import one_reading

        return one_reading()
    return nullcontext()


def fit(base: PlanRequest, *, kv_dtypes: tuple[str, ...] | None = None, batches: tuple[int, ...] = DEFAULT_BATCHES,
        contexts: tuple[int, ...] = DEFAULT_CONTEXTS) -> Fit:
    """The longest context for each of ``batches`` users and the most users at each of
    ``contexts``, for each KV dtype (the engine's, by default)."""
    with _one_reading([base]):
        return _fit(base, kv_dtypes=kv_dtypes, batches=batches, contexts=contexts)


def _fit(base: PlanRequest, *, kv_dtypes: tuple[str, ...] | None, batches: tuple[int, ...],
         contexts: tuple[int, ...]) -> Fit:
    engine = _engine(base.engine)
    dtypes = kv_dtypes or ENGINE_KV_DTYPES.get(engine, ("auto",))
    for b in batches:
        _check_positive("--users", b)
    for c in contexts:
        _check_positive("--contexts", c)
    model_max = base.model.max_position_embeddings
    rows: list[FitRow] = []
    first: Plan | None = None
    for dtype in dtypes:
        longest: dict[int, int] = {}
        limited: dict[int, bool] = {}
        users: dict[int, int | None] = {}
        budget = 0
        resolved = dtype
        for b in batches:
            p = plan(dataclasses.replace(base, kv_dtype=dtype, max_model_len=model_max, batch=b, users=None,
                                         solve_tp=False))
            first = first or p
            budget, resolved = p.kv_budget_bytes, p.kv_dtype
            longest[b] = p.longest_context_at_batch
            limited[b] = p.longest_context_at_batch == model_max
        for c in contexts:
            if c > model_max:
                users[c] = None
                continue
            p = plan(dataclasses.replace(base, kv_dtype=dtype, max_model_len=c, batch=None, users=None,
                                         solve_tp=False))
            users[c] = _users(p) if p.fits else 0
        assert first is not None
        rows.append(FitRow(kv_dtype=resolved, longest_context=longest,
                           context_limited_by_model=limited, max_users=users, kv_budget_bytes=budget,
                           weights_bytes=first.weights_bytes))
    assert first is not None
    notes = [f"weights from {first.weights_source}"]
    if first.max_running_requests is not None:
        notes.append(f"users are capped by {engine}'s running-request limit ({first.max_running_requests:,} per "
                     "replica, e.g. vLLM --max-num-seqs)")
    if any(c > model_max for c in contexts):
        notes.append(f"contexts beyond {base.model.name}'s maximum ({model_max:,}) have no answer (-)")
    return Fit(model=base.model.name, engine=engine, gpu=first.gpu, gpu_count=first.gpu_count, tp=first.tp,
               replicas=first.replicas, max_context=model_max, weights_bytes=first.weights_bytes,
               weights_source=first.weights_source, batches=list(batches), contexts=list(contexts), rows=rows,
               notes=notes)


def _check_positive(flag: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10**9:
        raise InvalidRequestError(flag, value, "whole numbers from 1 to 10^9")


@dataclass(frozen=True, kw_only=True)
class CompareRow:
    model: str
    kv_dtype: str
    bytes_per_token: int
    """KV bytes one token takes, all layers, all GPUs (the engine-neutral definition)."""
    kv_per_request_bytes: int
    """KV of one request of ``context`` tokens on the engine, all GPUs (MLA is replicated per GPU)."""
    kv_per_request_per_gpu_bytes: int
    """The same on the largest rank."""
    weights_bytes: int | None
    weights_dtype: str
    weights_source: str
    kv_budget_bytes: int
    """Per GPU."""
    fits: bool
    max_users: int
    """Requests of ``context`` tokens at once, all replicas (vLLM: capped by max_num_seqs)."""
    longest_context: int
    """For one user (capped at the model's maximum)."""
    max_context: int


@dataclass(frozen=True, kw_only=True)
class Comparison:
    engine: str
    gpu: str | None
    gpu_count: int
    context: int
    rows: list[CompareRow]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def compare(bases: list[PlanRequest], context: int) -> Comparison:
    """One row per model, the same deployment and context for all."""
    with _one_reading(bases):
        return _compare(bases, context)


def _compare(bases: list[PlanRequest], context: int) -> Comparison:
    from kvcalc.estimate import estimate

    _check_positive("--context", context)
    if not bases:
        raise InvalidRequestError("MODEL", "", "one or more models")
    rows: list[CompareRow] = []
    first: Plan | None = None
    for base in bases:
        p = plan(dataclasses.replace(base, max_model_len=context, users=None, batch=None, solve_tp=False))
        one = plan(dataclasses.replace(base, max_model_len=base.model.max_position_embeddings, users=None,
                                       batch=1, solve_tp=False))
        first = first or p
        # KV of one request as the engine stores it (its storage policy), and per token by definition.
        per_request = estimate(base.model, context, 1, p.kv_dtype, engine=p.engine, tp=p.tp, pp=p.pp,
                               block_size=p.block_size, max_num_batched_tokens=p.max_num_batched_tokens)
        per_token = estimate(base.model, 1, 1, p.kv_dtype)
        rows.append(CompareRow(
            model=base.model.name, kv_dtype=p.kv_dtype, bytes_per_token=per_token.bytes_per_token,
            kv_per_request_bytes=per_request.total_bytes, kv_per_request_per_gpu_bytes=per_request.per_gpu_bytes,
            weights_bytes=p.weights_bytes, weights_dtype=p.weight_dtype,
            weights_source=p.weights_source, kv_budget_bytes=p.kv_budget_bytes, fits=p.fits,
            max_users=_users(p) if p.fits else 0, longest_context=one.longest_context_at_batch,
            max_context=base.model.max_position_embeddings,
        ))
    assert first is not None
    return Comparison(engine=first.engine, gpu=first.gpu, gpu_count=first.gpu_count, context=context, rows=rows)
