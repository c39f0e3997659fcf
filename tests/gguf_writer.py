"""Write GGUF files for tests with the ``gguf`` package: the header and the tensor table of a
real-shaped model, the data region left sparse (a 4.7 GB Q4_K_M file costs no disk or time)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

Tensor = tuple[str, tuple[int, int] | tuple[int], str]
"""(name, numpy-order shape (rows, cols) or (n,), ggml type name)."""


def type_bytes(kind: str, shape: tuple[int, ...]) -> int:
    """ggml_nbytes, from gguf's own GGML_QUANT_SIZES (the reference the tests check against)."""
    import gguf

    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[kind.upper()]]
    n = 1
    for d in shape:
        n *= d
    assert shape[-1] % block == 0
    return n // block * size


def write_gguf(path: Path, arch: str, meta: dict[str, object], tensors: Iterable[Tensor],
               split_max_tensors: int = 0) -> list[Path]:
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), arch, split_max_tensors=split_max_tensors)
    for key, value in meta.items():
        full = key if key.startswith(("general.", "tokenizer.")) else f"{arch}.{key}"
        if isinstance(value, bool):
            w.add_bool(full, value)
        elif isinstance(value, int):
            w.add_uint32(full, value)
        elif isinstance(value, str):
            w.add_string(full, value)
        elif isinstance(value, list):
            w.add_array(full, value)
    for name, shape, kind in tensors:
        w.add_tensor_info(name, shape, np.dtype(np.float32), type_bytes(kind, shape),
                          raw_dtype=gguf.GGMLQuantizationType[kind.upper()])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    files = []
    assert w.fout is not None
    for fout, part in zip(w.fout, w.tensors, strict=True):
        pos = fout.tell()
        start = -(-pos // w.data_alignment) * w.data_alignment
        data = sum(gguf.GGUFWriter.ggml_pad(ti.nbytes, w.data_alignment) for ti in part.values())
        name = fout.name
        fout.close()
        os.truncate(name, start + data)  # sparse: the tensor data region reads as zeros
        files.append(Path(name))
    w.fout = None
    return files


def use_more_bits(i: int, n: int) -> bool:
    """llama-quant.cpp ``use_more_bits`` (written out again here, independently of kvcalc.gguf)."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def qwen25_7b_q4_k_m() -> tuple[dict[str, object], list[Tensor]]:
    """Qwen2.5-7B (config.json: 28 layers, hidden 3584, 28 heads, 4 KV heads, head_dim 128,
    intermediate 18944, vocab 152064, untied) as llama-quantize Q4_K_M writes it: token_embd q4_k,
    output q6_k, attn_v and ffn_down q6_k in the use_more_bits layers else q4_k, every other matrix
    q4_k, norms and q/k/v biases f32."""
    n, h, kv, inter, vocab = 28, 3584, 4 * 128, 18944, 152064
    meta: dict[str, object] = {
        "general.name": "Qwen2.5 7B Instruct", "general.file_type": 15,  # LLAMA_FTYPE_MOSTLY_Q4_K_M
        "context_length": 32768, "embedding_length": h, "block_count": n, "feed_forward_length": inter,
        "attention.head_count": 28, "attention.head_count_kv": 4, "vocab_size": vocab,
    }
    t: list[Tensor] = [("token_embd.weight", (vocab, h), "q4_k"), ("output_norm.weight", (h,), "f32"),
                       ("output.weight", (vocab, h), "q6_k")]
    for i in range(n):
        more = "q6_k" if use_more_bits(i, n) else "q4_k"
        p = f"blk.{i}"
        t += [(f"{p}.attn_norm.weight", (h,), "f32"), (f"{p}.ffn_norm.weight", (h,), "f32"),
              (f"{p}.attn_q.weight", (h, h), "q4_k"), (f"{p}.attn_q.bias", (h,), "f32"),
              (f"{p}.attn_k.weight", (kv, h), "q4_k"), (f"{p}.attn_k.bias", (kv,), "f32"),
              (f"{p}.attn_v.weight", (kv, h), more), (f"{p}.attn_v.bias", (kv,), "f32"),
              (f"{p}.attn_output.weight", (h, h), "q4_k"),
              (f"{p}.ffn_gate.weight", (inter, h), "q4_k"), (f"{p}.ffn_up.weight", (inter, h), "q4_k"),
              (f"{p}.ffn_down.weight", (h, inter), more)]
    return meta, t
