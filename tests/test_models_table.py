"""`kvcalc models`: the B/token column agrees with the 1k-tokens column (or says why not), a float32
config says that engines serve it in 16 bits, and a long list groups and filters by family."""

from __future__ import annotations

from typing import Any

import pytest

from kvcalc.catalog import family_of, model_rows
from kvcalc.dtypes import resolve_dtype
from kvcalc.registry import get_builtin


def test_hybrid_rows_show_both_rates_and_they_add_up() -> None:
    rows = {r.name: r for r in model_rows()}
    gpt = rows["gpt-oss-20b"]
    # gpt-oss-20b (config.json): 24 layers alternating sliding (window 128) and full, 8 KV heads x 64,
    # bf16: 2 (K, V) x 8 x 64 x 2 B = 2,048 B per token per layer.
    assert gpt.bytes_per_token == 24 * 2048 == 49_152  # while the 128-token windows fill
    assert gpt.bytes_per_token_long == 12 * 2048 == 24_576  # past them: the 12 full layers only
    # One 1,024-token sequence: 12 full x 1,024 + 12 sliding x 128 tokens, x 2,048 B = 27 MiB (the
    # "Per 1k tokens" figure the old table printed beside 49,152 B/token).
    assert gpt.bytes_per_1k_tokens == (12 * 1024 + 12 * 128) * 2048 == 27 * 2**20
    # nemotron-h-56b: 10 full layers x 8 heads x 128 x 2 x 2 B grow; 54 Mamba layers hold
    # (61,440 conv + 4,194,304 ssm) elements x 2 B = 8,511,488 B each, per sequence.
    nem = rows["nemotron-h-56b"]
    assert nem.bytes_per_token == nem.bytes_per_token_long == 10 * 8 * 128 * 2 * 2
    assert nem.state_bytes_per_sequence == 54 * (61_440 + 4_194_304) * 2
    assert nem.bytes_per_1k_tokens == 1024 * nem.bytes_per_token + nem.state_bytes_per_sequence
    # mistral-7b-v0.1: every layer slides (window 4,096): nothing grows past the window.
    assert rows["mistral-7b-v0.1"].bytes_per_token_long == 0


def test_every_row_is_the_sum_of_its_layers() -> None:
    for r in model_rows():
        model = get_builtin(r.name)
        dtype = resolve_dtype(r.kv_dtype, model.dtype)
        held = sum(s.tokens_held(1024) * s.bytes_per_token(dtype) + s.fixed_bytes(dtype) for s in model.layer_specs)
        assert r.bytes_per_1k_tokens == held, r.name
        windows = [s.tokens_held(1024) for s in model.layer_specs if s.grows]
        if all(w == 1024 for w in windows):
            # No window under 1k: the two columns agree exactly.
            assert r.bytes_per_1k_tokens == 1024 * r.bytes_per_token + r.state_bytes_per_sequence, r.name


def test_float32_configs_say_what_engines_serve(cli: Any) -> None:
    rows = {r.name: r for r in model_rows()}
    # vLLM downcasts float32 to bf16; SGLang keeps Gemma in bf16 and other models in fp16.
    assert rows["gemma-2-9b"].kv_dtype == "fp32"
    assert rows["gemma-2-9b"].engine_kv_dtypes == {"vllm": "bf16", "sglang": "bf16"}
    assert rows["gpt2"].engine_kv_dtypes == {"vllm": "bf16", "sglang": "fp16"}
    assert rows["llama-3-8b"].engine_kv_dtypes == {}
    assert all(r.engine_kv_dtypes == {} for r in model_rows("bf16"))  # an explicit dtype is what it says
    res = cli("models")
    assert res.exit_code == 0
    assert "fp32*" in res.stdout and "gemma-2-9b (vllm: bf16, sglang: bf16)" in " ".join(res.stdout.split())
    assert "688,128 -> 344,064" in res.stdout  # gemma-2-9b: 42 layers, then the 21 full ones past 4,096


def test_family_names() -> None:
    assert [family_of(n) for n in ("llama-3.1-8b", "qwen2.5-7b", "qwen3-next-80b-a3b", "deepseek-v3", "gpt2",
                                   "gpt-oss-20b", "gpt-neox-20b", "mixtral-8x7b", "phi-3-mini")] == [
        "llama", "qwen", "qwen", "deepseek", "gpt", "gpt-oss", "gpt-neox", "mixtral", "phi"]


def test_family_filter_and_grouping(cli: Any) -> None:
    res = cli("models", "--family", "qwen", "--json")
    assert res.exit_code == 0
    names = [r["name"] for r in res.json()["models"]]
    assert names and all(n.startswith("qwen") for n in names) and "qwen3-32b" in names
    # The JSON keeps its keys (and gains new ones).
    row = res.json()["models"][0]
    assert {"name", "num_layers", "layer_summary", "kv_dtype", "bytes_per_token", "bytes_per_1k_tokens",
            "max_position_embeddings"} <= set(row)
    # Unfiltered, rows of a family are adjacent (the table draws a rule between families).
    families = [r.family for r in model_rows()]
    assert all(families.index(f) == i or families[i - 1] == f for i, f in enumerate(families))
    bad = cli("models", "--family", "lama")
    assert bad.exit_code == 2 and bad.stdout == ""
    assert bad.stderr.startswith("Error:") and "'llama'" in bad.stderr


@pytest.mark.parametrize("width", [110])
def test_table_fits_a_terminal(cli: Any, monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    res = cli("models")
    assert res.exit_code == 0
    assert max(len(line) for line in res.stdout.splitlines()) <= width
    assert "…" not in res.stdout  # no name or figure cut short
