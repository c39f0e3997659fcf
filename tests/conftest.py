"""Shared fixtures: a small-model factory, every built-in model, and a CLI runner that goes
through ``kvcalc.cli.main`` (the real error funnel), capturing stdout and stderr apart."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kvcalc.models import LayerGroup, ModelConfig
from kvcalc.registry import builtin_names, get_builtin
from kvcalc.specs import FullAttention, Spec

FIXTURES = Path(__file__).parent / "fixtures"


def make_model(*, layers: int = 2, kv_heads: int = 2, head_dim: int = 4, heads: int = 4,
               specs: list[Spec] | None = None, **overrides: Any) -> ModelConfig:
    """A tiny model; tests override only the field under test."""
    pattern = specs or [FullAttention(num_kv_heads=kv_heads, head_dim=head_dim)]
    data: dict[str, Any] = {
        "name": "tiny",
        "dtype": "fp16",
        "max_position_embeddings": 4096,
        "num_attention_heads": heads,
        "hidden_size": heads * head_dim,
        "layers": [LayerGroup(repeat=layers, pattern=pattern)],
    }
    data.update(overrides)
    return ModelConfig(**data)


@pytest.fixture
def model_factory() -> Callable[..., ModelConfig]:
    return make_model


@pytest.fixture(params=builtin_names())
def builtin_model(request: pytest.FixtureRequest) -> ModelConfig:
    return get_builtin(request.param)


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    from kvcalc.cli import main

    monkeypatch.setenv("COLUMNS", "110")
    monkeypatch.delenv("KVCALC_DEBUG", raising=False)

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


def hf_fixture(name: str) -> Path:
    return FIXTURES / f"{name}.json"
