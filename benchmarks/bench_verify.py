"""verify speed: Llama-3-70B at 8192 tokens x batch 8 with --layers-sample 1 on CPU (one 256 MiB layer
allocated, written and measured; target: at most 5 s end to end, torch import included)."""

from __future__ import annotations

import resource
import subprocess
import sys
import time


def run() -> dict[str, float]:
    from kvcalc.measure.verify import verify
    from kvcalc.registry import get_builtin

    argv = [sys.executable, "-m", "kvcalc", "verify", "llama-3-70b", "--seq-len", "8192", "--batch", "8",
            "--layers-sample", "1", "--json"]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    cold = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the cold run (user + system): what it costs on an idle host; wall time on a
    # shared host also counts time spent waiting for a core.
    cold_cpu = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    if done.returncode != 0:
        raise RuntimeError(f"kvcalc verify failed: {done.stderr.strip()}")

    model = get_builtin("llama-3-70b")
    verify(model, 8192, 8, layers_sample=1)  # warm: torch imported, code paths touched
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        result = verify(model, 8192, 8, layers_sample=1)
        best = min(best, time.perf_counter() - start)
    return {
        "verify_cli_cold_s": cold,
        "verify_cli_cold_cpu_s": cold_cpu,
        "verify_warm_s": best,
        "verify_sampled_bytes": float(result.allocated_bytes_peak),
        "verify_ratio": result.ratio,
    }


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value:.3f}")
