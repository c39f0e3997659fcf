"""Structure-first reading of today's configs: hand-derived neutral totals on the real files, the
refusals (exit 2, one ``Error:`` line naming the key, stdout empty), ``--assume-standard``, zeros
accepted, ``use_sliding_window: false``, cross-attention tokens, and the new kinds under each engine.

Every total below is at ``--seq-len 4096``, batch 1, bf16 (2 bytes), unless said otherwise; the
config source of each fixture is in ``tests/fixtures/HF_CONFIG_SOURCES.md``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import CliResult, hf_fixture

from kvcalc.errors import UnplacedConfigKeyError, UnsupportedByEngineError
from kvcalc.estimate import estimate
from kvcalc.hf import model_from_hf, with_image_tokens
from kvcalc.specs import CrossAttention, IndexedLatentAttention, LatentAttention, NoCache

SEQ = 4096


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(hf_fixture(name).read_text())
    return data


def _total(name: str, seq: int = SEQ, engine: str = "neutral", kv_dtype: str = "bf16", **changes: Any) -> int:
    data = _load(name) | changes
    return estimate(model_from_hf(data, name), seq, kv_dtype=kv_dtype, engine=engine).total_bytes


HAND_TOTALS = {
    # 61 DSA layers x (512 latent + 64 rope + 128 indexer key) x 2 B = 1,408 B/token/layer;
    # 61 x 4096 x 1408 = 351,797,248.
    "deepseek-ai--DeepSeek-V3.2": 351_797_248,
    # kimi_k2 (MLA under its own model_type): 61 x 4096 x (512 + 64) x 2 = 287,834,112.
    "moonshotai--Kimi-K2-Instruct": 287_834_112,
    # glm_moe_dsa, every layer its own indexer (index_topk_freq default 1): 78 x 4096 x 1408 = 449,839,104.
    "zai-org--GLM-5": 449_839_104,
    # glm4_moe_lite MLA: 47 x 4096 x 1152 = 221,773,824 (not 20 heads x (64 + 64) x 2 x 2 = 10,240 B).
    "zai-org--GLM-4.7-Flash": 221_773_824,
    # glm4_moe GQA: 92 x 4096 x 8 kv x 128 x 2 (K, V) x 2 B = 92 x 4096 x 4096 = 1,543,503,872.
    "zai-org--GLM-4.7-FP8": 1_543_503_872,
    # minimax_m2: 62 x 4096 x 4096 (8 x 128 x 2 x 2) = 1,040,187,392.
    "MiniMaxAI--MiniMax-M2.5": 1_040_187_392,
    # Qwen3-Coder-480B (shared_expert_intermediate_size 0 accepted): 62 x 4096 x 4096 = 1,040,187,392.
    "Qwen--Qwen3-Coder-480B-A35B-Instruct": 1_040_187_392,
    # MiMo-V2-Flash: 9 full layers (0, 5, 11, ..., 47) x 4096 x 4 kv x (192 + 128) x 2 B = 94,371,840;
    # 39 sliding layers, window sliding_window_size 128 + 1 = 129, x 8 swa kv x 320 x 2 B:
    # 39 x 129 x 5120 = 25,758,720; total 120,130,560.
    "XiaomiMiMo--MiMo-V2-Flash": 120_130_560,
    # mimo with use_sliding_window false: no window; 36 x 4096 x 8 x 128 x 2 x 2 = 603,979,776.
    "XiaomiMiMo--MiMo-7B-Base": 603_979_776,
    # Qwen3.5-27B: 16 full layers x 4096 x 4 kv x 256 x 2 x 2 = 268,435,456; 48 Gated DeltaNet layers x
    # (conv 3 x (2 x 16 x 128 + 48 x 128) = 30,720 + recurrent 48 x 128 x 128 = 786,432) x 2 B
    # = 48 x 1,634,304 = 78,446,592; total 346,882,048.
    "Qwen--Qwen3.5-27B": 346_882_048,
    # Qwen3.5-397B: 15 full x 4096 x 2 kv x 256 x 2 x 2 = 125,829,120; 45 GDN x (3 x (2 x 16 x 128 +
    # 64 x 128) + 64 x 128 x 128) x 2 = 45 x (36,864 + 1,048,576) x 2 = 97,689,600; total 223,518,720.
    "Qwen--Qwen3.5-397B-A17B": 223_518_720,
    # Llama-3.3-Nemotron-Super (remote code, transformers cannot build it): 49 attention blocks with
    # n_heads_in_group 8 -> 64 / 8 = 8 KV heads, 31 no_op blocks; 49 x 4096 x 8 x 128 x 2 x 2 = 822,083,584
    # (not 80 x 64 heads: 13x more).
    "nvidia--Llama-3_3-Nemotron-Super-49B-v1": 822_083_584,
    # Nemotron-3-Nano: 6 attention ('*') x 4096 x 2 x 128 x 2 x 2 = 25,165,824; 23 Mamba2 ('M') x
    # (conv 3 x (64 x 64 + 2 x 8 x 128) = 18,432 + ssm 64 x 64 x 128 = 524,288) x 2 B = 24,965,120;
    # 23 MoE ('E') nothing; total 50,130,944.
    "nvidia--NVIDIA-Nemotron-3-Nano-30B-A3B-BF16": 50_130_944,
    # Gemma-4 31B (text_config): 50 sliding x min(4096, 1024) x 16 kv x 256 x 2 x 2 = 838,860,800;
    # 10 full x 4096 x 4 global kv (attention_k_eq_v) x 512 global_head_dim x 2 x 2 = 335,544,320.
    "nvidia--Gemma-4-31B-IT-NVFP4": 1_174_405_120,
}


@pytest.mark.parametrize("name", sorted(HAND_TOTALS))
def test_neutral_total_by_hand(name: str) -> None:
    assert _total(name) == HAND_TOTALS[name]


def test_llama4_chunked_by_hand() -> None:
    # 36 chunked layers x min(16384, 8192) + 12 NoPE full layers x 16384, x 8 kv x 128 x 2 x 2 = 4096 B:
    # (294,912 + 196,608) x 4096 = 2,013,265,920 (Scout and Maverick share the attention geometry).
    assert _total("meta-llama--Llama-4-Scout-17B-16E-Instruct", 16384) == 2_013_265_920
    assert _total("meta-llama--Llama-4-Maverick-17B-128E-Instruct", 16384) == 2_013_265_920


def test_glm5_shared_indexer_layers_keep_no_indexer_key() -> None:
    # index_topk_freq 2, offset 2: layer i runs its indexer when max(i - 1, 0) % 2 == 0 (GlmMoeDsaConfig).
    model = model_from_hf(_load("zai-org--GLM-5") | {"index_topk_freq": 2}, "glm5")
    flags = [isinstance(s, IndexedLatentAttention) for s in model.layer_specs]
    assert flags[:5] == [True, True, False, True, False]
    assert all(isinstance(s, LatentAttention) for s in model.layer_specs)
    # 40 indexed x 1408 + 38 plain x 1152, x 4096.
    assert estimate(model, SEQ, kv_dtype="bf16").total_bytes == (40 * 1408 + 38 * 1152) * SEQ


def test_vllm_dsa_indexer_in_fp8_with_scales() -> None:
    # vLLM: latent page (576 x 2 B, or fp8_ds_mla 656 B) + indexer cache 128 + 128 // 128 x 4 = 132 B;
    # MLA block size 64 divides 4096. bf16: 61 x 4096 x 1284; fp8: 61 x 4096 x 788.
    assert _total("deepseek-ai--DeepSeek-V3.2", engine="vllm") == 61 * 4096 * 1284 == 320_815_104
    assert _total("deepseek-ai--DeepSeek-V3.2", engine="vllm", kv_dtype="fp8") == 61 * 4096 * 788
    # SGLang: the latent in the KV dtype plus the same 132-byte fp8 indexer key.
    assert _total("deepseek-ai--DeepSeek-V3.2", engine="sglang") == 61 * 4096 * 1284


def test_zero_is_a_value() -> None:
    # Qwen2/Qwen3: max_window_layers 0 = every layer slides (Qwen2Config: i >= max_window_layers).
    data = _load("Qwen--Qwen3-8B") | {"use_sliding_window": True, "sliding_window": 1024, "max_window_layers": 0}
    model = model_from_hf(data, "qwen3")
    assert all(getattr(s, "window", None) == 1024 for s in model.layer_specs)
    # 36 x 1024 x 8 x 128 x 2 x 2 = 150,994,944.
    assert estimate(model, SEQ, kv_dtype="bf16").total_bytes == 150_994_944
    coder = model_from_hf(_load("Qwen--Qwen3-Coder-480B-A35B-Instruct"), "coder")
    assert coder.moe is not None and coder.moe.shared_expert_intermediate_size is None


def test_use_sliding_window_false_switches_the_window_off() -> None:
    data = _load("mistralai--Mistral-7B-v0.1")
    assert _total("mistralai--Mistral-7B-v0.1") == 32 * 4096 * 4096
    windowed = model_from_hf(data, "m")
    assert all(getattr(s, "window", None) == 4096 for s in windowed.layer_specs)
    off = model_from_hf(data | {"use_sliding_window": False}, "m")
    assert all(getattr(s, "window", None) is None for s in off.layer_specs)


def _mllama(**changes: Any) -> dict[str, Any]:
    # Synthetic (no real Llama-3.2-Vision config.json was found): the MllamaTextConfig defaults of
    # transformers 5.23 (40 layers, cross-attention at 3, 8, ..., 38, 32 heads / 8 KV heads, hidden 4096).
    text = {"model_type": "mllama_text_model", "num_hidden_layers": 40, "hidden_size": 4096,
            "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 131072,
            "cross_attention_layers": [3, 8, 13, 18, 23, 28, 33, 38], "torch_dtype": "bfloat16"}
    return {"model_type": "mllama", "text_config": text | changes}


def test_cross_attention_holds_vision_tokens_not_the_text() -> None:
    model = model_from_hf(_mllama(), "mllama")
    assert sum(isinstance(s, CrossAttention) for s in model.layer_specs) == 8
    # Text only: 32 self-attention layers x 4096 x 8 x 128 x 2 x 2 = 536,870,912; cross layers hold 0.
    assert estimate(model, SEQ, kv_dtype="bf16").total_bytes == 536_870_912
    assert estimate(model, SEQ, kv_dtype="bf16", engine="hf").total_bytes == 536_870_912
    # One image of 4 tiles x 1601 = 6,404 vision tokens in each of the 8 cross layers: + 8 x 6404 x 4096.
    image = with_image_tokens(model, 6404)
    assert estimate(image, SEQ, kv_dtype="bf16").total_bytes == 536_870_912 + 8 * 6404 * 4096
    assert estimate(image, SEQ, kv_dtype="bf16", engine="hf").total_bytes == 536_870_912 + 8 * 6404 * 4096
    with pytest.raises(UnsupportedByEngineError, match="0.10.2"):
        estimate(model, SEQ, engine="vllm")


def _write(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return str(path)


def _bad_configs() -> dict[str, tuple[dict[str, Any], str]]:
    llama = _load("meta-llama--Llama-3.1-8B")
    nemo = _load("nvidia--Nemotron-H-56B-Base-8K")
    kimi = _load("moonshotai--Kimi-K2-Instruct")
    nas = _load("nvidia--Llama-3_3-Nemotron-Super-49B-v1")
    nas_bad = json.loads(json.dumps(nas))
    nas_bad["block_configs"][0]["attention"]["new_op"] = True
    return {
        "unknown layer type": (llama | {"layer_types": ["bogus_attention"] * 32}, "layer_types[0]"),
        "linear in a plain family": (llama | {"layer_types": ["linear_attention"] * 32}, "layer_types"),
        "pattern shorter than the layers (issue 14)": (nemo | {"hybrid_override_pattern": "M*"},
                                                       "hybrid_override_pattern"),
        "latent without rope": ({k: v for k, v in kimi.items() if k != "qk_rope_head_dim"}, "kv_lora_rank"),
        "unknown NAS attention key": (nas_bad, "block_configs[0].attention.new_op"),
        "hybrid layer (Falcon-H1)": ({"model_type": "falcon_h1", "num_hidden_layers": 2, "hidden_size": 64,
                                      "num_attention_heads": 4, "max_position_embeddings": 512}, "layer_types[0]"),
        "unknown family, unknown cache key": (llama | {"model_type": "newfam", "foo_window_size": 8},
                                              "foo_window_size"),
        "indexer without a latent": (llama | {"index_head_dim": 128}, "index_head_dim"),
    }


@pytest.mark.parametrize("case", sorted(_bad_configs()))
def test_refusals_exit_2_naming_the_key(cli: Callable[..., CliResult], tmp_path: Path, case: str) -> None:
    data, key = _bad_configs()[case]
    path = _write(tmp_path, data)
    result = cli("estimate", "--config", path, "--seq-len", "4096", "--kv-dtype", "bf16")
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:")
    assert f"field {key!r}" in lines[0]
    with pytest.raises(UnplacedConfigKeyError):
        model_from_hf(data, case)
    # --assume-standard proceeds and says what it assumed.
    assumed = cli("estimate", "--config", path, "--seq-len", "4096", "--kv-dtype", "bf16", "--assume-standard",
                  "--json")
    assert assumed.exit_code == 0, assumed.stderr
    assert "--assume-standard:" in assumed.stderr
    assert assumed.json()["total_bytes"] >= 0


def test_unknown_family_with_understood_keys_is_read_with_a_warning() -> None:
    model = model_from_hf(_load("moonshotai--Kimi-K2-Instruct"), "kimi")
    assert any("unknown model_type 'kimi_k2': read by its keys as 61 x mla" in a for a in model.source.assumptions)


def test_nas_no_op_layers_cache_nothing() -> None:
    model = model_from_hf(_load("nvidia--Llama-3_3-Nemotron-Super-49B-v1"), "nas")
    assert sum(isinstance(s, NoCache) for s in model.layer_specs) == 31
    assert model.num_layers == 80


def test_per_layer_config_overrides_attention_layers() -> None:
    # transformers 5.23 HeterogeneousConfigMixin: layer 1 gets 2 KV heads of 64, layer 2 a window of 16.
    # By hand only: transformers' Mistral itself refuses heterogeneous head_dim (AmbiguousGlobalPerLayerAttributeError).
    data = {"model_type": "mistral", "num_hidden_layers": 3, "hidden_size": 256, "num_attention_heads": 8,
            "num_key_value_heads": 4, "head_dim": 32, "sliding_window": 32, "max_position_embeddings": 512,
            "torch_dtype": "bfloat16",
            "per_layer_config": {"1": {"num_key_value_heads": 2, "head_dim": 64}, "2": {"sliding_window": 16}}}
    model = model_from_hf(data, "het")
    # seq 64, bf16: layer 0: 32 x 4 x 32 x 4 B = 16,384; layer 1: 32 x 2 x 64 x 4 = 16,384; layer 2: 16 x 512 = 8,192.
    assert estimate(model, 64).total_bytes == 16_384 + 16_384 + 8_192
    with pytest.raises(UnplacedConfigKeyError, match="per_layer_config.0.kv_lora_rank"):
        model_from_hf(data | {"per_layer_config": {"0": {"kv_lora_rank": 8}}}, "het")


def test_exaone4_letter_pattern() -> None:
    # Exaone4Config: sliding_window_pattern "LLLG" = 3 sliding layers then a global one; 8 layers, 4 KV x 64,
    # bf16 (1,024 B/token), window 16, seq 64: 6 x 16 x 1024 + 2 x 64 x 1024 = 229,376.
    data = {"model_type": "exaone4", "num_hidden_layers": 8, "hidden_size": 512, "num_attention_heads": 8,
            "num_key_value_heads": 4, "head_dim": 64, "sliding_window": 16, "sliding_window_pattern": "LLLG",
            "max_position_embeddings": 512, "torch_dtype": "bfloat16"}
    assert estimate(model_from_hf(data, "exaone"), 64).total_bytes == 229_376


def test_image_tokens_flag(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    path = _write(tmp_path, _mllama())
    text_only = cli("estimate", "--config", path, "--seq-len", "4096", "--json")
    image = cli("estimate", "--config", path, "--seq-len", "4096", "--image-tokens", "6404", "--json")
    assert text_only.exit_code == 0 and image.exit_code == 0
    assert image.json()["total_bytes"] - text_only.json()["total_bytes"] == 8 * 6404 * 4096
    plain = cli("estimate", "llama-3.1-8b", "--seq-len", "4096", "--image-tokens", "10")
    assert plain.exit_code == 2 and plain.stdout == "" and "--image-tokens" in plain.stderr


def test_import_assume_standard(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    data, _ = _bad_configs()["pattern shorter than the layers (issue 14)"]
    path = _write(tmp_path, data)
    refused = cli("import", path)
    assert refused.exit_code == 2 and refused.stdout == ""
    assumed = cli("import", path, "--assume-standard")
    assert assumed.exit_code == 0
    assert "layers:" in assumed.stdout or "layout:" in assumed.stdout
    assert "--assume-standard:" in assumed.stderr


def test_gemma4_unknown_layer_type_refused() -> None:
    data = _load("google--gemma-4-26B-A4B")
    text = dict(data["text_config"])
    text["layer_types"] = ["bogus_attention", *text["layer_types"][1:]]
    with pytest.raises(UnplacedConfigKeyError, match=r"layer_types\[0\]"):
        model_from_hf(data | {"text_config": text}, "gemma4")


@pytest.mark.parametrize("name", ["llama-3.3-nemotron-super-49b", "nemotron-h-56b", "mimo-v2-flash", "deepseek-v3.2",
                                  "qwen3.5-27b", "glm-5"])
def test_builtin_yaml_round_trip(name: str) -> None:
    # `kvcalc models show NAME --yaml` must load back to the same layers (a one-letter legend key once
    # dumped as "F\n...", a YAML document-end marker, and broke the file).
    from kvcalc.catalog import to_yaml
    from kvcalc.loader import model_from_data, parse_yaml
    from kvcalc.registry import get_builtin

    model = get_builtin(name)
    again = model_from_data(parse_yaml(to_yaml(model), "rt.yaml"), "rt.yaml")
    assert again.layer_specs == model.layer_specs


def test_vllm_plan_pages_equal_the_estimate_for_dsa() -> None:
    # The planner's vLLM page (engines/vllm_kv.py) is the estimate's: 64-token MLA blocks of
    # (656 fp8_ds_mla + 132 indexer) B = 50,432 B per layer; a request of 4096 tokens: 64 blocks x 61 layers.
    from kvcalc.dtypes import get_dtype
    from kvcalc.engines.vllm_kv import build_layout
    from kvcalc.registry import get_builtin

    model = get_builtin("deepseek-v3.2")
    layout = build_layout(model.layer_specs, get_dtype("fp8"), tp=1, pp=1, block_size=None)
    assert layout.block_size == 64
    assert {v.page_size_bytes for v in layout.vspec_of.values() if v is not None} == {50_432}
    assert estimate(model, 4096, kv_dtype="fp8", engine="vllm").total_bytes == 61 * 64 * 50_432
