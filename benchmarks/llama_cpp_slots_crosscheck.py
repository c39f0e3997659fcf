"""Cross-check kvcalc's llama.cpp slot rule (``slot_cells``, ``kv_placement``) against a real
llama.cpp: llama-cpp-python's low-level API (``llama_context_params.n_seq_max`` / ``kv_unified``),
on the tiny random-weight GGUF models of ``llama_cpp_crosscheck.py``. CPU only: every layer's KV
is in the ``CPU KV buffer``, so this checks cells, streams and bytes, not the device split.

Run (not part of CI):
    pip install gguf numpy llama-cpp-python && python benchmarks/llama_cpp_slots_crosscheck.py

It prints, per case, llama.cpp's ``n_ctx_seq`` line, its ``CPU KV buffer size`` and its
``llama_kv_cache: size = ... (N cells, L layers, s/S seqs)`` lines beside kvcalc's figures; a match
is equality of the printed text (MiB to two decimals).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from llama_cpp_crosscheck import ARCHITECTURES, GGML_TYPES, Geometry, write_gguf  # noqa: E402

CASES = [
    # (geometry, n_ctx, n_seq_max, kv_unified, cache type)
    (Geometry("llama"), 8192, 4, False, "f16"),
    (Geometry("llama"), 8192, 4, True, "f16"),
    (Geometry("llama"), 4096, 3, False, "f16"),
    (Geometry("llama"), 1000, 2, False, "q8_0"),
    (Geometry("gemma2", swa=1024), 16384, 4, True, "f16"),
    (Geometry("gemma2", swa=1024), 16384, 4, False, "f16"),
]
SIZE = re.compile(r"llama_kv_cache:\s+size =\s+([\d.]+) MiB \(\s*(\d+) cells,\s+(\d+) layers,\s+(\d+)/(\d+) seqs\)")
BUFFER = re.compile(r"(\w+) KV buffer size =\s+([\d.]+) MiB")
N_CTX_SEQ = re.compile(r"n_ctx_seq\s+=\s+(\d+)")


def real_log(path: Path, n_ctx: int, n_seq: int, unified: bool, ct: str) -> str:
    import llama_cpp

    py_err = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            with contextlib.redirect_stderr(py_err):
                llama_cpp.llama_backend_init()
                mp = llama_cpp.llama_model_default_params()
                mp.n_gpu_layers = 0
                model = llama_cpp.llama_model_load_from_file(str(path).encode(), mp)
                cp = llama_cpp.llama_context_default_params()
                cp.n_ctx, cp.n_seq_max, cp.kv_unified = n_ctx, n_seq, unified
                cp.type_k = cp.type_v = GGML_TYPES[ct]
                cp.swa_full = False  # llama-server's default (common.h)
                cp.flash_attn_type = 1 if ct != "f16" else -1  # enabled for a quantized V, else auto
                cp.n_threads = cp.n_threads_batch = 1
                ctx = llama_cpp.llama_init_from_model(model, cp)
                llama_cpp.llama_free(ctx)
                llama_cpp.llama_model_free(model)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        return tmp.read().decode("utf-8", "replace") + py_err.getvalue()


def ours(g: Geometry, n_ctx: int, n_seq: int, unified: bool, ct: str) -> tuple[str, list[str]]:
    from kvcalc.dtypes import get_dtype
    from kvcalc.engines.llama_cpp import kv_placement
    from kvcalc.models import LayerGroup, ModelConfig
    from kvcalc.specs import FullAttention, SlidingWindowAttention, Spec

    full = FullAttention(num_kv_heads=g.kv_heads, head_dim=g.head_dim)
    pattern: list[Spec] = [full]
    if g.swa and g.arch == "gemma2":
        pattern = [SlidingWindowAttention(num_kv_heads=g.kv_heads, head_dim=g.head_dim, window=g.swa), full]
    model = ModelConfig(name="tiny", dtype="fp16", max_position_embeddings=g.ctx_train, num_attention_heads=g.heads,
                        hidden_size=g.embd, layers=[LayerGroup(repeat=g.layers // len(pattern), pattern=pattern)],
                        architecture=ARCHITECTURES[(g.arch, g.swa is not None)])
    d = get_dtype(ct)
    p = kv_placement(model, d, d, n_ctx=n_ctx, n_parallel=n_seq, kv_unified=unified, n_gpu_layers=0,
                     flash_attn="on" if ct != "f16" else "auto")
    return str(p.n_ctx_seq), [f"{b.total_bytes / 2**20:.2f}" for b in p.buffers]


def main() -> int:
    ok = True
    with tempfile.TemporaryDirectory() as d:
        for g, n_ctx, n_seq, unified, ct in CASES:
            path = Path(d) / f"{g.arch}.gguf"
            write_gguf(path, g)
            log = real_log(path, n_ctx, n_seq, unified, ct)
            seq = N_CTX_SEQ.search(log)
            sizes = [m.group(0) for m in SIZE.finditer(log)]
            # llama.cpp prints one CPU KV buffer per cache (the SWA cache has its own); kvcalc sums them.
            bufs = [float(m.group(2)) for m in BUFFER.finditer(log)]
            real_total = f"{sum(bufs):.2f}"
            our_seq, our_bufs = ours(g, n_ctx, n_seq, unified, ct)
            match = seq is not None and seq.group(1) == our_seq and real_total == our_bufs[0]
            ok &= match
            print(f"{g.arch:7} n_ctx {n_ctx:5} -np {n_seq} unified {unified!s:5} {ct:5}: llama.cpp n_ctx_seq "
                  f"{seq.group(1) if seq else '?'}, KV {real_total} MiB {sizes}; kvcalc n_ctx_seq {our_seq}, "
                  f"KV {our_bufs[0]} MiB  {'MATCH' if match else 'DIFF'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
