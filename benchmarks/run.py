"""One command for every benchmark: `python benchmarks/run.py [--out FILE] [--only NAME ...]`.

Prints each figure and writes them all as JSON (default benchmarks/results/latest.json) so
runs can be compared across commits. Each `bench_*.py` module here exposes `run() -> dict`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE)
        return out.stdout.strip()
    except OSError:
        return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "latest.json")
    parser.add_argument("--only", nargs="*", default=None, help="bench module names, e.g. startup plan")
    args = parser.parse_args()
    names = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    if args.only:
        names = [n for n in names if n in args.only]
    results: dict[str, object] = {
        "commit": _commit(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    for name in names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        print(f"== {name}", flush=True)
        try:
            figures = module.run()
        except Exception as exc:  # a missing optional dependency must not hide the others
            print(f"   skipped: {type(exc).__name__}: {exc}")
            results[name] = {"skipped": f"{type(exc).__name__}: {exc}"}
            continue
        for key, value in figures.items():
            print(f"   {key:40} {value}")
        results[name] = figures
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
