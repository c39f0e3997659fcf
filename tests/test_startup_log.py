"""check-log on the real-log corpus (tests/fixtures/logs/SOURCES.md names each thread), one test
per source, plus lines built from the engines' own format strings where no public log shows a form.

Every expected figure is derived by hand in the test's docstring from the engine's code; the
prediction must contain the logged figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kvcalc.engines.loglines import read_log
from kvcalc.engines.startup_log import LogCheck, check_log
from kvcalc.errors import InvalidConfigError, InvalidRequestError
from kvcalc.registry import load_model
from kvcalc.units import GiB, MiB

LOGS = Path(__file__).parent / "fixtures" / "logs"


def by_item(result: LogCheck) -> dict[str, Any]:
    return {c.item: c for c in result.checks}


def test_v0_064_one_line_issue_10517_20k() -> None:
    """vllm-project/vllm#10517 (RTX 3090, Llama-3.1-8B-Instruct, 20k). vLLM 0.6.4 worker.py:215:
    kv = total x util - peak: 23.58 x 0.90 - 17.06 - 0.35 = 3.812 -> "3.81" (util printed with 2
    decimals, so 0.895..0.905 is carried). Blocks of 16 x 131,072 B = 2 MiB: 3.805..3.815 GiB ->
    1,948..1,953, logged 1,952. Concurrency 1,952 x 16 / 20,000 = 1.5616 -> "1.56x"."""
    r = check_log(LOGS / "vllm_0_6_4_oneline_llama31_8b_rtx3090_20k.log", load_model("llama-3.1-8b"))
    c = by_item(r)
    assert c["KV cache memory (GiB)"].matches
    assert (c["blocks"].predicted, c["blocks"].matches) == ("1,948..1,953", True)
    assert (c["Maximum concurrency at 20,000 tokens"].predicted, c["Maximum concurrency at 20,000 tokens"].matches) \
        == ("1.56x", True)
    assert r.generation.startswith("vLLM V0 0.6.4") and "V0 worker" in r.rules
    assert r.all_match


def test_v0_064_fit_error_issue_10517_29k() -> None:
    """Same thread, 29k: V0 worker.py:496-503 prints block size x blocks = 16 x 1,478 = 23,648."""
    r = check_log(LOGS / "vllm_0_6_4_oneline_llama31_8b_rtx3090_29k_fit_error.log", load_model("llama-3.1-8b"))
    c = by_item(r)["tokens the KV cache can store (fit error)"]
    assert (c.logged, c.predicted, c.matches) == ("23,648", "23,648", True)
    assert by_item(r)["Maximum concurrency at 29,000 tokens"].predicted == "0.82x"  # 23,648 / 29,000
    assert r.all_match


def test_v0_065_table_pr_10511() -> None:
    """vllm-project/vllm#10511 (H100, Meta-Llama-3-8B): 79.22 x 0.90 = 71.298 -> "71.29" inside
    the rounding interval; 71.29 - 14.96 - 1.79 - 1.26 = 53.28, logged 53.29 (each term +-0.005)."""
    r = check_log(LOGS / "vllm_0_6_5_profiling_table_llama3_8b_h100.log")
    c = by_item(r)
    assert c["vLLM instance budget (GiB)"].matches and c["KV cache memory (GiB)"].matches
    assert r.model_resolved == "llama-3-8b" and r.all_match


@pytest.mark.parametrize(
    ("fixture", "expected_rest"),
    [("vllm_0_7_v0_llama32_11b_vision_h100.log", "14.65"), ("vllm_0_7_v0_sleep_mode_h100.log", "57.48"),
     ("vllm_0_7_v0_mellea_h100.log", "61.84"), ("vllm_0_8_v0_moe_wna16_rtx3090.log", "1.57")],
)
def test_v0_budget_lines_with_rounded_utilization(fixture: str, expected_rest: str) -> None:
    """vllm PRs #12126, #11743, mellea#416, vllm#14447: rest = total x util - weights - non-torch
    - activation, with util printed to 2 decimals: compared within that rounding, never as exact
    (e.g. 23.58 x 0.99 - 21.21 - 0.20 - 0.37 = 1.5642, logged 1.57: inside 23.58 x 0.985..0.995)."""
    r = check_log(LOGS / fixture)
    c = by_item(r)["KV cache memory (GiB)"]
    assert c.logged == expected_rest and c.matches
    assert "0.005" in c.basis


def test_v0_blocks_without_a_model_are_listed_not_matched() -> None:
    """vllm#12126 names Llama-3.2-11B-Vision, not built in: its 6,001 blocks need the model's shape,
    so they are listed with matches None; the budget figures still compare."""
    r = check_log(LOGS / "vllm_0_7_v0_llama32_11b_vision_h100.log")
    blocks = by_item(r)["blocks"]
    assert blocks.matches is None and "MODEL or --config" in blocks.basis
    assert r.not_compared == 1 and r.all_match


def test_v0_concurrency_mellea() -> None:
    """mellea#416: V0 concurrency = blocks x block / len = 36,184 x 16 / 8,192 = 70.67x (no model)."""
    c = by_item(check_log(LOGS / "vllm_0_7_v0_mellea_h100.log"))["Maximum concurrency at 8,192 tokens"]
    assert (c.predicted, c.matches) == ("70.67x", True)


