"""TensorRT-LLM (PyTorch backend): its memory model and its paged pool, per attention window.

Sources (NVIDIA/TensorRT-LLM, read through the search index's stored copies, 2025-2026 main):

* ``tensorrt_llm/llmapi/llm_args.py`` ``KvCacheConfig``: ``tokens_per_block: int = Field(default=32)``,
  ``free_gpu_memory_fraction`` (0.9 when unset), ``max_tokens``, ``host_cache_size`` (bytes).
* ``tensorrt_llm/_torch/pyexecutor/_util.py`` ``KvCacheCreator``: after the profiling run the pool is
  ``free_gpu_memory_fraction`` of what is free (``max_gpu_total_bytes``); kvcalc's budget
  (``fraction_of_free_after_profile``) is that figure.
* ``cpp/tensorrt_llm/batch_manager/kvCacheManager.cpp`` ``BaseKVCacheManager::calculateMaxNumBlocks``
  (the window-aware form): layers are grouped by attention window (full attention's window is
  ``max_attention_window`` = max_seq_len); each window's bytes per token ``b_W`` (its layers' K + V)
  gets the share ``s_W = float(b_W) / sum b`` of the allotted bytes; ``maxTokens = uint64(allotted x
  s_W / b_W)`` (floor), capped by ``max_tokens``; ``primaryBlocks = ceilDiv(maxTokens, tokens_per_block)``
  (a ceiling: the pool may exceed the allotted bytes by under one block); the host pool
  ``secondaryBlocks = int(host_cache_size x s_W / b_W) / tokens_per_block`` (floors).
* same file, ``calculateMaxBlockRequirementsPerBeam``: a request of L tokens needs
  ``ceilDiv(min(L, W), tokens_per_block)`` blocks of window W (beam 1, no sink tokens);
  ``getMaxCapacityBatchSize``: requests at once = min over windows of ``primaryBlocks_W // need_W``.
* same file, ``KVCacheManager`` constructor logs ``Number of tokens per block: %d.`` and
  ``[MemUsageChange] Allocated %0.2f GiB for max tokens in paged KV cache (%d).`` = the primary
  pool's bytes / 2**30 and ``blocks x tokens_per_block``.
* ``get_cache_size_per_token`` (``resource_manager.py``): 2 bytes a value unless the cache is fp8,
  so ``--kv-dtype auto`` on a float32 config is a 2-byte cache.

Per-layer storage in ``estimate`` stays kvcalc's engine-neutral definition (no block padding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kvcalc.dtypes import cdiv
from kvcalc.engines.base import Engine

if TYPE_CHECKING:
    from decimal import Decimal

    from kvcalc.engines.base import Pool, PoolRequest
    from kvcalc.engines.memory import Budget
    from kvcalc.models import ModelConfig

TRTLLM_VERSION = ("TensorRT-LLM (PyTorch backend) KvCacheCreator + kvCacheManager.cpp calculateMaxNumBlocks "
                  "(per-window pools, 32-token blocks)")
TOKENS_PER_BLOCK = 32
"""``KvCacheConfig.tokens_per_block`` default (llmapi/llm_args.py)."""


def _f32(x: float) -> float:
    import struct

    return float(struct.unpack("<f", struct.pack("<f", x))[0])


@dataclass(frozen=True)
class WindowPool:
    """One attention window's pool: its bytes per token, blocks on the GPU and in host memory."""

    window: int
    bytes_per_token: int
    primary_blocks: int
    secondary_blocks: int


def window_pools(allotted_bytes: int, window_bytes: dict[int, int], *, tokens_per_block: int = TOKENS_PER_BLOCK,
                 max_tokens: int | None = None, host_cache_bytes: int = 0) -> list[WindowPool]:
    """``calculateMaxNumBlocks``: blocks per attention window (see the module docstring)."""
    from kvcalc.errors import InvalidRequestError

    if tokens_per_block < 1:
        raise InvalidRequestError("--tokens-per-block", str(tokens_per_block), "a token count >= 1")
    if max_tokens is not None and max_tokens < 1:
        raise InvalidRequestError("--max-tokens", str(max_tokens), "a token count >= 1")
    total = sum(window_bytes.values())
    out = []
    for w in sorted(window_bytes):
        b = window_bytes[w]
        # calculateWindowSizeToShare: a float weight, exactly 1 with a single window.
        share = 1.0 if len(window_bytes) == 1 else _f32(_f32(float(b)) / total)
        tokens = int(max(allotted_bytes, 0) * share / float(b))
        if max_tokens is not None:
            tokens = min(tokens, max_tokens)
        secondary = int(host_cache_bytes * share / b) // tokens_per_block
        out.append(WindowPool(window=w, bytes_per_token=b, primary_blocks=cdiv(tokens, tokens_per_block),
                              secondary_blocks=max(0, secondary)))
    return out


