"""kvcalc sweep: list syntax, the grid's exact bytes (CSV/JSON/table), capacity marks, plot and terminal chart."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvcalc.errors import InvalidRequestError
from kvcalc.registry import get_builtin
from kvcalc.show.sweep import parse_int_list, sweep
from kvcalc.units import GiB, MiB, parse_tokens


def test_list_syntax() -> None:
    assert parse_int_list("1k,2k,128k", "s", maximum=10**9) == [1024, 2048, 131072]
    assert parse_int_list("1k..16k", "s", maximum=10**9) == [1024, 2048, 4096, 8192, 16384]
    assert parse_int_list("8,1,32,8", "b", maximum=100) == [1, 8, 32]
    assert parse_int_list("1..10:3", "b", maximum=100) == [1, 4, 7, 10]
    for bad in ("", "1,,2", "0", "x", "4k..1k", "1.5k", "1..10:0"):
        with pytest.raises(InvalidRequestError):
            parse_int_list(bad, "--seq-len", maximum=10**9)


@given(st.integers(min_value=1, max_value=4096), st.sampled_from(["", "k", "K", "m"]))
def test_list_values_parse_as_parse_tokens(n: int, suffix: str) -> None:
    # One parser everywhere: a sweep value means what --seq-len / --context mean.
    text = f"{n}{suffix}"
    assert parse_int_list(text, "--seq-len", maximum=10**12) == [parse_tokens(text, "--seq-len")]
    assert parse_int_list(f"{text}..{text}", "--seq-len", maximum=10**12) == [parse_tokens(text)]


def test_m_suffix_and_underscores_as_everywhere() -> None:
    assert parse_int_list("1m,32_768", "--seq-len", maximum=10**9) == [32_768, 1_048_576]


def test_sweep_csv_contents(cli: Any) -> None:
    res = cli("sweep", "llama-2-7b", "llama-3-8b", "--seq-len", "1k,4k", "--batch", "1,8", "--kv-dtype", "bf16,fp8",
              "--gpu-memory", "10GiB", "--csv")
    assert res.exit_code == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert len(rows) == 2 * 2 * 2 * 2
    # llama-2-7b bf16: 32 layers x 32 KV heads x 128 x 2 (K,V) x 2 B = 524,288 B/token (0.5 MiB).
    # llama-3-8b bf16 (GQA, 8 KV heads): 32 x 8 x 128 x 2 x 2 = 131,072 B/token (128 KiB). fp8 halves both.
    per_token = {("llama-2-7b", "bf16"): 524_288, ("llama-2-7b", "fp8_e4m3"): 262_144,
                 ("llama-3-8b", "bf16"): 131_072, ("llama-3-8b", "fp8_e4m3"): 65_536}
    for r in rows:
        want = per_token[(r["model"], r["kv_dtype"])] * int(r["seq_len"]) * int(r["batch"])
        assert int(r["total_bytes"]) == int(r["per_gpu_bytes"]) == want
        assert r["exceeds"] == ("true" if want > 10 * GiB else "false")
    # The one cell over 10 GiB: llama-2-7b bf16, batch 8, 4k: 0.5 MiB x 4096 x 8 = 16 GiB.
    over = [(r["model"], r["kv_dtype"], r["batch"], r["seq_len"]) for r in rows if r["exceeds"] == "true"]
    assert over == [("llama-2-7b", "bf16", "8", "4096")]
    assert res.stdout.splitlines()[0] == "model,kv_dtype,batch,seq_len,total_bytes,per_gpu_bytes,exceeds"


def test_sweep_json_equals_core(cli: Any) -> None:
    res = cli("sweep", "llama-2-7b", "--seq-len", "1k..4k", "--batch", "2", "--kv-dtype", "fp16", "--json")
    assert res.exit_code == 0, res.stderr
    core = sweep([get_builtin("llama-2-7b")], [1024, 2048, 4096], [2], ["fp16"])
    assert res.json() == core.to_dict()
    # 0.5 MiB x 1024 x 2 = 1 GiB
    assert res.json()["cells"][0]["total_bytes"] == 1024 * 2 * (MiB // 2) == GiB


def test_sweep_table_marks_and_chart(cli: Any) -> None:
    res = cli("sweep", "llama-2-7b", "--seq-len", "2k,8k", "--batch", "1", "--kv-dtype", "fp16",
              "--gpu-memory", "3GiB")
    assert res.exit_code == 0, res.stderr
    # 2k x 0.5 MiB = 1.00 GiB fits; 8k = 4.00 GiB is over 3 GiB and marked '!'
    assert "1.00 GiB " in res.stdout and "4.00 GiB!" in res.stdout and "! = over --gpu-memory 3.00 GiB" in res.stdout
    # terminal chart: the 8k bar reaches full width (50), the capacity sits at 3 x 50 // 4 = column 37
    # (rows labelled as --seq-len writes contexts: 2k, 8k)
    chart_line = next(line for line in res.stdout.splitlines() if line.startswith("8k  "))
    assert chart_line[4:4 + 50].replace("╫", "█") == "█" * 50 and chart_line[4 + 37] == "╫"


def test_sweep_gpu_flag(cli: Any) -> None:
    gpus = pytest.importorskip("kvcalc.planner.gpus")
    usable = gpus.get_gpu("h100").usable_bytes
    res = cli("sweep", "llama-2-7b", "--seq-len", "128k", "--batch", "1", "--kv-dtype", "fp16", "--gpu", "h100",
              "--json")
    data = res.json()
    assert data["capacity_bytes_per_gpu"] == usable
    # 128k x 0.5 MiB = 64 GiB: under an H100's usable memory (~79 GiB)
    assert data["cells"][0]["total_bytes"] == 64 * GiB and data["cells"][0]["exceeds"] is (64 * GiB > usable)
    bad = cli("sweep", "llama-2-7b", "--gpu", "h1000")
    assert bad.exit_code != 0 and bad.stdout == "" and bad.stderr.startswith("Error:")


def test_sweep_errors_leave_stdout_empty(cli: Any) -> None:
    for args in (["--seq-len", "0"], ["--batch", "x"], ["--csv", "--json"], ["--gpu", "h100", "--gpu-memory", "1GiB"],
                 ["--plot", "out.jpg"]):
        res = cli("sweep", "llama-2-7b", *args)
        assert res.exit_code == 2 and res.stdout == "" and res.stderr.startswith("Error:"), args


def test_sweep_plot_svg_series_and_labels(cli: Any, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "sweep.svg"
    res = cli("sweep", "llama-2-7b", "llama-3-8b", "--seq-len", "1k,2k,4k", "--kv-dtype", "bf16,fp8",
              "--gpu-memory", "24GiB", "--plot", str(out))
    assert res.exit_code == 0, res.stderr
    svg = out.read_text()
    assert re.findall(r'id="series: ([^"]*)"', svg) == [
        "llama-2-7b bf16", "llama-2-7b fp8_e4m3", "llama-3-8b bf16", "llama-3-8b fp8_e4m3"]
    assert re.findall(r'id="hline: ([^"]*)"', svg) == ["--gpu-memory 24.00 GiB"]
    for label in ("context length (tokens, log2)", "KV cache (GiB)", "KV cache vs context"):
        assert label in svg


def test_grid_size_is_bounded(cli: Any) -> None:
    from kvcalc.show.sweep import MAX_GRID_CELLS

    # 2 models x 2,049 lengths = 4,098 cells > 4,096
    res = cli("sweep", "llama-2-7b", "llama-3-8b", "--seq-len", "1..2049:1", "--csv")
    assert MAX_GRID_CELLS == 4096 and res.exit_code == 2 and res.stdout == "" and "4,096" in res.stderr


def test_engine_passes_through(cli: Any) -> None:
    # vLLM pages 16-token blocks: cdiv(1000, 16) = 63 blocks = 1,008 tokens x 131,072 B (llama-3-8b bf16);
    # the neutral engine holds exactly 1,000 tokens.
    vllm = cli("sweep", "llama-3-8b", "--seq-len", "1000", "--engine", "vllm@0.20", "--csv")
    neutral = cli("sweep", "llama-3-8b", "--seq-len", "1000", "--csv")
    assert vllm.stdout.splitlines()[1].split(",")[4] == str(1008 * 131_072)
    assert neutral.stdout.splitlines()[1].split(",")[4] == str(1000 * 131_072)