def test_v0_blocks_gateway_api_llama2_7b() -> None:
    """gateway-api-inference-extension#550: 56.18 GiB / 7,191 blocks is 8 MiB a block, the shape of
    Llama-2-7B (32 x 2 x 32 x 128 x 2 B x 16); with it: 56.175..56.185 GiB // 8 MiB = 7,190..7,191."""
    c = by_item(check_log(LOGS / "vllm_0_8_v0_gateway_api_h100.log", load_model("llama-2-7b")))["blocks"]
    assert (c.predicted, c.matches) == ("7,190..7,191", True)


def test_v1_07_gpu_blocks_pr_13596() -> None:
    """vllm#13596 "from:" lines (V1 0.7): 127,626 x 16 / 2,048 = 997.08x, no model needed."""
    r = check_log(LOGS / "vllm_0_7_v1_gpu_blocks_pr13596.log")
    c = by_item(r)["Maximum concurrency at 2,048 tokens"]
    assert (c.predicted, c.matches) == ("997.08x", True)
    assert r.generation.startswith("vLLM V1 0.7") and r.all_match


def test_v1_08_tokens_without_memory_line_pr_17122() -> None:
    """vllm#17122 (L40S, Llama-3.1-8B-Instruct, V1 0.8): one KV group, so 158,656 tokens / 16 =
    9,916 blocks; a 32,768-token request takes 2,048: 9,916 / 2,048 = 4.842 -> "4.84x"."""
    r = check_log(LOGS / "vllm_0_8_v1_llama31_8b_l40s.log", load_model("llama-3.1-8b"))
    c = by_item(r)["Maximum concurrency at 32,768 tokens"]
    assert (c.predicted, c.matches) == ("4.84x", True) and "9,916 blocks" in c.basis


def test_v1_qwen3_14b_lmcache_1739() -> None:
    """LMCache#1739 (Qwen3-14B, 6.51 GiB): 2.5 MiB blocks (40 x 2 x 8 x 128 x 2 B x 16), so
    6.505..6.515 GiB -> 2,664..2,668 blocks; logged 42,656 / 16 = 2,666; 2,666 / 2,048 = 1.30x."""
    r = check_log(LOGS / "vllm_0_11_v1_qwen3_14b.log", load_model(str(LOGS / "qwen3-14b.yaml")))
    c = by_item(r)
    assert c["GPU KV cache size (tokens)"].predicted == "42,624..42,688"
    assert c["GPU KV cache size (tokens)"].matches and c["Maximum concurrency at 32,768 tokens"].matches
    assert "0.20" in r.rules and r.all_match


def test_v1_024_printed_version_club3090_612() -> None:
    """club-3090#612 prints "(v0.24.0)": compared against 0.20, the nearest older modelled release,
    and said so. From 0.20.1 tokens = int(concurrency x L): 567,978 / 131,072 = 4.3333 -> "4.33x"
    checks with no model; the token figure itself needs the (hybrid, not built-in) model."""
    r = check_log(LOGS / "vllm_0_24_v1_qwen36_35b_a3b_rtx5090.log")
    assert r.version == "0.24.0" and "nearest older" in r.rules
    c = by_item(r)
    assert c["tokens / 131,072 against the logged concurrency"].matches
    assert c["GPU KV cache size (tokens)"].matches is None
    assert r.all_match and r.not_compared == 1


def test_v1_fit_error_without_model_is_not_a_match() -> None:
    """vllm#25350: only figures that need the model (not named in the log): each is listed with
    matches None, and all_match is False, since nothing was compared."""
    r = check_log(LOGS / "vllm_v1_fit_error.log")
    assert r.checks and all(c.matches is None for c in r.checks)
    assert not r.all_match
    assert r.to_dict()["compared"] == 0
    assert any("before 0.22" in n for n in r.notes)


