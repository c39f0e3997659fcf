"""Falcon-H1 and Zamba2: layers holding a Mamba2 state and a full-attention KV cache at once
(``StatefulAttention``), by hand for the neutral engine and transformers 5.23's caches.

The byte-exact check against caches transformers really builds is in
``tests/test_transformers_cache_families.py`` (cases ``falcon-h1-hybrid``, ``zamba2-hybrid``);
here each total is derived by hand from the config, so the two together pin both the rule and the
arithmetic. Configs are synthetic (no real Falcon-H1 / Zamba2 ``config.json`` was found; see
``tests/fixtures/HF_CONFIG_SOURCES.md``), spelled with each family's own keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import CliResult

from kvcalc.errors import UnplacedConfigKeyError, UnsupportedByEngineError
from kvcalc.estimate import estimate
from kvcalc.hf import model_from_hf
from kvcalc.specs import FixedState, FullAttention, StatefulAttention, spec_from_dict

SEQ = 18

FALCON_H1 = {"model_type": "falcon_h1", "num_hidden_layers": 3, "hidden_size": 64, "num_attention_heads": 4,
             "num_key_value_heads": 2, "head_dim": 16, "mamba_d_ssm": 64, "mamba_n_heads": 4, "mamba_d_head": 16,
             "mamba_n_groups": 2, "mamba_d_state": 8, "mamba_d_conv": 4, "mamba_expand": 2,
             "torch_dtype": "bfloat16", "max_position_embeddings": 4096}
ZAMBA2 = {"model_type": "zamba2", "num_hidden_layers": 4, "hidden_size": 32, "num_attention_heads": 4,
          "num_key_value_heads": 2, "layers_block_type": ["mamba", "hybrid", "mamba", "hybrid"], "n_mamba_heads": 4,
          "mamba_ngroups": 1, "mamba_d_state": 8, "mamba_d_conv": 4, "mamba_expand": 2, "torch_dtype": "bfloat16",
          "max_position_embeddings": 4096}


def test_falcon_h1_every_layer_holds_state_and_kv() -> None:
    model = model_from_hf(FALCON_H1, "falcon-h1")
    assert len(model.layer_specs) == 3
    assert all(isinstance(s, StatefulAttention) for s in model.layer_specs)
    # Attention: 2 KV heads x 16 x (K + V) x 2 B = 128 B per token, 18 tokens = 2,304 B per layer.
    # Mamba2 (FalconH1Mixer): conv_dim = mamba_d_ssm 64 + 2 groups x 8 state = 96 channels; vLLM /
    # neutral conv (4 - 1) x 96 = 288 values, ssm 4 heads x 16 x 8 = 512 values; neutral bf16:
    # (288 + 512) x 2 = 1,600 B. Per layer 3,904 B; three layers 11,712 B.
    assert estimate(model, SEQ).total_bytes == 3 * (2304 + 1600) == 11712
    # transformers 5.23 (LinearAttentionAndFullAttentionLayer): all 4 conv columns, 4 x 96 x 2 B = 768;
    # the recurrent state in float32, 512 x 4 = 2,048; K/V as above: 3 x (2,304 + 768 + 2,048) = 15,360.
    assert estimate(model, SEQ, engine="hf").total_bytes == 3 * (2304 + 768 + 2048) == 15360
    # StaticCache: K/V for max_cache_len 24 positions, same states; one int64 cumulative_length per layer.
    static = estimate(model, 24, engine="hf-static")
    assert static.total_bytes == 3 * (24 * 128 + 768 + 2048)
    assert static.bookkeeping_bytes == 3 * 8


def test_zamba2_hybrid_layers_only_where_listed() -> None:
    model = model_from_hf(ZAMBA2, "zamba2")
    kinds = [type(s).__name__ for s in model.layer_specs]
    assert kinds == ["FixedState", "StatefulAttention", "FixedState", "StatefulAttention"]
    hybrid = model.layer_specs[1]
    assert isinstance(hybrid, StatefulAttention)
    # Zamba2Config: attention_head_dim = 2 x hidden 32 / 4 heads = 16, whatever head_dim says.
    assert (hybrid.attention.num_kv_heads, hybrid.attention.head_dim) == (2, 16)
    # Mamba2: intermediate 2 x 32 = 64, conv (4 - 1) x (64 + 2 x 1 x 8) = 240, ssm 4 x 16 x 8 = 512.
    assert hybrid.state.state_elements == {"conv": 240, "ssm": 512}
    assert model.layer_specs[0] == hybrid.state
    # Neutral: 4 states x (240 + 512) x 2 B = 6,016; 2 attention layers x 18 x 128 B = 4,608.
    assert estimate(model, SEQ).total_bytes == 6016 + 4608
    # transformers: 4 x (4 x 80 x 2 + 512 x 4) = 10,752 of states, the same 4,608 of K/V.
    assert estimate(model, SEQ, engine="hf").total_bytes == 10752 + 4608


def test_zamba2_default_pattern_needs_54_layers() -> None:
    data = {k: v for k, v in ZAMBA2.items() if k != "layers_block_type"}
    with pytest.raises(UnplacedConfigKeyError, match="layers_block_type"):
        model_from_hf(data, "zamba2")
    model = model_from_hf(data | {"num_hidden_layers": 54}, "zamba2")
    # Zamba2Config.__post_init__: hybrid at 6, 12, ..., 42 (seven), then 47 and 51.
    assert [i for i, s in enumerate(model.layer_specs) if isinstance(s, StatefulAttention)] == \
        [6, 12, 18, 24, 30, 36, 42, 47, 51]


@pytest.mark.parametrize("engine", ["sglang", "llama.cpp", "trtllm"])  # vLLM: test_hybrid_stateful_vllm.py
def test_engines_that_do_not_model_it_refuse(engine: str) -> None:
    model = model_from_hf(FALCON_H1, "falcon-h1")
    with pytest.raises(UnsupportedByEngineError, match="Mamba state and an attention KV cache"):
        estimate(model, SEQ, engine=engine)


def test_falcon_h1_ssm_width_must_match_its_heads() -> None:
    # mamba_d_ssm absent: FalconH1Config's default 1024, not 4 heads x 16; transformers raises, so does kvcalc.
    from kvcalc.errors import InvalidConfigError

    data = {k: v for k, v in FALCON_H1.items() if k != "mamba_d_ssm"}
    with pytest.raises(InvalidConfigError, match="mamba_d_ssm"):
        model_from_hf(data, "falcon-h1")


def test_hybrid_sliding_is_still_refused() -> None:
    data = ZAMBA2 | {"layers_block_type": ["mamba", "hybrid_sliding", "mamba", "hybrid"]}
    with pytest.raises(UnplacedConfigKeyError, match="hybrid_sliding"):
        model_from_hf(data, "zamba2")


def test_spec_round_trips_and_shards() -> None:
    spec = StatefulAttention(attention=FullAttention(num_kv_heads=8, head_dim=128),
                             state=FixedState(state_elements={"conv": 3 * 1280, "ssm": 32 * 64 * 128}, conv_kernel=4))
    assert spec_from_dict(spec.to_dict()) == spec
    half = spec.shard(2)
    assert isinstance(half, StatefulAttention)
    assert half.attention.num_kv_heads == 4
    assert half.state.state_elements == {"conv": 1920, "ssm": 131072}
    with pytest.raises(ValueError, match="full-attention"):
        StatefulAttention(attention=spec.state, state=spec.state)  # type: ignore[arg-type]


@pytest.mark.parametrize("engine", ["neutral", "hf", "hf-static"])
def test_verify_allocates_both_caches_of_a_layer(engine: str) -> None:
    from kvcalc.dtypes import get_dtype
    from kvcalc.engines import get_engine
    from kvcalc.engines.base import Workload
    from kvcalc.measure.layout import layer_tensors

    policy = get_engine(engine)
    spec = model_from_hf(ZAMBA2, "zamba2").layer_specs[1]
    bf16 = get_dtype("bf16")
    work = Workload(seq_len=SEQ, batch=2)
    tensors = layer_tensors(spec, policy, bf16, work, bf16)
    assert sum(t.nbytes for t in tensors) == policy.layer_bytes(spec, bf16, work, bf16)
    names = {t.name.split(".")[0] for t in tensors}
    assert names == {"attn", "state"}


def test_yaml_round_trip_keeps_both_caches() -> None:
    from kvcalc.catalog import to_yaml
    from kvcalc.loader import model_from_data, parse_yaml

    model = model_from_hf(ZAMBA2, "zamba2")
    again = model_from_data(parse_yaml(to_yaml(model), "z.yaml"), "z.yaml")
    assert again.layer_specs == model.layer_specs
    assert estimate(again, SEQ, engine="hf").total_bytes == 10752 + 4608


@pytest.mark.parametrize("engine", ["sglang", "trtllm", "llama.cpp"])  # vLLM: test_hybrid_stateful_vllm.py
def test_plan_refuses_with_one_error_line(cli: Callable[..., CliResult], tmp_path: Path, engine: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(FALCON_H1))
    result = cli("plan", "--config", str(path), "--gpu", "h100", "--engine", engine, "--context", "4096",
                 "--kv-budget", "10GiB")
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --engine") and "Falcon-H1" in lines[0]


def test_weights_from_the_architecture_are_unknown_not_undercounted() -> None:
    # The Mamba mixers' weights are not modelled by the architecture count: None (plan then asks for
    # --weights), never the attention + MLP share alone. Llama-3.2-Vision's cross-attention blocks likewise.
    from kvcalc.planner.weights import computed_parameters
    from kvcalc.registry import get_builtin

    data = FALCON_H1 | {"vocab_size": 97, "intermediate_size": 32}
    assert computed_parameters(model_from_hf(data, "falcon-h1")) is None
    assert computed_parameters(get_builtin("llama-3.2-11b-vision")) is None
    assert computed_parameters(get_builtin("llama-3.1-8b")) is not None
