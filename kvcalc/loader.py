"""Read model files: kvcalc YAML, validated by pydantic v2 into the frozen dataclasses.

Safety (hardening): a size cap before reading, ``yaml.safe_load`` only (no Python object
tags), alias expansion bounded, nesting depth bounded. Every failure becomes one
``InvalidConfigError`` naming the file, the field, the value and what is allowed.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from kvcalc.errors import InvalidConfigError
from kvcalc.models import LayerGroup, ModelConfig, MoE, Source
from kvcalc.specs import SPEC_KINDS, Spec

MAX_FILE_BYTES = 4 << 20
"""Config files above this size are refused before reading (4 MiB; real configs are < 100 KiB)."""
MAX_ALIASES = 1000
"""YAML aliases (``*name``) allowed in one file; real configs use none."""
MAX_DEPTH = 32
"""Nesting of mappings and lists; real configs nest 3 or 4 deep."""
MAX_NODES = 1_000_000
"""Values a YAML document may expand to once its aliases are followed (a 4 MiB file with no
aliases holds at most about 2 million; a real config a few thousand)."""


MAX_EXPANDED_CHARS = 2 * MAX_FILE_BYTES
"""Characters of scalar text a YAML document may expand to once its aliases are followed: a
1 MiB anchor aliased 1,000 times is 1 GiB of text to build, echo and dump (``kvcalc import``),
though it is one node per alias; a file without aliases holds at most ``MAX_FILE_BYTES``."""


def read_text_capped(
    path: Path, what: str = "config file", *, max_bytes: int = MAX_FILE_BYTES, decode_errors: str = "strict",
    allow_binary: bool = False,
) -> str:
    """Read a text file kvcalc was given, refusing first what it must not read: a missing file
    ("not found"), a directory, a FIFO or device (``/dev/zero``, which would never end; a FIFO,
    which would block), a file over ``max_bytes`` (checked before reading and again while
    reading, for files that grow or lie about their size), NUL bytes unless ``allow_binary``,
    and text that is not UTF-8 unless ``decode_errors`` says otherwise."""
    import os
    import stat

    source = str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InvalidConfigError(source, f"not found: no such {what}") from None
    except (OSError, ValueError) as exc:  # permission, a name too long, a NUL byte in the name
        raise InvalidConfigError(source, f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InvalidConfigError(source, f"is a directory, expected a {what}")
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if (
            stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) else "not a regular file"
        raise InvalidConfigError(source, f"is {kind}, expected a {what} (a regular file)")
    if st.st_size > max_bytes:
        raise InvalidConfigError(
            source, f"file is {st.st_size:,} bytes; the limit for a {what} is {max_bytes:,} bytes"
        )
    try:
        with Path(path).open("rb") as fh:
            raw = fh.read(max_bytes + 1)
    except OSError as exc:
        raise InvalidConfigError(source, f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise InvalidConfigError(source, f"file exceeds {max_bytes:,} bytes")
    if b"\x00" in raw and not allow_binary:
        raise InvalidConfigError(source, f"is a binary file, expected a {what} (text)")
    try:
        return raw.decode("utf-8", errors=decode_errors)
    except UnicodeDecodeError as exc:
        raise InvalidConfigError(source, f"is not UTF-8 text (byte {exc.start})") from None


def _check_depth(obj: Any, source: str, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise InvalidConfigError(source, f"nesting deeper than {MAX_DEPTH} levels")
    if isinstance(obj, dict):
        for v in obj.values():
            _check_depth(v, source, depth + 1)
    elif isinstance(obj, list):
        for v in obj:
            _check_depth(v, source, depth + 1)


class _YamlBudget:
    """What one streaming pass over a YAML document's events has seen so far (``_scan_yaml_events``)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.depth = -1  # the top-level container is level 0, as in _check_depth
        self.aliases = 0
        self.nodes = 0
        self.chars = 0
        self.anchor_size: dict[str, tuple[int, int]] = {}  # anchor -> (values, characters) it expands to
        self.open_at: list[tuple[str | None, int, int]] = []
        # One frame per open collection: for a mapping, the keys seen and whether a key comes next.
        self.frames: list[tuple[set[str], list[bool]] | None] = []

    def child(self, key_text: str | None, mark: Any) -> None:
        """A node starts: if its parent is a mapping and it is a key, refuse a repeated one."""
        frame = self.frames[-1] if self.frames else None
        if frame is None:
            return
        keys, expect_key = frame
        if expect_key[0] and key_text is not None and key_text != "<<":  # '<<' merges by design
            if key_text in keys:
                line = f" at line {mark.line + 1}" if mark is not None else ""
                raise InvalidConfigError(
                    self.source, f"duplicate key {key_text!r}{line}: a key may appear once in a mapping"
                )
            keys.add(key_text)
        expect_key[0] = not expect_key[0]

    def alias(self, anchor: str) -> None:
        self.child(None, None)
        self.aliases += 1
        if self.aliases > MAX_ALIASES:
            raise InvalidConfigError(self.source, f"more than {MAX_ALIASES} YAML aliases")
        n, c = self.anchor_size.get(anchor, (1, 0))
        self.nodes += n
        self.chars += c

    def scalar(self, value: str, anchor: str | None, mark: Any) -> None:
        self.child(value, mark)
        self.nodes += 1
        self.chars += len(value)
        if anchor is not None:
            self.anchor_size[anchor] = (1, len(value))

    def start(self, anchor: str | None, is_mapping: bool) -> None:
        self.child(None, None)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise InvalidConfigError(self.source, f"nesting deeper than {MAX_DEPTH} levels")
        self.open_at.append((anchor, self.nodes, self.chars))
        self.frames.append((set(), [True]) if is_mapping else None)
        self.nodes += 1

    def end(self) -> None:
        self.depth -= 1
        self.frames.pop()
        anchor, start, start_chars = self.open_at.pop()
        if anchor is not None:
            self.anchor_size[anchor] = (self.nodes - start, self.chars - start_chars)

    def check(self) -> None:
        if self.nodes > MAX_NODES:
            raise InvalidConfigError(
                self.source, f"expands to more than {MAX_NODES:,} values (YAML aliases); refusing to build it"
            )
        if self.chars > MAX_EXPANDED_CHARS:
            raise InvalidConfigError(
                self.source, f"expands to more than {MAX_EXPANDED_CHARS:,} characters of text (YAML aliases); "
                "refusing to build it"
            )


