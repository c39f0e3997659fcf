"""Ollama 0.24 (v0.24.0, github ollama/ollama @ c28ddc0, 2026-05-14): the last release before
llama-server (v0.30.0), with its own runners. Only what differs from ``ollama`` (0.32):

* The cache type falls back to f16 instead of being refused (``llm/server.go:225-271``): the llama
  runner keeps a quantized ``OLLAMA_KV_CACHE_TYPE`` only when ``OLLAMA_FLASH_ATTENTION`` is on
  (``flashAttention != ml.FlashAttentionEnabled``: "OLLAMA_FLASH_ATTENTION must be enabled to use a
  quantized OLLAMA_KV_CACHE_TYPE", a warning, and the type is dropped); Ollama's own engine drops it
  without flash attention too ("quantized kv cache requested but flash attention disabled");
  ``fs/ggml/ggml.go:851-857``: only f16, q8_0 and q4_0 are supported, any other type is dropped with
  "unsupported OLLAMA_KV_CACHE_TYPE". kvcalc models the llama runner: ``--flash-attn on`` stands for
  ``OLLAMA_FLASH_ATTENTION=1``. (Ollama's own engine turns flash attention on by default for the
  architectures of ``ggml.go:890-905``; not modelled.)
* ``llm/server.go:175``: ``KvSize = num_ctx x numParallel``, ``Parallel = numParallel``; the llama
  runner builds the context from ``llama_context_default_params`` (``llama/llama.go:122-140``), so
  the cache is non-unified and ``swa_full`` is true (llama-context.cpp:3788-3789, llama.cpp
  vendored by llama-cpp-python 0.3.36): sliding layers keep every cell. The sizes of Ollama's own
  engine (``kvcache/causal.go``) are not modelled.
* The num_ctx tiers by VRAM are 0.32's (``server/routes.go:1905-1912``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from kvcalc.engines.ollama import OllamaEngine

if TYPE_CHECKING:
    from kvcalc.dtypes import KVDtype
    from kvcalc.engines.base import Workload
    from kvcalc.layout import RankLayout

SUPPORTED = ("f16", "q8_0", "q4_0")
"""fs/ggml/ggml.go:851-857 @ v0.24.0 ``SupportsKVCacheType``."""


class Ollama024(OllamaEngine):
    version = "Ollama 0.24.0 (own runners)"
    source = ("ollama/ollama v0.24.0 llm/server.go:175 (KvSize = num_ctx x OLLAMA_NUM_PARALLEL), :225-271 "
              "(a quantized OLLAMA_KV_CACHE_TYPE needs OLLAMA_FLASH_ATTENTION, else f16 with a warning)")
    swa_full = True

    def cache_dtype_for(self, dtype: KVDtype, flash_attn: str) -> tuple[KVDtype, str | None]:
        from kvcalc.dtypes import get_dtype

        name = dtype.name.lower().replace("fp16", "f16")
        if name not in SUPPORTED:
            return get_dtype("f16"), (f"OLLAMA_KV_CACHE_TYPE={dtype.name} is not supported by Ollama 0.24: "
                                      "'unsupported OLLAMA_KV_CACHE_TYPE', the cache stays f16 "
                                      "(fs/ggml/ggml.go:851-857)")
        if dtype.is_block_format and flash_attn != "on":
            return get_dtype("f16"), (f"OLLAMA_KV_CACHE_TYPE={dtype.name} without OLLAMA_FLASH_ATTENTION=1 "
                                      "(--flash-attn on): Ollama 0.24 warns 'OLLAMA_FLASH_ATTENTION must be enabled "
                                      "to use a quantized OLLAMA_KV_CACHE_TYPE' and the cache stays f16 "
                                      "(llm/server.go:237-241)")
        return dtype, None

    def prepare(self, layout: RankLayout, dtype: KVDtype, state_dtype: KVDtype, work: Workload) -> Workload:
        """``swa_full``: every layer keeps n_ctx cells."""
        return dataclasses.replace(super().prepare(layout, dtype, state_dtype, work), windows=False)


ENGINE = Ollama024()
POLICY = ENGINE
