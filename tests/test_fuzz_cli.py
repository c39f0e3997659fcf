"""Fuzz every command of the CLI, discovered from the typer app at test time.

Each run must end with exit 0, 1 or 2; exactly one ``Error:`` line on stderr and an empty
stdout when it is not 0; never a traceback, never an ``internal error`` (a raw exception that
reached the funnel's last resort), never a hang (each run has a hard time bound), and with
``--json`` on success exactly one JSON object on stdout.

Profiles: the quick one (CI) runs a few hundred cases. ``KVCALC_FUZZ_EXAMPLES=10000 pytest
tests/test_fuzz_cli.py`` runs that many random cases instead (about 0.05-0.2 s each); the
``slow`` marker is not needed, the variable alone selects the profile. Set ``KVCALC_DEBUG=1``
with a failing argv to see the traceback.
"""

from __future__ import annotations

import json
import os
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
import yaml
from fuzz_inputs import (
    COLUMNS_VALUES,
    FLOAT_VALUES,
    GARBAGE_STRINGS,
    INT_VALUES,
    MARKER,
    SIZE_VALUES,
    Hang,
    contract_violations,
    good_files,
    known_names,
    run_cli,
    write_hostile_files,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ_EXAMPLES = int(os.environ.get("KVCALC_FUZZ_EXAMPLES", "0") or "0")
QUICK_EXAMPLES = 200
PER_RUN_SECONDS = int(os.environ.get("KVCALC_FUZZ_SECONDS", "20"))
"""A run slower than this is a hang (the alarm raises inside the run)."""

# Commands that allocate real memory get only small sizes here; test_fuzz_alloc.py checks
# that a huge request is refused before any allocation.
ALLOCATING = ("verify", "bench")


# Bugs the fuzz found in modules this suite does not own, reported to their owners. Each entry:
# an argv that reproduces it (test_known_bug_still_fails runs it and xfails while it is broken;
# once fixed the test fails, so the entry must be removed), and a matcher that keeps the fuzz and the
# sweep from tripping over the same bug again meanwhile.
KNOWN_BUGS: list[tuple[str, list[str], Callable[[list[str]], bool]]] = []


def _opt_value(argv: list[str], opt: str) -> list[str]:
    out = [a.partition("=")[2] for a in argv if a.startswith(opt + "=")]
    out += [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == opt]
    return out


# Empty now: the five bugs found on the first runs (NaN fractions in planner/budget.py, a
# non-numeric log value in planner/logs.py, --weights on a FIFO, one shard() per layer in
# estimate.py, bench --seed past int64) were fixed upstream and their entries removed when
# test_known_bug_still_fails reported them fixed. Entry form:
#   ("where: what", [argv...], lambda argv: argv[:1] == ["plan"] and ...)


def _known_bug(argv: list[str]) -> str | None:
    for reason, _example, matches in KNOWN_BUGS:
        if matches(argv):
            return reason
    return None


# --- discovering the commands ------------------------------------------------------------

@dataclass(frozen=True)
class Param:
    name: str
    opts: tuple[str, ...]
    positional: bool
    kind: str  # "flag", "int", "float", "enum", "path", "str"
    choices: tuple[str, ...]
    required: bool


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]
    params: tuple[Param, ...]

    @property
    def allocates(self) -> bool:
        return any(word in self.path for word in ALLOCATING)


def _annotation(p: Any) -> Any:
    ann = getattr(getattr(p, "type_descriptor", None), "annotation", None)
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    if typing.get_origin(ann) is not None and args:  # Optional[X], list[X]
        ann = args[0]
    return ann


def _param(p: Any) -> Param:
    ann = _annotation(p)
    positional = not any(o.startswith("-") for o in p.opts)
    choices: tuple[str, ...] = ()
    if getattr(p, "is_flag", False) or ann is bool:
        kind = "flag"
    elif isinstance(ann, type) and issubclass(ann, Enum):
        kind, choices = "enum", tuple(str(e.value) for e in ann)
    elif ann is int:
        kind = "int"
    elif ann is float:
        kind = "float"
    elif ann is Path:
        kind = "path"
    else:
        kind = "str"
    return Param(p.name or "", tuple(p.opts), positional, kind, choices, bool(p.required))


