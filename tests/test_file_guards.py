"""One test per file guard in ``kvcalc.loader``: size cap before reading, binary, non-UTF-8,
YAML alias bombs, Python object tags, nesting depth, directories, missing and unreadable
files, FIFOs, over-long numbers, and physically absurd layer counts. Each names its limit,
and the boundary pairs show "N is accepted, N+1 is refused"."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from fuzz_inputs import ALIAS_BOMB, MARKER, PYTHON_TAG, PYTHON_TAG_NESTED, deep_json, deep_yaml

from kvcalc.errors import InvalidConfigError
from kvcalc.estimate import MAX_LAYERS
from kvcalc.loader import (
    MAX_ALIASES,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_NODES,
    check_layer_counts,
    load_model_file,
    parse_json,
    parse_yaml,
    read_text_capped,
)
from tests.conftest import FIXTURES


def _refused(path: Path, *needles: str) -> str:
    with pytest.raises(InvalidConfigError) as info:
        load_model_file(path)
    message = str(info.value)
    assert str(path) in message
    for needle in needles:
        assert needle in message, message
    return message


# --- size cap -----------------------------------------------------------------------------

def test_size_cap_boundary(tmp_path: Path) -> None:
    """MAX_FILE_BYTES = 4 MiB = 4,194,304 bytes is read; one byte more is refused, naming the limit."""
    assert MAX_FILE_BYTES == 4 * 1024 * 1024
    at_cap = tmp_path / "at_cap.yaml"
    at_cap.write_bytes(b"#" * (MAX_FILE_BYTES - 1) + b"\n")
    assert len(read_text_capped(at_cap)) == MAX_FILE_BYTES
    over = tmp_path / "over.yaml"
    over.write_bytes(b"#" * MAX_FILE_BYTES + b"\n")
    _refused(over, "4,194,305 bytes", "limit", "4,194,304 bytes")


def test_size_cap_applies_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1 TiB sparse file is refused from its size alone: the file is never opened."""
    huge = tmp_path / "huge.json"
    with huge.open("wb") as fh:
        fh.truncate(1 << 40)

    def no_open(*args: object, **kwargs: object) -> None:
        raise AssertionError("the capped reader opened a file over the cap")

    monkeypatch.setattr(Path, "open", no_open)
    started = time.monotonic()
    _refused(huge, "1,099,511,627,776 bytes", "4,194,304")
    assert time.monotonic() - started < 1.0


# --- content --------------------------------------------------------------------------------

def test_binary_garbage(tmp_path: Path) -> None:
    p = tmp_path / "garbage.yaml"
    p.write_bytes(bytes(range(256)) * 16)
    _refused(p, "binary file")


def test_non_utf8(tmp_path: Path) -> None:
    p = tmp_path / "latin1.yaml"
    p.write_bytes("name: caf\xe9\n".encode("latin-1"))  # 0xE9 at offset 9 is not UTF-8
    _refused(p, "not UTF-8", "byte 9")


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    """9 levels of 9-way aliases: 81 aliases (under MAX_ALIASES) that would expand to 9**9
    strings; the event scan counts the expansion and stops past MAX_NODES."""
    p = tmp_path / "bomb.yaml"
    p.write_text(ALIAS_BOMB)
    started = time.monotonic()
    _refused(p, f"more than {MAX_NODES:,} values", "aliases")
    assert time.monotonic() - started < 2.0


def test_alias_count_boundary() -> None:
    """MAX_ALIASES (1,000) aliases of a scalar parse; 1,001 are refused."""
    def doc(n: int) -> str:
        return "a: &x 1\nb: [" + ", ".join(["*x"] * n) + "]\n"

    assert len(parse_yaml(doc(MAX_ALIASES), "f.yaml")["b"]) == MAX_ALIASES
    with pytest.raises(InvalidConfigError, match=f"more than {MAX_ALIASES} YAML aliases"):
        parse_yaml(doc(MAX_ALIASES + 1), "f.yaml")


