"""docs/gallery: every documented command's image exists; the sweep commands still draw the same series."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
GALLERY = ROOT / "docs" / "gallery"


def documented_commands() -> list[list[str]]:
    lines = (GALLERY / "regenerate.sh").read_text().splitlines()
    return [shlex.split(line)[1:] for line in lines if line.startswith("$KVCALC ")]


def screenshot_commands() -> list[list[str]]:
    """``$PY docs/gallery/screenshot.py REPORT.html OUT.png`` lines."""
    lines = (GALLERY / "regenerate.sh").read_text().splitlines()
    return [shlex.split(line)[1:] for line in lines if line.startswith("$PY docs/gallery/screenshot.py ")]


def plot_target(args: list[str]) -> str:
    flag = "--plot" if "--plot" in args else "--report"
    return args[args.index(flag) + 1]


def test_every_documented_command_has_its_image() -> None:
    cmds = documented_commands()
    assert len(cmds) >= 5
    for args in cmds:
        target = ROOT / plot_target(args)
        assert target.parent == GALLERY, args
        assert target.exists() and target.stat().st_size > 10_000, target
        if target.suffix == ".png":
            assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    shots = screenshot_commands()
    assert [Path(src).name for _, src, _ in shots] == ["plan_report.html"]
    for _, src, png in shots:
        assert (ROOT / src).exists() and (ROOT / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # and every image in the gallery comes from a documented command
    documented = {Path(plot_target(a)).name for a in cmds} | {Path(png).name for _, _, png in shots}
    assert {p.name for p in GALLERY.glob("*.png")} | {p.name for p in GALLERY.glob("*.html")} <= documented


@pytest.mark.parametrize("args", [a for a in documented_commands() if a[0] == "sweep"], ids=lambda a: plot_target(a))
def test_sweep_commands_run_and_draw_their_series(args: list[str], cli: Any, tmp_path: Path) -> None:
    # Re-run the documented command into an SVG and read its series back (the PNG itself is not parseable).
    pytest.importorskip("matplotlib")
    pytest.importorskip("kvcalc.planner.gpus")
    out = tmp_path / "g.svg"
    i = args.index("--plot")
    res = cli(*args[:i], "--plot", str(out), *args[i + 2:])
    assert res.exit_code == 0, res.stderr
    svg = out.read_text()
    series = re.findall(r'id="series: ([^"]*)"', svg)
    models = list(args[1:args.index("--seq-len")])
    dtypes = args[args.index("--kv-dtype") + 1].replace("fp8", "fp8_e4m3").split(",")
    assert series == [f"{m} {d}" for m in models for d in dtypes]
    # Every model whose maximum context is inside 1k..128k has it marked (llama-2-7b at 4,096,
    # mistral-7b-v0.1 at 32,768 in the six-model chart).
    marks = re.findall(r'id="vline: ([^"]*)"', svg)
    from kvcalc.registry import get_builtin

    inside = [m for m in models if get_builtin(m).max_position_embeddings < 131_072]
    assert [mark.split(" ")[0] for mark in marks] == inside


def test_gallery_report_is_current(cli: Any, tmp_path: Path) -> None:
    # The committed report holds the figures the documented command gives today.
    (args,) = [a for a in documented_commands() if "--report" in a]
    out = tmp_path / "r.html"
    i = args.index("--report")
    res = cli(*args[:i], "--report", str(out), *args[i + 2:])
    assert res.exit_code == 0, res.stderr

    def data(path: Path) -> Any:
        m = re.search(r'id="kvcalc-data">(.*?)</script>', path.read_text(encoding="utf-8"), flags=re.S)
        assert m
        return json.loads(m.group(1).replace("<\\/", "</"))

    assert data(out) == data(ROOT / plot_target(args))


# The README section "Why your number differs from another calculator": each command, and its figure by hand.
WHY_DIFFERS = [
    # GQA: llama-3-70b 80 layers x 8 KV heads x 128 x 2 (K,V) x 2 B x 4096 = 1,342,177,280 B (1.25 GiB)
    (["estimate", "llama-3-70b", "--seq-len", "4096"], 80 * 8 * 128 * 2 * 2 * 4096),
    # ... and with all 64 heads cached (what a GQA-blind calculator does): 8x = 10 GiB
    (["estimate", "llama-3-70b", "--seq-len", "4096", "--kv-heads", "64"], 80 * 64 * 128 * 2 * 2 * 4096),
    # explicit head_dim: gemma-2-9b has head_dim 256, not hidden 3584 / 16 heads = 224; 42 layers x 8 KV heads,
    # 21 layers windowed at 4,096: (21 x 8192 + 21 x 4096) x 8 x 256 x 2 x 2 B
    (["estimate", "gemma-2-9b", "--seq-len", "8192", "--kv-dtype", "bf16"], (21 * 8192 + 21 * 4096) * 8 * 256 * 4),
    (["estimate", "gemma-2-9b", "--seq-len", "8192", "--kv-dtype", "bf16", "--head-dim", "224"],
     (21 * 8192 + 21 * 4096) * 8 * 224 * 4),
    # MLA: deepseek-v3 caches one 512-dim latent + 64-dim rope key per layer: 61 x 576 x 2 B = 70,272 B/token
    (["estimate", "deepseek-v3", "--seq-len", "32768"], 61 * 576 * 2 * 32768),
    # sliding window: mistral-7b-v0.1 holds 4,096 tokens (neutral) or 4,095 (transformers' sliding cache)
    (["estimate", "mistral-7b-v0.1", "--seq-len", "32768"], 4096 * 32 * 8 * 128 * 4),
    (["estimate", "mistral-7b-v0.1", "--seq-len", "32768", "--engine", "hf"], 4095 * 32 * 8 * 128 * 4),
    # engines: vLLM 0.34 rounds to 64-token blocks: cdiv(1000, 64) x 64 = 1,024 tokens x 131,072 B;
    # 0.20 to 16-token blocks: 1,008
    (["estimate", "llama-3-8b", "--seq-len", "1000", "--engine", "vllm"], 1024 * 131_072),
    (["estimate", "llama-3-8b", "--seq-len", "1000", "--engine", "vllm@0.20"], 1008 * 131_072),
    (["estimate", "llama-3-8b", "--seq-len", "1000"], 1000 * 131_072),
]


@pytest.mark.parametrize(("args", "want"), WHY_DIFFERS, ids=lambda x: " ".join(x) if isinstance(x, list) else "")
def test_why_numbers_differ_commands(args: list[str], want: int, cli: Any) -> None:
    res = cli(*args, "--json")
    assert res.exit_code == 0, res.stderr
    assert res.json()["total_bytes"] == want


def test_gib_vs_gb(cli: Any) -> None:
    # 1,342,177,280 B = 1.25 GiB (2^30) = 1.34 GB (10^9): seed 002 prints "1.34 GB" for this cache.
    assert "1.25 GiB" in cli("estimate", "llama-3-70b", "--seq-len", "4096").stdout
    assert "1.34 GB" in cli("estimate", "llama-3-70b", "--seq-len", "4096", "--units", "si").stdout
