"""Issue 12's symptom table, one test per row; each failed on the code before the engine layer
(commit 980787d; row 7, the weights' parameter count, belongs to planner/weights.py, another
issue). Only names that existed then are imported, so the file runs against both. Arithmetic in
comments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kvcalc.engines import get_policy
from kvcalc.engines.base import Workload
from kvcalc.estimate import estimate
from kvcalc.measure.verify import plan_groups
from kvcalc.planner.logs import check_log
from kvcalc.planner.plan import PlanRequest, plan
from kvcalc.registry import get_builtin
from kvcalc.units import GiB

# --- row 1: vLLM per-request bytes, estimate = plan, for hybrid Mamba models ------------------


@pytest.mark.parametrize(("model", "want"), [("nemotron-h-56b", 800_849_920), ("qwen3-next-80b-a3b", 254_017_536)])
def test_vllm_hybrid_request_bytes_agree(model: str, want: int) -> None:
    # vLLM raises a hybrid model's attention block so one page holds the Mamba state and pads the
    # state to that page (HybridAttentionMambaModelConfig); the planner's figure was the right one,
    # estimate used 16-token blocks and the unpadded state (795,164,672 / 240,844,800 before).
    m = get_builtin(model)
    est = estimate(m, 8192, engine="vllm@0.20").per_gpu_bytes
    p = plan(PlanRequest(model=m, kv_budget_bytes=40 * GiB, max_model_len=8192, engine="vllm@0.20"))
    assert est == p.per_gpu_bytes == want


# --- row 2: verify's layout counts the quantized cache's residual ----------------------------

def test_verify_layout_counts_the_quantized_residual() -> None:
    # llama-3-8b, 4,096 tokens, quanto-int4 (group 64, residual 128): 127 newest tokens in bf16:
    # 127 x 2 x 8 heads x 128 x 2 B = 520,192 B per layer; 3,969 quantized tokens: 1,024 values
    # = 16 groups x (32 B + 2 x 2 B scale/zero) = 576 B for K, the same for V: 3,969 x 1,152 =
    # 4,572,288 B; (520,192 + 4,572,288) x 32 layers = 162,959,360 B (tensors were 150,994,944).
    m = get_builtin("llama-3-8b")
    groups = plan_groups(m, get_policy("hf"), "quanto-int4", Workload(seq_len=4096), 1)
    tensors = sum(g.tensor_per_layer * g.layers for g in groups)
    assert tensors == estimate(m, 4096, kv_dtype="quanto-int4", engine="hf").per_gpu_bytes == 162_959_360
    assert any(t.name.startswith("residual.") for t in groups[0].tensors)


# --- row 3: a Mamba state is a per-request cost, not a per-token one ------------------------

def test_trtllm_tokens_exclude_states() -> None:
    # nemotron-h-56b: 10 attention layers x 8 heads x 128 x 2 x 2 B = 40,960 B per token;
    # 40 GiB // 40,960 = 1,048,576 tokens (it printed 93: the states were counted per token).
    p = plan(PlanRequest(model=get_builtin("nemotron-h-56b"), engine="trtllm", kv_budget_bytes=40 * GiB,
                         max_model_len=8192))
    assert p.kv_cache_tokens == 40 * GiB // 40_960 == 1_048_576
    assert p.kv_cache_tokens >= p.max_sequences * 8192
    assert p.num_blocks == 1_048_576 // 32


# --- row 4: one alias table -------------------------------------------------------------------

def test_engine_aliases_are_one_table(cli: Any) -> None:
    res = cli("plan", "llama-3-8b", "--gpu", "h100", "--engine", "tensorrt-llm", "--free-gpu-memory-fraction",
              "0.8", "--context", "8192", "--json")
    assert res.exit_code == 0, res.stderr
    assert res.json()["budget"]["fraction"] == "0.8" and res.json()["engine"] == "trtllm"
    bad = cli("plan", "llama-3-8b", "--gpu", "h100", "--engine", "sglang", "--free-gpu-memory-fraction", "0.8")
    assert bad.exit_code != 0 and "--free-gpu-memory-fraction" in bad.stderr and "trtllm" in bad.stderr


# --- row 5: SGLang's MLA log line ("KV size:") is checked -------------------------------------

def test_sglang_mla_log_is_checked(tmp_path: Path) -> None:
    # deepseek-v3: 61 layers x (512 + 64) x 2 B = 70,272 B per token slot (replicated at TP 8);
    # (100,000 + 1 dummy) x 70,272 B = 7,027,270,272 B = 6.5447 GiB (printed "6.54").
    log = tmp_path / "sglang.log"
    log.write_text("python -m sglang.launch_server --model-path deepseek-ai/DeepSeek-V3 --tp 8\n"
                   "KV Cache is allocated. #tokens: 100000, KV size: 6.54 GB\n")
    r = check_log(log)
    assert r.engine == "sglang" and r.model_resolved == "deepseek-v3"
    assert [(c.item, c.predicted, c.matches) for c in r.checks] == [("KV size (GiB)", "6.5447", True)]
    log.write_text(log.read_text().replace("6.54 GB", "7.54 GB"))
    assert check_log(log).all_match is False


# --- row 6: the engine's own dtype spellings ------------------------------------------------

def test_vllm_fp8_inc_log(tmp_path: Path) -> None:
    # fp8_inc is vLLM's fp8 E4M3 (1 byte): llama-3-8b page 16 x 8 x 128 x 2 x 1 B = 32,768 B x 32
    # layers = 1 MiB per block; 20 GiB -> 20,480 blocks -> 327,680 tokens.
    log = tmp_path / "vllm.log"
    log.write_text("Initializing a V1 LLM engine with config: model='meta-llama/Meta-Llama-3-8B', "
                   "max_seq_len=8192, tensor_parallel_size=1, kv_cache_dtype=fp8_inc\n"
                   "Available KV cache memory: 20.00 GiB\nGPU KV cache size: 327,680 tokens\n")
    r = check_log(log)
    assert r.checks and r.all_match
    log.write_text(log.read_text().replace("fp8_inc", "fp8_weird"))
    with pytest.raises(Exception, match="fp8_weird"):
        check_log(log)


# --- row 8: llama.cpp's sliding window, per architecture ------------------------------------

def test_llama_cpp_ignores_sliding_window_for_llama_arch() -> None:
    # Mistral-7B-v0.1 converts to llama.cpp's "llama" architecture, whose load_arch_hparams never
    # reads sliding_window (n_swa = 0): every layer holds n_ctx = 32,768 cells. q8_0: 1,024 values
    # = 32 blocks x 34 B = 1,088 B for K and for V; 32,768 x 2,176 B x 32 layers = 2,281,701,376 B
    # (2,176 MiB; it said 4,608 cells, 306 MiB).
    e = estimate(get_builtin("mistral-7b-v0.1"), 32768, engine="llama.cpp", kv_dtype="q8_0")
    assert [g.tokens_held for g in e.layers] == [32768]
    assert e.total_bytes == 32768 * 2176 * 32 == 2_281_701_376
    # Gemma-2 slides in llama.cpp: its 4,096-token window keeps PAD(4,096 + 512, 256) = 4,608 cells.
    g = estimate(get_builtin("gemma-2-9b"), 32768, engine="llama.cpp")
    assert sorted(x.tokens_held for x in g.layers) == [4608, 32768]
    # Phi-3: "Phi SWA is currently disabled" (models/phi3.cpp).
    phi = estimate(get_builtin("phi-3-mini"), 4096, engine="llama.cpp")
    assert {x.tokens_held for x in phi.layers} == {4096}
