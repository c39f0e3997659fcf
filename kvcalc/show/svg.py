"""Inline SVG charts for the HTML report: no matplotlib, no script, no external resource.

Every drawn figure carries its exact value as a data attribute (``data-x``/``data-y`` on points,
``data-bytes`` on bar segments, ``data-value`` on marks and ticks), so a test (or a person with
the browser's inspector) reads back the same integers the JSON has; pixel positions are floats for
drawing only. Context axes are base 2 (``kvcalc.show.axes``): 1k, 2k ... 128k evenly spaced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

from kvcalc.show.axes import count_ticks, log2_ticks
from kvcalc.units import GiB, KiB, MiB, format_bytes

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22")
"""matplotlib's tab10, so the report and the PNG plots colour series alike."""
MARK_COLORS = {"budget": "#444", "users": "#d62728", "max-context": "#7f7f7f", "context": "#1f77b4",
               "cap": "#ff7f0e", "capacity": "#444"}
_W, _H = 720, 400
_L, _R, _T, _B = 84, 18, 30, 58
_PW, _PH = _W - _L - _R, _H - _T - _B


@dataclass(frozen=True)
class Series:
    label: str
    points: tuple[tuple[int, int], ...]
    """(x, y) exact integers: context tokens and bytes, or context and requests."""


@dataclass(frozen=True)
class Mark:
    """A reference line: horizontal (a y value: the budget, the users) or vertical (an x value:
    the model's maximum context)."""

    label: str
    value: int
    kind: str
    series: str | None = None
    """A vertical mark that belongs to a series (a model's maximum context) takes its colour."""


def _attr(value: object) -> str:
    return escape(str(value), quote=True)


def _fmt(v: float) -> str:
    return f"{v:.1f}"


def _byte_ticks(top: int) -> tuple[list[tuple[int, str]], int]:
    """Nice linear ticks for a byte axis from 0 past ``top``: steps of 1, 2, 2.5 or 5 x 10^k in
    the largest binary unit that fits; returns (ticks, axis top in bytes)."""
    unit, name = next(((u, n) for u, n in ((GiB, "GiB"), (MiB, "MiB"), (KiB, "KiB")) if top >= u), (1, "B"))
    raw = max(top, 1) / unit
    step = 1.0
    for exp in range(-3, 16):
        for m in (1, 2, 2.5, 5):
            step = m * 10.0 ** exp
            if raw / step <= 6:
                break
        else:
            continue
        break
    count = math.ceil(raw / step - 1e-9)
    ticks = [(round(i * step * unit), f"{i * step:g} {name}" if i else "0") for i in range(count + 1)]
    return ticks, max(ticks[-1][0], 1)


