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

Logged GiB figures are rounded to 0.01 GiB; kvcalc predicts from the midpoint and gives the range
the rounding allows, so "matches" means the logged figure lies inside kvcalc's range.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from kvcalc.dtypes import resolve_dtype
from kvcalc.errors import InvalidConfigError, InvalidRequestError, UnknownModelError
from kvcalc.models import ModelConfig
from kvcalc.units import GiB, MiB

MAX_LOG_BYTES = 64 * MiB
_NUM = r"([0-9][0-9,]*(?:\.[0-9]+)?)"
_PATTERNS: dict[str, re.Pattern[str]] = {
    "available_gib": re.compile(r"Available KV cache memory:\s*" + _NUM + r"\s*GiB"),
    "kv_tokens": re.compile(r"GPU KV cache size:\s*" + _NUM + r"\s*tokens"),
    "concurrency": re.compile(r"Maximum concurrency for\s*" + _NUM + r"\s*tokens per request:\s*" + _NUM + "x"),
    "blocks": re.compile(r"#\s*(?:GPU|CUDA|cuda|gpu)\s+blocks:\s*" + _NUM),
    "total_gib": re.compile(r"total_gpu_memory \(\s*" + _NUM + r"\s*GiB\) x gpu_memory_utilization \(\s*" + _NUM),
    "weights_gib": re.compile(r"model weights take\s*" + _NUM + r"\s*GiB"),
    "non_torch_gib": re.compile(r"non_torch_memory takes\s*" + _NUM + r"\s*GiB"),
    "activation_gib": re.compile(r"activation peak memory takes\s*" + _NUM + r"\s*GiB"),
    "rest_gib": re.compile(r"reserved for KV Cache is\s*" + _NUM + r"\s*GiB"),
    "fit_error": re.compile(r"max seq len \(" + _NUM + r"\), \(" + _NUM + r" GiB KV cache is needed.*?memory \("
                            + _NUM + r" GiB\)(?:.*?estimated maximum model length is " + _NUM + ")?"),
    "sglang_alloc": re.compile(r"KV Cache is allocated\. #tokens:\s*" + _NUM + r", K size:\s*" + _NUM
                               + r"\s*GB, V size:\s*" + _NUM + r"\s*GB"),
    "sglang_alloc_mla": re.compile(r"KV Cache is allocated\. #tokens:\s*" + _NUM + r", KV size:\s*" + _NUM + r"\s*GB"),
    "sglang_tokens": re.compile(r"max_total_num_tokens=\s*" + _NUM),
    "model_cfg": re.compile(r"model='([^']+)'"),
    "max_seq_len": re.compile(r"max_seq_len=([0-9]+)"),
    "tp_cfg": re.compile(r"tensor_parallel_size=([0-9]+)"),
    "kv_dtype_cfg": re.compile(r"kv_cache_dtype=([A-Za-z0-9_]+)"),
}
_CMD_FLAGS = {
    "--max-model-len": "max_model_len", "--tensor-parallel-size": "tp", "-tp": "tp", "--tp": "tp",
    "--tp-size": "tp", "--kv-cache-dtype": "kv_dtype", "--block-size": "block_size", "--model": "model",
    "--model-path": "model", "--context-length": "max_model_len",
}


@dataclass(frozen=True, kw_only=True)
class LogFacts:
    """What a log says (None where it does not say)."""

    engine: str | None = None
    model: str | None = None
    max_model_len: int | None = None
    tp: int | None = None
    kv_dtype: str | None = None
    block_size: int | None = None
    values: dict[str, list[str]] = field(default_factory=dict)
    """Raw captured numbers per pattern (strings as printed)."""

    def first(self, key: str, index: int = 0) -> str | None:
        found = self.values.get(key)
        return found[index] if found else None


