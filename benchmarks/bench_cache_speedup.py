"""What the KV cache buys: generating N tokens with and without it on a small random-weight decoder
(kvcalc.show.bench; 4 layers, d_model 256, 4 heads, vocab 1024, fp32, CPU, 1 thread), for N doubling
from 32 to 512. Figures: ms per token each way, the measured speedup, and the exact K/V projection
ratio (N+1)/2 beside it. Timings are best of 2 runs, wall clock; never asserted in a test.

`python benchmarks/bench_cache_speedup.py` prints them; `python benchmarks/run.py --only cache_speedup`
adds them to benchmarks/results/latest.json.
"""

from __future__ import annotations

N_VALUES = (32, 64, 128, 256, 512)


def run() -> dict[str, float]:
    from kvcalc.show.bench import BenchConfig, run_bench

    result = run_bench(BenchConfig(n_values=N_VALUES, repeats=2))
    out: dict[str, float] = {}
    for r in result.rows:
        out[f"N{r.n_tokens}_cached_ms_per_token"] = round(r.cached_ms_per_token, 3)
        out[f"N{r.n_tokens}_uncached_ms_per_token"] = round(r.uncached_ms_per_token, 3)
        out[f"N{r.n_tokens}_speedup"] = round(r.speedup, 2)
        out[f"N{r.n_tokens}_projection_ratio"] = r.projection_ratio_num / r.projection_ratio_den
    return out


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    for key, value in run().items():
        print(f"{key:32} {value}")
