"""Built-in models: names, aliases, lookup with "did you mean".

The YAML files in ``model_configs/`` are the source of truth (they ship in the wheel as
``kvcalc/model_configs``). ``kvcalc/data/builtin_models.json`` is a compiled copy of them,
validated by pydantic when compiled, so a built-in estimate starts without pydantic or YAML;
``python -m kvcalc.registry`` regenerates it and a test fails when it is stale.
"""

from __future__ import annotations

import json
import os
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

from kvcalc.errors import UnknownModelError
from kvcalc.models import ModelConfig, model_from_dict

if TYPE_CHECKING:
    from pathlib import Path

# os.path rather than pathlib here: pathlib costs ~5 ms of the start-up budget.
_PKG = os.path.dirname(os.path.abspath(__file__))
INDEX_FILE = os.path.join(_PKG, "data", "builtin_models.json")


def model_configs_dir() -> Path:
    """Where the built-in YAML files are: inside the installed package, or the source tree."""
    from pathlib import Path

    installed = Path(_PKG) / "model_configs"
    if installed.is_dir():
        return installed
    return Path(_PKG).parent / "model_configs"


@lru_cache(maxsize=1)
def _index() -> dict[str, Any]:
    with open(INDEX_FILE, encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def _key(name: str) -> str:
    return name.strip().lower()


def builtin_names() -> list[str]:
    """Canonical names of the built-in models, in catalogue order."""
    return list(_index()["models"])


def resolve_name(name: str) -> str | None:
    """Canonical name for a built-in name or alias (case-insensitive), or None."""
    return _index()["aliases"].get(_key(name))  # type: ignore[no-any-return]


@cache
def get_builtin(name: str) -> ModelConfig:
    """A built-in model by canonical name or alias; ``UnknownModelError`` with a suggestion."""
    canonical = resolve_name(name)
    if canonical is None:
        raise UnknownModelError(name, builtin_names())
    return model_from_dict(_index()["models"][canonical])


def load_model(name_or_path: str | Path, assume_standard: bool = False) -> ModelConfig:
    """A built-in model by name or alias, a kvcalc YAML file, or a Hugging Face config
    (a ``config.json``, a folder holding one, or a hub id in the local HF cache).

    ``assume_standard``: a Hugging Face config key kvcalc cannot place is read under a stated
    assumption instead of refused (``kvcalc.hf``)."""
    import os
    from pathlib import Path

    from kvcalc.errors import InvalidRequestError

    if not isinstance(name_or_path, str | os.PathLike):
        raise InvalidRequestError("name_or_path", name_or_path, "a model name, alias or path (a str or Path)")
    text = str(name_or_path) if isinstance(name_or_path, str) else os.fspath(name_or_path)
    if not isinstance(text, str) or not text.strip():
        # Path('') is '.', which would load ./config.json: an empty name names nothing.
        raise InvalidRequestError("name_or_path", text, "a model name, alias or path (not empty)")
    if isinstance(name_or_path, str) and resolve_name(text) is not None:
        return get_builtin(text)
    path = Path(text)
    try:
        exists = path.exists()
    except (OSError, ValueError):  # a name too long for a path, or with a NUL byte
        exists = False
    if exists:
        from kvcalc.loader import load_model_file

        return load_model_file(path, assume_standard)
    if isinstance(name_or_path, str) and "/" in text and not text.startswith((".", "/")):
        from kvcalc import hf

        found = hf.find_in_hf_cache(text)
        if found is not None:
            from kvcalc.loader import load_model_file

            return load_model_file(found, assume_standard)
    raise UnknownModelError(text, builtin_names())


def compile_index(directory: Path | None = None) -> dict[str, Any]:
    """Validate every YAML in ``model_configs/`` (pydantic) and build the compiled index."""
    from kvcalc.errors import InvalidConfigError
    from kvcalc.loader import model_from_data, parse_yaml, read_text_capped

    directory = directory or model_configs_dir()
    models: dict[str, Any] = {}
    aliases: dict[str, str] = {}
    for path in sorted(directory.glob("*.yaml")):
        model = model_from_data(parse_yaml(read_text_capped(path), str(path)), str(path))
        if path.stem != model.name:
            raise InvalidConfigError(str(path), f"file name must be the model name {model.name!r}.yaml")
        models[model.name] = model.to_dict()
        for alias in model.all_names:
            key = _key(alias)
            if aliases.get(key, model.name) != model.name:
                raise InvalidConfigError(str(path), f"alias {alias!r} also names {aliases[key]!r}")
            aliases[key] = model.name
    order = _catalogue_order(list(models))
    return {"models": {k: models[k] for k in order}, "aliases": dict(sorted(aliases.items()))}


def _catalogue_order(names: list[str]) -> list[str]:
    def key(name: str) -> tuple[str, ...]:
        # Natural sort: llama-2-7b before llama-2-13b.
        import re

        parts = re.split(r"(\d+)", name)
        return tuple(p.zfill(8) if p.isdigit() else p for p in parts)

    return sorted(names, key=key)


def write_index() -> str:
    with open(INDEX_FILE, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(compile_index(), indent=1) + "\n")
    return INDEX_FILE


if __name__ == "__main__":  # pragma: no cover - developer tool
    print(f"wrote {write_index()}")