def _scan_yaml_events(text: str, source: str, loader_cls: Any) -> None:
    """One streaming pass over the parser's events, before anything is built: stop at the
    first alias past ``MAX_ALIASES``, nesting past ``MAX_DEPTH``, a document whose aliases
    would expand to more than ``MAX_NODES`` values or ``MAX_EXPANDED_CHARS`` characters (the
    "billion laughs" is 81 aliases that expand to 9**9 strings, so counting aliases alone is not
    enough; one 1 MiB string aliased 1,000 times is few nodes but 1 GiB of text), or a key
    repeated in one mapping (the last would win silently: a second ``num_key_value_heads: 1``
    makes the answer 32x smaller). Stopping early matters: libyaml takes quadratic time over a
    long run of ``[[[[...``."""
    import yaml

    budget = _YamlBudget(source)
    for event in yaml.parse(text, Loader=loader_cls):
        if isinstance(event, yaml.AliasEvent):
            budget.alias(str(event.anchor))
        elif isinstance(event, yaml.ScalarEvent):
            budget.scalar(str(event.value), None if event.anchor is None else str(event.anchor), event.start_mark)
        elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            budget.start(None if event.anchor is None else str(event.anchor),
                         isinstance(event, yaml.MappingStartEvent))
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            budget.end()
        budget.check()


