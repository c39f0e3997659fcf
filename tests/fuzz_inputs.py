"""Hostile inputs shared by the fuzz and file-guard tests: malformed config files, nasty flag
values, and a runner that calls ``kvcalc.cli.main`` in-process with a hard time bound.

Not a test module (no ``test_`` prefix); pytest's default import mode puts ``tests/`` on
``sys.path``, so the test files import it by name.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kvcalc import loader

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"

# --- flag values ---------------------------------------------------------------------------

HUGE = 10**30
INT_VALUES = [
    "0", "-1", "1", "2", "3", "7", "16", "64", "4096", "32768", "1000000", "1000000000000",
    "1000000000001", str(HUGE), "-" + str(HUGE), "abc", "\u0663", "\uff11\uff12", "nan", "NaN", "inf",
    "-inf", "", "1e3", "0x10", "1.5", " 5", "1_000", "9" * 5000, "--", "-",
    "\u00b2",  # superscript two: str.isdigit() says yes, int() says no
]
"""Values for integer flags: zero, negative, huge, non-numeric, unicode digits, NaN, inf, empty,
a 5,000-digit number (past Python's 4,300-digit int parsing limit)."""

FLOAT_VALUES = [
    "0", "0.5", "0.9", "1", "1.0000001", "-0.1", "nan", "NaN", "inf", "-inf", "1e-300", "1e308",
    "1e309", str(HUGE), "", "\u0663", "0,9", "abc", "9" * 5000,
]
SIZE_VALUES = [
    "80GiB", "24GB", "512MiB", "1", "0", "0B", "-5GiB", "1.5GiB", "80 gib", "\u0663GiB", "GiB",
    str(HUGE) + "GiB", "1e400GB", "nan", "inf", "", "80XB", "9" * 5000 + "TB", "0.0000001GiB",
]
GARBAGE_STRINGS = [
    "", " ", "-", "--", "x" * 10_000, "../../../../etc/passwd", "\U0001f999", "llama\u200b-2-7b",
    "%s%n%x", "{}", "[]", "null", "a:b:c", "h100:0", "h100:-1", "h100:" + str(HUGE), "h100:x",
    "\u0663", "' OR 1=1 --", "$(touch PWNED)", "nvidia-h100-80gb:8",
    "h100:\u00b2", "h100:" + "9" * 5000, "cuda:\u00b2",
    # control characters in names and paths: echoed escaped, never raw (issue 14)
    "\x1b[2J", "llama\x07-2-7b", "a\nb", "\x1b]0;pwned\x07", "\u202eevil", "\r\x1b[1A", "csv:\x1b[2J.csv",
]
CONTROL_CHARS = "\x1b\x07\x08\x0b\x0c\x7f\x9b\u202e"
"""Characters that must never reach stdout or stderr raw (ESC, BEL, BS, VT, FF, DEL, CSI, RLO)."""
COLUMNS_VALUES = [None, "abc", "", "0", "-1", "1", "5", "80", "100000", "9" * 5000, "\u0663\u0663", " 80"]
"""COLUMNS for a run (None: unset): junk falls back on the default width, never an empty table."""
HOSTILE_NAME = "bad\x1b[2J\x07name.yaml"
"""A file that exists, is not a valid config, and has control characters in its name."""


def known_names() -> dict[str, list[str]]:
    """Real names of every kind (some of each), so fuzzing reaches past the name look-ups."""
    from kvcalc.dtypes import dtype_names
    from kvcalc.engines import engine_names
    from kvcalc.registry import builtin_names

    names: dict[str, list[str]] = {
        "model": builtin_names(), "engine": engine_names(), "dtype": ["auto", *dtype_names()],
    }
    try:
        from kvcalc.planner.gpus import gpu_names

        names["gpu"] = gpu_names()
    except ImportError:  # pragma: no cover - the planner is optional to this suite
        names["gpu"] = ["h100"]
    return names


# --- hostile files -------------------------------------------------------------------------

ALIAS_BOMB = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},"
       f"*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]" for i in range(8)]
) + "\n"
"""The "billion laughs": 9 levels of 9-way aliases expand to 9**9 strings if constructed."""

PYTHON_TAG = '!!python/object/apply:os.system ["echo pwned > PWNED_MARKER"]\n'
PYTHON_TAG_NESTED = (
    "name: x\nlayers:\n  - repeat: !!python/object/apply:os.getpid []\n"
    "    pattern: [{kind: full, num_kv_heads: 1, head_dim: 1}]\n"
)
MARKER = "PWNED_MARKER"


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def deep_yaml(depth: int) -> str:
    return "a: " + "[" * depth + "]" * depth + "\n"


