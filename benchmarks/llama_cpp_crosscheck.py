"""Cross-check kvcalc's llama.cpp policy against a real llama.cpp (llama-cpp-python), on tiny
random-weight GGUF models written here with the ``gguf`` package (no downloads).

Run (not part of CI, which has no llama.cpp build):
    pip install gguf numpy llama-cpp-python && python benchmarks/llama_cpp_crosscheck.py

For each case it loads the model with ``n_ctx`` and cache types ``type_k``/``type_v``, reads the
``llama_kv_cache: size = ... MiB ( N cells, L layers, ...), K (t): ... MiB, V (t): ... MiB`` lines
llama.cpp logs, and prints them beside kvcalc's ``estimate(..., engine="llama.cpp")`` for the same
geometry. The log prints MiB to two decimals, so a match is equality of the printed text.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# ggml type ids (ggml.h enum ggml_type) for llama_cpp's type_k / type_v.
GGML_TYPES = {"f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "iq4_nl": 20, "f32": 0}


@dataclass(frozen=True)
class Geometry:
    arch: str
    layers: int = 4
    embd: int = 256
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 64
    ctx_train: int = 8192
    swa: int | None = None
    vocab: int = 256


def write_gguf(path: Path, g: Geometry) -> None:
    import gguf
    import numpy as np

    rng = np.random.default_rng(0)
    arch, embd, heads, kv_heads, head_dim, vocab = g.arch, g.embd, g.heads, g.kv_heads, g.head_dim, g.vocab
    w = gguf.GGUFWriter(str(path), arch)
    w.add_context_length(g.ctx_train)
    w.add_embedding_length(embd)
    w.add_block_count(g.layers)
    w.add_feed_forward_length(2 * embd)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(1)  # mostly f16
    if g.swa is not None:
        w.add_sliding_window(g.swa)
    # A byte-level-free vocabulary: llama.cpp accepts tokenizer model "none" (no tokenizer).
    w.add_tokenizer_model("none")
    w.add_vocab_size(vocab)

    def t(name: str, *shape: int) -> None:
        w.add_tensor(name, (rng.standard_normal(shape[::-1]) * 0.02).astype(np.float32))

    t("token_embd.weight", embd, vocab)
    t("output_norm.weight", embd)
    if arch == "llama":
        t("output.weight", embd, vocab)
    for i in range(g.layers):
        p = f"blk.{i}"
        t(f"{p}.attn_norm.weight", embd)
        t(f"{p}.attn_q.weight", embd, heads * head_dim)
        t(f"{p}.attn_k.weight", embd, kv_heads * head_dim)
        t(f"{p}.attn_v.weight", embd, kv_heads * head_dim)
        t(f"{p}.attn_output.weight", heads * head_dim, embd)
        t(f"{p}.ffn_gate.weight", embd, 2 * embd)
        t(f"{p}.ffn_up.weight", embd, 2 * embd)
        t(f"{p}.ffn_down.weight", 2 * embd, embd)
        if arch == "gemma2":
            t(f"{p}.post_attention_norm.weight", embd)
            t(f"{p}.ffn_norm.weight", embd)
            t(f"{p}.post_ffw_norm.weight", embd)
        else:
            t(f"{p}.ffn_norm.weight", embd)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def llama_cpp_log(path: Path, n_ctx: int, cache_type: str) -> str:
    """llama.cpp's log while it builds the context. llama-cpp-python forwards it to Python's
    ``sys.stderr`` (its log callback) or, before that is installed, C's fd 2: capture both."""
    import contextlib
    import io

    import llama_cpp

    py_err = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            with contextlib.redirect_stderr(py_err):
                llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, type_k=GGML_TYPES[cache_type],
                                      type_v=GGML_TYPES[cache_type], flash_attn=cache_type != "f16",
                                      # llama-server / llama-cli default (common.h swa_full = false);
                                      # the C API's own default, llama_context_default_params, is true.
                                      swa_full=False, verbose=True, n_gpu_layers=0, n_threads=1)
                del llm
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        return tmp.read().decode("utf-8", "replace") + py_err.getvalue()


ARCHITECTURES = {("llama", False): "LlamaForCausalLM", ("llama", True): "MistralForCausalLM",
                 ("gemma2", False): "Gemma2ForCausalLM", ("gemma2", True): "Gemma2ForCausalLM"}
"""The HF architecture each tiny GGUF stands for (kvcalc decides llama.cpp's window rule by it)."""

