"""``--engine vllm@0.20 / @0.33 / @0.34``: one module per release, each overriding only what
changed; ``estimate`` and ``plan`` answer with that release's rules and name it."""

from __future__ import annotations

from typing import Any

from kvcalc.engines import engine_versions, get_engine
from kvcalc.engines.vllm import VllmEngine
from kvcalc.engines.vllm_0_20 import Vllm020Engine
from kvcalc.engines.vllm_0_33 import Vllm033Engine
from kvcalc.engines.vllm_0_34 import Vllm034Engine
from kvcalc.estimate import estimate
from kvcalc.planner.plan import PlanRequest, plan
from kvcalc.registry import load_model
from kvcalc.units import GiB, MiB


def test_registry_names_each_release() -> None:
    from kvcalc.engines.vllm_0_19 import Vllm019Engine

    assert type(get_engine("vllm@0.20")) is Vllm020Engine and type(get_engine("vllm@0.19")) is Vllm019Engine
    assert type(get_engine("vllm@0.33")) is Vllm033Engine and type(get_engine("vllm@0.32")) is Vllm033Engine
    assert type(get_engine("vllm@0.34")) is Vllm034Engine
    assert {"vllm@0.20", "vllm@0.33", "vllm@0.34"} <= set(engine_versions())
    assert get_engine("vllm@0.34").version == "vLLM 0.34 (release 0.34.0)"
    assert issubclass(Vllm034Engine, Vllm033Engine) and issubclass(Vllm033Engine, Vllm020Engine)
    assert issubclass(Vllm020Engine, VllmEngine)


def _plan(engine: str, **kw: Any) -> Any:
    return plan(PlanRequest(model=load_model("llama-2-7b"), engine=engine, **kw))


def test_plan_fit_check_llama2_7b_1gib_per_release() -> None:
    """Llama-2-7B, 1 GiB, 4,096 tokens: 8 MiB blocks of 16 (32 MiB of 64 in 0.34). 0.20: 128
    blocks -> the longest context is 2,048; 0.33 holds back the null block: 127 x 16 = 2,032;
    0.34: 32 blocks of 64, 31 usable: 1,984. The plan names the release."""
    for engine, longest, blocks in (("vllm@0.20", 2048, 128), ("vllm@0.33", 2032, 128), ("vllm@0.34", 1984, 32)):
        p = _plan(engine, kv_budget_bytes=GiB, max_model_len=4096)
        assert (p.fits, p.estimated_max_model_len, p.num_blocks) == (False, longest, blocks), engine
        assert p.engine_version == get_engine(engine).version
    p16 = _plan("vllm@0.34", kv_budget_bytes=GiB, max_model_len=4096, block_size=16)
    assert p16.estimated_max_model_len == 2032


def test_estimate_sliding_in_flight_per_release() -> None:
    """Gemma-2-27B at 32,768 tokens with 8,192-token batches: a sliding layer holds (0.20)
    cdiv(4095 + 8192, 16) + 1 = 769 blocks = 12,304 tokens; (0.33) cdiv(4095 + 2 x 8192, 16) + 1 =
    1,281 blocks = 20,496 tokens; (0.34, block 64) cdiv(20,479, 64) + 1 = 321 blocks = 20,544."""
    m = load_model("gemma-2-27b")

    def held(engine: str) -> int:
        r = estimate(m, 32768, engine=engine)
        return next(row.tokens_held for row in r.layers if row.kind.startswith("sliding"))

    assert (held("vllm@0.20"), held("vllm@0.33"), held("vllm@0.34")) == (12304, 20496, 20544)


def test_estimate_and_plan_agree_on_one_request() -> None:
    """Llama-3.1-8B at 8,192 tokens, one group: estimate's per-request bytes = blocks a request x
    block bytes in the plan, for every release (0.34: 128 blocks of 64 x 131,072 B x 32 layers... =
    1 GiB as 0.20's 512 blocks of 16)."""
    m = load_model("llama-3.1-8b")
    for engine in ("vllm@0.20", "vllm@0.33", "vllm@0.34"):
        e = estimate(m, 8192, engine=engine)
        p = plan(PlanRequest(model=m, engine=engine, kv_budget_bytes=40 * GiB, max_model_len=8192))
        assert e.total_bytes == p.vllm["blocks_per_request"] * p.vllm["block_bytes"] == GiB, engine


def test_mamba_align_pages_in_estimate() -> None:
    """Nemotron-H-56B: 0.33 reserves 3 state pages a Mamba layer (align mode) where 0.20 reserves
    one; attention layers are the same, so the difference is 2 pages x the Mamba layers."""
    m = load_model("nemotron-h-56b")
    old = estimate(m, 8192, engine="vllm@0.20")
    new = estimate(m, 8192, engine="vllm@0.33")
    mamba_old = sum(r.total_bytes for r in old.layers if r.kind.startswith("state"))
    mamba_new = sum(r.total_bytes for r in new.layers if r.kind.startswith("state"))
    assert mamba_new == 3 * mamba_old
    assert old.total_bytes - mamba_old == new.total_bytes - mamba_new