def line_chart(chart_id: str, *, title: str, x_label: str, y_label: str, series: list[Series],
               hlines: tuple[Mark, ...] = (), vlines: tuple[Mark, ...] = (), y_kind: str = "bytes",
               y_limit: int | None = None) -> str:
    """A ``<figure>``: the SVG (base-2 context axis; y linear in bytes, or base 2 for counts) and
    an HTML legend that wraps on a phone. ``y_limit`` (bytes) stops the y axis there so a budget
    line is not flattened by a curve running far past it: points above are drawn on the top edge
    (hollow), their exact values still in ``data-y`` and the tooltip."""
    xs = [x for s in series for x, _ in s.points] + [m.value for m in vlines]
    ys = [y for s in series for _, y in s.points] + [m.value for m in hlines]
    if not xs:
        raise ValueError(f"chart {chart_id}: nothing to draw")
    xticks = log2_ticks(min(xs), max(xs))
    x0, x1 = math.log2(xticks[0][0]), math.log2(xticks[-1][0])

    def px(x: int) -> float:
        return _L + (_PW / 2 if x1 == x0 else (math.log2(x) - x0) / (x1 - x0) * _PW)

    if y_kind == "count":
        yticks = count_ticks(max(ys, default=1))
        ytop = yticks[-1][0]

        def py(y: int) -> float:
            pos = 0.0 if y <= 0 else (1 + math.log2(y)) / (1 + math.log2(ytop))
            return _T + _PH - pos * _PH
        py_line = py
        y_scale = "log2"
    else:
        top = max(ys, default=1)
        yticks, ytop = _byte_ticks(min(top, y_limit) if y_limit else top)

        def py(y: int) -> float:
            return _T + _PH - min(max(y, 0), ytop) / ytop * _PH

        def py_line(y: int) -> float:  # unclamped: the line leaves through the top, clipped there
            return _T + _PH - max(y, 0) / ytop * _PH
        y_scale = "linear"

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" role="img" '
           f'aria-label="{_attr(title)}" data-chart="{_attr(chart_id)}" data-x-scale="log2" '
           f'data-y-scale="{y_scale}" data-y-unit="{"count" if y_kind == "count" else "bytes"}">',
           f"<title>{escape(title)}</title>",
           f'<clipPath id="clip-{_attr(chart_id)}"><rect x="{_L}" y="{_T - 4}" width="{_PW + 4}" '
           f'height="{_PH + 8}"/></clipPath>',
           f'<rect x="{_L}" y="{_T}" width="{_PW}" height="{_PH}" class="plot"/>']
    for v, label in xticks:
        x = _fmt(px(v))
        out.append(f'<line class="grid" x1="{x}" x2="{x}" y1="{_T}" y2="{_T + _PH}"/>')
        out.append(f'<text class="tick x" data-value="{v}" x="{x}" y="{_T + _PH + 18}">{escape(label)}</text>')
    for v, label in yticks:
        y = _fmt(py(v))
        out.append(f'<line class="grid" x1="{_L}" x2="{_L + _PW}" y1="{y}" y2="{y}"/>')
        out.append(f'<text class="tick y" data-value="{v}" x="{_L - 6}" y="{y}" dy="4">{escape(label)}</text>')
    out.append(f'<text class="axis-label" x="{_L + _PW / 2}" y="{_H - 12}">{escape(x_label)}</text>')
    out.append(f'<text class="axis-label" transform="translate(16 {_T + _PH / 2}) rotate(-90)">'
               f"{escape(y_label)}</text>")
    series_color = {s.label: COLORS[i % len(COLORS)] for i, s in enumerate(series)}

    def mark_color(m: Mark) -> str:
        return series_color.get(m.series or "", MARK_COLORS.get(m.kind, "#444"))

    for m in hlines:
        y = _fmt(py(m.value))
        color = mark_color(m)
        out.append(f'<g class="mark h" data-kind="{_attr(m.kind)}" data-label="{_attr(m.label)}" '
                   f'data-value="{m.value}"><line x1="{_L}" x2="{_L + _PW}" y1="{y}" y2="{y}" stroke="{color}"/>'
                   f'<text x="{_L + _PW - 4}" y="{y}" dy="-4" fill="{color}" class="mark-label end">'
                   f"{escape(m.label)}</text></g>")
    for i, m in enumerate(vlines):
        x = _fmt(px(m.value))
        color = mark_color(m)
        out.append(f'<g class="mark v" data-kind="{_attr(m.kind)}" data-label="{_attr(m.label)}" '
                   f'data-value="{m.value}"><line x1="{x}" x2="{x}" y1="{_T}" y2="{_T + _PH}" stroke="{color}"/>'
                   f'<text x="{x}" y="{_T + 12 + 13 * i}" dx="-4" fill="{color}" class="mark-label end">'
                   f"{escape(m.label)}</text></g>")
    for i, s in enumerate(series):
        color = COLORS[i % len(COLORS)]
        coords = " ".join(f"{_fmt(px(x))},{_fmt(py_line(y))}" for x, y in s.points)
        out.append(f'<g class="series" data-label="{_attr(s.label)}" stroke="{color}" fill="{color}">'
                   f'<polyline points="{coords}" fill="none" clip-path="url(#clip-{_attr(chart_id)})"/>')
        for px_x, px_y in s.points:
            shown = format_bytes(px_y) if y_kind == "bytes" else f"{px_y:,}"
            above = y_kind == "bytes" and px_y > ytop
            out.append(f'<circle cx="{_fmt(px(px_x))}" cy="{_fmt(py(px_y))}" r="3" data-x="{px_x}" data-y="{px_y}"'
                       + (' class="above" fill="#fff"' if above else "")
                       + f"><title>{escape(s.label)}: {px_x:,} tokens, {escape(shown)}</title></circle>")
        out.append("</g>")
    out.append("</svg>")
    legend = "".join(f'<li><span class="swatch" style="background:{COLORS[i % len(COLORS)]}"></span>'
                     f"{escape(s.label)}</li>" for i, s in enumerate(series))
    legend += "".join(f'<li><span class="swatch dash" style="border-color:{mark_color(m)}">'
                      f"</span>{escape(m.label)}</li>" for m in (*hlines, *vlines))
    clipped = y_kind == "bytes" and top > ytop
    note = (f'<p class="note">The axis stops at {escape(format_bytes(ytop))}: hollow points on the top edge are '
            "higher (hover for the exact figure; the JSON has them all).</p>") if clipped else ""
    return (f'<figure class="chart" id="{_attr(chart_id)}">{"".join(out)}'
            f'<figcaption><b>{escape(title)}</b><ul class="legend">{legend}</ul>{note}</figcaption></figure>')


