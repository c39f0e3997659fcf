"""Moved to ``kvcalc.engines.vllm_kv`` (the vLLM engine owns its block arithmetic); kept so
older imports keep working."""

from kvcalc.engines.vllm_kv import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_MAX_NUM_BATCHED_TOKENS,
    MLA_BLOCK_SIZE,
    VLLM_VERSION,
    Layout,
    VllmKV,
    build_layout,
    num_blocks_interval,
    reserved_bytes_per_request,
    vllm_kv,
)

__all__ = ["DEFAULT_BLOCK_SIZE", "DEFAULT_MAX_NUM_BATCHED_TOKENS", "MLA_BLOCK_SIZE", "VLLM_VERSION", "Layout", "VllmKV",
           "build_layout", "num_blocks_interval", "reserved_bytes_per_request", "vllm_kv"]
