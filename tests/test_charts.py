"""Charts read right: a base-2 context axis labelled 1k ... 128k, the model's maximum context
marked, the users line where it belongs, "per GPU" only when the figure is per GPU. Each check
reads the axis back from the SVG the command wrote (matplotlib keeps text as <text>)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcalc.show.axes import context_label, context_points, count_ticks, log2_ticks

SVG = "{http://www.w3.org/2000/svg}"


def test_context_labels_read_as_seq_len_writes_them() -> None:
    assert [context_label(n) for n in (1024, 131_072, 40_960, 1 << 20, 1000, 512)] == [
        "1k", "128k", "40k", "1M", "1,000", "512"]


def test_log2_ticks_are_the_powers_of_two_spanning_the_range() -> None:
    assert [label for _, label in log2_ticks(1024, 131_072)] == ["1k", "2k", "4k", "8k", "16k", "32k", "64k", "128k"]
    # 40,960 is not a power of two: the axis runs on to 64k so the point is inside it.
    assert [v for v, _ in log2_ticks(1024, 40_960)][-1] == 65_536
    # 1k .. 8M is 14 powers: thinned to every second one so the labels stay legible, and run on
    # to 16M so the axis still reaches 8M.
    assert [label for _, label in log2_ticks(1024, 8 << 20)] == ["1k", "4k", "16k", "64k", "256k", "1M", "4M", "16M"]
    assert [v for v, _ in count_ticks(1788)] == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]
    assert context_points(40_960) == [1024, 2048, 4096, 8192, 16384, 32768, 40960]
    assert context_points(300) == [256, 300]


def _matplotlib_ticks(svg: str, axis: str) -> list[tuple[str, float]]:
    """(label, pixel position) of each tick of ``axis`` (x or y) in a matplotlib SVG."""
    root = ET.fromstring(svg)
    out = []
    for g in root.iter(f"{SVG}g"):
        if re.fullmatch(f"{axis}tick_\\d+", g.get("id", "")):
            text = next(g.iter(f"{SVG}text"))
            mark = next(g.iter(f"{SVG}use"))  # the tick mark itself (text sits on its baseline)
            out.append((text.text or "", float(mark.get("x" if axis == "x" else "y", "nan"))))
    return out


def _line_y(svg: str, gid: str) -> float:
    """The pixel y of a horizontal line drawn with ``set_gid(gid)``."""
    m = re.search(rf'<g id="{re.escape(gid)}">\s*<path d="M ([-\d.]+) ([-\d.]+)', svg)
    assert m, gid
    return float(m.group(2))


def test_sweep_plot_has_a_log2_context_axis_and_marks_the_models_maximum(cli: Any, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "s.svg"
    res = cli("sweep", "qwen3-32b", "--seq-len", "1k..128k", "--kv-dtype", "bf16", "--plot", str(out))
    assert res.exit_code == 0, res.stderr
    svg = out.read_text()
    ticks = _matplotlib_ticks(svg, "x")
    assert [label for label, _ in ticks] == ["1k", "2k", "4k", "8k", "16k", "32k", "64k", "128k"]
    gaps = [b - a for (_, a), (_, b) in zip(ticks, ticks[1:], strict=False)]
    assert max(gaps) - min(gaps) < 0.01  # doublings evenly spaced: the axis is base 2
    # Qwen3-32B stops at 40,960 tokens (max_position_embeddings): the plot says so with a line.
    assert re.findall(r'id="vline: ([^"]*)"', svg) == ["qwen3-32b maximum context 40,960"]
    # One GPU (no --tp, no count): the whole cache, so no "per GPU" anywhere.
    assert "per GPU" not in svg and "KV cache (GiB)" in svg


def test_sweep_gpu_count_shards_the_cache_and_only_then_says_per_gpu(cli: Any, tmp_path: Path) -> None:
    # --gpu h200:8 used to label the line "x8, per GPU" while per_gpu_bytes equalled the total.
    # Now the count is the TP degree (as in `plan`): llama-3-8b's 8 KV heads split one per GPU,
    # so each GPU holds 1/8: 32 layers x 1 head x 128 x 2 (K, V) x 2 B = 16,384 B per token.
    res = cli("sweep", "llama-3-8b", "--seq-len", "8k", "--gpu", "h200:8", "--json")
    assert res.exit_code == 0, res.stderr
    data = res.json()
    (cell,) = data["cells"]
    assert data["tp"] == 8 and cell["per_gpu_bytes"] == 32 * 1 * 128 * 2 * 2 * 8192
    assert cell["total_bytes"] == 8 * cell["per_gpu_bytes"]
    assert data["capacity_label"].endswith("per GPU (TP 8)")
    # An explicit --tp wins, and the label says how it relates to the count.
    res = cli("sweep", "llama-3-8b", "--seq-len", "8k", "--gpu", "h200:8", "--tp", "2", "--json")
    assert res.json()["capacity_label"].endswith("per GPU (TP 2 of 8 GPUs)")
    res = cli("sweep", "llama-3-8b", "--seq-len", "8k", "--gpu", "h200", "--json")
    data = res.json()
    assert data["tp"] == 1 and "per GPU" not in data["capacity_label"]
    assert data["cells"][0]["per_gpu_bytes"] == data["cells"][0]["total_bytes"]


def test_plan_plot_puts_the_users_line_where_it_belongs(cli: Any, tmp_path: Path) -> None:
    # The gallery's plan: on a linear axis running to ~1,800 requests the 64-user line lay flat
    # along the bottom. On the base-2 count axis it sits between the 32 and 128 ticks.
    pytest.importorskip("matplotlib")
    out = tmp_path / "p.svg"
    res = cli("plan", "llama-3.1-8b", "--gpu", "h100", "--context", "32768", "--users", "64", "--plot", str(out))
    assert res.exit_code == 0, res.stderr
    svg = out.read_text()
    xt = [label for label, _ in _matplotlib_ticks(svg, "x")]
    assert xt == ["1k", "2k", "4k", "8k", "16k", "32k", "64k", "128k"]
    yt = dict(_matplotlib_ticks(svg, "y"))
    assert list(yt)[:4] == ["0", "1", "2", "4"]
    users_y = _line_y(svg, "hline: 64 users")
    assert abs(users_y - yt["64"]) < 0.5 and yt["128"] < users_y < yt["32"]
    # Equal steps per doubling: the y axis is base 2 above 1.
    assert abs((yt["32"] - yt["64"]) - (yt["64"] - yt["128"])) < 0.01
    marks = re.findall(r'id="vline: ([^"]*)"', svg)
    assert marks == ["--max-model-len 32k", "llama-3.1-8b maximum context 131,072"]


@settings(max_examples=200, deadline=None)
@given(lo=st.integers(1, 1 << 24), span=st.integers(0, 1 << 26))
def test_log2_ticks_cover_the_range_evenly(lo: int, span: int) -> None:
    hi = lo + span
    ticks = [v for v, _ in log2_ticks(lo, hi)]
    assert ticks[0] <= lo and ticks[-1] >= hi and 1 <= len(ticks) <= 12
    assert all(v & (v - 1) == 0 for v in ticks)  # powers of two
    ratios = {b // a for a, b in zip(ticks, ticks[1:], strict=False)}
    assert len(ratios) <= 1  # one step: evenly spaced on a log axis


@settings(max_examples=60, deadline=None)
@given(points=st.lists(st.tuples(st.integers(1, 1 << 22), st.integers(0, 1 << 40)), min_size=1, max_size=20,
                       unique_by=lambda p: p[0]),
       budget=st.integers(1, 1 << 40), kind=st.sampled_from(["bytes", "count"]))
def test_svg_chart_carries_every_point_exactly_inside_its_box(points: list[tuple[int, int]], budget: int,
                                                              kind: str) -> None:
    from kvcalc.show.svg import Mark, Series, line_chart

    pts = tuple(sorted(points))
    html = line_chart("c", title="t", x_label="x", y_label="y", series=[Series(label="s", points=pts)],
                      hlines=(Mark(label="b", value=budget, kind="budget"),), y_kind=kind)
    svg = ET.fromstring(re.search(r"<svg\b.*?</svg>", html, flags=re.S).group(0))  # type: ignore[union-attr]
    circles = list(svg.iter(f"{SVG}circle"))
    assert [(int(c.get("data-x", "")), int(c.get("data-y", ""))) for c in circles] == list(pts)
    box = next(r for r in svg.iter(f"{SVG}rect") if r.get("class") == "plot")
    x0, y0 = float(box.get("x", "")), float(box.get("y", ""))
    x1, y1 = x0 + float(box.get("width", "")), y0 + float(box.get("height", ""))
    for c in circles:
        assert x0 - 0.05 <= float(c.get("cx", "")) <= x1 + 0.05 and y0 - 0.05 <= float(c.get("cy", "")) <= y1 + 0.05
    # Larger values sit higher (smaller pixel y) on both the linear and the base-2 axis.
    by_value = sorted(circles, key=lambda c: int(c.get("data-y", "")))
    ys = [float(c.get("cy", "")) for c in by_value]
    assert all(a >= b for a, b in zip(ys, ys[1:], strict=False))