@dataclass(frozen=True)
class Segment:
    label: str
    bytes: int
    kind: str
    """weights, activation, non-torch, kv, free (what the engine leaves unused)."""


SEGMENT_COLORS = {"weights": "#1f77b4", "activation": "#ff7f0e", "non-torch": "#9467bd", "kv": "#2ca02c",
                  "reserve": "#bcbd22", "free": "#d9d9d9"}


def stacked_bar(chart_id: str, *, title: str, segments: list[Segment], total_bytes: int | None) -> str:
    """One horizontal bar: the segments left to right, widths in proportion to their bytes (a
    negative segment, e.g. a KV budget below zero, is listed but drawn with no width); then a
    table with every segment's exact bytes."""
    scale = max(total_bytes or 0, sum(max(s.bytes, 0) for s in segments), 1)
    height = 56
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {height}" role="img" '
           f'aria-label="{_attr(title)}" data-chart="{_attr(chart_id)}" '
           f'data-total-bytes="{"" if total_bytes is None else total_bytes}"><title>{escape(title)}</title>']
    x = 0.0
    for s in segments:
        w = max(s.bytes, 0) / scale * _W
        color = SEGMENT_COLORS.get(s.kind, "#aaa")
        out.append(f'<rect class="segment" x="{_fmt(x)}" y="8" width="{_fmt(w)}" height="40" fill="{color}" '
                   f'data-kind="{_attr(s.kind)}" data-label="{_attr(s.label)}" data-bytes="{s.bytes}">'
                   f"<title>{escape(s.label)}: {escape(format_bytes(s.bytes))}</title></rect>")
        x += w
    if total_bytes is not None and scale > total_bytes:
        # More asked of the GPU than it has: a line where its memory ends.
        edge = _fmt(total_bytes / scale * _W)
        out.append(f'<line class="overflow" x1="{edge}" x2="{edge}" y1="2" y2="54" stroke="#b42318" '
                   f'stroke-width="3" data-bytes="{total_bytes}"><title>GPU memory ends here</title></line>')
    out.append("</svg>")
    rows = "".join(
        f'<tr><td><span class="swatch" style="background:{SEGMENT_COLORS.get(s.kind, "#aaa")}"></span>'
        f'{escape(s.label)}</td><td class="num">{escape(format_bytes(s.bytes))}</td>'
        f'<td class="num">{s.bytes:,} B</td></tr>' for s in segments)
    if total_bytes is not None:
        rows += (f'<tr class="total"><td>GPU memory the engine sees</td><td class="num">'
                 f"{escape(format_bytes(total_bytes))}</td><td class=\"num\">{total_bytes:,} B</td></tr>")
    return (f'<figure class="chart bar" id="{_attr(chart_id)}">{"".join(out)}<figcaption><b>{escape(title)}</b>'
            f'<div class="scroll"><table class="breakdown">{rows}</table></div></figcaption></figure>')
