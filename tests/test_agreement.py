"""Agreement by construction, tested by property (issue 12): for any built-in model or test
config, engine, KV dtype (16-bit, fp8, int4, a GGUF type, a quantized cache) and TP / PP,

* ``estimate``'s per-request bytes (largest rank) = the planner's per-request reservation
  (``plan(...).per_gpu_bytes`` of one request; for vLLM also its layout's
  ``reserved_bytes_per_request``);
* = the bytes of the tensors ``verify`` lays out on that rank (pure Python, no allocation);
* and ``check-log`` fed the lines the planner says the engine would log finds every figure
  matching (vLLM's blocks / tokens / concurrency, SGLang's K and V sizes).

A failing example names the command pair that disagrees.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvcalc.engines import engine_names, get_engine
from kvcalc.engines.base import Workload
from kvcalc.errors import InvalidRequestError, UnsupportedByEngineError
from kvcalc.estimate import estimate
from kvcalc.measure.verify import plan_groups
from kvcalc.models import ModelConfig
from kvcalc.planner.logs import check_log
from kvcalc.planner.plan import PlanRequest, plan
from kvcalc.registry import builtin_names, get_builtin, load_model

FIXTURES = Path(__file__).parent / "fixtures"
MODELS = [*builtin_names(), *sorted(str(p) for p in FIXTURES.glob("*.json"))]
DTYPES = ["auto", "bf16", "fp8", "int4", "q8_0", "quanto-int4"]
BIG_BUDGET = 1 << 50


@cache
def _model(name: str) -> ModelConfig:
    return load_model(name) if name.endswith(".json") else get_builtin(name)


def _dtype_ok(engine: str, kv_dtype: str) -> bool:
    # A quantized cache is a transformers QuantizedCache: other engines have none.
    return not kv_dtype.startswith("quanto") or engine in ("hf", "neutral")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(MODELS), engine=st.sampled_from(engine_names()), kv_dtype=st.sampled_from(DTYPES),
       tp=st.sampled_from([1, 2, 4, 8]), pp=st.sampled_from([1, 2, 3]), seq_len=st.integers(1, 40_000))
def test_estimate_plan_verify_agree(model: str, engine: str, kv_dtype: str, tp: int, pp: int, seq_len: int) -> None:
    if not _dtype_ok(engine, kv_dtype):
        return
    m = _model(model)
    if pp > m.num_layers:
        return
    eng = get_engine(engine)
    try:
        est = estimate(m, seq_len, 1, kv_dtype, engine=engine, tp=tp, pp=pp).per_gpu_bytes
    except UnsupportedByEngineError:
        # A layer kind the engine does not serve (llama.cpp and a DSA indexer, vLLM and Mllama's
        # cross-attention): every command refuses it the same way, none prints a number.
        with pytest.raises(UnsupportedByEngineError):
            plan_groups(m, eng, kv_dtype, Workload(seq_len=seq_len), tp)
        if eng.plannable:
            with pytest.raises(UnsupportedByEngineError):
                plan(PlanRequest(model=m, engine=engine, kv_dtype=kv_dtype, kv_budget_bytes=BIG_BUDGET,
                                 max_model_len=seq_len, tp=tp, pp=pp, solve_tp=False, model_impl="transformers"))
        return
    if eng.plannable:
        # model_impl transformers: plan refuses architectures without the engine's own code
        # (kvcalc.engines.served); the arithmetic compared here is the same with its Transformers backend.
        p = plan(PlanRequest(model=m, engine=engine, kv_dtype=kv_dtype, kv_budget_bytes=BIG_BUDGET,
                             max_model_len=seq_len, tp=tp, pp=pp, solve_tp=False, model_impl="transformers"))
        assert p.per_gpu_bytes == est, f"estimate vs plan: {est:,} != {p.per_gpu_bytes:,}"
        if engine == "vllm":
            from kvcalc.engines.vllm_kv import reserved_bytes_per_request
            from kvcalc.layout import RankLayout

            layout = get_engine("vllm").vllm_layout(  # type: ignore[attr-defined]
                RankLayout(m, tp, pp), get_engine("vllm").resolve_kv_dtype(kv_dtype, m)[0], None)
            rules = get_engine("vllm").rules  # type: ignore[attr-defined]
            reserved = reserved_bytes_per_request(layout, seq_len, rules.in_flight_tokens(p.max_num_batched_tokens, pp))
            assert reserved == est, f"estimate vs plan's vLLM layout: {est:,} != {reserved:,}"
    if pp == 1:
        groups = plan_groups(m, eng, kv_dtype, Workload(seq_len=seq_len), tp)
        tensors = sum(g.tensor_per_layer * g.layers for g in groups)
        assert tensors == est, f"estimate vs verify: {est:,} != {tensors:,}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(builtin_names()), engine=st.sampled_from(["vllm", "sglang"]),
       kv_dtype=st.sampled_from(["auto", "fp8"]), tp=st.sampled_from([1, 2, 8]),
       budget_gib=st.integers(1, 400), seq_len=st.integers(16, 32_768))
def test_plan_and_check_log_agree(tmp_path_factory: object, model: str, engine: str, kv_dtype: str, tp: int,
                                  budget_gib: int, seq_len: int) -> None:
    """check-log on the lines plan says the engine would log: every figure matches."""
    m = get_builtin(model)
    try:
        # model_impl transformers: SGLang 0.5.23 has no own code for Falcon / GPT-NeoX (plan refuses
        # them by default, kvcalc.engines.served); its Transformers backend still uses SGLang's pool.
        p = plan(PlanRequest(model=m, engine=engine, kv_dtype=kv_dtype, kv_budget_bytes=budget_gib << 30,
                             max_model_len=seq_len, tp=tp, solve_tp=False, model_impl="transformers"))
    except InvalidRequestError:
        return  # a model vLLM cannot lay out (pages that do not divide): refused by both
    except UnsupportedByEngineError:
        return  # a layer kind the engine does not serve (vLLM and Mllama's cross-attention): no log to compare
    if not p.fits or not any("KV cache size" in x or "KV Cache is allocated" in x for x in p.log_lines):
        return  # nothing a log would compare (SGLang's split SWA pools log only their token counts)
    import tempfile

    rules = getattr(get_engine(engine), "rules", None)  # the vLLM release, named as vLLM prints it
    version = f"(v{rules.printed_version}) " if rules is not None else ""
    header = (f"Initializing a V1 LLM engine {version}with config: model='{m.name}', max_seq_len={seq_len}, "
              f"tensor_parallel_size={tp}\n" if engine == "vllm"
              else f"python -m sglang.launch_server --model-path {m.name} --tp {tp}\n")
    with tempfile.TemporaryDirectory() as d:
        log = Path(d) / "engine.log"
        log.write_text(header + "\n".join(p.log_lines) + "\n")
        r = check_log(log, m, kv_dtype=kv_dtype)
    assert r.checks, f"plan vs check-log: no figure checked in {p.log_lines}"
    bad = [c for c in r.checks if c.matches is False]
    assert not bad, f"plan vs check-log: {bad}"
