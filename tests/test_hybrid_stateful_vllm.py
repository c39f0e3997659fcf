"""Falcon-H1 and Zamba2 under ``--engine vllm``: a layer holding a Mamba state and a KV cache at
once (``StatefulAttention``) is, in vLLM, two cache layers: an ``Attention`` layer and a
``MambaMixer2`` with their own layer names (vllm 0.34.0 ``model_executor/models/falcon_h1.py:334-353``,
``zamba2.py:181-205``), grouped by the hybrid KV-cache manager like any attention + Mamba model
(``kvcalc.engines.vllm_kv.cache_layout``). Every figure below is derived by hand from the
config; configs are synthetic (as in ``tests/test_stateful_attention.py``), spelled with each
family's own keys, with ``architectures`` set as the real checkpoints set it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import CliResult

from kvcalc.errors import UnsupportedByEngineError
from kvcalc.estimate import estimate
from kvcalc.hf import model_from_hf
from kvcalc.layout import RankLayout
from kvcalc.planner.plan import PlanRequest, plan

MIB10 = 10 * 2**20  # 10,485,760 B of KV budget
FALCON_H1 = {"model_type": "falcon_h1", "architectures": ["FalconH1ForCausalLM"], "num_hidden_layers": 3,
             "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
             "mamba_d_ssm": 64, "mamba_n_heads": 4, "mamba_d_head": 16, "mamba_n_groups": 2, "mamba_d_state": 8,
             "mamba_d_conv": 4, "mamba_expand": 2, "torch_dtype": "bfloat16", "max_position_embeddings": 4096}
ZAMBA2 = {"model_type": "zamba2", "architectures": ["Zamba2ForCausalLM"], "num_hidden_layers": 4, "hidden_size": 32,
          "num_attention_heads": 4, "num_key_value_heads": 4,
          "layers_block_type": ["mamba", "hybrid", "mamba", "hybrid"], "n_mamba_heads": 4, "mamba_ngroups": 1,
          "mamba_d_state": 8, "mamba_d_conv": 4, "mamba_expand": 2, "torch_dtype": "bfloat16",
          "max_position_embeddings": 4096}
# Falcon-H1: attention 2 KV heads x 16 x (K + V) x 2 B = 128 B per token; Mamba2 state (bf16, the
# model dtype): conv (4 - 1) x (64 + 2 x 8) = 288 values + ssm 4 x 16 x 8 = 512 values = 1,600 B.
# Zamba2: attention 4 heads x 16 (2 x 32 / 4) x 2 x 2 B = 256 B per token; state conv_dim =
# intermediate 64 + 2 x ngroups 1 x state 8 = 80, (4 - 1) x 80 = 240 + ssm 4 x 16 x 8 = 512 values
# -> 752 x 2 B = 1,504 B.


def _plan(model_cfg: dict[str, object], name: str, engine: str, **kw: object) -> object:
    return plan(PlanRequest(model=model_from_hf(model_cfg, name), engine=engine, kv_budget_bytes=MIB10,
                            max_model_len=4096, **kw))  # type: ignore[arg-type]


def test_falcon_h1_vllm_0_20_blocks() -> None:
    p = _plan(FALCON_H1, "falcon-h1", "vllm@0.20")
    # Block 16 (16 x 128 = 2,048 B >= the 1,600 B state: not raised); the Mamba page padded to 2,048.
    # 3 attention + 3 Mamba layers, one page size: group_size 3, two groups;
    # num_blocks = 10,485,760 // 2,048 // 3 = 1,706; tokens (0.20) = 1,706 // 2 groups x 16 = 13,648;
    # a request: cdiv(4096, 16) = 256 attention pages + 1 state page = 257 blocks -> 1,706 / 257.
    assert p.vllm is not None
    assert p.vllm["groups"] == ["3 layers: full, block 16, page 2,048 B", "3 layers: mamba, block 16, page 2,048 B"]
    assert (p.num_blocks, p.kv_cache_tokens, p.block_size) == (1706, 13648, 16)
    assert p.max_concurrency == 1706 / 257
    assert p.log_lines[1:] == ["GPU KV cache size: 13,648 tokens",
                               "Maximum concurrency for 4,096 tokens per request: 6.64x"]


def test_falcon_h1_vllm_0_34_blocks() -> None:
    p = _plan(FALCON_H1, "falcon-h1", "vllm")
    # 0.34: block 64 (the default; 64 x 128 = 8,192 B >= 1,600); page 8,192; num_blocks =
    # 10,485,760 // 8,192 // 3 = 426; Mamba "align" mode holds 3 state pages, so a request is
    # 4096 / 64 = 64 + 3 = 67 blocks; tokens = int(426 / 67 x 4096) = int(26,043.46) = 26,043.
    assert (p.num_blocks, p.block_size) == (426, 64)
    assert p.max_concurrency == 426 / 67
    assert p.kv_cache_tokens == 26043
    assert p.log_lines[1] == "GPU KV cache size: 26,043 tokens, Maximum concurrency for 4,096 tokens per request: 6.36x"


def test_falcon_h1_vllm_pipeline_stages_keep_both_branches() -> None:
    # pp 2 splits the 3 decoder layers [2, 1]; stage 0 holds 2 attention + 2 Mamba layers, so its
    # groups have 2 layers each: 10,485,760 // 2,048 // 2 = 2,560 blocks (stage 1: 5,120; the minimum wins).
    p = _plan(FALCON_H1, "falcon-h1", "vllm@0.20", tp=1, pp=2)
    assert p.num_blocks == 2560
    assert p.kv_cache_tokens == 2560 // 2 * 16


def test_zamba2_vllm_blocks() -> None:
    # 4 Mamba layers (2 Mamba-only + the 2 hybrid layers' mixers) and 2 attention layers: group_size
    # min(4, 2) = 2 (4 >= 1.5 x 2), so two Mamba groups and one attention group, three in all.
    p = _plan(ZAMBA2, "zamba2", "vllm@0.20")
    # 0.20: block 16, page 16 x 256 = 4,096 (>= 1,504); 10,485,760 // 4,096 // 2 = 1,280 blocks;
    # tokens 1,280 // 3 x 16 = 6,816; a request 256 + 1 + 1 = 258 blocks.
    assert (p.num_blocks, p.kv_cache_tokens) == (1280, 6816)
    assert p.max_concurrency == 1280 / 258
    # 0.34: block 64, page 16,384: 10,485,760 // 16,384 // 2 = 320; a request 64 + 3 + 3 = 70 blocks.
    q = _plan(ZAMBA2, "zamba2", "vllm")
    assert (q.num_blocks, q.max_concurrency) == (320, 320 / 70)
    assert q.kv_cache_tokens == int(320 / 70 * 4096) == 18724


def test_estimate_agrees_with_the_pool() -> None:
    # One request of 18 tokens under 0.34: 2 attention layers x 64 tokens x 256 B = 32,768 and
    # 4 Mamba layers x 3 pages x 16,384 = 196,608; total 229,376 = 14 blocks x 16,384 B, which is the
    # pool's blocks_per_request(18) x page.
    z = model_from_hf(ZAMBA2, "zamba2")
    assert estimate(z, 18, engine="vllm").total_bytes == 2 * 64 * 256 + 4 * 3 * 16384 == 229376
    # Falcon-H1 under 0.20: 3 x (2 blocks x 16 x 128 + the state padded to one 2,048 B page) = 18,432.
    f = model_from_hf(FALCON_H1, "falcon-h1")
    assert estimate(f, 18, engine="vllm@0.20").total_bytes == 3 * (32 * 128 + 2048) == 18432


def test_cache_layout_splits_on_the_decoder_stage() -> None:
    from kvcalc.engines.vllm_kv import cache_layout

    f = model_from_hf(FALCON_H1, "falcon-h1")
    split = cache_layout(RankLayout(f, 1, 2))
    assert [len(st.layers) for st in split.stages] == [4, 2]
    assert split.num_layers == 6


def test_zamba2_with_fewer_kv_heads_is_refused() -> None:
    z = model_from_hf(ZAMBA2 | {"num_key_value_heads": 2}, "zamba2")
    with pytest.raises(UnsupportedByEngineError, match="num_attention_heads"):
        estimate(z, 18, engine="vllm")


@pytest.mark.parametrize("engine", ["sglang", "llama.cpp", "trtllm"])
def test_other_engines_still_refuse(engine: str) -> None:
    with pytest.raises(UnsupportedByEngineError, match="Mamba state and an attention KV cache"):
        estimate(model_from_hf(FALCON_H1, "falcon-h1"), 18, engine=engine)


def test_plan_cli_names_the_version_and_the_blocks(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(FALCON_H1))
    result = cli("plan", "--config", str(path), "--engine", "vllm@0.20", "--context", "4096", "--kv-budget", "10MiB",
                 "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    # As test_falcon_h1_vllm_0_20_blocks: 1,706 blocks, 13,648 tokens.
    assert (data["num_blocks"], data["kv_cache_tokens"]) == (1706, 13648)
    assert "0.20" in data["engine_version"]
