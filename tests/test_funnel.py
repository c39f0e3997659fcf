"""The one error funnel, ``kvcalc.cli.main``: every failure becomes exactly one ``Error:`` line
on stderr with exit 1 (2 for usage, 130 for an interrupt), stdout stays empty, and a
traceback appears only with ``KVCALC_DEBUG=1``."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

import kvcalc.cli as cli_pkg
from kvcalc.cli.output import error_line, print_json, warn
from kvcalc.errors import (
    DoesNotFitError,
    InvalidConfigError,
    InvalidRequestError,
    KvcalcError,
    MissingDependencyError,
    UnknownModelError,
    UnknownNameError,
)
from tests.conftest import CliResult


def _raising(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    """Make the typer stage raise ``exc`` (the fast path declines every call)."""
    import kvcalc.cli.fast as fast

    def boom(args: list[str]) -> int:
        raise exc

    monkeypatch.setattr(fast, "try_fast", lambda args: None)
    monkeypatch.setattr(cli_pkg, "_run_typer", boom)


@pytest.mark.parametrize("exc,code", [
    (InvalidRequestError("seq_len", 0, "an integer from 1 to 1,000,000,000,000"), 2),
    (UnknownNameError("GPU", "h1000", ["h100", "a100"]), 2),
    (UnknownModelError("llama-9", ["llama-2-7b"]), 2),
    (InvalidConfigError("c.yaml", "field 'x' = 1: bad\nsecond line"), 1),
    (DoesNotFitError("needs 81.00 GiB, 80.00 GiB available"), 1),
    (MissingDependencyError("torch", "verify"), 1),
])
def test_named_errors_become_one_line(cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch,
                                      exc: KvcalcError, code: int) -> None:
    _raising(monkeypatch, exc)
    res = cli("anything")
    assert res.exit_code == code == exc.exit_code
    assert res.stdout == ""
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("Error: ")
    assert res.stderr == "Error: " + " ".join(str(exc).split()) + "\n"


@pytest.mark.parametrize("exc,needle", [
    (ValueError("boom"), "internal error: ValueError: boom (set KVCALC_DEBUG=1 for the traceback)"),
    (KeyError("k"), "internal error: KeyError"),
    (RecursionError(), "input is nested too deeply"),
    (MemoryError(), "out of memory while handling this input"),
    (PermissionError(13, "Permission denied", "/root/x.yaml"), "cannot use '/root/x.yaml': Permission denied"),
    (OSError(36, "File name too long", "x" * 300), "File name too long"),
])
def test_unexpected_exceptions_never_show_a_traceback(cli: Callable[..., CliResult],
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       exc: BaseException, needle: str) -> None:
    _raising(monkeypatch, exc)
    res = cli("anything")
    assert res.exit_code == 1
    assert res.stdout == ""
    assert "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("Error: ") and needle in res.stderr
    assert len(res.stderr) < 300  # a 300-character file name is shortened


def test_debug_variable_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    _raising(monkeypatch, ValueError("boom"))
    monkeypatch.setenv("KVCALC_DEBUG", "1")
    with pytest.raises(ValueError, match="boom"):
        cli_pkg.main(["anything"])
    _raising(monkeypatch, InvalidRequestError("batch", -1, "positive"))
    with pytest.raises(InvalidRequestError):
        cli_pkg.main(["anything"])


def test_keyboard_interrupt_exits_130(cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch) -> None:
    _raising(monkeypatch, KeyboardInterrupt())
    res = cli("anything")
    assert (res.exit_code, res.stdout, res.stderr) == (130, "", "Error: interrupted\n")


def test_broken_pipe_is_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader that went away (``| head``): exit 1 and stderr closed, so Python prints no
    'Exception ignored ... BrokenPipeError' at exit."""
    _raising(monkeypatch, BrokenPipeError())
    fake_err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", fake_err)
    assert cli_pkg.main(["anything"]) == 1
    assert fake_err.closed


def test_usage_errors_exit_2(cli: Callable[..., CliResult]) -> None:
    res = cli("estimat", "llama-2-7b")
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.startswith("Error: unknown command 'estimat'; did you mean 'estimate'")
    res = cli("estimate", "llama-2-7b", "--seq-len", "abc")
    assert res.exit_code == 2 and res.stdout == "" and res.stderr.count("Error:") == 1
    assert "--seq-len" in res.stderr
    res = cli("estimate", "llama-2-7b", "--seq-len", "8", "--no-such-flag")
    assert res.exit_code == 2 and res.stdout == "" and "--no-such-flag" in res.stderr


