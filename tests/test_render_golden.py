"""Golden rendering of ``kvcalc estimate`` (STYLE #10), and the box table it is drawn with.

The stored text lives in ``tests/golden/``; regenerate it after an intended change with
``KVCALC_REGEN_GOLDEN=1 pytest tests/test_render_golden.py`` and review the diff: a test never
rewrites it silently. The numbers in these tables are checked elsewhere (test_golden_core.py);
here the layout is: box, alignment, wrapping, and that rich draws the same table.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcalc.cli.boxtable import cells, clean, render, wrap
from kvcalc.cli.render import estimate_lines
from kvcalc.estimate import estimate
from kvcalc.registry import load_model

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("KVCALC_REGEN_GOLDEN", "") not in ("", "0")
ANSI = re.compile(r"\x1b\[[0-9;]*m")

CASES = {
    "estimate_llama-2-7b_4096": {"model": "llama-2-7b", "seq_len": 4096},
    "estimate_gemma-2-9b_hf_q8_0_explain": {"model": "gemma-2-9b", "seq_len": 8192, "engine": "hf", "kv_dtype": "q8_0",
                                                "explain": True},
    "estimate_qwen3-next_tp2": {"model": "qwen3-next-80b-a3b", "seq_len": 8192, "tp": 2},
    "estimate_deepseek-v3_si_width80": {"model": "deepseek-v3", "seq_len": 100_000, "batch": 3000, "units": "si",
                                            "max_width": 80},
}


def _lines(case: dict[str, object]) -> list[str]:
    c = dict(case)
    model = load_model(str(c.pop("model")))
    units = str(c.pop("units", "iec"))
    explain = bool(c.pop("explain", False))
    max_width = c.pop("max_width", None)
    est = estimate(model, **c)  # type: ignore[arg-type]
    return estimate_lines(est, units, explain, max_width=max_width)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(CASES))
def test_estimate_table_matches_golden(name: str) -> None:
    text = "\n".join(_lines(CASES[name])) + "\n"
    path = GOLDEN / f"{name}.txt"
    if REGEN:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no golden file {path}; run KVCALC_REGEN_GOLDEN=1 pytest {__file__}"
    assert text == path.read_text(encoding="utf-8")


def test_same_table_as_rich_draws() -> None:
    """Where nothing wraps, the table is rich's default Table (HEAVY_HEAD box, padding 1,
    left-justified title) character for character (rich pads the title line with spaces)."""
    from rich.console import Console
    from rich.table import Table

    headers = ["Layers", "Kind", "Bytes"]
    justify = ["right", "left", "right"]
    rows = [["32", "full, 32 KV heads x 128", "2,147,483,648"], ["2", "sliding", "1"]]
    total = [["34", "total", "2,147,483,649"]]
    table = Table(title="KV cache of x", title_justify="left")
    for h, j in zip(headers, justify, strict=True):
        table.add_column(h, justify=j)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(*r)
    table.add_section()
    table.add_row(*total[0], style="bold")
    buf = io.StringIO()
    Console(file=buf, width=200, color_system=None, force_terminal=False, highlight=False).print(table)
    ours = render("KV cache of x", headers, justify, [rows, total], bold_sections=[1])
    assert [line.rstrip() for line in buf.getvalue().splitlines()] == ours


def test_styled_output_is_the_plain_output_plus_ansi() -> None:
    plain = _lines(CASES["estimate_gemma-2-9b_hf_q8_0_explain"])
    est = estimate(load_model("gemma-2-9b"), 8192, engine="hf", kv_dtype="q8_0")
    styled = estimate_lines(est, "iec", True, style=True)
    assert styled != plain and any("\x1b[1m" in line for line in styled)
    assert [ANSI.sub("", line) for line in styled] == plain


def test_user_text_cannot_restyle_the_terminal() -> None:
    assert clean("llama\x1b[31m\nx") == "llama?[31m?x"
    lines = render("t\x1b[2J", ["A"], ["left"], [[["a\x1b[31mb"]]])
    assert not any("\x1b" in line for line in lines)


@settings(max_examples=200, deadline=None)
@given(
    words=st.lists(st.text(st.characters(codec="utf-8", categories=["L", "N", "P"]), min_size=1, max_size=12),
                   min_size=1, max_size=12),
    numbers=st.lists(st.integers(0, 10**24), min_size=1, max_size=4),
    max_width=st.integers(20, 200),
)
def test_wrapped_tables_are_rectangular_and_lose_nothing(words: list[str], numbers: list[int],
                                                         max_width: int) -> None:
    """Every row line of a table has the same width in terminal cells; wrapped text re-joins to
    the original; numbers never wrap; the table fits ``max_width`` whenever its floors allow."""
    text = " ".join(words)
    rows = [[text, f"{n:,}"] for n in numbers]
    lines = render("title", ["Kind of layer", "Total bytes here"], ["left", "right"], [rows], max_width=max_width)
    body = lines[1:]
    widths = {cells(line) for line in body}
    assert len(widths) == 1
    # 2 columns: 3 borders + 2 x 2 padding = 7; each column's floor is its longest header word
    # ("layer", "Total", "bytes": 5) or its longest word / widest number.
    floor = 7 + max(max(cells(w) for w in words), 5) + max(5, *(len(f"{n:,}") for n in numbers))
    if floor <= max_width:
        assert widths.pop() <= max_width
    for n in numbers:
        assert any(f" {n:,} │" in line for line in body)
    col = [line.split("│")[1].strip() for line in body if line.startswith("│")]
    first_row = col[: len(col) // len(numbers)]
    assert " ".join(x for x in first_row if x) == text


@given(st.text(st.characters(codec="utf-8") | st.sampled_from("漢字ｗ é"), max_size=60), st.integers(1, 30))
def test_wrap_keeps_every_character_within_the_width(text: str, width: int) -> None:
    text = clean(text)
    lines = wrap(text, width)
    assert all(cells(line) <= width or len(line) == 1 for line in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")


def test_wide_characters_count_two_columns() -> None:
    assert cells("漢字") == 4 and cells("e\u0301") == 1 and cells("abc") == 3
    assert wrap("漢字 ab", 1) == ["漢", "字", "a", "b"]  # one wide character per line, no endless loop
    assert wrap("漢字漢 ab", 4) == ["漢字", "漢", "ab"]  # "漢 ab" would take 5 columns
