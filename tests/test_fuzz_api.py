"""Property tests over the Python API: exact integers at any scale, JSON that never rounds
through floats, limits that name themselves, and only named ``KvcalcError`` subclasses for bad
input (never a raw ValueError/TypeError/KeyError). ``KVCALC_FUZZ_EXAMPLES=N`` raises the
example count of each property here too."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kvcalc
from kvcalc.engines import engine_names
from kvcalc.errors import KvcalcError
from kvcalc.estimate import MAX_BATCH, MAX_LAYERS, MAX_TOKENS, apply_overrides, estimate
from kvcalc.loader import model_from_data, parse_json, parse_yaml
from kvcalc.models import ModelConfig
from kvcalc.registry import builtin_names, get_builtin, load_model
from tests.conftest import CliResult

N = int(os.environ.get("KVCALC_FUZZ_EXAMPLES", "0") or "0")
FAST = settings(max_examples=min(N, 2000) if N else 60, deadline=None, database=None,
                suppress_health_check=list(HealthCheck), derandomize=not N)
"""CI: the same 60 cases per property every run; KVCALC_FUZZ_EXAMPLES=N: N (at most 2,000) random ones."""

LLAMA2_7B_BYTES_PER_TOKEN = 2 * 32 * 32 * 128 * 2
"""K and V x 32 layers x 32 KV heads x head_dim 128 x 2 bytes (fp16) = 524,288."""

NASTY: st.SearchStrategy[Any] = st.one_of(
    st.integers(-(10**40), 10**40), st.sampled_from([0, -1, 10**12 + 1, 10**30, True, False]),
    st.sampled_from([8.0, 2.5, 64.0, -0.0, 1e300]),  # a float is never a count, even a whole one (issue 14)
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), st.none(),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _ints_only(d: Any, path: str = "") -> None:
    """Every *_bytes/*_tokens/*_blocks value in a result dict is an int (never a float)."""
    if isinstance(d, dict):
        for k, v in d.items():
            if isinstance(k, str) and k.endswith(("_bytes", "_tokens", "_blocks")):
                assert v is None or (isinstance(v, int) and not isinstance(v, bool)), (path + k, v)
            _ints_only(v, f"{path}{k}.")
    elif isinstance(d, list):
        for v in d:
            _ints_only(v, path)


@FAST
@given(name=st.sampled_from(builtin_names()), seq_len=st.integers(1, MAX_TOKENS),
       batch=st.integers(1, MAX_BATCH), kv_dtype=st.sampled_from(["auto", "fp16", "fp8", "int4", "q4_0"]),
       engine=st.sampled_from(engine_names()))
def test_estimate_stays_exact_at_any_scale(name: str, seq_len: int, batch: int, kv_dtype: str, engine: str) -> None:
    model = get_builtin(name)
    try:
        est = estimate(model, seq_len, batch, kv_dtype, engine=engine)
    except KvcalcError:
        return  # e.g. a dtype or engine this model cannot use: a named refusal is fine
    d = est.to_dict()
    _ints_only(d)
    assert est.total_bytes == sum(g.total_bytes for g in est.layers)
    assert json.loads(json.dumps(d)) == d  # the JSON contract: a lossless round trip


@FAST
@given(seq_len=st.integers(1, MAX_TOKENS), batch=st.integers(1, MAX_BATCH))
def test_json_output_is_exact_for_huge_requests(cli: Callable[..., CliResult], seq_len: int, batch: int) -> None:
    """``--json`` prints the exact integer: 524,288 x seq_len x batch for llama-2-7b (fp16, all
    layers full attention), e.g. 524,288 x 10**12 x 10**9 = 524,288 x 10**21, far past 2**53."""
    res = cli("estimate", "llama-2-7b", "--seq-len", str(seq_len), "--batch", str(batch), "--json")
    assert res.exit_code == 0, res.stderr
    total = LLAMA2_7B_BYTES_PER_TOKEN * seq_len * batch
    data = json.loads(res.stdout)
    assert data["total_bytes"] == total and isinstance(data["total_bytes"], int)
    assert f'"total_bytes": {total}' in res.stdout  # digit for digit, no exponent
    assert data == estimate(get_builtin("llama-2-7b"), seq_len, batch).to_dict()


def test_limits_name_themselves(cli: Callable[..., CliResult]) -> None:
    """MAX_TOKENS = 10**12 tokens and MAX_BATCH = 10**9 are accepted; one more is refused with the
    limit in the message; MAX_LAYERS = 10**6 likewise for the --layers what-if."""
    model = get_builtin("llama-2-7b")
    assert estimate(model, MAX_TOKENS).total_bytes == LLAMA2_7B_BYTES_PER_TOKEN * 10**12
    for seq_len, batch, needle in ((MAX_TOKENS + 1, 1, "1,000,000,000,000"),
                                   (8, MAX_BATCH + 1, "1,000,000,000")):
        with pytest.raises(kvcalc.InvalidRequestError, match=needle):
            estimate(model, seq_len, batch)
    with pytest.raises(kvcalc.InvalidRequestError, match="1,000,000"):
        apply_overrides(model, layers=MAX_LAYERS + 1)
    res = cli("estimate", "llama-2-7b", "--seq-len", str(10**12 + 1))
    assert res.exit_code == 2 and res.stdout == "" and "1,000,000,000,000" in res.stderr


@pytest.mark.parametrize("kwargs", [{"kv_dtype": None}, {"kv_dtype": 5}, {"engine": 0}, {"engine": None}],
                         ids=["kv_dtype-None", "kv_dtype-5", "engine-0", "engine-None"])
def test_estimate_non_str_names_raise_named_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(KvcalcError):
        estimate(get_builtin("llama-2-7b"), 8, 1, **kwargs)


TEXT = st.text(max_size=12) | st.sampled_from(["auto", "fp8", "vllm", "neutral", ""])


QUANT = st.sampled_from(["quanto-int4", "hqq-int3", "hqq-int8"])


@FAST
@given(seq_len=NASTY, batch=NASTY, kv_dtype=TEXT | NASTY | QUANT, engine=TEXT | NASTY, tp=NASTY, pp=NASTY,
       block_size=NASTY, kv_group_size=NASTY, residual_length=NASTY, model=st.sampled_from(["llama-2-7b"]) | NASTY)
def test_estimate_bad_arguments_raise_named_errors(seq_len: Any, batch: Any, kv_dtype: Any, engine: Any,
                                                   tp: Any, pp: Any, block_size: Any, kv_group_size: Any,
                                                   residual_length: Any, model: Any) -> None:
    """Every argument, the model and the quantized-cache ones included: a named error or an exact
    integer result (``kv_group_size=8.0`` used to give a float ``total_bytes``)."""
    m = get_builtin(model) if model == "llama-2-7b" else model
    try:
        est = estimate(m, seq_len, batch, kv_dtype, engine=engine, tp=tp, pp=pp, block_size=block_size,
                       kv_group_size=kv_group_size, residual_length=residual_length)
    except KvcalcError:
        return
    assert type(est.total_bytes) is int and type(est.per_gpu_bytes) is int


@FAST
@given(layers=NASTY, kv_heads=NASTY, head_dim=NASTY)
def test_overrides_raise_named_errors(layers: Any, kv_heads: Any, head_dim: Any) -> None:
    try:
        m = apply_overrides(get_builtin("mistral-7b-v0.1"), layers=layers, kv_heads=kv_heads, head_dim=head_dim)
    except KvcalcError:
        return
    assert isinstance(m, ModelConfig)


def test_load_model_name_too_long() -> None:
    """A 5,000-character name: Path.exists() raises OSError (ENAMETOOLONG), not False; the
    fuzz found it escaping registry.load_model (fixed there: it is an unknown name)."""
    with pytest.raises(KvcalcError):
        load_model("x" * 5000)


@FAST
@given(name=st.text(max_size=40) | st.sampled_from(["", ".", "/", "..", "~", "a/b", "a\x00b", "/dev/null"]))
def test_load_model_any_string(name: str) -> None:
    try:
        m = load_model(name)
    except KvcalcError:
        return
    assert isinstance(m, ModelConfig)


def _bases() -> list[dict[str, Any]]:
    import yaml

    from kvcalc.registry import model_configs_dir

    return [yaml.safe_load(p.read_text()) for p in sorted(model_configs_dir().glob("*.yaml"))[:8]]


BASES = _bases()
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats() | st.text(max_size=10),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=6,
)


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(draw(st.sampled_from(BASES))))
    for _ in range(draw(st.integers(1, 3))):
        target = data
        if draw(st.booleans()) and isinstance(data.get("layers"), list) and data["layers"]:
            group = data["layers"][0]
            pattern = group.get("pattern") if isinstance(group, dict) else None
            target = draw(st.sampled_from([group, *(pattern if isinstance(pattern, list) else [])]))
        if not isinstance(target, dict):
            break
        keys = sorted(target)
        op = draw(st.sampled_from(["drop", "retype", "add", "numeric"]))
        numeric = [k for k in keys if type(target[k]) is int]
        if op == "numeric" and numeric:
            # A bool, float or numeric string in a count field: always refused (issue 14).
            target[draw(st.sampled_from(numeric))] = draw(st.sampled_from([True, False, 8.0, 2.5, "8", -1, 0, 10**30]))
        elif op == "drop" and keys:
            target.pop(draw(st.sampled_from(keys)))
        elif op == "retype" and keys:
            target[draw(st.sampled_from(keys))] = draw(VALUES)
        else:
            target[draw(st.text(max_size=8))] = draw(VALUES)
    return data


@FAST
@given(data=mutated())
def test_model_from_mutated_data(data: dict[str, Any]) -> None:
    """Dropped, retyped or extra keys give InvalidConfigError naming the source, or a valid model."""
    try:
        m = model_from_data(data, "fuzz.yaml")
    except kvcalc.InvalidConfigError as exc:
        assert str(exc).startswith("fuzz.yaml: ")
        return
    except KvcalcError:
        return
    assert isinstance(m, ModelConfig)
    est = estimate(m, 1024)
    assert isinstance(est.total_bytes, int)


@FAST
@given(text=st.text(max_size=200) | st.from_regex(r"[\[\]{}:&*!,\- a-z0-9\n]{0,80}", fullmatch=True))
def test_parsers_raise_only_invalid_config(text: str) -> None:
    for parse in (parse_yaml, parse_json):
        try:
            parse(text, "f")
        except kvcalc.InvalidConfigError:
            pass