def _num(text: str) -> Decimal:
    """A logged number, exactly as printed; anything else is a malformed log, not a crash."""
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation:
        raise InvalidConfigError("log", f"expected a number, found {text!r}") from None
    if not value.is_finite():
        raise InvalidConfigError("log", f"expected a finite number, found {text!r}")
    return value


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
    values: dict[str, list[str]] = {}
    cmd: dict[str, Any] = {}
    engine: str | None = None
    for line in text.splitlines():
        if "vllm serve" in line or "vllm.entrypoints" in line:
            engine = engine or "vllm"
            _parse_command(line, cmd)
        elif "sglang.launch_server" in line:
            _parse_command(line, cmd)
        for key, pattern in _PATTERNS.items():
            m = pattern.search(line)
            if m:
                values.setdefault(key, [g or "" for g in m.groups()])
    if engine is None:
        if any(k.startswith("sglang") for k in values) and not any(
            k in values for k in ("available_gib", "kv_tokens", "blocks", "rest_gib")
        ):
            engine = "sglang"
        elif values:
            engine = "vllm"
    model = cmd.get("model") or (values["model_cfg"][0] if "model_cfg" in values else None)
    mml = cmd.get("max_model_len") or (values["max_seq_len"][0] if "max_seq_len" in values else None)
    if mml is None and "concurrency" in values:
        mml = values["concurrency"][0]
    if mml is None and "fit_error" in values:
        mml = values["fit_error"][0]
    tp = cmd.get("tp") or (values["tp_cfg"][0] if "tp_cfg" in values else None)
    kvd = cmd.get("kv_dtype") or (values["kv_dtype_cfg"][0] if "kv_dtype_cfg" in values else None)
    return LogFacts(
        engine=engine, model=model, max_model_len=int(_num(mml)) if mml else None, tp=int(tp) if tp else None,
        kv_dtype=kvd, block_size=int(cmd["block_size"]) if cmd.get("block_size") else None, values=values,
    )


@dataclass(frozen=True, kw_only=True)
class Check:
    item: str
    logged: str
    predicted: str
    difference: str
    matches: bool | None
    """True when the logged figure is within kvcalc's prediction (range), None when not comparable."""
    basis: str


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


def _gib_range(text: str) -> tuple[int, int, int]:
    """(low, mid, high) bytes of a GiB figure printed with 2 decimals (floor at each end)."""
    v = _num(text)
    half = Decimal("0.005")
    return int((v - half) * GiB), int(v * GiB), int((v + half) * GiB)


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
        from kvcalc.engines import get_policy

        def engine_dtype(engine: str) -> Any:
            # "auto" as the engine reads it (vLLM and SGLang run a float32 config in 16 bits).
            name = get_policy(engine).auto_dtype(resolved)[0] if kvd == "auto" else kvd
            try:
                return resolve_dtype(name, resolved.dtype)
            except UnknownModelError:
                return resolve_dtype("auto", resolved.dtype)

        if facts.engine == "vllm" or any(k in facts.values for k in ("available_gib", "blocks", "kv_tokens")):
            checks.extend(_check_vllm(facts, resolved, engine_dtype("vllm"), tp_used, bs))
        if "sglang_alloc" in facts.values or "sglang_alloc_mla" in facts.values:
            checks.extend(_check_sglang(facts, resolved, engine_dtype("sglang"), tp_used))
    return LogCheck(path=str(p), engine=facts.engine, model=facts.model,
                    model_resolved=resolved.name if resolved else None, max_model_len=facts.max_model_len,
                    tp=tp_used, kv_dtype=kvd, checks=checks, notes=notes)


def _check_budget(facts: LogFacts) -> list[Check]:
    """V0 memory profiling: rest = total x utilization - weights - non-torch - activation (GiB)."""
    total, util = facts.values["total_gib"]
    parts = [facts.first(k) for k in ("weights_gib", "non_torch_gib", "activation_gib")]
    rest = facts.first("rest_gib")
    if rest is None or any(x is None for x in parts):
        return []
    predicted = _num(total) * _num(util) - sum(_num(x) for x in parts if x is not None)
    # Five figures each rounded to 0.005 GiB: the prediction is good to about +-0.02 GiB.
    diff = _num(rest) - predicted
    return [Check(item="KV cache memory (GiB)", logged=rest, predicted=f"{predicted:.4f}", difference=f"{diff:+.4f}",
                  matches=abs(diff) <= Decimal("0.025"),
                  basis=f"{total} x {util} - weights - non-torch - activation, all as logged (rounded)")]


