"""``--report FILE.html``: the page carries the same figures as the JSON (read back from the
headline and from the SVG charts' data attributes), loads nothing, and its curves are ``plan()``
results. The browser test is ``tests/test_report_browser.py``."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from html import escape
from pathlib import Path
from typing import Any

import pytest

from kvcalc.planner.plan import PlanRequest, plan
from kvcalc.registry import get_builtin
from kvcalc.show.loglines import unit_note
from kvcalc.show.report import memory_segments, plan_report, render_html, sweep_report
from kvcalc.units import GiB

SVG = "{http://www.w3.org/2000/svg}"


def charts(html: str) -> dict[str, ET.Element]:
    """Each inline <svg> parsed as XML (so it is well-formed), by its data-chart name."""
    out = {}
    for fragment in re.findall(r"<svg\b.*?</svg>", html, flags=re.S):
        root = ET.fromstring(fragment)
        out[root.get("data-chart", "")] = root
    return out


def series_points(svg: ET.Element) -> dict[str, list[tuple[int, int]]]:
    return {g.get("data-label", ""): [(int(c.get("data-x", "")), int(c.get("data-y", "")))
                                      for c in g.iter(f"{SVG}circle")]
            for g in svg.iter(f"{SVG}g") if g.get("class") == "series"}


def marks(svg: ET.Element) -> dict[str, int]:
    return {g.get("data-kind", ""): int(g.get("data-value", "")) for g in svg.iter(f"{SVG}g")
            if (g.get("class") or "").startswith("mark")}


def headline(html: str) -> dict[str, str]:
    return dict(re.findall(r'<dd data-key="([a-z_]+)">([^<]*)</dd>', html))


def embedded_json(html: str) -> Any:
    m = re.search(r'<script type="application/json" id="kvcalc-data">(.*?)</script>', html, flags=re.S)
    assert m
    return json.loads(m.group(1).replace("<\\/", "</"))


def exact(text: str) -> int:
    """The exact integer of a figure shown as '55.90 GiB (60,019,239,695 B)' or '7,152 tokens'."""
    m = re.search(r"\(([\d,]+) B\)", text) or re.match(r"([\d,]+)", text)
    assert m, text
    return int(m.group(1).replace(",", ""))


@pytest.fixture(scope="module")
def gallery_plan() -> tuple[PlanRequest, Any, str]:
    req = PlanRequest(model=get_builtin("llama-3.1-8b"), gpu="h100", max_model_len=32768, users=64)
    result = plan(req)
    return req, result, render_html(plan_report(req, result, "kvcalc plan llama-3.1-8b --gpu h100"))


def test_headline_is_the_plans_json(gallery_plan: tuple[PlanRequest, Any, str]) -> None:
    _, result, html = gallery_plan
    p = result.to_dict()
    shown = headline(html)
    assert shown["one_request_fits"] == "YES" and shown["users_fit"] == "NO" and p["fits"] is False
    for key in ("num_blocks", "kv_cache_tokens", "max_sequences", "longest_context_at_batch", "kv_budget_bytes",
                "per_gpu_bytes", "weights_bytes", "gpu_count"):
        assert exact(shown[key]) == p[key], key
    assert shown["max_concurrency"] == f"{p['max_concurrency']:.2f}x"
    # The whole JSON rides along, equal to the plan's.
    assert embedded_json(html) == {"report": "plan", "plan": json.loads(json.dumps(p))}


def test_charts_carry_the_plans_figures(gallery_plan: tuple[PlanRequest, Any, str]) -> None:
    req, result, html = gallery_plan
    svgs = charts(html)
    assert set(svgs) == {"memory", "kv-vs-context", "concurrency-vs-context"}
    # Concurrency: each point is plan() at that context, the users line at 64, vLLM's cap at 1,024.
    conc = svgs["concurrency-vs-context"]
    assert conc.get("data-x-scale") == "log2" and conc.get("data-y-scale") == "log2"
    (points,) = series_points(conc).values()
    for n, seqs in points:
        assert seqs == plan(PlanRequest(model=req.model, gpu="h100", max_model_len=n, solve_tp=False)).max_sequences
    assert (32768, result.max_sequences) in points
    assert marks(conc) == {"users": 64, "cap": 1024, "context": 32768, "max-context": 131_072}
    ticks = [t.text for t in conc.iter(f"{SVG}text") if (t.get("class") or "") == "tick x"]
    assert ticks == ["1k", "2k", "4k", "8k", "16k", "32k", "64k", "128k"]
    # KV vs context: bf16 and fp8 curves for the 64 users, the budget line at kv_budget_bytes.
    kv = svgs["kv-vs-context"]
    curves = series_points(kv)
    assert list(curves) == ["bf16 KV", "fp8_e4m3 KV"]
    assert (32768, result.per_gpu_bytes) in curves["bf16 KV"]
    assert marks(kv)["budget"] == result.kv_budget_bytes
    # The axis stops at 4x the budget (250 GiB here: 4 x 55.90 GiB, ticks of 50 GiB) so the crossing
    # is readable; points above sit hollow on the edge with their exact value.
    ytop = max(int(t.get("data-value", "")) for t in kv.iter(f"{SVG}text") if t.get("class") == "tick y")
    assert result.kv_budget_bytes < ytop <= 4 * result.kv_budget_bytes + 50 * GiB
    above = [int(c.get("data-y", "")) for c in kv.iter(f"{SVG}circle") if c.get("class") == "above"]
    assert above and min(above) > ytop and 64 * 32768 * 131_072 in above  # bf16 at 32k: 256 GiB
    # Memory: the segments add up to the GPU's memory, the KV segment is the budget.
    bar = svgs["memory"]
    seg = {r.get("data-kind"): int(r.get("data-bytes", "")) for r in bar.iter(f"{SVG}rect")}
    assert sum(seg.values()) == int(bar.get("data-total-bytes", "")) == result.budget["total_bytes"]
    assert seg["kv"] == result.kv_budget_bytes and seg["weights"] == result.weights_per_gpu_bytes
    # vLLM: what --gpu-memory-utilization 0.92 leaves out is total - ceil(total x 0.92).
    assert seg["free"] == result.budget["total_bytes"] - result.budget["requested_bytes"]


def test_page_asks_for_nothing(gallery_plan: tuple[PlanRequest, Any, str]) -> None:
    html = gallery_plan[2]
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert not re.search(r"<(link|img|iframe|object|embed)\b", html)
    assert not re.search(r"<script(?![^>]*application/json)", html)
    # No attribute holds a URL but the SVG namespace (an identifier, never loaded); URLs in the
    # sources column are text.
    assert not re.search(r"\b(?:src|href)=", html)
    assert set(re.findall(r'\w+="(https?://[^"]*)"', html)) == {"http://www.w3.org/2000/svg"}


def test_memory_segments_add_up_for_each_engine() -> None:
    for engine in ("vllm", "sglang", "trtllm", "llama.cpp", "hf"):
        p = plan(PlanRequest(model=get_builtin("llama-3-8b"), gpu="a100-80gb", engine=engine, max_model_len=8192))
        segs, total = memory_segments(p.to_dict())
        assert total == p.budget["total_bytes"] and sum(s.bytes for s in segs) == total, engine
        assert [s.kind for s in segs][-2:] == ["kv", "free"]
    # llama-3-70b's 141 GB of bf16 weights on one L4: the KV budget is negative; the segments still
    # sum to the total, and the rest is what --gpu-memory-utilization 0.92 leaves out.
    p = plan(PlanRequest(model=get_builtin("llama-3-70b"), gpu="l4", max_model_len=8192))
    segs, total = memory_segments(p.to_dict())
    by_kind = {s.kind: s.bytes for s in segs}
    assert p.kv_budget_bytes < 0 and by_kind["kv"] == p.kv_budget_bytes and sum(by_kind.values()) == total
    assert by_kind["free"] == p.budget["total_bytes"] - p.budget["requested_bytes"]
    assert plan_report(PlanRequest(model=get_builtin("llama-3-70b"), gpu="l4", max_model_len=8192), p,
                       "x").verdict == "NO: memory: nothing left for the KV cache after weights and overheads"
    # --kv-budget alone: no memory model, no total; the KV segment is the given budget.
    p = plan(PlanRequest(model=get_builtin("llama-3-8b"), kv_budget_bytes=20 * GiB, max_model_len=8192))
    segs, total = memory_segments(p.to_dict())
    assert total is None and segs[-1].bytes == 20 * GiB


def test_plan_report_option_writes_the_page(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "plan.html"
    args = ("plan", "qwen3-32b", "--gpu", "h200:2", "--context", "32768", "--users", "16", "--json")
    plain = cli(*args)
    res = cli(*args, "--report", str(out))
    assert res.exit_code == 0, res.stderr
    assert res.stdout == plain.stdout and f"wrote {out}" in res.stderr
    html = out.read_text(encoding="utf-8")
    assert embedded_json(html)["plan"] == res.json()
    # The command that produced it, as typed (parameters from the command line, canonical flag names).
    assert f"kvcalc plan qwen3-32b --gpu h200:2 --max-model-len 32768 --users 16 --json --report {out}" in html
    # The model's 40,960-token maximum is marked on the context charts.
    assert marks(charts(html)["kv-vs-context"])["max-context"] == 40_960


def test_report_needs_an_html_name(cli: Any, tmp_path: Path) -> None:
    res = cli("plan", "llama-3-8b", "--kv-budget", "20GiB", "--report", str(tmp_path / "r.pdf"))
    assert res.exit_code != 0 and res.stdout == ""
    assert res.stderr.startswith("Error:") and "--report" in res.stderr and ".html" in res.stderr


def test_sglang_log_line_is_quoted_verbatim_and_annotated(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "s.html"
    res = cli("plan", "llama-3-8b", "--gpu", "h100", "--engine", "sglang", "--context", "8192", "--report", str(out))
    assert res.exit_code == 0, res.stderr
    p = plan(PlanRequest(model=get_builtin("llama-3-8b"), gpu="h100", engine="sglang", max_model_len=8192))
    line = next(x for x in p.log_lines if "K size" in x)
    html = out.read_text()
    assert line in html  # verbatim: SGLang's own words, "GB" and all
    # SGLang's "GB" is 2^30 bytes (GB = 1024 * 1024 * 1024 in sglang/srt/mem_cache/memory_pool.py, 0.5.23).
    k = re.search(r"K size: ([\d.]+) GB", line)
    assert k
    note = unit_note("sglang", line)
    assert note and f"{k.group(1)} GiB = {float(k.group(1)) * 2**30 / 10**9:,.2f} GB" in note and escape(note) in html
    assert "is GiB, 2^30 bytes" in res.stdout  # the terminal table says so too
    assert unit_note("vllm", "Available KV cache memory: 55.90 GiB") is None


def test_sweep_report_carries_the_cells(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "sweep.html"
    res = cli("sweep", "qwen3-32b", "llama-3-8b", "--seq-len", "1k..128k", "--kv-dtype", "bf16,fp8", "--batch", "8",
              "--gpu", "h100", "--report", str(out), "--json")
    assert res.exit_code == 0, res.stderr
    data = res.json()
    html = out.read_text()
    assert embedded_json(html)["sweep"] == data
    svg = charts(html)["kv-vs-context"]
    drawn = series_points(svg)
    for c in data["cells"]:
        label = f"{c['model']} {c['kv_dtype']}"
        assert (c["seq_len"], c["per_gpu_bytes"]) in drawn[label]
    assert marks(svg)["capacity"] == data["capacity_bytes_per_gpu"]
    v = {g.get("data-label"): int(g.get("data-value", "")) for g in svg.iter(f"{SVG}g") if g.get("class") == "mark v"}
    assert v == {"qwen3-32b maximum context 40,960": 40_960, "llama-3-8b maximum context 8,192": 8192}
    # The answer table: the longest swept context within an H100, per series, from the cells.
    answer = dict(re.findall(r'<tr data-series="([^"]+)"><td>[^<]*</td><td class="num" data-key="longest_fitting">'
                             r"([^<]*)</td>", html))
    # qwen3-32b in fp8 fits an H100 at 64k, but its maximum context is 40,960: 32k is the answer.
    assert answer["qwen3-32b fp8_e4m3"] == "32,768 tokens"
    for label in drawn:
        model, dtype = label.split(" ")
        fitting = [c["seq_len"] for c in data["cells"] if c["model"] == model and c["kv_dtype"] == dtype
                   and not c["exceeds"] and c["seq_len"] <= data["model_max_context"][model]]
        assert answer[label] == (f"{max(fitting):,} tokens" if fitting else "none")


def test_sweep_report_from_the_core() -> None:
    from kvcalc.show.sweep import sweep

    result = sweep([get_builtin("llama-3-8b")], [1024, 2048], [1], ["bf16"], capacity_bytes_per_gpu=300 * 2**20)
    r = sweep_report(result, "kvcalc sweep llama-3-8b")
    # 131,072 B/token: 1k = 128 MiB fits 300 MiB, 2k = 256 MiB fits too.
    assert r.lines[0].points == [(1024, 128 * 2**20), (2048, 256 * 2**20)] and r.lines[0].longest_fitting == 2048
    assert r.max_context_marks == {}  # 8,192 is outside 1k..2k


def test_report_quotes_the_command_as_typed(tmp_path: Path) -> None:
    # Run as a program, the page quotes argv itself (--context stays --context).
    import os
    import subprocess
    import sys

    out = tmp_path / "p.html"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    args = ["plan", "llama-3-8b", "--kv-budget", "20GiB", "--context", "4096", "--report", str(out)]
    done = subprocess.run([sys.executable, "-m", "kvcalc", *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert f'<pre class="command">kvcalc plan llama-3-8b --kv-budget 20GiB --context 4096 --report {out}</pre>' \
        in out.read_text()