def parse_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load`` (no Python object tags) after a bounded scan of its events."""
    import yaml

    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        _scan_yaml_events(text, source, loader_cls)
        loader = loader_cls(text)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except InvalidConfigError:
        raise  # a ValueError too: not to be re-worded as a malformed value below
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if "nesting depth" in str(problem):
            # PyYAML >= 6.0.3 caps nesting itself (1,000 levels) while it scans ahead of the
            # events our scan sees; the file is refused for the same reason, so say so the same way.
            raise InvalidConfigError(source, f"nesting deeper than {MAX_DEPTH} levels{where}") from None
        raise InvalidConfigError(source, f"malformed YAML{where}: {problem}") from None
    except RecursionError:
        raise InvalidConfigError(source, f"nesting deeper than {MAX_DEPTH} levels") from None
    except (ValueError, OverflowError) as exc:
        # A scalar yaml cannot turn into a value: a 5,000-digit int (Python's 4,300-digit limit
        # on int parsing), a timestamp such as 2024-13-45.
        raise InvalidConfigError(source, f"malformed YAML value: {_short(exc)}") from None
    _check_depth(data, source)
    return data


def _short(exc: BaseException) -> str:
    text = str(exc).split(";")[0]
    return text if len(text) <= 120 else text[:117] + "..."


def _refuse_duplicate_keys(source: str) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise InvalidConfigError(source, f"duplicate key {key!r}: a key may appear once in an object")
            out[key] = value
        return out

    return hook


def parse_json(text: str, source: str) -> Any:
    """``json.loads`` with a repeated key refused (JSON's last-one-wins would silently change a
    number), nesting bounded, Python's big-int limit reported as a config error."""
    try:
        data = json.loads(text, object_pairs_hook=_refuse_duplicate_keys(source))
    except InvalidConfigError:
        raise  # a ValueError too: not to be re-worded as a malformed value below
    except json.JSONDecodeError as exc:
        raise InvalidConfigError(
            source, f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise InvalidConfigError(source, f"nesting deeper than {MAX_DEPTH} levels") from None
    except (ValueError, OverflowError) as exc:
        # json raises a plain ValueError for a number past Python's 4,300-digit int limit.
        raise InvalidConfigError(source, f"malformed JSON value: {_short(exc)}") from None
    _check_depth(data, source)
    return data


def _fields_of(cls: type) -> list[str]:
    import dataclasses

    return [f.name for f in dataclasses.fields(cls)]


def _format_validation_error(exc: Any, source: str, prefix: str, cls: type) -> InvalidConfigError:
    # An unknown (misspelt) key explains a "missing" one, so report it first.
    order = {"unexpected_keyword_argument": 0, "extra_forbidden": 0}
    err = sorted(exc.errors(), key=lambda e: order.get(e["type"], 1))[0]
    loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
    value = err.get("input")
    if err["type"] == "unexpected_keyword_argument" or err["type"] == "extra_forbidden":
        key = str(err["loc"][-1]) if err["loc"] else "?"
        allowed = _fields_of(cls) if not err["loc"][:-1] else []
        hint = difflib.get_close_matches(key, allowed, n=1)
        did = f"; did you mean {hint[0]!r}?" if hint else ""
        allowed_text = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return InvalidConfigError(source, f"unknown field {loc!r}{did}{allowed_text}")
    if err["type"] == "missing" or err["type"] == "missing_keyword_argument":
        return InvalidConfigError(source, f"missing required field {loc!r}")
    cause = (err.get("ctx") or {}).get("error")
    msg = cause.reason if isinstance(cause, InvalidConfigError) else err["msg"].removeprefix("Value error, ")
    return InvalidConfigError(source, f"field {loc!r} = {_shown(value)}: {msg}")


def is_count(value: object) -> bool:
    """A count is a real ``int``: never a bool (``true`` is not 1 head) nor a float (``8.0``)
    nor a string. The one test every count from a file or the API goes through."""
    return type(value) is int


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        import typing

        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _type_problem(tp: Any, value: Any) -> str | None:
    """What is wrong with ``value`` for the annotation ``tp``, checked strictly (no conversion),
    or None. Nested dataclasses and specs are checked where they are built."""
    import types
    import typing

    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is int:
        return None if is_count(value) else "expected an integer (a bool, float or string is never a count)"
    if tp is bool:
        return None if isinstance(value, bool) else "expected true or false"
    if tp is str:
        return None if isinstance(value, str) else "expected a string"
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        problems = [_type_problem(a, value) for a in args if a is not type(None)]
        return None if any(p is None for p in problems) else problems[0]
    if origin is typing.Literal:
        if any(type(value) is type(a) and value == a for a in args):
            return None
        return f"expected one of {', '.join(str(a) for a in args)}"
    if origin is list or origin is dict:
        return _container_problem(origin, args, value)
    return None


def _container_problem(origin: type, args: tuple[Any, ...], value: Any) -> str | None:
    if origin is list:
        if not isinstance(value, list):
            return "expected a list"
        items: list[tuple[str, Any]] = [(repr(v), v) for v in value]
        item_type = args[0] if args else None
    else:
        if not isinstance(value, dict):
            return "expected a mapping"
        bad_keys = [k for k in value if not isinstance(k, str)]
        if bad_keys:
            return f"key {bad_keys[0]!r}: expected a string"
        items = [(str(k), v) for k, v in value.items()]
        item_type = args[1] if len(args) == 2 else None
    for where, item in items:
        problem = None if item_type is None else _type_problem(item_type, item)
        if problem is not None:
            return f"{where}: {problem}"
    return None


def check_strict_types(cls: type, data: dict[Any, Any], source: str, prefix: str) -> None:
    """Refuse a value of the wrong type before pydantic converts it: its lax mode reads
    ``head_dim: true`` as 1, ``num_kv_heads: yes`` as True (1), ``repeat: 8.0`` as 8 and
    ``"32"`` as 32. pydantic's own strict mode refuses a mapping for a dataclass, so the check
    is explicit: every field annotated ``int``, ``bool``, ``str``, a ``Literal``, a list or a
    mapping of those gets exactly that type."""
    hints = _hints(cls)
    for key, value in data.items():
        tp = hints.get(key) if isinstance(key, str) else None
        if tp is None:
            continue
        problem = _type_problem(tp, value)
        if problem is not None:
            loc = ".".join(p for p in (prefix, str(key)) if p)
            raise InvalidConfigError(source, f"field {loc!r} = {_shown(value)}: {problem}")


def _shown(value: Any) -> str:
    shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _exactly(value: Any, hint: Any) -> bool:
    """Whether ``value`` is exactly of type ``hint`` as the schema writes it (no coercion: an int
    is an int, not a bool, a float or a numeric string). Unknown hint forms answer False."""
    import types
    import typing

    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if hint in (int, str, bool):
        return type(value) is hint
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_exactly(value, a) for a in args)
    if origin is typing.Literal:
        return any(type(value) is type(a) and value == a for a in args)
    if origin is list:
        return type(value) is list and all(_exactly(v, args[0]) for v in value)
    if origin is dict:
        return type(value) is dict and all(_exactly(k, args[0]) and _exactly(v, args[1]) for k, v in value.items())
    import dataclasses

    return isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, hint)


