"""What ``check-log`` shares across engines: the facts a log states, one check row, and how a
logged number is read (exactly, as printed; a GiB figure rounded to 0.01 as a range)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from kvcalc.errors import InvalidConfigError
from kvcalc.units import GiB


@dataclass(frozen=True, kw_only=True)
class LogFacts:
    """What a log says (None where it does not say)."""

    engine: str | None = None
    model: str | None = None
    max_model_len: int | None = None
    tp: int | None = None
    kv_dtype: str | None = None
    block_size: int | None = None
    values: dict[str, list[str]] = field(default_factory=dict)
    """Raw captured numbers per pattern (strings as printed)."""

    def first(self, key: str, index: int = 0) -> str | None:
        found = self.values.get(key)
        return found[index] if found else None


@dataclass(frozen=True, kw_only=True)
class Check:
    item: str
    logged: str
    predicted: str
    difference: str
    matches: bool | None
    """True when the logged figure is within kvcalc's prediction (range), None when not comparable."""
    basis: str


def num(text: str) -> Decimal:
    """A logged number, exactly as printed; anything else is a malformed log, not a crash."""
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation:
        raise InvalidConfigError("log", f"expected a number, found {text!r}") from None
    if not value.is_finite():
        raise InvalidConfigError("log", f"expected a finite number, found {text!r}")
    return value


def gib_range(text: str) -> tuple[int, int, int]:
    """(low, mid, high) bytes of a GiB figure printed with 2 decimals (floor at each end)."""
    v = num(text)
    half = Decimal("0.005")
    return int((v - half) * GiB), int(v * GiB), int((v + half) * GiB)
