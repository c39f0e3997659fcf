"""kvcalc YAML is validated by the schema's own dataclass checks, without pydantic, when every
value is exactly typed; the result equals pydantic's validation of the same data, and a bool or a
float where a count goes is refused (pydantic would coerce ``true`` to 1)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kvcalc.errors import InvalidConfigError
from kvcalc.loader import _fast, load_model_file, model_from_data
from kvcalc.models import ModelConfig
from kvcalc.registry import model_configs_dir
from kvcalc.specs import FullAttention

YAMLS = sorted(model_configs_dir().glob("*.yaml"))


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.stem)
def test_fast_path_builds_what_pydantic_builds(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kvcalc.loader as loader

    fast = load_model_file(path)
    data = yaml.safe_load(path.read_text())
    monkeypatch.setattr(loader, "_fast", lambda *args: None)  # every class through pydantic, as before
    assert fast == model_from_data(data, str(path))


def test_every_builtin_yaml_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import kvcalc.loader as loader

    def no_pydantic(*args: object) -> None:
        raise AssertionError("pydantic path taken")

    monkeypatch.setattr(loader, "_format_validation_error", no_pydantic)
    monkeypatch.setitem(sys.modules, "pydantic", None)  # importing it would fail
    for path in YAMLS:
        assert isinstance(load_model_file(path), ModelConfig)


def test_estimate_config_yaml_imports_no_pydantic(tmp_path: Path) -> None:
    code = ("import sys; from kvcalc.loader import load_model_file; "
            f"load_model_file({str(YAMLS[0])!r}); print('pydantic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("value", [True, False, 64.0, 1.5])
def test_bool_or_float_is_never_a_count(value: object) -> None:
    data = {"name": "toy", "dtype": "bf16", "max_position_embeddings": 4096, "num_attention_heads": 8,
            "hidden_size": 512, "layers": [{"repeat": 2, "pattern": [{"kind": "full", "num_kv_heads": 2,
                                                                       "head_dim": value}]}]}
    with pytest.raises(InvalidConfigError, match=r"'layers\.0\.pattern\.0\.head_dim' = .*never a count"):
        model_from_data(data, "m.yaml")
    top = {**data, "hidden_size": value}
    top["layers"] = [{"repeat": 2, "pattern": [{"kind": "full", "num_kv_heads": 2, "head_dim": 64}]}]
    with pytest.raises(InvalidConfigError, match=r"m\.yaml: field 'hidden_size' = .*never a count"):
        model_from_data(top, "m.yaml")


def test_numeric_string_still_goes_to_pydantic() -> None:
    assert _fast(FullAttention, {"kind": "full", "num_kv_heads": "8", "head_dim": 64}, "m", "x") is None
    spec = _fast(FullAttention, {"kind": "full", "num_kv_heads": 8, "head_dim": 64}, "m", "x")
    assert spec == FullAttention(num_kv_heads=8, head_dim=64)


def test_post_init_checks_run_and_are_worded_as_before() -> None:
    with pytest.raises(InvalidConfigError, match=r"m: field 'x' = dict: head_dim must be a positive integer, got -1"):
        _fast(FullAttention, {"kind": "full", "num_kv_heads": 8, "head_dim": -1}, "m", "x")
