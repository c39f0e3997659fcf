"""SGLang 0.5.23's default ``mem_fraction_static`` (the SGLang engine's memory model uses it)."""

from __future__ import annotations

SGLANG_DEFAULTS_VERSION = "SGLang 0.5.23 arg_groups/memory_hook.py handle_gpu_memory_settings"


def _sglang_prefill_graph_sizes(max_bs: int) -> int:
    """``len(generate_prefill_cuda_graph_batch_sizes(max_bs))`` (SGLang 0.5.23
    arg_groups/cuda_graph_hook.py): 4..32 step 4, 48..256 step 16, 288..512 step 32, 576..1024
    step 64, 1280..4096 step 256, 4608..max_bs step 512, all <= max_bs."""
    sizes = [*range(4, 33, 4), *range(48, 257, 16), *range(288, 513, 32), *range(576, 1025, 64),
             *range(1280, 4097, 256), *range(4608, max_bs + 1, 512)]
    return sum(1 for s in sizes if s <= max_bs)


def sglang_default_fraction(gpu_mem_mib: int, *, tp: int = 1, pp: int = 1, mla: bool = False,
                            model_name: str = "") -> tuple[str, str]:
    """SGLang's ``mem_fraction_static`` when none is given, and how it was reached.

    SGLang 0.5.23 ``handle_gpu_memory_settings`` (arg_groups/memory_hook.py), for a text-only
    model on CUDA with the defaults (no speculative decoding, DP attention, DeepEP or PD
    disaggregation): ``gpu_mem`` is nvidia-smi's ``memory.total`` in MiB (the smallest GPU);
    its bucket picks ``chunked_prefill_size`` and the decode CUDA-graph ``max_bs``; then
    ``reserved = 512 + max(chunk, 2048) x 1.5 + tp x pp / 8 x 1024 + graphs`` MiB, at least
    10 GiB on GPUs over 60 GiB, and ``round((gpu_mem - reserved) / gpu_mem, 3)``. Graphs: decode
    ``max_bs x 2``; the breakable prefill graph (on by default on CUDA, off by default with
    PP > 1) ``len(prefill sizes) x 8``, or 1.5 GiB for an MLA model; its max_bs is the chunk
    (MLA: at most 8192; a model path containing "llama-2": at most 4096). Floats and Python's
    ``round`` as SGLang computes them: this is SGLang's number, not a byte count.
    """
    g = gpu_mem_mib
    buckets = ((20 * 1024, 2048, 8, 8), (35 * 1024, 4096, 48, 160), (60 * 1024, 4096, 32, 160),
               (90 * 1024, 8192, 256, 512), (160 * 1024, 8192, 256, 512))
    chunk, max_bs = 16384, 512  # B200, MI300 and larger
    for limit, c, bs_small, bs_large in buckets:
        if g < limit:
            chunk, max_bs = c, (bs_small if tp < 4 else bs_large)
            break
    graphs = max_bs * 2.0
    prefill = "off (pp > 1)"
    if pp == 1:
        if mla:
            graphs += 1.5 * 1024
            prefill = "MLA 1536"
        else:
            prefill_bs = min(chunk, 4096) if "llama-2" in model_name.lower() else chunk
            n = _sglang_prefill_graph_sizes(prefill_bs)
            graphs += n * 8
            prefill = f"{n} sizes x 8"
    reserved = 512 + max(chunk, 2048) * 1.5 + tp * pp / 8 * 1024 + graphs
    floor = ""
    if g > 60 * 1024 and reserved < 10 * 1024:
        reserved, floor = 10 * 1024.0, ", floored at 10,240"
    frac = round((g - reserved) / g, 3)
    text = f"{frac:.3f}".rstrip("0").rstrip(".")
    how = (f"{SGLANG_DEFAULTS_VERSION}: gpu_mem {g:,} MiB -> chunked_prefill_size {chunk}, decode max_bs "
           f"{max_bs}; reserved = 512 + {max(chunk, 2048)} x 1.5 + {tp} x {pp} / 8 x 1024 + decode graph "
           f"{max_bs} x 2 + prefill graph {prefill} = {reserved:,.0f} MiB{floor}; "
           f"round(({g:,} - {reserved:,.0f}) / {g:,}, 3) = {text}")
    return text, how
