"""`kvcalc verify --source transformers`: transformers 5.23.0 builds the cache from the config (random
weights, reduced depth, tiny hidden/vocab, same head geometry), kvcalc's hf/hf-static policy predicts it.

Independent figures (hand arithmetic) are in each test."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import hf_fixture

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytestmark = pytest.mark.transformers

from kvcalc.measure.transformers_source import shrink_config, verify_transformers  # noqa: E402

LLAMA_LIKE = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "num_hidden_layers": 4, "hidden_size": 512,
    "intermediate_size": 1024, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
    "max_position_embeddings": 256, "vocab_size": 32000, "torch_dtype": "bfloat16", "rms_norm_eps": 1e-5,
}
GEMMA2_LIKE = {
    "model_type": "gemma2", "architectures": ["Gemma2ForCausalLM"], "num_hidden_layers": 6, "hidden_size": 256,
    "intermediate_size": 512, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
    "sliding_window": 16, "max_position_embeddings": 256, "vocab_size": 1000, "torch_dtype": "float32",
    "query_pre_attn_scalar": 32, "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0,
}


def _write(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize(("cache", "engine"), [("static", "hf-static"), ("dynamic", "hf")])
def test_llama_like(tmp_path: Path, cli: Callable[..., Any], cache: str, engine: str) -> None:
    # Every layer full: 33 tokens x 2 (K, V) x 2 KV heads x 16 x 2 B (bf16) x batch 3 = 12,672 B per layer;
    # x 4 layers = 50,688 B, static (max_cache_len 33) and dynamic (prompt 30 + 4 new - 1 = 33) alike.
    ref = _write(tmp_path, LLAMA_LIKE)
    r = cli("verify", "--config", ref, "--seq-len", "33", "--batch", "3", "--source", "transformers",
            "--cache", cache, "--json")
    assert r.exit_code == 0, r.stderr
    data = r.json()
    assert data == verify_transformers(ref, 33, 3, cache=cache).to_dict()
    assert data["engine"] == engine and data["kv_dtype"] == "bf16"
    assert data["predicted_bytes"] == data["tensor_bytes"] == data["measured_bytes"] == 50_688
    assert data["ok"] is True and data["sampled"] is True and data["built_layers"] == 1
    (kind,) = data["kinds"]
    assert kind["shapes"] == [[3, 2, 33, 16], [3, 2, 33, 16]]  # transformers' own [b, H, T, d]


def test_gemma2_like_static_and_dynamic(tmp_path: Path) -> None:
    ref = _write(tmp_path, GEMMA2_LIKE)
    # Static, max_cache_len 40, batch 2, fp32: sliding layers min(window 16, 40) = 16 positions:
    # 16 x 2 x 2 heads x 32 x 4 B x 2 = 16,384 B x 3 layers = 49,152; full layers 40 x ... = 40,960 x 3
    # = 122,880; total 172,032 B.
    static = verify_transformers(ref, 40, 2, cache="static")
    assert [(k.kind, k.measured_bytes, k.predicted_bytes) for k in static.kinds] == [
        ("sliding", 49_152, 49_152), ("full", 122_880, 122_880)]
    assert static.ok and static.measured_bytes == 172_032 and static.built_layers == 2
    # Dynamic (generate): sliding layers keep window - 1 = 15 positions: 15,360 x 3 = 46,080; total
    # 46,080 + 122,880 = 168,960 B. The sliding views pin 16-position storage: 172,032 B.
    dynamic = verify_transformers(ref, 40, 2, cache="dynamic")
    assert dynamic.ok and dynamic.measured_bytes == dynamic.predicted_bytes == 168_960
    assert dynamic.kinds[0].shapes == [[2, 2, 15, 32], [2, 2, 15, 32]]
    assert dynamic.storage_bytes == 172_032


def test_real_llama_2_7b_geometry(cli: Callable[..., Any]) -> None:
    # One layer of the real geometry (32 heads x 128, fp16) built; 64 tokens: 32 layers x 64 x 2 x 32 x
    # 128 x 2 B = 33,554,432 B.
    r = cli("verify", "--config", str(hf_fixture("meta-llama--Llama-2-7b-hf")), "--seq-len", "64",
            "--source", "transformers")
    assert r.exit_code == 0, r.stderr
    assert "33,554,432" in r.stdout and "Verdict: OK" in r.stdout
    assert "built 1 of 32 layers" in r.stderr


def test_shrink_keeps_head_geometry() -> None:
    data = json.loads(hf_fixture("meta-llama--Llama-2-7b-hf").read_text())
    small = shrink_config(data, 2)
    # Llama-2-7B has no head_dim key: hidden 4096 / 32 heads = 128 is kept explicitly.
    assert (small["head_dim"], small["num_attention_heads"], small["num_hidden_layers"]) == (128, 32, 2)
    assert small["hidden_size"] < data["hidden_size"] and small["vocab_size"] < data["vocab_size"]


def test_built_in_name_needs_a_config(cli: Callable[..., Any]) -> None:
    r = cli("verify", "llama-2-7b", "--seq-len", "64", "--source", "transformers")
    assert r.exit_code == 2 and r.stdout == "" and "built-in models carry no config.json" in r.stderr


def test_unsupported_family_is_refused_before_building(cli: Callable[..., Any]) -> None:
    # Nemotron-H carries Mamba blocks at full width: refused with the supported families named.
    r = cli("verify", "--config", str(hf_fixture("nvidia--Nemotron-H-56B-Base-8K")), "--seq-len", "16",
            "--source", "transformers")
    assert r.exit_code == 2 and r.stdout == "" and "'nemotron_h' is not allowed" in r.stderr
    assert "gemma2" in r.stderr and "llama" in r.stderr
