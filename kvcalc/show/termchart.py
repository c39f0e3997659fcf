"""A plain-text bar chart for the terminal (no matplotlib): one block per series, one bar per x.

Bar lengths are integer arithmetic (floor of ``value x width / largest``); the capacity, when
given, is drawn as a ``|`` at its column so bars that cross it are visible at a glance.
"""

from __future__ import annotations


def bar_chart(
    series: dict[str, list[tuple[str, int, str]]],
    *,
    width: int = 50,
    capacity: int | None = None,
    capacity_label: str = "",
) -> str:
    """``series``: label -> [(x label, value, value text)]. Returns the chart as text lines."""
    values = [v for rows in series.values() for _, v, _ in rows]
    top = max([*values, capacity or 0, 1])
    cap_col = None if capacity is None else capacity * width // top
    x_width = max((len(x) for rows in series.values() for x, _, _ in rows), default=1)
    lines: list[str] = []
    if capacity is not None:
        lines.append(f"{'':>{x_width}}  {' ' * (cap_col or 0)}| {capacity_label}")
    for label, rows in series.items():
        lines.append(label)
        for x, v, text in rows:
            n = v * width // top
            cells = ["█"] * n + [" "] * (width - n)
            if cap_col is not None and cap_col < width:
                cells[cap_col] = "|" if cap_col >= n else "╫"
            lines.append(f"{x:>{x_width}}  {''.join(cells).rstrip()} {text}")
    return "\n".join(lines)