def allocated_line(pool_bytes: int, tokens: int, tokens_per_block: int) -> list[str]:
    """The two lines ``KVCacheManager`` logs for its primary pool (``%0.2f`` GiB)."""
    from kvcalc.units import GiB

    return [f"[TensorRT-LLM][INFO] Number of tokens per block: {tokens_per_block}.",
            f"[TensorRT-LLM][INFO] [MemUsageChange] Allocated {pool_bytes / GiB:.2f} GiB for max tokens in paged "
            f"KV cache ({tokens})."]


class TrtllmEngine(Engine):
    name = "trtllm"
    title = "TensorRT-LLM"
    version = TRTLLM_VERSION
    source = ("TensorRT-LLM _torch/pyexecutor/_util.py KvCacheCreator: (total - peak) x free_gpu_memory_fraction; "
              "kvCacheManager.cpp calculateMaxNumBlocks: per-window ceil(floor(bytes x share / b_W) / 32) blocks")
    plannable = True
    fraction_flag = "--free-gpu-memory-fraction"
    default_fraction = "0.9"
    smaller_cache_dtypes = (("fp8", "TensorRT-LLM KvCacheConfig dtype fp8"),)

    stateful_attention_refusal = (
        "layers holding a Mamba state and an attention KV cache at once (Falcon-H1, Zamba2) are not modelled "
        "for TensorRT-LLM; use --engine neutral, hf or hf-static")

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

    def window_bytes(self, req: PoolRequest) -> dict[int, int]:
        """Bytes per token of each attention window on the largest stage; full attention (and any
        window >= max_model_len) is ``max_attention_window`` = max_model_len."""
        from kvcalc.specs import ChunkedAttention, SlidingWindowAttention

        best: dict[int, int] = {}
        for stage in req.layout.stages:
            acc: dict[int, int] = {}
            for s, n in stage.counts:
                if not s.grows:
                    continue
                w = req.max_model_len
                if isinstance(s, (SlidingWindowAttention, ChunkedAttention)):
                    w = min(s.window, req.max_model_len)
                acc[w] = acc.get(w, 0) + s.bytes_per_token(req.dtype) * n
            if sum(acc.values()) > sum(best.values()):
                best = acc
        return best

    def pool(self, req: PoolRequest) -> Pool:
        from kvcalc.engines.capacity import Capacity

        tpb = req.block_size or TOKENS_PER_BLOCK
        wb = self.window_bytes(req)
        if not wb:
            return super().pool(req)
        pools = window_pools(req.kv_budget_bytes, wb, tokens_per_block=tpb, max_tokens=req.max_tokens,
                             host_cache_bytes=req.host_cache_bytes)

        def need(p: WindowPool, length: int) -> int:
            return cdiv(min(length, p.window), tpb)

        # The window whose pool runs out first at max_model_len binds (getMaxCapacityBatchSize).
        bind = min(pools, key=lambda p: (p.primary_blocks / max(need(p, req.max_model_len), 1), p.window))
        cap = Capacity(unit="blocks", available=bind.primary_blocks if req.kv_budget_bytes > 0 else 0,
                       cost=lambda length: need(bind, length),
                       max_len=max(req.layout.model.max_position_embeddings, req.max_model_len))
        shown = ", ".join(f"window {p.window:,}: {p.primary_blocks:,} blocks of {tpb} tokens "
                          f"({p.bytes_per_token:,} B a token)" for p in pools)
        notes = [f"TensorRT-LLM pool: {shown}"]
        if req.host_cache_bytes:
            notes.append("host (secondary) pool: " + ", ".join(f"{p.secondary_blocks:,}" for p in pools) + " blocks")
        if len(pools) > 1:
            notes.append(f"variable sliding window: the window {bind.window:,} binds at max_model_len "
                         "(TensorRT-LLM getMaxCapacityBatchSize: min over windows)")
        tokens = bind.primary_blocks * tpb if req.kv_budget_bytes > 0 else 0
        lines = allocated_line(sum(p.primary_blocks * tpb * p.bytes_per_token for p in pools), tokens, tpb) \
            if len(pools) == 1 and req.kv_budget_bytes > 0 else []
        import dataclasses

        answer = self.pool_answer(req, cap, unit_bytes=tpb * bind.bytes_per_token,
                                  num_blocks=bind.primary_blocks if req.kv_budget_bytes > 0 else 0,
                                  kv_tokens=tokens, log_lines=lines, notes=notes)
        return dataclasses.replace(answer, block_size=tpb)

ENGINE = TrtllmEngine()
POLICY = ENGINE
