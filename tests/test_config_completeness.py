"""Completeness: every cache-looking attribute of the configuration classes transformers 5.23 ships,
for every ``model_type`` kvcalc reads as a known family, is either understood by ``kvcalc.hf`` or
listed (``NOT_CACHE_KEYS``) with the reason it does not change the cache.

The configuration modules are read as source (``ast``), not imported: deterministic and fast. An
attribute is a class-level annotated field, an ``attribute_map`` key, or a ``kwargs.get/pop("...")``
read in ``__post_init__`` (how Gemma-3's ``sliding_window_pattern`` or Qwen3.5's
``full_attention_interval`` arrive). A family whose every non-attention layer kvcalc refuses
(``REFUSED_FAMILIES``) needs no more: its configs cannot produce a number. A ``model_type``
outside ``KNOWN_FAMILIES`` is read with a warning, and any cache-looking key in it that is neither
understood nor listed is refused at load time (``test_unknown_family_refuses_unlisted_cache_keys``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from kvcalc.errors import UnplacedConfigKeyError
from kvcalc.hf import CACHE_KEY_RE, KNOWN_FAMILIES, NOT_CACHE_KEYS, UNDERSTOOD_KEYS, model_from_hf

transformers = pytest.importorskip("transformers")

REFUSED_FAMILIES = {
    "falcon_h1": "every layer is 'hybrid' (a Mamba state and a KV cache in one layer): refused",
    "zamba2": "its default pattern has 'hybrid' layers (shared attention blocks): refused",
    "minimax": "lightning-attention state layers: refused (no Gated DeltaNet or Mamba2 keys)",
}
"""Families whose non-attention layers kvcalc refuses; ``test_refused_families_refuse`` proves it."""

NOT_IN_TRANSFORMERS = {
    "internlm2": "remote code (InternLM2), not shipped by transformers 5.23; read by its keys",
}


def _kwargs_reads(node: ast.AST) -> set[str]:
    """Keys read as ``kwargs.get("...")`` / ``kwargs.pop("...")`` anywhere in a class."""
    out: set[str] = set()
    for sub in ast.walk(node):
        if not (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and sub.args):
            continue
        owner, first = sub.func.value, sub.args[0]
        if (sub.func.attr in ("get", "pop", "setdefault") and isinstance(owner, ast.Name) and owner.id == "kwargs"
                and isinstance(first, ast.Constant) and isinstance(first.value, str)):
            out.add(first.value)
    return out


def config_attributes(source: str) -> dict[str, set[str]]:
    """``model_type`` -> attribute names of the config classes in one ``configuration_*.py`` source."""
    found: dict[str, set[str]] = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        model_type: str | None = None
        attrs: set[str] = set()
        for stmt in node.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                attrs.add(stmt.target.id)
            elif isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
                name = stmt.targets[0].id
                if name == "model_type" and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
                    model_type = stmt.value.value
                elif name == "attribute_map" and isinstance(stmt.value, ast.Dict):
                    attrs |= {k.value for k in stmt.value.keys
                              if isinstance(k, ast.Constant) and isinstance(k.value, str)}
        attrs |= _kwargs_reads(node)
        if model_type is not None:
            found.setdefault(model_type, set()).update(attrs)
    return found


def unexplained(attrs: set[str]) -> list[str]:
    return sorted(a for a in attrs if CACHE_KEY_RE.search(a) and a not in UNDERSTOOD_KEYS and a not in NOT_CACHE_KEYS)


@pytest.fixture(scope="module")
def shipped() -> dict[str, set[str]]:
    root = Path(transformers.__file__).parent / "models"
    found: dict[str, set[str]] = {}
    for path in sorted(root.glob("*/configuration_*.py")):
        for model_type, attrs in config_attributes(path.read_text(encoding="utf-8")).items():
            found.setdefault(model_type, set()).update(attrs)
    return found


def test_transformers_version() -> None:
    assert transformers.__version__.startswith("5.23")


def test_every_known_family_is_shipped(shipped: dict[str, set[str]]) -> None:
    assert sorted(KNOWN_FAMILIES - set(shipped) - set(NOT_IN_TRANSFORMERS)) == []


def test_every_cache_attribute_is_understood_or_listed(shipped: dict[str, set[str]]) -> None:
    missing = {family: unexplained(shipped[family]) for family in sorted(KNOWN_FAMILIES & set(shipped))
               if family not in REFUSED_FAMILIES}
    assert {f: m for f, m in missing.items() if m} == {}


def test_the_scan_catches_a_new_attribute() -> None:
    source = (
        "class NewConfig(PreTrainedConfig):\n"
        "    model_type = 'newfam'\n"
        "    attribute_map = {'n_kv': 'num_key_value_heads'}\n"
        "    latent_window_blocks: int = 4\n"
        "    head_dim: int = 128\n"
        "    def __post_init__(self, **kwargs):\n"
        "        self.p = kwargs.pop('global_attn_every', 4)\n"
    )
    attrs = config_attributes(source)["newfam"]
    assert unexplained(attrs) == ["global_attn_every", "latent_window_blocks"]


@pytest.mark.parametrize("family", sorted(REFUSED_FAMILIES))
def test_refused_families_refuse(family: str) -> None:
    data = {"model_type": family, "num_hidden_layers": 8, "hidden_size": 64, "num_attention_heads": 4,
            "max_position_embeddings": 512}
    with pytest.raises(UnplacedConfigKeyError):
        model_from_hf(data, family)


def test_unknown_family_refuses_unlisted_cache_keys() -> None:
    data = {"model_type": "newfam", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
            "max_position_embeddings": 512, "latent_window_blocks": 4}
    with pytest.raises(UnplacedConfigKeyError, match="latent_window_blocks"):
        model_from_hf(data, "newfam")
    # Every key understood: read, with a warning naming what was inferred.
    ok = model_from_hf({k: v for k, v in data.items() if k != "latent_window_blocks"}, "newfam")
    assert any("unknown model_type 'newfam': read by its keys as 2 x full" in a for a in ok.source.assumptions)