KV_LINE = re.compile(r"llama_kv_cache:\s+size =\s+([\d.]+) MiB \(\s*(\d+) cells,\s+(\d+) layers.*?K \((\w+)\):\s+"
                     r"([\d.]+) MiB, V \((\w+)\):\s+([\d.]+) MiB")


def kvcalc_lines(g: Geometry, n_ctx: int, cache_type: str) -> list[tuple[str, str, str]]:
    """kvcalc's (cells, K MiB, V MiB) per cache, printed as llama.cpp prints them."""
    from kvcalc.estimate import estimate
    from kvcalc.models import LayerGroup, ModelConfig
    from kvcalc.specs import FullAttention, SlidingWindowAttention, Spec

    full = FullAttention(num_kv_heads=g.kv_heads, head_dim=g.head_dim)
    pattern: list[Spec] = [full]
    if g.swa and g.arch == "gemma2":
        # gemma2 in llama.cpp: every other layer slides (hparams.set_swa_pattern(2)).
        pattern = [SlidingWindowAttention(num_kv_heads=g.kv_heads, head_dim=g.head_dim, window=g.swa), full]
    elif g.swa:
        # Mistral-7B-v0.1 style: every layer declares a window (HF sliding_window), and the GGUF
        # carries llama.attention.sliding_window; llama.cpp's llama architecture never reads it.
        pattern = [SlidingWindowAttention(num_kv_heads=g.kv_heads, head_dim=g.head_dim, window=g.swa)]
    model = ModelConfig(name="tiny", dtype="fp16", max_position_embeddings=g.ctx_train, num_attention_heads=g.heads,
                        hidden_size=g.embd, layers=[LayerGroup(repeat=g.layers // len(pattern), pattern=pattern)],
                        architecture=ARCHITECTURES[(g.arch, g.swa is not None)])
    est = estimate(model, n_ctx, 1, cache_type if cache_type != "f16" else "fp16", engine="llama.cpp")
    # K and V have the same geometry here, so each is half of a group's bytes.
    return [(str(grp.tokens_held), f"{grp.total_bytes / 2 / 2**20:.2f}", f"{grp.total_bytes / 2 / 2**20:.2f}")
            for grp in est.layers]


CASES = [
    (Geometry("llama"), 1000, "f16"),
    (Geometry("llama"), 4096, "q8_0"),
    (Geometry("llama"), 3000, "q4_0"),
    (Geometry("gemma2", swa=1024), 8192, "f16"),
    (Geometry("gemma2", swa=100), 5000, "q8_0"),
    (Geometry("llama", layers=3, kv_heads=4, head_dim=128, embd=512, heads=8), 2049, "q5_0"),
    (Geometry("llama", layers=2, kv_heads=1, head_dim=128, embd=512, heads=4), 777, "q4_1"),
    (Geometry("llama", layers=2, kv_heads=8, head_dim=64, embd=512, heads=8), 10_000, "iq4_nl"),
    (Geometry("llama", layers=2, kv_heads=8, head_dim=64, embd=512, heads=8), 6000, "q5_1"),
    (Geometry("gemma2", layers=6, swa=4096), 4000, "f16"),
    # Mistral-style: a llama GGUF with sliding_window 1024 / 4096: llama.cpp keeps every cell.
    (Geometry("llama", swa=1024), 8192, "f16"),
    (Geometry("llama", swa=4096), 32768, "q8_0"),
]


def main() -> int:
    ok = True
    with tempfile.TemporaryDirectory() as d:
        for g, n_ctx, ct in CASES:
            arch = g.arch
            path = Path(d) / f"{arch}-{n_ctx}-{ct}.gguf"
            write_gguf(path, g)
            log = llama_cpp_log(path, n_ctx, ct)
            real = [(m.group(2), m.group(5), m.group(7)) for m in KV_LINE.finditer(log)]
            ours = kvcalc_lines(g, n_ctx, ct)
            # llama.cpp logs the non-SWA cache first, then the SWA one; kvcalc lists groups in layer
            # order (sliding first for gemma2), so compare as sets of (cells, K, V).
            match = sorted(real) == sorted(ours)
            ok &= match
            swa = f" swa {g.swa}" if g.swa else ""
            verdict = "MATCH" if match else "DIFF"
            print(f"{arch:7}{swa:9} n_ctx {n_ctx:5} {ct:5}: llama.cpp {real}  kvcalc {ours}  {verdict}")
            if not real:
                print(log[-3000:])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
