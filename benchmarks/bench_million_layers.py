"""Work per layer group, not per layer (issue 14): a 10**6-layer model built from two groups
(500,000 full-attention layers, then 250,000 x [sliding, full]), in-process, best of 3.

Figures in milliseconds. Goal: under 1 s each on the development machine for ``estimate`` (one call, and one call from
a YAML file with its validation), a ``sweep`` of 64 cells (8 contexts x 8 batches) and a
``simulate`` of 100,000 requests. ``plan`` on the same model is measured by ``bench_plan``'s
owner (the planner). ``python benchmarks/bench_million_layers.py`` prints the figures.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

YAML = """\
name: million-layers
dtype: bf16
max_position_embeddings: 131072
num_attention_heads: 32
hidden_size: 4096
layers:
  - repeat: 500000
    pattern:
      - {kind: full, num_kv_heads: 8, head_dim: 128}
  - repeat: 250000
    pattern:
      - {kind: sliding, num_kv_heads: 8, head_dim: 128, window: 4096}
      - {kind: full, num_kv_heads: 8, head_dim: 128}
"""


def _best(fn: Callable[[], object], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def run() -> dict[str, float]:
    from kvcalc.estimate import estimate
    from kvcalc.loader import load_model_file
    from kvcalc.show.simulate import parse_dist, simulate
    from kvcalc.show.sweep import sweep

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "million-layers.yaml"
        path.write_text(YAML)
        load_s = _best(lambda: load_model_file(path))
        model = load_model_file(path)
    assert model.num_layers == 10**6
    seqs = [1 << k for k in range(10, 18)]  # 1k .. 128k
    batches = [1 << k for k in range(8)]  # 1 .. 128
    prompt, output = parse_dist("uniform:100,1000", "--prompt-len"), parse_dist("uniform:10,500", "--output-len")
    figures = {
        "load_yaml_ms": load_s * 1000,
        "estimate_ms": _best(lambda: estimate(model, 131072, 8)) * 1000,
        "estimate_pp8_tp4_ms": _best(lambda: estimate(model, 131072, 8, tp=4, pp=8)) * 1000,
        "sweep_64_cells_ms": _best(lambda: sweep([model], seqs, batches, ["auto"])) * 1000,
        "simulate_100000_requests_ms": _best(lambda: simulate(model, requests=100_000, prompt_len=prompt,
                                                              output_len=output), repeats=1) * 1000,
    }
    # A check that the figures measured the per-group path: nothing expanded the 10**6 layers.
    figures["layers_expanded"] = float("layer_specs" in model.__dict__)
    return figures


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value:.3f}")
