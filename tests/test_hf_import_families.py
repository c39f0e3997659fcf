"""Every Hugging Face config in tests/fixtures imports, each checked against a total derived by
hand (formula in the comment: layers x tokens held x bytes per token per layer, where bytes per
token per layer = 2 (K and V) x KV heads x head_dim x dtype bytes); plus the family rules that
no shipped fixture exercises, built in tmp_path; the offline hub-cache lookup; `kvcalc import`
round trips; malformed and oversized files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, CliResult

from kvcalc.errors import InvalidConfigError
from kvcalc.estimate import estimate
from kvcalc.registry import load_model
from kvcalc.specs import ChunkedAttention, FullAttention, NoCache, SlidingWindowAttention

# (fixture, engine, seq_len, kv dtype, expected total bytes)
FAMILIES: list[tuple[str, str, int, str, int]] = [
    # gpt_neox: 44 layers, MHA 64 heads x 96, fp16: 2 x 64 x 96 x 2 = 24,576 B/token/layer.
    ("EleutherAI--gpt-neox-20b", "hf", 2048, "auto", 44 * 2048 * 24576),
    # qwen2, use_sliding_window false: 80 layers x 8 KV x 128 x 2 x 2 B = 4,096 B.
    ("Qwen--Qwen2.5-72B", "hf", 8192, "auto", 80 * 8192 * 4096),
    # qwen2: 28 layers x 4 KV x 128 x 2 x 2 B = 2,048 B.
    ("Qwen--Qwen2.5-7B", "hf", 8192, "auto", 28 * 8192 * 2048),
    # qwen3 (explicit head_dim 128): 64 layers x 8 KV heads: 4,096 B.
    ("Qwen--Qwen3-32B", "hf", 8192, "auto", 64 * 8192 * 4096),
    ("Qwen--Qwen3-8B", "hf", 8192, "auto", 36 * 8192 * 4096),
    # qwen3_next (engine-neutral): 12 attention layers (every 4th of 48) x 2 KV x 256 x 2 x 2 = 2,048 B/token;
    # 36 Gated-DeltaNet layers hold conv 3 x (2 x 16 x 128 + 32 x 128) = 24,576 + recurrent 32 x 128 x 128
    # = 524,288 elements x 2 B = 1,097,728 B per sequence.
    ("Qwen--Qwen3-Next-80B-A3B-Thinking", "neutral", 8192, "auto", 12 * 8192 * 2048 + 36 * 1097728),
    # deepseek_v2 MLA: 60 layers x (512 + 64) x 2 B = 1,152 B/token, one head, no factor 2.
    ("deepseek-ai--DeepSeek-V2", "hf", 8192, "auto", 60 * 8192 * 1152),
    # deepseek_v3: 61 layers (the MTP layer is not cached) x 1,152 B.
    ("deepseek-ai--DeepSeek-V3", "hf", 8192, "auto", 61 * 8192 * 1152),
    # gemma2 27B bf16 (issue figure): 23 full x 8192 x 8,192 B + 23 sliding x (4096 - 1) x 8,192 B
    # = 2,315,067,392 B.
    ("google--gemma-2-27b", "hf", 8192, "bf16", 2_315_067_392),
    # gemma2 9B bf16: 8 KV x 256 x 2 x 2 = 8,192 B; 21 full x 8192 + 21 sliding x 4095.
    ("google--gemma-2-9b", "hf", 8192, "bf16", 21 * 8192 * 8192 + 21 * 4095 * 8192),
    # llama-2 MHA fp16: 13B 40 layers x 40 heads x 128 x 2 x 2 = 20,480 B; 7B 32 x 16,384 B (2 GiB at 4096).
    ("meta-llama--Llama-2-13b-hf", "hf", 4096, "auto", 40 * 4096 * 20480),
    ("meta-llama--Llama-2-7b-hf", "hf", 4096, "auto", 2 * 1024**3),
    # llama GQA 8 KV heads x 128, 16-bit: 4,096 B/token/layer.
    ("meta-llama--Llama-2-70b-hf", "hf", 4096, "auto", 80 * 4096 * 4096),
    ("meta-llama--Llama-3.1-405B", "hf", 8192, "auto", 126 * 8192 * 4096),
    ("meta-llama--Llama-3.1-70B", "hf", 8192, "auto", 80 * 8192 * 4096),
    ("meta-llama--Llama-3.1-8B", "hf", 8192, "auto", 32 * 8192 * 4096),
    ("meta-llama--Meta-Llama-3-70B-Instruct", "hf", 8192, "auto", 80 * 8192 * 4096),
    ("meta-llama--Meta-Llama-3-8B", "hf", 8192, "auto", 32 * 8192 * 4096),
    # phi3: sliding_window 2047 on every layer; hf keeps window - 1 = 2046 tokens; 32 x 96 x 2 x 2 = 12,288 B.
    ("microsoft--Phi-3-mini-4k-instruct", "hf", 4096, "auto", 32 * 2046 * 12288),
    # mistral: window 4096 on every layer; hf keeps 4095.
    ("mistralai--Mistral-7B-v0.1", "hf", 8192, "auto", 32 * 4095 * 4096),
    # mixtral: no window, 32 x 4,096 B.
    ("mistralai--Mixtral-8x7B-v0.1", "hf", 8192, "auto", 32 * 8192 * 4096),
    # nemotron_h (engine-neutral): 10 attention layers ('*') x 8 KV x 128 x 2 x 2 = 4,096 B/token;
    # 54 Mamba-2 layers: conv 3 x (256 x 64 + 2 x 8 x 256) = 61,440 + ssm 256 x 64 x 256 = 4,194,304
    # elements x 2 B = 8,511,488 B per sequence; 54 MLP layers hold nothing.
    ("nvidia--Nemotron-H-56B-Base-8K", "neutral", 8192, "auto", 10 * 8192 * 4096 + 54 * 8511488),
    # gpt_oss (no dtype: fp32 default): 8 KV x 64 x 2 x 4 B = 4,096 B; sliding 128 keeps 127 under hf.
    ("openai--gpt-oss-20b", "hf", 8192, "auto", 12 * 127 * 4096 + 12 * 8192 * 4096),
    ("openai--gpt-oss-120b", "hf", 8192, "auto", 18 * 127 * 4096 + 18 * 8192 * 4096),
    # gpt2 (fp32 default): 12 layers x 12 heads x 64 x 2 x 4 B = 6,144 B at n_ctx 1024.
    ("openai-community--gpt2", "hf", 1024, "auto", 12 * 1024 * 6144),
    # falcon-180B new_decoder_architecture: transformers caches K/V broadcast to all 232 query heads:
    # 232 x 64 x 2 x 2 = 59,392 B/token/layer, 80 layers, 2048 (default max_position_embeddings).
    ("tiiuae--falcon-180B", "hf", 2048, "auto", 80 * 2048 * 59392),
    # ... while engine-neutral counts its 8 KV heads: 8 x 64 x 2 x 2 = 2,048 B.
    ("tiiuae--falcon-180B", "neutral", 2048, "auto", 80 * 2048 * 2048),
    # Today's families (issue 11), engine-neutral at 4096 bf16; the arithmetic of each is written out
    # in tests/test_hf_structure.py HAND_TOTALS, and transformers' own caches are compared in
    # tests/test_transformers_cache_families.py.
    ("deepseek-ai--DeepSeek-V3.2", "neutral", 4096, "bf16", 61 * 4096 * (512 + 64 + 128) * 2),
    ("moonshotai--Kimi-K2-Instruct", "neutral", 4096, "bf16", 61 * 4096 * 1152),
    ("zai-org--GLM-5", "neutral", 4096, "bf16", 78 * 4096 * 1408),
    ("zai-org--GLM-4.7-Flash", "neutral", 4096, "bf16", 47 * 4096 * 1152),
    ("zai-org--GLM-4.7-FP8", "neutral", 4096, "bf16", 92 * 4096 * 4096),
    ("MiniMaxAI--MiniMax-M2.5", "neutral", 4096, "bf16", 62 * 4096 * 4096),
    ("Qwen--Qwen3-Coder-480B-A35B-Instruct", "neutral", 4096, "bf16", 62 * 4096 * 4096),
    ("XiaomiMiMo--MiMo-V2-Flash", "neutral", 4096, "bf16", 9 * 4096 * 2560 + 39 * 129 * 5120),
    ("XiaomiMiMo--MiMo-7B-Base", "neutral", 4096, "bf16", 36 * 4096 * 4096),
    ("Qwen--Qwen3.5-27B", "neutral", 4096, "bf16", 16 * 4096 * 4096 + 48 * 1634304),
    ("Qwen--Qwen3.5-397B-A17B", "neutral", 4096, "bf16", 15 * 4096 * 2048 + 45 * 2170880),
    # Llama-4: chunk 8192 > 4096, so every layer holds 4096 tokens: 48 x 8 KV x 128 x 2 x 2.
    ("meta-llama--Llama-4-Scout-17B-16E-Instruct", "neutral", 4096, "bf16", 48 * 4096 * 4096),
    ("meta-llama--Llama-4-Maverick-17B-128E-Instruct", "neutral", 4096, "bf16", 48 * 4096 * 4096),
    ("nvidia--Llama-3_3-Nemotron-Super-49B-v1", "neutral", 4096, "bf16", 49 * 4096 * 4096),
    ("nvidia--NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", "neutral", 4096, "bf16", 6 * 4096 * 1024 + 23 * 1085440),
    ("nvidia--Gemma-4-31B-IT-NVFP4", "neutral", 4096, "bf16", 50 * 1024 * 16384 + 10 * 4096 * 8192),
    # Gemma-4 26B-A4B: 25 sliding x 1024 x 8 KV x 256 x 4 + 5 full x 4096 x 2 global KV x 512 x 4.
    ("google--gemma-4-26B-A4B", "neutral", 4096, "bf16", 25 * 1024 * 8192 + 5 * 4096 * 4096),
]


def test_every_fixture_is_covered() -> None:
    assert {f for f, *_ in FAMILIES} == {p.stem for p in FIXTURES.glob("*.json")}


@pytest.mark.parametrize(("fixture", "engine", "seq", "dtype", "expected"), FAMILIES,
                         ids=[f"{f}-{e}" for f, e, *_ in FAMILIES])
def test_family_total(fixture: str, engine: str, seq: int, dtype: str, expected: int) -> None:
    model = load_model(str(FIXTURES / f"{fixture}.json"))
    assert estimate(model, seq, kv_dtype=dtype, engine=engine).total_bytes == expected


@pytest.mark.parametrize("fixture", sorted(p.stem for p in FIXTURES.glob("*.json")))
def test_import_round_trip(fixture: str, cli: Callable[..., CliResult], tmp_path: Path) -> None:
    src = FIXTURES / f"{fixture}.json"
    out = tmp_path / "model.yaml"
    res = cli("import", str(src), "-o", str(out))
    assert res.exit_code == 0, res.stderr
    original, back = load_model(str(src)), load_model(str(out))
    assert back.layer_specs == original.layer_specs
    assert (back.dtype, back.max_position_embeddings) == (original.dtype, original.max_position_embeddings)
    assert estimate(back, 4096, engine="hf").total_bytes == estimate(original, 4096, engine="hf").total_bytes


def _write(tmp_path: Path, data: dict[str, Any], name: str = "whatever.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


BASE: dict[str, Any] = {"num_hidden_layers": 12, "num_attention_heads": 8, "num_key_value_heads": 4,
                        "head_dim": 32, "hidden_size": 256, "max_position_embeddings": 8192,
                        "torch_dtype": "bfloat16"}


def test_gemma3_text_config_with_pattern(tmp_path: Path) -> None:
    # No layer_types: sliding_window_pattern 6 -> layer i is global when (i + 1) % 6 == 0 (5 and 11).
    cfg = {"model_type": "gemma3", "text_config": {**BASE, "model_type": "gemma3_text", "sliding_window": 512,
                                                   "sliding_window_pattern": 6}}
    specs = load_model(str(_write(tmp_path, cfg))).layer_specs
    full = [i for i, s in enumerate(specs) if not isinstance(s, SlidingWindowAttention)]
    assert full == [5, 11]
    assert all(s.window == 512 for s in specs if isinstance(s, SlidingWindowAttention))


def test_gemma3_layer_types_decide(tmp_path: Path) -> None:
    types = ["full_attention"] * 2 + ["sliding_attention"] * 10
    cfg = {**BASE, "model_type": "gemma3_text", "sliding_window": 512, "sliding_window_pattern": 6,
           "layer_types": types}
    specs = load_model(str(_write(tmp_path, cfg))).layer_specs
    assert [isinstance(s, SlidingWindowAttention) for s in specs] == [False] * 2 + [True] * 10


def test_gemma4_text_per_layer_and_shared(tmp_path: Path) -> None:
    # Gemma4TextConfig (transformers 5.23): 12 layers, pattern 6 -> full at 5 and 11; per_layer_config
    # gives full layers head_dim 512 and 1 KV head; the last 4 layers (8..11) reuse KV (cache nothing).
    cfg = {**BASE, "model_type": "gemma4_text", "sliding_window": 1024, "num_kv_shared_layers": 4,
           "attention_k_eq_v": True,
           "per_layer_config": {"5": {"head_dim": 512, "num_key_value_heads": 1},
                                "11": {"head_dim": 512, "num_key_value_heads": 1}}}
    model = load_model(str(_write(tmp_path, cfg)))
    specs = model.layer_specs
    assert sum(isinstance(s, NoCache) for s in specs) == 4
    assert specs[5] == FullAttention(num_kv_heads=1, head_dim=512)
    # hf at 4096, bf16: 7 sliding x 1023 x (2 x 4 x 32 x 2 = 512 B) + 1 full x 4096 x (2 x 1 x 512 x 2 = 2,048 B);
    # K and V both stored although attention_k_eq_v shares the projection.
    assert estimate(model, 4096, engine="hf").total_bytes == 7 * 1023 * 512 + 4096 * 2048


@pytest.mark.parametrize("key", ["\u00b2", "12", "-1", "x", "9" * 5000])
def test_gemma4_per_layer_config_bad_index_names_the_entry(tmp_path: Path, key: str) -> None:
    cfg = {**BASE, "model_type": "gemma4_text", "sliding_window": 1024, "per_layer_config": {key: {"head_dim": 8}}}
    with pytest.raises(InvalidConfigError, match="per_layer_config entry .*expected a layer index < 12"):
        load_model(str(_write(tmp_path, cfg)))


def test_gemma4_without_per_layer_config_uses_global_fields(tmp_path: Path) -> None:
    cfg = {**BASE, "model_type": "gemma4_text", "sliding_window": 1024, "global_head_dim": 256,
           "num_global_key_value_heads": 2, "attention_k_eq_v": True}
    specs = load_model(str(_write(tmp_path, cfg))).layer_specs
    assert specs[11] == FullAttention(num_kv_heads=2, head_dim=256)
    assert specs[0] == SlidingWindowAttention(num_kv_heads=4, head_dim=32, window=1024)


def test_llama4_text_chunked(tmp_path: Path) -> None:
    types = ["chunked_attention", "chunked_attention", "chunked_attention", "full_attention"] * 3
    cfg = {**BASE, "model_type": "llama4_text", "attention_chunk_size": 8192, "layer_types": types}
    model = load_model(str(_write(tmp_path, cfg)))
    assert sum(isinstance(s, ChunkedAttention) for s in model.layer_specs) == 9
    # hf at 16384, bf16, 2 x 4 x 32 x 2 = 512 B: 9 chunked x (8192 - 1) + 3 full x 16384.
    assert estimate(model, 16384, engine="hf").total_bytes == 9 * 8191 * 512 + 3 * 16384 * 512


def test_gpt_bigcode_multi_query(tmp_path: Path) -> None:
    cfg = {"model_type": "gpt_bigcode", "n_layer": 4, "n_head": 8, "n_embd": 256, "n_positions": 2048,
           "multi_query": True, "torch_dtype": "float16"}
    specs = load_model(str(_write(tmp_path, cfg))).layer_specs
    assert specs == (FullAttention(num_kv_heads=1, head_dim=32),) * 4


def test_qwen2_use_sliding_window(tmp_path: Path) -> None:
    cfg = {**BASE, "model_type": "qwen2", "use_sliding_window": True, "sliding_window": 4096,
           "max_window_layers": 8}
    specs = load_model(str(_write(tmp_path, cfg))).layer_specs
    assert [isinstance(s, SlidingWindowAttention) for s in specs] == [False] * 8 + [True] * 4
    off = {**cfg, "use_sliding_window": False}
    assert not any(isinstance(s, SlidingWindowAttention)
                   for s in load_model(str(_write(tmp_path, off, "b.json"))).layer_specs)


@pytest.mark.parametrize(("extra", "kv"), [({"multi_query": True}, 1), ({"multi_query": False}, 8)])
def test_falcon_old_layout(tmp_path: Path, extra: dict[str, Any], kv: int) -> None:
    cfg = {"model_type": "falcon", "num_hidden_layers": 2, "num_attention_heads": 8, "hidden_size": 512,
           "new_decoder_architecture": False, "torch_dtype": "bfloat16", **extra}
    model = load_model(str(_write(tmp_path, cfg)))
    assert model.layer_specs[0] == FullAttention(num_kv_heads=kv, head_dim=64)
    assert model.max_position_embeddings == 2048  # FalconConfig default, reported as an assumption
    assert any("2048" in a for a in model.source.assumptions)


def test_unknown_model_type_warns(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    path = _write(tmp_path, {**BASE, "model_type": "brand_new"})
    res = cli("estimate", "--config", str(path), "--seq-len", "1000", "--json")
    assert res.exit_code == 0
    assert "Warning: unknown model_type 'brand_new'" in res.stderr
    # 12 layers x 2 x 4 x 32 x 2 B = 512 B x 1000 tokens.
    assert res.json()["total_bytes"] == 12 * 1000 * 512


def test_missing_fields_named(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    data = {k: v for k, v in BASE.items() if k != "num_attention_heads"}
    res = cli("estimate", "--config", str(_write(tmp_path, data)), "--seq-len", "10")
    assert res.exit_code == 1 and res.stdout == ""
    assert res.stderr.startswith("Error:") and "num_attention_heads" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_malformed_and_oversized_json(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    bad = tmp_path / "config.json"
    bad.write_text('{"num_hidden_layers": 2,')
    res = cli("estimate", "--config", str(bad), "--seq-len", "10")
    assert res.exit_code == 1 and res.stdout == "" and len(res.stderr.strip().splitlines()) == 1
    big = tmp_path / "big.json"
    big.write_text(json.dumps({**BASE, "pad": "x" * (5 << 20)}))
    res = cli("estimate", "--config", str(big), "--seq-len", "10")
    assert res.exit_code == 1 and res.stdout == "" and len(res.stderr.strip().splitlines()) == 1
    with pytest.raises(InvalidConfigError):
        load_model(str(bad))


def test_folder_and_hub_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Callable[..., CliResult]) -> None:
    snap = tmp_path / "hub" / "models--acme--tiny" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text((FIXTURES / "meta-llama--Llama-3.1-8B.json").read_text())
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    by_id = cli("estimate", "--config", "acme/tiny", "--seq-len", "8192", "--json")
    by_folder = cli("estimate", "--config", str(snap), "--seq-len", "8192", "--json")
    assert by_id.exit_code == by_folder.exit_code == 0
    # Llama-3.1-8B: 32 x 8192 x 4,096 B = 1 GiB.
    assert by_id.json()["total_bytes"] == by_folder.json()["total_bytes"] == 32 * 8192 * 4096
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert cli("estimate", "--config", "acme/tiny", "--seq-len", "8192", "--json").exit_code == 0
