"""The HF cache lookup: refs/main goes through the size cap, must be UTF-8 and a commit name, and is
never followed out of the snapshots folder; safetensors indexes and headers with hostile values
are refused with a clear error (issue 14)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from kvcalc.errors import InvalidConfigError
from kvcalc.hf import find_in_hf_cache
from kvcalc.planner.weights import read_safetensors


def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ref: bytes) -> Path:
    repo = tmp_path / "hub" / "models--org--m"
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_bytes(ref)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HOME", raising=False)
    return repo


def test_refs_main_resolves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = cache(tmp_path, monkeypatch, b"abc123\n")
    assert find_in_hf_cache("org/m") == repo / "snapshots" / "abc123" / "config.json"


@pytest.mark.parametrize(("ref", "needle"), [
    (b"../../../etc", "expected a commit hash"),
    (b"abc/../../x", "expected a commit hash"),
    (b"\xff\xfe", "not UTF-8"),
    (b"a" * (5 << 20), "limit"),
])
def test_refs_main_hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ref: bytes, needle: str) -> None:
    cache(tmp_path, monkeypatch, ref)
    with pytest.raises(InvalidConfigError, match="refs") as info:
        find_in_hf_cache("org/m")
    assert needle in str(info.value)


def test_snapshot_link_outside_cache_is_not_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = cache(tmp_path, monkeypatch, b"evil\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    (repo / "snapshots" / "evil").symlink_to(outside)
    # refs/main names a snapshot that leads out of the cache: ignored; the real snapshot is used.
    assert find_in_hf_cache("org/m") == repo / "snapshots" / "abc123" / "config.json"


@pytest.mark.parametrize("total", [-1, 1 << 60, True, 1.5, "12", None])
def test_index_total_size_refused(tmp_path: Path, total: object) -> None:
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": {}}))
    with pytest.raises(InvalidConfigError, match="total_size"):
        read_safetensors(index)


def _header(path: Path, raw: bytes) -> None:
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)


@pytest.mark.parametrize(("raw", "needle"), [
    (b'{"w": {"dtype": "F16", "shape": [2], "data_offsets": [-4, 0]}}', "data_offsets begin"),
    (b'{"w": {"dtype": "F16", "shape": [2], "data_offsets": [8, 4]}}', "end 4 < begin 8"),
    (b'{"w": {"dtype": "F16", "shape": [-2, 3]}}', "shape dimension"),
    (b'{"w": {"dtype": "F16", "shape": [1e400]}}', "where safetensors stores integers"),
    (b'[1, 2, 3]', "must be a JSON object"),
    (b'{"w": {"dtype": "F16", "shape": 5}}', "expected a list"),
    (b'{"w": ["abc"]}', "expected {dtype, shape, data_offsets}"),
    (b'{"w": {"dtype": "F16", "shape": [true]}}', "shape dimension"),
    (b'{"w": {"dtype": "Q9", "shape": [2]}}', "unknown"),
])
def test_hostile_safetensors_headers(tmp_path: Path, raw: bytes, needle: str) -> None:
    f = tmp_path / "m.safetensors"
    _header(f, raw)
    with pytest.raises(InvalidConfigError) as info:
        read_safetensors(f)
    assert needle in str(info.value)


def test_hostile_header_on_the_cli(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "m.safetensors"
    _header(f, b'{"w": {"dtype": "F16", "shape": [2], "data_offsets": [-4, 0]}}')
    out = cli("plan", "llama-2-7b", "--gpu", "h100", "--weights", str(f))
    assert out.exit_code == 1 and out.stdout == "" and out.stderr.startswith("Error:")
    assert "Traceback" not in out.stderr
