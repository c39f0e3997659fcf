"""kvcalc.units: exact parsing at any scale, floor rounding, labels that match their base, and
only InvalidRequestError for bad input (properties with hypothesis, plus hand-checked values)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcalc.errors import InvalidRequestError
from kvcalc.units import (
    GB,
    KB,
    MAX_SIZE_DIGITS,
    MB,
    TB,
    GiB,
    KiB,
    MiB,
    TiB,
    format_bytes,
    format_in,
    parse_count,
    parse_size,
    unit_label,
)

UNITS = {"B": 1, "KiB": KiB, "MiB": MiB, "GiB": GiB, "TiB": TiB, "KB": KB, "MB": MB, "GB": GB, "TB": TB,
         "k": KiB, "m": MiB, "g": GiB, "t": TiB}


def test_constants() -> None:
    assert (KiB, MiB, GiB, TiB) == (2**10, 2**20, 2**30, 2**40)
    assert (KB, MB, GB, TB) == (10**3, 10**6, 10**9, 10**12)


@pytest.mark.parametrize("text,expected", [
    ("80GiB", 80 * 2**30),             # 85,899,345,920
    ("24 GB", 24 * 10**9),
    ("1.5GiB", 1_610_612_736),         # 2**30 + 2**30 // 2
    ("0.1KiB", 102),                   # 102.4 floors to 102
    ("0.0000001GiB", 107),             # 107.374... floors to 107
    ("1,000", 1000),
    ("1_000MB", 10**9),
    ("512m", 512 * 2**20),             # bare letters are IEC
    (" 7 ", 7),
])
def test_parse_size_examples(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "GiB", "-1GiB", "1e9", "nan", "inf", "80XB", "\u0663GiB",
                                  "1.GiB", ".5GiB", "0x10", "1 2", "9" * (MAX_SIZE_DIGITS + 1)])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_size(text, "--gpu-memory")
    assert info.value.field == "--gpu-memory"


@settings(max_examples=300)
@given(n=st.integers(0, 10**30), unit=st.sampled_from(sorted(UNITS)))
def test_parse_size_is_exact_for_huge_values(n: int, unit: str) -> None:
    """No float and no 28-digit Decimal context: 10**30 + 1 bytes stays 10**30 + 1."""
    assert parse_size(f"{n}{unit}") == n * UNITS[unit]
    assert parse_size(f"{n:,}") == n


@settings(max_examples=300)
@given(whole=st.integers(0, 10**20), frac=st.text("0123456789", min_size=1, max_size=15),
       unit=st.sampled_from(sorted(UNITS)))
def test_parse_size_floors_fractions(whole: int, frac: str, unit: str) -> None:
    """Floor, computed independently with Decimal at ample precision."""
    from decimal import localcontext

    with localcontext() as ctx:
        ctx.prec = 100
        exact = (Decimal(f"{whole}.{frac}") * UNITS[unit]).to_integral_value(rounding="ROUND_FLOOR")
    assert parse_size(f"{whole}.{frac}{unit}") == int(exact)


@settings(max_examples=300)
@given(text=st.text(max_size=60) | st.from_regex(r"\s*[0-9_,.]{0,50}\s*[a-zA-Z]{0,4}\s*", fullmatch=True))
def test_parse_size_only_raises_invalid_request(text: str) -> None:
    try:
        value = parse_size(text)
    except InvalidRequestError:
        return
    assert isinstance(value, int) and value >= 0


def test_parse_size_long_input_is_fast() -> None:
    import time

    started = time.monotonic()
    assert parse_size(" " * 100_000 + "1" + " " * 100_000) == 1
    for text in ("1" + "_" * 100_000 + "x", "1" * 100_000, "1." + "0" * 100_000, "1" + " " * 100_000 + "x1"):
        with pytest.raises(InvalidRequestError):
            parse_size(text)
    assert time.monotonic() - started < 1.0


@settings(max_examples=300)
@given(n=st.integers(-(10**40), 10**40), units=st.sampled_from(["iec", "si"]))
def test_format_bytes_labels_match_base_and_round_trip(n: int, units: str) -> None:
    text = format_bytes(n, units)  # type: ignore[arg-type]
    number, label = text.split(" ")
    if units == "iec":
        assert label in ("B", "KiB", "MiB", "GiB", "TiB")
    else:
        assert label in ("B", "KB", "MB", "GB", "TB")
    assert unit_label(n, units) == label  # type: ignore[arg-type]
    if label == "B":
        assert int(number) == n
    else:
        # Two decimals, exact at any size: within half a hundredth of the unit (checked with
        # Decimal at 100 digits; the default 28-digit context would itself round).
        from decimal import localcontext

        with localcontext() as ctx:
            ctx.prec = 100
            assert abs(Decimal(number) * UNITS[label] - n) * 200 <= UNITS[label]


def test_format_bytes_examples() -> None:
    assert format_bytes(2 * GiB) == "2.00 GiB"
    assert format_bytes(2 * GiB, "si") == "2.15 GB"  # 2,147,483,648 / 10**9 = 2.147 -> 2.15
    assert format_bytes(1023) == "1023 B"
    assert format_bytes(-3 * MiB) == "-3.00 MiB"
    # 10**40 + 6 x 10**9 bytes = 10**28 TB + 0.006 TB -> .01 (31 significant digits: the default
    # 28-digit Decimal context printed .00).
    assert format_bytes(10**40 + 6 * 10**9, "si") == "10000000000000000000000000000.01 TB"
    assert format_bytes(5 * GiB // 2 + GiB // 200) == "2.50 GiB"  # 0.12 byte under 2.505 GiB -> 2.50
    # Exact ties round half to even, as Decimal formatting does: 2.5 -> 2, 3.5 -> 4.
    assert format_bytes(2 * KiB + KiB // 2, precision=0) == "2 KiB"
    assert format_bytes(3 * KiB + KiB // 2, precision=0) == "4 KiB"


def test_format_in() -> None:
    assert format_in(5 * GiB // 4, "GiB") == "1.25"
    assert format_in(80 * GiB, "MiB", 0) == "81920"
    with pytest.raises(InvalidRequestError):
        format_in(1, "XB")


def test_parse_count_takes_ascii_digits_only() -> None:
    assert parse_count("42") == 42 and parse_count("0") == 0 and parse_count("9" * 40) == 10**40 - 1
    # "\u00b2" (superscript two) passes str.isdigit() but not int(); "\u0663" (Arabic-Indic three)
    # passes both, but a count is ASCII; 41 digits is past the cap that keeps int() clear of its
    # 4,300-digit limit.
    for bad in ("", " 1", "1 ", "-1", "+1", "1.0", "1_000", "\u00b2", "\u0663", "\uff11", "9" * 41, "9" * 5000):
        assert parse_count(bad) is None, bad