def test_wrapped_fit_error_kaito_2132() -> None:
    """kaito#2132 pasted the 0.22+ fit error over three lines, without the "(" before 22.5: read."""
    reading = read_log((LOGS / "vllm_v1_fit_error_model_wording_kaito.log").read_text())
    assert reading.found["fit_error"][0].groups == ("model's", "1048576", "22.5", "17.39", "810208")
    assert reading.engine == "vllm"


def test_fit_error_with_model_null_block_0_33() -> None:
    """A 0.33-style fit error for Llama-2-7B at 1 GiB, max len 4,096 (text as vLLM 0.33.0
    kv_cache_planning.py:78-87 formats it): the printed memory is 1 GiB less the 8 MiB null block,
    0.99 GiB; needed 256 blocks x 8 MiB = 2.0 GiB; 0.985..0.995 GiB = 126..127 blocks of 16 tokens
    -> estimated 2,016..2,032, logged 2,032."""
    text = (
        "INFO 01-01 00:00:00 [core.py:93] Initializing a V1 LLM engine (v0.33.0) with config: "
        "model='meta-llama/Llama-2-7b-hf', max_seq_len=4096, tensor_parallel_size=1, kv_cache_dtype=auto\n"
        "INFO 01-01 00:00:01 [gpu_worker.py:775] Available KV cache memory: 1.0 GiB\n"
        "ValueError: To serve at least one request with the model's max seq len (4096), (2.0 GiB KV cache is "
        "needed, which is larger than the available KV cache memory (0.99 GiB). Based on the available memory, the "
        "estimated maximum model length is 2032. Try increasing `gpu_memory_utilization` (which also controls CPU "
        "memory on the CPU backend) or decreasing `max_model_len` when initializing the engine.\n"
    )
    r = _check_text(text)
    c = by_item(r)
    assert r.version == "0.33.0" and r.rules.startswith("printed v0.33.0: 0.33 rules")
    assert c["KV needed for max seq len (GiB)"].matches
    assert c["available memory in the fit error (GiB)"].matches  # 1.0 - 8 MiB
    assert c["estimated maximum model length"].predicted == "2,016..2,032"
    assert c["estimated maximum model length"].matches
    assert c["fit error wording"].matches and r.all_match


def _check_text(text: str, model: Any = None) -> LogCheck:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "engine.log"
        p.write_text(text)
        return check_log(p, model)


def test_sglang_04_gemma3_pr_4826() -> None:
    """sglang#4826 (SGLang 0.4, Gemma-3-4B): 34 layers x 4 heads x 256 x 2 B = 69,632 B of K a
    token (0.4 held the sliding layers full); (834,615 + 1) x 69,632 / 2**30 = 54.125 -> "54.12"."""
    r = check_log(LOGS / "sglang_0_4_gemma3_4b_pr4826.log", load_model(str(LOGS / "gemma-3-4b.yaml")))
    c = by_item(r)
    assert c["K size (GiB)"].matches and c["V size (GiB)"].matches
    assert "GiB" in c["K size (GiB)"].basis and r.engine == "sglang" and r.all_match


def test_sglang_mla_line_pr_11309_lists_unknown_model() -> None:
    """sglang#11309 (DeepSeek-V3.2-Exp, not built in): the MLA "KV size" line is read and listed."""
    r = check_log(LOGS / "sglang_0_5_deepseek_v32_mla_pr11309.log")
    assert r.model == "deepseek-ai/DeepSeek-V3.2-Exp" and r.tp == 8
    c = by_item(r)["KV size (GiB)"]
    assert (c.logged, c.matches) == ("43.67", None)
    assert not r.all_match


def test_kvcached_physical_and_virtual() -> None:
    """kvcached on SGLang 0.5.9 (OPT-125m, 12 layers x 12 heads x 64 x 2 B = 18,432 B of K a token):
    the physical line is SGLang's pool, (2,777,543 + 1) x 18,432 / 2**30 = 47.68; the virtual range
    (95.84) is sized from the device and listed, not compared."""
    r = check_log(LOGS / "sglang_0_5_9_kvcached_opt125m_rocm.log", load_model(str(LOGS / "opt-125m.yaml")))
    c = by_item(r)
    assert c["kvcached physical: K size (GiB)"].matches and c["kvcached physical: V size (GiB)"].matches
    assert c["kvcached virtual K size (GiB)"].matches is None
    assert r.version == "0.5.9.dev20260312+ga57a44739" and "kvcached" in r.generation and r.all_match