def _check_vllm(facts: LogFacts, model: ModelConfig, dtype: Any, tp: int, bs: int | None) -> list[Check]:
    from kvcalc.engines import get_policy
    from kvcalc.planner.vllm_kv import build_layout, num_blocks_interval, vllm_kv

    out: list[Check] = []
    mml = facts.max_model_len or model.max_position_embeddings
    layout = build_layout(model.layer_specs, dtype, tp=tp, block_size=bs,
                          state_dtype=get_policy("vllm").state_dtype(dtype, model))
    avail_text = facts.first("available_gib") or facts.first("rest_gib")
    logged_blocks = int(_num(facts.values["blocks"][0])) if "blocks" in facts.values else None
    logged_tokens = int(_num(facts.values["kv_tokens"][0])) if "kv_tokens" in facts.values else None
    blocks_item = "blocks"
    if logged_blocks is None and logged_tokens is not None and len(layout.grouping.groups) == 1:
        logged_blocks = logged_tokens // layout.block_size
        blocks_item = "blocks (logged tokens / block size)"
    predicted_blocks: int | None = None
    if avail_text is not None:
        low, mid, high = _gib_range(avail_text)
        r = vllm_kv(model.layer_specs, dtype, mid, mml, tp=tp, block_size=bs, layout=layout)
        lo_b, hi_b = num_blocks_interval(low, high, r.block_bytes)
        predicted_blocks = r.num_blocks
        if logged_blocks is not None:
            out.append(Check(item=blocks_item, logged=f"{logged_blocks:,}", predicted=f"{lo_b:,}..{hi_b:,}",
                             difference=f"{logged_blocks - r.num_blocks:+,} vs midpoint {r.num_blocks:,}",
                             matches=lo_b <= logged_blocks <= hi_b,
                             basis=f"{avail_text} GiB +-0.005 // {r.block_bytes:,} B per block ({r.version})"))
        if logged_tokens is not None:
            # 001cabc1 (_report_kv_cache_config): num_blocks // groups x block size. Newer vLLM
            # (get_kv_cache_capacity, e.g. 0.33.0): int(num_blocks / blocks_per_request x L), L the
            # max model length. Both agree for one group with L a multiple of the block size;
            # the log is matched against either, and the check says which.
            lo_t = lo_b // r.num_groups * r.block_size
            hi_t = hi_b // r.num_groups * r.block_size
            req_len = int(_num(facts.values["concurrency"][0])) if "concurrency" in facts.values else mml
            bpr = r.blocks_per_request if r.max_model_len == req_len else vllm_kv(
                model.layer_specs, dtype, mid, req_len, tp=tp, block_size=bs, layout=layout).blocks_per_request
            lo_n, hi_n = (int(lo_b / bpr * req_len), int(hi_b / bpr * req_len)) if bpr else (0, 0)
            old_form = lo_t <= logged_tokens <= hi_t
            new_form = bool(bpr) and lo_n <= logged_tokens <= hi_n
            basis = "num_blocks // groups x block size (001cabc1 form)"
            predicted = f"{lo_t:,}..{hi_t:,}"
            if new_form and not old_form:
                basis = f"int(num_blocks / {bpr:,} blocks per request x {req_len:,}) (newer vLLM form)"
                predicted = f"{lo_n:,}..{hi_n:,}"
            elif not old_form:
                basis += f"; newer vLLM form int(num_blocks / {bpr:,} x {req_len:,}) gives {lo_n:,}..{hi_n:,}"
            out.append(Check(item="GPU KV cache size (tokens)", logged=f"{logged_tokens:,}",
                             predicted=predicted, difference=f"{logged_tokens - r.kv_cache_tokens:+,}",
                             matches=old_form or new_form, basis=basis + ", from the logged KV memory"))
        if "fit_error" in facts.values:
            length, needed, avail, est = facts.values["fit_error"]
            rr = vllm_kv(model.layer_specs, dtype, mid, int(_num(length)), tp=tp, block_size=bs, layout=layout)
            out.append(Check(item="KV needed for max seq len (GiB)", logged=needed,
                             predicted=f"{rr.needed_bytes / GiB:.2f}",
                             difference=f"{_num(needed) - Decimal(rr.needed_bytes) / GiB:+.2f}",
                             matches=f"{rr.needed_bytes / GiB:.2f}" == f"{_num(needed):.2f}",
                             basis="sum over groups of max_memory_usage_bytes (001cabc1)"))
            if est:
                pred = rr.estimated_max_model_len or 0
                lo_e = vllm_kv(model.layer_specs, dtype, low, int(_num(length)), tp=tp, block_size=bs,
                               layout=layout).estimated_max_model_len or 0
                hi_e = vllm_kv(model.layer_specs, dtype, high, int(_num(length)), tp=tp, block_size=bs,
                               layout=layout).estimated_max_model_len or 0
                out.append(Check(item="estimated maximum model length", logged=est, predicted=f"{lo_e:,}..{hi_e:,}",
                                 difference=f"{int(_num(est)) - pred:+,}", matches=lo_e <= int(_num(est)) <= hi_e,
                                 basis="binary search over the groups' usage (001cabc1)"))
    if "concurrency" in facts.values and logged_blocks is None and avail_text is not None:
        # No block count in the log (a hybrid model's newer-form token line): predict the
        # concurrency from the block range the logged memory allows.
        length, shown = facts.values["concurrency"]
        low, mid, high = _gib_range(avail_text)
        r3 = vllm_kv(model.layer_specs, dtype, mid, int(_num(length)), tp=tp, block_size=bs, layout=layout)
        lo_b, hi_b = num_blocks_interval(low, high, r3.block_bytes)
        lo_c, hi_c = f"{lo_b / r3.blocks_per_request:.2f}", f"{hi_b / r3.blocks_per_request:.2f}"
        out.append(Check(item=f"Maximum concurrency at {int(_num(length)):,} tokens", logged=f"{shown}x",
                         predicted=f"{lo_c}x..{hi_c}x" if lo_c != hi_c else f"{lo_c}x",
                         difference=f"{_num(shown) - Decimal(f'{r3.max_concurrency:.2f}'):+.2f}",
                         matches=Decimal(lo_c) <= _num(shown) <= Decimal(hi_c),
                         basis=f"{lo_b:,}..{hi_b:,} blocks / {r3.blocks_per_request:,} blocks per request"))
    if "concurrency" in facts.values and logged_blocks is not None:
        length, shown = facts.values["concurrency"]
        r2 = vllm_kv(model.layer_specs, dtype, 0, int(_num(length)), tp=tp, block_size=bs, layout=layout)
        bpr = layout.active[0].blocks_per_request(int(_num(length)), r2.max_num_batched_tokens)
        value = logged_blocks / bpr
        out.append(Check(item=f"Maximum concurrency at {int(_num(length)):,} tokens", logged=f"{shown}x",
                         predicted=f"{value:.2f}x", difference=f"{_num(shown) - Decimal(f'{value:.2f}'):+.2f}",
                         matches=f"{value:.2f}" == f"{_num(shown):.2f}",
                         basis=f"logged blocks {logged_blocks:,} / {bpr:,} blocks per request"))
    if predicted_blocks is None and logged_blocks is not None:
        implied = logged_blocks * layout.active[0].page_size_bytes * max(layout.active[0].group_size, 1)
        out.append(Check(item="KV cache memory implied by the blocks", logged=f"{logged_blocks:,} blocks",
                         predicted=f"{implied / GiB:.2f} GiB", difference="-", matches=None,
                         basis="blocks x block bytes (the log gives no memory figure to compare)"))
    return out


def _check_sglang(facts: LogFacts, model: ModelConfig, dtype: Any, tp: int) -> list[Check]:
    from kvcalc.specs import FullAttention, LatentAttention

    k = v = 0
    for s in model.layer_specs:
        r = s.shard(tp)
        if isinstance(r, LatentAttention):
            k += r.bytes_per_token(dtype)
        elif isinstance(r, FullAttention):
            k += dtype.row_bytes(r.num_kv_heads * r.head_dim)
            v += dtype.row_bytes(r.num_kv_heads * r.v_dim)
    out: list[Check] = []
    if "sglang_alloc" in facts.values:
        tokens, k_text, v_text = facts.values["sglang_alloc"]
        slots = int(_num(tokens)) + 1  # one dummy page of size 1
        for label, per, text in (("K size (GiB)", k, k_text), ("V size (GiB)", v, v_text)):
            pred = f"{slots * per / GiB:.2f}"
            out.append(Check(item=label, logged=text, predicted=pred, difference=f"{_num(text) - _num(pred):+.2f}",
                             matches=pred == f"{_num(text):.2f}",
                             basis=f"(#tokens {tokens} + 1 dummy slot) x {per:,} B per token per rank"))
    return out
