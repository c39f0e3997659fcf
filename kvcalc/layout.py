"""``RankLayout(model, tp, pp)``: which layers each pipeline stage holds, and what one rank of
that stage caches after tensor-parallel sharding, computed once and used by every command.

* Stages split as vLLM does (``vllm.distributed.utils.get_pp_indices``): ``num_layers // pp``
  layers each, the remainder given one by one to the stages before the last, starting from the
  second-to-last (the last stage also runs the LM head). SGLang splits the same way.
* A rank's spec is ``spec.shard(tp)``: KV heads ``max(1, H // tp)`` (vLLM
  ``ModelConfig.get_num_kv_heads``), MLA replicated, Mamba states split (rounded up).
* The work is proportional to the model's distinct layer groups, not its layers: a model of
  10**6 layers built from two groups is two runs, and a stage's count of each run is arithmetic.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from kvcalc.errors import InvalidRequestError

if TYPE_CHECKING:
    from kvcalc.models import ModelConfig
    from kvcalc.specs import Spec


def pp_partition(num_layers: int, pp: int) -> list[int]:
    """Layers per pipeline stage as vLLM splits them (``get_pp_indices``)."""
    base, rest = divmod(num_layers, pp)
    parts = [base] * pp
    for i in range(2, rest + 2):
        parts[-i] += 1
    return parts


@dataclass(frozen=True)
class Segment:
    """``pattern`` repeated ``repeat`` times, starting at layer ``start``."""

    start: int
    pattern: tuple[Spec, ...]
    repeat: int

    @property
    def stop(self) -> int:
        return self.start + len(self.pattern) * self.repeat

    def counts_in(self, lo: int, hi: int) -> Iterator[tuple[Spec, int]]:
        """Layers of each pattern position inside [lo, hi) (arithmetic, no per-layer loop)."""
        a, b = max(lo, self.start), min(hi, self.stop)
        if a >= b:
            return
        k = len(self.pattern)
        for j, spec in enumerate(self.pattern):
            first = self.start + j
            # indices first + m*k in [a, b)
            m_lo = max(0, -(-(a - first) // k))
            m_hi = (b - 1 - first) // k
            if m_hi >= m_lo:
                yield spec, m_hi - m_lo + 1


def segments_from_specs(specs: Sequence[Spec]) -> list[Segment]:
    """Runs of equal consecutive specs of an explicit layer list (one segment per run)."""
    out: list[Segment] = []
    start = 0
    for spec, run in itertools.groupby(specs):
        n = sum(1 for _ in run)
        out.append(Segment(start, (spec,), n))
        start += n
    return out


def counts_in(segments: Sequence[Segment], lo: int, hi: int) -> dict[Spec, int]:
    """Layers of each spec among layers [lo, hi), arithmetic over the segments."""
    out: dict[Spec, int] = {}
    for seg in segments:
        for spec, n in seg.counts_in(lo, hi):
            out[spec] = out.get(spec, 0) + n
    return out


def _segments(model: ModelConfig) -> list[Segment]:
    out: list[Segment] = []
    start = 0
    if model.layout is not None:
        assert model.legend is not None
        for ch, run in itertools.groupby(model.layout):
            n = sum(1 for _ in run)
            out.append(Segment(start, (model.legend[ch],), n))
            start += n
        return out
    assert model.layers is not None
    for group in model.layers:
        out.append(Segment(start, tuple(group.pattern), group.repeat))
        start += len(group.pattern) * group.repeat
    return out


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: its layer range, and its rank's distinct specs with layer counts."""

    index: int
    layers: range
    counts: tuple[tuple[Spec, int], ...]
    """(rank spec after sharding, layers of this stage with it), distinct specs merged."""

    def specs(self) -> list[Spec]:
        return [s for s, _ in self.counts]


class RankLayout:
    """The stages of ``model`` under ``tp`` x ``pp`` and each stage's sharded specs."""

    def __init__(self, model: ModelConfig, tp: int = 1, pp: int = 1,
                 stage_sizes: Sequence[int] | None = None) -> None:
        """``stage_sizes``: layers per stage when they are not ``pp_partition``'s (an engine's view
        of a model whose decoder layers register several cache layers; ``vllm_kv.cache_layout``)."""
        self.model = model
        self.tp = tp
        self.pp = pp
        segments = _segments(model)
        num_layers = segments[-1].stop if segments else 0
        if pp > num_layers:
            raise InvalidRequestError("pp", pp, f"at most the number of layers ({num_layers})")
        self.num_layers = num_layers
        shard: dict[int, Spec] = {}
        for seg in segments:
            for s in seg.pattern:
                if id(s) not in shard:
                    shard[id(s)] = s.shard(tp)
        self._shard = shard
        self.rank_segments: tuple[Segment, ...] = tuple(
            Segment(seg.start, tuple(shard[id(x)] for x in seg.pattern), seg.repeat) for seg in segments)
        """The model's layer runs with each spec sharded for one rank."""
        stages: list[Stage] = []
        start = 0
        sizes = list(stage_sizes) if stage_sizes is not None else pp_partition(num_layers, pp)
        if len(sizes) != pp or sum(sizes) != num_layers:
            raise InvalidRequestError("stage_sizes", sizes, f"{pp} stages of {num_layers} layers in all")
        for i, size in enumerate(sizes):
            counts: dict[Spec, int] = {}
            for seg in segments:
                for spec, n in seg.counts_in(start, start + size):
                    r = shard[id(spec)]
                    counts[r] = counts.get(r, 0) + n
            stages.append(Stage(index=i, layers=range(start, start + size), counts=tuple(counts.items())))
            start += size
        self.stages: tuple[Stage, ...] = tuple(stages)

    def rank_spec(self, spec: Spec) -> Spec:
        """The sharded spec of one of the model's layer specs."""
        found = self._shard.get(id(spec))
        return found if found is not None else spec.shard(self.tp)

    @cached_property
    def counts(self) -> dict[Spec, int]:
        """Every distinct rank spec of the model and its layer count (all stages together)."""
        out: dict[Spec, int] = {}
        for st in self.stages:
            for s, n in st.counts:
                out[s] = out.get(s, 0) + n
        return out

    @cached_property
    def rank_specs(self) -> tuple[Spec, ...]:
        """Every layer's rank spec, in order (per layer: only for engines that group layers)."""
        return tuple(self.rank_spec(s) for s in self.model.layer_specs)
