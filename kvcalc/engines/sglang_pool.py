"""SGLang's KV pool from a KV budget: ``max_total_num_tokens``, and the split pools of a hybrid
sliding-window model.

Sources (SGLang 0.5.23 wheel, read 2026-12; the same code in sgl-project/sglang
``python/sglang/srt/model_executor/pool_configurator.py`` @ 003fca80):

* ``DefaultPoolConfigurator``: ``cell = H_rank x (head_dim + v_head_dim) x L x b`` over the
  attention layers of the stage (MLA ``(kv_lora_rank + rope) x L x b``; Mamba/linear-attention
  layers live in their own pool and are not in the cell), ``max_total_num_tokens = available //
  cell``, then ``// page_size x page_size``.
* ``HybridSWAPoolConfigurator``, for the architectures ``is_hybrid_swa_model`` lists
  (``configs/model_config.py`` @ 001adf56): ``cell = F x n_full + ratio x S x n_swa`` with
  ``swa_full_tokens_ratio`` 0.8 (a float, as SGLang computes it); ``full = page_align(int(available
  // cell))``, ``swa = page_align(int(full x ratio))``; ``max_total_num_tokens`` is ``full``; it
  refuses to start when ``sliding_window + page_size >= swa``. Gemma-2/3 are not on the list (and
  ``gemma2_gemma3.py`` forces ``disable_hybrid_swa_memory``), nor are Mistral or Command-R: they get
  the default pool, every layer at full length.
* PP: the token count is the minimum over stages (an all-reduce MIN), so the stage with the largest
  cell decides; stages and sharding are ``kvcalc.layout.RankLayout``'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kvcalc.layout import RankLayout
from kvcalc.models import ModelConfig
from kvcalc.specs import (
    ChunkedAttention,
    FullAttention,
    IndexedLatentAttention,
    LatentAttention,
    SlidingWindowAttention,
    Spec,
)

SGLANG_POOL_VERSION = "SGLang 0.5.23 pool_configurator.py"
SWA_FULL_TOKENS_RATIO = 0.8
"""``ServerArgs.swa_full_tokens_ratio`` default: SWA-layer tokens per full-layer token."""
HYBRID_SWA_ARCHITECTURES = frozenset({
    "Llama4ForConditionalGeneration", "DeepseekV4ForCausalLM", "GptOssForCausalLM", "MiMoV2ForCausalLM",
    "MiMoV2FlashForCausalLM", "Step3p5ForCausalLM", "Step3p7ForConditionalGeneration", "Gemma4ForCausalLM",
    "Gemma4ForConditionalGeneration", "Gemma4UnifiedForConditionalGeneration", "LagunaForCausalLM",
})
"""``is_hybrid_swa_model`` (sglang configs/model_config.py @ 001adf56): the split-pool models."""


@dataclass(frozen=True, kw_only=True)
class SglangPool:
    hybrid_swa: bool
    max_total_num_tokens: int
    """What SGLang logs and schedules by (the full-layer pool for a hybrid model)."""
    swa_tokens: int | None
    """The sliding-window layers' pool (hybrid only)."""
    cell: str
    """The bytes-per-token cell, as a formula with numbers."""
    window: int | None = None
    error: str | None = None
    log_lines: list[str] = field(default_factory=list)


def _is_swa(spec: Spec) -> bool:
    return isinstance(spec, SlidingWindowAttention | ChunkedAttention)


def is_hybrid_swa(model: ModelConfig) -> bool:
    """Whether SGLang gives ``model`` split full/SWA pools (its architecture list, and layers of both)."""
    if model.architecture not in HYBRID_SWA_ARCHITECTURES:
        return False
    specs = RankLayout(model).counts
    return any(_is_swa(s) for s in specs) and any(s.grows and not _is_swa(s) for s in specs)


def indexed_latent_bytes_per_token(spec: IndexedLatentAttention, dtype: Any) -> int:
    """SGLang's DSA cell: the latent plus an fp8 indexer key with one float32 scale per 128 values,
    ``index_head_dim + index_head_dim // 128 x 4`` bytes whatever the latent's dtype
    (``model_executor/pool_configurator.py:569`` @ 0.5.23, ``_compute_dsa_indexer_cell_size``)."""
    return spec.latent_bytes_per_token(dtype) + spec.index_head_dim + spec.index_head_dim // 128 * 4