def test_alias_expansion_boundary() -> None:
    """Aliases count as the values they expand to. An anchored list of 999 scalars is 1,000
    values (the list and its items), so each ``*x`` adds 1,000."""
    inner = "[" + ", ".join(["1"] * 999) + "]"

    def doc(n_alias: int) -> str:
        return f"a: &x {inner}\nb: [" + ", ".join(["*x"] * n_alias) + "]\n"

    # Values: top map 1 + key 'a' 1 + anchored list 1,000 + key 'b' 1 + list 'b' 1
    # + n x 1,000 = 1,004 + 1,000 n. n = 998 -> 999,004 <= 1,000,000; n = 999 -> 1,000,004 > it.
    assert len(parse_yaml(doc(998), "f.yaml")["b"]) == 998
    with pytest.raises(InvalidConfigError, match="expands to more than 1,000,000 values"):
        parse_yaml(doc(999), "f.yaml")


@pytest.mark.parametrize("text", [PYTHON_TAG, PYTHON_TAG_NESTED, "!!python/name:os.system\n",
                                  "x: !!python/object/new:subprocess.Popen [[touch, PWNED_MARKER]]\n"])
def test_python_tags_never_construct(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "evil.yaml"
    p.write_text(text)
    _refused(p, "malformed YAML", "python/")
    assert not (tmp_path / MARKER).exists()


def test_nesting_boundary_yaml_and_json() -> None:
    """Depth counts containers below the top: MAX_DEPTH (32) nested lists inside the top map
    parse; one more is refused. JSON and YAML agree."""
    ok_yaml = "a: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "\n"
    assert parse_yaml(ok_yaml, "f.yaml")["a"] is not None
    with pytest.raises(InvalidConfigError, match=f"nesting deeper than {MAX_DEPTH} levels"):
        parse_yaml("a: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n", "f.yaml")
    ok_json = '{"a": ' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}"
    assert parse_json(ok_json, "f.json")["a"] is not None
    with pytest.raises(InvalidConfigError, match=f"nesting deeper than {MAX_DEPTH} levels"):
        parse_json('{"a": ' + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "}", "f.json")


def test_very_deep_nesting_is_refused_quickly(tmp_path: Path) -> None:
    """100,000 brackets: libyaml is quadratic over such a run, so the scan stops at depth 33."""
    for name, text in (("deep.json", deep_json(100_000)), ("deep.yaml", deep_yaml(100_000))):
        p = tmp_path / name
        p.write_text(text)
        started = time.monotonic()
        _refused(p, "nesting deeper than 32 levels")
        assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("suffix,text", [
    (".json", '{"model_type": "llama", "num_hidden_layers": ' + "9" * 5000 + "}"),
    (".yaml", "model_type: llama\nnum_hidden_layers: " + "9" * 5000 + "\n"),
    (".yaml", "name: x\ncreated: 2024-13-45\n"),
])
def test_unparseable_numbers(tmp_path: Path, suffix: str, text: str) -> None:
    """Python refuses to parse ints over 4,300 digits (ValueError), and yaml turns 2024-13-45
    into a date (ValueError): both become InvalidConfigError, not a raw exception."""
    p = tmp_path / f"n{suffix}"
    p.write_text(text)
    _refused(p, "malformed")


# --- the file itself --------------------------------------------------------------------------

def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigError, match="is a directory"):
        read_text_capped(tmp_path)
    _refused(tmp_path, "directory without a config.json")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigError, match="no such config file"):
        read_text_capped(tmp_path / "nope.yaml")


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    """Opening a FIFO for reading blocks until a writer comes; it is not a regular file, so it
    is refused before any open."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    with pytest.raises(InvalidConfigError, match="is a FIFO, expected a config file"):
        read_text_capped(fifo)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root reads files whatever their mode; see the simulated test below")
def test_permission_denied_real(tmp_path: Path) -> None:
    p = tmp_path / "secret.yaml"
    p.write_text("name: x\n")
    p.chmod(0)
    _refused(p, "cannot read", "Permission denied")


def test_permission_denied_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same path as above, for runs as root: open() raises PermissionError."""
    p = tmp_path / "secret.yaml"
    p.write_text("name: x\n")

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(Path, "open", denied)
    _refused(p, "cannot read", "Permission denied")


# --- physically absurd values ------------------------------------------------------------------