def discover() -> list[Command]:
    import typer.main

    from kvcalc.cli.app import app

    out: list[Command] = []

    def walk(cmd: Any, path: tuple[str, ...], inherited: tuple[Param, ...]) -> None:
        params = inherited + tuple(_param(p) for p in cmd.params)
        subs = getattr(cmd, "commands", None)
        if subs is not None:
            if path:  # a group that runs on its own (e.g. `models`)
                out.append(Command(path, params))
            for name, sub in sorted(subs.items()):
                # A group's own options go before the sub-command name, so they are not inherited.
                walk(sub, (*path, name), ())
        else:
            out.append(Command(path, params))

    walk(typer.main.get_command(app), (), ())
    return out


COMMANDS = discover()


def test_discovery_finds_the_commands() -> None:
    found = {" ".join(c.path) for c in COMMANDS}
    assert {"estimate", "models", "models show", "import", "version"} <= found
    est = next(c for c in COMMANDS if c.path == ("estimate",))
    kinds = {p.name: p.kind for p in est.params}
    assert kinds["seq_len"] == "int" and kinds["json"] == "flag" and kinds["units"] == "enum"


# --- files -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Runs happen in a scratch directory, so `-o`/`--plot` with a random name write there."""
    root = tmp_path_factory.mktemp("fuzz")
    old = Path.cwd()
    os.chdir(root)
    try:
        yield root
    finally:
        os.chdir(old)
    assert not (root / MARKER).exists(), "a YAML python tag executed code"


@pytest.fixture(scope="module")
def files(workdir: Path) -> dict[str, Path]:
    _import_heavy_modules_once()
    return write_hostile_files(workdir / "inputs")


