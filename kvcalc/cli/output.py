"""The one output sink: human tables on stdout, JSON on stdout, warnings and errors on stderr.

Everything here that echoes text kvcalc did not write itself escapes it (``term.escape``);
widths come from the one reader in ``kvcalc.cli.term``.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from typing import TYPE_CHECKING, Any

from kvcalc.cli.term import escape, layout_width, stream_is_unicode, terminal_width

if TYPE_CHECKING:
    from pathlib import Path

    from rich.console import Console


def keep_numbers_whole(table: Any) -> None:
    """Right-justified columns hold numbers: a column whose cells are single words (``21,474,836,480``)
    never wraps, so it is never cut with an ellipsis (``21,474,836,4…``); one whose cells hold several
    words (``131,072 -> 65,536``, ``2.00 GiB``) may wrap between them, never inside a number. A text
    column wraps instead, and the table grows past the layout width when the numbers alone need
    more (``NumberSafeConsole``)."""
    for column in table.columns:
        if column.justify == "right" and all(" " not in str(cell) for cell in column.cells):
            column.no_wrap = True


def _table_widths(console: Any, table: Any) -> tuple[int, int]:
    """(the narrowest width at which ``table`` keeps every number whole, its natural width):
    no-wrap (numeric) columns at their widest cell, text columns at their longest word, folding
    columns at their minimum (rich 15 ``Table._measure_column``, padding included, plus
    ``_extra_width`` for the borders)."""
    from rich.measure import Measurement

    options = console.options.update_width(10**6)
    natural = Measurement.get(console, options, table).maximum
    try:
        need = table._extra_width
        for i, column in enumerate(table.columns):
            r = table._measure_column(console, options, column)
            if column.no_wrap:
                need += r.maximum
            elif column.overflow == "fold":  # a long word folds onto the next line, uncut
                need += (column.min_width or 1) + table._get_padding_width(i)
            else:
                need += r.minimum
    except AttributeError:  # pragma: no cover - another rich: never truncate, lay out unwrapped
        need = natural
    return need, natural


class _EscapedText:
    """Renders another renderable with every control character in its text escaped
    (``term.escape``): a model name, a CSV path or a log line holding ``\x1b[2J`` is shown, not
    obeyed. rich's own styling travels in segment styles and control segments, never in the
    text, so this touches only what came from the data."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.segment import Segment

        for seg in console.render(self.inner, options):
            text = seg.text
            if seg.control or text.isprintable() or not text:
                yield seg
            else:
                yield Segment("\n".join(escape(part) for part in text.split("\n")), seg.style, seg.control)


def stdout_console() -> Console:
    """A rich console on stdout whose tables never cut or wrap a number and whose text never
    carries a raw control character."""
    from rich.console import Console, RenderHook
    from rich.table import Table

    class EscapeHook(RenderHook):
        def process_renderables(self, renderables: list[Any]) -> list[Any]:
            return [_EscapedText(r) for r in renderables]

    class NumberSafeConsole(Console):
        def print(self, *objects: Any, **kwargs: Any) -> None:
            wide = 0
            for obj in objects:
                if isinstance(obj, Table):
                    keep_numbers_whole(obj)
                    need, natural = _table_widths(self, obj)
                    if need > self.width:
                        wide = max(wide, natural)
            if wide <= self.width:
                super().print(*objects, **kwargs)
                return
            # The numbers alone are wider than the layout: print the table unwrapped (a terminal
            # soft-wraps the long rows) rather than cut a byte count to "21,474,836,4…".
            width = self.width
            self.width = wide
            try:
                super().print(*objects, **kwargs)
            finally:
                self.width = width

    # Piped output gets a fixed, wide layout so scripts and golden tests see stable tables;
    # junk COLUMNS (abc, '', 0, -1) falls back on that default instead of an empty table.
    width = None if terminal_width() is not None else layout_width()
    console = NumberSafeConsole(file=sys.stdout, width=width, highlight=False, soft_wrap=False)
    console.push_render_hook(EscapeHook())
    return console


def print_json(data: Any) -> None:
    """Exactly one JSON object on stdout; integers stay integers (no float round trip). A stream
    that cannot take non-ASCII text (``PYTHONIOENCODING=ascii``) gets ``\\uXXXX`` escapes: the
    same JSON value."""
    text = json.dumps(data, indent=2, ensure_ascii=not stream_is_unicode(sys.stdout))
    sys.stdout.write(text + "\n")


def warn(message: str) -> None:
    sys.stderr.write(f"Warning: {escape(message)}\n")


def wrote(path: object) -> None:
    """The ``Wrote PATH`` line on stderr after a file is written (the path escaped)."""
    sys.stderr.write(f"Wrote {escape(path)}\n")


_errors_written = 0


def error_line(message: str) -> None:
    """The one ``Error:`` line (whitespace, newlines included, collapsed to single spaces;
    other control characters escaped)."""
    global _errors_written
    _errors_written += 1
    first = " ".join(str(message).split())
    sys.stderr.write(f"Error: {escape(first)}\n")


def errors_written() -> int:
    """How many ``Error:`` lines this process has written (the funnel adds one if a command
    exits non-zero without saying why)."""
    return _errors_written


def check_output_path(path: str | os.PathLike[str], flag: str) -> Path:
    """A file kvcalc is about to write (``import -o``, ``--plot``, a CSV): a regular file or a
    new name in an existing folder. A FIFO would block the write forever and a device would
    swallow or refuse it, so both are refused before anything is computed or opened."""
    from pathlib import Path

    from kvcalc.errors import InvalidRequestError

    p = Path(path)
    if str(path) == "":
        raise InvalidRequestError(flag, "", "a file name")
    try:
        st = os.stat(p)
    except FileNotFoundError:
        return p
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise InvalidRequestError(flag, str(path), f"a writable file ({reason})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InvalidRequestError(flag, str(path), "a file name, not a directory")
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if (
            stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) else "a socket or special file"
        raise InvalidRequestError(flag, str(path), f"a regular file (this is {kind})")
    return p
