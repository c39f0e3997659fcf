"""The engine layer's contracts: one registry and alias table, engine versions, one rank
layout, no silent zero in a layer kind, no engine-name branches below the CLI."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from kvcalc import specs as specs_mod
from kvcalc.engines import ALIASES, canonical_engine, engine_names, get_engine
from kvcalc.estimate import estimate
from kvcalc.layout import RankLayout
from kvcalc.registry import get_builtin


def test_one_alias_table_for_every_command() -> None:
    for alias, name in ALIASES.items():
        assert canonical_engine(alias) == name
        assert estimate(get_builtin("llama-2-7b"), 16, engine=alias).engine == name


REQUIRED = ("bytes_per_token", "fixed_bytes", "fixed_layer_bytes", "tokens_held", "shard", "describe",
            "formula_terms", "grows")


def _kinds() -> list[type[specs_mod.Spec]]:
    out, todo = [], list(specs_mod.Spec.__subclasses__())
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo += cls.__subclasses__()
    return out


@pytest.mark.parametrize("kind", _kinds(), ids=lambda k: k.__name__)
def test_every_kind_states_its_bytes(kind: type[specs_mod.Spec]) -> None:
    """A layer kind that forgets one of the byte methods fails here: the base class has no
    defaults (its methods raise), so a kind must state each one itself or inherit it from a kind."""
    for name in REQUIRED:
        owner = next(c for c in kind.__mro__ if name in c.__dict__)
        assert owner is not specs_mod.Spec, f"{kind.__name__} does not define {name}"
    assert kind in specs_mod.SPEC_KINDS.values(), f"{kind.__name__} is not in SPEC_KINDS"


def test_base_spec_has_no_silent_zero() -> None:
    base = specs_mod.Spec(kind="x")
    from kvcalc.dtypes import get_dtype

    for call in (lambda: base.bytes_per_token(get_dtype("fp16")), lambda: base.fixed_bytes(get_dtype("fp16")),
                 lambda: base.tokens_held(1), lambda: base.grows):
        with pytest.raises(NotImplementedError):
            call()


def test_registry_and_versions() -> None:
    assert "trtllm" in engine_names()
    assert get_engine("vllm@0.19").name == "vllm"
    with pytest.raises(Exception, match="vllm version"):
        get_engine("vllm@9.9")


def test_rank_layout_is_per_group() -> None:
    # 10**6 layers from two groups: two runs, counts by arithmetic; stages split as vLLM does.
    m = get_builtin("llama-2-7b")
    full = m.layer_specs[0]
    big = m.with_layer_specs([full] * 10)
    layers = [g.pattern[0] for g in big.layers or []]
    assert len(layers) == 1
    lay = RankLayout(big, tp=2, pp=3)
    assert [st.layers for st in lay.stages] == [range(0, 3), range(3, 7), range(7, 10)]
    assert [n for st in lay.stages for _, n in st.counts] == [3, 4, 3]
    assert next(iter(lay.counts)).num_kv_heads == 16  # type: ignore[attr-defined]


def test_no_engine_name_branches_below_the_cli() -> None:
    """No module below the CLI compares an engine's name (they ask the engine)."""
    import kvcalc

    root = Path(inspect.getfile(kvcalc)).parent
    names = [*engine_names(), *(a for a in ALIASES if a != "static")]  # "static": verify's --cache mode
    offenders = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("cli/", "engines/")):
            continue
        for line in path.read_text().splitlines():
            code = line.strip()
            for n in names:
                # A comparison (==, !=, "in (...)" in a condition), not a loop over names.
                forms = (f'== "{n}"', f'!= "{n}"', f'in ("{n}"')
                if any(f in code for f in forms) and not code.startswith("for "):
                    offenders.append(f"{rel}: {code}")
    assert offenders == []


@pytest.mark.parametrize(("architecture", "slides"), [
    ("Gemma2ForCausalLM", True), ("Gemma3ForCausalLM", True), ("GptOssForCausalLM", True),
    ("Cohere2ForCausalLM", True), ("Llama4ForConditionalGeneration", True),
    ("MistralForCausalLM", False), ("LlamaForCausalLM", False), ("Qwen2ForCausalLM", False),
    ("Phi3ForCausalLM", False), (None, True),
])
def test_llama_cpp_window_rule_per_architecture(architecture: str | None, slides: bool) -> None:
    # src/models/<arch>.cpp in llama-cpp-python 0.3.36's llama.cpp: only the architectures whose
    # load_arch_hparams read LLM_KV_ATTENTION_SLIDING_WINDOW slide (phi3 reads it and turns it off);
    # a model without an architecture keeps the windows it declares.
    m = get_builtin("mistral-7b-v0.1").replace(architecture=architecture)
    held = {g.tokens_held for g in estimate(m, 32768, engine="llama.cpp").layers}
    assert held == ({4608} if slides else {32768})


def test_engines_import_nothing_from_the_planner() -> None:
    """The arrow points one way: the planner asks the engines, engines never import the planner."""
    import kvcalc.engines as engines_pkg

    root = Path(inspect.getfile(engines_pkg)).parent
    offenders = [p.name for p in root.glob("*.py") if "kvcalc.planner" in p.read_text()]
    assert offenders == []
