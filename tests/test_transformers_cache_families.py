"""Today's families: transformers 5.23 builds the cache, kvcalc predicts its bytes exactly.

As ``test_transformers_cache.py``: each case takes a real ``config.json`` from ``tests/fixtures``
(source in ``tests/fixtures/HF_CONFIG_SOURCES.md``; the fixture name is the case's first field),
shrinks it (few layers, tiny hidden sizes, short windows; the cache-shaping dims are kept where
cheap: latent 512 + rope 64, indexer key 128, head_dim 128 / 192 + 128, the real layer pattern),
builds a random-weight model and runs ``generate``. The bytes of the returned ``DynamicCache``
must equal kvcalc's ``hf`` estimate, a ``StaticCache`` ``hf-static``. The DSA indexer keys
(``DynamicIndexedLayer.indexer_keys``) are counted with the K/V payload, their int64
``indexer_cumulative_length`` with the bookkeeping scalars.

Multimodal wrappers (Gemma-4, Llama-4, Qwen3.5) are built from their ``text_config`` (the
language model that holds the cache); ``test_nested_config_reads_as_its_text_config`` checks that
kvcalc reads the wrapper file exactly as that text config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import hf_fixture

from kvcalc.estimate import estimate
from kvcalc.hf import model_from_hf, with_image_tokens
from kvcalc.registry import load_model

pytestmark = pytest.mark.transformers

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

PROMPT = 13
NEW = 6
CACHED = PROMPT + NEW - 1
_TINY_MOE = {"moe_intermediate_size": 16, "n_routed_experts": 4, "num_experts_per_tok": 2, "n_group": 1,
             "topk_group": 1, "first_k_dense_replace": 1, "n_shared_experts": 1}
_MLA = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 4,
        "q_lora_rank": 32, "qk_nope_head_dim": 16, "v_head_dim": 16, **_TINY_MOE}


def _text(name: str) -> dict[str, Any]:
    if not name:
        return {}
    data: dict[str, Any] = json.loads(hf_fixture(name).read_text())
    text = data.get("text_config")
    return dict(text) if isinstance(text, dict) and "num_hidden_layers" not in data else data


def _shrink(data: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = {k: v for k, v in data.items()
           if k not in ("quantization_config", "auto_map", "rope_scaling", "rope_parameters")}
    out.update({"vocab_size": 97, "intermediate_size": 32, "dtype": "float32", "torch_dtype": "float32",
                "tie_word_embeddings": False, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
                "max_position_embeddings": 512})
    out.update(changes)
    return {k: v for k, v in out.items() if v is not None}


CASES: dict[str, tuple[str, dict[str, Any]]] = {
    # DSA: latent 512 + rope 64 and one 128-value indexer key per token per layer.
    "deepseek-v3.2-dsa": ("deepseek-ai--DeepSeek-V3.2", {**_MLA, "index_n_heads": 4, "index_topk": 4}),
    # GLM-5 DSA; index_topk_freq 2 makes layer 2 a "shared" indexer layer: no indexer keys there.
    "glm-5-dsa-shared": ("zai-org--GLM-5", {**_MLA, "num_hidden_layers": 4, "index_n_heads": 4, "index_topk": 4,
                                            "index_topk_freq": 2, "head_dim": None, "qk_head_dim": None}),
    # Kimi-K2: DeepSeek-V3 geometry under model_type kimi_k2 (remote code, built as deepseek_v3 below).
    "kimi-k2-mla": ("moonshotai--Kimi-K2-Instruct", {**_MLA, "model_type": "deepseek_v3"}),
    # GLM-4.7-Flash: MLA under glm4_moe_lite (latent 512 + rope 64, v_head_dim 256 in the real file).
    "glm-4.7-flash-mla": ("zai-org--GLM-4.7-Flash", {**_MLA, "head_dim": None}),
    # GLM-4.7: plain GQA, 8 KV heads x 128.
    "glm-4.7-gqa": ("zai-org--GLM-4.7-FP8", {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 8,
                                             **_TINY_MOE}),
    # MiniMax-M2.5: GQA 8 x 128 with MoE.
    "minimax-m2.5": ("MiniMaxAI--MiniMax-M2.5", {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 16,
                                                 "num_local_experts": 4, "num_experts_per_tok": 2,
                                                 "rotary_dim": 16, "use_mtp": False}),
    # MiMo-V2-Flash: real hybrid_layer_pattern [0,1,1,1,1,0]; sliding layers 2 x 2 KV heads (swa_*),
    # K 192 / V 128; sliding_window_size 6 -> window 7, shorter than the 18 cached tokens.
    "mimo-v2-flash-swa": ("XiaomiMiMo--MiMo-V2-Flash",
                          {"num_hidden_layers": 6, "hidden_size": 64, "num_attention_heads": 8,
                           "num_key_value_heads": 2, "swa_num_attention_heads": 8, "swa_num_key_value_heads": 4,
                           "hybrid_layer_pattern": [0, 1, 1, 1, 1, 0], "moe_layer_freq": None,
                           "sliding_window_size": 6, "sliding_window": 6, "attention_chunk_size": None,
                           "layernorm_epsilon": None, "rms_norm_eps": 1e-5, **_TINY_MOE}),
    # Qwen3.5 dense (text_config): the real first 4 layer_types (3 Gated DeltaNet + 1 full).
    "qwen3.5-27b-gdn": ("Qwen--Qwen3.5-27B",
                        {"num_hidden_layers": 4, "hidden_size": 64, "num_attention_heads": 4,
                         "num_key_value_heads": 2, "head_dim": 32, "linear_num_key_heads": 2,
                         "linear_num_value_heads": 4, "linear_key_head_dim": 16, "linear_value_head_dim": 16,
                         "layer_types": ["linear_attention"] * 3 + ["full_attention"],
                         "dtype": "bfloat16", "torch_dtype": "bfloat16"}),
    # Qwen3.5 MoE (text_config).
    "qwen3.5-397b-gdn-moe": ("Qwen--Qwen3.5-397B-A17B",
                             {"num_hidden_layers": 4, "hidden_size": 64, "num_attention_heads": 4,
                              "num_key_value_heads": 2, "head_dim": 32, "linear_num_key_heads": 2,
                              "linear_num_value_heads": 4, "linear_key_head_dim": 16, "linear_value_head_dim": 16,
                              "layer_types": ["linear_attention"] * 3 + ["full_attention"], "num_experts": 4,
                              "num_experts_per_tok": 2, "moe_intermediate_size": 16,
                              "shared_expert_intermediate_size": 16}),
    # Llama-4 Scout (text_config): chunked layers, every 4th a global NoPE layer; chunk 8192 shrunk to 8.
    "llama-4-scout-chunked": ("meta-llama--Llama-4-Scout-17B-16E-Instruct",
                              {"num_hidden_layers": 4, "hidden_size": 64, "num_attention_heads": 4,
                               "num_key_value_heads": 2, "attention_chunk_size": 8, "intermediate_size_mlp": 32,
                               "num_local_experts": 2}),
    # Gemma-4 31B (text_config): real first 6 layer_types (5 sliding, 1 full); full layers use
    # global_head_dim and, with attention_k_eq_v, num_global_key_value_heads; K and V both cached.
    "gemma-4-31b-global": ("nvidia--Gemma-4-31B-IT-NVFP4",
                           {"num_hidden_layers": 6, "hidden_size": 64, "num_attention_heads": 4,
                            "num_key_value_heads": 2, "head_dim": 32, "global_head_dim": 64,
                            "num_global_key_value_heads": 1, "sliding_window": 8,
                            "layer_types": ["sliding_attention"] * 5 + ["full_attention"],
                            "vocab_size_per_layer_input": 97}),
    # Nemotron-3-Nano: nemotron_h with MoE layers ('E'); the real first 6 codes "MEMEM*".
    "nemotron-3-nano-moe": ("nvidia--NVIDIA-Nemotron-3-Nano-30B-A3B-BF16",
                            {"num_hidden_layers": 6, "hybrid_override_pattern": "MEMEM*", "hidden_size": 64,
                             "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                             "mamba_num_heads": 4, "mamba_head_dim": 16, "n_groups": 2, "ssm_state_size": 8,
                             "n_routed_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16,
                             "moe_shared_expert_intermediate_size": 16, "chunk_size": 8, "expand": 1}),
    # Synthetic (no real config.json found; see HF_CONFIG_SOURCES.md): the family's own keys, so that
    # kvcalc's family rules meet transformers' own defaults.
    # SmolLM3: use_sliding_window with no_rope_layers: only the NoPE layers (0 in the list) slide.
    "smollm3-nope-sliding": ("", {"model_type": "smollm3", "num_hidden_layers": 4, "hidden_size": 64,
                                  "num_attention_heads": 4, "num_key_value_heads": 2, "use_sliding_window": True,
                                  "sliding_window": 8, "no_rope_layers": [1, 1, 1, 0]}),
    # Cohere2: sliding_window_pattern default 4 (every 4th layer global); head_dim = hidden / heads.
    "cohere2-pattern": ("", {"model_type": "cohere2", "num_hidden_layers": 4, "hidden_size": 64,
                             "num_attention_heads": 4, "num_key_value_heads": 2, "sliding_window": 8}),
    # Exaone-4: sliding_window_pattern 4.
    "exaone4-pattern": ("", {"model_type": "exaone4", "num_hidden_layers": 4, "hidden_size": 64,
                             "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "sliding_window": 8,
                             "sliding_window_pattern": 4}),
    # Granite-4 hybrid: Mamba2 layers and attention layers by the legacy layer_types names.
    "granite4-hybrid": ("", {"model_type": "granitemoehybrid", "num_hidden_layers": 4, "hidden_size": 64,
                             "num_attention_heads": 4, "num_key_value_heads": 2,
                             "layer_types": ["mamba", "mamba", "attention", "mamba"], "mamba_n_heads": 4,
                             "mamba_d_head": 16, "mamba_n_groups": 2, "mamba_d_state": 8, "mamba_d_conv": 4,
                             "mamba_expand": 1, "mamba_chunk_size": 8, "num_local_experts": 2,
                             "num_experts_per_tok": 1, "shared_intermediate_size": 32,
                             "position_embedding_type": "rope", "dtype": "bfloat16", "torch_dtype": "bfloat16"}),
    # Qwen2-MoE: sliding only on even-indexed layers below max_window_layers (Qwen2MoeConfig).
    "qwen2-moe-sliding": ("", {"model_type": "qwen2_moe", "num_hidden_layers": 4, "hidden_size": 64,
                               "num_attention_heads": 4, "num_key_value_heads": 2, "use_sliding_window": True,
                               "sliding_window": 8, "max_window_layers": 3, "num_experts": 4,
                               "num_experts_per_tok": 2, "moe_intermediate_size": 16,
                               "shared_expert_intermediate_size": 16}),
    # Qwen3-MoE: no layer_types default of its own, so transformers' fallback slides every layer.
    "qwen3-moe-sliding": ("", {"model_type": "qwen3_moe", "num_hidden_layers": 3, "hidden_size": 64,
                               "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                               "use_sliding_window": True, "sliding_window": 8, "num_experts": 4,
                               "num_experts_per_tok": 2, "moe_intermediate_size": 16}),
    # Qwen3 with max_window_layers 0: zero is a value, every layer slides.
    "qwen3-window-layers-0": ("Qwen--Qwen3-8B", {"num_hidden_layers": 3, "hidden_size": 64, "num_attention_heads": 4,
                                                 "num_key_value_heads": 2, "head_dim": 16,
                                                 "use_sliding_window": True, "sliding_window": 8,
                                                 "max_window_layers": 0}),
    # gpt-oss without layer_types: GptOssConfig alternates sliding / full from layer 0.
    "gpt-oss-default-pattern": ("openai--gpt-oss-20b", {"num_hidden_layers": 4, "hidden_size": 64,
                                                        "num_attention_heads": 4, "num_key_value_heads": 2,
                                                        "head_dim": 16, "sliding_window": 8, "layer_types": None,
                                                        "num_local_experts": 4, "num_experts_per_tok": 2}),
    # Jamba: Mamba-1 layers (conv d_conv x expand x hidden, ssm expand x hidden x d_state) and attention
    # every attn_layer_period-th layer from attn_layer_offset.
    "jamba-mamba1": ("", {"model_type": "jamba", "num_hidden_layers": 4, "hidden_size": 64, "num_attention_heads": 4,
                          "num_key_value_heads": 2, "attn_layer_period": 4, "attn_layer_offset": 2,
                          "expert_layer_period": 2, "expert_layer_offset": 1, "num_experts": 2,
                          "num_experts_per_tok": 1, "mamba_d_state": 8, "mamba_d_conv": 4, "mamba_expand": 2,
                          "mamba_dt_rank": 8, "use_mamba_kernels": False,
                          "dtype": "bfloat16", "torch_dtype": "bfloat16"}),
}
SLIDING = {"qwen2-moe-sliding", "qwen3-moe-sliding", "qwen3-window-layers-0", "gpt-oss-default-pattern",
           "mimo-v2-flash-swa", "llama-4-scout-chunked", "gemma-4-31b-global", "smollm3-nope-sliding",
           "cohere2-pattern", "exaone4-pattern"}
STATEFUL = {"jamba-mamba1", "qwen3.5-27b-gdn", "qwen3.5-397b-gdn-moe", "nemotron-3-nano-moe", "granite4-hybrid"}


def _folder(root: Path, case: str) -> Path:
    fixture, changes = CASES[case]
    folder = root / case
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(_shrink(_text(fixture), **changes)))
    return folder


def _model(folder: Path) -> Any:
    config = transformers.AutoConfig.from_pretrained(str(folder))
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    model.eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Any:
    models: dict[str, tuple[Path, Any]] = {}

    def get(case: str) -> tuple[Path, Any]:
        if case not in models:
            folder = _folder(tmp_path_factory.mktemp("hf"), case)
            models[case] = (folder, _model(folder))
        return models[case]

    return get


def _payload_and_scalars(cache: Any) -> tuple[int, int]:
    payload = scalars = 0
    for layer in cache.layers:
        for name in ("keys", "values", "indexer_keys"):
            t = getattr(layer, name, None)
            if isinstance(t, torch.Tensor):
                payload += t.numel() * t.element_size()
        for name in ("conv_states", "recurrent_states"):
            states = getattr(layer, name, None)
            if isinstance(states, dict):
                payload += sum(t.numel() * t.element_size() for t in states.values() if isinstance(t, torch.Tensor))
        for name in ("_sliding_window_tensor", "cumulative_length", "indexer_cumulative_length"):
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
    kv_model = load_model(str(folder))
    est = estimate(kv_model, CACHED, engine="hf")
    assert est.total_bytes == payload
    assert est.bookkeeping_bytes == scalars
    neutral = estimate(kv_model, CACHED).total_bytes
    if case == "kimi-k2-mla":
        # transformers builds the remote-code kimi_k2 as deepseek_v3; kvcalc reads the kimi_k2 spelling the same.
        data = json.loads((folder / "config.json").read_text()) | {"model_type": "kimi_k2"}
        assert estimate(model_from_hf(data, "kimi"), CACHED, engine="hf").total_bytes == payload
    if case in SLIDING:
        assert payload < neutral  # the shrunk windows really slid
    elif case in STATEFUL:
        assert payload > neutral  # all conv_kernel columns and a float32 recurrent state
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


@pytest.mark.parametrize("fixture", ["Qwen--Qwen3.5-27B", "nvidia--Gemma-4-31B-IT-NVFP4",
                                     "meta-llama--Llama-4-Scout-17B-16E-Instruct"])
def test_nested_config_reads_as_its_text_config(fixture: str) -> None:
    wrapper = json.loads(hf_fixture(fixture).read_text())
    nested = model_from_hf(wrapper, "wrapper")
    flat = model_from_hf(_text(fixture) | {"torch_dtype": "bfloat16"}, "text")
    assert nested.layer_specs == flat.layer_specs
    assert estimate(nested, 4096).total_bytes == estimate(flat, 4096).total_bytes


def _tiny_mllama() -> Any:
    # Synthetic (no real Llama-3.2-Vision config.json was found): one cross-attention layer of four, and a
    # vision tower of 2 tiles x (15 x 15 patches + 1 class token) = 452 vision tokens per image.
    text = {"model_type": "mllama_text_model", "vocab_size": 99, "hidden_size": 32, "intermediate_size": 37,
            "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 512, "cross_attention_layers": [1], "pad_token_id": 0, "bos_token_id": 1,
            "eos_token_id": 2}
    vision = {"image_size": 30, "patch_size": 2, "num_channels": 3, "hidden_size": 16,
              "intermediate_layers_indices": [0], "vision_output_dim": 32, "projection_dim": 32,
              "num_hidden_layers": 2, "num_global_layers": 1, "num_attention_heads": 4, "intermediate_size": 37,
              "supported_aspect_ratios": [[1, 1], [1, 2]], "max_num_tiles": 2}
    return transformers.MllamaConfig(text_config=text, vision_config=vision, image_token_index=98)


@pytest.mark.parametrize("with_image", [False, True])
def test_mllama_cross_attention_holds_the_vision_tokens(tmp_path: Path, with_image: bool) -> None:
    config = _tiny_mllama()
    torch.manual_seed(0)
    model = transformers.MllamaForConditionalGeneration(config).eval()
    ids = torch.tensor([[98, *range(3, 15)]])  # the image token, then 12 text tokens: 13 prompt tokens
    kwargs: dict[str, Any] = {"max_new_tokens": NEW, "min_new_tokens": NEW, "do_sample": False,
                              "return_dict_in_generate": True, "pad_token_id": 0, "eos_token_id": None}
    if with_image:
        kwargs |= {"pixel_values": torch.randn(1, 1, 2, 3, 30, 30), "aspect_ratio_ids": torch.tensor([[2]]),
                   "aspect_ratio_mask": torch.tensor([[[1, 1]]]),
                   "cross_attention_mask": torch.ones(1, PROMPT, 1, 2, dtype=torch.long)}
    with torch.no_grad():
        cache = model.generate(input_ids=ids, **kwargs).past_key_values
    payload, _ = _payload_and_scalars(cache)
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict() | {"torch_dtype": "float32"}))
    kv_model = load_model(str(tmp_path))
    if with_image:
        kv_model = with_image_tokens(kv_model, 2 * (15 * 15 + 1))
    est = estimate(kv_model, CACHED, engine="hf")
    assert est.total_bytes == payload
    # 3 self-attention layers x 18 tokens x 2 KV x 8 x 2 (K, V) x 4 B = 3 x 18 x 128; the cross layer
    # 452 x 128 with the image, 0 without.
    assert payload == 3 * CACHED * 128 + (452 * 128 if with_image else 0)
