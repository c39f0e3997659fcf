"""kvcalc: exact KV-cache memory for LLM inference, and GPU capacity planning.

>>> import kvcalc
>>> model = kvcalc.load_model("llama-2-7b")
>>> kvcalc.estimate(model, seq_len=4096).total_bytes
2147483648

The public names are imported on first use (PEP 562): ``import kvcalc`` itself runs no code of
kvcalc's, so the CLI (``python -m kvcalc``, the ``kvcalc`` script) reaches its Ctrl-C handler
within a millisecond of starting instead of after the formula engine has loaded.
"""

from __future__ import annotations

TYPE_CHECKING = False
"""``typing.TYPE_CHECKING`` without importing typing (10-30 ms of start-up, inside the window
where a Ctrl-C used to print a traceback); mypy treats a module constant of this name the same."""

if TYPE_CHECKING:
    from typing import Any

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

_WHERE = {
    "DoesNotFitError": "kvcalc.errors",
    "InvalidConfigError": "kvcalc.errors",
    "InvalidRequestError": "kvcalc.errors",
    "KvcalcError": "kvcalc.errors",
    "UnknownModelError": "kvcalc.errors",
    "Estimate": "kvcalc.estimate",
    "GroupEstimate": "kvcalc.estimate",
    "apply_overrides": "kvcalc.estimate",
    "bytes_per_token": "kvcalc.estimate",
    "estimate": "kvcalc.estimate",
    "ModelConfig": "kvcalc.models",
    "builtin_names": "kvcalc.registry",
    "load_model": "kvcalc.registry",
}

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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'kvcalc' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


def _keep_public_functions() -> None:
    """``kvcalc.estimate`` is the function, though ``kvcalc/estimate.py`` is also a submodule:
    importing a submodule sets the package attribute of its name to the module, which would
    replace the function (eager imports used to rebind it right after). The package refuses that
    one assignment; the module stays importable (``from kvcalc.estimate import ...``)."""
    import sys
    import types

    class _Package(types.ModuleType):
        def __setattr__(self, name: str, value: Any) -> None:
            if name in _WHERE and isinstance(value, types.ModuleType):
                return
            super().__setattr__(name, value)

    sys.modules[__name__].__class__ = _Package


_keep_public_functions()
