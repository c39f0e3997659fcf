"""``verify``: allocate the cache kvcalc predicts on a real device and measure what it costs.

Three figures per layer kind and for the whole model:

* ``predicted_bytes``: kvcalc's estimate (``kvcalc.estimate.estimate``, one rank);
* ``tensor_bytes``: the bytes of the tensors the engine lays out (``kvcalc.measure.layout``),
  read back from torch as ``numel() x element_size()`` for what was allocated. It must equal
  the prediction exactly; a difference is a bug and fails the run;
* ``measured_bytes``: what the device's own accounting grew by (CPU resident set, CUDA
  ``memory_allocated``/``memory_reserved``, MPS ``current_allocated_memory``), compared with what
  kvcalc expects the device to spend (page rounding on CPU, the caching allocator's rounding on
  CUDA) under a stated tolerance.

With ``layers_sample`` (or automatically when the whole cache does not fit the device's
budget) only K layers of each kind are allocated; their figures are scaled to the kind's layer
count (``x layers // sampled``, floor) and the result says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kvcalc.engines import get_policy
from kvcalc.engines.base import StoragePolicy, Workload
from kvcalc.errors import DoesNotFitError, InvalidRequestError
from kvcalc.estimate import MAX_LAYERS, check_int, estimate
from kvcalc.measure.layout import TensorLayout, layer_bytes, layer_tensors
from kvcalc.models import ModelConfig
from kvcalc.specs import Spec
from kvcalc.units import format_bytes

MAX_TENSORS = 4096
"""At most this many tensors are allocated at once (each is its own mapping on CPU, and Linux caps a
process at ~65,530 mappings); beyond it, layers are sampled as when memory is short."""

ProgressFn = Callable[[int, int], None]
"""``progress(bytes_done, bytes_total)`` while allocating and writing."""


@dataclass(frozen=True, kw_only=True)
class KindVerify:
    """One layer kind (one distinct layer spec): prediction, tensors and measurement."""

    kind: str
    description: str
    layers: int
    sampled_layers: int
    """Layers of this kind really allocated (``layers`` unless sampled)."""
    tensors: list[dict[str, Any]]
    """One layer's tensors: name, shape, torch dtype, bytes."""
    predicted_bytes: int
    """kvcalc's estimate for every layer of this kind."""
    tensor_bytes: int
    """The laid-out tensors' bytes for every layer of this kind."""
    allocated_tensor_bytes: int
    """``numel() x element_size()`` of the tensors really allocated (the sampled layers)."""
    expected_bytes: dict[str, int]
    """What each device counter should grow by, for every layer (extrapolated when sampled)."""
    measured: dict[str, int]
    """What each device counter grew by, for every layer (extrapolated when sampled)."""
    measured_sampled: dict[str, int]
    """What each device counter grew by for the allocated layers (not extrapolated)."""
    measured_bytes: int
    """The primary counter (``counter``), extrapolated."""
    ratio: float
    """``measured_bytes / predicted_bytes``."""
    tolerance_bytes: int
    ok: bool
    verdict: str


