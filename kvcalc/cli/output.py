"""The one output sink: human tables on stdout, JSON on stdout, warnings and errors on stderr."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


def stdout_console() -> Console:
    from rich.console import Console

    # Piped output gets a fixed, wide layout so scripts and golden tests see stable tables.
    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "110"))
    return Console(file=sys.stdout, width=width, highlight=False, soft_wrap=False)


def print_json(data: Any) -> None:
    """Exactly one JSON object on stdout; integers stay integers (no float round trip)."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def warn(message: str) -> None:
    sys.stderr.write(f"Warning: {message}\n")


_errors_written = 0


def error_line(message: str) -> None:
    """The one ``Error:`` line (whitespace, newlines included, collapsed to single spaces)."""
    global _errors_written
    _errors_written += 1
    first = " ".join(str(message).split())
    sys.stderr.write(f"Error: {first}\n")


def errors_written() -> int:
    """How many ``Error:`` lines this process has written (the funnel adds one if a command
    exits non-zero without saying why)."""
    return _errors_written
