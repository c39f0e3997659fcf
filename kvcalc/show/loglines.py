"""Engine log lines are quoted verbatim; where an engine's unit word differs from kvcalc's, a note
says so at render time (the line itself is never rewritten: it must match what the engine prints).

The rule is the engine's (``Engine.log_unit_note``). SGLang writes GiB figures as "GB": its ``GB`` constant is 2^30 in
``sglang/srt/mem_cache/memory_pool.py`` (SGLang 0.5.23, the wheel's line 116), and the pool logs
``K size: {k_size / GB:.2f} GB``. kvcalc's GB is 10^9 bytes (``kvcalc.units``), so the note gives
the figure in both units.
"""

from __future__ import annotations


def unit_note(engine: str, line: str) -> str | None:
    """A note for ``line`` as ``engine`` prints it, or None when its units read as kvcalc's."""
    from kvcalc.engines import get_engine

    return get_engine(engine).log_unit_note(line)