def _is_count(hint: Any) -> bool:
    import typing

    return hint is int or int in typing.get_args(hint)


def _fast(cls: type, data: dict[Any, Any], source: str, prefix: str) -> Any:
    """The schema's own checks without pydantic (its import and schema build cost ~200 ms on a
    cold start): when every key is a field, every required field is given and every value is
    exactly of its field's type, the frozen dataclass is built directly and its ``__post_init__``
    runs the cross-field checks, as pydantic would run them. A bool or a float where a count goes
    is refused here (pydantic would coerce ``true`` to 1); anything else unusual (a numeric
    string, an unknown or missing key) returns None, and pydantic validates and words the error."""
    import dataclasses

    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key not in fields:
            return None
        hint = hints[key]
        if type(value) in (bool, float) and _is_count(hint) and not _exactly(value, hint):
            loc = ".".join(p for p in (prefix, str(key)) if p)
            raise InvalidConfigError(source, f"field {loc!r} = {value!r}: expected an integer (a bool or a float "
                                             "is never a count)")
        if not _exactly(value, hint):
            return None
    for name, f in fields.items():
        if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            return None
    try:
        return cls(**data)
    except ValueError as exc:  # a __post_init__ check: worded as pydantic words it (see below)
        reason = exc.reason if isinstance(exc, InvalidConfigError) else str(exc)
        raise InvalidConfigError(source, f"field {prefix!r} = dict: {reason}") from None


