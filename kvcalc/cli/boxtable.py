"""Box-drawing tables without rich, for the start-up path of ``kvcalc estimate`` and ``kvcalc plan``.

rich costs about 30 ms to import here, a quarter of the whole ``estimate`` run; its default table
(the HEAVY_HEAD box) is simple enough to draw directly. The look is rich's: bold header, italic
title and bold total on a terminal (unless ``NO_COLOR`` is set or ``TERM=dumb``), plain text
when piped. Piped output is never wrapped, so scripts and golden tests see one line per row; on
a terminal, text columns wrap at word boundaries to fit its width (numbers never wrap).
"""

from __future__ import annotations

import os
import sys
import unicodedata
from collections.abc import Sequence

from kvcalc.cli.term import stream_is_unicode, terminal_width

__all__ = ["BOLD", "ITALIC", "RESET", "clean", "render", "styled_stdout", "terminal_width", "text_lines"]

# rich.box.HEAVY_HEAD, row by row: top, header, header rule, body, section rule, bottom. A table
# without headers takes rich.box.SQUARE's top (``HEAVY_HEAD.get_plain_headed_box()``): light.
_HEAVY_HEAD = ("┏━┳┓", "┃ ┃┃", "┡━╇┩", "│ ││", "├─┼┤", "└─┴┘")
_PLAIN_TOP = "┌─┬┐"
# rich.box.ASCII2, for a stream that cannot encode box drawing (PYTHONIOENCODING=ascii), as rich
# itself substitutes when its console's encoding is not UTF.
_ASCII = ("+-++", "| ||", "+-++", "| ||", "+-++", "+-++")
_ASCII_PLAIN_TOP = "+-++"
BOLD, ITALIC, RESET = "\x1b[1m", "\x1b[3m", "\x1b[0m"


def styled_stdout() -> bool:
    """Whether stdout is a terminal that takes ANSI styles (https://no-color.org)."""
    return (sys.stdout.isatty() and "NO_COLOR" not in os.environ
            and os.environ.get("TERM", "") != "dumb")


def clean(text: str) -> str:
    """Control characters (an escape sequence in a model name, a newline in a reason) shown as
    '?', so user text can neither restyle the terminal nor break a row."""
    return text if text.isprintable() else "".join(c if c.isprintable() else "?" for c in text)


def cells(text: str) -> int:
    """Terminal columns ``text`` takes: wide East Asian characters 2, combining marks 0."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
               for c in text)


def wrap(text: str, width: int) -> list[str]:
    """Greedy word wrap to ``width`` columns; a word longer than the width is cut (a lone
    2-column character in a 1-column width is the one thing that overflows)."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        while cells(word) > width:
            if line:
                lines.append(line)
                line = ""
            cut = width
            while cut > 1 and cells(word[:cut]) > width:
                cut -= 1  # a wide character alone in a 1-column width overflows, never loops
            lines.append(word[:cut])
            word = word[cut:]
        if not line:
            line = word
        elif cells(line) + 1 + cells(word) <= width:
            line = f"{line} {word}"
        else:
            lines.append(line)
            line = word
    lines.append(line)
    return lines


def _pad(text: str, width: int, justify: str) -> str:
    gap = width - cells(text)
    return " " * gap + text if justify == "right" else text + " " * gap


def _fit(widths: list[int], floors: list[int], body: list[int], max_width: int) -> list[int]:
    """Narrow columns above their floor until the table fits or none can shrink: first those
    only their header is wider than (one extra header line), then the widest."""
    widths = list(widths)
    excess = sum(widths) + 3 * len(widths) + 1 - max_width
    while excess > 0:
        candidates = [i for i, w in enumerate(widths) if w > floors[i]]
        if not candidates:
            break
        i = max(candidates, key=lambda j: (widths[j] > body[j], widths[j]))
        widths[i] -= 1
        excess -= 1
    return widths


def _rule(box: str, widths: list[int]) -> str:
    return box[0] + box[2].join(box[1] * (w + 2) for w in widths) + box[3]