def write_hostile_files(root: Path) -> dict[str, Path]:
    """Every kind of bad file, named by what is wrong with it."""
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def put(name: str, data: bytes | str) -> None:
        p = root / name
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        files[name] = p

    put("alias_bomb.yaml", ALIAS_BOMB)
    put("python_tag.yaml", PYTHON_TAG)
    put("python_tag_nested.yaml", PYTHON_TAG_NESTED)
    put("deep.json", deep_json(100_000))
    put("deep.yaml", deep_yaml(5_000))
    put("deep_ok_json.json", "{" + '"a":' * 20 + "1" + "}" * 20)
    put("binary.bin", bytes(range(256)) * 64)
    put("latin1.yaml", "name: caf\xe9\n".encode("latin-1"))
    put("bom.json", b"\xef\xbb\xbf" + b'{"model_type": "llama"}')
    put("huge.yaml", b"# " + b"x" * (loader.MAX_FILE_BYTES + 16) + b"\n")
    put("empty.yaml", "")
    put("scalar.yaml", "42\n")
    put("list.json", "[1, 2, 3]")
    put("null.json", "null")
    put("nan.json", '{"model_type": "llama", "num_hidden_layers": NaN, "hidden_size": Infinity}')
    put("bigint.json", '{"model_type": "llama", "num_hidden_layers": ' + "9" * 5000 + "}")
    put("bad.yaml", "name: [unclosed\n  - : :\n")
    put("bad.json", '{"a": ')
    put("tabs.yaml", "name:\t\tx\n\tlayers: 1\n")
    put("dup_keys.yaml", "name: a\nname: b\nlayers: []\n")
    put("hf_wrong_types.json", json.dumps({
        "model_type": "llama", "num_hidden_layers": "32", "hidden_size": [4096],
        "num_attention_heads": -1, "num_key_value_heads": 0, "torch_dtype": 5,
    }))
    put("hf_missing.json", json.dumps({"model_type": "llama"}))
    put("hf_extra.json", json.dumps({"model_type": "nonexistent-arch", "num_hidden_layers": 2}))
    put("hf_huge.json", json.dumps({
        "model_type": "llama", "num_hidden_layers": 10**30, "hidden_size": 10**30,
        "num_attention_heads": 10**15, "num_key_value_heads": 10**15, "max_position_embeddings": 10**30,
    }))
    put("kv_wrong_types.yaml", "name: 5\nlayers: {repeat: x}\n")
    put("kv_extra.yaml", "name: x\nlayers: []\nbogus: 1\n")
    put("kv_bad_kind.yaml", "name: x\nlayers:\n  - repeat: 2\n    pattern: [{kind: magic}]\n")
    put("kv_huge.yaml", "name: x\ndtype: fp16\nmax_position_embeddings: 1000000000000000\n"
        "num_attention_heads: 100000000000\nhidden_size: 10000000000000000000000\n"
        "layers:\n  - repeat: 1000000000000000000000\n"
        "    pattern: [{kind: full, num_kv_heads: 100000000000, head_dim: 100000000000}]\n")
    put("kv_many_layers.yaml", "name: x\ndtype: fp16\nmax_position_embeddings: 4096\n"
        "num_attention_heads: 1\nhidden_size: 1\n"
        "layers:\n  - repeat: 1000001\n    pattern: [{kind: full, num_kv_heads: 1, head_dim: 1}]\n")
    put(HOSTILE_NAME, "name: [unclosed\n")
    put("bool_count.yaml", "name: x\ndtype: fp16\nmax_position_embeddings: 4096\nnum_attention_heads: 8\n"
        "hidden_size: 64\nlayers:\n  - repeat: true\n    pattern: [{kind: full, num_kv_heads: yes, head_dim: 8.0}]\n")
    put("dup_heads.json", '{"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, '
        '"num_attention_heads": 8, "num_key_value_heads": 8, "num_key_value_heads": 1, '
        '"max_position_embeddings": 4096}')
    put("alias_text_bomb.yaml", "name: x\na: &a " + "x" * (1 << 20) + "\naliases: [" + ", ".join(["*a"] * 1000) + "]\n")
    put("log_garbage.log", "INFO GPU KV cache size: \u0663\u0663 tokens\n" * 50 + "x" * 5000 + "\n")
    d = root / "a_directory"
    d.mkdir(exist_ok=True)
    files["a_directory"] = d
    files["missing"] = root / "does_not_exist.yaml"
    fifo = root / "a_fifo"
    if not fifo.exists() and hasattr(os, "mkfifo"):
        os.mkfifo(fifo)
    if fifo.exists() and stat.S_ISFIFO(fifo.stat().st_mode):
        files["a_fifo"] = fifo
    return files


