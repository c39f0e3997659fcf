"""The CLI contract: exit codes, stdout/stderr separation, --json equals the API."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from kvcalc import apply_overrides, estimate, load_model
from tests.conftest import CliResult

Cli = Callable[..., CliResult]


def test_estimate_json_equals_api(cli: Cli) -> None:
    res = cli("estimate", "llama-2-7b", "--seq-len", "4096", "--json")
    assert res.exit_code == 0
    data = res.json()
    api = estimate(load_model("llama-2-7b"), 4096)
    assert data == api.to_dict()
    for key in ("model", "seq_len", "batch", "kv_dtype", "engine", "total_bytes", "bytes_per_token", "layers"):
        assert key in data
    assert isinstance(data["total_bytes"], int) and data["total_bytes"] == 2_147_483_648


def test_typer_path_json_equals_api(cli: Cli) -> None:
    # --kv-heads is not on the fast path, so this goes through typer.
    res = cli("estimate", "llama-3-70b", "--seq-len", "4096", "--kv-heads", "64", "--json")
    assert res.exit_code == 0
    api = estimate(apply_overrides(load_model("llama-3-70b"), kv_heads=64), 4096)
    assert res.json() == api.to_dict()
    assert res.json()["total_bytes"] == 10_737_418_240


@pytest.mark.parametrize("extra", [[], ["--json"], ["--explain"], ["--units", "si"], ["--batch", "3"],
                                   ["--kv-dtype", "fp8"]])
def test_fast_path_matches_typer_path(cli: Cli, monkeypatch: pytest.MonkeyPatch, extra: list[str]) -> None:
    argv = ["estimate", "gemma-2-27b", "--seq-len", "8192", *extra]
    fast = cli(*argv)
    import kvcalc.cli.fast as fast_mod

    monkeypatch.setattr(fast_mod, "try_fast", lambda argv: None)
    slow = cli(*argv)
    assert fast.exit_code == slow.exit_code == 0
    assert fast.stdout == slow.stdout
    assert fast.stderr == slow.stderr


def test_human_table_states_units(cli: Cli) -> None:
    iec = cli("estimate", "llama-2-7b", "--seq-len", "4096")
    assert "2,147,483,648" in iec.stdout and "2.00 GiB" in iec.stdout and "IEC" in iec.stdout
    si = cli("estimate", "llama-2-7b", "--seq-len", "4096", "--units", "si")
    assert "2.15 GB" in si.stdout and "GiB" not in si.stdout


@pytest.mark.parametrize(
    ("argv", "code", "needle"),
    [
        (["estimate", "llama-2-7", "--seq-len", "10"], 2, "did you mean"),  # README: unknown name = usage
        (["estimate", "llama-2-7b", "--seq-len", "0"], 2, "--seq-len"),
        (["estimate", "llama-2-7b", "--seq-len", "-5"], 2, "--seq-len"),
        (["estimate", "llama-2-7b", "--seq-len", "1.5"], 2, "--seq-len"),
        (["estimate", "llama-2-7b", "--seq-len", "abc"], 2, "--seq-len"),
        (["estimate", "llama-2-7b", "--seq-len", "10", "--batch", "0"], 2, "--batch"),
        (["estimate", "llama-2-7b", "--seq-len", "10", "--kv-dtype", "fp9"], 2, "kv dtype"),
        (["estimate", "llama-2-7b"], 2, "--seq-len"),
        (["estimate", "--seq-len", "10"], 2, "MODEL"),
        (["estimat", "llama-2-7b"], 2, "did you mean"),
        (["estimate", "llama-2-7b", "--seq-len", "10", "--engine", "vlm"], 2, "engine"),
    ],
)
def test_errors_one_line_on_stderr(cli: Cli, argv: list[str], code: int, needle: str) -> None:
    res = cli(*argv)
    assert res.exit_code == code
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("Error:")
    assert needle in lines[0]
    assert "Traceback" not in res.stderr


def test_warning_for_seq_len_beyond_max_positions(cli: Cli) -> None:
    res = cli("estimate", "llama-2-7b", "--seq-len", "8192", "--json")
    assert res.exit_code == 0
    assert res.json()["total_bytes"] == 4 * 1024**3
    assert res.stderr.startswith("Warning:") and "max_position_embeddings" in res.stderr


def test_models_list_and_show(cli: Cli) -> None:
    res = cli("models", "--json")
    assert res.exit_code == 0
    rows = {r["name"]: r for r in res.json()["models"]}
    assert rows["llama-2-7b"]["bytes_per_token"] == 524_288
    assert rows["deepseek-v3"]["bytes_per_token"] == 70_272
    show = cli("models", "show", "qwen3-32b")
    assert show.exit_code == 0 and "qwen3-32b" in show.stdout
    assert cli("models", "show", "qwen3-33b").exit_code == 2  # an unknown name: usage (README)


def test_python_m_kvcalc_help() -> None:
    env = {**os.environ, "COLUMNS": "100"}
    out = subprocess.run([sys.executable, "-m", "kvcalc", "--help"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0
    assert "estimate" in out.stdout and out.stderr == ""


def test_debug_env_shows_traceback() -> None:
    env = {**os.environ, "KVCALC_DEBUG": "1"}
    out = subprocess.run([sys.executable, "-m", "kvcalc", "estimate", "nope-model", "--seq-len", "1"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_estimate_does_not_import_torch_or_pydantic() -> None:
    code = (
        "import sys\n"
        "from kvcalc.cli import main\n"
        "rc = main(['estimate', 'llama-2-7b', '--seq-len', '4096'])\n"
        "assert rc == 0\n"
        "bad = [m for m in ('torch', 'pydantic', 'typer', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "import kvcalc\n"
        "kvcalc.estimate(kvcalc.load_model('llama-3-70b'), 8192)\n"
        "assert 'torch' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
