"""Moved to ``kvcalc.engines.sglang_pool`` (the SGLang engine owns its pool arithmetic); kept so
older imports keep working."""

from kvcalc.engines.sglang_pool import (
    HYBRID_SWA_ARCHITECTURES,
    SGLANG_POOL_VERSION,
    SWA_FULL_TOKENS_RATIO,
    SglangPool,
    is_hybrid_swa,
    sglang_pool,
)

__all__ = ["HYBRID_SWA_ARCHITECTURES", "SGLANG_POOL_VERSION", "SWA_FULL_TOKENS_RATIO", "SglangPool", "is_hybrid_swa",
           "sglang_pool"]
