"""Issue 13: what an engine version serves (architecture tables read from the wheels), and the
parallel layouts MLA models run with (SGLang attention DP, vLLM decode context parallelism).
Every figure below is derived by hand in the comments."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcalc import load_model
from kvcalc.engines import served
from kvcalc.errors import InvalidRequestError, UnsupportedByEngineError
from kvcalc.planner.plan import PlanRequest, plan
from tests.conftest import CliResult

Cli = Callable[..., CliResult]

ROOT = Path(__file__).resolve().parent.parent
WHEELS = {"vLLM 0.20.0": Path("/tmp/e13/vllm_0.20.0"), "vLLM 0.33.0": Path("/tmp/e13/vllm_0.33.0"),
          "vLLM 0.34.0": Path("/tmp/e13/vllm34"), "SGLang 0.5.23": Path("/tmp/e13/sgl")}


# -- the tables --------------------------------------------------------------------------------

def test_tables_cover_each_modelled_release() -> None:
    assert served.releases() == sorted(WHEELS)
    for release in WHEELS:
        t = served.table(release)
        assert t is not None
        # Read from each wheel: vllm/model_executor/models/registry.py _TEXT_GENERATION_MODELS,
        # sglang/srt/models/deepseek_v2.py EntryClass.
        assert {"LlamaForCausalLM", "DeepseekV3ForCausalLM", "Qwen3ForCausalLM"} <= t.generate


def test_vllm_removals_read_from_previously_supported() -> None:
    # 0.34.0 registry.py:908 "BaichuanForCausalLM": "0.23.0"; 0.20.0 still has it in
    # _TEXT_GENERATION_MODELS; 0.34.0 runs GPTNeoXForCausalLM through its Transformers backend (:790).
    old, new = served.table("vLLM 0.20.0"), served.table("vLLM 0.34.0")
    assert old is not None and new is not None
    assert "BaichuanForCausalLM" in old.generate
    assert "BaichuanForCausalLM" not in new.generate and new.removed["BaichuanForCausalLM"] == "0.23.0"
    assert "GPTNeoXForCausalLM" in new.transformers and "GPTNeoXForCausalLM" in old.generate


@pytest.mark.skipif(not all(p.is_dir() for p in WHEELS.values()), reason="unpacked release wheels not here")
def test_committed_table_is_what_the_wheels_say() -> None:
    args = [f"{k}={v}" for k, v in WHEELS.items()]
    out = subprocess.run([sys.executable, "-m", "benchmarks.served_architectures", *args], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == json.loads((ROOT / "kvcalc/data/served_architectures.json").read_text())


# -- the refusal -------------------------------------------------------------------------------

def test_plan_refuses_an_architecture_the_version_does_not_serve() -> None:
    m = load_model("falcon-180b")  # FalconForCausalLM: no EntryClass in sglang 0.5.23 srt/models
    with pytest.raises(UnsupportedByEngineError, match=r"FalconForCausalLM is not served by SGLang 0\.5\.23"):
        plan(PlanRequest(model=m, engine="sglang", kv_budget_bytes=50 << 30, max_model_len=2048))
    p = plan(PlanRequest(model=m, engine="sglang", kv_budget_bytes=50 << 30, max_model_len=2048,
                         model_impl="transformers"))
    assert any("Transformers" in n or "transformers" in n for n in p.notes)
    # vLLM 0.34 serves Falcon natively; 0.20 as well.
    assert plan(PlanRequest(model=m, engine="vllm", kv_budget_bytes=50 << 30, max_model_len=2048)).fits


def test_refusal_names_the_release_that_last_served_it() -> None:
    m = dataclasses.replace(load_model("llama-2-7b"), architecture="BaichuanForCausalLM")
    with pytest.raises(UnsupportedByEngineError, match=r"vLLM 0\.34\.0 \(it was served until v0\.23\.0\)"):
        plan(PlanRequest(model=m, engine="vllm", kv_budget_bytes=10 << 30, max_model_len=4096))
    assert plan(PlanRequest(model=m, engine="vllm@0.20", kv_budget_bytes=10 << 30, max_model_len=4096)).fits


def test_refusal_on_the_cli(cli: Cli) -> None:
    r = cli("plan", "falcon-180b", "--engine", "sglang", "--kv-budget", "50GiB")
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.startswith("Error: falcon-180b: architecture FalconForCausalLM is not served by SGLang 0.5.23")
    assert len(r.stderr.strip().splitlines()) == 1
    bad = cli("plan", "llama-2-7b", "--kv-budget", "5GiB", "--model-impl", "tf")
    assert bad.exit_code != 0 and "--model-impl" in bad.stderr and bad.stdout == ""


# -- vLLM decode context parallelism ----------------------------------------------------------

# DeepSeek-V3 (61 MLA layers, latent 512 + rope 64, bf16): 1,152 B per token per layer; a 64-token
# block of all 61 layers is 64 x 61 x 1,152 = 4,497,408 B.
DSV3_BLOCK_BYTES = 64 * 61 * (512 + 64) * 2


def _dsv3(engine: str, blocks: int, length: int, dcp: int) -> object:
    return plan(PlanRequest(model=load_model("deepseek-v3"), engine=engine, kv_dtype="bf16", tp=8, dcp=dcp,
                            kv_budget_bytes=blocks * DSV3_BLOCK_BYTES, max_model_len=length, block_size=64,
                            solve_tp=False))


@pytest.mark.parametrize("engine", ["vllm", "vllm@0.33", "vllm@0.20"])
def test_dcp_splits_each_request_over_the_ranks(engine: str) -> None:
    # 1,000 blocks. TP only: 32,768 tokens = 512 blocks per request -> concurrency 1000/512 = 1.953125,
    # one request resident (999 usable // 512). DCP 8: a rank holds cdiv(32768, 8) = 4,096 tokens
    # = 64 blocks (kv_cache_interface.py:654-659 @ 0.34.0) -> 1000/64 = 15.625x, 999 // 64 = 15 resident.
    tp_only, dcp8 = _dsv3(engine, 1000, 32768, 1), _dsv3(engine, 1000, 32768, 8)
    assert tp_only.num_blocks == dcp8.num_blocks == 1000  # type: ignore[attr-defined]
    assert tp_only.max_concurrency == 1000 / 512 and tp_only.max_sequences == 1  # type: ignore[attr-defined]
    assert dcp8.max_concurrency == 1000 / 64 and dcp8.max_sequences == 15  # type: ignore[attr-defined]
    # Logged tokens: 0.20.0 num_blocks x block x dcp = 1000 x 64 x 8 (kv_cache_utils.py:1694-1702);
    # later releases int(15.625 x 32768): the same 512,000.
    assert dcp8.kv_cache_tokens == 512_000  # type: ignore[attr-defined]
    assert "32,768 tokens per request: 15.62x" in dcp8.log_lines[-1]  # type: ignore[attr-defined]
    # One request's KV on a rank: 4,096 tokens x 61 x 1,152 B.
    assert dcp8.per_gpu_bytes == 4096 * 61 * 1152  # type: ignore[attr-defined]


def test_dcp_fit_error_and_estimate() -> None:
    # 0.34.0, 100 blocks, 131,072 tokens, DCP 8: a rank needs cdiv(16384, 64) = 256 blocks; the check
    # holds back the null block (99 blocks), whose largest per-rank length is 99 x 64 = 6,336 tokens,
    # so the estimated max_model_len is 6,336 x 8 = 50,688 (the largest L with cdiv(L, 8) <= 6,336).
    p = _dsv3("vllm", 100, 131072, 8)
    assert not p.fits and p.estimated_max_model_len == 50_688  # type: ignore[attr-defined]
    assert "max seq len (131072)" in (p.reason or "")  # type: ignore[attr-defined]
    assert "estimated maximum model length is 50688" in (p.reason or "")  # type: ignore[attr-defined]


def test_dcp_refused_where_vllm_refuses_it() -> None:
    with pytest.raises(InvalidRequestError, match="divisor of --tp"):
        _dsv3("vllm", 1000, 4096, 3)
    with pytest.raises(InvalidRequestError, match="sliding"):
        plan(PlanRequest(model=load_model("gemma-2-9b"), engine="vllm", kv_budget_bytes=10 << 30, tp=2, dcp=2))
    with pytest.raises(InvalidRequestError, match="--dcp"):
        plan(PlanRequest(model=load_model("deepseek-v3"), engine="sglang", kv_budget_bytes=10 << 30, tp=8, dcp=2))


# -- SGLang attention DP ----------------------------------------------------------------------

def test_dp_attention_mla_multiplies_resident_requests() -> None:
    # MLA: the latent is whole on every TP rank, so each rank's pool is the same with or without
    # attention DP; with --dp-attention 8 each of the 8 ranks holds its own requests.
    m = load_model("deepseek-v3")
    base = PlanRequest(model=m, engine="sglang", kv_dtype="bf16", kv_budget_bytes=40 << 30, tp=8,
                       max_model_len=32768, solve_tp=False)
    tp_only, dpa = plan(base), plan(dataclasses.replace(base, dp_attention=8))
    assert dpa.kv_cache_tokens == tp_only.kv_cache_tokens
    assert dpa.attention_tp == 1 and tp_only.attention_tp == 8
    assert dpa.max_sequences == 8 * tp_only.max_sequences
    # Per rank, one 32,768-token request: 32,768 x 61 x 1,152 B (SGLang, page 1).
    assert tp_only.per_gpu_bytes == 32768 * 61 * 1152
    # Tokens: 40 GiB // (61 x 1,152 B) per slot, less SGLang's reserved page; the sequences follow.
    per_token = 61 * 1152
    assert tp_only.kv_cache_tokens is not None and tp_only.kv_cache_tokens <= (40 << 30) // per_token
    assert tp_only.max_sequences == tp_only.kv_cache_tokens // 32768


def test_dp_attention_gqa_splits_heads_by_attention_tp() -> None:
    # Llama-3-70B (80 layers, 8 KV heads x 128, bf16), TP 8 with --dp-attention 2: attention TP 4,
    # 2 heads per rank: 80 x 2 x 2 x 128 x 2 = 81,920 B per token (TP 8 alone: 40,960).
    m = load_model("llama-3-70b")
    base = PlanRequest(model=m, engine="sglang", kv_dtype="bf16", kv_budget_bytes=20 << 30, tp=8,
                       max_model_len=8192, solve_tp=False)
    dpa = plan(dataclasses.replace(base, dp_attention=2))
    tp4 = plan(dataclasses.replace(base, tp=4))
    assert dpa.per_gpu_bytes == 8192 * 81_920 == tp4.per_gpu_bytes
    assert dpa.kv_cache_tokens == tp4.kv_cache_tokens
    assert dpa.max_sequences == 2 * tp4.max_sequences
    with pytest.raises(InvalidRequestError, match="divisor of --tp"):
        plan(dataclasses.replace(base, dp_attention=3))
    with pytest.raises(InvalidRequestError, match="SGLang"):
        plan(dataclasses.replace(base, engine="vllm", dp_attention=2))


def test_parallel_flags_on_the_cli(cli: Cli) -> None:
    r = cli("plan", "deepseek-v3", "--engine", "sglang", "--kv-budget", "40GiB", "--tp", "8",
                       "--dp-attention", "8", "--context", "32k", "--kv-dtype", "bf16", "--json")
    assert r.exit_code == 0, r.stderr
    d = r.json()
    assert d["dp_attention"] == 8 and d["attention_tp"] == 1
    r2 = cli("plan", "deepseek-v3", "--kv-budget", "40GiB", "--tp", "8", "--dcp", "8",
                        "--context", "32k", "--json")
    assert r2.exit_code == 0, r2.stderr
    assert r2.json()["dcp"] == 8


# -- speculative decoding -----------------------------------------------------------------------

def test_vllm_mtp_layer_joins_the_pool() -> None:
    # DeepSeek-V3 + one MTP layer (num_nextn_predict_layers 1): vLLM's group holds 62 MLA layers,
    # a 64-token block 64 x 62 x 1,152 = 4,571,136 B; 40 GiB // that = 9,395 blocks (61 layers: 9,549).
    m = load_model("deepseek-v3")
    base = PlanRequest(model=m, engine="vllm", kv_dtype="bf16", kv_budget_bytes=40 << 30, tp=8,
                       max_model_len=32768, block_size=64, solve_tp=False)
    plain = plan(base)
    mtp = plan(dataclasses.replace(base, speculative_config='{"method": "deepseek_mtp", "num_speculative_tokens": 1}'))
    assert plain.num_blocks == (40 << 30) // (64 * 61 * 1152) == 9_549
    assert mtp.num_blocks == (40 << 30) // (64 * 62 * 1152) == 9_395
    assert mtp.draft_layers == 1 and mtp.speculative_method == "deepseek_mtp"
    # An n-gram proposer keeps no KV.
    ngram = plan(dataclasses.replace(base, speculative_config='{"method": "ngram", "num_speculative_tokens": 4}'))
    assert ngram.num_blocks == plain.num_blocks and ngram.draft_layers == 0


def test_sglang_eagle3_draft_pool() -> None:
    # Llama-3-8B (32 layers x 8 KV heads x 128, bf16): 131,072 B per token; with one EAGLE-3 layer
    # SGLang's cell grows by int(131072 x 1 / 32) = 4,096 B (pool_configurator.py:259-313 @ 0.5.23):
    # 20 GiB // 135,168 = 158,875 tokens, and the two pools log their own lines over 158,876 slots:
    # K 158,876 x 32 x 2,048 B = 9.70 GiB (target), 158,876 x 2,048 B = 0.30 GiB (draft).
    m = load_model("llama-3-8b")
    base = PlanRequest(model=m, engine="sglang", kv_dtype="bf16", kv_budget_bytes=20 << 30, max_model_len=8192,
                       solve_tp=False)
    p = plan(dataclasses.replace(base, speculative_algorithm="EAGLE3"))
    assert p.kv_cache_tokens == (20 << 30) // 135_168 == 158_875
    assert p.log_lines[-2:] == ["KV Cache is allocated. #tokens: 158875, K size: 9.70 GB, V size: 9.70 GB",
                                "KV Cache is allocated. #tokens: 158875, K size: 0.30 GB, V size: 0.30 GB"]
    three = plan(dataclasses.replace(base, speculative_algorithm="EAGLE", draft_layers=3))
    assert three.kv_cache_tokens == (20 << 30) // (35 * 4096)


def test_speculative_flags_refused_where_they_do_not_belong() -> None:
    m = load_model("llama-3-8b")
    base = PlanRequest(model=m, engine="sglang", kv_budget_bytes=20 << 30, max_model_len=8192, solve_tp=False)
    with pytest.raises(InvalidRequestError, match="--speculative-config"):
        plan(dataclasses.replace(base, speculative_config='{"method": "eagle"}'))
    with pytest.raises(InvalidRequestError, match="STANDALONE"):
        plan(dataclasses.replace(base, speculative_algorithm="STANDALONE"))
    vllm = dataclasses.replace(base, engine="vllm")
    # A separate draft model needs its config (--draft-model; tests/test_draft_model.py).
    with pytest.raises(InvalidRequestError, match="--draft-model"):
        plan(dataclasses.replace(vllm, speculative_config='{"method": "draft_model", "model": "x"}'))
    with pytest.raises(InvalidRequestError, match="JSON"):
        plan(dataclasses.replace(vllm, speculative_config="{method: eagle"))
    with pytest.raises(InvalidRequestError, match="--draft-layers"):
        plan(dataclasses.replace(vllm, draft_layers=1))
    # A draft beside a mixed-layer target (Gemma-2: sliding + full) is refused, not guessed.
    with pytest.raises(InvalidRequestError, match="mixed-layer"):
        plan(dataclasses.replace(vllm, model=load_model("gemma-2-9b"), speculative_config='{"method": "eagle3"}'))


def test_engines_command_lists_versions_and_tables(cli: Cli) -> None:
    r = cli("engines", "--json")
    assert r.exit_code == 0, r.stderr
    rows = {row["engine"]: row for row in r.json()["engines"]}
    assert rows["vllm"]["architectures_from"] == "vLLM 0.34.0"
    assert rows["vllm@0.20"]["architectures"] == len(served.table("vLLM 0.20.0").generate)  # type: ignore[union-attr]
    a = cli("engines", "--architectures", "vllm@0.20", "--json")
    assert a.exit_code == 0 and "BaichuanForCausalLM" in a.json()["generate"]
    bad = cli("engines", "--architectures", "llama.cpp")
    assert bad.exit_code == 2 and bad.stdout == "" and bad.stderr.startswith("Error: --architectures")


def test_speculative_flags_on_the_cli(cli: Cli) -> None:
    r = cli("plan", "llama-3-8b", "--engine", "sglang", "--kv-budget", "20GiB", "--context", "8k", "--kv-dtype",
            "bf16", "--speculative-algorithm", "EAGLE3", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["kv_cache_tokens"] == 158_875 and r.json()["draft_layers"] == 1


@settings(max_examples=25, deadline=None)
@given(blocks=st.integers(min_value=1, max_value=5000), length=st.integers(min_value=1, max_value=163840),
       dcp=st.sampled_from([1, 2, 4, 8]))
def test_dcp_is_the_tp_only_pool_at_cdiv_length(blocks: int, length: int, dcp: int) -> None:
    # vLLM's rule (kv_cache_interface.py:654-659 @ 0.34.0): with DCP a rank's pool answers for
    # cdiv(L, dcp) tokens; the blocks are the same, the concurrency and the fit follow.
    with_dcp = _dsv3("vllm", blocks, length, dcp)
    rank = _dsv3("vllm", blocks, -(-length // dcp), 1)
    assert with_dcp.num_blocks == rank.num_blocks  # type: ignore[attr-defined]
    assert with_dcp.max_concurrency == rank.max_concurrency  # type: ignore[attr-defined]
    assert with_dcp.fits == rank.fits and with_dcp.max_sequences == rank.max_sequences  # type: ignore[attr-defined]
