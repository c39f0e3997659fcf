"""``check-log``: read a vLLM (V1 or V0) or SGLang start-up log and set kvcalc's prediction for
the same inputs beside every logged figure.

Lines read (formats as the engines print them):

* vLLM config: ``Initializing ... engine (vX) with config: model='...', ... max_seq_len=N, ...
  tensor_parallel_size=N, ... kv_cache_dtype=...``; a ``vllm serve MODEL`` command line with
  ``--max-model-len``/``--tensor-parallel-size``/``-tp``/``--kv-cache-dtype``/``--block-size``.
* vLLM V1: ``Available KV cache memory: X GiB``, ``GPU KV cache size: N tokens``,
  ``Maximum concurrency for L tokens per request: X.XXx`` (two lines at 001cabc1, one line in
  newer releases such as 0.33.0, whose token figure is ``int(num_blocks / blocks per request x L)``:
  either form is recognised, and the check says which matched); early V1 / V0: ``# GPU blocks: N``
  (also ``# CUDA blocks`` / ``# cuda blocks``); V0 memory profiling: ``total_gpu_memory (X GiB) x
  gpu_memory_utilization (u)``, ``model weights take X GiB; non_torch_memory takes Y GiB; PyTorch
  activation peak memory takes Z GiB; the rest of the memory reserved for KV Cache is W GiB``;
  the fit error ``... max seq len (L), (X GiB KV cache is needed ... (Y GiB). ... is N``.
* SGLang: ``KV Cache is allocated. #tokens: N, K size: X GB, V size: Y GB`` ("GB" is GiB),
  ``max_total_num_tokens=N``, a ``launch_server --model-path/--model ... --tp N`` command line.

Each engine owns its lines: the patterns and the checks live in its ``Engine`` (``log_patterns``,
``reads_log``, ``check_log``); this module reads the file, collects what the log states and asks
every engine that recognises the log.

Logged GiB figures are rounded to 0.01 GiB; kvcalc predicts from the midpoint and gives the range
the rounding allows, so "matches" means the logged figure lies inside kvcalc's range.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvcalc.engines import get_engine
from kvcalc.engines.base import Engine
from kvcalc.engines.logcheck import Check, LogFacts, num
from kvcalc.errors import InvalidRequestError, UnknownNameError
from kvcalc.models import ModelConfig
from kvcalc.units import MiB

__all__ = ["Check", "LogCheck", "LogFacts", "check_log", "parse_log", "resolve_log_model"]

MAX_LOG_BYTES = 64 * MiB
LOG_ENGINES = ("vllm", "sglang")
"""Engines whose start-up logs kvcalc reads (each declares ``log_patterns``)."""
_CMD_FLAGS = {
    "--max-model-len": "max_model_len", "--tensor-parallel-size": "tp", "-tp": "tp", "--tp": "tp",
    "--tp-size": "tp", "--kv-cache-dtype": "kv_dtype", "--block-size": "block_size", "--model": "model",
    "--model-path": "model", "--context-length": "max_model_len",
}


def _engines() -> list[Engine]:
    return [get_engine(name) for name in LOG_ENGINES]


def _parse_command(line: str, facts: dict[str, Any]) -> None:
    words = line.split()
    for i, word in enumerate(words):
        key, _, inline = word.partition("=")
        name = _CMD_FLAGS.get(key)
        if name is None:
            continue
        value = inline or (words[i + 1] if i + 1 < len(words) else "")
        facts.setdefault(name, value)
    if "serve" in words:
        idx = words.index("serve")
        if idx + 1 < len(words) and not words[idx + 1].startswith("-"):
            facts.setdefault("model", words[idx + 1])


def parse_log(text: str) -> LogFacts:
    engines = _engines()
    patterns: dict[str, re.Pattern[str]] = {}
    for e in engines:
        patterns.update(e.log_patterns)
    values: dict[str, list[str]] = {}
    cmd: dict[str, Any] = {}
    engine: str | None = None
    for line in text.splitlines():
        for e in engines:
            if any(marker in line for marker in e.log_markers):
                engine = engine or e.log_engine
                _parse_command(line, cmd)
        for key, pattern in patterns.items():
            m = pattern.search(line)
            if m:
                values.setdefault(key, [g or "" for g in m.groups()])
    if engine is None:
        # No command line: the engine whose own lines the log prints (vLLM's first, as before).
        owners = [e.log_engine for e in engines if any(k in values for k in e.log_keys)]
        engine = owners[0] if owners else ("vllm" if values else None)
    model = cmd.get("model") or (values["model_cfg"][0] if "model_cfg" in values else None)
    mml = cmd.get("max_model_len") or (values["max_seq_len"][0] if "max_seq_len" in values else None)
    if mml is None and "concurrency" in values:
        mml = values["concurrency"][0]
    if mml is None and "fit_error" in values:
        mml = values["fit_error"][0]
    tp = cmd.get("tp") or (values["tp_cfg"][0] if "tp_cfg" in values else None)
    kvd = cmd.get("kv_dtype") or (values["kv_dtype_cfg"][0] if "kv_dtype_cfg" in values else None)
    return LogFacts(
        engine=engine, model=model, max_model_len=int(num(mml)) if mml else None, tp=int(tp) if tp else None,
        kv_dtype=kvd, block_size=int(cmd["block_size"]) if cmd.get("block_size") else None, values=values,
    )


@dataclass(frozen=True, kw_only=True)
class LogCheck:
    path: str
    engine: str | None
    model: str | None
    model_resolved: str | None
    max_model_len: int | None
    tp: int
    kv_dtype: str | None
    checks: list[Check]
    notes: list[str] = field(default_factory=list)

    @property
    def all_match(self) -> bool:
        return all(c.matches is not False for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["all_match"] = self.all_match
        return data


def resolve_log_model(name: str | None, override: ModelConfig | None) -> ModelConfig | None:
    if override is not None:
        return override
    if not name:
        return None
    from kvcalc.registry import get_builtin, resolve_name

    candidates = [name, name.rstrip("/").split("/")[-1], "/".join(name.rstrip("/").split("/")[-2:])]
    for cand in candidates:
        for variant in (cand, cand.lower(), re.sub(r"-(instruct|chat|hf)$", "", cand.lower())):
            if resolve_name(variant) is not None:
                return get_builtin(variant)
    return None


def check_log(path: str | Path, model: ModelConfig | None = None, *, tp: int | None = None,
              kv_dtype: str | None = None, block_size: int | None = None) -> LogCheck:
    p = Path(path)
    if not p.is_file():
        raise InvalidRequestError("FILE", str(path), "an engine log file")
    if p.stat().st_size > MAX_LOG_BYTES:
        raise InvalidRequestError("FILE", str(path), f"a log of at most {MAX_LOG_BYTES // MiB} MiB")
    facts = parse_log(p.read_text(encoding="utf-8", errors="replace"))
    resolved = resolve_log_model(facts.model, model)
    tp_used = tp or facts.tp or 1
    kvd = kv_dtype or facts.kv_dtype or "auto"
    bs = block_size or facts.block_size
    notes: list[str] = []
    checks: list[Check] = []
    if not facts.values:
        raise InvalidRequestError("FILE", str(path), "a vLLM or SGLang start-up log (no KV-cache lines found)")
    if resolved is None:
        notes.append(
            f"model {facts.model!r} is not a built-in model: pass MODEL or --config to predict"
            if facts.model else "the log names no model: pass MODEL or --config to predict"
        )
    if facts.values.get("total_gib"):
        checks.extend(_check_budget(facts))
    if resolved is not None:
        for engine in _engines():
            if not engine.reads_log(facts):
                continue
            try:
                # "auto" and the engine's own spellings (vLLM fp8_inc) as the engine reads them.
                dtype, _ = engine.resolve_kv_dtype(kvd, resolved)
            except UnknownNameError:
                where = "--kv-dtype" if kv_dtype else "the log's kv_cache_dtype"
                raise InvalidRequestError(
                    where, kvd, f"a KV dtype kvcalc sizes for {engine.name} (pass --kv-dtype to override the log's)",
                ) from None
            checks.extend(engine.check_log(facts, resolved, dtype, tp_used, bs))
    return LogCheck(path=str(p), engine=facts.engine, model=facts.model,
                    model_resolved=resolved.name if resolved else None, max_model_len=facts.max_model_len,
                    tp=tp_used, kv_dtype=kvd, checks=checks, notes=notes)


def _check_budget(facts: LogFacts) -> list[Check]:
    """V0 memory profiling: rest = total x utilization - weights - non-torch - activation (GiB)."""
    from decimal import Decimal

    total, util = facts.values["total_gib"]
    parts = [facts.first(k) for k in ("weights_gib", "non_torch_gib", "activation_gib")]
    rest = facts.first("rest_gib")
    if rest is None or any(x is None for x in parts):
        return []
    predicted = num(total) * num(util) - sum(num(x) for x in parts if x is not None)
    # Five figures each rounded to 0.005 GiB: the prediction is good to about +-0.02 GiB.
    diff = num(rest) - predicted
    return [Check(item="KV cache memory (GiB)", logged=rest, predicted=f"{predicted:.4f}", difference=f"{diff:+.4f}",
                  matches=abs(diff) <= Decimal("0.025"),
                  basis=f"{total} x {util} - weights - non-torch - activation, all as logged (rounded)")]