def good_files() -> list[Path]:
    """A few valid inputs, so that mutations and flags reach the deeper code."""
    out = sorted(FIXTURES.glob("*.json"))[:6]
    out += sorted((REPO / "model_configs").glob("*.yaml"))[:4]
    logs = FIXTURES / "logs"
    if logs.is_dir():
        out += sorted(p for p in logs.iterdir() if p.is_file())[:4]
    return out


# --- running the CLI -----------------------------------------------------------------------

class Hang(BaseException):
    """Raised by the alarm: a run took longer than its bound (not an Exception, so the funnel's
    last-resort handler cannot swallow it)."""


@dataclass
class Run:
    argv: list[str]
    exit_code: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def time_bound(seconds: int) -> Iterator[None]:
    def on_alarm(signum: int, frame: Any) -> None:
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def columns_env(value: str | None) -> Iterator[None]:
    old = os.environ.get("COLUMNS")
    if value is None:
        os.environ.pop("COLUMNS", None)
    else:
        os.environ["COLUMNS"] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def run_cli(argv: list[str], seconds: int = 20, *, columns: str | None = "110", ascii_streams: bool = False) -> Run:
    """``kvcalc.cli.main(argv)`` in-process, stdout and stderr captured apart, at most ``seconds``;
    ``columns`` is COLUMNS for the run (None: unset); ``ascii_streams`` gives both streams an ASCII
    encoding, as ``PYTHONIOENCODING=ascii`` does."""
    from kvcalc.cli import main

    if ascii_streams:
        raw_out, raw_err = io.BytesIO(), io.BytesIO()
        out: Any = io.TextIOWrapper(raw_out, encoding="ascii", errors="strict", write_through=True)
        err: Any = io.TextIOWrapper(raw_err, encoding="ascii", errors="strict", write_through=True)
    else:
        out, err = io.StringIO(), io.StringIO()
    with columns_env(columns), time_bound(seconds), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    if ascii_streams:
        out.flush()
        err.flush()
        return Run(list(argv), code, raw_out.getvalue().decode("ascii"), raw_err.getvalue().decode("ascii"))
    return Run(list(argv), code, out.getvalue(), err.getvalue())


def is_help(stdout: str) -> bool:
    """The contract for ``--help`` among other flags, ``--json`` included: help wins, exit 0."""
    return stdout.lstrip().startswith("Usage:")


_WRITES_ELSEWHERE = ("-o", "--output", "--plot")
"""Flags after which a successful run may leave stdout empty (the result went to a file)."""


def contract_violations(run: Run, json_flag: bool) -> list[str]:
    """What the run did wrong against the CLI contract (empty when it behaved)."""
    bad: list[str] = []
    lines = run.stderr.splitlines()
    if run.exit_code not in (0, 1, 2):
        bad.append(f"exit code {run.exit_code}")
    if "Traceback" in run.stderr or "Traceback" in run.stdout:
        bad.append("a traceback")
    raw = sorted({repr(c) for c in CONTROL_CHARS if c in run.stdout or c in run.stderr})
    if raw:
        bad.append(f"raw control characters reached the terminal: {', '.join(raw)}")
    if "internal error" in run.stderr:
        bad.append("an internal error (a raw exception reached the funnel)")
    errors = [ln for ln in lines if ln.startswith("Error:")]
    others = [ln for ln in lines if not ln.startswith(("Error:", "Warning:"))]
    if run.exit_code != 0:
        if others:
            bad.append(f"stderr lines that are neither Error: nor Warning: {others[:2]!r}")
        if len(errors) != 1:
            bad.append(f"{len(errors)} Error: lines")
        if run.stdout:
            bad.append("stdout not empty on error")
    else:
        if errors:
            bad.append("an Error: line with exit 0")
        if not run.stdout.strip() and not any(a.partition("=")[0] in _WRITES_ELSEWHERE for a in run.argv):
            bad.append("exit 0 with nothing on stdout (silent nothing)")
        if json_flag and not is_help(run.stdout):
            try:
                if not isinstance(json.loads(run.stdout), dict):
                    bad.append("--json output is not one JSON object")
            except ValueError:
                bad.append("--json output does not parse")
    return bad
