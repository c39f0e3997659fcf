"""kvcalc's command line: parse flags, call one core function, render its result.

``main`` is the one error funnel: every ``KvcalcError`` and usage error becomes a single
``Error: ...`` line on stderr with exit 1 (or 2 for usage), stdout stays empty, and a
traceback appears only with ``KVCALC_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys


def _debug() -> bool:
    return os.environ.get("KVCALC_DEBUG", "") not in ("", "0")


class _ClosedStream:
    """Stands in for a standard stream the shell closed (``kvcalc models >&-``: Python then sets
    ``sys.stdout`` to None). Writing to it is an error the funnel reports, so a command that
    has something to print fails with one ``Error:`` line instead of an AttributeError or a
    silent exit 0; a command that prints nothing still succeeds."""

    encoding = "utf-8"

    def __init__(self, name: str) -> None:
        self.name = name

    def write(self, text: str) -> int:
        import errno

        raise OSError(errno.EBADF, f"standard {self.name} is closed; nothing to write to")

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        import io

        raise io.UnsupportedOperation("closed stream")


def _prepare_streams() -> None:
    """A closed stdout/stderr becomes a stream that reports itself; a stream that cannot
    encode non-ASCII text (``PYTHONIOENCODING=ascii``, a latin-1 locale) writes escapes
    (``\u2501``) for what it cannot encode instead of raising UnicodeEncodeError mid-table
    (rich's tables and boxtable switch to ASCII boxes themselves)."""
    from kvcalc.cli.term import sanitize_size_env, stream_is_unicode

    sanitize_size_env()
    if sys.stdout is None:
        sys.stdout = _ClosedStream("output")
    if sys.stderr is None:
        sys.stderr = _ClosedStream("error")
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and not stream_is_unicode(stream):
            try:
                reconfigure(errors="backslashreplace")
            except (OSError, ValueError):  # pragma: no cover - a stream already in use
                pass


def main(argv: list[str] | None = None) -> int:
    # Ctrl-C may land anywhere, the imports below included (the first ~40 ms): every
    # KeyboardInterrupt ends as "Error: interrupted" and exit 130, never a traceback.
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return _interrupted()


def _interrupted() -> int:
    try:
        from kvcalc.cli.output import error_line

        error_line("interrupted")
    except BaseException:  # noqa: BLE001 - a second Ctrl-C, or a closed stderr: exit quietly
        pass
    return 130


def _main(argv: list[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    _prepare_streams()
    from kvcalc.cli.output import error_line, errors_written
    from kvcalc.errors import KvcalcError

    before = errors_written()
    try:
        from kvcalc.cli.fast import try_fast, try_fast_plan

        code = try_fast(args)
        if code is None:
            code = try_fast_plan(args)
        return _said_why(_run_typer(args) if code is None else code, before)
    except KvcalcError as exc:
        if _debug():
            raise
        error_line(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        error_line("interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); nothing more to say.
        sys.stderr.close()
        return 1
    except RecursionError:
        if _debug():
            raise
        error_line("input is nested too deeply")
        return 1
    except OSError as exc:
        # A file the user named cannot be read or written (missing, permission denied, name
        # too long, disk full): the environment, not a bug, so no "internal error" wording.
        if _debug():
            raise
        error_line(_os_error_message(exc))
        return 1
    except MemoryError:
        if _debug():
            raise
        error_line("out of memory while handling this input")
        return 1
    except Exception as exc:  # the last line of defence: never a traceback for users
        if _debug():
            raise
        error_line(f"internal error: {type(exc).__name__}: {exc} (set KVCALC_DEBUG=1 for the traceback)")
        return 1


def _said_why(code: int, errors_before: int) -> int:
    """typer turns Ctrl-C inside a command into a silent exit 130, and a command may return a
    code without a message: a non-zero exit always comes with one ``Error:`` line."""
    from kvcalc.cli.output import error_line, errors_written

    if code != 0 and errors_written() == errors_before:
        error_line("interrupted" if code == 130 else f"failed with exit code {code}")
    return code


def _os_error_message(exc: OSError) -> str:
    name = exc.filename if exc.filename is not None else ""
    shown = repr(str(name)) if len(str(name)) <= 80 else repr(str(name)[:77] + "...")
    reason = exc.strerror or type(exc).__name__
    return f"cannot use {shown}: {reason}" if name != "" else f"{reason}"


def _refused_command(message: str, args: list[str]) -> str:
    """The command name in click's ``No such command 'NAME'.``, else the first argument."""
    import ast
    import re

    found = re.search(r"No such command (\'.*\'|\".*\")\.", message, re.S)
    if found is not None:
        try:
            name = ast.literal_eval(found.group(1))
        except (ValueError, SyntaxError):
            name = None
        if isinstance(name, str):
            return name
    return args[0] if args else ""


def _run_typer(args: list[str]) -> int:
    # typer >= 0.2x vendors click as typer._click; older typer uses click itself.
    import typer

    try:
        from typer._click import exceptions as click_exc
    except ImportError:  # pragma: no cover - depends on the installed typer
        import click.exceptions as click_exc  # type: ignore[no-redef,unused-ignore]

    from kvcalc.cli.app import app
    from kvcalc.cli.output import error_line

    try:
        result = app(args=args, prog_name="kvcalc", standalone_mode=False)
    except click_exc.NoArgsIsHelpError:
        # typer has printed the help on stdout: a bare `kvcalc` asked for it, so this is success
        # (exit 0); click's own exit 2 would break the rule "non-zero exit = one Error: line".
        return 0
    except click_exc.UsageError as exc:
        message = exc.format_message()
        if exc.ctx is not None and "No such command" in message:
            from kvcalc.errors import UnknownNameError

            names = list(getattr(exc.ctx.command, "commands", {}))
            # The word click refused, in its group (`kvcalc models list` refuses 'list', not 'models').
            bad = _refused_command(message, args)
            group = exc.ctx.command_path
            what = "command" if group in ("", "kvcalc") else f"'{group}' command"
            message = str(UnknownNameError(what, bad, names))
        error_line(message)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        error_line("interrupted")
        return 130
    except click_exc.ClickException as exc:
        error_line(exc.format_message())
        return exc.exit_code
    if isinstance(result, int):
        return result
    return 0
