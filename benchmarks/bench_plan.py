"""Planning speed: every catalog GPU x TP {1, 2, 4, 8} x KV dtype {bf16, fp8, int4} for one model,
in-process (target: at most 200 ms for the whole sweep)."""

from __future__ import annotations

import time


def run() -> dict[str, float]:
    from kvcalc.planner.gpus import all_gpus
    from kvcalc.planner.plan import PlanRequest, plan
    from kvcalc.registry import get_builtin

    model = get_builtin("llama-3-70b")
    gpus = all_gpus()
    plan(PlanRequest(model=model, gpu="h100:1", max_model_len=8192))  # warm imports and the catalog
    count = 0
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        count = 0
        for gpu in gpus:
            for tp in (1, 2, 4, 8):
                for kv in ("bf16", "fp8", "int4"):
                    plan(PlanRequest(model=model, gpu=f"{gpu.name}:{tp}", kv_dtype=kv, max_model_len=8192))
                    count += 1
        best = min(best, time.perf_counter() - start)
    return {"plan_sweep_ms": best * 1000, "plans": float(count), "per_plan_ms": best * 1000 / count}


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value:.3f}")
