"""Ollama as an engine: its defaults against llama.cpp's on the same inputs, its cache-type rules
(0.32: passed to llama-server, which refuses a quantized V without flash attention; 0.24: an f16
fallback with a warning), num_ctx x OLLAMA_NUM_PARALLEL, and the flags it does not pass.

Sources (github ollama/ollama): v0.32.15 @ b7871fc llm/llama_server.go:375-396, server/routes.go
:2049-2057, llm/server.go:111-116, envconfig/config.go:275; v0.24.0 @ c28ddc0 llm/server.go:175,
:225-271, fs/ggml/ggml.go:851-857 (cited in kvcalc/engines/ollama.py and ollama_0_24.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kvcalc.engines import engine_versions, get_engine
from kvcalc.errors import UnsupportedByEngineError
from kvcalc.planner.plan import PlanRequest, plan
from kvcalc.registry import get_builtin

MiB = 1 << 20
GiB = 1 << 30


def _plan(model: str, engine: str, **kw: Any) -> Any:
    return plan(PlanRequest(model=get_builtin(model), engine=engine, **kw))


def test_registered_with_versions() -> None:
    assert {"ollama@0.32", "ollama@0.24"} <= set(engine_versions())
    assert get_engine("ollama").version.startswith("Ollama 0.32.15")
    assert get_engine("ollama@0.24").version.startswith("Ollama 0.24.0")


@pytest.mark.parametrize(("gpu", "num_ctx"), [
    # routes.go:2049-2057: total VRAM >= 47 GiB -> 262,144; >= 23 GiB -> 32,768; else 4,096.
    ("rtx-4090", 32_768),        # 25,757,220,864 B = 23.99 GiB
    ("rtx-4090:2", 131_072),     # 47.98 GiB -> 262,144, cut to Llama-3.1-8B's trained 131,072
    ("l4", 4_096),               # 24,152,899,584 B = 22.49 GiB < 23 GiB
])
def test_default_num_ctx_by_vram(gpu: str, num_ctx: int) -> None:
    p = _plan("llama-3.1-8b", "ollama", gpu=gpu)
    assert p.max_model_len == num_ctx
    assert any("server/routes.go:2049-2057" in n for n in p.notes)
    # llama.cpp has no such default: the plan takes the model's maximum.
    assert _plan("llama-3.1-8b", "llama.cpp", gpu=gpu).max_model_len == 131_072


def test_num_ctx_above_the_trained_context_is_cut() -> None:
    # llm/server.go:111-116: num_ctx 200,000 > n_ctx_train 131,072 -> 131,072, with a warning.
    p = _plan("llama-3.1-8b", "ollama", kv_budget_bytes=64 * GiB, max_model_len=200_000)
    assert p.max_model_len == 131_072 and any("cut to the model's trained context" in n for n in p.notes)


def test_num_parallel_multiplies_num_ctx_like_llama_cpp_np() -> None:
    # llama_server.go:375-376: -c num_ctx x N -np N, non-unified: N streams of num_ctx cells. Llama-3.1-8B
    # f16: 32 layers x 8 x 128 x 2 B x 2 = 128 KiB a cell; 4 x 8,192 cells = 4 GiB, on both engines.
    oll = _plan("llama-3.1-8b", "ollama", kv_budget_bytes=20 * GiB, max_model_len=8192, parallel=4)
    lcpp = _plan("llama-3.1-8b", "llama.cpp", kv_budget_bytes=20 * GiB, max_model_len=8192, parallel=4)
    line = "llama_kv_cache:      CUDA0 KV buffer size =  4096.00 MiB"
    assert line in oll.log_lines and line in lcpp.log_lines
    assert any("OLLAMA_NUM_PARALLEL=4: -c 32,768" in n for n in oll.notes)


def test_sliding_cache_takes_ollamas_ubatch() -> None:
    # Gemma-2-9B (21 sliding layers of window 4,096, 21 full; 8 KV heads x 256: 8 KiB a cell a layer)
    # at 8,192 tokens. llama-server's default -ub 512: sliding cells min(8,192, PAD(4,096 + 512, 256))
    # = 4,608; Ollama passes -ub 1,024 above 4,096 tokens of -c (sched.go:857-866): PAD(5,120) = 5,120.
    # llama.cpp: 21 x 8,192 x 8 KiB + 21 x 4,608 x 8 KiB = 1,344 + 756 = 2,100 MiB; Ollama 1,344 + 840.
    kw: dict[str, Any] = {"kv_budget_bytes": 20 * GiB, "max_model_len": 8192, "parallel": 2, "kv_dtype": "f16"}
    lcpp = _plan("gemma-2-9b", "llama.cpp", **kw)
    oll = _plan("gemma-2-9b", "ollama", **kw)
    # -np 2: two streams each (each slot its own num_ctx cells), so twice the figures above.
    assert "llama_kv_cache:      CUDA0 KV buffer size =  4200.00 MiB" in lcpp.log_lines
    assert "llama_kv_cache:      CUDA0 KV buffer size =  4368.00 MiB" in oll.log_lines


def test_quantized_cache_type_rules() -> None:
    kw: dict[str, Any] = {"kv_budget_bytes": 20 * GiB, "max_model_len": 8192, "kv_dtype": "q4_0", "parallel": 2}
    # Ollama 0.32 passes --cache-type-v q4_0 and, OLLAMA_FLASH_ATTENTION unset, --flash-attn auto:
    # llama.cpp turns flash attention on. q4_0: 18 B per 32 values: 1,024 values = 576 B a cell a layer
    # for K and for V; 32 layers x 1,152 B x 16,384 cells = 576 MiB.
    p = _plan("llama-3.1-8b", "ollama", **kw)
    assert p.kv_dtype == "q4_0" and "llama_kv_cache:      CUDA0 KV buffer size =   576.00 MiB" in p.log_lines
    # OLLAMA_FLASH_ATTENTION=0 -> --flash-attn off: llama-server refuses, as llama.cpp does (no fallback).
    for engine in ("ollama", "llama.cpp"):
        with pytest.raises(UnsupportedByEngineError, match="requires flash_attn"):
            _plan("llama-3.1-8b", engine, flash_attn="off", **kw)
    # Ollama 0.24: without OLLAMA_FLASH_ATTENTION=1 the type is dropped with a warning: f16,
    # 32 x 4,096 B x 16,384 cells = 2,048 MiB.
    old = _plan("llama-3.1-8b", "ollama@0.24", **kw)
    assert old.kv_dtype == "fp16" and "llama_kv_cache:      CUDA0 KV buffer size =  2048.00 MiB" in old.log_lines
    assert any("OLLAMA_FLASH_ATTENTION must be enabled" in n for n in old.notes)
    assert _plan("llama-3.1-8b", "ollama@0.24", flash_attn="off", **kw).kv_dtype == "fp16"
    assert _plan("llama-3.1-8b", "ollama@0.24", flash_attn="on", **kw).kv_dtype == "q4_0"
    # fs/ggml/ggml.go:851-857: only f16, q8_0, q4_0; q5_1 is dropped even with flash attention.
    q51 = _plan("llama-3.1-8b", "ollama@0.24", flash_attn="on", **{**kw, "kv_dtype": "q5_1"})
    assert q51.kv_dtype == "fp16" and any("unsupported OLLAMA_KV_CACHE_TYPE" in n for n in q51.notes)


def test_ollama_0_24_keeps_full_sliding_caches() -> None:
    # The llama runner's llama_context_default_params: swa_full = true: Gemma-2-9B's sliding layers
    # hold all 8,192 cells: 42 x 8,192 x 8 KiB = 2,688 MiB.
    p = _plan("gemma-2-9b", "ollama@0.24", kv_budget_bytes=20 * GiB, max_model_len=8192, parallel=2,
              kv_dtype="f16")
    assert "llama_kv_cache:      CUDA0 KV buffer size =  5376.00 MiB" in p.log_lines


def test_per_device_on_two_gpus(cli: Any) -> None:
    # Ollama on 2 x RTX 4090 with num_gpu 60: the per-device table as llama.cpp's (the GPUs split by
    # free memory, equal here): act 60, i_gpu_start 21, (il - 21) / 60 < 0.5 for il - 21 <= 29: 30
    # layers on CUDA0, 29 and the output layer on CUDA1, 21 on the CPU.
    res = cli("plan", "llama-3-70b", "--engine", "ollama", "--gpu", "rtx-4090:2", "--num-ctx", "8192",
              "--num-gpu", "60", "--num-parallel", "1", "--kv-cache-type", "q8_0", "--weight-dtype", "q4_0", "--json")
    assert res.exit_code == 0, res.stderr
    d = {x["device"]: x for x in json.loads(res.stdout)["devices"]}
    assert (d["CUDA0"]["layers"], d["CUDA1"]["layers"], d["CPU"]["layers"]) == (30, 29, 21)
    # q8_0 K and V: 1,024 values = 32 x 34 B = 1,088 B each a cell: 30 x 8,192 x 2,176 B = 510 MiB.
    assert d["CUDA0"]["kv_bytes"] == 30 * 8192 * 2176


def test_flags_ollama_does_not_pass_are_refused(cli: Any) -> None:
    for flag in (["-ts", "3,2"], ["--kv-unified"], ["-nkvo"], ["-sm", "row"]):
        res = cli("plan", "llama-3-8b", "--engine", "ollama", "--kv-budget", "20GiB", *flag)
        assert res.exit_code == 2 and res.stdout == "" and "used with --engine llama.cpp" in res.stderr
    res = cli("plan", "llama-3-8b", "--engine", "vllm", "--kv-budget", "20GiB", "--num-parallel", "2")
    assert res.exit_code == 2 and "llama.cpp or ollama" in res.stderr


def test_estimate_says_when_ollama_cuts_the_context() -> None:
    """estimate --engine ollama past the trained context: Ollama cuts num_ctx to it (llm/server.go:111-116),
    so Llama-2-7B at 8,192 holds 4,096 tokens: 32 layers x 2 x 32 x 128 x 2 B x 4,096 = 2 GiB, and the
    warning names the cut instead of saying the cache still grows."""
    from kvcalc.estimate import estimate
    from kvcalc.registry import load_model

    e = estimate(load_model("llama-2-7b"), seq_len=8192, engine="ollama")
    assert e.total_bytes == 32 * 2 * 32 * 128 * 2 * 4096 == 2 * GiB
    assert any("ollama caches 4,096 tokens" in w for w in e.warnings)
    assert not any("still grows" in w for w in e.warnings)
