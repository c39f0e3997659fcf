"""The lean start-up path for the commonest call, ``kvcalc estimate BUILTIN --seq-len N``.

typer, click and pydantic together cost about 150 ms to import here; this path parses the
simple flags by hand and calls the same ``run_estimate.run`` as the typer command. Anything
it does not fully understand (another flag, a bad value, ``--help``) returns None and the
typer app handles it, so errors and help text come from one place. A test checks that both
paths print identical output.
"""

from __future__ import annotations

_INT_FLAGS = {"--seq-len": "seq_len", "--batch": "batch"}
_STR_FLAGS = {"--kv-dtype": "kv_dtype", "--units": "units"}
_BOOL_FLAGS = {"--json": "json", "--explain": "explain"}


def parse(argv: list[str]) -> dict[str, object] | None:
    if len(argv) < 2 or argv[0] != "estimate":
        return None
    out: dict[str, object] = {}
    model: str | None = None
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg in _BOOL_FLAGS:
            out[_BOOL_FLAGS[arg]] = True
            i += 1
            continue
        name, eq, value = arg.partition("=")
        if name in _INT_FLAGS or name in _STR_FLAGS:
            if not eq:
                if i + 1 >= len(argv):
                    return None
                value = argv[i + 1]
                i += 1
            i += 1
            if name in _INT_FLAGS:
                # Plain decimal digits (a "k" suffix on --seq-len, as everywhere): else typer decides.
                digits = value[:-1] if name == "--seq-len" and value[-1:] in ("k", "K") else value
                if not (digits.isascii() and digits.isdigit() and digits[0] != "0" and len(digits) <= 12):
                    return None
                from kvcalc.units import parse_tokens

                out[_INT_FLAGS[name]] = parse_tokens(value, name) if name == "--seq-len" else int(value)
            else:
                out[_STR_FLAGS[name]] = value
            continue
        if arg.startswith("-") or model is not None:
            return None
        model = arg
        i += 1
    if model is None or "seq_len" not in out:
        return None
    if out.get("units", "iec") not in ("iec", "si"):
        return None
    out["model"] = model
    return out


def try_fast(argv: list[str]) -> int | None:
    """Run ``estimate`` directly when the call is simple and the model built in; else None."""
    parsed = parse(argv)
    if parsed is None:
        return None
    from kvcalc.dtypes import canonical_dtype_name
    from kvcalc.errors import KvcalcError
    from kvcalc.registry import resolve_name

    if resolve_name(str(parsed["model"])) is None:
        return None
    try:
        canonical_dtype_name(str(parsed.get("kv_dtype", "auto")))
    except KvcalcError:
        return None
    from kvcalc.cli.run_estimate import EstimateArgs, run

    return run(EstimateArgs(config=None, **parsed))  # type: ignore[arg-type]