@dataclass(frozen=True, kw_only=True)
class VerifyResult:
    """The result of ``verify``; ``to_dict()`` is the ``--json`` contract."""

    model: str
    engine: str
    kv_dtype: str
    seq_len: int
    batch: int
    tp: int
    device: str
    source: str
    counter: str
    """The device counter ``measured_bytes`` reads (resident, allocated)."""
    predicted_bytes: int
    tensor_bytes: int
    measured_bytes: int
    expected_bytes: int
    """What kvcalc expects the device counter to grow by (allocator or page rounding)."""
    ratio: float
    tolerance_bytes: int
    tolerance_rule: str
    sampled: bool
    sampled_layers: int
    """Layers really allocated (all cache layers unless sampled)."""
    num_layers: int
    exact: bool
    """``tensor_bytes == predicted_bytes`` (required)."""
    ok: bool
    kinds: list[KindVerify]
    measured_counters: dict[str, int]
    expected_counters: dict[str, int]
    budget_bytes: int
    budget_rule: str
    allocated_bytes_peak: int
    """Bytes held at once during the run (tensor bytes of the sampled layers)."""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class _Group:
    spec: Spec
    layers: int
    tensors: list[TensorLayout]
    predicted_per_layer: int

    @property
    def tensor_per_layer(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def sizes(self, layers: int) -> list[int]:
        return [t.nbytes for _ in range(layers) for t in self.tensors if t.nbytes]


def plan_groups(model: ModelConfig, policy: StoragePolicy, kv_dtype: str, work: Workload, tp: int) -> list[_Group]:
    """Layers grouped by their (rank) spec, each with its tensors: the engine's rank layout,
    dtype and prepared workload, exactly as ``estimate`` uses them."""
    from kvcalc.layout import RankLayout

    dtype, _ = policy.resolve_kv_dtype(kv_dtype, model)  # the engine's meaning of auto (vLLM: fp32 -> bf16)
    state_dtype = policy.state_dtype(dtype, model)
    layout = RankLayout(model, tp, 1)
    work = policy.prepare(layout, dtype, state_dtype, work)
    return [
        _Group(spec=spec, layers=n, tensors=layer_tensors(spec, policy, dtype, work, state_dtype),
               predicted_per_layer=layer_bytes(spec, policy, dtype, work, state_dtype))
        for spec, n in layout.counts.items()
    ]


def verify(
    model: ModelConfig,
    seq_len: int,
    batch: int = 1,
    kv_dtype: str = "auto",
    *,
    engine: str = "neutral",
    device: str = "cpu",
    tp: int = 1,
    block_size: int | None = None,
    layers_sample: int | None = None,
    max_memory_bytes: int | None = None,
    progress: ProgressFn | None = None,
) -> VerifyResult:
    """Allocate the KV cache of ``model`` on ``device``, write it, measure it, free it.

    Raises ``DoesNotFitError`` (nothing allocated) when one layer of each kind does not fit the
    device's budget; samples layers automatically when the whole cache does not fit.
    """
    est = estimate(model, seq_len, batch, kv_dtype, engine=engine, tp=tp, block_size=block_size)
    if layers_sample is not None:
        check_int("layers_sample", layers_sample, maximum=MAX_LAYERS)
    if max_memory_bytes is not None:
        check_int("max_memory", max_memory_bytes, maximum=1 << 62)
    policy = get_policy(engine)
    work = Workload(seq_len=seq_len, batch=batch, block_size=block_size)
    groups = [g for g in plan_groups(model, policy, kv_dtype, work, tp) if g.predicted_per_layer or g.tensors]
    predicted_total = est.per_gpu_bytes
    tensor_total = sum(g.tensor_per_layer * g.layers for g in groups)
    notes: list[str] = []
    if not groups:
        raise InvalidRequestError("MODEL", model.name, "a model with at least one layer that caches something")

    from kvcalc.measure.device import open_device

    dev = open_device(device)
    budget = dev.budget_bytes()
    budget_rule = dev.budget_rule()
    if max_memory_bytes is not None and max_memory_bytes < budget:
        budget, budget_rule = max_memory_bytes, "--max-memory"

    sample = _choose_sample(groups, dev, budget, budget_rule, layers_sample, notes)
    sampled = {id(g): (g.layers if sample is None else min(sample, g.layers)) for g in groups}
    total_to_write = sum(sum(g.sizes(sampled[id(g)])) for g in groups)
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total_to_write)

    primary = dev.counters[0]
    tolerance_rule = dev.tolerance_rule()
    kinds = _measure(groups, sampled, dev, primary, step, progress, total_to_write)
    exact = tensor_total == predicted_total and all(
        k.tensor_bytes == k.predicted_bytes and k.allocated_tensor_bytes * k.layers // k.sampled_layers
        == k.tensor_bytes for k in kinds)
    if not exact:
        notes.append(
            f"BUG: the laid-out tensors hold {tensor_total:,} B but kvcalc predicts {predicted_total:,} B")
    measured_total = sum(k.measured_bytes for k in kinds)
    expected_total = sum(k.expected_bytes[primary] for k in kinds)
    tolerance = dev.tolerance_bytes(expected_total)
    ok = exact and all(k.ok for k in kinds) and abs(measured_total - expected_total) <= tolerance
    return VerifyResult(
        model=model.name, engine=policy.name, kv_dtype=est.kv_dtype, seq_len=seq_len, batch=batch, tp=tp,
        device=dev.name, source="formula", counter=primary, predicted_bytes=predicted_total,
        tensor_bytes=tensor_total, measured_bytes=measured_total, expected_bytes=expected_total,
        ratio=measured_total / predicted_total if predicted_total else 0.0,
        tolerance_bytes=tolerance, tolerance_rule=tolerance_rule, sampled=sample is not None,
        sampled_layers=sum(sampled.values()), num_layers=model.num_layers, exact=exact, ok=ok, kinds=kinds,
        measured_counters={c: sum(k.measured[c] for k in kinds) for c in dev.counters},
        expected_counters={c: sum(k.expected_bytes[c] for k in kinds) for c in dev.counters},
        budget_bytes=budget, budget_rule=budget_rule, allocated_bytes_peak=total_to_write,
        notes=notes + list(est.warnings),
    )


