"""Line plots (PNG or SVG by extension) shared by ``kvcalc sweep --plot`` and ``kvcalc plan --plot``.

matplotlib is an optional dependency (the ``plot`` extra); it is imported inside the function with
the non-interactive Agg backend, so importing this module never needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kvcalc.errors import InvalidRequestError, MissingDependencyError

FORMATS = (".png", ".svg")
"""File extensions we write; matplotlib picks the format from the extension."""


def plot_series(
    path: str | Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    series: dict[str, list[tuple[float, float]]],
    hlines: dict[str, float] | None = None,
    vlines: dict[str, float] | None = None,
    x_log2: bool = False,
    y_log2: bool = False,
    vline_series: dict[str, str] | None = None,
) -> Path:
    """Draw one line per series (label -> [(x, y), ...]), one dashed horizontal line per
    ``hlines`` entry (label -> y) and one dotted vertical line per ``vlines`` entry (label -> x),
    with a legend; write PNG or SVG by ``path``'s extension.

    ``x_log2``: a base-2 context axis with ticks on powers of two labelled as ``--seq-len`` reads
    them (1k, 2k ... 128k; ``kvcalc.show.axes``), so doubling contexts are evenly spaced.
    ``y_log2``: a base-2 count axis (symmetric-log below 1, so a zero still draws).
    ``vline_series``: vertical line label -> the series whose colour it takes (a model's maximum
    context drawn in that model's colour); other vertical lines are grey.

    In SVG output each series and line carries its label as the element id prefix and in the
    legend text, so tests (and people) can read the file back.
    """
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise InvalidRequestError("plot", str(path), "a file name ending in .png or .svg")
    if not series:
        raise InvalidRequestError("series", series, "at least one named series of points")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("matplotlib", "plot") from None

    # Keep text as <text> in SVG (not glyph paths) so labels can be read back; deterministic ids.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "kvcalc"}):
        fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
        try:
            colors: dict[str, Any] = {}
            for label, points in series.items():
                xs = [float(x) for x, _ in points]
                ys = [float(y) for _, y in points]
                (line,) = ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.6, label=label)
                line.set_gid(f"series: {label}")
                colors[label] = line.get_color()
            for i, (label, y) in enumerate((hlines or {}).items()):
                h = ax.axhline(float(y), linestyle="--", linewidth=1.1, color=f"C{(i + 7) % 10}", label=label)
                h.set_gid(f"hline: {label}")
            for i, (label, x) in enumerate((vlines or {}).items()):
                color = colors.get((vline_series or {}).get(label, ""), str(0.25 + 0.2 * (i % 3)))
                v = ax.axvline(float(x), linestyle=(0, (1, 2 + i % 3)), linewidth=1.4, color=color, label=label)
                v.set_gid(f"vline: {label}")
            if x_log2:
                _log2_context_axis(ax, series, vlines)
            if y_log2:
                _log2_count_axis(ax, series, hlines)
            ax.set_title(title)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize="small", loc="best")
            fig.tight_layout()
            out.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(out, format=suffix[1:], metadata={"Date": None} if suffix == ".svg" else None)
        finally:
            plt.close(fig)
    return out


def _log2_context_axis(ax: Any, series: dict[str, list[tuple[float, float]]], vlines: dict[str, float] | None) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator

    from kvcalc.show.axes import log2_ticks

    xs = [int(x) for points in series.values() for x, _ in points] + [int(x) for x in (vlines or {}).values()]
    ticks = log2_ticks(max(min(xs), 1), max(max(xs), 1))
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator([float(v) for v, _ in ticks]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([label for _, label in ticks])
    ax.set_xlim(float(ticks[0][0]) / 1.1, float(ticks[-1][0]) * 1.1)


def _log2_count_axis(ax: Any, series: dict[str, list[tuple[float, float]]], hlines: dict[str, float] | None) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator

    from kvcalc.show.axes import count_ticks

    ys = [int(y) for points in series.values() for _, y in points] + [int(y) for y in (hlines or {}).values()]
    ticks = count_ticks(max(ys, default=1))
    # Linear between 0 and 1, base 2 above: a plan where nothing fits (0 requests) still draws.
    ax.set_yscale("symlog", base=2, linthresh=1, linscale=0.5)
    ax.yaxis.set_major_locator(FixedLocator([float(v) for v, _ in ticks]))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_yticklabels([label for _, label in ticks])
    ax.set_ylim(0, float(ticks[-1][0]) * 1.15)
