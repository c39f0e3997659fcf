"""docs/gallery: every documented command's image exists; the sweep commands still draw the same series."""

from __future__ import annotations

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


def plot_target(args: list[str]) -> str:
    return args[args.index("--plot") + 1]


def test_every_documented_command_has_its_image() -> None:
    cmds = documented_commands()
    assert len(cmds) >= 4
    for args in cmds:
        target = ROOT / plot_target(args)
        assert target.parent == GALLERY, args
        assert target.exists() and target.stat().st_size > 10_000, target
        assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # and every image in the gallery comes from a documented command
    documented = {Path(plot_target(a)).name for a in cmds}
    assert {p.name for p in GALLERY.glob("*.png")} <= documented


@pytest.mark.parametrize("args", [a for a in documented_commands() if a[0] == "sweep"], ids=lambda a: plot_target(a))
def test_sweep_commands_run_and_draw_their_series(args: list[str], cli: Any, tmp_path: Path) -> None:
    # Re-run the documented command into an SVG and read its series back (the PNG itself is not parseable).
    pytest.importorskip("matplotlib")
    pytest.importorskip("kvcalc.planner.gpus")
    out = tmp_path / "g.svg"
    i = args.index("--plot")
    res = cli(*args[:i], "--plot", str(out), *args[i + 2:])
    assert res.exit_code == 0, res.stderr
    series = re.findall(r'id="series: ([^"]*)"', out.read_text())
    models = list(args[1:args.index("--seq-len")])
    dtypes = args[args.index("--kv-dtype") + 1].replace("fp8", "fp8_e4m3").split(",")
    assert series == [f"{m} {d}" for m in models for d in dtypes]
