"""Regenerate ``kvcalc/data/served_architectures.json`` from unpacked release wheels.

The table says which Hugging Face ``architectures[0]`` each modelled engine version serves with
its own model code (``kvcalc.engines.served``). It is read from the wheels, not run:

* vLLM: the keys of the registry dicts in ``vllm/model_executor/models/registry.py``
  (``_TEXT_GENERATION_MODELS``, ``_MULTIMODAL_MODELS`` (generative), the pooling dicts and
  ``_SPECULATIVE_DECODING_MODELS``; ``_VLLM_MODELS`` is their union), the architectures it runs
  through its Transformers backend (``_TRANSFORMERS_SUPPORTED_MODELS``) and the ones it names as
  removed with the release that last served them (``_PREVIOUSLY_SUPPORTED_MODELS``);
* SGLang: the ``__name__`` of each ``EntryClass`` in ``sglang/srt/models/*.py``, which is what
  ``sglang/srt/models/registry.py:import_model_classes`` registers (0.5.23: lines 118-149).

Usage (wheels unpacked with ``pip download vllm==X --no-deps`` + ``unzip``)::

    python -m benchmarks.served_architectures \\
        "vLLM 0.20.0=/tmp/e13/vllm_0.20.0" "vLLM 0.33.0=/tmp/e13/vllm_0.33.0" \\
        "vLLM 0.34.0=/tmp/e13/vllm34" "SGLang 0.5.23=/tmp/e13/sgl" > kvcalc/data/served_architectures.json
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

GENERATE = ("_TEXT_GENERATION_MODELS", "_MULTIMODAL_MODELS")
OTHER = ("_EMBEDDING_MODELS", "_LATE_INTERACTION_MODELS", "_REWARD_MODELS", "_TOKEN_CLASSIFICATION_MODELS",
         "_SEQUENCE_CLASSIFICATION_MODELS", "_CROSS_ENCODER_MODELS", "_SPECULATIVE_DECODING_MODELS")


def vllm_table(root: Path) -> dict[str, object]:
    src = root / "vllm" / "model_executor" / "models" / "registry.py"
    tree = ast.parse(src.read_text())
    dicts: dict[str, set[str]] = {}
    removed: dict[str, str] = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else (
            node.target if isinstance(node, ast.AnnAssign) else None)
        if isinstance(target, ast.Name) and isinstance(node.value, ast.Dict):  # type: ignore[union-attr]
            keys = {k.value for k in node.value.keys  # type: ignore[union-attr]
                    if isinstance(k, ast.Constant) and isinstance(k.value, str)}
            dicts[target.id] = keys
            if target.id == "_PREVIOUSLY_SUPPORTED_MODELS":
                pairs = zip(node.value.keys, node.value.values, strict=True)  # type: ignore[union-attr]
                removed = {k.value: v.value for k, v in pairs
                           if isinstance(k, ast.Constant) and isinstance(v, ast.Constant)}
    missing = [name for name in GENERATE if name not in dicts]
    if missing:
        raise SystemExit(f"{src}: no {missing}")
    gen = set().union(*(dicts[n] for n in GENERATE))
    other = set().union(*(dicts.get(n, set()) for n in OTHER)) - gen
    via_transformers = dicts.get("_TRANSFORMERS_SUPPORTED_MODELS", set()) - gen - other
    return {"generate": sorted(gen), "other": sorted(other), "transformers": sorted(via_transformers),
            "removed": removed}


def _entry_names(tree: ast.Module) -> list[str]:
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    aliases: dict[str, str] = {}
    for n in tree.body:
        if isinstance(n, ast.ImportFrom):
            for a in n.names:
                aliases[a.asname or a.name] = a.name
        elif isinstance(n, ast.Assign) and isinstance(n.value, ast.Name):
            for t in n.targets:
                if isinstance(t, ast.Name) and t.id != "EntryClass":
                    aliases[t.id] = n.value.id
    out: list[str] = []
    for n in tree.body:
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "EntryClass" for t in n.targets):
            elts = n.value.elts if isinstance(n.value, (ast.List, ast.Tuple)) else [n.value]
            for e in elts:
                if isinstance(e, ast.Name):
                    name = e.id
                    while name not in classes and name in aliases and aliases[name] != name:
                        name = aliases[name]
                    out.append(name)
    return out


def sglang_table(root: Path) -> dict[str, object]:
    names: set[str] = set()
    for path in sorted((root / "sglang" / "srt" / "models").glob("*.py")):
        names.update(_entry_names(ast.parse(path.read_text())))
    if not names:
        raise SystemExit(f"{root}: no EntryClass found")
    return {"generate": sorted(names), "other": [], "transformers": [], "removed": {}}


def main(argv: list[str]) -> None:
    out: dict[str, dict[str, object]] = {}
    for arg in argv:
        version, _, path = arg.partition("=")
        root = Path(path)
        out[version] = sglang_table(root) if version.startswith("SGLang") else vllm_table(root)
    print(json.dumps(out, indent=0, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1:])
