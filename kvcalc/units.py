"""Byte units: the only module that knows 1024 and 1000.

Convention (as in ``rich.filesize`` and vLLM's ``GiB_bytes``/``GB_bytes``): IEC units
(KiB, MiB, GiB, TiB) are powers of 1024 and are always labelled with the ``i``; SI units
(KB, MB, GB, TB) are powers of 1000. A figure is never printed with one base and
labelled with the other.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

from kvcalc.errors import InvalidRequestError

KiB = 1 << 10
"""Kibibyte: 1,024 bytes."""
MiB = 1 << 20
"""Mebibyte: 1,048,576 bytes."""
GiB = 1 << 30
"""Gibibyte: 1,073,741,824 bytes."""
TiB = 1 << 40
"""Tebibyte: 1,099,511,627,776 bytes."""
KB = 10**3
"""Kilobyte (SI): 1,000 bytes."""
MB = 10**6
"""Megabyte (SI): 1,000,000 bytes."""
GB = 10**9
"""Gigabyte (SI): 1,000,000,000 bytes."""
TB = 10**12
"""Terabyte (SI): 10**12 bytes."""

Units = Literal["iec", "si"]

_IEC = (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB))
_SI = (("TB", TB), ("GB", GB), ("MB", MB), ("KB", KB))
_SUFFIXES: dict[str, int] = {
    "": 1,
    "b": 1,
    "kib": KiB,
    "mib": MiB,
    "gib": GiB,
    "tib": TiB,
    "kb": KB,
    "mb": MB,
    "gb": GB,
    "tb": TB,
    # Bare single letters are ambiguous; we read them as IEC, like `ls -h` and `nvidia-smi`.
    "k": KiB,
    "m": MiB,
    "g": GiB,
    "t": TiB,
}
_SIZE_RE = re.compile(r"([0-9][0-9_,]*(?:\.[0-9]+)?)\s*([a-zA-Z]*)")
r"""Matched (fullmatch) against the stripped text: one run of spaces, so no quadratic
backtracking over long blanks (``\s*X*\s*$`` retries every split of the blanks)."""


def _fixed(n_bytes: int, size: int, precision: int) -> str:
    """``n_bytes / size`` to ``precision`` decimals, rounded half-even like ``Decimal`` formatting,
    but exact at any magnitude (the default ``Decimal`` context keeps only 28 digits)."""
    sign = "-" if n_bytes < 0 else ""
    scale = 10**precision
    q, r = divmod(abs(n_bytes) * scale, size)
    if 2 * r > size or (2 * r == size and q % 2 == 1):
        q += 1
    whole, frac = divmod(q, scale)
    return f"{sign}{whole}.{frac:0{precision}d}" if precision > 0 else f"{sign}{whole}"


def format_bytes(n_bytes: int, units: Units = "iec", precision: int = 2) -> str:
    """Human size with the unit that matches its base: ``2.00 GiB`` (iec) or ``2.15 GB`` (si)."""
    table = _IEC if units == "iec" else _SI
    sign = "-" if n_bytes < 0 else ""
    magnitude = abs(n_bytes)
    for label, size in table:
        if magnitude >= size:
            return f"{_fixed(n_bytes, size, precision)} {label}"
    return f"{sign}{magnitude} B"


def unit_label(n_bytes: int, units: Units = "iec") -> str:
    """The unit ``format_bytes`` would pick for this size (for table headers)."""
    return format_bytes(n_bytes, units).split(" ")[-1]


def format_in(n_bytes: int, unit: str, precision: int = 2) -> str:
    """Format in a named unit, e.g. ``format_in(x, "GiB")`` -> ``"1.25"``."""
    size = _SUFFIXES.get(unit.lower())
    if size is None:
        raise InvalidRequestError("unit", unit, "one of B, KiB, MiB, GiB, TiB, KB, MB, GB, TB")
    return _fixed(n_bytes, size, precision)


MAX_SIZE_DIGITS = 40
"""Digits allowed in a size (10**40 bytes is far past any memory); also keeps ``int()`` clear
of Python's 4,300-digit limit."""


def parse_count(text: str, max_digits: int = MAX_SIZE_DIGITS) -> int | None:
    """``"42"`` -> 42; None unless ``text`` is 1..``max_digits`` ASCII digits.

    ``str.isdigit()`` alone is not enough: it accepts "²" and other digits ``int()`` rejects, and
    ``int()`` refuses strings over 4,300 digits. Every count parsed from user text goes through here.
    """
    if not (0 < len(text) <= max_digits and text.isascii() and text.isdigit()):
        return None
    return int(text)


TOKEN_SUFFIXES: dict[str, int] = {"k": KiB, "m": MiB}
"""Context lengths are quoted in binary thousands: "4k" = 4,096 tokens, "128k" = 131,072, "1m" = 1,048,576."""


def parse_tokens(text: str, field: str = "tokens") -> int:
    """A token count, ``"32768"`` or ``"32k"`` (k = 1024, m = 1024 x 1024): the one parser for
    ``--seq-len``, ``--context`` / ``--max-model-len`` and sweep lists; at least 1."""
    raw = text.strip().lower().replace("_", "") if isinstance(text, str) else ""
    factor = TOKEN_SUFFIXES.get(raw[-1:], 1) if raw else 1
    digits = raw[:-1] if factor != 1 else raw
    value = parse_count(digits)
    if value is None or value == 0:
        raise InvalidRequestError(field, text, "a positive token count such as 4096 or 32k (k = 1024)")
    return value * factor


def tokens_parser(flag: str) -> Callable[[str | int], int]:
    """``parse_tokens`` for one flag (``--seq-len``, ``--context``): the parser every command's token
    option hands to typer, so ``32k`` means the same everywhere."""
    def parse(text: str | int) -> int:
        # typer also runs the parser on an option's default, an int (fit's --context 8192).
        return parse_tokens(str(text) if type(text) is int else text, flag)  # type: ignore[arg-type]

    return parse


def parse_size(text: str, field: str = "size") -> int:
    """Parse ``"50GiB"``, ``"24 GB"``, ``"1.5GiB"`` or ``"1073741824"`` into bytes.

    Exact integer arithmetic (no float, no 28-digit ``Decimal`` context): the whole part times
    the unit, plus the fraction times the unit floored. Fractions of a byte round down (floor):
    a budget is never overstated. ``1.5GiB`` = 1 x 2**30 + (5 x 2**30) // 10 = 1,610,612,736.
    """
    match = _SIZE_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if not match:
        raise InvalidRequestError(
            field, text, "a size such as 80GiB, 24GB, 512MiB or a byte count"
        )
    number, suffix = match.groups()
    factor = _SUFFIXES.get(suffix.lower())
    if factor is None:
        raise InvalidRequestError(
            field, text, "a unit among B, KiB, MiB, GiB, TiB (1024-based) or KB, MB, GB, TB (1000-based)"
        )
    whole, _, frac = number.replace("_", "").replace(",", "").partition(".")
    if len(whole) + len(frac) > MAX_SIZE_DIGITS:
        raise InvalidRequestError(field, text, f"a size of at most {MAX_SIZE_DIGITS} digits")
    n_bytes = int(whole) * factor
    if frac:
        n_bytes += int(frac) * factor // 10 ** len(frac)
    return n_bytes
