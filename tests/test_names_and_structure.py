"""A model's name never decides its numbers (issue 12, row 7), and a Hugging Face config gets a
name from itself or its folder, never ``config`` (issue 12, "one parser" list)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kvcalc.loader import hf_model_name, load_model_file
from kvcalc.planner.weights import checkpoint_weights, computed_parameters, model_parameters
from kvcalc.registry import get_builtin, model_configs_dir

FIXTURES = Path(__file__).parent / "fixtures"

# GPT-NeoX-20B by hand (EleutherAI/gpt-neox-20b config.json: h 6144, 44 layers, 64 heads x 96, MHA,
# intermediate 24576, vocab 50432, untied; two-matrix GELU MLP, biases not counted):
# embed + lm_head 2 x 50432 x 6144 = 619,708,416; per layer 4 x 6144^2 (q k v o) = 150,994,944
# + 2 x 6144 x 24576 (fc_in, fc_out) = 301,989,888 + 2 norms 12,288 -> 452,997,120 x 44 =
# 19,931,873,280; + final norm 6,144 -> 20,551,587,840 (the published total is 20,554,567,680).
NEOX_COMPUTED = 20_551_587_840


def _renamed_yaml(tmp_path: Path, drop_published: bool) -> Path:
    text = (model_configs_dir() / "gpt-neox-20b.yaml").read_text()
    text = text.replace("EleutherAI/gpt-neox-20b", "someone/my-model").replace("name: gpt-neox-20b", "name: my-model")
    if drop_published:
        text = "\n".join(line for line in text.splitlines() if not line.startswith("num_parameters"))
    out = tmp_path / "my-model.yaml"
    out.write_text(text)
    return out


def test_renamed_neox_keeps_its_published_count(tmp_path: Path) -> None:
    model = load_model_file(_renamed_yaml(tmp_path, drop_published=False))
    assert model.name == "my-model"
    count = model_parameters(model)
    assert count.parameters == 20_554_567_680 and count.source == "published num_parameters"


def test_renamed_neox_computed_count_comes_from_the_structure(tmp_path: Path) -> None:
    model = load_model_file(_renamed_yaml(tmp_path, drop_published=True))
    assert model.num_parameters is None
    assert computed_parameters(model) == NEOX_COMPUTED  # 27,199,... with a gated MLP chosen by name
    assert computed_parameters(get_builtin("gpt-neox-20b")) == NEOX_COMPUTED
    est = checkpoint_weights(model, "auto", "fp16")
    assert est.bytes == 2 * NEOX_COMPUTED  # fp16


def test_renamed_hf_config_folder_counts_the_same(tmp_path: Path) -> None:
    folder = tmp_path / "my-checkpoint"
    folder.mkdir()
    shutil.copy(FIXTURES / "EleutherAI--gpt-neox-20b.json", folder / "config.json")
    model = load_model_file(folder)
    assert model.name == "my-checkpoint"
    assert computed_parameters(model) == NEOX_COMPUTED


def test_gpt2_positions_follow_the_architecture_not_the_name(tmp_path: Path) -> None:
    gpt2 = get_builtin("gpt2")
    renamed = gpt2.replace(name="tiny-lm", aliases=[], num_parameters=None)
    # 124,439,808 published = wte 50257 x 768 + wpe 1024 x 768 + 12 x 7,087,872 (+ biases, not counted).
    assert computed_parameters(renamed) == computed_parameters(gpt2.replace(num_parameters=None))
    assert computed_parameters(renamed.replace(architecture="LlamaForCausalLM")) != computed_parameters(renamed)


@pytest.mark.parametrize(("data", "source", "expected"), [
    # A config.json: its folder (a fine-tune's _name_or_path often names the base model it came from).
    ({"_name_or_path": "meta-llama/Llama-3.1-8B"}, "/x/my-finetune/config.json", "my-finetune"),
    ({}, "/x/tuned-llama/config.json", "tuned-llama"),
    ({"_name_or_path": "/home/me/models/a"}, "/cache/models--org--Some-Model/snapshots/0123abc/config.json",
     "org/Some-Model"),
    ({"_name_or_path": "meta-llama/Llama-3.1-8B"}, "/config.json", "meta-llama/Llama-3.1-8B"),
    # Any other file: the config's _name_or_path, else the file's own name.
    ({"_name_or_path": "meta-llama/Llama-3.1-8B"}, "/x/y/llama.json", "meta-llama/Llama-3.1-8B"),
    ({"_name_or_path": "/home/me/models/my-llama/"}, "/x/y/llama.json", "my-llama"),
    ({"_name_or_path": "./ckpt/step-100"}, "/x/y/llama.json", "step-100"),
    ({"_name_or_path": ""}, "/x/y/llama-3.json", "llama-3"),
    ({}, "/x/y/llama-3.json", "llama-3"),
])
def test_hf_model_name(data: dict[str, str], source: str, expected: str) -> None:
    assert hf_model_name(data, source) == expected


def test_config_in_the_working_folder_is_named_after_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "qwen-finetune"
    folder.mkdir()
    data = json.loads((FIXTURES / "Qwen--Qwen2.5-7B.json").read_text())
    data.pop("_name_or_path", None)
    (folder / "config.json").write_text(json.dumps(data))
    monkeypatch.chdir(folder)
    assert load_model_file(Path("config.json")).name == "qwen-finetune"


def test_import_names_a_folder_after_it(tmp_path: Path) -> None:
    from kvcalc.catalog import import_to_yaml

    folder = tmp_path / "my-checkpoint"
    folder.mkdir()
    shutil.copy(FIXTURES / "EleutherAI--gpt-neox-20b.json", folder / "config.json")
    model, text = import_to_yaml(str(folder / "config.json"))
    assert model.name == "my-checkpoint" and text.startswith("name: my-checkpoint\n")