def test_hf_layer_count_limit() -> None:
    """MAX_LAYERS = 10**6 layers is accepted by the guard; 10**6 + 1 is refused, naming the limit,
    also inside a nested text_config (multimodal configs)."""
    assert MAX_LAYERS == 10**6
    check_layer_counts({"num_hidden_layers": MAX_LAYERS}, "c.json")
    with pytest.raises(InvalidConfigError, match="more than the limit of 1,000,000 layers"):
        check_layer_counts({"num_hidden_layers": MAX_LAYERS + 1}, "c.json")
    with pytest.raises(InvalidConfigError, match="'n_layer' = 1,000,000,000,000,000,000,000,000,000,000"):
        check_layer_counts({"text_config": {"n_layer": 10**30}}, "c.json")


def test_hf_file_with_absurd_layers(tmp_path: Path) -> None:
    data = json.loads((FIXTURES / "meta-llama--Llama-2-7b-hf.json").read_text())
    data["num_hidden_layers"] = 10**30
    p = tmp_path / "config.json"
    p.write_text(json.dumps(data))
    _refused(p, "num_hidden_layers", "limit of 1,000,000 layers")
    # The folder form reads the same file through the same guard.
    _refused(tmp_path, "limit of 1,000,000 layers")


def test_kvcalc_yaml_layer_total_boundary(tmp_path: Path) -> None:
    """repeat x pattern length is the layer total: 500,000 x 2 = 1,000,000 loads; 1,000,001
    layers (1,000,001 x 1) is refused before the model is built."""
    head = ("name: x\ndtype: fp16\nmax_position_embeddings: 4096\nnum_attention_heads: 1\n"
            "hidden_size: 1\nlayers:\n")
    spec = "{kind: full, num_kv_heads: 1, head_dim: 1}"
    ok = tmp_path / "ok.yaml"
    ok.write_text(head + f"  - repeat: 500000\n    pattern: [{spec}, {spec}]\n")
    assert load_model_file(ok).name == "x"
    over = tmp_path / "over.yaml"
    over.write_text(head + f"  - repeat: 1000001\n    pattern: [{spec}]\n")
    _refused(over, "1,000,001 layers", "limit of 1,000,000")


def test_guards_through_the_cli(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Through the real funnel: exit 1, one Error: line naming the file, nothing on stdout."""
    cases = {
        "bomb.yaml": ALIAS_BOMB.encode(), "tag.yaml": PYTHON_TAG.encode(),
        "bin.yaml": b"\x00\x01\x02", "latin.yaml": b"name: caf\xe9\n",
        "deep.json": deep_json(10_000).encode(), "big.yaml": b"#" * (MAX_FILE_BYTES + 1),
    }
    for name, data in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        res = cli("estimate", "--config", str(p), "--seq-len", "8")
        assert res.exit_code == 1, (name, res)
        assert res.stdout == ""
        assert res.stderr.count("Error:") == 1 and res.stderr.startswith(f"Error: {p}"), res.stderr


# --- the other files kvcalc reads go through the same guards ------------------------------------

@pytest.mark.parametrize("reader", ["simulate_csv", "safetensors_index", "transformers_config", "check_log"])
def test_every_reader_refuses_a_fifo_and_an_oversized_file(tmp_path: Path, reader: str) -> None:
    """Lengths CSVs (simulate), safetensors indexes (--weights), the config.json that
    ``verify --source transformers`` reads, and engine logs: a FIFO is refused without blocking,
    and a file past the cap is refused from its size, with an error that says why."""
    from kvcalc.engines.startup_log import check_log
    from kvcalc.errors import KvcalcError
    from kvcalc.measure.transformers_source import read_hf_config
    from kvcalc.planner.weights import read_safetensors
    from kvcalc.show.simulate import parse_dist

    name = {"simulate_csv": "lens.csv", "safetensors_index": "model.safetensors.index.json",
            "transformers_config": "config.json", "check_log": "vllm.log"}[reader]
    call = {
        "simulate_csv": lambda p: parse_dist(f"csv:{p}", "--prompt-len"),
        "safetensors_index": read_safetensors,
        "transformers_config": lambda p: read_hf_config(str(p)),
        "check_log": check_log,
    }[reader]
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "fifo" / name
        fifo.parent.mkdir()
        os.mkfifo(fifo)
        with pytest.raises(KvcalcError):
            call(fifo)
    big = tmp_path / "big" / name
    big.parent.mkdir()
    with big.open("wb") as fh:
        fh.truncate(1 << 30)  # 1 GiB, sparse: never read
    with pytest.raises(KvcalcError, match=r"bytes|MiB"):
        call(big)