@pytest.mark.parametrize("argv", [
    ("plan", "llama-2-7b", "--gpu", "h100:\u00b2"),  # str.isdigit() is True, int() refuses
    ("plan", "llama-2-7b", "--gpu", "h100:" + "9" * 5000),  # past int()'s 4,300-digit limit
    ("sweep", "llama-2-7b", "--seq-len", "1.." + "9" * 5000),
    ("sweep", "llama-2-7b", "--seq-len", "\u00b2k"),
])
def test_digit_lookalikes_and_huge_counts_are_usage_errors(cli: Callable[..., CliResult],
                                                          argv: tuple[str, ...]) -> None:
    res = cli(*argv)
    assert res.exit_code == 2 and res.stdout == "", res.stderr
    line = res.stderr.strip()
    assert line.startswith("Error: --") and "\n" not in line and "internal error" not in line
    # The echoed value is clipped, so the line stays readable: ~80 characters and the full length.
    assert len(line) < 400 and ("characters)" in line or len(argv[-1]) < 80)


def test_bare_kvcalc_prints_help_and_succeeds(cli: Callable[..., CliResult]) -> None:
    """A bare ``kvcalc`` shows the help on stdout: exit 0, so that "non-zero exit" always means
    "one Error: line"."""
    res = cli()
    assert res.exit_code == 0 and "Usage" in res.stdout and res.stderr == ""
    res = cli("--help")
    assert res.exit_code == 0 and "estimate" in res.stdout and res.stderr == ""


def test_output_sink(capsys: pytest.CaptureFixture[str]) -> None:
    error_line("first\n  second\tthird")
    warn("careful")
    print_json({"total_bytes": 10**30 + 1, "nested": {"n": -(2**80)}})
    out, err = capsys.readouterr()
    assert err == "Error: first second third\nWarning: careful\n"
    # Integers are written digit for digit (no float round trip, no exponent).
    assert '"total_bytes": 1000000000000000000000000000001' in out
    assert '"n": -1208925819614629174706176' in out


def test_exit_codes_are_documented_values() -> None:
    """Every named error maps to 1 or 2, the only codes besides 0 and 130."""
    import kvcalc.errors as errors

    classes: list[Any] = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, KvcalcError)]
    assert len(classes) >= 6
    assert {c.exit_code for c in classes} <= {1, 2}


def test_real_process_has_no_traceback(tmp_path: Any) -> None:
    """One subprocess through ``python -m kvcalc`` with a hostile file: one line, exit 1."""
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    proc = subprocess.run([sys.executable, "-m", "kvcalc", "estimate", "--config", str(bad), "-s", "8"],
                          capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("Error: ") and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def _fake_app(monkeypatch: pytest.MonkeyPatch, body: Callable[[], int | None]) -> None:
    """Swap in a one-command typer app, so the real typer path (not a stub) runs ``body``."""
    import typer

    import kvcalc.cli.app as app_module
    import kvcalc.cli.fast as fast

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.command()
    def work() -> int | None:
        return body()

    @app.command()
    def other() -> None:  # two commands, so typer keeps the sub-command name
        pass

    monkeypatch.setattr(app_module, "app", app)
    monkeypatch.setattr(fast, "try_fast", lambda args: None)


def test_ctrl_c_inside_a_typer_command(cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch) -> None:
    """typer turns KeyboardInterrupt inside a command into a silent Exit(130); the funnel adds
    the one Error: line."""
    def interrupted() -> None:
        raise KeyboardInterrupt

    _fake_app(monkeypatch, interrupted)
    res = cli("work")
    assert (res.exit_code, res.stdout, res.stderr) == (130, "", "Error: interrupted\n")


def test_silent_nonzero_return_gets_an_error_line(cli: Callable[..., CliResult],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_app(monkeypatch, lambda: 3)
    res = cli("work")
    assert (res.exit_code, res.stderr) == (3, "Error: failed with exit code 3\n")


def test_command_that_says_why_is_not_doubled(cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch) -> None:
    def says_why() -> int:
        error_line("interrupted: freed every tensor")
        return 130

    _fake_app(monkeypatch, says_why)
    res = cli("work")
    assert (res.exit_code, res.stderr) == (130, "Error: interrupted: freed every tensor\n")


def test_sigint_in_a_real_process() -> None:
    """A real SIGINT to a running ``kvcalc``: exit 130 and one Error: line, no traceback."""
    import signal
    import time

    code = ("import time, kvcalc.cli as c\n"
            "c._run_typer = lambda args: (print('ready', flush=True), time.sleep(30))[1] or 0\n"
            "raise SystemExit(c.main(['x']))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and err == "Error: interrupted\n"
