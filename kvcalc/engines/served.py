"""Which model architectures an engine version serves (``architectures[0]`` of the HF config).

The table ``kvcalc/data/served_architectures.json`` is generated from the release wheels by
``benchmarks/served_architectures.py`` (read, not run):

* vLLM: the registry dicts of ``vllm/model_executor/models/registry.py`` (0.34.0: lines 73-941):
  ``generate`` = ``_TEXT_GENERATION_MODELS`` + ``_MULTIMODAL_MODELS``, ``other`` = the pooling and
  speculative-decoding dicts, ``transformers`` = ``_TRANSFORMERS_SUPPORTED_MODELS`` (run through
  vLLM's Transformers backend), ``removed`` = ``_PREVIOUSLY_SUPPORTED_MODELS`` (architecture ->
  the last release that served it; ``_raise_for_unsupported``, 0.34.0 :1300-1318);
* SGLang: the ``EntryClass`` names of ``sglang/srt/models/*.py`` (``import_model_classes``,
  0.5.23 ``srt/models/registry.py:118-149``).

Both engines fall back to Hugging Face's own model class for an architecture they have no code
for (vLLM 0.34.0 ``registry.py:1466-1495``, ``model_impl == "auto"``; SGLang 0.5.23
``srt/model_loader/utils.py:224-231``) when transformers has it and it is backend-compatible,
which kvcalc cannot tell from a config: ``plan`` refuses such a model unless told
``--model-impl transformers`` (the engines' own flag), and then says so in a note.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from kvcalc.errors import InvalidRequestError, UnsupportedByEngineError

DATA = Path(__file__).resolve().parent.parent / "data" / "served_architectures.json"
MODEL_IMPLS = ("auto", "transformers")


@dataclass(frozen=True)
class Served:
    """One release's table."""

    release: str
    generate: frozenset[str]
    other: frozenset[str]
    transformers: frozenset[str]
    removed: dict[str, str]

    def serves(self, architecture: str) -> bool:
        return architecture in self.generate or architecture in self.other or architecture in self.transformers


@lru_cache(maxsize=1)
def _tables() -> dict[str, Served]:
    raw = json.loads(DATA.read_text())
    return {release: Served(release=release, generate=frozenset(t["generate"]), other=frozenset(t["other"]),
                            transformers=frozenset(t["transformers"]), removed=dict(t["removed"]))
            for release, t in raw.items()}


def releases() -> list[str]:
    """The releases a table was read for (``vLLM 0.34.0``, ``SGLang 0.5.23``, ...)."""
    return sorted(_tables())


def table(release: str) -> Served | None:
    return _tables().get(release)


def check_served(release: str | None, architecture: str | None, model: str, model_impl: str = "auto") -> str | None:
    """Refuse a model the release does not serve; return a note when it is served only through the
    engine's Transformers backend (or the caller asked for that backend), else None.

    ``release`` None (an engine without a table, e.g. llama.cpp) or an unknown ``architecture``
    (a kvcalc YAML without one) is not checked."""
    if model_impl not in MODEL_IMPLS:
        raise InvalidRequestError("--model-impl", model_impl, " or ".join(MODEL_IMPLS))
    found = table(release) if release is not None else None
    if found is None or architecture is None:
        return None
    if architecture in found.generate or architecture in found.other:
        return None if model_impl == "auto" else (
            f"{architecture}: --model-impl transformers: {release} runs Hugging Face's model class instead of its "
            "own; kvcalc sizes the same paged cache")
    if architecture in found.transformers:
        return f"{architecture}: {release} serves it through its Transformers backend (_TRANSFORMERS_SUPPORTED_MODELS)"
    if model_impl == "transformers":
        return (f"{architecture}: not in {release}'s own model code; --model-impl transformers: the engine runs "
                "Hugging Face's class if transformers has it and it is backend-compatible (not checked by kvcalc)")
    gone = found.removed.get(architecture)
    why = f" (it was served until v{gone})" if gone else ""
    raise UnsupportedByEngineError(
        f"{model}: architecture {architecture} is not served by {release}{why}; "
        f"{len(found.generate)} generative architectures are (kvcalc engines --architectures); "
        "pass --model-impl transformers if the engine's Transformers backend runs it")