def _validate(cls: type, data: Any, source: str, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise InvalidConfigError(
            source, f"{prefix or 'the file'} must be a mapping, got {type(data).__name__}"
        )
    built = _fast(cls, data, source, prefix)  # exact types: the dataclass's own checks, no pydantic
    if built is not None:
        return built
    check_strict_types(cls, data, source, prefix)  # never let pydantic coerce a bool/float/str count
    from pydantic import TypeAdapter, ValidationError

    try:
        return TypeAdapter(cls).validate_python(data)
    except ValidationError as exc:
        raise _format_validation_error(exc, source, prefix, cls) from None
    except (ValueError, TypeError) as exc:
        raise InvalidConfigError(source, f"{prefix or 'model'}: {exc}") from None


def _spec(data: Any, source: str, where: str) -> Spec:
    if not isinstance(data, dict):
        raise InvalidConfigError(source, f"{where} must be a mapping with a 'kind'")
    kind = data.get("kind")
    cls = SPEC_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        close = difflib.get_close_matches(str(kind), list(SPEC_KINDS), n=1)
        did = f"; did you mean {close[0]!r}?" if close else ""
        raise InvalidConfigError(
            source, f"field '{where}.kind' = {kind!r}: unknown layer kind{did} "
            f"(allowed: {', '.join(SPEC_KINDS)})"
        )
    spec: Spec = _validate(cls, data, source, where)
    return spec


def _check_layer_total(total: int, source: str, where: str) -> None:
    from kvcalc.estimate import MAX_LAYERS

    if total > MAX_LAYERS:
        raise InvalidConfigError(
            source, f"field {where!r} describes {total:,} layers: more than the limit of {MAX_LAYERS:,}"
        )


def model_from_data(data: Any, source: str) -> ModelConfig:
    """Validate plain data (a parsed kvcalc YAML) into a ``ModelConfig``."""
    if not isinstance(data, dict):
        raise InvalidConfigError(source, f"expected a mapping at the top level, got {type(data).__name__}")
    d = dict(data)
    allowed = _fields_of(ModelConfig)
    for key in d:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            did = f"; did you mean {hint[0]!r}?" if hint else ""
            raise InvalidConfigError(source, f"unknown field {str(key)!r}{did} (allowed: {', '.join(allowed)})")
    if "layers" in d and d["layers"] is not None:
        if not isinstance(d["layers"], list):
            raise InvalidConfigError(source, "field 'layers' must be a list of groups {repeat, pattern}")
        groups = []
        for gi, g in enumerate(d["layers"]):
            where = f"layers.{gi}"
            if not isinstance(g, dict):
                raise InvalidConfigError(source, f"{where} must be a mapping with 'repeat' and 'pattern'")
            pattern = g.get("pattern")
            if not isinstance(pattern, list):
                raise InvalidConfigError(source, f"field '{where}.pattern' must be a list of layer specs")
            g2 = dict(g)
            g2["pattern"] = [_spec(s, source, f"{where}.pattern.{si}") for si, s in enumerate(pattern)]
            groups.append(_validate(LayerGroup, g2, source, where))
        d["layers"] = groups
        _check_layer_total(sum(g.repeat * len(g.pattern) for g in groups), source, "layers")
    if isinstance(d.get("layout"), str):
        _check_layer_total(len(d["layout"]), source, "layout")
    if "legend" in d and d["legend"] is not None:
        if not isinstance(d["legend"], dict):
            raise InvalidConfigError(source, "field 'legend' must map layout characters to layer specs")
        d["legend"] = {str(k): _spec(v, source, f"legend.{k}") for k, v in d["legend"].items()}
    if isinstance(d.get("source"), dict):
        d["source"] = _validate(Source, d["source"], source, "source")
    if isinstance(d.get("moe"), dict):
        d["moe"] = _validate(MoE, d["moe"], source, "moe")
    model: ModelConfig = _validate(ModelConfig, d, source, "")
    return model


def hf_model_name(data: Any, source: str) -> str:
    """The name a Hugging Face config goes by when none is given (``--name``), never ``config``
    (the name every such file shares): a ``config.json`` is named by its folder (a hub cache
    snapshot by its ``org/name``: the folder is a commit hash), as the user knows the model; any
    other file by the config's ``_name_or_path`` (a hub id as written; a local path by its last
    part), else by its own name. A ``config.json`` with no folder name falls back to
    ``_name_or_path``."""
    import os.path

    p = Path(source)
    if p.stem == "config":
        parent = Path(os.path.abspath(source)).parent  # not resolve(): a hub snapshot's file links into blobs/
        if parent.parent.name == "snapshots" and parent.parent.parent.name.startswith("models--"):
            return parent.parent.parent.name[len("models--"):].replace("--", "/")
        if parent.name:
            return parent.name
    given = data.get("_name_or_path") if isinstance(data, dict) else None
    if isinstance(given, str) and given.strip().strip("/\\"):
        text = given.strip().rstrip("/\\")
        is_path = text.startswith((".", "/", "~", "\\")) or "\\" in text or text.count("/") > 1 or ":" in text
        return Path(text.replace("\\", "/")).name if is_path else text
    return p.stem


def looks_like_kvcalc(data: Any) -> bool:
    """kvcalc's schema has ``name`` and ``layers``/``layout``; a Hugging Face config has neither."""
    return isinstance(data, dict) and "name" in data and ("layers" in data or "layout" in data)


def load_model_file(path: str | Path, assume_standard: bool = False) -> ModelConfig:
    """Load a model from a kvcalc YAML file (or, by content, a Hugging Face config)."""
    p = Path(path)
    source = str(p)
    if p.is_dir():
        cfg = p / "config.json"
        if cfg.is_file():
            return _load_hf(cfg, assume_standard=assume_standard)
        raise InvalidConfigError(source, "is a directory without a config.json")
    if _is_gguf(p):  # kvcalc.gguf reads the header and tensor table (no tensor data), checking the magic
        from kvcalc.gguf import model_from_gguf, read_gguf

        return model_from_gguf(read_gguf(p))
    text = read_text_capped(p)
    stripped = text.lstrip()
    if stripped.startswith("{"):
        data = parse_json(text, source)
        if looks_like_kvcalc(data):
            return model_from_data(data, source)
        return _load_hf(p, data, assume_standard)
    data = parse_yaml(text, source)
    if isinstance(data, dict) and not looks_like_kvcalc(data) and (
        "model_type" in data or "num_hidden_layers" in data or "n_layer" in data
    ):
        return _load_hf(p, data, assume_standard)
    return model_from_data(data, source)


def _is_gguf(path: Path) -> bool:
    """A ``.gguf`` name (or a split part) goes to the GGUF reader, which checks the magic; anything
    else is text under the size cap, never opened past it."""
    return path.suffix.lower() == ".gguf"


def check_layer_counts(data: Any, source: str, depth: int = 0) -> None:
    """Refuse a physically absurd layer count (``num_hidden_layers``, ``n_layer``, ... anywhere in
    the file, e.g. inside ``text_config``) before any code builds one spec per layer."""
    from kvcalc.estimate import MAX_LAYERS

    if depth > MAX_DEPTH or not isinstance(data, dict):
        return
    for key, value in data.items():
        if isinstance(value, dict):
            check_layer_counts(value, source, depth + 1)
        elif (
            isinstance(key, str) and key.endswith(("layers", "n_layer"))
            and isinstance(value, int) and not isinstance(value, bool) and value > MAX_LAYERS
        ):
            raise InvalidConfigError(
                source, f"field {key!r} = {value:,}: more than the limit of {MAX_LAYERS:,} layers"
            )


def _load_hf(path: Path, data: Any = None, assume_standard: bool = False) -> ModelConfig:
    from kvcalc import hf

    if data is None:
        data = parse_json(read_text_capped(path), str(path))
    check_layer_counts(data, str(path))
    model = hf.load_hf_config(path, data, assume_standard=assume_standard)
    quant = data.get("quantization_config") if isinstance(data, dict) else None
    if isinstance(quant, dict):  # sizes the weights (kvcalc.planner.weights), never the cache
        import dataclasses

        model = dataclasses.replace(model, quantization_config=quant)
    return model