def test_0_34_budget_margin_and_default_utilization() -> None:
    """0.34 defaults gpu_memory_utilization to 1.0 (extensible KV cache) and keeps max(1 GiB, 0.75 x
    activation) free: with kvcalc's 1.5 GiB activation the margin is 1.125 GiB =
    1,207,959,552 B, so KV = total - margin - weights - activation - non-torch."""
    m = load_model("llama-3.1-8b")
    # kvcalc's former 1.5 GiB / 0.5 GiB pinned: the subject is the margin, not the activation model.
    p = plan(PlanRequest(model=m, engine="vllm@0.34", gpu="h100", max_model_len=8192, activation_bytes=1536 * MiB,
                         non_torch_bytes=512 * MiB))
    b = p.budget
    assert b["fraction"] == "1.0"
    margin = 1536 * MiB * 3 // 4
    assert b["kv_budget_bytes"] == (b["total_bytes"] - margin - b["weights_bytes"] - b["activation_bytes"]
                                    - b["non_torch_bytes"])
    assert b["requested_bytes"] == b["total_bytes"] and b["reserve_bytes"] == margin
    # An explicit 0.9 caps it below the margin-bound figure: vLLM 0.33's arithmetic again.
    p9 = plan(PlanRequest(model=m, engine="vllm@0.34", gpu="h100", max_model_len=8192, fraction="0.9"))
    p9_033 = plan(PlanRequest(model=m, engine="vllm@0.33", gpu="h100", max_model_len=8192, fraction="0.9"))
    assert p9.budget["kv_budget_bytes"] == p9_033.budget["kv_budget_bytes"]


def test_chunked_local_attention_estimated_as_full() -> None:
    """A Llama-4-style stack (three chunked layers of 8,192 to one full): vLLM turns the hybrid
    manager off, so at 65,536 tokens every layer holds cdiv(65536, 16) x 16 = 65,536 tokens (0.20),
    not min(8192 + 8192, L) as a chunked group would."""
    from kvcalc.loader import model_from_data

    m = model_from_data({
        "name": "chunked-test", "dtype": "bf16", "max_position_embeddings": 131072, "num_attention_heads": 32,
        "hidden_size": 4096,
        "layers": [{"repeat": 4, "pattern": [
            {"kind": "chunked", "num_kv_heads": 8, "head_dim": 128, "chunk_size": 8192},
            {"kind": "chunked", "num_kv_heads": 8, "head_dim": 128, "chunk_size": 8192},
            {"kind": "chunked", "num_kv_heads": 8, "head_dim": 128, "chunk_size": 8192},
            {"kind": "full", "num_kv_heads": 8, "head_dim": 128}]}],
    }, "test")
    e = estimate(m, 65536, engine="vllm@0.20")
    assert {g.tokens_held for g in e.layers} == {65536}
    assert e.total_bytes == 16 * 65536 * 8 * 128 * 2 * 2


def test_plan_picks_the_mla_block_by_gpu() -> None:
    """DeepSeek-V3 under 0.33: the plan's GPU picks the backend (platforms/cuda.py): B200 ->
    FLASHINFER_MLA, 32-token blocks of 32 x 1,152 B = 36,864 B; H100 with an fp8 cache -> FlashMLA, 64;
    an AMD GPU kvcalc has no backend table for -> Hopper's 16, said in the note."""
    m = load_model("deepseek-v3")
    b200 = plan(PlanRequest(model=m, engine="vllm@0.33", gpu="b200:8", max_model_len=8192))
    assert b200.vllm is not None and (b200.vllm["block_size"], b200.vllm["page_size_bytes"]) == (32, 36_864)
    fp8 = plan(PlanRequest(model=m, engine="vllm@0.33", gpu="h100:8", max_model_len=8192, kv_dtype="fp8"))
    assert fp8.vllm is not None and fp8.vllm["block_size"] == 64
    amd = plan(PlanRequest(model=m, engine="vllm@0.33", gpu="mi300x:8", max_model_len=8192))
    assert amd.vllm is not None and amd.vllm["block_size"] == 16
    assert any("Hopper's assumed" in n for n in amd.notes)


def test_vllm_019_has_no_cudagraph_term_and_util_09() -> None:
    """0.19.x: default utilization 0.9 (config/cache.py:41) and the CUDA-graph estimate not
    subtracted (envs.py:1654-1655: VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS defaults to "0");
    0.20.0 turned both (0.92, envs.py:1724-1726 default "1"). Same model, GPU and length: the
    0.19 budget is 0.20's plus the graph term, less 2 % of the device (0.92 - 0.90)."""
    from kvcalc.planner.plan import PlanRequest, plan

    m = load_model("llama-3-8b")
    p19 = plan(PlanRequest(model=m, engine="vllm@0.19", gpu="h100", max_model_len=8192))
    p20 = plan(PlanRequest(model=m, engine="vllm@0.20", gpu="h100", max_model_len=8192))
    assert [t["name"] for t in p19.budget_terms] == ["activation", "non_torch"]
    assert [t["name"] for t in p20.budget_terms] == ["activation", "cudagraph", "non_torch"]
    assert p19.budget["fraction"] == "0.9" and p20.budget["fraction"] == "0.92"
    graph = p20.budget_terms[1]["best_bytes"]
    assert p19.budget["activation_bytes"] == p20.budget["activation_bytes"] - graph
    total = p19.budget["total_bytes"]
    assert p19.budget["requested_bytes"] == -(-total * 9 // 10)
    more_requested = p20.budget["requested_bytes"] - p19.budget["requested_bytes"]
    assert p20.kv_budget_bytes - p19.kv_budget_bytes == more_requested - graph
