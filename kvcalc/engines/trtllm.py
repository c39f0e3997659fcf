"""TensorRT-LLM (PyTorch backend): kvcalc's neutral per-layer bytes in 32-token blocks, and its
memory model.

Sources: ``tensorrt_llm/_torch/pyexecutor/_util.py`` ``KvCacheCreator`` (the KV pool is
``free_gpu_memory_fraction`` of what is free after the profiling run, 0.9 by default,
``KvCacheConfig``); ``get_cache_size_per_token``: 2 bytes a value unless the cache is fp8, so
``--kv-dtype auto`` on a float32 config is a 2-byte cache; ``tokens_per_block`` 32 (``KvCacheConfig``
default). Storage per layer is kvcalc's engine-neutral definition (no block padding modelled in
``estimate``); the pool reports its blocks as tokens // 32.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kvcalc.engines.base import Engine

if TYPE_CHECKING:
    from decimal import Decimal

    from kvcalc.engines.memory import Budget
    from kvcalc.models import ModelConfig

TRTLLM_VERSION = "TensorRT-LLM (PyTorch backend) KvCacheCreator; kvcalc-neutral per-layer bytes"
TOKENS_PER_BLOCK = 32
"""``KvCacheConfig.tokens_per_block`` default."""


class TrtllmEngine(Engine):
    name = "trtllm"
    title = "TensorRT-LLM"
    version = TRTLLM_VERSION
    source = ("TensorRT-LLM _torch/pyexecutor/_util.py KvCacheCreator: (total - peak) x free_gpu_memory_fraction; "
              "per-layer bytes as kvcalc's neutral definition")
    plannable = True
    fraction_flag = "--free-gpu-memory-fraction"
    default_fraction = "0.9"
    smaller_cache_dtypes = (("fp8", "TensorRT-LLM KvCacheConfig dtype fp8"),)

    def auto_dtype(self, model: ModelConfig) -> tuple[str, str]:
        # get_cache_size_per_token: 2 bytes unless fp8, so a float32 model's cache is 16-bit.
        if model.dtype == "fp32":
            return "fp16", "TensorRT-LLM sizes a float32 model's cache at 2 bytes"
        return model.dtype, "model dtype"

    def compute_dtype(self, model: ModelConfig) -> str:
        return self.auto_dtype(model)[0]

    def blocks_of(self, tokens: int) -> int | None:
        return tokens // TOKENS_PER_BLOCK

    def fraction_budget(self, frac: Decimal, total_bytes: int, weights: int, activation: int,
                        non_torch: int) -> Budget:
        from kvcalc.engines.memory import fraction_of_free_after_profile

        assert self.fraction_flag is not None
        return fraction_of_free_after_profile(self.name, self.fraction_flag, frac, total_bytes, weights,
                                              activation, non_torch)


ENGINE = TrtllmEngine()
POLICY = ENGINE
