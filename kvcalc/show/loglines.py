"""Engine log lines are quoted verbatim; where an engine's unit word differs from kvcalc's, a note
says so at render time (the line itself is never rewritten: it must match what the engine prints).

SGLang writes GiB figures as "GB": its ``GB`` constant is 2^30 in
``sglang/srt/mem_cache/memory_pool.py`` (SGLang 0.5.23, the wheel's line 116), and the pool logs
``K size: {k_size / GB:.2f} GB``. kvcalc's GB is 10^9 bytes (``kvcalc.units``), so the note gives
the figure in both units.
"""

from __future__ import annotations

import re

from kvcalc.units import GB, GiB

_SGLANG_GB = re.compile(r"(\d+(?:\.\d+)?) GB\b")


def unit_note(engine: str, line: str) -> str | None:
    """A note for ``line`` as ``engine`` prints it, or None when its units read as kvcalc's."""
    if engine != "sglang":
        return None
    figures = _SGLANG_GB.findall(line)
    if not figures:
        return None
    # Display only: the logged figure is already rounded to 0.01 GiB, so the GB value is approximate.
    shown = ", ".join(f"{f} GiB = {float(f) * GiB / GB:,.2f} GB" for f in dict.fromkeys(figures))
    return f'SGLang\'s "GB" is GiB, 2^30 bytes (sglang/srt/mem_cache/memory_pool.py): {shown}'
