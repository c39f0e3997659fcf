"""The real thing: transformers builds the cache, kvcalc predicts its bytes exactly.

Each case takes a real config from tests/fixtures, shrinks it (few layers, tiny hidden /
intermediate / vocab sizes, short windows so that short sequences already slide), writes it as a
model folder, and gives the same folder to transformers and to kvcalc. transformers builds a
random-weight model from the config (no download), runs ``generate`` and the bytes of the returned
``DynamicCache`` must equal kvcalc's ``hf`` estimate; a ``StaticCache`` must equal ``hf-static``.
The int64 bookkeeping scalars are checked against ``bookkeeping_bytes``.

``generate`` with P prompt tokens and G new tokens leaves P + G - 1 positions in the cache.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import hf_fixture

from kvcalc.estimate import estimate
from kvcalc.registry import load_model

pytestmark = pytest.mark.transformers

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

PROMPT = 13
NEW = 6
CACHED = PROMPT + NEW - 1


def _fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(hf_fixture(name).read_text())
    return data


def _shrink(data: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = {k: v for k, v in data.items() if k not in ("quantization_config", "auto_map", "rope_scaling")}
    out.update({"vocab_size": 97, "intermediate_size": 32, "dtype": "float32", "torch_dtype": "float32",
                "tie_word_embeddings": False, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2})
    out.update(changes)
    return out


CASES: dict[str, tuple[str, dict[str, Any]]] = {
    # GQA 32 query / 8 KV heads, head_dim 128 kept (explicit head_dim; hidden 64).
    "llama-gqa": ("meta-llama--Llama-3.1-8B", {"num_hidden_layers": 3, "hidden_size": 64, "head_dim": 128}),
    # Sliding window on every layer; window 4096 shrunk to 8 so 18 cached tokens slide.
    "mistral-sliding": ("mistralai--Mistral-7B-v0.1",
                        {"num_hidden_layers": 3, "hidden_size": 64, "head_dim": 128, "sliding_window": 8}),
    # Qwen2 with use_sliding_window: layers from max_window_layers (2) on slide.
    "qwen2-sliding": ("Qwen--Qwen2.5-7B", {"num_hidden_layers": 4, "hidden_size": 56, "num_attention_heads": 28,
                                            "num_key_value_heads": 4, "head_dim": 128, "use_sliding_window": True,
                                            "sliding_window": 8, "max_window_layers": 2}),
    # Gemma-2: alternating sliding / global, implied by the family (no layer_types).
    "gemma2-hybrid": ("google--gemma-2-9b", {"num_hidden_layers": 4, "hidden_size": 64, "sliding_window": 8}),
    # GPT-2: MHA, head_dim = n_embd / n_head (12 heads x 8).
    "gpt2": ("openai-community--gpt2", {"n_layer": 2, "n_embd": 96, "n_inner": 32, "n_positions": 64}),
    # Falcon new_decoder_architecture: 8 query heads, 2 KV heads, cached broadcast to 8.
    "falcon-new": ("tiiuae--falcon-180B", {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 8,
                                           "num_kv_heads": 2}),
    # Falcon old layout (falcon-7b style): multi_query, one KV head.
    "falcon-mqa": ("tiiuae--falcon-180B", {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 8,
                                           "new_decoder_architecture": False, "multi_query": True,
                                           "num_kv_heads": None, "parallel_attn": True}),
    # Phi-3: any sliding_window makes every layer slide.
    "phi3-sliding": ("microsoft--Phi-3-mini-4k-instruct",
                     {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 8,
                      "num_key_value_heads": 8, "sliding_window": 8}),
    # DeepSeek-V3 MLA: latent 512 + rope 64 per token, one head; tiny MoE.
    "deepseek-v3-mla": ("deepseek-ai--DeepSeek-V3",
                        {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 4,
                         "q_lora_rank": 32,
                         "moe_intermediate_size": 16, "n_routed_experts": 4, "num_experts_per_tok": 2,
                         "n_group": 1, "topk_group": 1, "first_k_dense_replace": 1, "n_shared_experts": 1}),
    # Not from a fixture (none ships): Gemma-3 text with sliding_window_pattern (no layer_types),
    # Gemma-4 text with per-layer head_dim / KV heads and KV-sharing layers, Llama-4 text chunked.
    "gemma3-pattern": ("", {"model_type": "gemma3_text", "num_hidden_layers": 6, "hidden_size": 64,
                            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
                            "sliding_window": 8, "sliding_window_pattern": 3, "max_position_embeddings": 512}),
    "gemma4-shared": ("", {"model_type": "gemma4_text", "num_hidden_layers": 6, "hidden_size": 64,
                           "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
                           "global_head_dim": 64, "num_global_key_value_heads": 1, "attention_k_eq_v": True,
                           "sliding_window": 8, "num_kv_shared_layers": 2, "hidden_size_per_layer_input": 8,
                           "vocab_size_per_layer_input": 97, "max_position_embeddings": 512,
                           "layer_types": ["sliding_attention", "full_attention"] * 3}),
    "llama4-chunked": ("", {"model_type": "llama4_text", "num_hidden_layers": 4, "hidden_size": 64,
                            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
                            "attention_chunk_size": 8, "intermediate_size_mlp": 32, "num_local_experts": 2,
                            "max_position_embeddings": 512}),
    # Hybrids: only the attention layers grow; linear-attention / Mamba layers hold a conv state of
    # all conv_kernel columns in the model dtype and a recurrent state in float32 (bf16 models too).
    "qwen3next-linear-bf16": ("Qwen--Qwen3-Next-80B-A3B-Thinking",
                              {"num_hidden_layers": 4, "hidden_size": 64, "num_attention_heads": 4,
                               "num_key_value_heads": 2, "head_dim": 32, "linear_num_key_heads": 2,
                               "linear_num_value_heads": 4, "linear_key_head_dim": 16, "linear_value_head_dim": 16,
                               "linear_conv_kernel_dim": 4, "moe_intermediate_size": 16,
                               "shared_expert_intermediate_size": 16, "num_experts": 4, "num_experts_per_tok": 2,
                               "full_attention_interval": 2, "max_position_embeddings": 512, "layer_types": None,
                               "dtype": "bfloat16", "torch_dtype": "bfloat16"}),
    "nemotronh-mamba": ("nvidia--Nemotron-H-56B-Base-8K",
                        {"num_hidden_layers": 4, "hybrid_override_pattern": "M*M-", "hidden_size": 64,
                         "num_attention_heads": 4, "num_key_value_heads": 2, "attention_head_dim": 16, "head_dim": 16,
                         "mamba_num_heads": 4, "mamba_head_dim": 16, "n_groups": 2, "ssm_state_size": 8,
                         "conv_kernel": 4, "max_position_embeddings": 512, "expand": 1, "chunk_size": 8}),
}
STATEFUL = {"qwen3next-linear-bf16", "nemotronh-mamba"}


SLIDING = {"mistral-sliding", "qwen2-sliding", "gemma2-hybrid", "phi3-sliding", "gemma3-pattern",
           "gemma4-shared", "llama4-chunked"}


def _folder(tmp_path: Path, case: str) -> Path:
    fixture, changes = CASES[case]
    data = _shrink(_fixture(fixture) if fixture else {}, **changes)
    folder = tmp_path / case
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(data))
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One model per case for the whole module (building dominates the run time)."""
    models: dict[str, tuple[Path, Any]] = {}

    def get(case: str) -> tuple[Path, Any]:
        if case not in models:
            folder = _folder(tmp_path_factory.mktemp("hf"), case)
            models[case] = (folder, _model(folder))
        return models[case]

    return get


