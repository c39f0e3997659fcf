"""Issue 14, "Hardening, round two": one test (or a few) per class of hostile input that got
through before: wrong types read as counts, duplicate keys, unguarded files, raw control
characters, junk terminal widths, ASCII and closed streams, misleading exit codes, and work
that grew with layers instead of layer groups. Each test failed on the code before the fix."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kvcalc
from kvcalc.errors import DeviceError, InvalidConfigError, InvalidRequestError, KvcalcError
from kvcalc.estimate import estimate
from kvcalc.loader import (
    MAX_EXPANDED_CHARS,
    load_model_file,
    model_from_data,
    parse_json,
    parse_yaml,
    read_text_capped,
)
from kvcalc.models import LayerGroup, ModelConfig
from kvcalc.registry import get_builtin, load_model
from kvcalc.specs import FullAttention, SlidingWindowAttention
from tests.conftest import CliResult

Cli = Callable[..., CliResult]
REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO)}

BASE_YAML = """\
name: tiny-yaml
dtype: fp16
max_position_embeddings: 4096
num_attention_heads: 8
hidden_size: 64
num_parameters: 1000
layers:
  - repeat: 2
    pattern:
      - {kind: full, num_kv_heads: 8, head_dim: 8}
"""


def _yaml_with(old: str, new: str) -> str:
    assert old in BASE_YAML
    return BASE_YAML.replace(old, new)


# --- strict types: a bool or float is never a count ------------------------------------------

def test_base_yaml_is_valid() -> None:
    m = model_from_data(parse_yaml(BASE_YAML, "t.yaml"), "t.yaml")
    # 2 layers x K and V x 8 heads x 8 x 2 B = 512 B per token
    assert estimate(m, 1).total_bytes == 2 * 2 * 8 * 8 * 2


@pytest.mark.parametrize(("old", "new", "field"), [
    ("head_dim: 8}", "head_dim: true}", "head_dim"),
    ("num_kv_heads: 8,", "num_kv_heads: yes,", "num_kv_heads"),  # YAML 1.1: yes is True
    ("repeat: 2", "repeat: true", "repeat"),
    ("repeat: 2", "repeat: 2.0", "repeat"),
    ("num_parameters: 1000", "num_parameters: true", "num_parameters"),
    ("max_position_embeddings: 4096", "max_position_embeddings: 4096.0", "max_position_embeddings"),
    ("hidden_size: 64", "hidden_size: '64'", "hidden_size"),
    ("num_attention_heads: 8", "num_attention_heads: 8.5", "num_attention_heads"),
])
def test_yaml_counts_are_strict(old: str, new: str, field: str) -> None:
    """pydantic's lax mode read ``head_dim: true`` as 1 before kvcalc's own check ran."""
    with pytest.raises(InvalidConfigError, match=field) as info:
        model_from_data(parse_yaml(_yaml_with(old, new), "t.yaml"), "t.yaml")
    assert "t.yaml" in str(info.value)


def test_yaml_bool_field_is_strict_too() -> None:
    with pytest.raises(InvalidConfigError, match="tie_word_embeddings"):
        model_from_data(parse_yaml(BASE_YAML + "tie_word_embeddings: 'yes'\n", "t.yaml"), "t.yaml")


def test_state_elements_are_strict() -> None:
    text = BASE_YAML.replace("- {kind: full, num_kv_heads: 8, head_dim: 8}",
                             "- {kind: state, state_elements: {conv: true, ssm: 4096}}")
    with pytest.raises(InvalidConfigError, match="state_elements"):
        model_from_data(parse_yaml(text, "t.yaml"), "t.yaml")


def _int_leaves(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    if isinstance(data, dict):
        for k, v in data.items():
            out += _int_leaves(v, (*path, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _int_leaves(v, (*path, i))
    elif type(data) is int:
        out.append(path)
    return out


def _builtin_yaml_data() -> list[dict[str, Any]]:
    import yaml

    from kvcalc.registry import model_configs_dir

    return [yaml.safe_load(p.read_text()) for p in sorted(model_configs_dir().glob("*.yaml"))]


YAML_BASES = _builtin_yaml_data()


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(data=st.data(), bad=st.sampled_from([True, False, 1.0, 8.0, 2.5, float("inf"), float("nan"), "8", None]))
def test_every_numeric_field_of_every_builtin_config_refuses_bools_and_floats(data: st.DataObject, bad: Any) -> None:
    """The class, not the examples: any integer anywhere in a shipped config, replaced by a bool,
    a float, a numeric string (or None where it is required), is refused naming the file."""
    base = json.loads(json.dumps(data.draw(st.sampled_from(YAML_BASES))))
    leaves = _int_leaves(base)
    path = data.draw(st.sampled_from(leaves))
    target = base
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = bad
    try:
        model_from_data(base, "b.yaml")
    except InvalidConfigError as exc:
        assert str(exc).startswith("b.yaml: ")
        return
    # Only None in an optional field may pass: it means "not given", never a count of 0 or 1.
    assert bad is None, f"{path} = {bad!r} was accepted"


# --- the API: kvcalc's own errors for every bad argument --------------------------------------

LLAMA = get_builtin("llama-2-7b")


@pytest.mark.parametrize("kwargs", [
    {"kv_group_size": True}, {"kv_group_size": 8.0}, {"residual_length": 2.5}, {"residual_length": True},
    {"kv_group_size": "64"},
])
def test_quantized_cache_parameters_are_counts(kwargs: dict[str, Any]) -> None:
    """``kv_group_size=8.0`` used to return a float ``total_bytes``; ``True`` a group of one."""
    with pytest.raises(InvalidRequestError):
        estimate(LLAMA, 4096, kv_dtype="quanto-int4", **kwargs)
    assert isinstance(estimate(LLAMA, 4096, kv_dtype="quanto-int4", kv_group_size=64).total_bytes, int)


@pytest.mark.parametrize("model", [None, "llama-2-7b", 5, {"name": "x"}, LLAMA.to_dict()])
def test_estimate_needs_a_model_config(model: Any) -> None:
    """``estimate(None, 4096)`` and ``estimate("llama-2-7b", 4096)`` raised AttributeError."""
    with pytest.raises(InvalidRequestError, match="ModelConfig"):
        estimate(model, 4096)
    with pytest.raises(InvalidRequestError):
        kvcalc.bytes_per_token(model)
    with pytest.raises(InvalidRequestError):
        kvcalc.apply_overrides(model, layers=2)


def test_model_config_replace_raises_kvcalc_errors() -> None:
    """``ModelConfig.replace`` raised a plain ValueError (and TypeError for a typo); both are now
    ``InvalidConfigError``, still a ``ValueError`` for callers that caught one."""
    for changes in ({"num_attention_heads": True}, {"num_attention_heads": 0}, {"hidden_size": 4096.0},
                    {"name": ""}, {"num_attention_headz": 32}, {"dtype": "fp8"}):
        with pytest.raises(InvalidConfigError) as info:
            LLAMA.replace(**changes)
        assert isinstance(info.value, ValueError)
    with pytest.raises(InvalidConfigError):
        FullAttention(num_kv_heads=True, head_dim=128)
    with pytest.raises(InvalidConfigError):
        LayerGroup(pattern=[FullAttention(num_kv_heads=1, head_dim=1)], repeat=2.0)  # type: ignore[arg-type]


WRONG: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.floats(allow_nan=True), st.text(max_size=8), st.binary(max_size=4),
    st.integers(-(10**30), 10**30), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2),
                                                                                        st.integers(), max_size=1),
    st.sampled_from([8.0, 2.5, -1, 0, 10**40, float("inf"), object()]),
)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(arg=st.sampled_from(["model", "seq_len", "batch", "kv_dtype", "engine", "tp", "pp", "block_size",
                            "max_num_batched_tokens", "kv_group_size", "residual_length"]), value=WRONG)
def test_api_wrong_types_raise_kvcalc_errors(arg: str, value: Any) -> None:
    """Every argument of ``estimate``, given a wrong type or value: kvcalc's own error or an exact
    integer result, never AttributeError, TypeError or a float byte count."""
    kwargs: dict[str, Any] = {"model": LLAMA, "seq_len": 4096, "kv_dtype": "quanto-int4"
                              if arg in ("kv_group_size", "residual_length") else "auto"}
    kwargs[arg] = value
    try:
        est = estimate(**kwargs)
    except KvcalcError:
        return
    assert type(est.total_bytes) is int and type(est.per_gpu_bytes) is int


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(field=st.sampled_from(["max_position_embeddings", "num_attention_heads", "hidden_size",
                              "intermediate_size", "vocab_size", "num_parameters", "name", "dtype",
                              "tie_word_embeddings", "layers", "aliases"]), value=WRONG)
def test_replace_with_wrong_types(field: str, value: Any) -> None:
    try:
        m = LLAMA.replace(**{field: value})
    except KvcalcError:
        return
    except (TypeError, AttributeError) as exc:  # pragma: no cover - the failure this test hunts
        pytest.fail(f"replace({field}={value!r}) raised {type(exc).__name__}: {exc}")
    if field not in ("name", "aliases", "tie_word_embeddings"):
        assert value is None or type(value) is int, f"{field}={value!r} accepted"
    assert isinstance(m, ModelConfig)


@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(value=WRONG)
def test_load_model_wrong_types(value: Any) -> None:
    try:
        m = load_model(value)
    except KvcalcError:
        return
    assert isinstance(m, ModelConfig)


def test_load_model_empty_name_does_not_load_the_current_folder(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``load_model('')`` loaded ``./config.json`` (``Path('')`` is ``.``)."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    monkeypatch.chdir(tmp_path)
    for name in ("", "   "):
        with pytest.raises(InvalidRequestError, match="not empty"):
            load_model(name)


# --- duplicate keys --------------------------------------------------------------------------

def test_duplicate_yaml_keys_are_refused() -> None:
    """The last one used to win silently."""
    with pytest.raises(InvalidConfigError, match="duplicate key 'hidden_size' at line"):
        parse_yaml(BASE_YAML + "hidden_size: 128\n", "t.yaml")
    nested = BASE_YAML.replace("{kind: full, num_kv_heads: 8, head_dim: 8}",
                               "{kind: full, num_kv_heads: 8, head_dim: 8, num_kv_heads: 1}")
    with pytest.raises(InvalidConfigError, match="duplicate key 'num_kv_heads'"):
        parse_yaml(nested, "t.yaml")
    # The same key in two different mappings is fine, and so is a YAML merge key.
    parse_yaml("a: {x: 1}\nb: {x: 1}\nc: &c {y: 1}\nd: {<<: *c, z: 2}\n", "t.yaml")


def test_duplicate_json_keys_are_refused(tmp_path: Path) -> None:
    """A second ``num_key_value_heads: 1`` made the answer 32x smaller."""
    with pytest.raises(InvalidConfigError, match="duplicate key 'num_key_value_heads'"):
        parse_json('{"num_key_value_heads": 32, "num_key_value_heads": 1}', "c.json")
    with pytest.raises(InvalidConfigError, match="duplicate key 'b'"):
        parse_json('{"a": {"b": 1, "b": 2}}', "c.json")
    cfg = json.loads((REPO / "tests" / "fixtures" / "Qwen--Qwen3-8B.json").read_text())
    text = json.dumps(cfg)[:-1] + ', "num_key_value_heads": 1}'
    p = tmp_path / "config.json"
    p.write_text(text)
    with pytest.raises(InvalidConfigError, match="duplicate key"):
        load_model_file(p)


# --- unguarded reads -------------------------------------------------------------------------

def test_dev_zero_as_config_is_named_a_device(cli: Cli) -> None:
    """``/dev/zero`` as --config said "no such config file"."""
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    res = cli("estimate", "--config", "/dev/zero", "--seq-len", "8")
    assert res.exit_code == 1 and res.stdout == ""
    assert "is a device" in res.stderr and "no such" not in res.stderr


def test_missing_file_says_not_found(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigError, match="not found"):
        read_text_capped(tmp_path / "nope.log", "engine log file")


def test_one_anchor_aliased_a_thousand_times_is_refused_fast() -> None:
    """A 1 MiB string aliased 1,000 times is 1,000 nodes but 1 GiB of text (``kvcalc import``
    dumped it all); the scan counts characters too and stops at ``MAX_EXPANDED_CHARS``."""
    text = "name: x\na: &a " + "x" * (1 << 20) + "\naliases: [" + ", ".join(["*a"] * 1000) + "]\n"
    with pytest.raises(InvalidConfigError, match="characters of text"):
        parse_yaml(text, "bomb.yaml")
    # A file without aliases never reaches the budget (it is at most the 4 MiB file cap).
    assert MAX_EXPANDED_CHARS >= 2 * (4 << 20)


# --- exit codes and messages -------------------------------------------------------------------

def test_unknown_model_exits_2_as_the_readme_says(cli: Cli) -> None:
    readme = (REPO / "README.md").read_text()
    assert "exit 2 (usage: a flag value, an unknown name)" in readme
    res = cli("estimate", "llama-2-7", "--seq-len", "8")
    assert res.exit_code == 2 and "did you mean" in res.stderr


def test_missing_cuda_device_exits_1(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """README: a device problem exits 1 (it was 2, a usage error)."""
    from kvcalc.measure import device

    class NoCuda:
        class cuda:  # noqa: N801 - mimics torch.cuda
            @staticmethod
            def is_available() -> bool:
                return False

    monkeypatch.setattr(device, "import_torch", lambda: NoCuda)
    with pytest.raises(DeviceError):
        device.open_device("cuda")
    assert DeviceError("cuda", "x").exit_code == 1


def test_models_list_names_the_refused_word(cli: Cli) -> None:
    """``kvcalc models list`` said "unknown command 'models'"."""
    res = cli("models", "list")
    assert res.exit_code == 2 and res.stdout == ""
    assert "'list'" in res.stderr and "unknown command 'models'" not in res.stderr
    assert "show" in res.stderr


def test_help_wins_over_json(cli: Cli) -> None:
    """The contract: ``--help`` among any flags prints help and exits 0, ``--json`` included."""
    res = cli("estimate", "--help", "--json")
    assert res.exit_code == 0 and res.stdout.lstrip().startswith("Usage:") and res.stderr == ""


@pytest.mark.parametrize("argv", [
    ["verify", "llama-2-7b", "--seq-len", "8", "--max-memory", ""],
    ["simulate", "llama-2-7b", "--requests", "2", "--kv-budget", ""],
    ["sweep", "llama-2-7b", "--seq-len", "1k", "--gpu-memory", ""],
])
def test_empty_size_flags_are_refused(cli: Cli, argv: list[str]) -> None:
    """``--max-memory ''`` was ignored (read as "no limit")."""
    res = cli(*argv)
    assert res.exit_code == 2 and res.stdout == "" and res.stderr.startswith("Error:")


# --- early Ctrl-C ------------------------------------------------------------------------------

def test_ctrl_c_while_the_cli_loads_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A KeyboardInterrupt anywhere from the first line of ``main`` on, the imports included."""
    from kvcalc import cli as cli_module

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "_prepare_streams", interrupted)
    assert cli_module.main(["estimate", "llama-2-7b", "--seq-len", "8"]) == 130
    out, err = capsys.readouterr()
    assert out == "" and err == "Error: interrupted\n"


