"""Built-in models, the compiled index, YAML validation errors, and the HF fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvcalc import load_model
from kvcalc.errors import InvalidConfigError, UnknownModelError
from kvcalc.hf import load_hf_config
from kvcalc.loader import load_model_file
from kvcalc.models import ModelConfig
from kvcalc.registry import INDEX_FILE, builtin_names, compile_index, model_configs_dir
from tests.conftest import FIXTURES

REQUIRED = [
    "llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3-8b", "llama-3-70b", "llama-3.1-8b",
    "llama-3.1-70b", "llama-3.1-405b", "mistral-7b-v0.1", "mixtral-8x7b", "qwen2.5-7b", "qwen2.5-72b",
    "qwen3-8b", "qwen3-32b", "gemma-2-9b", "gemma-2-27b", "deepseek-v2", "deepseek-v3", "gpt-oss-20b",
    "gpt-oss-120b", "phi-3-mini", "gpt2", "falcon-180b", "gpt-neox-20b", "qwen3-next-80b-a3b",
    "nemotron-h-56b",
]


def test_required_models_present() -> None:
    assert set(REQUIRED) <= set(builtin_names())


def test_compiled_index_is_current() -> None:
    """The compiled index must equal a fresh pydantic validation of model_configs/*.yaml.
    Regenerate with: python -m kvcalc.registry"""
    assert json.loads(Path(INDEX_FILE).read_text()) == compile_index()


@pytest.mark.parametrize("name", ["meta-llama/Llama-2-7b-hf", "LLAMA-2-7B-HF", "llama-2-7b-hf", "Llama-2-7B"])
def test_aliases(name: str) -> None:
    assert load_model(name).name == "llama-2-7b"


def test_unknown_model_did_you_mean() -> None:
    with pytest.raises(UnknownModelError, match="did you mean 'llama-3-70b'"):
        load_model("llama-3-70")


# Each built-in YAML, checked against the real config.json it cites (tests/fixtures/).
_FIXTURE_OF = {
    "llama-2-7b": "meta-llama--Llama-2-7b-hf", "llama-2-13b": "meta-llama--Llama-2-13b-hf",
    "llama-2-70b": "meta-llama--Llama-2-70b-hf", "llama-3-8b": "meta-llama--Meta-Llama-3-8B",
    "llama-3-70b": "meta-llama--Meta-Llama-3-70B-Instruct", "llama-3.1-8b": "meta-llama--Llama-3.1-8B",
    "llama-3.1-70b": "meta-llama--Llama-3.1-70B", "llama-3.1-405b": "meta-llama--Llama-3.1-405B",
    "mistral-7b-v0.1": "mistralai--Mistral-7B-v0.1", "mixtral-8x7b": "mistralai--Mixtral-8x7B-v0.1",
    "qwen2.5-7b": "Qwen--Qwen2.5-7B", "qwen2.5-72b": "Qwen--Qwen2.5-72B", "qwen3-8b": "Qwen--Qwen3-8B",
    "qwen3-32b": "Qwen--Qwen3-32B", "gemma-2-9b": "google--gemma-2-9b", "gemma-2-27b": "google--gemma-2-27b",
    "deepseek-v2": "deepseek-ai--DeepSeek-V2", "deepseek-v3": "deepseek-ai--DeepSeek-V3",
    "gpt-oss-20b": "openai--gpt-oss-20b", "gpt-oss-120b": "openai--gpt-oss-120b",
    "phi-3-mini": "microsoft--Phi-3-mini-4k-instruct", "gpt2": "openai-community--gpt2",
    "falcon-180b": "tiiuae--falcon-180B", "gpt-neox-20b": "EleutherAI--gpt-neox-20b",
    "qwen3-next-80b-a3b": "Qwen--Qwen3-Next-80B-A3B-Thinking",
    "nemotron-h-56b": "nvidia--Nemotron-H-56B-Base-8K",
    # Today's models (issue 11), from the copies in ai-dynamo/aiconfigurator (tests/fixtures/HF_CONFIG_SOURCES.md).
    "deepseek-v3.2": "deepseek-ai--DeepSeek-V3.2", "kimi-k2": "moonshotai--Kimi-K2-Instruct",
    "glm-4.7": "zai-org--GLM-4.7-FP8", "glm-4.7-flash": "zai-org--GLM-4.7-Flash", "glm-5": "zai-org--GLM-5",
    "qwen3.5-27b": "Qwen--Qwen3.5-27B", "qwen3.5-397b-a17b": "Qwen--Qwen3.5-397B-A17B",
    "gemma-4-31b": "nvidia--Gemma-4-31B-IT-NVFP4", "gemma-4-26b-a4b": "google--gemma-4-26B-A4B",
    "llama-4-scout": "meta-llama--Llama-4-Scout-17B-16E-Instruct",
    "llama-4-maverick": "meta-llama--Llama-4-Maverick-17B-128E-Instruct",
    "minimax-m2.5": "MiniMaxAI--MiniMax-M2.5", "mimo-v2-flash": "XiaomiMiMo--MiMo-V2-Flash",
    "nemotron-3-nano-30b-a3b": "nvidia--NVIDIA-Nemotron-3-Nano-30B-A3B-BF16",
    "llama-3.3-nemotron-super-49b": "nvidia--Llama-3_3-Nemotron-Super-49B-v1",
    "qwen3-coder-480b-a35b": "Qwen--Qwen3-Coder-480B-A35B-Instruct",
}


@pytest.mark.parametrize("name", sorted(_FIXTURE_OF))
def test_builtin_matches_its_config_json(name: str) -> None:
    builtin = load_model(name)
    imported = load_hf_config(FIXTURES / f"{_FIXTURE_OF[name]}.json")
    assert builtin.layer_specs == imported.layer_specs
    for key in ("max_position_embeddings", "num_attention_heads", "hidden_size", "intermediate_size",
                "vocab_size", "moe", "tie_word_embeddings", "architecture"):
        assert getattr(builtin, key) == getattr(imported, key), key
    if name.startswith("gpt-oss") or name == "minimax-m2.5":
        assert builtin.dtype == "bf16"  # the config names none; see the YAML's note
    else:
        assert builtin.dtype == imported.dtype


def test_yamls_ship_with_the_package() -> None:
    assert sorted(p.stem for p in model_configs_dir().glob("*.yaml")) == sorted(builtin_names())


def _write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = """
name: toy
dtype: bf16
max_position_embeddings: 4096
num_attention_heads: 8
hidden_size: 512
layers:
  - repeat: 4
    pattern:
      - {kind: full, num_kv_heads: 2, head_dim: 64}
"""


def test_yaml_roundtrip(tmp_path: Path) -> None:
    model = load_model_file(_write(tmp_path, GOOD))
    assert isinstance(model, ModelConfig) and model.num_layers == 4


@pytest.mark.parametrize(
    ("bad", "needles"),
    [
        (GOOD.replace("num_kv_heads", "num_kv_hedas"), ["num_kv_hedas", "did you mean 'num_kv_heads'"]),
        (GOOD.replace("hidden_size", "hiden_size"), ["hiden_size", "did you mean 'hidden_size'"]),
        (GOOD.replace("num_kv_heads: 2", "num_kv_heads: 3"), ["divisible", "num_kv_heads (3)"]),
        (GOOD.replace("head_dim: 64", "head_dim: -64"), ["head_dim", "positive"]),
        (GOOD.replace("head_dim: 64", "head_dim: sixty"), ["head_dim", "sixty"]),
        (GOOD.replace("kind: full", "kind: fulll"), ["fulll", "did you mean 'full'"]),
        (GOOD.replace("repeat: 4", "repeat: 0"), ["repeat", "positive"]),
        (GOOD + "  - [", ["malformed YAML"]),
        ("- just\n- a list\n", ["mapping"]),
    ],
)
def test_yaml_errors_name_file_and_field(tmp_path: Path, bad: str, needles: list[str]) -> None:
    path = _write(tmp_path, bad)
    with pytest.raises(InvalidConfigError) as info:
        load_model_file(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    for needle in needles:
        assert needle in message


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*--*.json")), ids=lambda p: p.stem)
def test_every_hf_fixture_imports(path: Path) -> None:
    model = load_model_file(path)  # told apart by content, not by name
    assert model.num_layers > 0


def test_missing_dependency_errors_name_real_extras() -> None:
    """Each ``pip install 'kvcalc[X]'`` the errors suggest names an extra pyproject.toml defines
    (bench once said 'kvcalc[bench]', which does not exist)."""
    import re

    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).resolve().parent.parent
    extras = set(tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    named = {m.group(1) for p in (root / "kvcalc").rglob("*.py")
             for m in re.finditer(r'MissingDependencyError\(\s*"[^"]*",\s*"([^"]+)"', p.read_text())}
    assert named and named <= extras, named - extras