def _model(folder: Path) -> Any:
    config = transformers.AutoConfig.from_pretrained(str(folder))
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    model.eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model


def _payload_and_scalars(cache: Any) -> tuple[int, int]:
    payload = scalars = 0
    for layer in cache.layers:
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if t is not None:
                payload += t.numel() * t.element_size()
        for name in ("conv_states", "recurrent_states"):  # LinearAttentionLayer: {state index: tensor}
            states = getattr(layer, name, None)
            if isinstance(states, dict):
                payload += sum(t.numel() * t.element_size() for t in states.values() if isinstance(t, torch.Tensor))
        for name in ("_sliding_window_tensor", "cumulative_length"):
            t = getattr(layer, name, None)
            if isinstance(t, torch.Tensor):
                scalars += t.numel() * t.element_size()
    return payload, scalars


def _generate(model: Any, cache: Any = None) -> Any:
    ids = torch.arange(1, PROMPT + 1).unsqueeze(0) % 90 + 1
    kwargs: dict[str, Any] = {"max_new_tokens": NEW, "min_new_tokens": NEW, "do_sample": False}
    if cache is not None:
        kwargs["past_key_values"] = cache
    with torch.no_grad():
        out = model.generate(ids, return_dict_in_generate=True, **kwargs)
    assert out.sequences.shape[1] == PROMPT + NEW
    return out.past_key_values


