"""Golden rendering of ``kvcalc plan`` (STYLE #10), drawn by ``kvcalc.cli.boxtable`` without rich.

Regenerate after an intended change with ``KVCALC_REGEN_GOLDEN=1 pytest tests/test_render_plan_golden.py``
and review the diff. The numbers are checked elsewhere (test_planner.py, test_plan_answers.py); here:
rich's look (a headerless table is rich's ``show_header=False`` box, character for character),
wrapping on a terminal, styles only on a terminal.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kvcalc.cli.boxtable import cells, render, text_lines
from kvcalc.cli.plan_run import plan_lines
from kvcalc.planner.plan import PlanRequest, plan
from kvcalc.registry import get_builtin

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("KVCALC_REGEN_GOLDEN", "") not in ("", "0")
ANSI = re.compile(r"\x1b\[[0-9;]*m")

CASES: dict[str, dict[str, Any]] = {
    "plan_llama-3.1-70b_h100x2_fp8_users20": {"model": "llama-3.1-70b", "gpu": "h100:2", "kv_dtype": "fp8",
                                              "max_model_len": 32768, "users": 20},
    "plan_qwen2.5-7b_rtx4090_llama.cpp_width80": {"model": "qwen2.5-7b", "gpu": "rtx-4090", "engine": "llama.cpp",
                                                  "kv_dtype": "q4_0", "weight_dtype": "int4", "batch": 4,
                                                  "max_width": 80},
    "plan_llama-3-8b_sglang_budget": {"model": "llama-3-8b", "engine": "sglang", "kv_budget_bytes": 20 << 30,
                                      "max_model_len": 8192},
}


def _plan(case: dict[str, Any]) -> tuple[Any, int | None]:
    c = dict(case)
    max_width = c.pop("max_width", None)
    return plan(PlanRequest(model=get_builtin(c.pop("model")), **c)), max_width


@pytest.mark.parametrize("name", sorted(CASES))
def test_plan_matches_golden(name: str) -> None:
    result, max_width = _plan(CASES[name])
    text = "\n".join(plan_lines(result, max_width=max_width)) + "\n"
    path = GOLDEN / f"{name}.txt"
    if REGEN:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no golden file {path}; run KVCALC_REGEN_GOLDEN=1 pytest {__file__}"
    assert text == path.read_text(encoding="utf-8")
    if max_width is not None:
        assert all(cells(line) <= max_width for line in text.splitlines())


def test_headerless_table_is_the_one_rich_draws() -> None:
    """Where nothing wraps, the two-column table is rich's ``Table(show_header=False)`` (rich
    swaps HEAVY_HEAD for its plain-headed box, SQUARE) character for character."""
    from rich.console import Console
    from rich.table import Table

    rows = [["GPU memory the engine sees", "79.19 GiB (85,029,615,042 B)"], ["- weights", "1 B"],
            ["= KV cache budget", "10.36 GiB (11,120,465,346 B)"]]
    table = Table(title="Memory per GPU", title_justify="left", show_header=False)
    table.add_column("item")
    table.add_column("value", justify="right")
    for r in rows:
        table.add_row(*r)
    buf = io.StringIO()
    Console(file=buf, width=200, color_system=None, force_terminal=False, highlight=False).print(table)
    ours = render("Memory per GPU", None, ["left", "right"], [rows], bold_rows=[(0, 2)])
    assert [line.rstrip() for line in buf.getvalue().splitlines()] == ours


def test_styled_plan_is_the_plain_plan_plus_ansi() -> None:
    result, _ = _plan(CASES["plan_llama-3.1-70b_h100x2_fp8_users20"])
    plain = plan_lines(result)
    styled = plan_lines(result, style=True)
    assert styled != plain and [ANSI.sub("", line) for line in styled] == plain
    budget = next(line for line in styled if "= KV cache budget" in line)
    assert "\x1b[1m" in budget  # the answer row is bold, as rich's row style="bold" drew it


def test_text_lines_keep_indentation_when_wrapped() -> None:
    assert text_lines("  alpha beta gamma", max_width=12) == ["  alpha beta", "  gamma"]
    assert text_lines("short", max_width=80) == ["short"]


def test_plan_table_path_imports_no_rich() -> None:
    code = ("import sys; from kvcalc.cli import main; sys.argv = ['kvcalc', 'plan', 'llama-3-8b', '--gpu', 'h100']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write(str(sorted(m for m in sys.modules if m.split('.')[0] in ('rich', 'yaml', 'pydantic',"
            " 'typer'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Memory per GPU" in out.stdout
    assert out.stderr.strip().splitlines()[-1] == "[]"
