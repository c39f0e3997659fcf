"""llama.cpp per device and per slot: partial offload, tensor split, -np, quantized V, Ollama.

Every figure below is derived by hand from llama.cpp's code (vendored by llama-cpp-python 0.3.36:
llama-model.cpp load_tensors, llama-context.cpp, llama-kv-cache.cpp) and Ollama's llm/server.go,
as cited in ``kvcalc/engines/llama_cpp.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcalc.dtypes import get_dtype
from kvcalc.engines.llama_cpp import (
    kv_placement,
    layer_devices,
    slot_cells,
)
from kvcalc.engines.startup_log import check_log
from kvcalc.errors import InvalidRequestError, UnsupportedByEngineError
from kvcalc.registry import get_builtin

LOGS = Path(__file__).parent / "fixtures" / "logs"
F16 = get_dtype("f16")
MiB = 1024 * 1024
# Llama-3-70B: 80 layers, 8 KV heads x 128, f16: one cell of one layer is 8 x 128 x 2 B = 2 KiB
# for K and 2 KiB for V, so 8,192 cells are 16 MiB + 16 MiB = 32 MiB a layer.
LAYER_8K = 32 * MiB


def test_full_offload_is_one_gpu() -> None:
    # -ngl -1 = n_layer + 1 = 81: i_gpu_start = max(81 - 81, 0) = 0, all 80 layers on CUDA0.
    p = kv_placement(get_builtin("llama-3-70b"), F16, F16, n_ctx=8192)
    assert [(b.device, b.layers, b.total_bytes) for b in p.buffers] == [("CUDA0", 80, 80 * LAYER_8K)]


def test_partial_offload_counts_the_output_layer() -> None:
    # -ngl 40 on 80 layers: i_gpu_start = 81 - 40 = 41, so layers 0..40 (41 layers) stay on the CPU
    # and 39 repeating layers (41..79) + the output layer make up the 40.
    p = kv_placement(get_builtin("llama-3-70b"), F16, F16, n_ctx=8192, n_gpu_layers=40)
    assert {b.device: b.layers for b in p.buffers} == {"CPU": 41, "CUDA0": 39}
    assert {b.device: b.total_bytes for b in p.buffers} == {"CPU": 41 * LAYER_8K, "CUDA0": 39 * LAYER_8K}
    # -ngl 0: everything in host memory.
    assert layer_devices(80, 0, (1.0,)) == [None] * 80


def test_tensor_split_3_2() -> None:
    # -ngl 79 -ts 3,2: split points 0.6, 1.0; i_gpu_start 2, act 79; layer il goes to CUDA0 while
    # (il - 2) / 79 < 0.6, i.e. il - 2 <= 47 (47/79 = 0.595, 48/79 = 0.608): 48 layers on CUDA0,
    # 78 - 48 = 30 on CUDA1, 2 on the CPU. CUDA0 48 x 32 MiB = 1,536 MiB, CUDA1 960 MiB, CPU 64 MiB.
    p = kv_placement(get_builtin("llama-3-70b"), F16, F16, n_ctx=8192, n_gpu_layers=79, split=(3, 2))
    assert {b.device: b.total_bytes // MiB for b in p.buffers} == {"CPU": 64, "CUDA0": 1536, "CUDA1": 960}
    assert p.total_bytes == 80 * LAYER_8K


def test_split_mode_none_and_row_and_no_kv_offload() -> None:
    m = get_builtin("llama-3-70b")
    none = kv_placement(m, F16, F16, n_ctx=8192, split=(1, 1), split_mode="none", main_gpu=1)
    assert {b.device: b.layers for b in none.buffers} == {"CUDA1": 80}
    # row mode assigns layers (hence KV) as layer mode; 1:1 of 81: 40.5 -> il/81 < 0.5: il <= 40.
    row = kv_placement(m, F16, F16, n_ctx=8192, split=(1, 1), split_mode="row")
    assert {b.device: b.layers for b in row.buffers} == {"CUDA0": 41, "CUDA1": 39}
    nkvo = kv_placement(m, F16, F16, n_ctx=8192, no_kv_offload=True)
    assert {b.device: b.layers for b in nkvo.buffers} == {"CPU": 80}
    with pytest.raises(InvalidRequestError, match="--split-mode"):
        kv_placement(m, F16, F16, n_ctx=8192, split_mode="tensorwise")


def test_parallel_slots_split_n_ctx() -> None:
    # -c 8192 -np 4, not unified: n_ctx_seq = PAD(8192 / 4, 256) = 2048 cells x 4 streams = 8,192:
    # the same bytes as one 8,192-cell stream, each slot seeing 2,048.
    assert slot_cells(8192, 4, False) == (2048, 4)
    assert slot_cells(8192, 4, True) == (8192, 1)
    # -c 4096 -np 3: 4096 // 3 = 1365 -> PAD 1536 cells x 3 = 4,608 (llama.cpp raises n_ctx to it).
    assert slot_cells(4096, 3, False) == (1536, 3)
    p = kv_placement(get_builtin("llama-3-70b"), F16, F16, n_ctx=4096, n_parallel=3)
    assert p.total_bytes == 80 * 4608 * 4096  # 4 KiB (K + V) a cell and layer
    with pytest.raises(InvalidRequestError, match="--parallel"):
        slot_cells(4096, 0, False)


def test_unified_swa_cache_grows_with_slots() -> None:
    # Gemma-2 sliding layers (window 4096) with a unified cache of 4 slots:
    # min(n_ctx_seq 32768, PAD(4096 x 4 + 512, 256) = 16896) cells; not unified, per stream:
    # min(8192, PAD(4096 + 512, 256) = 4608) cells x 4 streams.
    m = get_builtin("gemma-2-9b")
    uni = kv_placement(m, F16, F16, n_ctx=32768, n_parallel=4, kv_unified=True)
    split = kv_placement(m, F16, F16, n_ctx=32768, n_parallel=4)
    specs = [s for s in m.layer_specs if s.grows]
    per_cell = {id(s): 2 * s.num_kv_heads * s.head_dim * 2 for s in specs}  # type: ignore[attr-defined]
    want_uni = sum(per_cell[id(s)] * (16896 if getattr(s, "window", None) else 32768) for s in specs)
    want_split = sum(per_cell[id(s)] * 4 * (4608 if getattr(s, "window", None) else 8192) for s in specs)
    assert (uni.total_bytes, split.total_bytes) == (want_uni, want_split)


def test_quantized_v_needs_flash_attention() -> None:
    m = get_builtin("llama-3-70b")
    q8 = get_dtype("q8_0")
    with pytest.raises(UnsupportedByEngineError, match="requires flash_attn"):
        kv_placement(m, F16, q8, n_ctx=4096, flash_attn="off")
    auto = kv_placement(m, F16, q8, n_ctx=4096)
    assert auto.notes and "enabling" not in auto.notes[0] and "flash_attn enabled" in auto.notes[0]
    # q8_0 V: 1024 values = 32 blocks x 34 B = 1,088 B a cell (f16 K 2,048 B): 80 x 4096 x 3,136.
    assert auto.total_bytes == 80 * 4096 * (2048 + 1088)
    # A quantized K alone does not need flash attention.
    assert not kv_placement(m, q8, F16, n_ctx=4096, flash_attn="off").notes


def test_non_unified_slots_of_num_ctx() -> None:
    # -c 32768 -np 4 (Ollama's num_ctx 8192 x OLLAMA_NUM_PARALLEL 4, tests/test_ollama.py): a non-unified
    # context, 4 streams x PAD(32768 / 4, 256) = 8,192 cells each.
    assert slot_cells(32768, 4, False) == (8192, 4)


def test_check_log_compares_each_device_with_tensor_split() -> None:
    checks = check_log(LOGS / "llama_cpp_synthetic_two_gpu_tensor_split.log", get_builtin("llama-3-70b"))
    by_item = {c.item: c for c in checks.checks}
    for item in ("CPU KV buffer (MiB)", "CUDA0 KV buffer (MiB)", "CUDA1 KV buffer (MiB)", "GPU KV buffers, sum (MiB)"):
        assert by_item[item].matches is True, item
    assert "48 layers" in by_item["CUDA0 KV buffer (MiB)"].basis


def test_check_log_without_split_lists_gpus_and_compares_the_sum() -> None:
    # PR 8035's log: default split by free memory, which the mid-2024 build does not print.
    checks = check_log(LOGS / "llama_cpp_offload_split_llama3_70b_pr8035.log", get_builtin("llama-3-70b"))
    by_item = {c.item: c for c in checks.checks}
    assert by_item["CUDA_Host KV buffer (MiB)"].matches is True  # 80 - 78 = 2 layers x 32 MiB = 64
    assert by_item["GPU KV buffers, sum (MiB)"].matches is True  # 78 x 32 = 2,496 = 1,472 + 1,024
    assert by_item["CUDA0 KV buffer (MiB)"].matches is None
    assert by_item["CUDA1 KV buffer (MiB)"].matches is None


def test_check_log_wrong_split_is_a_mismatch(tmp_path: Path) -> None:
    text = (LOGS / "llama_cpp_synthetic_two_gpu_tensor_split.log").read_text().replace("-ts 3,2", "-ts 1,1")
    f = tmp_path / "x.log"
    f.write_text(text)
    by_item = {c.item: c for c in check_log(f, get_builtin("llama-3-70b")).checks}
    assert by_item["CUDA0 KV buffer (MiB)"].matches is False


def test_check_log_free_memory_split(tmp_path: Path) -> None:
    # No -ts: the split follows the printed free memory, equal here, so 1:1 of 79 active layers:
    # (il - 2) / 79 < 0.5 -> il - 2 <= 39: 40 layers on CUDA0 (1,280 MiB), 38 on CUDA1 (1,216 MiB).
    text = (LOGS / "llama_cpp_synthetic_two_gpu_tensor_split.log").read_text().replace(" -ts 3,2", "")
    text = text.replace("1536.00 MiB", "1280.00 MiB").replace("  960.00 MiB", " 1216.00 MiB")
    f = tmp_path / "x.log"
    f.write_text(text)
    by_item = {c.item: c for c in check_log(f, get_builtin("llama-3-70b")).checks}
    assert by_item["CUDA0 KV buffer (MiB)"].matches is True
    assert by_item["CUDA1 KV buffer (MiB)"].matches is True


def test_check_log_reads_streams_of_a_split_cache(tmp_path: Path) -> None:
    # The real line for -c 8192 -np 4 (not unified), as llama-cpp-python 0.3.36's llama.cpp printed it
    # for a tiny model (benchmarks/llama_cpp_slots_crosscheck.py: "2048 cells, 4 layers, 4/4 seqs"),
    # scaled to Llama-3-70B: 2,048 cells x 4 streams x 80 layers x 2 KiB = 1,280 MiB each of K and V.
    line = ("llama_kv_cache:        CPU KV buffer size =  2560.00 MiB\n"
            "llama_kv_cache: size = 2560.00 MiB (  2048 cells,  80 layers,  4/4 seqs), "
            "K (f16): 1280.00 MiB, V (f16): 1280.00 MiB\n")
    f = tmp_path / "np4.log"
    f.write_text(line)
    by_item = {c.item: c for c in check_log(f, get_builtin("llama-3-70b")).checks}
    assert by_item["K (MiB)"].matches is True and by_item["V (MiB)"].matches is True
    assert "8,192 cells" in by_item["K (MiB)"].basis


def test_plan_cli_prints_each_device_buffer(cli: Any) -> None:
    # -ngl 79 -ts 3,2 on Llama-3-70B at 8,192 tokens: CPU 64 MiB, CUDA0 1,536 MiB, CUDA1 960 MiB (above).
    # These flags are not in the fast path's table, so typer runs the command (kvcalc.cli.fast).
    from kvcalc.cli.fast import parse_plan

    argv = ["plan", "llama-3-70b", "--engine", "llama.cpp", "--kv-budget", "20GiB", "--context", "8192",
            "-ngl", "79", "-ts", "3,2", "--json"]
    assert parse_plan(argv) is None
    res = cli(*argv)
    assert res.exit_code == 0, res.stderr
    import json

    lines = json.loads(res.stdout)["log_lines"]
    assert "llama_kv_cache:      CUDA0 KV buffer size =  1536.00 MiB" in lines
    assert "llama_kv_cache:      CUDA1 KV buffer size =   960.00 MiB" in lines
    assert "llama_kv_cache:        CPU KV buffer size =    64.00 MiB" in lines


def test_plan_cli_refuses_a_bad_split(cli: Any) -> None:
    bad = cli("plan", "llama-3-8b", "--engine", "llama.cpp", "--kv-budget", "20GiB", "-ts", "3,x")
    assert bad.exit_code == 2 and "--tensor-split" in bad.stderr and bad.stdout == ""
    neg = cli("plan", "llama-3-8b", "--engine", "llama.cpp", "--kv-budget", "20GiB", "-ts", "0,0")
    assert neg.exit_code != 0 and "--tensor-split" in neg.stderr and "free memory" in neg.stderr


def test_check_log_full_offload_new_build(tmp_path: Path) -> None:
    # A newer build with -ngl -1 (81 of 80 + output) prints "offloading 79 repeating layers" (ngl capped
    # at n_layer = 80, then the output layer taken off) though all 80 are on GPUs: "offloaded 81/81"
    # decides. -ts 1,1: il / 81 < 0.5 -> il <= 40: 41 layers on CUDA0 (1,312 MiB), 39 on CUDA1 (1,248 MiB).
    text = (LOGS / "llama_cpp_synthetic_two_gpu_tensor_split.log").read_text()
    text = text.replace("-ngl 79 -ts 3,2", "-ngl 99 -ts 1,1").replace("offloading 78 repeating", "offloading 79 "
                                                                       "repeating").replace("79/81", "81/81")
    text = text.replace("        CPU KV buffer size =    64.00 MiB\n", "")
    text = text.replace("1536.00 MiB", "1312.00 MiB").replace("  960.00 MiB", " 1248.00 MiB")
    f = tmp_path / "full.log"
    f.write_text(text)
    by_item = {c.item: c for c in check_log(f, get_builtin("llama-3-70b")).checks}
    assert by_item["GPU KV buffers, sum (MiB)"].matches is True
    assert by_item["CUDA0 KV buffer (MiB)"].matches is True
    assert by_item["CUDA1 KV buffer (MiB)"].matches is True


@settings(max_examples=200, deadline=None)
@given(n_layer=st.integers(1, 200), ngl=st.integers(-1, 260),
       split=st.lists(st.integers(0, 10), min_size=1, max_size=8).filter(lambda s: any(s)))
def test_layer_devices_invariants(n_layer: int, ngl: int, split: list[int]) -> None:
    devices = layer_devices(n_layer, ngl, tuple(float(w) for w in split))
    eff = n_layer + 1 if ngl == -1 else ngl
    on_gpu = [d for d in devices if d is not None]
    # the last min(ngl, n_layer + 1) - 1 repeating layers (the output layer counts in -ngl) are on GPUs,
    assert len(on_gpu) == max(0, min(eff, n_layer + 1) - 1)
    assert all(d is None for d in devices[: n_layer - len(on_gpu)])
    # in device order, never on a device whose split weight is 0.
    assert on_gpu == sorted(on_gpu)
    assert all(split[d] > 0 for d in on_gpu)


def test_plan_cli_quantized_v_cache_and_flash_attention(cli: Any) -> None:
    # llama-context.cpp:3840-3849: -fa off with a q8_0 V cache is refused; -fa auto turns it on (a note).
    off = cli("plan", "llama-3-8b", "--engine", "llama.cpp", "--kv-budget", "20GiB", "--kv-dtype", "q8_0",
              "-fa", "off")
    assert off.exit_code != 0 and "requires flash_attn" in off.stderr and off.stdout == ""
    auto = cli("plan", "llama-3-8b", "--engine", "llama.cpp", "--kv-budget", "20GiB", "--kv-dtype", "q8_0")
    assert auto.exit_code == 0 and "flash_attn enabled since it is required for quantized V cache" in auto.stderr + \
        auto.stdout


def test_engine_flags_belong_to_their_engine(cli: Any) -> None:
    res = cli("plan", "llama-3-8b", "--engine", "vllm", "--kv-budget", "20GiB", "-ngl", "10")
    assert res.exit_code == 2 and "--n-gpu-layers" in res.stderr and "llama.cpp" in res.stderr
    res = cli("plan", "llama-3-8b", "--engine", "llama.cpp", "--kv-budget", "20GiB", "--max-tokens", "100")
    assert res.exit_code == 2 and "--max-tokens" in res.stderr and "trtllm" in res.stderr