@pytest.mark.parametrize("case", sorted(CASES))
def test_dynamic_cache_bytes_equal_hf_estimate(built: Any, case: str) -> None:
    folder, model = built(case)
    cache = _generate(model)
    payload, scalars = _payload_and_scalars(cache)
    est = estimate(load_model(str(folder)), CACHED, engine="hf")
    assert est.total_bytes == payload
    assert est.bookkeeping_bytes == scalars
    assert cache.get_seq_length() == CACHED
    neutral = estimate(load_model(str(folder)), CACHED).total_bytes
    if case in SLIDING:
        # The shrunk windows (8) are shorter than the 18 cached tokens: the cache really slid.
        assert payload < neutral
    elif case == "falcon-new":
        # 2 KV heads broadcast to 8 query heads before caching: 4x the engine-neutral figure.
        assert payload == 4 * neutral
    elif case in STATEFUL:
        # One more conv column than vLLM's (kernel - 1), and the recurrent state in float32.
        assert payload > neutral
    else:
        assert payload == neutral


@pytest.mark.parametrize("case", sorted(CASES))
def test_static_cache_bytes_equal_hf_static_estimate(built: Any, case: str) -> None:
    folder, model = built(case)
    max_cache_len = 24
    cache = transformers.StaticCache(config=model.config, max_cache_len=max_cache_len)
    cache = _generate(model, cache)
    payload, scalars = _payload_and_scalars(cache)
    est = estimate(load_model(str(folder)), max_cache_len, engine="hf-static")
    assert est.total_bytes == payload
    assert est.bookkeeping_bytes == scalars


def _fp8_bytes(cache: Any) -> int:
    total = 0
    for layer in cache.layers:
        for name in ("_quantized_keys", "_quantized_values"):
            values, scale = getattr(layer, name)
            total += values.numel() * values.element_size() + scale.numel() * scale.element_size()
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if t is not None:
                total += t.numel() * t.element_size()
    return total


def test_fp8_quantized_cache_equals_fp8_per_tensor(built: Any) -> None:
    # transformers Fp8QuantizedLayer: fp8 E4M3 values (1 B) and one float32 scale for K and one for V
    # per layer, frozen after the first update = kvcalc's fp8_per_tensor (8 B of scales per layer).
    folder, model = built("llama-gqa")
    cache = _generate(model, transformers.QuantizedCache(backend="fp8", config=model.config))
    est = estimate(load_model(str(folder)), CACHED, kv_dtype="fp8_per_tensor", engine="hf")
    assert est.total_bytes == _fp8_bytes(cache)
    assert est.scale_bytes == 3 * 8
