"""The tensors verify lays out: their bytes equal kvcalc's prediction exactly, for every built-in
model, engine and KV dtype, and their shapes are the engines' own (pure Python, no torch)."""

from __future__ import annotations

import importlib.util

import pytest

from kvcalc.dtypes import get_dtype
from kvcalc.engines import engine_names, get_policy
from kvcalc.engines.base import Workload
from kvcalc.errors import UnsupportedByEngineError
from kvcalc.estimate import estimate
from kvcalc.measure.layout import layer_tensors
from kvcalc.measure.verify import plan_groups
from kvcalc.models import ModelConfig
from kvcalc.registry import get_builtin

ENGINES = [e for e in engine_names()
           if importlib.util.find_spec(f"kvcalc.engines.{e.replace('-', '_').replace('.', '_')}")]
DTYPES = ["auto", "fp8", "fp8_per_tensor", "fp8_per_token_head", "int8", "int4", "q8_0", "q4_0"]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kv_dtype", DTYPES)
def test_tensor_bytes_equal_the_estimate(builtin_model: ModelConfig, engine: str, kv_dtype: str) -> None:
    for seq_len, batch, tp in ((1000, 3, 1), (4096, 1, 8)):
        try:
            est = estimate(builtin_model, seq_len, batch, kv_dtype, engine=engine, tp=tp)
        except UnsupportedByEngineError:
            pytest.skip(f"{engine} refuses a layer kind of {builtin_model.name} (e.g. llama.cpp and DSA)")
        groups = plan_groups(builtin_model, get_policy(engine), kv_dtype, Workload(seq_len=seq_len, batch=batch), tp)
        for g in groups:
            assert g.tensor_per_layer == g.predicted_per_layer, (g.spec, [t.describe() for t in g.tensors])
        assert sum(g.tensor_per_layer * g.layers for g in groups) == est.per_gpu_bytes


def test_llama_2_7b_hf_layout() -> None:
    # transformers: K and V [batch, kv_heads, tokens, head_dim] = [2, 32, 1024, 128] fp16:
    # 2 x 32 x 1024 x 128 x 2 B = 16 MiB each.
    spec = get_builtin("llama-2-7b").layer_specs[0]
    tensors = layer_tensors(spec, get_policy("hf"), get_dtype("fp16"), Workload(seq_len=1024, batch=2))
    assert [(t.name, t.shape, t.torch_dtype, t.nbytes) for t in tensors] == [
        ("keys", (2, 32, 1024, 128), "float16", 16_777_216),
        ("values", (2, 32, 1024, 128), "float16", 16_777_216),
    ]


def test_vllm_layout_is_blocks() -> None:
    # vLLM FlashAttention: [2, num_blocks, 16, H, d]; 1000 tokens -> cdiv(1000, 16) = 63 blocks per
    # sequence, x 3 sequences = 189 blocks; Llama-3-70B H = 8, d = 128, bf16.
    spec = get_builtin("llama-3-70b").layer_specs[0]
    (t,) = layer_tensors(spec, get_policy("vllm"), get_dtype("bf16"), Workload(seq_len=1000, batch=3))
    assert (t.shape, t.torch_dtype) == ((2, 189, 16, 8, 128), "bfloat16")
    assert t.nbytes == 2 * 189 * 16 * 8 * 128 * 2


def test_deepseek_mla_layouts() -> None:
    spec = get_builtin("deepseek-v3").layer_specs[0]
    work = Workload(seq_len=100, batch=1)
    hf = layer_tensors(spec, get_policy("hf"), get_dtype("bf16"), work)
    # transformers 5.x: keys [b, 1, T, kv_lora_rank 512], values [b, 1, T, qk_rope_head_dim 64].
    assert [t.shape for t in hf] == [(1, 1, 100, 512), (1, 1, 100, 64)]
    (vllm,) = layer_tensors(spec, get_policy("vllm"), get_dtype("bf16"), work)
    # vLLM MLA: block size 64, cdiv(100, 64) = 2 blocks, [2, 64, 576].
    assert vllm.shape == (2, 64, 576)
    (neutral,) = layer_tensors(spec, get_policy("neutral"), get_dtype("fp8"), work)
    assert (neutral.shape, neutral.torch_dtype) == ((1, 100, 576), "float8_e4m3fn")


def test_quantized_layouts() -> None:
    spec = get_builtin("llama-2-7b").layer_specs[0]
    work = Workload(seq_len=10, batch=1)
    neutral = get_policy("neutral")
    # int4: two values per byte, a row of 32 x 128 = 4096 values is 2048 B (uint8).
    k, v = layer_tensors(spec, neutral, get_dtype("int4"), work)
    assert (k.shape, k.torch_dtype) == ((1, 10, 2048), "uint8")
    # q8_0: 4096 / 32 = 128 blocks x 34 B = 4352 B per row (ggml-common.h block_q8_0).
    k, v = layer_tensors(spec, neutral, get_dtype("q8_0"), work)
    assert k.shape == (1, 10, 4352)
    # fp8 with per-tensor scales: two float32 scalars per layer (k_scale, v_scale).
    names = [(t.name, t.shape, t.torch_dtype) for t in layer_tensors(spec, neutral, get_dtype("fp8_per_tensor"), work)]
    assert names[2:] == [("k_scale", (1,), "float32"), ("v_scale", (1,), "float32")]
    # fp8 per token and head: float32 [b, T, H] for K and for V (4 B x 32 heads x 10 tokens each).
    tensors = layer_tensors(spec, neutral, get_dtype("fp8_per_token_head"), work)
    assert [(t.name, t.shape) for t in tensors[2:]] == [("k_scales", (1, 10, 32)), ("v_scales", (1, 10, 32))]
