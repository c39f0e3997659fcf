"""Ollama 0.32 (v0.32.15, github ollama/ollama @ b7871fc, 2026-08-19): llama.cpp's ``llama-server``
run as a subprocess, so its cache is llama.cpp's (``kvcalc.engines.llama_cpp``) for the flags Ollama
passes. Since v0.30.0 (commit 9db4bda, "Remove CGO engines, use llama-server exclusively for GGML
models") Ollama has no cache of its own for GGUF models; ``ollama@0.24`` (``ollama_0_24``) is the
last release with its own runners.

What Ollama decides, read at v0.32.15 (file:line):

* ``llm/llama_server.go:375-376``: ``-c num_ctx x numParallel -np numParallel``; an explicit ``-np``
  keeps llama-server's cache non-unified (tools/server/server.cpp:156-160: only ``-np`` auto unifies),
  so each of the N streams holds ``PAD(num_ctx, 256)`` cells (``slot_cells``).
* ``envconfig/config.go:275``: ``OLLAMA_NUM_PARALLEL`` defaults to 1 (``server/sched.go:497``: at
  least 1; 1 for embedding models and the architectures listed at ``sched.go:505``).
* ``llm/server.go:111-116``: ``num_ctx`` above the model's trained context (``n_ctx_train``) is cut
  to it, with a warning ("requested context size too large for model"); ``sched.go:170-172``: at
  least 4.
* ``server/routes.go:2049-2057`` with ``:131-132`` and ``api/types.go:1115``: ``num_ctx`` defaults to
  ``OLLAMA_CONTEXT_LENGTH`` (``envconfig/config.go:230``, default 0 = unset), else by the total
  VRAM of all GPUs (``total - OLLAMA_GPU_OVERHEAD``, default 0): >= 47 GiB 262,144, >= 23 GiB 32,768,
  else 4,096. (``sched.go:758-780`` lowers an automatic num_ctx when the load runs out of memory:
  not modelled.)
* ``llm/llama_server.go:393-396``: ``OLLAMA_KV_CACHE_TYPE`` (``envconfig/config.go:222``, default
  unset = f16) is passed as ``--cache-type-k`` and ``--cache-type-v``, no check of its own.
* ``llm/llama_server.go:596-621``: flash attention is ``--flash-attn on``/``off`` when
  ``OLLAMA_FLASH_ATTENTION`` is set (``envconfig/config.go:216``), else ``auto`` on GPUs that support
  it (``ml/device.go:571-600``: CUDA compute >= 6 but 7.2, ROCm, Metal, Vulkan, CPU), else ``off``.
  So a quantized V cache works by default (llama.cpp's ``-fa auto`` turns flash attention on), and
  with ``OLLAMA_FLASH_ATTENTION=0`` llama-server refuses it ("quantized V cache requires flash_attn
  to be enabled") and the model does not load: Ollama 0.32 has no f16 fallback (0.24 had one).
* ``llm/llama_server.go:402-410``: ``-ngl`` only when ``num_gpu`` is set; otherwise llama-server's
  default ``-ngl auto`` with ``--fit on`` (llama.cpp common/common.h:475-478) fits the layers to free
  memory. kvcalc plans every layer offloaded unless ``--n-gpu-layers`` (``num_gpu``) is given, and its
  per-device check says when they do not fit. No ``--tensor-split``, ``--kv-unified`` or
  ``--no-kv-offload`` is passed (``num_gpu``/``main_gpu`` only: ``main_gpu`` is ``--split-mode none``,
  :641-647): the GPUs split by free memory.
* ``server/sched.go:857-866``: ``-b``/``-ub`` = 512 up to 4,096 tokens of ``-c``, 1,024 to 32,768,
  2,048 above (lowered when memory is tight, 256 on CUDA GPUs of 8 GiB or less without flash
  attention): the ``n_ubatch`` a sliding layer's cache adds to its window.
* Not modelled: ``llm/llama_server.go:2678-2700`` ``PredictServerVRAM``, Ollama's own pre-flight
  figure (the GGUF's file size plus f16 K and V at the smallest KV head count, whatever the cache
  type), which only decides evictions and the batch size (``sched.go:535-551``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from kvcalc.engines.base import Pool, PoolRequest
from kvcalc.engines.llama_cpp import N_UBATCH, LlamaCppPolicy
from kvcalc.units import GiB

if TYPE_CHECKING:
    from kvcalc.dtypes import KVDtype
    from kvcalc.engines.base import Workload
    from kvcalc.layout import RankLayout
    from kvcalc.models import ModelConfig

OLLAMA_VERSION = "Ollama 0.32.15 (llama-server)"

VRAM_TIERS = ((47 * GiB, 262_144), (23 * GiB, 32_768))
"""server/routes.go:2049-2057 @ v0.32.15: total VRAM -> default num_ctx (below 23 GiB: 4,096)."""
DEFAULT_NUM_CTX = 4096
MIN_NUM_CTX = 4
"""server/sched.go:170-172."""


def default_num_ctx(total_vram_bytes: int | None) -> int:
    """Ollama's num_ctx when neither the request nor OLLAMA_CONTEXT_LENGTH sets one."""
    for floor, ctx in VRAM_TIERS:
        if total_vram_bytes is not None and total_vram_bytes >= floor:
            return ctx
    return DEFAULT_NUM_CTX