def _kind_result(g: _Group, k: int, allocated_tensor: int, expected_sampled: dict[str, int],
                 measured_sampled: dict[str, int], dev: Any, primary: str) -> KindVerify:
    def scale(value: int) -> int:
        return value * g.layers // k

    expected = {c: scale(v) for c, v in expected_sampled.items()}
    measured = {c: scale(v) for c, v in measured_sampled.items()}
    predicted = g.predicted_per_layer * g.layers
    tensor = g.tensor_per_layer * g.layers
    tolerance = int(dev.tolerance_bytes(expected[primary]))
    exact = tensor == predicted and allocated_tensor == g.tensor_per_layer * k
    within = all(abs(measured[c] - expected[c]) <= dev.tolerance_bytes(expected[c]) for c in expected)
    ok = exact and within
    if not exact:
        verdict = f"FAIL: tensors {tensor:,} B != predicted {predicted:,} B (a bug)"
    elif within:
        verdict = f"OK: {primary} within {tolerance:,} B of the expected {expected[primary]:,} B"
    else:
        worst = max(expected, key=lambda c: abs(measured[c] - expected[c]))
        verdict = (f"FAIL: {worst} grew by {measured[worst]:,} B, expected {expected[worst]:,} B "
                   f"(tolerance {dev.tolerance_bytes(expected[worst]):,} B)")
    return KindVerify(
        kind=g.spec.kind, description=g.spec.describe(), layers=g.layers, sampled_layers=k,
        tensors=[t.to_dict() for t in g.tensors], predicted_bytes=predicted, tensor_bytes=tensor,
        allocated_tensor_bytes=allocated_tensor, expected_bytes=expected, measured=measured,
        measured_sampled=measured_sampled, measured_bytes=measured[primary],
        ratio=measured[primary] / predicted if predicted else 0.0, tolerance_bytes=tolerance, ok=ok,
        verdict=verdict,
    )


