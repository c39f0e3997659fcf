"""Cold start of `kvcalc plan` and `kvcalc estimate --config FILE` (median of N process runs),
beside `estimate` on a built-in and `python -c pass`: on the lean path (``kvcalc.cli.fast``: no
typer, no pydantic) and, for comparison, on the typer path (forced by adding a flag the lean path
does not take: `--shared-prefix-tokens 0`, `--tp 1`).

Target (issue 12): both at most 150 ms on the CI machine (2 cores), where `estimate` on a
built-in takes about 75 ms. Run: python -m benchmarks.bench_startup_plan
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.bench_startup import _kvcalc_cmd, _median_ms

ROOT = Path(__file__).resolve().parent.parent
CONFIG = str(ROOT / "tests" / "fixtures" / "meta-llama--Llama-3.1-8B.json")
YAML_CONFIG = str(ROOT / "model_configs" / "llama-3.1-8b.yaml")
"""A kvcalc YAML (the schema validated on the lean path), beside the Hugging Face config above."""


def million_layer_plan_ms() -> dict[str, float]:
    """``plan`` (each engine, PP 2, --users 10) on a model of 10**6 layers built from two layer
    groups, in process: the work is per layer group (issue 14's goal: under 1 s)."""
    import time

    from kvcalc.models import LayerGroup
    from kvcalc.planner.plan import PlanRequest, plan
    from kvcalc.registry import get_builtin

    base = get_builtin("gemma-2-9b")
    sliding, full = base.layer_specs[0], base.layer_specs[1]
    big = base.replace(layers=[LayerGroup(pattern=[sliding], repeat=500_000),
                               LayerGroup(pattern=[full], repeat=500_000)])
    out = {}
    for engine in ("vllm", "sglang", "trtllm", "llama.cpp", "hf"):
        start = time.perf_counter()
        plan(PlanRequest(model=big, engine=engine, kv_budget_bytes=1 << 50, max_model_len=4096, pp=2, users=10))
        out[f"plan_1e6_layers_{engine}_ms"] = (time.perf_counter() - start) * 1000
    return out


def run() -> dict[str, float]:
    kv = _kvcalc_cmd()
    plan = ["plan", "llama-3-8b", "--gpu", "h100", "--context", "8192"]
    est_cfg = ["estimate", "--config", CONFIG, "--seq-len", "4096"]
    est_yaml = ["estimate", "--config", YAML_CONFIG, "--seq-len", "4096"]
    out = {
        "python_c_pass_ms": _median_ms([sys.executable, "-c", "pass"]),
        "estimate_builtin_cold_ms": _median_ms([*kv, "estimate", "llama-2-7b", "--seq-len", "4096"]),
        "plan_table_cold_ms": _median_ms([*kv, *plan]),
        "plan_json_cold_ms": _median_ms([*kv, *plan, "--json"]),
        "estimate_config_cold_ms": _median_ms([*kv, *est_cfg]),
        "estimate_config_yaml_cold_ms": _median_ms([*kv, *est_yaml]),
        "plan_config_yaml_table_cold_ms": _median_ms([*kv, "plan", "--config", YAML_CONFIG, *plan[2:]]),
        # The same calls through typer (a flag only the typer command takes), for comparison.
        "plan_typer_path_ms": _median_ms([*kv, *plan, "--shared-prefix-tokens", "0"]),
        "estimate_config_typer_path_ms": _median_ms([*kv, *est_cfg, "--tp", "1"]),
    }
    out.update(million_layer_plan_ms())
    return {k: round(v, 1) for k, v in out.items()}


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:32} {value}")
