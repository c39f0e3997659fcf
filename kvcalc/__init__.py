"""kvcalc: exact KV-cache memory for LLM inference, and GPU capacity planning.

>>> import kvcalc
>>> model = kvcalc.load_model("llama-2-7b")
>>> kvcalc.estimate(model, seq_len=4096).total_bytes
2147483648
"""

from kvcalc.errors import (
    DoesNotFitError,
    InvalidConfigError,
    InvalidRequestError,
    KvcalcError,
    UnknownModelError,
)
from kvcalc.estimate import Estimate, GroupEstimate, apply_overrides, bytes_per_token, estimate
from kvcalc.models import ModelConfig
from kvcalc.registry import builtin_names, load_model

__all__ = [
    "DoesNotFitError",
    "Estimate",
    "GroupEstimate",
    "InvalidConfigError",
    "InvalidRequestError",
    "KvcalcError",
    "ModelConfig",
    "UnknownModelError",
    "apply_overrides",
    "builtin_names",
    "bytes_per_token",
    "estimate",
    "load_model",
]

__version__ = "0.1.0"