def _choose_sample(groups: list[_Group], dev: Any, budget: int, budget_rule: str, layers_sample: int | None,
                   notes: list[str]) -> int | None:
    """Layers of each kind to allocate (None: all), or ``DoesNotFitError`` before any allocation."""

    def need(k: int | None) -> int:
        sizes = [n for g in groups for n in g.sizes(g.layers if k is None else min(k, g.layers))]
        return int(max(dev.expected(sizes).values()))

    def count(k: int | None) -> int:
        return sum(len(g.sizes(1)) * (g.layers if k is None else min(k, g.layers)) for g in groups)

    def fits(k: int | None) -> bool:
        # The tensor count first: it is arithmetic, while need(k) walks every tensor it would allocate.
        return count(k) <= MAX_TENSORS and need(k) <= budget

    def refuse(what: str, needed: int, hint: str) -> DoesNotFitError:
        return DoesNotFitError(
            f"{what} needs {format_bytes(needed)} ({needed:,} B) on {dev.name} but only {format_bytes(budget)} "
            f"({budget:,} B) may be allocated ({budget_rule}); nothing was allocated; {hint}")

    one_layer = max(max(dev.expected(g.sizes(1)).values()) for g in groups)
    if one_layer > budget:
        raise refuse("one layer", one_layer, "lower --seq-len or --batch")
    max_layers = max(g.layers for g in groups)
    sample = layers_sample if layers_sample is not None and layers_sample < max_layers else None
    if sample is not None:
        if count(sample) > MAX_TENSORS:
            raise InvalidRequestError("--layers-sample", sample,
                                      f"at most {MAX_TENSORS:,} tensors at once ({count(1):,} per sampled layer set)")
        if not fits(sample):
            raise refuse(f"--layers-sample {sample}", need(sample), "lower --layers-sample")
        notes.append(f"--layers-sample {sample}: allocated {sample} layer(s) of each kind and extrapolated")
        return sample
    if fits(None):
        return None
    # More than MAX_TENSORS tensors (a 10**6-layer model): the device needs at least the tensor bytes;
    # walking a million sizes through the allocator model would only refine a figure in a note.
    whole = need(None) if count(None) <= MAX_TENSORS else sum(g.tensor_per_layer * g.layers for g in groups)
    if not fits(1):
        raise refuse("one layer of each kind", need(1), "lower --seq-len or --batch")
    # need(k) grows with k: bisect for the largest k that fits.
    lo, hi = 1, max_layers - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    if whole > budget:
        notes.append(
            f"the whole cache needs {format_bytes(whole)} ({whole:,} B) but {format_bytes(budget)} ({budget:,} B) "
            f"may be allocated ({budget_rule}): sampled {lo} layer(s) of each kind automatically and extrapolated")
    else:
        notes.append(f"the whole cache is {count(None):,} tensors, more than {MAX_TENSORS:,} at once: sampled {lo} "
                     "layer(s) of each kind automatically and extrapolated")
    return lo


def _measure(groups: list[_Group], sampled: dict[int, int], dev: Any, primary: str, step: Callable[[int], None],
             progress: ProgressFn | None, total_to_write: int) -> list[KindVerify]:
    """Allocate and write each kind's sampled layers, reading the counters around each kind."""
    kinds: list[KindVerify] = []
    try:
        dev.prepare()
        if progress is not None:
            progress(0, total_to_write)
        expectations = dev.expected_sequence([g.sizes(sampled[id(g)]) for g in groups])
        for g, expected_sampled in zip(groups, expectations, strict=True):
            k = sampled[id(g)]
            layouts = [t for _ in range(k) for t in g.tensors if t.nbytes]
            allocs: list[Any] = []
            if dev.commits_on_write:
                allocs = [dev.allocate(t) for t in layouts]
            before = dev.snapshot()
            if not dev.commits_on_write:
                for t in layouts:
                    allocs.append(dev.allocate(t))
                    dev.write(allocs[-1], step)
            else:
                for alloc in allocs:
                    dev.write(alloc, step)
            after = dev.snapshot()
            allocated_tensor = sum(int(a.tensor.numel()) * int(a.tensor.element_size()) for a in allocs)
            allocs.clear()
            measured_sampled = {c: after[c] - before[c] for c in dev.counters}
            kinds.append(_kind_result(g, k, allocated_tensor, expected_sampled, measured_sampled, dev, primary))
    finally:
        dev.free_all()
    return kinds