def test_sglang_0_5_23_labelled_pools_and_draft_line() -> None:
    """Lines in the 0.5.23 form (memory_pool.py:2088-2091, labels from swa_memory_pool.py:81/92) for
    gpt-oss-20b (12 sliding + 12 full layers, 8 KV heads x 64, bf16): a full pool of 100,000 tokens
    holds (100,000 + 1) x 12 x 8 x 64 x 2 B = 1.1444 GiB of K; the SWA pool of 20,000 tokens
    (20,000 + 1) x 12,288 B = 0.2289 GiB. A third, unlabelled line is a draft model's pool."""
    text = (
        "[2026-01-01 00:00:00] Full KV Cache is allocated. dtype: torch.bfloat16, #tokens: 100000, K size: 1.14 GB, "
        "V size: 1.14 GB\n"
        "[2026-01-01 00:00:00] SWA KV Cache is allocated. dtype: torch.bfloat16, #tokens: 20000, K size: 0.23 GB, "
        "V size: 0.23 GB\n"
        "[2026-01-01 00:00:01] KV Cache is allocated. dtype: torch.bfloat16, #tokens: 100000, K size: 0.10 GB, "
        "V size: 0.10 GB\n"
        "[2026-01-01 00:00:01] KV Cache is allocated. dtype: torch.bfloat16, #tokens: 100000, K size: 0.05 GB, "
        "V size: 0.05 GB\n"
    )
    r = _check_text(text, load_model("gpt-oss-20b"))
    c = by_item(r)
    assert c["Full pool: K size (GiB)"].matches and c["SWA pool: V size (GiB)"].matches
    assert c["second pool K size (GiB)"].matches is None and "draft" in c["second pool K size (GiB)"].basis
    assert r.generation.startswith("SGLang 0.5.x with dtype")


def test_llama_cpp_offload_and_split_pr_8035() -> None:
    """llama.cpp#8035 (Llama-3 70B GGUF, n_ctx 8,192, 78 of 80 layers offloaded over two GPUs):
    80 x 8 x 128 x 2 B x 8,192 = 1,280 MiB of K and of V; 2 host layers x 32 MiB = 64 MiB; the
    buffers sum to the KV self size; which GPU holds 46 or 32 layers follows free memory: listed."""
    r = check_log(LOGS / "llama_cpp_offload_split_llama3_70b_pr8035.log", load_model("llama-3-70b"))
    c = by_item(r)
    for item in ("KV self size = sum of device buffers (MiB)", "KV self size = K + V (MiB)", "K (MiB)", "V (MiB)",
                 "CUDA_Host KV buffer (MiB)"):
        assert c[item].matches, item
    assert c["CUDA0 KV buffer (MiB)"].matches is None and c["CUDA1 KV buffer (MiB)"].matches is None
    assert r.engine == "llama.cpp" and r.all_match


def test_vllm_and_sglang_lines_in_one_file_issue_21348() -> None:
    """vllm#21348 pasted both engines' lines: each is checked against its own engine. SGLang:
    (367,404 + 1) x 94 x 128 x 2 B / 2**30 = 8.234 -> "8.23". vLLM's 178,880 tokens do not follow
    from 8.11 GiB (11,301..11,315 blocks of 770,048 B): reported as a mismatch, not hidden."""
    r = check_log(LOGS / "vllm_v1_qwen3_235b_and_sglang.log", load_model(str(LOGS / "qwen3-235b-a22b.yaml")))
    c = by_item(r)
    assert c["K size (GiB)"].matches and c["V size (GiB)"].matches
    assert c["GPU KV cache size (tokens)"].matches is False and not r.all_match


