"""The HTML report opened in a real headless browser: Debian's Chromium, driven by Playwright's
Python package (``executable_path``; no ``playwright install``, no browser download).

Checks: the page loads with no console message of type error or warning (a Content-Security-Policy
violation would be one) and no uncaught error; the only request is the file itself; the headline
figures read from the rendered page text equal the plan's JSON; the chart points read from the
DOM equal the JSON; on a phone-sized viewport nothing runs off the side; it prints to PDF.
Screenshots and the PDF are kept under pytest's tmp path (and copied to ``$KVCALC_ARTIFACTS``
when set). Skipped when no browser is installed, unless ``KVCALC_REQUIRE_BROWSER=1`` (``.ci/run``
sets it after installing Chromium), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BROWSER_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
"""The closed network here refuses background connections; these keep Chromium from trying."""
REQUIRED = os.environ.get("KVCALC_REQUIRE_BROWSER", "") not in ("", "0")


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _skip_or_fail(why: str) -> None:
    if REQUIRED:
        pytest.fail(f"KVCALC_REQUIRE_BROWSER is set but {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    executable = _chromium()
    if executable is None:
        _skip_or_fail("no Chromium installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("Playwright's Python package is not installed (the dev extra has it)")
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh user-data-dir per run
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=executable, args=BROWSER_ARGS, headless=True,
            viewport={"width": 1000, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


def _keep(path: Path) -> None:
    dest = os.environ.get("KVCALC_ARTIFACTS")
    if dest:
        Path(dest).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(dest) / path.name)


def _open(context: Any, path: Path) -> tuple[Any, list[str], list[str]]:
    page = context.new_page()
    problems: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning")
            else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    context.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri(), wait_until="load")
    page.wait_for_timeout(300)  # let any late console message or request arrive
    return page, problems, requests


def test_plan_report_in_a_browser(browser_context: Any, cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "plan_report.html"
    res = cli("plan", "llama-3.1-8b", "--gpu", "h100", "--context", "32768", "--users", "64", "--report", str(out),
              "--json")
    assert res.exit_code == 0, res.stderr
    p = res.json()
    page, problems, requests = _open(browser_context, out)
    try:
        assert problems == []
        assert requests == [out.as_uri()]  # the file itself, nothing else
        # Headline figures, as the page shows them, against the JSON.
        text = page.inner_text("body")
        assert "64 users at once" in text

        def shown(key: str) -> str:
            return str(page.inner_text(f'dd[data-key="{key}"]'))

        def exact(s: str) -> int:
            m = re.search(r"\(([\d,]+) B\)", s) or re.match(r"([\d,]+)", s)
            assert m, s
            return int(m.group(1).replace(",", ""))

        assert shown("one_request_fits") == ("YES" if p["one_request_fits"] else "NO")
        assert shown("users_fit") == ("YES" if p["users_fit"] else "NO")
        for key in ("num_blocks", "kv_cache_tokens", "max_sequences", "longest_context_at_batch", "per_gpu_bytes",
                    "weights_bytes", "kv_budget_bytes", "gpu_count"):
            assert exact(shown(key)) == p[key], key
        assert shown("max_concurrency") == f"{p['max_concurrency']:.2f}x"
        for line in p["log_lines"]:
            assert line in text
        # The chart in the rendered DOM: the point at the plan's context is the plan's answer.
        points = page.eval_on_selector_all(
            'svg[data-chart="concurrency-vs-context"] circle', "els => els.map(e => [+e.dataset.x, +e.dataset.y])")
        assert [p["max_model_len"], p["max_sequences"]] in points
        budget = page.get_attribute('svg[data-chart="kv-vs-context"] g[data-kind="budget"]', "data-value")
        assert budget is not None and int(budget) == p["kv_budget_bytes"]
        # Drawn, not collapsed: the charts have a real size on screen.
        box = page.locator('svg[data-chart="kv-vs-context"]').bounding_box()
        assert box is not None and box["width"] > 600 and box["height"] > 300
        shot = tmp_path / "plan_report.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        _keep(shot)
        # A phone: 390 CSS px wide; nothing wider than the screen (tables scroll in their own box).
        page.set_viewport_size({"width": 390, "height": 844})
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        phone = tmp_path / "plan_report_phone.png"
        page.screenshot(path=str(phone), full_page=True)
        _keep(phone)
        # Printable: the print stylesheet applies and Chromium makes a PDF of it.
        page.emulate_media(media="print")
        pdf = tmp_path / "plan_report.pdf"
        page.pdf(path=str(pdf), format="A4")
        assert pdf.read_bytes()[:5] == b"%PDF-"
        _keep(pdf)
        assert problems == [] and requests == [out.as_uri()]
    finally:
        page.close()


def test_sweep_report_in_a_browser(browser_context: Any, cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "sweep_report.html"
    res = cli("sweep", "qwen3-32b", "llama-3.1-8b", "--seq-len", "1k..128k", "--kv-dtype", "bf16,fp8", "--batch", "8",
              "--gpu", "h100", "--report", str(out), "--json")
    assert res.exit_code == 0, res.stderr
    data = res.json()
    page, problems, requests = _open(browser_context, out)
    try:
        assert problems == [] and requests == [out.as_uri()]
        drawn = page.eval_on_selector_all(
            'svg[data-chart="kv-vs-context"] g.series', "gs => gs.map(g => [g.dataset.label, "
            "[...g.querySelectorAll('circle')].map(c => [+c.dataset.x, +c.dataset.y])])")
        by_label = dict(drawn)
        for c in data["cells"]:
            assert [c["seq_len"], c["per_gpu_bytes"]] in by_label[f"{c['model']} {c['kv_dtype']}"]
        ticks = page.eval_on_selector_all('svg[data-chart="kv-vs-context"] text.tick.x', "ts => ts.map(t => "
                                          "t.textContent)")
        assert ticks == ["1k", "2k", "4k", "8k", "16k", "32k", "64k", "128k"]
        assert "qwen3-32b maximum context 40,960" in page.inner_text("body")
        shot = tmp_path / "sweep_report.png"
        page.screenshot(path=str(shot), full_page=True)
        _keep(shot)
    finally:
        page.close()
