"""The engine registry: one table of engines (and versions), one table of aliases.

Each engine lives in its own module, documents its source and the engine version it follows,
and is imported only when selected (``get_engine``), so the default path stays lean. A newer
release of an engine is one module whose class subclasses the older one, plus one line in
``_VERSIONS`` (and, to make it the default, one change in ``_ENGINES``)::

    # kvcalc/engines/vllm_0_22.py
    class Vllm022(VllmEngine):
        version = "vLLM 0.22.0"
        ...  # only what changed, citing the file read
    ENGINE = Vllm022()

    _VERSIONS[("vllm", "0.22")] = "kvcalc.engines.vllm_0_22"

``--engine vllm@0.22`` selects a version; ``--engine vllm`` the default one.
"""

from __future__ import annotations

import importlib

from kvcalc.engines.base import Engine, StoragePolicy
from kvcalc.errors import UnknownNameError

__all__ = ["ALIASES", "DEFAULT_ENGINE", "Engine", "StoragePolicy", "canonical_engine", "engine_names",
           "engine_versions", "get_engine", "get_policy", "planner_engines"]

DEFAULT_ENGINE = "neutral"

_ENGINES: dict[str, str] = {
    "neutral": "kvcalc.engines.neutral",
    "hf": "kvcalc.engines.hf",
    "hf-static": "kvcalc.engines.hf_static",
    "vllm": "kvcalc.engines.vllm_0_34",
    "sglang": "kvcalc.engines.sglang",
    "llama.cpp": "kvcalc.engines.llama_cpp",
    "trtllm": "kvcalc.engines.trtllm",
    "ollama": "kvcalc.engines.ollama",
}
"""Engine name -> module defining ``ENGINE`` (its default version)."""

_VERSIONS: dict[tuple[str, str], str] = {
    ("vllm", "0.19"): "kvcalc.engines.vllm_0_19",
    ("vllm", "0.20"): "kvcalc.engines.vllm_0_20",
    ("vllm", "0.31"): "kvcalc.engines.vllm_0_33",
    ("vllm", "0.32"): "kvcalc.engines.vllm_0_33",
    ("vllm", "0.33"): "kvcalc.engines.vllm_0_33",
    ("vllm", "0.34"): "kvcalc.engines.vllm_0_34",
    ("sglang", "0.5.23"): "kvcalc.engines.sglang",
    ("ollama", "0.32"): "kvcalc.engines.ollama",
    ("ollama", "0.24"): "kvcalc.engines.ollama_0_24",
}
"""(engine, version) -> module defining ``ENGINE`` for that release."""

ALIASES: dict[str, str] = {
    "transformers": "hf",
    "hf_static": "hf-static",
    "static": "hf-static",
    "llama_cpp": "llama.cpp",
    "llamacpp": "llama.cpp",
    "llama-cpp": "llama.cpp",
    "tensorrt-llm": "trtllm",
    "tensorrt_llm": "trtllm",
    "trt-llm": "trtllm",
    "trt_llm": "trtllm",
    "tensorrtllm": "trtllm",
}
"""The one alias table: every spelling of an engine name kvcalc accepts, on every command."""


def engine_names() -> list[str]:
    return list(_ENGINES)


def engine_versions() -> list[str]:
    return [f"{name}@{version}" for name, version in _VERSIONS]


def planner_engines() -> list[str]:
    """Engines ``plan`` has a memory model and pool for."""
    return [name for name in _ENGINES if get_engine(name).plannable]


def canonical_engine(name: str) -> str:
    """An engine spelling -> its registry name (``tensorrt-llm`` -> ``trtllm``); unknown: an error."""
    if not isinstance(name, str):
        raise UnknownNameError("engine", repr(name), [*_ENGINES, *ALIASES])
    base, _, _version = name.strip().lower().partition("@")
    key = ALIASES.get(base, base)
    if key not in _ENGINES:
        raise UnknownNameError("engine", name, [*_ENGINES, *ALIASES])
    return key


def get_engine(name: str | Engine) -> Engine:
    """The engine (or ``name@version``) for any accepted spelling."""
    if isinstance(name, Engine):
        return name
    key = canonical_engine(name)
    version = name.strip().lower().partition("@")[2]
    module = _ENGINES[key]
    if version:
        found = _VERSIONS.get((key, version))
        if found is None:
            raise UnknownNameError(f"{key} version", version,
                                   [v for (e, v) in _VERSIONS if e == key] or ["(none registered)"])
        module = found
    loaded = importlib.import_module(module)
    engine: Engine = loaded.ENGINE
    return engine


def get_policy(name: str) -> Engine:
    """The former name of ``get_engine`` (the engine answers every storage-policy question)."""
    return get_engine(name)
