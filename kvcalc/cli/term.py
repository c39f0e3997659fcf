"""What kvcalc writes to a terminal, made safe: untrusted text escaped, one reader of the
terminal width that falls back on junk, and whether a stream can take non-ASCII text.

Every line the CLI echoes that holds text it did not write itself (a file name, a model name
from a config, a path in a CSV spec, a line copied from a log) goes through ``escape``, so a
name holding ``\\x1b[2J`` or ``\\x07`` can neither clear nor restyle the terminal nor ring its
bell. Stdlib only: this module is on the start-up path of ``kvcalc estimate``.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

DEFAULT_PIPED_WIDTH = 110
"""Columns for output that is not a terminal (scripts and golden tests see stable tables)."""
DEFAULT_TERMINAL_WIDTH = 80
"""Columns when a terminal does not say its size and ``COLUMNS`` is unset or junk."""
MIN_WIDTH = 20
"""Narrower widths (``COLUMNS=1``) are raised to this: rich would otherwise print a column of
single characters, or nothing at all at width 0."""
MAX_WIDTH = 10_000
"""Wider ``COLUMNS`` values are junk (a 5,000-digit value included), not a screen."""


def escape(text: object) -> str:
    """``text`` with every non-printable character (C0/C1 controls such as ESC, BEL, CR and
    newline; bidi overrides; other format characters) written as its Python escape
    (``\\x1b``, ``\\x07``, ``\\u202e``). Printable text, non-ASCII letters included, is unchanged."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


def escape_line(text: object) -> str:
    """``escape`` for a line copied verbatim (a log line): a tab stays a tab."""
    return "\t".join(escape(part) for part in str(text).split("\t"))


def columns_from_env(default: int) -> int:
    """``COLUMNS`` when it is a plain decimal number of columns, else ``default`` (``abc``, the
    empty string, ``0``, ``-1``, ``+80``, unicode digits and 5,000-digit values are junk). A
    number below ``MIN_WIDTH`` is raised to it."""
    raw = os.environ.get("COLUMNS", "").strip()
    if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(MAX_WIDTH))):
        return default
    value = int(raw)
    if not 1 <= value <= MAX_WIDTH:
        return default
    return max(value, MIN_WIDTH)


def sanitize_size_env() -> None:
    """Drop a junk ``COLUMNS`` or ``LINES`` from the environment, once, at the CLI's entry: rich
    and click read them too (rich calls ``int()`` on any all-digit value, which raises on 5,000
    digits, and takes ``0`` as a width that prints nothing), so the one reader's rule applies to
    every library: a value that is not a sane size is as if unset, a width below ``MIN_WIDTH`` is
    raised to it."""
    for name in ("COLUMNS", "LINES"):
        raw = os.environ.get(name)
        if raw is None:
            continue
        text = raw.strip()
        if not (text.isascii() and text.isdigit() and len(text) <= len(str(MAX_WIDTH))
                and 1 <= int(text) <= MAX_WIDTH):
            del os.environ[name]
        elif name == "COLUMNS" and int(text) < MIN_WIDTH:
            os.environ[name] = str(MIN_WIDTH)  # typer's help at 1 column is a column of blanks


def _isatty(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (OSError, ValueError, AttributeError):
        return False


def terminal_width(stream: TextIO | None = None) -> int | None:
    """The width to lay text out in: the terminal's columns when ``stream`` (stdout by default)
    is a terminal, else None (piped output is not wrapped). A terminal that reports 0 columns
    (some CI ptys) falls back on ``COLUMNS``, then 80."""
    stream = sys.stdout if stream is None else stream
    if not _isatty(stream):
        return None
    try:
        cols = os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        cols = 0
    if cols >= 1:
        return min(max(cols, MIN_WIDTH), MAX_WIDTH)
    return columns_from_env(DEFAULT_TERMINAL_WIDTH)


def layout_width(stream: TextIO | None = None) -> int:
    """The width for rich's layout: the terminal's, or for piped output ``COLUMNS`` when it is
    a sane number, else ``DEFAULT_PIPED_WIDTH``. Never 0 or negative (rich prints nothing then)."""
    width = terminal_width(stream)
    return width if width is not None else columns_from_env(DEFAULT_PIPED_WIDTH)


_UNICODE_PROBE = "┏━│…×≈ß"


def stream_is_unicode(stream: object) -> bool:
    """Whether ``stream`` can encode box-drawing and other non-ASCII text (False for
    ``PYTHONIOENCODING=ascii``, a latin-1 locale, or no stream at all)."""
    encoding = getattr(stream, "encoding", None)
    if not encoding:
        return False
    try:
        _UNICODE_PROBE.encode(encoding)
    except (UnicodeError, LookupError):
        return False
    return True