def generation_batch(n_ctx: int) -> int:
    """``generationBatchForContext`` (server/sched.go:857-866 @ v0.32.15) of ``-c`` = num_ctx x parallel."""
    if n_ctx > 32768:
        return 2048
    if n_ctx > 4096:
        return 1024
    return N_UBATCH


class OllamaEngine(LlamaCppPolicy):
    name = "ollama"
    title = "Ollama (llama.cpp's llama-server)"
    version = OLLAMA_VERSION
    source = ("ollama/ollama v0.32.15 llm/llama_server.go:375-396 (-c num_ctx x OLLAMA_NUM_PARALLEL -np N, "
              "--cache-type-k/-v OLLAMA_KV_CACHE_TYPE); server/routes.go:2049-2057 (num_ctx by VRAM); "
              "llama.cpp's cache (kvcalc.engines.llama_cpp)")
    smaller_cache_dtypes = (("q8_0", "OLLAMA_KV_CACHE_TYPE=q8_0"), ("q4_0", "OLLAMA_KV_CACHE_TYPE=q4_0"))

    def default_context(self, model: ModelConfig, total_vram_bytes: int | None,
                        given: int | None = None) -> tuple[int, str] | None:
        train = model.max_position_embeddings
        if given is not None:
            if given > train:
                return train, (f"num_ctx {given:,} cut to the model's trained context {train:,} (Ollama warns "
                               "'requested context size too large for model', llm/server.go:111-116)")
            if given < MIN_NUM_CTX:
                return MIN_NUM_CTX, f"num_ctx {given} raised to {MIN_NUM_CTX} (server/sched.go:170-172)"
            return None
        ctx = default_num_ctx(total_vram_bytes)
        vram = "no GPU given: taken as 0" if total_vram_bytes is None else f"{total_vram_bytes / GiB:.2f} GiB"
        why = (f"num_ctx not given (--context; OLLAMA_CONTEXT_LENGTH): Ollama's default by total VRAM ({vram}) "
               f"is {ctx:,} (server/routes.go:2049-2057)")
        if ctx > train:
            why += f", cut to the model's trained context {train:,}"
            ctx = train
        return ctx, why

    def n_ubatch(self, req: PoolRequest) -> int:
        return generation_batch(req.max_model_len * req.parallel)

    def work_ubatch(self, work: Workload) -> int:
        return generation_batch(work.seq_len * work.batch)

    def prepare(self, layout: RankLayout, dtype: KVDtype, state_dtype: KVDtype, work: Workload) -> Workload:
        """num_ctx above the trained context is cut to it (llm/server.go:111-116)."""
        work = super().prepare(layout, dtype, state_dtype, work)
        train = layout.model.max_position_embeddings
        return dataclasses.replace(work, seq_len=train) if work.seq_len > train else work

    def command_line(self, req: PoolRequest) -> str:
        return (f"OLLAMA_NUM_PARALLEL={req.parallel} num_ctx {req.max_model_len}: llama-server "
                f"-c {req.max_model_len * req.parallel} -np {req.parallel} -ub {self.n_ubatch(req)}"
                + (f" -ngl {req.n_gpu_layers}" if req.n_gpu_layers != -1 else ""))

    def pool(self, req: PoolRequest) -> Pool:
        base = super().pool(req)
        n_ctx = req.max_model_len * req.parallel
        notes = []
        if req.n_gpu_layers == -1:
            notes.append("num_gpu not given: Ollama lets llama-server fit the layers to free memory (-ngl auto, "
                         "--fit on); planned with every layer offloaded (pass --n-gpu-layers for num_gpu)")
        if req.parallel > 1:
            notes.append(f"OLLAMA_NUM_PARALLEL={req.parallel}: -c {n_ctx:,} = num_ctx x {req.parallel}, each slot "
                         "its own stream of num_ctx cells (llm/llama_server.go:375-376)")
        return dataclasses.replace(base, notes=[*base.notes, *notes])


ENGINE = OllamaEngine()
POLICY = ENGINE