def test_import_kvcalc_runs_no_kvcalc_module() -> None:
    """``import kvcalc`` is lazy, so the CLI reaches its Ctrl-C handler within a millisecond or two of
    the interpreter starting; the public names still resolve (``kvcalc.estimate`` the function)."""
    code = ("import sys, kvcalc\n"
            "assert not [m for m in sys.modules if m.startswith('kvcalc.')], sorted(sys.modules)\n"
            "import kvcalc.cli\n"
            "from kvcalc.estimate import pp_partition\n"
            "assert callable(kvcalc.estimate) and kvcalc.estimate.__module__ == 'kvcalc.estimate'\n"
            "print(kvcalc.estimate(kvcalc.load_model('llama-2-7b'), 8).total_bytes)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(2 * 32 * 32 * 128 * 2 * 8)


def test_sigint_after_start_is_one_line() -> None:
    """A real SIGINT into a running ``python -m kvcalc`` (a bench that runs a while, stopped while
    it loads torch or while it measures): one Error: line and exit 130, never a traceback."""
    pytest.importorskip("torch")
    import time

    p = subprocess.Popen([sys.executable, "-m", "kvcalc", "bench", "--n", "2048", "--layers", "1", "--d-model", "64",
                          "--heads", "1", "--vocab", "64", "--repeats", "3"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, text=True)
    try:
        time.sleep(2)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=300)
    finally:
        p.kill()
    assert "Traceback" not in err
    if p.returncode != 0:  # 0: it had finished before the signal (a fast machine)
        assert p.returncode == 130 and err.strip().splitlines()[-1] == "Error: interrupted" and out == ""


# --- streams -----------------------------------------------------------------------------------

def test_closed_stdout_is_an_error_line() -> None:
    """``kvcalc models >&-``: Python sets sys.stdout to None; this was an AttributeError."""
    out = subprocess.run([sys.executable, "-m", "kvcalc", "models"], stderr=subprocess.PIPE, text=True, env=ENV,
                         timeout=60, preexec_fn=lambda: os.close(1))  # noqa: PLW1509 - the point of the test
    assert out.returncode == 1
    assert out.stderr == "Error: standard output is closed; nothing to write to\n"


def _ascii_run(*argv: str) -> subprocess.CompletedProcess[bytes]:
    env = {**ENV, "PYTHONIOENCODING": "ascii", "COLUMNS": "110"}
    return subprocess.run([sys.executable, "-m", "kvcalc", *argv], capture_output=True, env=env, timeout=120)


def test_ascii_stdout_estimate_and_sweep() -> None:
    """``PYTHONIOENCODING=ascii``: estimate, --explain and sweep raised UnicodeEncodeError."""
    for argv in (["estimate", "llama-2-7b", "--seq-len", "4096"],
                 ["estimate", "llama-2-7b", "--seq-len", "4096", "--explain"],
                 ["sweep", "llama-2-7b", "--seq-len", "1k,4k"]):
        res = _ascii_run(*argv)
        assert res.returncode == 0, res.stderr
        text = res.stdout.decode("ascii")  # nothing but ASCII reached the stream
        assert "2,147,483,648" in text or "sweep" in argv[0]
        assert b"Traceback" not in res.stderr


def test_ascii_stdout_json_with_a_non_ascii_name(tmp_path: Path) -> None:
    p = tmp_path / "m.yaml"
    p.write_text(BASE_YAML.replace("name: tiny-yaml", "name: modèle-ß"), encoding="utf-8")
    res = _ascii_run("estimate", "--config", str(p), "--seq-len", "4", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.decode("ascii"))["model"] == "modèle-ß"  # the same value, escaped


# --- widths ------------------------------------------------------------------------------------

@pytest.mark.parametrize("columns", ["abc", "", "0", "-1", "9" * 5000, "\u0663\u0663"])
@pytest.mark.parametrize("argv", [
    ["gpus"], ["models"], ["plan", "llama-3-8b", "--gpu", "h100"],
    ["sweep", "llama-2-7b", "--seq-len", "1k,2k"],
    ["simulate", "llama-2-7b", "--requests", "4"],
    ["verify", "llama-2-7b", "--seq-len", "8"],
    ["check-log", str(REPO / "tests" / "fixtures" / "logs" / "vllm_v0_llama3_8b_a100_40gb.log")],
    ["estimate", "llama-2-7b", "--seq-len", "8"],
])
def test_junk_columns_never_silent_nor_crash(cli: Cli, monkeypatch: pytest.MonkeyPatch, columns: str,
                                             argv: list[str]) -> None:
    """``COLUMNS=abc``/``''`` crashed plan, sweep and gpus; ``0``/``-1`` made most commands
    exit 0 printing nothing."""
    monkeypatch.setenv("COLUMNS", columns)
    res = cli(*argv)
    assert res.exit_code == 0, res.stderr
    assert len(res.stdout.strip().splitlines()) >= 3
    assert "internal error" not in res.stderr


def test_width_reader_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    from kvcalc.cli.term import DEFAULT_PIPED_WIDTH, MIN_WIDTH, columns_from_env, layout_width

    for junk in ("abc", "", "0", "-1", "+80", "8e1", "9" * 5000, "\u0663"):
        monkeypatch.setenv("COLUMNS", junk)
        assert columns_from_env(DEFAULT_PIPED_WIDTH) == DEFAULT_PIPED_WIDTH
    monkeypatch.setenv("COLUMNS", "3")
    assert columns_from_env(110) == MIN_WIDTH
    monkeypatch.setenv("COLUMNS", "132")
    assert layout_width(io.StringIO()) == 132


def test_numbers_are_never_cut_in_rich_tables(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """``verify ... | cat`` cut byte counts to "21,474,836,4…". Every number in the table equals
    the JSON result's, digit for digit, at any width."""
    data = cli("verify", "llama-2-7b", "--seq-len", "8", "--json").json()
    for columns in ("20", "40", "80"):
        monkeypatch.setenv("COLUMNS", columns)
        res = cli("verify", "llama-2-7b", "--seq-len", "8")
        assert res.exit_code == 0
        assert "…" not in res.stdout
        for key in ("predicted_bytes", "tensor_bytes", "measured_bytes", "expected_bytes"):
            assert f"{data[key]:,}" in res.stdout, (columns, key)


def test_number_safe_console_keeps_long_numbers(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from rich.table import Table

    from kvcalc.cli.output import stdout_console

    monkeypatch.setenv("COLUMNS", "30")
    table = Table(title="t")
    table.add_column("name")
    table.add_column("bytes", justify="right")
    table.add_row("a rather long description that may wrap", f"{21_474_836_480:,}")
    stdout_console().print(table)
    out = capsys.readouterr().out
    assert "21,474,836,480" in out and "…" not in out


# --- control characters ----------------------------------------------------------------------

def test_escape_helper() -> None:
    from kvcalc.cli.term import escape

    assert escape("plain ß text") == "plain ß text"
    assert escape("a\x1b[2Jb\x07c\u202ed") == "a\\x1b[2Jb\\x07c\\u202ed"
    assert "\x1b" not in escape("\x1b" * 3)


def test_invalid_config_with_control_characters_in_its_name(cli: Cli, tmp_path: Path) -> None:
    """A file named with ``\\x1b[2J`` or ``\\x07`` that exists and is not a valid config was echoed raw."""
    p = tmp_path / "evil\x1b[2J\x07.yaml"
    p.write_text("name: [unclosed\n")
    res = cli("estimate", "--config", str(p), "--seq-len", "8")
    assert res.exit_code == 1 and res.stdout == ""
    assert "\x1b" not in res.stderr and "\x07" not in res.stderr and "\\x1b[2J" in res.stderr


def test_wrote_lines_are_escaped(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "out\x1b[2J\x07.yaml"
    res = cli("import", str(REPO / "tests" / "fixtures" / "Qwen--Qwen3-8B.json"), "-o", str(out))
    assert res.exit_code == 0 and out.is_file()
    assert "\x1b" not in res.stderr and "\x07" not in res.stderr
    assert "Wrote " in res.stderr and "\\x1b[2J\\x07" in res.stderr


def test_simulate_csv_path_is_escaped(cli: Cli, tmp_path: Path) -> None:
    csv = tmp_path / "lens\x1b[2J.csv"
    csv.write_text("100\n200\n")
    res = cli("simulate", "llama-2-7b", "--requests", "2", "--prompt-len", f"csv:{csv}", "--output-len", "10")
    assert res.exit_code == 0, res.stderr
    assert "\x1b" not in res.stdout and "\\x1b[2J" in res.stdout


def test_check_log_copies_log_text_escaped(cli: Cli, tmp_path: Path) -> None:
    """A log line ``model='\\x1b[2J...'`` was copied to stdout raw."""
    src = (REPO / "tests" / "fixtures" / "logs" / "vllm_v0_llama3_8b_a100_40gb.log").read_text()
    log = tmp_path / "evil.log"
    log.write_text("INFO model='\x1b[2Jevil\x07' dtype=bfloat16\n" + src)
    res = cli("check-log", str(log))
    assert "\x1b" not in res.stdout + res.stderr and "\x07" not in res.stdout + res.stderr


# --- outputs refuse FIFOs and devices -------------------------------------------------------

def test_import_to_a_fifo_is_refused_without_blocking(cli: Cli, tmp_path: Path) -> None:
    """``import -o FIFO`` blocked forever."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    from fuzz_inputs import time_bound

    with time_bound(20):
        res = cli("import", str(REPO / "tests" / "fixtures" / "Qwen--Qwen3-8B.json"), "-o", str(fifo))
    assert res.exit_code == 2 and "FIFO" in res.stderr and res.stdout == ""


@pytest.mark.parametrize("argv", [
    ["sweep", "llama-2-7b", "--seq-len", "1k", "--plot", "/dev/null"],
    ["bench", "--n", "4", "--layers", "1", "--d-model", "8", "--heads", "1", "--vocab", "8", "--plot", "/dev/null"],
])
def test_plots_refuse_devices(cli: Cli, argv: list[str]) -> None:
    if not os.path.exists("/dev/null"):
        pytest.skip("no /dev/null")
    res = cli(*argv)
    assert res.exit_code == 2 and "device" in res.stderr and res.stdout == ""


# --- work per layer group, not per layer --------------------------------------------------------

def _big() -> ModelConfig:
    full = FullAttention(num_kv_heads=8, head_dim=128)
    sliding = SlidingWindowAttention(num_kv_heads=8, head_dim=128, window=4096)
    return ModelConfig(name="big", dtype="bf16", max_position_embeddings=131072, num_attention_heads=32,
                       hidden_size=4096, layers=[LayerGroup(pattern=[full], repeat=500_000),
                                                 LayerGroup(pattern=[sliding, full], repeat=250_000)])


def test_a_million_layers_in_two_groups_are_never_expanded() -> None:
    """Work must scale with distinct layer groups: estimate, simulate and verify's planning never
    build the per-layer tuple (``layer_specs``) of a 10**6-layer model. The numbers, by hand:
    750,000 full layers x 2 x 8 x 128 x 2 B x 8,192 tokens + 250,000 sliding layers x 4,096 B x 4,096."""
    from kvcalc.engines import get_policy
    from kvcalc.engines.base import Workload
    from kvcalc.measure.verify import plan_groups
    from kvcalc.show.simulate import parse_dist, simulate

    m = _big()
    est = estimate(m, 8192, pp=7)
    assert est.num_layers == 10**6
    assert est.total_bytes == 750_000 * 4096 * 8192 + 250_000 * 4096 * 4096
    simulate(m, requests=1000, prompt_len=parse_dist("uniform:100,1000", "p"),
             output_len=parse_dist("uniform:10,500", "o"))
    groups = plan_groups(m, get_policy("neutral"), "auto", Workload(seq_len=8, batch=1), 1)
    assert sum(g.layers for g in groups) == 10**6
    assert "layer_specs" not in m.__dict__, "a command expanded 10**6 layers"


def _planned(model: ModelConfig, engine: str, **kw: Any) -> Any:
    from kvcalc.planner.plan import PlanRequest, plan

    return plan(PlanRequest(model=model, engine=engine, max_model_len=4096, pp=2, users=10, **kw))


@pytest.mark.parametrize("engine", ["hf", "vllm", "vllm@0.33", "vllm@0.20", "sglang", "llama.cpp", "trtllm"])
def test_plan_on_a_million_layers_never_expands_them(engine: str) -> None:
    """``plan`` (PP 2, --users 10, so the TP search too) on the 10**6-layer model, with a KV budget
    and from a GPU (the budget interval's extra pools, the served-architecture check, the weights):
    the work is per layer group. By hand, the 10 users' requests of 4,096 tokens on the first stage
    (layers 0..499,999: all full, 8 KV heads x 128 x 2 (K, V) x 2 B = 4,096 B a token a layer) take
    10 x 500,000 x 4,096 x 4,096 B: ``per_gpu_bytes`` of the engines that keep every token of a
    sliding layer's window unrounded; vLLM's second stage, whose sliding layers hold their window
    plus the tokens in flight in whole blocks, takes more."""
    from kvcalc.planner.plan import planner_engines

    assert set(planner_engines()) == {"hf", "vllm", "sglang", "llama.cpp", "trtllm", "ollama"}
    m = _big()
    p = _planned(m, engine, kv_budget_bytes=1 << 50, solve_tp=True)
    assert p.fits and p.tp_options
    m2 = _big().replace(num_parameters=8 * 10**9)
    q = _planned(m2, engine, gpu="h100:8")
    assert q.weights_bytes == 16 * 10**9 and q.gpu_count == 8
    assert "layer_specs" not in m.__dict__ and "layer_specs" not in m2.__dict__, "plan expanded 10**6 layers"
    if engine in ("sglang", "llama.cpp", "trtllm"):
        assert p.per_gpu_bytes == 10 * 500_000 * 4096 * 4096
    elif engine.startswith("vllm"):
        assert p.per_gpu_bytes > 10 * 500_000 * 4096 * 4096


@pytest.mark.parametrize(("engine", "flags"), [
    ("vllm", {"speculative_config": '{"method": "eagle3", "num_speculative_tokens": 2}'}),
    ("vllm@0.20", {"speculative_config": '{"method": "deepseek_mtp", "num_speculative_tokens": 1}'}),
    ("vllm", {"tp": 2, "dcp": 2}),
    ("sglang", {"speculative_algorithm": "EAGLE", "draft_layers": 3}),
])
def test_plan_with_a_draft_or_dcp_on_a_million_layers_never_expands_them(engine: str, flags: dict[str, Any]) -> None:
    """A speculative draft appends layers shaped like the target's (a target of two groups of alike
    layers: 10**6 + d layers), and DCP checks the kinds of layers: both per layer group."""
    full = FullAttention(num_kv_heads=8, head_dim=128)
    m = ModelConfig(name="big-uniform", dtype="bf16", max_position_embeddings=131072, num_attention_heads=32,
                    hidden_size=4096, layers=[LayerGroup(pattern=[full], repeat=500_000),
                                              LayerGroup(pattern=[full], repeat=500_000)])
    p = _planned(m, engine, kv_budget_bytes=1 << 50, **flags)
    assert "layer_specs" not in m.__dict__, "plan expanded 10**6 layers"
    d = p.draft_layers
    assert d == {"eagle3": 1, "deepseek_mtp": 1, "EAGLE": 3}.get(p.speculative_method or "", 0)
    if d:
        assert f"planned as {10**6 + d:,} layers" in " ".join(p.notes)
    # 10 users on the larger PP stage: 500,000 + cdiv(d, 2) layers (pp_partition gives the odd layer
    # to the first stage); a DCP rank holds cdiv(4,096, 2) tokens of each, TP 2 halves the KV heads.
    tokens, heads = (2048, 4) if flags.get("dcp") else (4096, 8)
    layers = 500_000 + (d + 1) // 2
    assert p.per_gpu_bytes == 10 * layers * heads * 128 * 2 * 2 * tokens


def test_uniform_lengths_are_randint_draw_for_draw() -> None:
    from kvcalc.show.simulate import _uniform_ints

    for seed, lo, hi in ((0, 100, 1000), (7, 1, 1), (3, 10, 500), (9, 5, 2**40)):
        a, b = random.Random(seed), random.Random(seed)
        assert _uniform_ints(a, lo, hi, 5000) == [b.randint(lo, hi) for _ in range(5000)]
        assert a.random() == b.random()  # the generator is left in the same state


def test_slow_by_nature_is_said_up_front() -> None:
    """``bench --n 16384 --heads 1`` ran for minutes without a word. The count, by hand, for one
    layer, d = 8, f = 32, N = 2: steps of 1 and 2 tokens = 3 token passes x 2 x (4 x 64 + 2 x 8 x 32)
    = 3 x 1,536 = 4,608, plus attention 4 x 8 x (1 + 4) = 160: 4,768."""
    from kvcalc.measure.transformers_source import attention_flops
    from kvcalc.show.bench import BenchConfig, slow_warning, uncached_flops

    assert uncached_flops(BenchConfig(layers=1, d_model=8, heads=1, n_values=(2,))) == 4_768
    assert slow_warning(BenchConfig()) is None
    warning = slow_warning(BenchConfig(heads=1, n_values=(16384,)))
    assert warning is not None and "slow by nature" in warning
    # 2 x 100,000^2 x 32 heads x 128 x 1 layer
    assert attention_flops({"num_attention_heads": 32, "head_dim": 128}, 1, 100_000, 1) == 2 * 10**10 * 4096


@pytest.mark.parametrize("chunk", [4, 7, 1024])
def test_chunked_prefill_leaves_the_same_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """``verify --source transformers --cache dynamic`` feeds a long prompt in chunks (Ctrl-C is
    honoured between them); the cache transformers ends with is the same as from one call: the
    Gemma-2-like figures of test_verify_transformers (168,960 B held, 172,032 B of storage)."""
    pytest.importorskip("transformers")
    from kvcalc.measure import transformers_source
    from tests.test_verify_transformers import GEMMA2_LIKE, _write

    monkeypatch.setattr(transformers_source, "PREFILL_CHUNK", chunk)
    ref = _write(tmp_path, GEMMA2_LIKE)
    dynamic = transformers_source.verify_transformers(ref, 40, 2, cache="dynamic")
    assert dynamic.ok and dynamic.measured_bytes == dynamic.predicted_bytes == 168_960
    assert dynamic.kinds[0].shapes == [[2, 2, 15, 32], [2, 2, 15, 32]]
    assert dynamic.storage_bytes == 172_032