def test_advisory_line_0_34_form() -> None:
    """The --kv-cache-memory advisory as 0.34.0 gpu_worker.py:1152-1173 formats it, built from
    exact bytes: requested R = 71,000 MiB (77.04 GiB x 0.9 as printed), usage 16 GiB + 1 GiB + 0.5 GiB, buffer 150 MiB:
    B1 = R - 17.5 GiB - 150 MiB; free F = 79,000 MiB: B2 = B1 + (F - R)."""
    requested, free = 71_000 * MiB, 79_000 * MiB
    b1 = requested - (16 * GiB + GiB + GiB // 2) - 150 * MiB
    b2 = b1 + free - requested

    def g(n: int) -> str:
        return f"{round(n / GiB, 2)}"

    text = (
        f"INFO [gpu_worker.py:1175] Free memory on device ({g(free)}/77.04 GiB) on startup. Desired GPU memory "
        f"utilization is (0.9, {g(requested)} GiB). Actual usage is 16.0 GiB for consumed memory (weights + "
        f"non-torch), 1.0 GiB for peak activation, and 0.5 GiB for CUDAGraph memory. Replace gpu_memory_utilization "
        f"config with `--kv-cache-memory={b1}` ({g(b1)} GiB) to fit into requested memory, or "
        f"`--kv-cache-memory={b2}` ({g(b2)} GiB) to fully utilize gpu memory. Current kv cache memory in use is "
        f"50.0 GiB.\n"
    )
    r = _check_text(text)
    c = by_item(r)
    for item in ("advisory: free - requested (GiB)", "advisory: --kv-cache-memory (GiB)",
                 "advisory: KV memory to fit the requested (GiB)", "advisory: requested (GiB)"):
        assert c[item].matches, item


def test_warmup_line_0_34() -> None:
    """0.34's extensible cache logs the measured block count (extensible_kv_cache.py:693-706):
    Llama-2-7B, 0.34 block 64 = 32 MiB: 600 blocks = 18.75 GiB; at 4,096 tokens a request takes
    64 blocks: int(600 / 64 x 4,096) = 38,400 tokens, 9.38x."""
    text = (
        "INFO [core.py:93] Initializing a V1 LLM engine (v0.34.0) with config: model='meta-llama/Llama-2-7b-hf', "
        "max_seq_len=4096, tensor_parallel_size=1, kv_cache_dtype=auto\n"
        "INFO [gpu_worker.py:795] Available KV cache memory: 19.5 GiB\n"
        "INFO [extensible_kv_cache.py:693] Memory after warmup: 20.1 GiB free, 0.5 GiB committed to the KV cache, "
        "1.2 GiB kept for transient activations (1.2 GiB allocated at peak, 0.3 GiB of torch reservation growth); "
        "600 KV cache blocks (18.75 GiB) fit within the requested 79.19 GiB. Torch may reserve up to 2.0 GiB.\n"
        "INFO [kv_cache_utils.py:1168] GPU KV cache size: 38,400 tokens, Maximum concurrency for 4,096 tokens per "
        "request: 9.38x\n"
    )
    r = _check_text(text)
    c = by_item(r)
    assert r.rules == "printed v0.34.0: 0.34 rules"
    assert c["KV cache after warmup (GiB)"].matches
    assert (c["GPU KV cache size (tokens)"].predicted, c["GPU KV cache size (tokens)"].matches) == ("38,400", True)
    assert c["tokens / 4,096 against the logged concurrency"].matches and r.all_match


@pytest.mark.parametrize(
    "line",
    ["INFO executor_base.py:95] # CUDA blocks: " + "9" * 5000 + ", # CPU blocks: 1",
     "INFO kv_cache_utils.py:525] Maximum concurrency for 0 tokens per request: 3.00x",
     "INFO kv_cache_utils.py:1168] GPU KV cache size: 1,000 tokens, Maximum concurrency for 0 tokens per "
     "request: 3.00x"],
)
def test_hostile_numbers_are_refused_with_their_line(line: str) -> None:
    """issue 14: a 5,000-digit block count or a 0-token request length is not an engine's log."""
    with pytest.raises(InvalidConfigError, match="line 1: "):
        _check_text(line + "\n")


def test_not_a_log(tmp_path: Path) -> None:
    p = tmp_path / "x.log"
    p.write_text("hello\n")
    with pytest.raises(InvalidRequestError, match="no KV-cache line"):
        check_log(p)


def test_llama_cpp_newer_cache_line() -> None:
    """The line newer llama.cpp prints (llama-kv-cache.cpp: "%s: size = %7.2f MiB (%6u cells, %3d
    layers, %2u/%u seqs), K (%s): %7.2f MiB, V (%s): %7.2f MiB"), for Llama-2-7B with a q8_0
    cache of 4,096 cells: a 4,096-value row is 128 blocks of 34 B = 4,352 B, x 4,096 cells x 32
    layers = 544.00 MiB for K and for V."""
    text = ("llama_context: n_ctx         = 4096\n"
            "llama_kv_cache:      CUDA0 KV buffer size =  1088.00 MiB\n"
            "llama_kv_cache: size = 1088.00 MiB (  4096 cells,  32 layers,  1/1 seqs), K (q8_0):  544.00 MiB, "
            "V (q8_0):  544.00 MiB\n")
    r = _check_text(text, load_model("llama-2-7b"))
    c = by_item(r)
    assert c["K (MiB)"].matches and c["V (MiB)"].matches and c["KV self size = sum of device buffers (MiB)"].matches
    assert r.engine == "llama.cpp" and r.all_match
