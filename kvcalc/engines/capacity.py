"""Capacity solvers shared by every engine: how many requests fit, the longest context at a
batch, the smallest TP degree / GPU count for a number of users, the binding constraint.

A ``Capacity`` is an engine's pool (``available`` units) and the units one request of L tokens
costs: vLLM counts blocks (usable = ``num_blocks - 1``, block 0 being the null block), the other
engines bytes. Answers are floors ("what fits"); each solver has a boundary test (N fits, N + 1
does not).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(kw_only=True)
class Capacity:
    unit: str
    """blocks or bytes."""
    available: int
    cost: Callable[[int], int]
    """Units one request of L tokens needs."""
    shared: Callable[[int], int] = lambda _p: 0
    """Units of a P-token prefix that prefix caching stores once (part of ``cost``)."""
    max_len: int = 1
    """Upper end of the context searches (the model's max_position_embeddings)."""
    _memo: dict[int, int] = field(default_factory=dict)

    def cost_of(self, length: int) -> int:
        value = self._memo.get(length)
        if value is None:
            value = self._memo[length] = self.cost(length)
        return value

    def units_for(self, batch: int, length: int, prefix: int = 0) -> int:
        """Units ``batch`` requests of ``length`` tokens take, a shared prefix stored once."""
        if batch <= 0:
            return 0
        s = self.shared(min(prefix, length)) if prefix else 0
        return s + batch * (self.cost_of(length) - s)

    def fits(self, batch: int, length: int, prefix: int = 0) -> bool:
        return self.available > 0 and self.units_for(batch, length, prefix) <= self.available

    def max_sequences(self, length: int, prefix: int = 0) -> int:
        """Largest N with ``fits(N, length)`` (0 when one does not fit)."""
        if self.available <= 0:
            return 0
        s = self.shared(min(prefix, length)) if prefix else 0
        per = self.cost_of(length) - s
        if per <= 0:
            return 0 if s > self.available else 10**12
        if s > self.available:
            return 0
        return (self.available - s) // per

    def longest_context(self, batch: int, prefix: int = 0) -> int:
        """Largest L in [1, max_len] with ``fits(batch, L)``; 0 if none."""
        if not self.fits(batch, 1, prefix):
            return 0
        lo, hi = 1, self.max_len
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.fits(batch, mid, prefix):
                lo = mid
            else:
                hi = mid - 1
        return lo


@dataclass(frozen=True, kw_only=True)
class TpOption:
    tp: int
    max_sequences: int
    replicas_needed: int
    gpus: int


def smallest_tp(options: list[TpOption], users: int) -> tuple[TpOption | None, TpOption | None]:
    """(smallest TP whose one replica serves ``users``, fewest GPUs over TP x replicas)."""
    one = next((o for o in sorted(options, key=lambda o: o.tp) if o.max_sequences >= users), None)
    feasible = [o for o in options if o.max_sequences > 0]
    fewest = min(feasible, key=lambda o: (o.gpus, o.tp)) if feasible else None
    return one, fewest