def render(title: str, headers: Sequence[str] | None, justify: Sequence[str],
           sections: Sequence[Sequence[Sequence[str]]], *, bold_sections: Sequence[int] = (),
           bold_rows: Sequence[tuple[int, int]] = (), max_width: int | None = None,
           style: bool = False, unicode: bool | None = None) -> list[str]:
    """The table as lines: ``sections`` are lists of rows separated by a rule; rows of the
    sections whose index is in ``bold_sections`` (and the ``(section, row)`` pairs in
    ``bold_rows``) are bold when ``style``. ``headers`` None: no header row (rich's
    ``show_header=False``). ``unicode`` (default: whether stdout can encode it) picks rich's box
    drawing or its ASCII fallback. To fit ``max_width``, headers and left-justified (text) cells
    wrap; right-justified (numeric) cells never do."""
    if unicode is None:
        unicode = stream_is_unicode(sys.stdout)
    heads = [clean(h) for h in headers] if headers is not None else ["" for _ in justify]
    body = [[[clean(c) for c in row] for row in sec] for sec in sections]
    widths = [max([cells(h), *(cells(row[i]) for sec in body for row in sec)]) for i, h in enumerate(heads)]
    if max_width is not None:
        # A header wraps at its spaces; a left-justified (text) cell too; a right-justified
        # (numeric) cell never does, so that column keeps its widest cell.
        floors = [max(max(cells(w) for w in h.split(" ")),
                      *(max(cells(w) for w in row[i].split(" ")) if justify[i] == "left" else cells(row[i])
                        for sec in body for row in sec))
                  for i, h in enumerate(heads)]
        body_widths = [max([0, *(cells(row[i]) for sec in body for row in sec)]) for i in range(len(heads))]
        widths = _fit(widths, floors, body_widths, max_width)

    def row_lines(row: Sequence[str], box: str, bottom_align: bool, bold: bool) -> list[str]:
        wrapped = [wrap(c, w) for c, w in zip(row, widths, strict=True)]
        height = max(len(w) for w in wrapped)
        wrapped = [([""] * (height - len(w)) + w) if bottom_align else (w + [""] * (height - len(w)))
                   for w in wrapped]
        out = []
        for k in range(height):
            parts = [f" {_pad(w[k], width, j)} " for w, width, j in zip(wrapped, widths, justify, strict=True)]
            if bold:
                parts = [f"{BOLD}{p}{RESET}" for p in parts]
            out.append(box[0] + box[2].join(parts) + box[3])
        return out

    top, head, head_rule, body_box, section_rule, bottom = _HEAVY_HEAD if unicode else _ASCII
    lines = [f"{ITALIC}{clean(title)}{RESET}" if style else clean(title)]
    if headers is not None:
        lines.append(_rule(top, widths))
        lines += row_lines(heads, head, bottom_align=True, bold=style)
        lines.append(_rule(head_rule, widths))
    else:
        lines.append(_rule(_PLAIN_TOP if unicode else _ASCII_PLAIN_TOP, widths))
    bold_pairs = set(bold_rows)
    for s, sec in enumerate(body):
        if s:
            lines.append(_rule(section_rule, widths))
        for r, row in enumerate(sec):
            bold = style and (s in bold_sections or (s, r) in bold_pairs)
            lines += row_lines(row, body_box, bottom_align=False, bold=bold)
    lines.append(_rule(bottom, widths))
    return lines


def text_lines(text: str, *, max_width: int | None = None, bold: bool = False) -> list[str]:
    """A line of prose (a title, a hint) as printed: control characters shown as '?', wrapped at
    word boundaries to ``max_width`` on a terminal (as rich's ``Console.print`` does), bold when asked."""
    shown = clean(text)
    body = shown.lstrip(" ")
    indent = " " * (len(shown) - len(body))
    if max_width is not None and cells(shown) > max_width:
        lines = [indent + line for line in wrap(body, max(max_width - len(indent), 1))]
    else:
        lines = [shown]
    return [f"{BOLD}{line}{RESET}" for line in lines] if bold else lines
