"""Engine memory models moved to their engines (``kvcalc.engines``: each engine's ``budget``);
the shared arithmetic lives in ``kvcalc.engines.memory``. Kept so older imports keep working."""

from kvcalc.engines.memory import (
    DEFAULT_ACTIVATION_BYTES,
    DEFAULT_NON_TORCH_BYTES,
    Budget,
    given_budget,
    mul_ceil,
    mul_floor,
    parse_fraction,
)
from kvcalc.engines.sglang_memory import sglang_default_fraction

__all__ = ["DEFAULT_ACTIVATION_BYTES", "DEFAULT_NON_TORCH_BYTES", "Budget", "engine_budget", "given_budget", "mul_ceil",
           "mul_floor", "parse_fraction", "sglang_default_fraction"]


def engine_budget(engine: str, total_bytes: int, weights_per_gpu: int, **kwargs: object) -> Budget:
    """``get_engine(engine).budget(...)``."""
    from kvcalc.engines import get_engine

    return get_engine(engine).budget(total_bytes, weights_per_gpu, **kwargs)  # type: ignore[arg-type]
