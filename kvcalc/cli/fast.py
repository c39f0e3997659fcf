"""The lean start-up path for the commonest calls: ``kvcalc estimate MODEL --seq-len N`` (a
built-in, or ``--config FILE``) and ``kvcalc plan MODEL ...`` with its common flags.

typer, click and pydantic together cost about 150 ms to import here; this path parses the
simple flags by hand and calls the same ``run_estimate.run`` / ``plan_run.run_plan`` as the typer
commands. Anything it does not fully understand (another flag, a bad value, ``--help``) returns
None and the typer app handles it, so errors and help text come from one place. Tests check that
both paths print identical output.
"""

from __future__ import annotations

from typing import Any

_INT_FLAGS = {"--seq-len": "seq_len", "--batch": "batch"}
_STR_FLAGS = {"--kv-dtype": "kv_dtype", "--units": "units", "--config": "config", "-c": "config"}
_BOOL_FLAGS = {"--json": "json", "--explain": "explain"}


def _flag_value(argv: list[str], i: int, eq: str, value: str) -> tuple[str, int] | None:
    """The value of the flag at ``argv[i]`` (``--flag=V`` or ``--flag V``) and the index after it;
    None when the value is missing (typer then words the error)."""
    if eq:
        return value, i + 1
    if i + 1 >= len(argv):
        return None
    return argv[i + 1], i + 2


def _count_text(value: str, suffixes: tuple[str, ...] = ()) -> bool:
    """Plain decimal digits (optionally one of ``suffixes``, as ``parse_tokens`` takes them), no
    leading zero, at most 12 digits: anything else is typer's to refuse."""
    digits = value[:-1] if suffixes and value[-1:] in suffixes else value
    return digits.isascii() and digits.isdigit() and digits[0] != "0" and len(digits) <= 12


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
            taken = _flag_value(argv, i, eq, value)
            if taken is None:
                return None
            value, i = taken
            if name in _INT_FLAGS:
                # Plain decimal digits (a "k" suffix on --seq-len, as everywhere): else typer decides.
                if not _count_text(value, ("k", "K") if name == "--seq-len" else ()):
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
    if (model is None) == ("config" not in out) or "seq_len" not in out:
        return None
    if out.get("units", "iec") not in ("iec", "si"):
        return None
    out["model"] = model
    out.setdefault("config", None)
    return out


def try_fast(argv: list[str]) -> int | None:
    """Run ``estimate`` directly when the call is simple and the model built in; else None."""
    parsed = parse(argv)
    if parsed is None:
        return None
    from kvcalc.dtypes import canonical_dtype_name
    from kvcalc.errors import KvcalcError
    from kvcalc.registry import resolve_name

    if parsed["model"] is not None and resolve_name(str(parsed["model"])) is None:
        return None
    try:
        canonical_dtype_name(str(parsed.get("kv_dtype", "auto")))
    except KvcalcError:
        return None
    from kvcalc.cli.run_estimate import EstimateArgs, run

    return run(EstimateArgs(**parsed))  # type: ignore[arg-type]


# -- plan ----------------------------------------------------------------------------------------
_PLAN_INTS = {"--tp": "tp", "-tp": "tp", "--tensor-parallel-size": "tp", "--pp": "pp",
              "--pipeline-parallel-size": "pp", "--block-size": "block_size", "--users": "users",
              "--batch": "batch", "-b": "batch", "--max-num-seqs": "max_num_seqs",
              "--max-num-batched-tokens": "max_num_batched_tokens"}
_PLAN_TOKENS = {"--context": "max_model_len", "--max-model-len": "max_model_len"}
_PLAN_STRS = {"--config": "config", "-c": "config", "--gpu": "gpu", "--gpu-memory": "gpu_memory",
              "--kv-budget": "kv_budget", "--engine": "engine", "-e": "engine", "--kv-dtype": "kv_dtype",
              "--kv-cache-dtype": "kv_dtype", "--weight-dtype": "weight_dtype",
              "--activation-memory": "activation_memory", "--non-torch-memory": "non_torch_memory"}
_FRACTIONS = ("--gpu-memory-utilization", "--mem-fraction-static", "--free-gpu-memory-fraction")


def _plan_value(name: str, value: str) -> object | None:
    """A flag's value as the typer command would take it, or None to let typer decide."""
    if name in _PLAN_INTS:
        return int(value) if _count_text(value) else None
    if name in _PLAN_TOKENS:
        if not _count_text(value, ("k", "K", "m", "M")):
            return None
        from kvcalc.units import parse_tokens

        return parse_tokens(value, name)
    if name == "--kv-budget":
        return value  # zero or negative is an answer (nothing fits), as in the typer command
    return value if value and not value.startswith("-") else None


def parse_plan(argv: list[str]) -> dict[str, object] | None:
    if len(argv) < 2 or argv[0] != "plan":
        return None
    out: dict[str, object] = {"fractions": dict.fromkeys(_FRACTIONS)}
    model: str | None = None
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--json":
            out["json"] = True
            i += 1
            continue
        name, eq, value = arg.partition("=")
        known = name in _PLAN_INTS or name in _PLAN_TOKENS or name in _PLAN_STRS or name in _FRACTIONS
        if known:
            taken = _flag_value(argv, i, eq, value)
            if taken is None:
                return None
            value, i = taken
            parsed = _plan_value(name, value)
            if parsed is None:
                return None
            if name in _FRACTIONS:
                out["fractions"][name] = value  # type: ignore[index]
                continue
            key = _PLAN_INTS.get(name) or _PLAN_TOKENS.get(name) or _PLAN_STRS[name]
            if key in out:
                return None  # a repeated flag: typer's rule (the last wins) stays typer's
            out[key] = parsed
            continue
        if arg.startswith("-") or model is not None:
            return None
        model = arg
        i += 1
    out["model"] = model
    return out


def try_fast_plan(argv: list[str]) -> int | None:
    """Run ``plan`` directly when every flag is a common one; else None (typer decides)."""
    parsed = parse_plan(argv)
    if parsed is None:
        return None
    from kvcalc.cli.plan_run import run_plan

    fractions: dict[str, str | None] = parsed.pop("fractions")  # type: ignore[assignment]
    defaults: dict[str, object] = {"config": None, "engine": "vllm", "json": False, "max_model_len": None,
                                   "kv_dtype": "auto", "weight_dtype": "auto", "gpu": None, "gpu_memory": None,
                                   "kv_budget": None, "tp": None, "pp": 1, "block_size": None,
                                   "max_num_batched_tokens": None, "max_num_seqs": None, "activation_memory": None,
                                   "non_torch_memory": None, "users": None, "batch": None}
    args: dict[str, Any] = {**defaults, **parsed}
    model, config, engine = args.pop("model"), args.pop("config"), args.pop("engine")
    return run_plan(model, config, engine, fractions, json=bool(args.pop("json")), shared_prefix_tokens=0,
                    weights_path=None, **args)
