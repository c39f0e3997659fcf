"""Storage policies: how many tokens each layer holds, and what a token costs, per engine.

Each policy lives in its own module, documents its source and the engine version it follows,
and is imported only when selected (``get_policy``), so the default path stays lean.
"""

from __future__ import annotations

import importlib

from kvcalc.engines.base import StoragePolicy
from kvcalc.errors import UnknownNameError

DEFAULT_ENGINE = "neutral"

_MODULES: dict[str, str] = {
    "neutral": "kvcalc.engines.neutral",
    "hf": "kvcalc.engines.hf",
    "hf-static": "kvcalc.engines.hf_static",
    "vllm": "kvcalc.engines.vllm",
    "sglang": "kvcalc.engines.sglang",
    "llama.cpp": "kvcalc.engines.llama_cpp",
}
"""Engine name -> module defining ``POLICY`` (a ``StoragePolicy``)."""

ALIASES: dict[str, str] = {
    "transformers": "hf",
    "hf_static": "hf-static",
    "static": "hf-static",
    "llama_cpp": "llama.cpp",
    "llamacpp": "llama.cpp",
    "llama-cpp": "llama.cpp",
}


def engine_names() -> list[str]:
    return list(_MODULES)


def get_policy(name: str) -> StoragePolicy:
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    module = _MODULES.get(key)
    if module is None:
        raise UnknownNameError("engine", name, [*_MODULES, *ALIASES])
    try:
        loaded = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        raise UnknownNameError("engine", name, ["neutral"]) from None
    policy: StoragePolicy = loaded.POLICY
    return policy
