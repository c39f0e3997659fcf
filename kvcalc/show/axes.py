"""Axis helpers shared by the PNG/SVG plots (matplotlib) and the HTML report's inline SVG.

Context lengths double (1k, 2k, 4k ... 128k), so a context axis is base-2 logarithmic: on a linear
axis the short contexts pile up at the left. Ticks sit on powers of two and read as ``--seq-len``
writes them: ``k`` = x1024 tokens (``1k`` = 1,024; ``128k`` = 131,072), ``M`` = x1024k.
"""

from __future__ import annotations

from kvcalc.units import KiB, MiB


def context_label(tokens: int) -> str:
    """``131072`` -> ``128k``; ``1048576`` -> ``1M``; ``40960`` -> ``40k``; ``1000`` -> ``1,000``."""
    if tokens >= MiB and tokens % MiB == 0:
        return f"{tokens // MiB}M"
    if tokens >= KiB and tokens % KiB == 0:
        return f"{tokens // KiB}k"
    return f"{tokens:,}"


def pow2_floor(n: int) -> int:
    """The largest power of two <= n (n >= 1)."""
    return 1 << (n.bit_length() - 1)


def pow2_ceil(n: int) -> int:
    """The smallest power of two >= n (n >= 1)."""
    return 1 << (n - 1).bit_length()


def _thin(values: list[int], most: int) -> list[int]:
    """Every step-th power of two (step 1, 2, 4 ...) so at most ``most`` remain, extended upward
    so the last kept tick still reaches the largest value (the axis must cover the data)."""
    step = 1
    # Kept ticks: 1 + ceil((len - 1) / step), counting the extension past the last value.
    while 1 + -(-(len(values) - 1) // step) > most:
        step *= 2
    values = list(values)
    while (len(values) - 1) % step:
        values.append(values[-1] * 2)
    return values[::step]


def log2_ticks(lo: int, hi: int) -> list[tuple[int, str]]:
    """Tick positions and labels for a base-2 axis spanning [lo, hi]: every power of two from
    ``pow2_floor(lo)`` to ``pow2_ceil(hi)``, thinned to every second (fourth ...) one past 12 ticks
    so the labels stay legible on a phone."""
    if lo < 1 or hi < lo:
        raise ValueError(f"log2 axis needs 1 <= lo <= hi, got {lo}, {hi}")
    first, last = pow2_floor(lo), pow2_ceil(hi)
    values = []
    v = first
    while v <= last:
        values.append(v)
        v *= 2
    return [(v, context_label(v)) for v in _thin(values, 12)]


def count_ticks(hi: int) -> list[tuple[int, str]]:
    """Ticks for a base-2 count axis (requests resident at once): 0, then 1, 2, 4 ... up to the
    first power of two >= hi, thinned past 12 ticks. 0 sits below 1 on its own row (a plan that
    does not fit resides zero requests and must still be drawn)."""
    ticks = [(0, "0")]
    values = []
    v = 1
    while v <= pow2_ceil(max(hi, 1)):
        values.append(v)
        v *= 2
    return ticks + [(v, f"{v:,}") for v in _thin(values, 12)]


def context_points(hi: int, *, lo: int = 1024, extra: tuple[int, ...] = ()) -> list[int]:
    """Contexts to evaluate a curve at: the powers of two from ``lo`` (or below, if ``hi`` is
    shorter) up to ``hi``, plus ``hi`` itself and any ``extra`` value within range, sorted."""
    start = min(lo, pow2_floor(hi))
    points = set()
    v = start
    while v <= hi:
        points.add(v)
        v *= 2
    points.add(hi)
    points.update(x for x in extra if start <= x <= hi)
    return sorted(points)