def _per_token(rank_spec: Spec, dtype: Any) -> int:
    if isinstance(rank_spec, IndexedLatentAttention):
        return indexed_latent_bytes_per_token(rank_spec, dtype)
    if isinstance(rank_spec, FullAttention | LatentAttention):
        return rank_spec.bytes_per_token(dtype)
    return 0  # Mamba / linear attention: a separate state pool, not in the token cell


def sglang_pool(model: ModelConfig, dtype: Any, kv_budget_bytes: int, *, tp: int = 1, pp: int = 1,
                page_size: int = 1) -> SglangPool:
    """SGLang's pool sizes for one GPU's KV budget (``kv_budget_bytes`` may be <= 0: zero tokens)."""
    page = max(1, page_size)
    budget = max(kv_budget_bytes, 0)
    layout = RankLayout(model, tp, pp)
    stages = [st.counts for st in layout.stages]
    if not is_hybrid_swa(model):
        cell_bytes = max(sum(_per_token(s, dtype) * n for s, n in stage) for stage in stages)
        tokens = (budget // cell_bytes) // page * page if cell_bytes else 0
        return SglangPool(hybrid_swa=False, max_total_num_tokens=tokens, swa_tokens=None,
                          cell=f"{cell_bytes:,} B per token (all attention layers of the largest stage)")
    best: tuple[float, int, int, int, int] | None = None
    for stage in stages:
        full = [(_per_token(s, dtype), n) for s, n in stage if s.grows and not _is_swa(s)]
        swa = [(_per_token(s, dtype), n) for s, n in stage if _is_swa(s)]
        n_full, n_swa = sum(n for _, n in full), sum(n for _, n in swa)
        # SGLang multiplies one layer's bytes by the layer count (uniform layers); the float term
        # is computed in its order so the floor below lands where SGLang's does.
        f_pt, s_pt = (full[0][0] if full else 0), (swa[0][0] if swa else 0)
        uniform = all(x == f_pt for x, _ in full) and all(x == s_pt for x, _ in swa)
        cell: float = (f_pt * n_full + SWA_FULL_TOKENS_RATIO * s_pt * n_swa if uniform
                       else sum(x * n for x, n in full) + SWA_FULL_TOKENS_RATIO * sum(x * n for x, n in swa))
        if best is None or cell > best[0]:
            best = (cell, f_pt, n_full, s_pt, n_swa)
    assert best is not None
    cell, f_pt, n_full, s_pt, n_swa = best
    window = min(s.window for s in layout.counts if isinstance(s, SlidingWindowAttention | ChunkedAttention))
    if not n_full:  # a stage of sliding layers only: SGLang's "all SWA" pool
        tokens = int(budget // cell) // page * page if cell else 0
        return SglangPool(hybrid_swa=True, max_total_num_tokens=tokens, swa_tokens=tokens, window=window,
                          cell=f"{s_pt:,} B x {n_swa} sliding layers",
                          log_lines=[f"Use sliding window memory pool (all SWA). swa_layer_tokens={tokens}"])
    full_tokens = int(budget // cell) // page * page
    swa_tokens = int(full_tokens * SWA_FULL_TOKENS_RATIO) // page * page
    error = None
    if window + page >= swa_tokens:
        error = (f"SWA pool ({swa_tokens} tokens) cannot hold even one request: sliding window {window} "
                 f"+ page {page} needs more; raise --mem-fraction-static or the budget")
    return SglangPool(
        hybrid_swa=True, max_total_num_tokens=full_tokens, swa_tokens=swa_tokens, window=window, error=error,
        cell=(f"{f_pt:,} B x {n_full} full layers + {SWA_FULL_TOKENS_RATIO} x {s_pt:,} B x {n_swa} sliding "
              f"layers = {cell:,.1f} B per full-layer token"),
        log_lines=[f"Use sliding window memory pool. full_layer_tokens={full_tokens}, swa_layer_tokens={swa_tokens}"],
    )