def _import_heavy_modules_once() -> None:
    """Import torch (and transformers) before any run. The runs share one process and each is
    bounded by an alarm: an alarm that lands inside the first ``import torch`` (a few seconds on a
    loaded host) leaves a half-initialised module in ``sys.modules``, and every later run that
    needs torch then fails. That is Python's import machinery, not kvcalc: a real ``kvcalc`` process
    that is interrupted ends. A long run found it (28 bench cases after one slow import)."""
    import importlib

    for name in ("torch", "transformers"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _base_configs() -> list[dict[str, Any]]:
    bases: list[dict[str, Any]] = []
    for p in good_files():
        try:
            data = yaml.safe_load(p.read_text()) if p.suffix in (".yaml", ".yml", ".json") else None
        except (yaml.YAMLError, UnicodeDecodeError):
            continue
        if isinstance(data, dict):
            bases.append(data)
    return bases


BASES = _base_configs()
JSON_VALUES = st.recursive(
    st.none() | st.booleans()
    | st.sampled_from([0, -1, 1, 2, 3, 2**63, 10**12 + 1, 10**30, -(10**30)])
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=8,
)


@st.composite
def config_text(draw: st.DrawFn) -> bytes:
    """A valid config with a few mutations (keys dropped, retyped, added), as JSON or YAML;
    or random text or bytes."""
    how = draw(st.sampled_from(["mutate", "mutate", "mutate", "text", "bytes"]))
    if how == "text":
        return draw(st.text(max_size=300)).encode("utf-8", "surrogatepass")
    if how == "bytes":
        return draw(st.binary(max_size=300))
    data = json.loads(json.dumps(draw(st.sampled_from(BASES))))
    for _ in range(draw(st.integers(1, 4))):
        target = data
        # Sometimes reach into a nested mapping (layers.0.pattern.0, text_config, ...).
        for _depth in range(draw(st.integers(0, 3))):
            inner = [v for v in target.values() if isinstance(v, dict | list)]
            if not inner:
                break
            nxt = draw(st.sampled_from(inner))
            if isinstance(nxt, list):
                dicts = [x for x in nxt if isinstance(x, dict)]
                if not dicts:
                    break
                nxt = draw(st.sampled_from(dicts))
            target = nxt
        op = draw(st.sampled_from(["drop", "retype", "add"]))
        keys = sorted(target)
        if op == "drop" and keys:
            target.pop(draw(st.sampled_from(keys)))
        elif op == "retype" and keys:
            target[draw(st.sampled_from(keys))] = draw(JSON_VALUES)
        else:
            target[draw(st.text(max_size=10))] = draw(JSON_VALUES)
    if draw(st.booleans()):
        return json.dumps(data).encode()
    return yaml.safe_dump(data, allow_unicode=True).encode("utf-8", "surrogatepass")


# --- values --------------------------------------------------------------------------------

NAMES = known_names()
SMALL_INTS = ["0", "-1", "1", "2", "16", "abc", "\u0663", "nan", "", str(10**30)]
TINY = {"max_memory": "64MiB", "n": "4", "layers": "1", "d_model": "8", "heads": "1", "vocab": "8",
        "repeats": "1", "layers_sample": "1"}
"""Added to verify/bench runs unless drawn, so each stays a fraction of a second."""
SMALL_TEXT = [*["0", "-1", "1", "2", "16", "abc", "\u0663", "nan", "", str(10**30)], "1,2", "4..8", "1k", "8..2",
              "a..b", "1..1000000000000", ",,", ".."]
SMALL_SIZES = ["1MiB", "0", "-1GiB", "abc", "", "nan", "16KiB"]
OUT_PATHS = ["out.file", "no_such_dir/out.file", "inputs", "inputs/a_directory", "", "/proc/kvcalc-nope",
             "\u0663.out", "x" * 300]
"""Where commands may write (`-o`, `--plot`): relative to the scratch directory, never the inputs."""


def _hint(name: str) -> str:
    n = name.lower()
    for hint, words in (
        ("outpath", ("output", "plot", "save", "write", "report")),
        ("path", ("config", "file", "path", "log", "weights", "dir")),
        ("float", ("utilization", "fraction", "ratio")),
        ("size", ("memory", "budget", "size", "bytes")),
        ("gpu", ("gpu",)),
        ("engine", ("engine",)),
        ("dtype", ("dtype",)),
        ("model", ("model", "name")),
    ):
        if any(w in n for w in words):
            return hint
    return "any"


def value_strategy(param: Param, cmd: Command, paths: list[str]) -> st.SearchStrategy[str]:
    garbage = st.sampled_from(GARBAGE_STRINGS)
    text = st.text(st.characters(blacklist_characters="\x00"), max_size=40)
    path_st = st.sampled_from(paths) if paths else garbage
    if param.kind == "int":
        if cmd.allocates:
            return st.sampled_from(SMALL_INTS)
        return st.sampled_from(INT_VALUES) | st.integers(-5, 5000).map(str)
    if param.kind == "float":
        return st.sampled_from(FLOAT_VALUES) | st.floats().map(repr)
    if param.kind == "enum":
        return st.sampled_from(param.choices) | garbage
    hint = _hint(param.name)
    if param.kind == "path" and hint != "outpath":
        hint = "path"
    if hint == "size" and cmd.allocates:
        return st.sampled_from(SMALL_SIZES)
    if hint == "any" and cmd.allocates:
        return st.sampled_from(SMALL_TEXT)
    pools: dict[str, st.SearchStrategy[str]] = {
        "path": path_st,
        "outpath": st.sampled_from(OUT_PATHS),
        "gpu": st.sampled_from(NAMES["gpu"])
        | st.tuples(st.sampled_from(NAMES["gpu"]), st.sampled_from(INT_VALUES)).map(":".join),
        "size": st.sampled_from(SIZE_VALUES),
        "float": st.sampled_from(FLOAT_VALUES),
        "engine": st.sampled_from(NAMES["engine"]),
        "dtype": st.sampled_from(NAMES["dtype"]),
        "model": st.sampled_from(NAMES["model"]) | path_st,
        "any": st.sampled_from(NAMES["model"]) | st.sampled_from(SIZE_VALUES) | st.sampled_from(INT_VALUES),
    }
    return st.one_of(pools[hint], pools[hint], pools[hint], garbage, text)


@st.composite
def argv_for(draw: st.DrawFn, cmd: Command, paths: list[str]) -> tuple[list[str], bool]:
    """An argument list for one command, and whether ``--json`` was given as a flag."""
    positional: list[str] = []
    options: list[list[str]] = []
    json_flag = False
    for p in cmd.params:
        if not draw(st.booleans()) and not (p.required and draw(st.integers(0, 9)) > 0):
            continue
        if p.kind == "flag":
            options.append([p.opts[0]])
            json_flag = json_flag or p.name == "json"
            continue
        value = draw(value_strategy(p, cmd, paths))
        if p.positional:
            positional.append(value)
        else:
            opt = draw(st.sampled_from(p.opts))
            options.append([f"{opt}={value}"] if opt.startswith("--") and draw(st.booleans()) else [opt, value])
    drawn = {a.partition("=")[0] for group in options for a in group[:1]}
    for p in cmd.params:
        if cmd.allocates and p.name in TINY and not drawn & set(p.opts) and not (p.name == "n" and "--tokens" in drawn):
            # Keep real work tiny: the fuzz is about parsing; test_fuzz_alloc is about size.
            options.append([p.opts[0], TINY[p.name]])
    extra = draw(st.sampled_from([[], [], [], [], ["--bogus-flag"], ["extra-positional"], ["--help"]]))
    order = draw(st.permutations(options)) if options else []
    argv = [*cmd.path, *positional, *[a for group in order for a in group], *extra]
    # --help among other flags (even inside a value, e.g. a positional '-h...'): help wins and exits 0,
    # --json included; contract_violations accepts help text where JSON was asked for.
    return argv, json_flag


def _paths(files: dict[str, Path]) -> list[str]:
    return [str(p) for p in files.values()] + [str(p) for p in good_files()] + ["", "-", "/"]


KNOWN_SKIPPED: list[str] = []
"""Cases the fuzz generated that match a known bug (counted in the long profile's summary)."""


def _check(argv: list[str], json_flag: bool, *, columns: str | None = "110", ascii_streams: bool = False) -> None:
    reason = _known_bug(argv)
    if reason:
        KNOWN_SKIPPED.append(reason)
        return
    run = run_cli(argv, PER_RUN_SECONDS, columns=columns, ascii_streams=ascii_streams)
    bad = contract_violations(run, json_flag)
    env = f"COLUMNS={columns!r}{' PYTHONIOENCODING=ascii' if ascii_streams else ''} "
    assert not bad, (f"{env}kvcalc {argv!r}: {'; '.join(bad)}\nstdout={run.stdout[:300]!r}\n"
                     f"stderr={run.stderr[:600]!r}")


# --- the fuzz ----------------------------------------------------------------------------

def _fuzz_case(data: st.DataObject, files: dict[str, Path], workdir: Path) -> None:
    cmd = data.draw(st.sampled_from(COMMANDS), label="command")
    paths = _paths(files)
    if data.draw(st.integers(0, 3)) == 0:
        # A fresh malformed config for this case.
        generated = workdir / "inputs" / "generated.cfg"
        generated.write_bytes(data.draw(config_text(), label="config"))
        paths = [str(generated)] * 5 + paths
    argv, json_flag = data.draw(argv_for(cmd, paths), label="argv")
    # The environment too: junk COLUMNS (abc, '', 0, -1) and ASCII-only streams (issue 14).
    columns = data.draw(st.sampled_from(["110", *COLUMNS_VALUES]), label="COLUMNS")
    ascii_streams = data.draw(st.integers(0, 4), label="ascii") == 0
    _check(argv, json_flag, columns=columns, ascii_streams=ascii_streams)


def test_fuzz_every_command(files: dict[str, Path], workdir: Path) -> None:
    """Random argument lists for random commands. The quick profile (CI) stops at the first
    failure and shrinks it; the long one (KVCALC_FUZZ_EXAMPLES=N) runs all N cases, collects
    every failure, and prints ``fuzz: N cases, M failures`` (also written to the file named by
    KVCALC_FUZZ_REPORT)."""
    cases = 0
    failures: list[str] = []
    report = os.environ.get("KVCALC_FUZZ_REPORT")

    @settings(
        max_examples=FUZZ_EXAMPLES or QUICK_EXAMPLES,
        deadline=None,  # the hard bound is PER_RUN_SECONDS (an alarm), not hypothesis' clock
        suppress_health_check=list(HealthCheck),
        derandomize=not FUZZ_EXAMPLES,  # CI: the same cases every time; the long profile explores
        database=None,
    )
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        nonlocal cases
        cases += 1
        if report and cases % 250 == 0:
            Path(report).write_text(f"progress: {cases} cases, {len(failures)} failures\n")
        if not FUZZ_EXAMPLES:
            _fuzz_case(data, files, workdir)
            return
        try:
            _fuzz_case(data, files, workdir)
        except (AssertionError, Hang) as exc:
            failures.append(str(exc).splitlines()[0])

    fuzz()
    summary = (f"fuzz: {cases} cases, {len(failures)} failures, "
               f"{len(KNOWN_SKIPPED)} cases skipped as known bugs ({len(set(KNOWN_SKIPPED))} distinct)")
    print(summary)
    if report:
        Path(report).write_text(summary + "\n" + "\n".join(failures) + "\n")
    assert not failures, summary + "\n" + "\n".join(sorted(set(failures))[:40])


def _base_value(p: Param, names: dict[str, list[str]], files: list[Path]) -> str | None:
    """A plausible valid value, so that a sweep over one parameter reaches deep code."""
    hint = _hint(p.name)
    if p.kind == "flag":
        return None
    if p.kind == "int":
        return "64" if p.name not in ("tp", "pp") else "1"
    if p.kind == "enum":
        return p.choices[0]
    if p.name in ("file", "log"):
        logs = [f for f in files if f.suffix == ".log"]
        return str(logs[0]) if logs else str(files[0])
    if hint == "model" and p.positional:
        return "llama-2-7b" if "llama-2-7b" in names["model"] else names["model"][0]
    if hint == "gpu":
        return "h100"
    if p.required and hint == "path":
        return str(files[0])
    if p.required:
        return names["model"][0]
    return None


SWEEP_INTS = ["0", "-1", "1", "1000000000001", str(10**30), "abc", "\u0663", "nan", "", "9" * 5000]
SWEEP_FLOATS = ["0", "0.9", "1.0000001", "-0.1", "nan", "inf", "1e309", "", "abc", "\u0663"]
SWEEP_SIZES = ["80GiB", "0", "-5GiB", str(10**30) + "GiB", "nan", "", "80XB", "\u0663GiB"]
"""The sweep's values: one of each kind of trouble (the random fuzz draws from the full lists)."""


def _sweep_values(target: Param, cmd: Command, paths: list[str]) -> list[str]:
    if target.kind == "flag":
        return [""]
    if target.kind == "int":
        return SMALL_INTS if cmd.allocates else SWEEP_INTS
    if target.kind == "float":
        return SWEEP_FLOATS
    if target.kind == "enum":
        return [*target.choices, "bogus", ""]
    hint = _hint(target.name)
    if target.kind == "path" and hint != "outpath":
        hint = "path"
    return {"path": paths, "outpath": OUT_PATHS, "size": SMALL_SIZES if cmd.allocates else SWEEP_SIZES,
            "float": SWEEP_FLOATS}.get(hint, GARBAGE_STRINGS[:8])


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: "-".join(c.path))
def test_sweep_each_parameter(cmd: Command, files: dict[str, Path]) -> None:
    """Deterministic: every parameter of every command gets the nastiest values for its kind,
    the other parameters at plausible values (every value of INT_VALUES for integer flags)."""
    good = good_files()
    base: dict[str, str] = {}
    for p in cmd.params:
        v = _base_value(p, NAMES, good)
        if v is not None and (p.required or p.positional or p.name in ("seq_len", "gpu")):
            base[p.name] = v
        if cmd.allocates and p.name in TINY:
            base[p.name] = TINY[p.name]  # real work stays tiny
    paths = [str(f) for f in files.values()]
    for index, target in enumerate(cmd.params):
        values = _sweep_values(target, cmd, paths)
        if not FUZZ_EXAMPLES and len(values) > 4:
            # Quick profile: 4 values per parameter, rotating so that the parameters of a
            # command share out the whole list (test_file_guards covers every hostile file
            # directly); the long profile sweeps every value.
            values = [values[(index * 4 + j) % len(values)] for j in range(4)]
        for value in values:
            positional: list[str] = []
            options: list[str] = []
            for p in cmd.params:
                if target.name == "config" and p.name == "model":
                    continue  # MODEL and --config exclude each other; let the file be read
                v = value if p is target else base.get(p.name)
                if v is None:
                    continue
                if p.positional:
                    positional.append(v)
                elif p.kind == "flag":
                    options.append(p.opts[0])
                else:
                    options += [p.opts[0], v]
            _check([*cmd.path, *positional, *options], json_flag=target.name == "json")


@pytest.mark.parametrize("reason,argv", [(r, a) for r, a, _m in KNOWN_BUGS] or [("none", [])],
                         ids=lambda x: x if isinstance(x, str) else None)
def test_known_bug_still_fails(reason: str, argv: list[str], files: dict[str, Path]) -> None:
    if not argv:
        pytest.skip("no known bugs")
    argv = [str(files[a[1:]]) if a.startswith("@") else a for a in argv]  # @name: a hostile file
    try:
        run = run_cli(argv, 3)
    except Hang:
        pytest.xfail(f"{reason}: hangs")
    if contract_violations(run, json_flag=False):
        pytest.xfail(reason)
    pytest.fail(f"fixed? {reason}: remove it from KNOWN_BUGS")
