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


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
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
            bad = args[0] if args else ""
            message = str(UnknownNameError("command", bad, names))
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
