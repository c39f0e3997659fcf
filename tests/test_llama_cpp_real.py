"""kvcalc's llama.cpp policy against a real llama.cpp, when one is installed.

CI has no llama.cpp build (llama-cpp-python compiles llama.cpp from source), so this is skipped
there; with ``pip install gguf llama-cpp-python`` it writes tiny random-weight GGUF models and
compares the cells and K/V MiB llama.cpp logs with kvcalc's estimate for each case of
``benchmarks/llama_cpp_crosscheck.py`` (f16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl; plain and
gemma2-style sliding-window models; n_ctx padding to 256; SWA caches of PAD(n_swa + 512, 256);
Mistral-style llama GGUFs with ``sliding_window``, which llama.cpp's llama architecture ignores).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("gguf")
pytest.importorskip("llama_cpp")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import llama_cpp_crosscheck as crosscheck  # noqa: E402


def _case_id(c: tuple[crosscheck.Geometry, int, str]) -> str:
    return f"{c[0].arch}{'-swa' if c[0].swa else ''}-{c[1]}-{c[2]}"


@pytest.mark.parametrize("case", crosscheck.CASES, ids=_case_id)
def test_llama_cpp_logs_what_kvcalc_predicts(case: tuple[crosscheck.Geometry, int, str], tmp_path: Path) -> None:
    geometry, n_ctx, cache_type = case
    path = tmp_path / "tiny.gguf"
    crosscheck.write_gguf(path, geometry)
    log = crosscheck.llama_cpp_log(path, n_ctx, cache_type)
    real = sorted((m.group(2), m.group(5), m.group(7)) for m in crosscheck.KV_LINE.finditer(log))
    assert real, log[-2000:]
    assert real == sorted(crosscheck.kvcalc_lines(geometry, n_ctx, cache_type))
