"""kvcalc.show.plot.plot_series: the shared helper writes SVG/PNG with the series and labels given."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kvcalc.errors import InvalidRequestError
from kvcalc.show.plot import plot_series

pytest.importorskip("matplotlib")


def test_svg_has_series_hlines_and_labels(tmp_path: Path) -> None:
    out = plot_series(
        tmp_path / "p.svg", title="KV memory vs context", xlabel="context (tokens)", ylabel="KV cache (GiB)",
        series={"llama-2-7b bf16": [(1024.0, 0.5), (2048.0, 1.0)], "llama-2-7b fp8": [(1024.0, 0.25), (2048.0, 0.5)]},
        hlines={"H100 80 GiB": 80.0},
    )
    svg = out.read_text()
    assert re.findall(r'id="series: ([^"]*)"', svg) == ["llama-2-7b bf16", "llama-2-7b fp8"]
    assert re.findall(r'id="hline: ([^"]*)"', svg) == ["H100 80 GiB"]
    for text in ("KV memory vs context", "context (tokens)", "KV cache (GiB)"):
        assert text in svg


def test_png_is_a_png(tmp_path: Path) -> None:
    out = plot_series(tmp_path / "sub" / "p.PNG", title="t", xlabel="x", ylabel="y", series={"a": [(1.0, 2.0)]})
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_other_extension_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError):
        plot_series(tmp_path / "p.jpg", title="t", xlabel="x", ylabel="y", series={"a": [(1.0, 2.0)]})
    assert not (tmp_path / "p.jpg").exists()


def test_missing_matplotlib_is_a_named_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from kvcalc.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingDependencyError, match="matplotlib"):
        plot_series(tmp_path / "p.svg", title="t", xlabel="x", ylabel="y", series={"a": [(1.0, 2.0)]})
