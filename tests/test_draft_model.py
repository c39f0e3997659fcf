"""Speculative decoding with a separate draft model (``--draft-model``): vLLM ``method:
draft_model`` and SGLang ``STANDALONE`` (``kvcalc.engines.speculative``, sources cited there).

Target: Llama-3.1-8B (built-in): 32 layers, 8 KV heads x 128, bf16: 8 x 128 x 2 (K, V) x 2 B =
4,096 B per token per layer; 8,030,261,248 parameters. Draft: a Llama-3.2-1B-shaped config (below,
synthetic, with Llama-3.2-1B's published shape): 16 layers, 8 KV heads x 64: 2,048 B per token per
layer; parameters 128,256 x 2,048 (tied embeddings) + 16 x (attention 2,048 x (2,048 + 2 x 512 +
2,048) + MLP 3 x 2,048 x 8,192 + 2 norms x 2,048) + final norm 2,048 = 1,235,814,400, bf16
2,471,628,800 B.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import CliResult

from kvcalc.errors import InvalidRequestError
from kvcalc.hf import model_from_hf
from kvcalc.models import ModelConfig
from kvcalc.planner.plan import Plan, PlanRequest, plan
from kvcalc.registry import get_builtin

GIB10 = 10 * 2**30  # 10,737,418,240 B
DRAFT_CFG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "num_hidden_layers": 16,
             "hidden_size": 2048, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
             "intermediate_size": 8192, "vocab_size": 128256, "tie_word_embeddings": True,
             "torch_dtype": "bfloat16", "max_position_embeddings": 131072}
DRAFT_WEIGHTS = 1_235_814_400 * 2


def _draft() -> ModelConfig:
    return model_from_hf(DRAFT_CFG, "draft-1b")


def _plan(engine: str, **kw: object) -> Plan:
    kw.setdefault("kv_budget_bytes", GIB10)
    return plan(PlanRequest(model=get_builtin("llama-3.1-8b"), engine=engine, max_model_len=8192,
                            draft_model=_draft(), **kw))  # type: ignore[arg-type]


def test_vllm_0_20_one_block_covers_target_and_draft() -> None:
    p = _plan("vllm@0.20", num_speculative_tokens=4)
    # All full attention, block 16, two page sizes: one UniformTypeKVCacheSpecs group whose block
    # is 32 x 16 x 4,096 + 16 x 16 x 2,048 = 2,097,152 + 524,288 = 2,621,440 B;
    # 10,737,418,240 // 2,621,440 = 4,096 blocks; tokens 4,096 x 16 = 65,536; a request of 8,192
    # takes 512 blocks: concurrency 8.00.
    assert p.vllm is not None and p.vllm["groups"] == ["48 layers: full, block 16, page 2,621,440 B"]
    assert (p.num_blocks, p.kv_cache_tokens, p.max_concurrency) == (4096, 65536, 8.0)
    assert (p.speculative_method, p.draft_layers, p.draft_model) == ("draft_model", 16, "draft-1b")


def test_vllm_0_34_block_64() -> None:
    # Block 64: page 4 x 2,621,440 = 10,485,760; 1,024 blocks; int(1,024 / 128 x 8,192) = 65,536 tokens.
    p = _plan("vllm", speculative_config='{"method": "draft_model", "num_speculative_tokens": 3}')
    assert (p.num_blocks, p.kv_cache_tokens, p.max_concurrency) == (1024, 65536, 8.0)


def test_vllm_draft_weights_count_in_the_budget() -> None:
    with_draft = _plan("vllm", kv_budget_bytes=None, gpu="h100", num_speculative_tokens=4)
    alone = plan(PlanRequest(model=get_builtin("llama-3.1-8b"), engine="vllm", gpu="h100", max_model_len=8192))
    assert with_draft.weights_bytes == 8_030_261_248 * 2 + DRAFT_WEIGHTS
    assert with_draft.weights_per_gpu_bytes == alone.weights_per_gpu_bytes + DRAFT_WEIGHTS  # type: ignore[operator]
    assert with_draft.kv_budget_bytes == alone.kv_budget_bytes - DRAFT_WEIGHTS


def test_sglang_standalone_budgets_target_sized_layers() -> None:
    p = _plan("sglang")
    # cell 32 x 4,096 = 131,072 B; + int(131,072 x 16 / 32) = 65,536 for the draft: 196,608 B per token;
    # 10,737,418,240 // 196,608 = 54,613 tokens (54,613.3).
    assert p.kv_cache_tokens == 54613
    # Log lines over 54,614 slots: target K = 32 x 8 x 128 x 2 B = 65,536 B per slot -> 3.33 GiB;
    # the draft pool's own K = 16 x 8 x 64 x 2 B = 16,384 B per slot -> 54,614 x 16,384 / 2^30 = 0.83.
    assert p.log_lines == ["KV Cache is allocated. #tokens: 54613, K size: 3.33 GB, V size: 3.33 GB",
                           "KV Cache is allocated. #tokens: 54613, K size: 0.83 GB, V size: 0.83 GB"]
    assert p.speculative_method == "STANDALONE"


def test_sglang_draft_weights_outside_the_budget() -> None:
    # SGLang sizes the target's pool before loading the draft (scheduler.py:1128-1133 @ 0.5.23).
    with_draft = _plan("sglang", kv_budget_bytes=None, gpu="h100")
    alone = plan(PlanRequest(model=get_builtin("llama-3.1-8b"), engine="sglang", gpu="h100", max_model_len=8192))
    assert with_draft.weights_bytes == 8_030_261_248 * 2 + DRAFT_WEIGHTS
    assert with_draft.kv_budget_bytes == alone.kv_budget_bytes
    assert any("loaded after the pool" in n for n in with_draft.notes)


def test_refusals() -> None:
    bad_vocab = model_from_hf(DRAFT_CFG | {"vocab_size": 32000}, "draft-1b")
    with pytest.raises(InvalidRequestError, match="vocabulary"):
        plan(PlanRequest(model=get_builtin("llama-3.1-8b"), engine="vllm", kv_budget_bytes=GIB10,
                         draft_model=bad_vocab, num_speculative_tokens=4))
    with pytest.raises(InvalidRequestError, match="num_speculative_tokens"):
        _plan("vllm")
    with pytest.raises(InvalidRequestError, match="draft_tensor_parallel_size"):
        _plan("vllm", tp=2, speculative_config='{"method": "draft_model", "num_speculative_tokens": 2, '
                                               '"draft_tensor_parallel_size": 1}')
    with pytest.raises(InvalidRequestError, match="--pp"):
        _plan("vllm", pp=2, num_speculative_tokens=2)
    with pytest.raises(InvalidRequestError, match="--draft-model"):
        plan(PlanRequest(model=get_builtin("llama-3.1-8b"), engine="vllm", kv_budget_bytes=GIB10,
                         speculative_config='{"model": "meta-llama/Llama-3.2-1B", "num_speculative_tokens": 4}'))
    with pytest.raises(InvalidRequestError, match="STANDALONE"):
        _plan("sglang", speculative_algorithm="EAGLE")
    with pytest.raises(InvalidRequestError, match="--draft-model"):
        _plan("llama.cpp")


def test_tp2_shards_the_draft_too() -> None:
    # TP 2: target 4 KV heads -> 32 x 16 x 2,048 = 1,048,576; draft 4 heads x 64 -> 16 x 16 x 1,024 =
    # 262,144; block 1,310,720 B: 10 GiB // that = 8,192 blocks.
    p = _plan("vllm@0.20", tp=2, num_speculative_tokens=2)
    assert p.num_blocks == 8192


def test_cli(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(DRAFT_CFG))
    r = cli("plan", "llama-3.1-8b", "--engine", "vllm@0.20", "--kv-budget", "10GiB", "--context", "8192",
            "--draft-model", str(path), "--num-speculative-tokens", "4", "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert (data["num_blocks"], data["kv_cache_tokens"], data["draft_layers"]) == (4096, 65536, 16)
    bad = cli("plan", "llama-3.1-8b", "--engine", "vllm", "--kv-budget", "10GiB", "--draft-model", "llama-3.1-70b")
    assert bad.exit_code != 0 and bad.stderr.startswith("Error:") and "--num-speculative-tokens" in bad.stderr
