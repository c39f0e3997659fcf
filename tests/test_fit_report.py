"""``kvcalc fit --report FILE.html``: the page carries the same figures as ``fit --json`` (read back
from the table's data attributes and from the chart's points), loads nothing, and its figures are
``fit()``'s (each a ``plan()`` field). The browser check is at the end (skipped without Chromium)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from kvcalc.planner.fit import fit
from kvcalc.planner.plan import PlanRequest, plan
from kvcalc.registry import get_builtin
from kvcalc.show.report import fit_report, render_html
from tests.test_report import charts, embedded_json, marks, series_points
from tests.test_report_browser import _keep, _open, browser_context  # noqa: F401 - the fixture


def table_cells(html: str) -> dict[tuple[str, str, int], str]:
    """(kv dtype, 'longest_context' | 'max_users', users | context) -> the text shown."""
    out = {}
    for dtype, row in re.findall(r'<tr data-kv-dtype="([^"]+)">(.*?)</tr>', html, flags=re.S):
        for key, _attr, n, text in re.findall(
                r'<td class="num" data-key="(longest_context|max_users)" data-(users|context)="(\d+)">([^<]*)</td>',
                row):
            out[(dtype, key, int(n))] = text
    return out


@pytest.fixture(scope="module")
def fitted() -> tuple[Any, str]:
    req = PlanRequest(model=get_builtin("llama-3.1-8b"), gpu="h100", solve_tp=False)
    result = fit(req, contexts=(4096, 32768, 131072, 262144))
    return result, render_html(fit_report(result, "kvcalc fit llama-3.1-8b --gpu h100"))


def test_table_is_the_fits_json(fitted: tuple[Any, str]) -> None:
    result, html = fitted
    f = result.to_dict()
    shown = table_cells(html)
    assert len(shown) == len(f["rows"]) * (len(f["batches"]) + len(f["contexts"]))
    for row in f["rows"]:
        for b in f["batches"]:
            text = shown[(row["kv_dtype"], "longest_context", b)]
            assert int(text.rstrip("*").replace(",", "")) == row["longest_context"][str(b)]
            assert text.endswith("*") == row["context_limited_by_model"][str(b)]
        for c in f["contexts"]:
            users = row["max_users"][str(c)]
            assert shown[(row["kv_dtype"], "max_users", c)] == ("-" if users is None else f"{users:,}")
    assert embedded_json(html) == {"report": "fit", "fit": f}


def test_chart_points_are_the_most_users(fitted: tuple[Any, str]) -> None:
    result, html = fitted
    svg = charts(html)["users-vs-context"]
    points = series_points(svg)
    for row in result.rows:
        expect = [(c, row.max_users[c]) for c in result.contexts if row.max_users[c] is not None]
        assert points[f"{row.kv_dtype} KV"] == expect
    # 262,144 tokens is past llama-3.1-8b's 131,072: no point there, and the maximum is marked.
    assert all(x <= 131_072 for pts in points.values() for x, _ in pts)
    assert marks(svg)["max-context"] == 131_072


def test_figures_are_plans_fields(fitted: tuple[Any, str]) -> None:
    """Independent of fit(): the users at 32k for the fp8 row is plan()'s requests resident at
    once (x replicas, capped by --max-num-seqs), and its longest context for 8 users plan()'s."""
    result, _ = fitted
    row = next(r for r in result.rows if r.kv_dtype.startswith("fp8"))
    p = plan(PlanRequest(model=get_builtin("llama-3.1-8b"), gpu="h100", kv_dtype="fp8", max_model_len=32768,
                         solve_tp=False))
    cap = p.max_running_requests if p.max_running_requests is not None else p.max_sequences
    assert row.max_users[32768] == min(p.max_sequences, cap) * p.replicas
    p8 = plan(PlanRequest(model=get_builtin("llama-3.1-8b"), gpu="h100", kv_dtype="fp8", batch=8,
                          max_model_len=131072, solve_tp=False))
    assert row.longest_context[8] == p8.longest_context_at_batch


def test_page_asks_for_nothing(fitted: tuple[Any, str]) -> None:
    _, html = fitted
    assert "default-src 'none'" in html
    assert not re.search(r"<script(?![^>]*application/json)", html)
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", html)


def test_fit_report_option_writes_the_page(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "fit.html"
    args = ("fit", "qwen3-32b", "--gpu", "h200:2", "--json")
    plain = cli(*args)
    res = cli(*args, "--report", str(out))
    assert res.exit_code == 0, res.stderr
    assert res.stdout == plain.stdout and f"wrote {out}" in res.stderr
    html = out.read_text(encoding="utf-8")
    assert embedded_json(html)["fit"] == res.json()
    assert f"kvcalc fit qwen3-32b --gpu h200:2 --json --report {out}" in html


def test_fit_report_refusals(cli: Any, tmp_path: Path) -> None:
    res = cli("fit", "llama-3-8b", "--kv-budget", "20GiB", "--report", str(tmp_path / "r.pdf"))
    assert res.exit_code != 0 and res.stdout == "" and res.stderr.startswith("Error:") and "--report" in res.stderr
    res = cli("fit", "llama-3-8b", "qwen3-8b", "--gpu", "h100", "--report", str(tmp_path / "r.html"))
    assert res.exit_code != 0 and res.stdout == "" and "one model" in res.stderr
    assert not (tmp_path / "r.html").exists()


def test_fit_report_in_a_browser(browser_context: Any, cli: Any, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "fit_report.html"
    res = cli("fit", "llama-3.1-8b", "--gpu", "h100", "--report", str(out), "--json")
    assert res.exit_code == 0, res.stderr
    f = res.json()
    page, problems, requests = _open(browser_context, out)
    try:
        assert problems == [] and requests == [out.as_uri()]
        for row in f["rows"]:
            for c in f["contexts"]:
                shown = page.inner_text(f'tr[data-kv-dtype="{row["kv_dtype"]}"] td[data-key="max_users"]'
                                        f'[data-context="{c}"]')
                users = row["max_users"][str(c)]
                assert shown == ("-" if users is None else f"{users:,}")
        points = page.eval_on_selector_all(
            'svg[data-chart="users-vs-context"] circle', "els => els.map(e => [+e.dataset.x, +e.dataset.y])")
        first = f["rows"][0]
        assert [f["contexts"][0], first["max_users"][str(f["contexts"][0])]] in points
        box = page.locator('svg[data-chart="users-vs-context"]').bounding_box()
        assert box is not None and box["width"] > 600 and box["height"] > 300
        page.set_viewport_size({"width": 390, "height": 844})
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        shot = tmp_path / "fit_report_phone.png"
        page.screenshot(path=str(shot), full_page=True)
        _keep(shot)
        page.emulate_media(media="print")
        pdf = tmp_path / "fit_report.pdf"
        page.pdf(path=str(pdf), format="A4")
        assert pdf.read_bytes()[:5] == b"%PDF-"
        assert problems == []
    finally:
        page.close()
