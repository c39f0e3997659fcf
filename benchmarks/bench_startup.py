"""Cold start of `kvcalc estimate` (median of N process runs) beside `python -c pass`,
and the import time of `kvcalc` without torch.

Target (issue 2): median <= 100 ms for `kvcalc estimate llama-2-7b --seq-len 4096` with the
human table, on the CI machine (2 cores). Run: python -m benchmarks.bench_startup
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time

RUNS = int(os.environ.get("KVCALC_BENCH_RUNS", "15"))


def _kvcalc_cmd() -> list[str]:
    exe = shutil.which("kvcalc", path=os.path.dirname(sys.executable)) or shutil.which("kvcalc")
    return [exe] if exe else [sys.executable, "-m", "kvcalc"]


def _env() -> dict[str, str]:
    # A pip-installed package has its bytecode compiled at install time; an environment with
    # PYTHONDONTWRITEBYTECODE=1 would recompile every module on every run, which no user sees.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["COLUMNS"] = "110"
    return env


def _median_ms(argv: list[str], runs: int = RUNS) -> float:
    env = _env()
    subprocess.run(argv, capture_output=True, env=env, check=True)  # writes .pyc, warms the page cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, env=env, check=True)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _import_ms(runs: int = RUNS) -> float:
    code = (
        "import time, sys; t = time.perf_counter(); import kvcalc; "
        "d = (time.perf_counter() - t) * 1000; assert 'torch' not in sys.modules; print(d)"
    )
    values = [
        float(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env()
            ).stdout
        )
        for _ in range(runs)
    ]
    return statistics.median(values)


def run() -> dict[str, float]:
    kv = _kvcalc_cmd()
    baseline = _median_ms([sys.executable, "-c", "pass"])
    small = _median_ms([*kv, "estimate", "llama-2-7b", "--seq-len", "4096"])
    large = _median_ms([*kv, "estimate", "llama-2-70b", "--seq-len", "4096"])
    return {
        "python_c_pass_ms": round(baseline, 1),
        "estimate_llama2_7b_cold_ms": round(small, 1),
        "estimate_llama2_70b_cold_ms": round(large, 1),
        "estimate_cold_to_python_ratio": round(small / baseline, 2),
        "import_kvcalc_ms": round(_import_ms(), 1),
    }


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:32} {value}")
