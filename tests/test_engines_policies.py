"""Engine storage policies hf, hf-static, llama.cpp; quantized KV; what-if windows; TP/PP.

Every expected figure is derived by hand in the comment next to it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import FIXTURES, CliResult, make_model

from kvcalc.estimate import estimate, pp_partition
from kvcalc.registry import load_model
from kvcalc.specs import LatentAttention, SlidingWindowAttention

GEMMA2_27B = str(FIXTURES / "google--gemma-2-27b.json")
LLAMA2_7B = str(FIXTURES / "meta-llama--Llama-2-7b-hf.json")
LLAMA2_70B = str(FIXTURES / "meta-llama--Llama-2-70b-hf.json")
MIB = 1 << 20


def test_gemma2_27b_hf_and_static() -> None:
    model = load_model(GEMMA2_27B)
    # bf16: 16 KV heads x 128 x 2 x 2 B = 8,192 B/token/layer.
    # hf: 23 x 8192 x 8192 + 23 x 4095 x 8192 = 2,315,067,392 B; one int64 per sliding layer apart.
    hf = estimate(model, 8192, kv_dtype="bf16", engine="hf")
    assert hf.total_bytes == 2_315_067_392
    assert hf.bookkeeping_bytes == 23 * 8
    # hf-static: the whole window: 23 x 8192 x 8192 + 23 x 4096 x 8192 = 2,315,255,808 B;
    # one int64 cumulative_length per layer (46).
    static = estimate(model, 8192, kv_dtype="bf16", engine="hf-static")
    assert static.total_bytes == 2_315_255_808
    assert static.bookkeeping_bytes == 46 * 8
    # Below the window, hf keeps every token and static allocates max_cache_len.
    assert estimate(model, 100, kv_dtype="bf16", engine="hf").total_bytes == 46 * 100 * 8192
    assert estimate(model, 100, kv_dtype="bf16", engine="hf-static").total_bytes == 46 * 100 * 8192


def test_hf_window_boundary() -> None:
    model = make_model(specs=[SlidingWindowAttention(num_kv_heads=1, head_dim=4, window=8)], layers=1)
    # fp16: 2 x 1 x 4 x 2 = 16 B/token. hf keeps window - 1 = 7: 7 tokens fit fully, the 8th does not.
    assert estimate(model, 7, engine="hf").total_bytes == 7 * 16
    assert estimate(model, 8, engine="hf").total_bytes == 7 * 16
    assert estimate(model, 8, engine="hf-static").total_bytes == 8 * 16
    assert estimate(model, 9, engine="hf-static").total_bytes == 8 * 16


def test_llama2_7b_llama_cpp_q8_0(cli: Callable[..., CliResult]) -> None:
    # q8_0: a 4096-value row (32 heads x 128) is 128 blocks x 34 B = 4,352 B per token per layer for K,
    # the same for V; 32 layers x 4096 cells x 4,352 = 570,425,344 B = 544 MiB each (llama.cpp logs
    # "K (q8_0):  544.00 MiB, V (q8_0):  544.00 MiB").
    est = estimate(load_model(LLAMA2_7B), 4096, kv_dtype="q8_0", engine="llama.cpp")
    assert est.k_bytes == est.v_bytes == 544 * MIB == 570_425_344
    assert est.total_bytes == 2 * 544 * MIB
    # Scales: 2 B (fp16 d) per 34 B block: 2 x 32 x 4096 x 128 blocks x 2 B = 64 MiB.
    assert est.scale_bytes == 2 * 32 * 4096 * 128 * 2 == 64 * MIB
    res = cli("estimate", "--config", LLAMA2_7B, "--seq-len", "4096", "--engine", "llama.cpp",
              "--kv-dtype", "q8_0")
    assert res.exit_code == 0
    assert "K (q8_0): 544.00 MiB" in res.stdout and "V (q8_0): 544.00 MiB" in res.stdout
    assert "scale overhead (in the total): 67,108,864 B = 64.00 MiB" in res.stdout
    assert "engine llama.cpp" in res.stdout
    js = cli("estimate", "--config", LLAMA2_7B, "--seq-len", "4096", "--engine", "llama.cpp",
             "--kv-dtype", "q8_0", "--json")
    assert js.json() == est.to_dict()


def test_llama_cpp_pads_n_ctx_and_sizes_swa() -> None:
    model = load_model(LLAMA2_7B)
    # -c 4000 -> GGML_PAD(4000, 256) = 4096 cells; f16: 32 x 4096 x 16,384 B = 2 GiB.
    assert estimate(model, 4000, kv_dtype="f16", engine="llama.cpp").total_bytes == 32 * 4096 * 16384
    # -c 35000 -> 35072 cells.
    assert estimate(model, 35000, kv_dtype="f16", engine="llama.cpp").total_bytes == 32 * 35072 * 16384
    # Gemma-2-27B f16 (8,192 B/token/layer) at 8192: 23 non-SWA layers x 8192 cells;
    # 23 SWA layers x min(8192, PAD(4096 + 512, 256) = 4608) cells.
    gemma = load_model(GEMMA2_27B)
    est = estimate(gemma, 8192, kv_dtype="f16", engine="llama.cpp")
    assert est.total_bytes == 23 * 8192 * 8192 + 23 * 4608 * 8192
    # At 2000 -> 2048 cells, the SWA cache is capped by n_ctx too.
    assert estimate(gemma, 2000, kv_dtype="f16", engine="llama.cpp").total_bytes == 46 * 2048 * 8192


def test_llama_cpp_q4_0_and_mla() -> None:
    # q4_0: 18 B per 32 values: Llama-2-7B row 4096 -> 128 x 18 = 2,304 B for K and for V.
    est = estimate(load_model(LLAMA2_7B), 4096, kv_dtype="q4_0", engine="llama.cpp")
    assert est.k_bytes == est.v_bytes == 32 * 4096 * 2304
    # MLA: K is the 576-value latent, no V: 61 layers x 4096 x 576 x 2 B (f16).
    v3 = estimate(load_model(str(FIXTURES / "deepseek-ai--DeepSeek-V3.json")), 4096, kv_dtype="f16",
                  engine="llama.cpp")
    assert (v3.k_bytes, v3.v_bytes) == (61 * 4096 * 576 * 2, 0)


def test_tp16_llama2_70b(cli: Callable[..., CliResult]) -> None:
    # 8 KV heads, tp 16: max(1, 8 // 16) = 1 head per rank (replicated):
    # 80 layers x 2 x 1 x 128 x 2 B = 40,960 B per token per GPU.
    est = estimate(load_model(LLAMA2_70B), 1, kv_dtype="fp16", tp=16)
    assert est.per_gpu_bytes == 40_960
    assert est.total_bytes == 16 * 40_960
    res = cli("estimate", "--config", LLAMA2_70B, "--seq-len", "4096", "--tp", "16", "--json")
    data = res.json()
    assert data["per_gpu_bytes"] == 4096 * 40_960 and data["total_bytes"] == 16 * 4096 * 40_960


def test_mla_latent_replicated_over_tp() -> None:
    v3 = load_model(str(FIXTURES / "deepseek-ai--DeepSeek-V3.json"))
    assert isinstance(v3.layer_specs[0], LatentAttention)
    # 61 x 1,152 B per token on every rank.
    one = estimate(v3, 1, tp=8)
    assert one.per_gpu_bytes == 61 * 1152 and one.total_bytes == 8 * 61 * 1152


def test_pp_split_matches_vllm_get_pp_indices() -> None:
    # vllm/distributed/utils.py get_pp_indices: 80 // 3 = 26 each; the 80 % 3 = 2 extra layers go to
    # partitions[-2] and partitions[-3] (``for i in range(2, remaining_layers + 2): partitions[-i] += 1``)
    # -> [27, 27, 26].
    assert pp_partition(80, 3) == [27, 27, 26]
    # 61 / 4 -> 15 each, 1 extra to the second-to-last stage.
    assert pp_partition(61, 4) == [15, 15, 16, 15]
    est = estimate(load_model(LLAMA2_70B), 1, kv_dtype="fp16", pp=3)
    # The largest stage holds 27 layers x 4,096 B.
    assert est.per_gpu_bytes == 27 * 4096


def test_quanto_int4_cache() -> None:
    model = load_model(LLAMA2_7B)  # fp16, 32 heads x 128 = 4096 values per K row
    # quanto-int4, group 64: 64 x 4 / 8 = 32 B packed + scale 2 B + zero 2 B = 36 B per 64 values:
    # 64 groups x 36 = 2,304 B per K row, the same for V. Residual 128 -> up to 127 tokens in fp16
    # (16,384 B/token/layer). At 4096: 32 x ((4096 - 127) x 4,608 + 127 x 16,384).
    est = estimate(model, 4096, kv_dtype="quanto-int4", engine="hf")
    assert est.total_bytes == 32 * ((4096 - 127) * 4608 + 127 * 16384)
    # Scales and zero points: 2 rows x 64 groups x 4 B on the quantized tokens.
    assert est.scale_bytes == 32 * (4096 - 127) * 2 * 64 * 4
    # group 32, residual 1 (nothing unquantized), 2-bit hqq: 32 x 2 / 8 = 8 B + 4 B per 32 values.
    est2 = estimate(model, 4096, kv_dtype="hqq-int2", engine="hf", kv_group_size=32, residual_length=1)
    assert est2.total_bytes == 32 * 4096 * 2 * 128 * 12


def test_quantized_cli_line_and_bad_group(cli: Callable[..., CliResult]) -> None:
    res = cli("estimate", "--config", LLAMA2_7B, "--seq-len", "4096", "--kv-dtype", "quanto-int4",
              "--kv-group-size", "64", "--residual-length", "128", "--engine", "hf")
    assert res.exit_code == 0
    assert f"scale overhead (in the total): {32 * 3969 * 512:,} B" in res.stdout
    bad = cli("estimate", "--config", LLAMA2_7B, "--seq-len", "10", "--kv-dtype", "quanto-int2",
              "--kv-group-size", "3")
    assert bad.exit_code != 0 and bad.stdout == "" and "Error" in bad.stderr
    plain = cli("estimate", "--config", LLAMA2_7B, "--seq-len", "10", "--kv-group-size", "64")
    assert plain.exit_code != 0 and plain.stdout == ""


def test_fp8_scales() -> None:
    model = load_model(LLAMA2_7B)
    # per-token-head: 1 B per value + 4 B scale per token, head, for K and V:
    # 32 layers x 4096 x (2 x 4096 + 2 x 32 x 4) = 32 x 4096 x 8,448.
    est = estimate(model, 4096, kv_dtype="fp8_per_token_head")
    assert est.total_bytes == 32 * 4096 * 8448
    assert est.scale_bytes == 32 * 4096 * 256
    # per-tensor: one float32 for K and one for V per layer: 32 x 8 B.
    pt = estimate(model, 4096, kv_dtype="fp8_per_tensor")
    assert pt.total_bytes == 32 * 4096 * 8192 + 32 * 8 and pt.scale_bytes == 256


def test_window_what_if(cli: Callable[..., CliResult]) -> None:
    # Llama-2-7B fp16 at 8192, --window 1024 --sink-tokens 4: every layer holds 1028 tokens
    # (engine-neutral): 32 x 1028 x 16,384 B.
    res = cli("estimate", "--config", LLAMA2_7B, "--seq-len", "8192", "--window", "1024", "--sink-tokens", "4",
              "--json")
    assert res.exit_code == 0
    assert res.json()["total_bytes"] == 32 * 1028 * 16384
    assert any("what-if" in w for w in res.json()["what_if"])
    text = cli("estimate", "--config", LLAMA2_7B, "--seq-len", "8192", "--window", "1024")
    assert "what-if: 32 full-attention layer(s) keep only the last 1,024 tokens" in text.stdout
    # Sliding layers are left alone: Gemma-2-27B bf16 at 8192 with --window 1024: 23 sliding x 4096 +
    # 23 (formerly full) x 1024, 8,192 B/token/layer.
    gem = cli("estimate", "--config", GEMMA2_27B, "--seq-len", "8192", "--kv-dtype", "bf16", "--window", "1024",
              "--json")
    assert gem.json()["total_bytes"] == 23 * 4096 * 8192 + 23 * 1024 * 8192
    sink_only = cli("estimate", "--config", LLAMA2_7B, "--seq-len", "10", "--sink-tokens", "4")
    assert sink_only.exit_code != 0 and sink_only.stdout == ""


@pytest.mark.parametrize("engine", ["hf", "hf-static", "llama.cpp", "transformers", "static", "llama-cpp"])
def test_output_names_engine(cli: Callable[..., CliResult], engine: str) -> None:
    res = cli("estimate", "--config", LLAMA2_7B, "--seq-len", "100", "--engine", engine, "--json")
    assert res.exit_code == 0
    data = res.json()
    assert data["engine"] in ("hf", "hf-static", "llama.cpp") and data["engine_version"]


from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@given(seq=st.integers(1, 20000), window=st.integers(1, 4096), heads=st.integers(1, 16))
def test_hf_never_above_static_or_neutral(seq: int, window: int, heads: int) -> None:
    model = make_model(layers=2, heads=heads,
                       specs=[SlidingWindowAttention(num_kv_heads=heads, head_dim=8, window=window)])
    hf = estimate(model, seq, engine="hf").total_bytes
    static = estimate(model, seq, engine="hf-static").total_bytes
    neutral = estimate(model, seq).total_bytes
    # DynamicCache keeps window - 1, StaticCache min(window, max_cache_len) = the neutral holding.
    assert hf <= static == neutral
    assert estimate(model, seq, engine="llama.cpp").total_bytes >= neutral


# --- what --kv-dtype auto means under each engine ------------------------------------------------

def test_auto_dtype_follows_each_engine_for_a_float32_config() -> None:
    """Gemma-2-9B's config says float32. Per token: 42 layers x 8 KV heads x 256 x 2 (K, V) =
    172,032 values; 4 B each is 688,128 B (neutral, hf: transformers loads the config's dtype);
    2 B each is 344,064 B: vLLM (_resolve_auto_dtype downcasts float32 to bf16), SGLang
    (_get_and_verify_dtype: bf16 for Gemma) and llama.cpp (f16 cache by default)."""
    from kvcalc.estimate import estimate
    from kvcalc.registry import get_builtin

    gemma = get_builtin("gemma-2-9b")
    assert gemma.dtype == "fp32"
    want = {"neutral": ("fp32", 688_128), "hf": ("fp32", 688_128), "vllm": ("bf16", 344_064),
            "sglang": ("bf16", 344_064), "llama.cpp": ("fp16", 344_064)}
    for engine, (name, per_token) in want.items():
        est = estimate(gemma, 16, engine=engine)
        assert (est.kv_dtype, est.bytes_per_token) == (name, per_token), engine
        assert est.kv_dtype_source != "--kv-dtype"
    # An explicit dtype is never reinterpreted.
    assert estimate(gemma, 16, kv_dtype="fp32", engine="vllm").bytes_per_token == 688_128
    # A bf16 model is left alone everywhere but llama.cpp's f16 default (same bytes).
    llama = get_builtin("llama-3-8b")
    assert {estimate(llama, 16, engine=e).kv_dtype for e in ("vllm", "sglang", "hf")} == {"bf16"}


def test_sglang_downcasts_non_gemma_float32_to_fp16() -> None:
    import dataclasses

    from kvcalc.estimate import estimate
    from kvcalc.registry import get_builtin

    fp32_llama = dataclasses.replace(get_builtin("llama-3-8b"), dtype="fp32", architecture="LlamaForCausalLM")
    est = estimate(fp32_llama, 16, engine="sglang")
    assert est.kv_dtype == "fp16" and est.bytes_per_token == 131_072  # 32 x 8 x 128 x 2 x 2


def test_plan_uses_the_engines_auto_dtype_for_cache_and_weights() -> None:
    from kvcalc.planner.plan import PlanRequest, plan
    from kvcalc.registry import get_builtin

    gemma = get_builtin("gemma-2-27b")  # float32 config
    # vLLM at 50 GiB: bf16 pages of 16 x 16 x 256 x 2 = 131,072 B, two groups of 23 layers:
    # 53,687,091,200 // (131,072 x 23) = 17,808 blocks (reference §8.2's hybrid row).
    p = plan(PlanRequest(model=gemma, kv_budget_bytes=50 * 2**30, max_model_len=8192, engine="vllm@0.20"))
    assert p.kv_dtype == "bf16" and p.num_blocks == 17_808
    # Weights run in 16 bits too: 2 bytes a parameter, not 4.
    assert p.weights_bytes is not None and p.parameters is not None and p.weights_bytes == 2 * p.parameters
    t = plan(PlanRequest(model=gemma, kv_budget_bytes=50 * 2**30, max_model_len=8192, engine="trtllm"))
    assert t.kv_dtype == "fp16" and t.weights_bytes == 2 * p.parameters
    h = plan(PlanRequest(model=gemma, kv_budget_bytes=50 * 2**30, max_model_len=8192, engine="hf"))
    assert h.kv_dtype == "fp32" and h.weights_bytes == 4 * p.parameters


def test_hqq_3bit_packs_ten_values_per_int32() -> None:
    """hqq BitPack.pack_3bit_32 pads a group's values to a multiple of ten and packs ten per
    int32: a 64-value group is ceil(64 / 10) x 4 = 28 bytes (not 64 x 3 / 8 = 24), plus an fp16
    scale and zero point (4 bytes); 4-bit groups stay 32 + 4. Checked against real hqq 0.2.8 caches
    in test_quantized_cache_real.py."""
    from kvcalc.dtypes import quantized_cache_dtype

    assert quantized_cache_dtype("hqq-int3", "fp16", group_size=64).block_bytes == 28 + 4
    assert quantized_cache_dtype("hqq-int3", "fp16", group_size=10).block_bytes == 4 + 4
    assert quantized_cache_dtype("hqq-int4", "fp16", group_size=64).block_bytes == 32 + 4
    assert quantized_cache_dtype("quanto-int2", "bf16", group_size=64).block_bytes == 16 + 4


def test_state_dtypes_follow_each_engine() -> None:
    """Qwen3-Next's linear-attention layers (bf16 model) hold conv 24,576 + recurrent 524,288
    values per sequence as vLLM counts them (conv keeps kernel - 1 = 3 columns of 8,192 channels).
    With --kv-dtype fp8 (q8_0 for llama.cpp), per layer and sequence:
    neutral (kvcalc's definition, the KV dtype):  548,864 x 1 B            =   548,864
    vllm (model dtype, MambaStateDtypeCalculator): 548,864 x 2 B            = 1,097,728
    sglang (conv bf16, SSM float32):    24,576 x 2 + 524,288 x 4           = 2,146,304
    llama.cpp (recurrent_type_r/s F32): 548,864 x 4                        = 2,195,456
    hf (all 4 conv columns in bf16, recurrent float32):
                                        32,768 x 2 + 524,288 x 4           = 2,162,688"""
    from kvcalc.estimate import estimate
    from kvcalc.registry import get_builtin

    model = get_builtin("qwen3-next-80b-a3b")
    want = {"neutral": 548_864, "vllm@0.20": 1_097_728, "sglang": 2_146_304, "llama.cpp": 2_195_456,
            "hf": 2_162_688, "hf-static": 2_162_688}
    for engine, per_seq in want.items():
        est = estimate(model, 16, kv_dtype="q8_0" if engine == "llama.cpp" else "fp8", engine=engine)
        (state,) = [g for g in est.layers if g.kind == "state"]
        assert (state.layers, state.fixed_bytes_per_sequence) == (36, per_seq), engine


def test_vllm_mamba_page_uses_the_model_dtype_under_fp8() -> None:
    # fp8 attention: 2 KV heads x (256 + 256) x 1 B = 1,024 B per token per layer; the bf16 GDN
    # state page is 1,097,728 B, so the attention block grows to 16 x cdiv(1,097,728, 16 x 1,024)
    # = 1,072 tokens and every page is 1,072 x 1,024 = 1,097,728 B (with fp8 states it would have
    # been 544 tokens).
    from kvcalc.planner.plan import PlanRequest, plan
    from kvcalc.registry import get_builtin

    p = plan(PlanRequest(model=get_builtin("qwen3-next-80b-a3b"), kv_budget_bytes=50 * 2**30,
                         max_model_len=32768, kv_dtype="fp8", engine="vllm@0.20"))
    assert p.vllm is not None and p.vllm["page_size_bytes"] == 1_097_728
