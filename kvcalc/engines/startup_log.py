"""``check-log``: every figure an engine's start-up log prints, beside what kvcalc predicts for it.

Which rules a figure is compared against follows from the log itself (``loglines.read_log``): the
version it prints, else the generation its line forms imply (``docs/engines.md`` §2). Each check
says the rules and the arithmetic it used. A figure kvcalc cannot compare (no model given, a pool
kvcalc does not model, a split decided by free memory) is listed with ``matches: None`` and the
reason, never counted as a match: ``all_match`` needs at least one figure compared and none off.

Logged GiB/MiB figures are rounded to 0.01; where a prediction starts from a logged figure,
kvcalc carries the interval the rounding allows (``+-0.005``) through the arithmetic, and a
figure "matches" when the logged value lies inside the predicted interval.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from kvcalc.dtypes import KVDtype, resolve_dtype
from kvcalc.engines.loglines import Found, LogReading, clean, integer, number, read_log
from kvcalc.engines.vllm_releases import Vllm020
from kvcalc.errors import InvalidRequestError, KvcalcError
from kvcalc.models import ModelConfig
from kvcalc.specs import FullAttention, LatentAttention, SlidingWindowAttention, Spec
from kvcalc.units import GiB, MiB

MAX_LOG_BYTES = 64 * MiB
HALF = Decimal("0.005")
"""Half the last printed digit of a figure printed with two decimals."""
ADVISORY_BUFFER_BYTES = 150 * MiB
"""The redundancy buffer of vLLM's ``--kv-cache-memory`` advisory (0.34.0 ``gpu_worker.py:1135``)."""
NEEDS_MODEL = "needs the model's shape: pass MODEL or --config"


@dataclass(frozen=True, kw_only=True)
class Check:
    item: str
    logged: str
    predicted: str
    difference: str
    matches: bool | None
    """True when the logged figure is inside kvcalc's prediction, None when not compared."""
    basis: str
    line: int = 0
    """The log line the figure is on (1-based; 0 when spread over lines)."""


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
    version: str | None = None
    """The engine version the log prints, if it prints one."""
    generation: str = ""
    rules: str = ""
    """The rules the figures were compared against, and why those."""

    @property
    def all_match(self) -> bool:
        compared = [c for c in self.checks if c.matches is not None]
        return bool(compared) and all(c.matches for c in compared)

    @property
    def not_compared(self) -> int:
        return sum(c.matches is None for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["all_match"] = self.all_match
        data["compared"] = len(self.checks) - self.not_compared
        data["not_compared"] = self.not_compared
        return data


@dataclass(frozen=True)
class Interval:
    """A quantity known to lie in [lo, hi] (Decimal GiB, MiB or a plain number)."""

    lo: Decimal
    hi: Decimal

    @staticmethod
    def printed(value: Decimal, half: Decimal = HALF) -> Interval:
        return Interval(value - half, value + half)

    def __add__(self, other: Interval) -> Interval:
        return Interval(self.lo + other.lo, self.hi + other.hi)

    def __sub__(self, other: Interval) -> Interval:
        return Interval(self.lo - other.hi, self.hi - other.lo)

    def __mul__(self, other: Interval) -> Interval:
        products = [self.lo * other.lo, self.lo * other.hi, self.hi * other.lo, self.hi * other.hi]
        return Interval(min(products), max(products))

    def meets(self, other: Interval) -> bool:
        return self.lo <= other.hi and other.lo <= self.hi

    def text(self, places: int = 3) -> str:
        q = Decimal(1).scaleb(-places)
        return f"{self.lo.quantize(q)}..{self.hi.quantize(q)}"


def _skip(item: str, logged: str, why: str, line: int = 0) -> Check:
    return Check(item=item, logged=logged, predicted="-", difference="-", matches=None, basis=why, line=line)


def _compare_rounded(item: str, logged_text: str, predicted: Interval, basis: str, line: int,
                     places: int = 3) -> Check:
    """A figure printed with two decimals against a predicted interval."""
    logged = number(logged_text, line)
    ok = Interval.printed(logged).meets(predicted)
    mid = (predicted.lo + predicted.hi) / 2
    q = Decimal(1).scaleb(-places)
    shown = f"{predicted.lo.quantize(q)}" if predicted.lo == predicted.hi else predicted.text(places)
    return Check(item=item, logged=logged_text, predicted=shown,
                 difference=f"{logged - mid:+.3f} vs midpoint", matches=ok, basis=basis, line=line)


# ----------------------------------------------------------------------------- entry point


def check_log(path: str | Path, model: ModelConfig | None = None, *, tp: int | None = None,
              kv_dtype: str | None = None, block_size: int | None = None, gpu: str | None = None,
              dcp: int | None = None, dp_attention: int | None = None) -> LogCheck:
    p = Path(path)
    if not p.is_file():
        raise InvalidRequestError("FILE", str(path), "an engine log file")
    if p.stat().st_size > MAX_LOG_BYTES:
        raise InvalidRequestError("FILE", str(path), f"a log of at most {MAX_LOG_BYTES // MiB} MiB")
    reading = read_log(p.read_text(encoding="utf-8", errors="replace"))
    if reading.engine is None:
        raise InvalidRequestError("FILE", str(path), "a vLLM, SGLang, TensorRT-LLM or llama.cpp start-up log "
                                                     "(no KV-cache line recognised)")
    return check_reading(reading, str(p), model, tp=tp, kv_dtype=kv_dtype, block_size=block_size, gpu=gpu,
                         dcp=dcp, dp_attention=dp_attention)


def check_reading(reading: LogReading, path: str, model: ModelConfig | None = None, *, tp: int | None = None,
                  kv_dtype: str | None = None, block_size: int | None = None, gpu: str | None = None,
                  dcp: int | None = None, dp_attention: int | None = None) -> LogCheck:
    name = reading.config("model")
    name = clean(name) if name else None
    resolved = model if model is not None else resolve_log_model(name)
    tp_text = reading.config("tp")
    tp_used = tp or (integer(tp_text, 0) if tp_text else 1)
    kvd = kv_dtype or reading.config("kv_dtype") or "auto"
    bs_text = reading.config("block_size")
    bs = block_size or (integer(bs_text, 0) if bs_text else None)
    mml = _max_model_len(reading)
    notes: list[str] = []
    if resolved is None:
        notes.append(f"model {name!r} is not a built-in model: figures that need its shape are listed, not "
                     "compared; pass MODEL or --config" if name else
                     "the log names no model: figures that need its shape are listed, not compared; pass MODEL "
                     "or --config")
    dcp_used, dpa_used = _parallel_layout(reading, tp_used, dcp, dp_attention, notes)
    ctx = _Ctx(reading=reading, model=resolved, tp=tp_used, kv_dtype=kvd, block_size=bs, gpu=gpu,
               max_model_len=mml, notes=notes, dcp=dcp_used, dp_attention=dpa_used)
    checks: list[Check] = []
    rules = ""
    if _has_vllm(reading):
        rules = _vllm_rules(ctx)
        checks += _check_vllm(ctx)
    if _has_sglang(reading):
        checks += _check_sglang(ctx)
        rules = "; ".join(x for x in (rules, "SGLang token pool (memory_pool.py; 'GB' there is GiB)") if x)
    if reading.engine == "trtllm":
        checks += _check_trtllm(ctx)
        rules = ("TensorRT-LLM kvCacheManager.cpp calculateMaxNumBlocks: ceil(floor(bytes x fraction / b) / "
                 "tokens_per_block) blocks; logged tokens = blocks x tokens_per_block")
    if reading.engine == "llama.cpp":
        checks += _check_llama_cpp(ctx)
        rules = "llama.cpp KV cache: n_ctx cells x layers, K and V rows in their cache types"
    return LogCheck(path=path, engine=reading.engine, model=name,
                    model_resolved=resolved.name if resolved else None, max_model_len=mml, tp=tp_used,
                    kv_dtype=kvd, checks=checks, notes=notes, version=reading.printed_version,
                    generation=reading.generation, rules=rules)


def _parallel_layout(reading: LogReading, tp: int, dcp: int | None, dp_attention: int | None,
                     notes: list[str]) -> tuple[int, int]:
    """(DCP size, attention-DP size) from the options, else from the log.

    vLLM ``decode_context_parallel_size`` (config line, ``-dcp``): each DCP rank of a TP group
    stores ``cdiv(L, dcp)`` tokens of a request, the tokens interleaved over the ranks (0.34.0
    ``v1/kv_cache_interface.py:654-659``); the release rules take it (``Vllm020.kv(dcp=)``).
    SGLang ``--enable-dp-attention --dp N``: attention TP = tp / N (0.5.23
    ``srt/layers/dp_attention.py:445-460``), each attention-DP rank holding the pool of its own
    requests; an MLA latent is one row either way (not split by TP), so a TP-only reading
    overstates the deployment's cache N-fold only in how many copies hold the same requests."""
    dcp_text = reading.config("dcp")
    dcp_used = dcp or (integer(dcp_text, 0) if dcp_text else 1)
    dpa_used = dp_attention or 1
    if dp_attention is None and reading.command.get("dp_attention"):
        dp_text = reading.command.get("dp")
        dpa_used = integer(dp_text, 0) if dp_text else 1
    for name, value in (("--dcp", dcp_used), ("--dp-attention", dpa_used)):
        if value < 1 or tp % value:
            raise InvalidRequestError(name, str(value), f"a divisor of the tensor-parallel size {tp}")
    if dcp_used > 1:
        notes.append(f"decode context parallel {dcp_used}: each rank stores cdiv(L, {dcp_used}) tokens of a "
                     "request (interleaved over the DCP ranks); figures are one rank's, the token figure as vLLM "
                     "scales it")
    if dpa_used > 1:
        notes.append(f"attention data parallel {dpa_used} (SGLang --enable-dp-attention): attention TP "
                     f"{tp} / {dpa_used} = {tp // dpa_used}; the pool printed is one attention-DP rank's, and each "
                     f"of the {dpa_used} ranks holds its own requests' cache")
    return dcp_used, dpa_used


@dataclass(frozen=True, kw_only=True)
class _Ctx:
    reading: LogReading
    model: ModelConfig | None
    tp: int
    kv_dtype: str
    block_size: int | None
    gpu: str | None
    max_model_len: int | None
    notes: list[str]
    dcp: int = 1
    dp_attention: int = 1

    @property
    def attention_tp(self) -> int:
        """The TP width the KV heads are split by (tp / attention-DP size)."""
        return self.tp // self.dp_attention

    def dtype(self, engine: str) -> KVDtype:
        """The cache dtype as the engine reads the log's ``kv_cache_dtype`` (its own spellings,
        such as vLLM's ``fp8_inc``, and what ``auto`` means to it)."""
        assert self.model is not None
        from kvcalc.engines import get_engine

        return get_engine(engine).resolve_kv_dtype(self.kv_dtype, self.model)[0]


def _max_model_len(reading: LogReading) -> int | None:
    text = reading.config("max_model_len")
    if text:
        return integer(text, 0)
    for key, index in (("concurrency", 0), ("tokens", 2), ("fit_error", 1), ("fit_error_v0", 0)):
        f = reading.first(key)
        if f is not None and len(f.groups) > index and f.groups[index]:
            return integer(f.groups[index], f.line)
    return None


def resolve_log_model(name: str | None) -> ModelConfig | None:
    """A built-in model from the name a log prints (an HF repo id or a local path), else None."""
    if not name:
        return None
    from kvcalc.registry import get_builtin, resolve_name

    base = name.rstrip("/")
    candidates = [base, base.split("/")[-1], "/".join(base.split("/")[-2:])]
    for cand in candidates:
        for variant in (cand, cand.lower(), re.sub(r"-(instruct|chat|hf)$", "", cand.lower())):
            try:
                if resolve_name(variant) is not None:
                    return get_builtin(variant)
            except KvcalcError:
                continue
    return None


# ----------------------------------------------------------------------------- vLLM


def _has_vllm(r: LogReading) -> bool:
    return any(r.has(k) for k in ("available", "tokens", "concurrency", "blocks", "v0_budget", "v0_parts",
                                  "v0_oneline", "v0_table_kv", "fit_error", "fit_error_v0", "advisory", "warmup"))


def _vllm_rules(ctx: _Ctx) -> str:
    from kvcalc.engines.loglines import vllm_generation
    from kvcalc.engines.vllm_releases import get_release, release_for_printed

    r = ctx.reading
    if r.printed_version and (r.first("vllm_version") or r.first("vllm_server_version")):
        return release_for_printed(r.printed_version)[1]
    gen = vllm_generation(r.found)[1]
    if "V0" in gen:
        return f"{gen}: V0 worker/executor arithmetic (budget lines, CacheEngine block size, blocks x block size)"
    if "0.34" in gen:
        return f"{gen}: {get_release('0.34').title}"
    if "0.28+" in gen:
        return f"{gen}: {get_release('0.33').title} (the nearest modelled release of this line form)"
    return f"{gen}: {get_release('0.20').title}; the token figure is matched in either form (0.20.0: blocks, " \
           "0.20.1+: int(concurrency x length))"


def _release(ctx: _Ctx) -> Vllm020:
    from kvcalc.engines.loglines import vllm_generation
    from kvcalc.engines.vllm_releases import get_release, release_for_printed

    r = ctx.reading
    if r.printed_version and (r.first("vllm_version") or r.first("vllm_server_version")):
        return release_for_printed(r.printed_version)[0]
    gen = vllm_generation(r.found)[1]
    if "0.34" in gen:
        return get_release("0.34")
    if "0.28+" in gen:
        return get_release("0.33")
    return get_release("0.20")


def _int_token_form(ctx: _Ctx, release: Vllm020) -> bool:
    """Whether the token figure is ``int(concurrency x length)``: releases from 0.20.1 on."""
    from kvcalc.engines.vllm_releases import _version_tuple

    if release.tokens_from_concurrency:
        return True
    printed = _version_tuple(ctx.reading.printed_version or "")
    return printed is not None and printed >= (0, 20, 1) and bool(ctx.reading.first("vllm_version")
                                                                    or ctx.reading.first("vllm_server_version"))


def _check_vllm(ctx: _Ctx) -> list[Check]:
    out: list[Check] = []
    out += _check_v0_budget(ctx.reading)
    out += _check_v0_blocks(ctx)
    out += _check_advisory(ctx.reading)
    out += _check_v1(ctx)
    out += _check_fit_error(ctx)
    return out


def _gib(f: Found, index: int) -> Interval:
    return Interval.printed(number(f.groups[index], f.line))


def _check_v0_budget(r: LogReading) -> list[Check]:
    """V0's budget arithmetic, every term as printed (0.6.4 worker.py:215-243; 0.6.5 table;
    0.7-0.10 worker.py two lines). ``gpu_memory_utilization`` is printed with 2 decimals: it is
    carried as the interval that rounding allows, like every GiB figure."""
    out: list[Check] = []
    if (f := r.first("v0_oneline")) is not None:
        total, peak, non_torch, kv = (_gib(f, i) for i in range(4))
        util = _gib(f, 4)
        out.append(_compare_rounded("KV cache memory (GiB)", f.groups[3], total * util - peak - non_torch,
                                    f"total {f.groups[0]} x utilization {f.groups[4]} - peak torch {f.groups[1]} - "
                                    f"non-torch {f.groups[2]} (vLLM 0.6.4 worker.py:215-217), each +-0.005", f.line))
        del kv
    table = [r.first(k) for k in ("v0_table_total", "v0_table_util", "v0_table_can_use", "v0_table_weights",
                                  "v0_table_non_torch", "v0_table_activation", "v0_table_kv")]
    if all(t is not None for t in table):
        tt, tu, tc, tw, tn, ta, tk = (t for t in table if t is not None)
        out.append(_compare_rounded("vLLM instance budget (GiB)", tc.groups[0], _gib(tt, 0) * _gib(tu, 0),
                                    f"total {tt.groups[0]} x utilization {tu.groups[0]}", tc.line))
        out.append(_compare_rounded("KV cache memory (GiB)", tk.groups[0],
                                    _gib(tc, 0) - _gib(tw, 0) - _gib(tn, 0) - _gib(ta, 0),
                                    "instance budget - weights - non-torch - activation peak (vLLM 0.6.5)", tk.line))
    b, parts = r.first("v0_budget"), r.first("v0_parts")
    if b is not None:
        out.append(_compare_rounded("vLLM instance budget (GiB)", b.groups[2], _gib(b, 0) * _gib(b, 1),
                                    f"total {b.groups[0]} x utilization {b.groups[1]} (printed to 2 decimals)",
                                    b.line))
    if b is not None and parts is not None:
        predicted = _gib(b, 0) * _gib(b, 1) - _gib(parts, 0) - _gib(parts, 1) - _gib(parts, 2)
        out.append(_compare_rounded("KV cache memory (GiB)", parts.groups[3], predicted,
                                    f"{b.groups[0]} x {b.groups[1]} - weights - non-torch - activation, as logged "
                                    "(each +-0.005; vLLM V0 worker.py)", parts.line))
    return out


def _v0_kv_text(r: LogReading) -> tuple[str, int] | None:
    for key, index in (("v0_oneline", 3), ("v0_parts", 3), ("v0_table_kv", 0)):
        f = r.first(key)
        if f is not None:
            return f.groups[index], f.line
    return None


def _check_v0_blocks(ctx: _Ctx) -> list[Check]:
    """V0 and early V1 (0.7) block lines. Concurrency = blocks x block size / max_model_len
    (0.6.4 executor/gpu_executor.py:115-118; V1 0.7 kv_cache_utils.py, vllm PR #13596) and the V0
    fit error's token count = block size x blocks (0.6.4 worker.py:496-503) need no model; the
    block count from the KV memory needs the block bytes, 2 x block x heads x head_dim x dtype x
    layers (0.6.4 worker/cache_engine.py:101-119)."""
    r = ctx.reading
    bf = r.first("blocks")
    if bf is None:
        return []
    out: list[Check] = []
    blocks = integer(bf.groups[0], bf.line)
    bs = ctx.block_size or 16
    if (c := r.first("concurrency")) is not None:
        length = integer(c.groups[0], c.line)
        value = Decimal(blocks * bs) / Decimal(length)
        shown = number(c.groups[1], c.line)
        out.append(Check(item=f"Maximum concurrency at {length:,} tokens", logged=f"{c.groups[1]}x",
                         predicted=f"{value:.2f}x", difference=f"{shown - round(value, 2):+.2f}",
                         matches=f"{value:.2f}" == f"{shown:.2f}",
                         basis=f"logged blocks {blocks:,} x block {bs} / {length:,} (V0 / V1 0.7 form)", line=c.line))
    if (fe := r.first("fit_error_v0")) is not None:
        logged_tokens = integer(fe.groups[1], fe.line)
        out.append(Check(item="tokens the KV cache can store (fit error)", logged=f"{logged_tokens:,}",
                         predicted=f"{blocks * bs:,}", difference=f"{logged_tokens - blocks * bs:+,}",
                         matches=logged_tokens == blocks * bs,
                         basis=f"block {bs} x logged blocks {blocks:,} (V0 worker.py raise_if_cache_size_invalid)",
                         line=fe.line))
    kv = _v0_kv_text(r)
    if kv is not None and "V0" in r.generation:
        if ctx.model is None:
            out.append(_skip("blocks", f"{blocks:,}", NEEDS_MODEL, bf.line))
        else:
            dtype = ctx.dtype("vllm")
            per_token = sum(s.shard(ctx.tp).bytes_per_token(dtype) for s in ctx.model.layer_specs if s.grows)
            block_bytes = bs * per_token
            kv_iv = Interval.printed(number(kv[0], kv[1]))
            lo, hi = int(kv_iv.lo * GiB) // block_bytes, int(kv_iv.hi * GiB) // block_bytes
            out.append(Check(item="blocks", logged=f"{blocks:,}", predicted=f"{lo:,}..{hi:,}",
                             difference=f"{blocks - (lo + hi) // 2:+,} vs midpoint", matches=lo <= blocks <= hi,
                             basis=f"{kv[0]} GiB +-0.005 // {block_bytes:,} B per block ({bs} tokens x "
                                   f"{per_token:,} B; V0 CacheEngine.get_cache_block_size)", line=bf.line))
    return out


_USAGE_OLD = re.compile(r"([0-9.]+) GiB for weight, ([0-9.]+) GiB for peak activation, ([0-9.]+) GiB for "
                        r"non-torch memory, and ([0-9.]+) GiB for CUDAGraph memory")
_USAGE_NEW = re.compile(r"([0-9.]+) GiB for consumed memory \(weights \+ non-torch\), ([0-9.]+) GiB for peak "
                        r"activation, and ([0-9.]+) GiB for CUDAGraph memory")


def _check_advisory(r: LogReading) -> list[Check]:
    """vLLM's ``--kv-cache-memory`` advisory (0.34.0 gpu_worker.py:1121-1177; 0.20.0 :610-663):
    B1 = requested - usage - 150 MiB and B2 = free at start-up - usage - 150 MiB, printed as exact
    byte counts beside GiB figures: B2 - B1 = free - requested exactly, and B1 from the printed
    terms within their rounding."""
    f = r.first("advisory")
    if f is None:
        return []
    free_t, total_t, util_t, req_t, usage, b1_t, b1g_t, b2_t, b2g_t, cur_t = f.groups
    m = _USAGE_OLD.fullmatch(usage) or _USAGE_NEW.fullmatch(usage)
    out: list[Check] = []
    b1, b2 = integer(b1_t, f.line), integer(b2_t, f.line)
    gap = Interval.printed(number(free_t, f.line)) - Interval.printed(number(req_t, f.line))
    out.append(_compare_rounded("advisory: free - requested (GiB)", f"{Decimal(b2 - b1) / GiB:.4f}", gap,
                                f"--kv-cache-memory {b2:,} - {b1:,} against free {free_t} - requested {req_t}",
                                f.line))
    out.append(_compare_rounded("advisory: --kv-cache-memory (GiB)", b1g_t,
                                Interval(Decimal(b1) / GiB, Decimal(b1) / GiB), f"{b1:,} B / 2**30", f.line))
    out.append(_compare_rounded("advisory: requested (GiB)", req_t,
                                Interval.printed(number(total_t, f.line)) * Interval(number(util_t, f.line),
                                                                                      number(util_t, f.line)),
                                f"total {total_t} x utilization {util_t}", f.line))
    out.append(_compare_rounded("advisory: --kv-cache-memory to fill the GPU (GiB)", b2g_t,
                                Interval(Decimal(b2) / GiB, Decimal(b2) / GiB), f"{b2:,} B / 2**30", f.line))
    avail = r.first("available")
    if avail is None:
        out.append(_skip("advisory: kv cache memory in use (GiB)", cur_t, "no 'Available KV cache memory' line",
                         f.line))
    else:
        out.append(_compare_rounded("advisory: kv cache memory in use (GiB)", cur_t,
                                    Interval.printed(number(avail.groups[0], avail.line)),
                                    f"the 'Available KV cache memory' line ({avail.groups[0]} GiB, the same bytes; "
                                    "0.34.0 gpu_worker.py:1121-1177)", f.line))
    if m is None:
        out.append(_skip("advisory: usage terms", usage[:60], "usage wording not recognised", f.line))
        return out
    terms = [Interval.printed(number(t, f.line)) for t in m.groups()]
    usage_iv = terms[0]
    for t in terms[1:]:
        usage_iv = usage_iv + t
    buffer = Interval(Decimal(ADVISORY_BUFFER_BYTES) / GiB, Decimal(ADVISORY_BUFFER_BYTES) / GiB)
    predicted = Interval.printed(number(req_t, f.line)) - usage_iv - buffer
    out.append(_compare_rounded("advisory: KV memory to fit the requested (GiB)", f"{Decimal(b1) / GiB:.4f}",
                                predicted, "requested - " + " - ".join(m.groups()) + " - 150 MiB", f.line))
    return out


def _tokens_found(r: LogReading) -> Tokens | None:
    t = r.first("tokens")
    if t is None:
        return None
    tokens = integer(t.groups[1], t.line)
    if t.groups[2]:
        return tokens, integer(t.groups[2], t.line), t.groups[3], t.line
    c = r.first("concurrency")
    if c is not None:
        return tokens, integer(c.groups[0], c.line), c.groups[1], t.line
    return tokens, None, None, t.line


Tokens = tuple[int, int | None, str | None, int]
"""(tokens, request length, concurrency as printed, line) from either token-line form."""


def _check_v1(ctx: _Ctx) -> list[Check]:
    r = ctx.reading
    if "V0" in r.generation:
        return []
    release = _release(ctx)
    found = _tokens_found(r)
    int_form = _int_token_form(ctx, release)
    out = _check_token_concurrency_pair(release, found) if int_form else []
    if ctx.model is None:
        return out + _v1_without_model(r, found, int_form)
    if "0.7 (# GPU blocks)" in r.generation:
        return out
    dtype = ctx.dtype("vllm")
    mml = ctx.max_model_len or ctx.model.max_position_embeddings
    kw: dict[str, Any] = {"tp": ctx.tp, "block_size": ctx.block_size, "gpu": ctx.gpu,
                          "state_dtype": _state_dtype(ctx, dtype), "dcp": ctx.dcp}
    warm, avail = r.first("warmup"), r.first("available")
    if warm is not None:
        return out + _check_warmup(ctx, release, warm, mml, kw)
    if found is None:
        return out
    if avail is None:
        return out + _check_tokens_without_memory(ctx, release, found, mml, kw, dtype)
    return out + _check_tokens_from_memory(ctx.model.layer_specs, dtype, release, found, avail, mml, kw)


def _check_token_concurrency_pair(release: Vllm020, found: Tokens | None) -> list[Check]:
    """From 0.20.1 the token figure is int(concurrency x length): the two printed figures check
    each other with no model."""
    if found is None:
        return []
    tokens, length, shown, line = found
    if length is None or shown is None:
        return []
    iv = Interval(Decimal(tokens) / length, Decimal(tokens + 1) / length)
    return [_compare_rounded(f"tokens / {length:,} against the logged concurrency", shown, iv,
                             f"int(concurrency x length) = {tokens:,} ({release.title}): the concurrency rounds "
                             "from [tokens, tokens + 1) / length", line, places=4)]


def _v1_without_model(r: LogReading, found: Tokens | None, int_form: bool) -> list[Check]:
    out: list[Check] = []
    if found is not None:
        out.append(_skip("GPU KV cache size (tokens)", f"{found[0]:,}", NEEDS_MODEL, found[3]))
        if found[1] is not None and not int_form:
            out.append(_skip(f"Maximum concurrency at {found[1]:,} tokens", f"{found[2]}x", NEEDS_MODEL, found[3]))
    if (w := r.first("warmup")) is not None:
        out.append(_skip("KV cache after warmup (GiB)", w.groups[3], NEEDS_MODEL, w.line))
    blocks_line = r.first("blocks")
    if blocks_line is not None and r.first("concurrency") is None:
        out.append(_skip("blocks", blocks_line.groups[0], NEEDS_MODEL, blocks_line.line))
    return out


def _check_tokens_from_memory(specs: Sequence[Spec], dtype: KVDtype, release: Vllm020, found: Tokens,
                              avail: Found, mml: int, kw: dict[str, Any]) -> list[Check]:
    """Blocks from the logged memory (+-0.005 GiB), then the token figure in the release's form
    (for 0.20 either form: 0.20.0 blocks x block size, 0.20.1-0.27 int(concurrency x length))."""
    from kvcalc.engines.vllm_releases import Vllm033

    tokens, length, shown, line = found
    req = length or mml
    mid = number(avail.groups[0], avail.line)
    low, base, high = (release.kv(specs, dtype, int((mid + d) * GiB), req, **kw) for d in (-HALF, Decimal(0), HALF))
    forms = [(release.title, low.kv_cache_tokens, high.kv_cache_tokens)]
    if release.key == "0.20":
        alt = Vllm033()
        forms.append(("0.20.1+ token form int(concurrency x length)",
                      alt.logged_tokens(low.num_blocks, low.num_groups, 0, low.max_concurrency, req),
                      alt.logged_tokens(high.num_blocks, high.num_groups, 0, high.max_concurrency, req)))
    hit = next((f for f in forms if f[1] <= tokens <= f[2]), None)
    form = hit or forms[0]
    out = [Check(item="GPU KV cache size (tokens)", logged=f"{tokens:,}", predicted=f"{form[1]:,}..{form[2]:,}",
                 difference=f"{tokens - base.kv_cache_tokens:+,} vs midpoint", matches=hit is not None,
                 basis=f"{avail.groups[0]} GiB +-0.005 -> {low.num_blocks:,}..{high.num_blocks:,} blocks of "
                       f"{base.block_bytes:,} B; {base.blocks_per_request:,} blocks a request; form: {form[0]}"
                       + ("" if hit else "; no form matched"), line=line)]
    if length is not None and shown is not None:
        lo_c, hi_c = (Decimal(x.num_blocks) / x.blocks_per_request for x in (low, high))
        out.append(_compare_rounded(f"Maximum concurrency at {length:,} tokens", shown, Interval(lo_c, hi_c),
                                    f"{low.num_blocks:,}..{high.num_blocks:,} blocks / {base.blocks_per_request:,} "
                                    f"blocks per request ({release.title})", line, places=3))
    return out


def _check_tokens_without_memory(ctx: _Ctx, release: Vllm020, found: Tokens, mml: int, kw: dict[str, Any],
                                 dtype: KVDtype) -> list[Check]:
    """No memory line (V1 0.7.3-0.8): with one KV-cache group the 0.20.0 token figure is blocks x
    block size, so the blocks follow from it and the concurrency from the blocks."""
    assert ctx.model is not None
    tokens, length, shown, line = found
    req = length or mml
    base = release.kv(ctx.model.layer_specs, dtype, 0, req, **kw)
    if base.num_groups != 1 or shown is None or length is None:
        return [_skip("GPU KV cache size (tokens)", f"{tokens:,}",
                      "no 'Available KV cache memory' line to predict it from", line)]
    blocks = tokens // base.block_size
    value = Decimal(blocks) / base.blocks_per_request
    printed = number(shown, line)
    return [Check(item=f"Maximum concurrency at {length:,} tokens", logged=f"{shown}x", predicted=f"{value:.2f}x",
                  difference=f"{printed - round(value, 2):+.2f}", matches=f"{value:.2f}" == f"{printed:.2f}",
                  basis=f"{tokens:,} tokens / block {base.block_size} = {blocks:,} blocks over "
                        f"{base.blocks_per_request:,} blocks a request (one group; {release.title})", line=line)]


def _state_dtype(ctx: _Ctx, dtype: KVDtype) -> KVDtype:
    from kvcalc.engines import get_policy

    assert ctx.model is not None
    return get_policy("vllm").state_dtype(dtype, ctx.model)


def _check_warmup(ctx: _Ctx, release: Vllm020, warm: Found, mml: int, kw: dict[str, Any]) -> list[Check]:
    """0.34's extensible cache: the measured block count is printed with its GiB
    (extensible_kv_cache.py:693-706); the token line that follows uses that count."""
    assert ctx.model is not None
    dtype = ctx.dtype("vllm")
    blocks = integer(warm.groups[2], warm.line)
    r = release.kv(ctx.model.layer_specs, dtype, 0, mml, **kw)
    size = Decimal(blocks * r.block_bytes) / GiB
    out = [_compare_rounded("KV cache after warmup (GiB)", warm.groups[3], Interval(size, size),
                            f"{blocks:,} blocks x {r.block_bytes:,} B ({release.title})", warm.line)]
    for item, text in (("free after warmup (GiB)", warm.groups[0]), ("committed to the KV cache (GiB)",
                                                                      warm.groups[1]),
                       ("requested KV memory (GiB)", warm.groups[4])):
        out.append(_skip(item, text, "measured on the device after warmup; not predicted from a log", warm.line))
    for e in ctx.reading.found.get("extended", []):
        ext_blocks = integer(e.groups[0], e.line)
        ext = Decimal(ext_blocks * r.block_bytes) / GiB
        out.append(_compare_rounded("extended KV cache (GiB)", e.groups[1], Interval(ext, ext),
                                    f"{ext_blocks:,} blocks x {r.block_bytes:,} B ({release.title})", e.line))
    found = _tokens_found(ctx.reading)
    if found is not None:
        tokens, length, _, line = found
        req = length or mml
        rr = release.kv(ctx.model.layer_specs, dtype, blocks * r.block_bytes, req, **kw)
        predicted = int(blocks / rr.blocks_per_request * req) if rr.blocks_per_request else 0
        out.append(Check(item="GPU KV cache size (tokens)", logged=f"{tokens:,}", predicted=f"{predicted:,}",
                         difference=f"{tokens - predicted:+,}", matches=tokens == predicted,
                         basis=f"int({blocks:,} measured blocks / {rr.blocks_per_request:,} x {req:,})", line=line))
    return out


def _check_fit_error(ctx: _Ctx) -> list[Check]:
    """V1's fit error, with or without an "Available KV cache memory" line: the memory it prints is
    what the check used (0.31+: the budget less one block), so the longest-context estimate is
    predicted from that figure directly; the needed figure from the model and the length."""
    f = ctx.reading.first("fit_error")
    if f is None:
        return []
    word, length_t, needed_t, avail_t, est_t = f.groups
    length = integer(length_t, f.line)
    release = _release(ctx)
    out: list[Check] = []
    wording = "before 0.22 ('models's')" if word == "models's" else "0.22 and later ('model's')"
    if ctx.reading.printed_version:
        out.append(Check(item="fit error wording", logged=word, predicted=release.fit_error_possessive,
                         difference="-", matches=word == release.fit_error_possessive,
                         basis=f"{release.title} prints {release.fit_error_possessive!r}", line=f.line))
    else:
        ctx.notes.append(f"the fit error's wording is that of vLLM {wording}")
    if ctx.model is None:
        out.append(_skip("KV needed for max seq len (GiB)", needed_t, NEEDS_MODEL, f.line))
        if est_t:
            out.append(_skip("estimated maximum model length", est_t, NEEDS_MODEL, f.line))
        return out
    dtype = ctx.dtype("vllm")
    kw: dict[str, Any] = {"tp": ctx.tp, "block_size": ctx.block_size, "gpu": ctx.gpu,
                          "state_dtype": _state_dtype(ctx, dtype), "dcp": ctx.dcp}
    base = release.kv(ctx.model.layer_specs, dtype, 0, length, **kw)
    needed = Decimal(base.needed_bytes) / GiB
    out.append(_compare_rounded("KV needed for max seq len (GiB)", needed_t, Interval(needed, needed),
                                f"sum over groups of the blocks one {length:,}-token request holds x block bytes "
                                f"({release.title})", f.line))
    avail = ctx.reading.first("available")
    if avail is not None and not release.holds_back_null_block:
        out.append(_compare_rounded("available memory in the fit error (GiB)", avail_t,
                                    Interval.printed(number(avail.groups[0], avail.line)),
                                    f"Available KV cache memory {avail.groups[0]} (the check uses all of it: "
                                    f"{release.title})", f.line))
    if avail is not None and release.holds_back_null_block:
        shown = Interval.printed(number(avail.groups[0], avail.line)) - Interval(
            Decimal(base.block_bytes) / GiB, Decimal(base.block_bytes) / GiB)
        out.append(_compare_rounded("available memory in the fit error (GiB)", avail_t, shown,
                                    f"Available KV cache memory {avail.groups[0]} - one block "
                                    f"({base.block_bytes:,} B, the null block)", f.line))
    if est_t:
        a = number(avail_t, f.line)
        lo_b, hi_b = int((a - HALF) * GiB), int((a + HALF) * GiB)
        # The printed memory is the one the search used: estimate with no further hold-back.
        est = [_estimate(release, ctx.model.layer_specs, dtype, b, length, kw) for b in (lo_b, hi_b)]
        logged = integer(est_t, f.line)
        out.append(Check(item="estimated maximum model length", logged=f"{logged:,}",
                         predicted=f"{est[0]:,}..{est[1]:,}", difference=f"{logged - est[0]:+,} vs low end",
                         matches=est[0] <= logged <= est[1],
                         basis=f"binary search over [1, {length:,}] against {avail_t} GiB +-0.005 ({release.title})",
                         line=f.line))
    return out


def _estimate(release: Vllm020, specs: Sequence[Spec], dtype: KVDtype, check_bytes: int, length: int,
              kw: dict[str, Any]) -> int:
    from kvcalc.engines import vllm_kv as vk

    choice = release.block_size(specs, dtype, gpu=kw["gpu"], block_size=kw["block_size"])
    layout = release.layout(specs, dtype, tp=kw["tp"], block_size=choice.block_size, state_dtype=kw["state_dtype"])
    in_flight = release.in_flight_tokens(vk.DEFAULT_MAX_NUM_BATCHED_TOKENS, 1)
    worker: vk.WorkerGroups = layout.active[0]
    dcp: int = kw.get("dcp", 1)
    # Under DCP the search runs on one rank's cdiv(L, dcp) tokens and reports E x dcp
    # (Vllm020.kv; 0.34.0 v1/kv_cache_interface.py:654-659).
    return worker.estimate_max_model_len(check_bytes, -(-length // dcp), in_flight) * dcp


# ----------------------------------------------------------------------------- SGLang and kvcached


def _has_sglang(r: LogReading) -> bool:
    return any(r.has(k) for k in ("sglang_alloc", "sglang_post_capture", "kvcached_virtual", "kvcached_physical"))


_TORCH_DTYPES = {"torch.bfloat16": "bf16", "torch.float16": "fp16", "torch.float32": "fp32",
                 "torch.float8_e4m3fn": "fp8_e4m3", "torch.float8_e5m2": "fp8_e5m2", "torch.uint8": "fp8_e4m3"}


def _sglang_row_bytes(specs: Sequence[Spec], tp: int, dtype: KVDtype, label: str) -> tuple[int, int, bool]:
    """(K, V) bytes of one token over the layers a pool holds; MLA one latent row, reported as
    "KV size" (memory_pool.py MHATokenToKVPool / MLATokenToKVPool). A "Full" pool holds the full
    layers, an "SWA" pool the sliding ones (swa_memory_pool.py:81, :92)."""
    k = v = 0
    latent = False
    for s in specs:
        if label == "SWA" and not isinstance(s, SlidingWindowAttention):
            continue
        if label == "Full" and isinstance(s, SlidingWindowAttention):
            continue
        r = s.shard(tp)
        if isinstance(r, LatentAttention):
            # The row the SGLang pool logs (engines/sglang_pool.py: the rank spec's bytes a token).
            k += r.bytes_per_token(dtype)
            latent = True
        elif isinstance(r, FullAttention):
            k += dtype.row_bytes(r.num_kv_heads * r.head_dim) + r.num_kv_heads * dtype.scale_bytes_per_token_head
            v += dtype.row_bytes(r.num_kv_heads * r.v_dim) + r.num_kv_heads * dtype.scale_bytes_per_token_head
    return k, v, latent


def _check_sglang(ctx: _Ctx) -> list[Check]:
    r = ctx.reading
    out: list[Check] = []
    page_text = ctx.reading.config("page_size")
    page = integer(page_text, 0) if page_text else 1
    lines: list[tuple[str, Found]] = [("alloc", f) for f in r.found.get("sglang_alloc", [])]
    lines += [("physical", f) for f in r.found.get("kvcached_physical", [])]
    for f in r.found.get("kvcached_virtual", []):
        out.append(_skip("kvcached virtual K size (GiB)", f.groups[-2],
                         "kvcached's virtual reservation is sized from the device, not from the pool; the "
                         "'Physical KV Cache limits' line is the pool", f.line))
    seen_unlabelled = 0
    for kind, f in lines:
        if kind == "alloc":
            label, state, dtype_text, tokens_t = f.groups[0], f.groups[1], f.groups[2], f.groups[3]
            k_t, v_t, kv_t = f.groups[4], f.groups[5], f.groups[6]
            if not label:
                seen_unlabelled += 1
        else:
            label, state, dtype_text, tokens_t = "", "is allocated", "", f.groups[0]
            k_t, v_t, kv_t = f.groups[1], f.groups[2], ""
        tokens = integer(tokens_t, f.line)
        prefix = f"{label} pool: " if label else ("kvcached physical: " if kind == "physical" else "")
        if kind == "alloc" and not label and seen_unlabelled > 1:
            for item, text in (("K size (GiB)", k_t), ("V size (GiB)", v_t), ("KV size (GiB)", kv_t)):
                if text:
                    out.append(_skip(f"second pool {item}", text, "a second allocation line: a draft model's "
                                     "pool (speculative decoding); pass the draft's config to check it", f.line))
            continue
        if not (k_t or kv_t):
            out.append(_skip(f"{prefix}#tokens", f"{tokens:,}", "the line prints no sizes to compare", f.line))
            continue
        if state == "VA upper bound":
            out.append(_skip(f"{prefix}K size (GiB)", k_t or kv_t, "a virtual-address upper bound, not the pool",
                             f.line))
            continue
        if ctx.model is None:
            for item, text in (("K size (GiB)", k_t), ("V size (GiB)", v_t), ("KV size (GiB)", kv_t)):
                if text:
                    out.append(_skip(prefix + item, text, NEEDS_MODEL, f.line))
            continue
        dtype = resolve_dtype(_TORCH_DTYPES.get(dtype_text, ""), ctx.model.dtype) if dtype_text in _TORCH_DTYPES \
            else ctx.dtype("sglang")
        k, v, latent = _sglang_row_bytes(ctx.model.layer_specs, ctx.attention_tp, dtype, label)
        slots = tokens + page
        pairs = [("KV size (GiB)", k, kv_t)] if kv_t else [("K size (GiB)", k, k_t), ("V size (GiB)", v, v_t)]
        tp_text = (f"; attention TP {ctx.attention_tp} = TP {ctx.tp} / DP attention {ctx.dp_attention}"
                   if ctx.dp_attention > 1 else "")
        for item, per, text in pairs:
            size = Decimal(slots * per) / GiB
            out.append(_compare_rounded(prefix + item, text, Interval(size, size),
                                        f"(#tokens {tokens:,} + page {page}) x {per:,} B a token over the pool's "
                                        f"layers ({dtype.name}{', MLA latent' if latent else ''}{tp_text}); printed "
                                        "as 'GB', which SGLang means as GiB (memory_pool.py GB = 1024**3)", f.line,
                                        places=4))
    return out + _sglang_other_lines(r, lines)


def _sglang_other_lines(r: LogReading, lines: list[tuple[str, Found]]) -> list[Check]:
    """The scheduler's ``max_total_num_tokens`` is the (full) pool's size again (0.5.23
    ``srt/managers/scheduler.py`` reads ``token_to_kv_pool_allocator.size``); the Mamba pool and the
    free memory after the pool are printed figures kvcalc does not predict from a log."""
    out: list[Check] = []
    pool = next((f for kind, f in lines if kind == "alloc" and f.groups[0] in ("", "Full")), None)
    for f in r.found.get("sglang_max_total", []):
        logged = integer(f.groups[0], f.line)
        if pool is None:
            out.append(_skip("max_total_num_tokens", f"{logged:,}", "no allocation line to compare with", f.line))
            continue
        tokens = integer(pool.groups[3], pool.line)
        out.append(Check(item="max_total_num_tokens", logged=f"{logged:,}", predicted=f"{tokens:,}",
                         difference=f"{logged - tokens:+,}", matches=logged == tokens,
                         basis=f"the pool's #tokens on line {pool.line} (the scheduler reads the allocator's size)",
                         line=f.line))
    for f in r.found.get("sglang_mamba", []):
        for item, text in (("Mamba conv_state size (GiB)", f.groups[1]), ("Mamba ssm_state size (GiB)", f.groups[2])):
            out.append(_skip(item, text, f"the Mamba state pool ({f.groups[0]} slots) is not checked by check-log",
                             f.line))
    for f in r.found.get("sglang_pool_end", []):
        out.append(_skip("avail mem after the pool (GiB)", f.groups[0], "free device memory as measured; not "
                         "predicted from a log", f.line))
    return out


# ----------------------------------------------------------------------------- llama.cpp


def _check_llama_cpp(ctx: _Ctx) -> list[Check]:
    """``llama_kv_cache_init``: one buffer per device (layers offloaded with ``-ngl`` keep their KV
    on their GPU, the rest in host memory), and ``KV self size`` = K + V over all layers. The sum
    and the totals need no device memory; which GPU holds how many layers follows the split of
    free memory (``--tensor-split``) and is listed, not compared."""
    r = ctx.reading
    out: list[Check] = []
    buffers = r.found.get("llama_kv_buffer", [])
    total_f = r.first("llama_kv_self")
    cells_f: Found | None = None
    if total_f is None and (s := r.first("llama_kv_size")) is not None:
        # Newer builds print the cache's own cell count (n_ctx, or n_ctx per slot when split).
        total_f = Found(groups=(s.groups[0], s.groups[3], s.groups[4], s.groups[5], s.groups[6]), line=s.line)
        cells_f = Found(groups=(s.groups[1],), line=s.line)
    if total_f is not None and buffers:
        sizes = [number(b.groups[1], b.line) for b in buffers]
        iv = Interval(sum(sizes, Decimal(0)) - HALF * len(sizes), sum(sizes, Decimal(0)) + HALF * len(sizes))
        out.append(_compare_rounded("KV self size = sum of device buffers (MiB)", total_f.groups[0], iv,
                                    " + ".join(f"{b.groups[0]} {b.groups[1]}" for b in buffers), total_f.line))
    if total_f is not None:
        k_iv, v_iv = Interval.printed(number(total_f.groups[2], total_f.line)), Interval.printed(
            number(total_f.groups[4], total_f.line))
        out.append(_compare_rounded("KV self size = K + V (MiB)", total_f.groups[0], k_iv + v_iv,
                                    f"K ({total_f.groups[1]}) {total_f.groups[2]} + V ({total_f.groups[3]}) "
                                    f"{total_f.groups[4]}", total_f.line))
    n_ctx_f = cells_f or r.first("llama_n_ctx")
    if total_f is None or n_ctx_f is None:
        return out
    if ctx.model is None:
        out.append(_skip("K (MiB)", total_f.groups[2], NEEDS_MODEL, total_f.line))
        out.append(_skip("V (MiB)", total_f.groups[4], NEEDS_MODEL, total_f.line))
        for b in buffers:
            out.append(_skip(f"{b.groups[0]} KV buffer (MiB)", b.groups[1], NEEDS_MODEL + " (and the split)",
                             b.line))
        return out
    specs = ctx.model.layer_specs
    if any(isinstance(s, SlidingWindowAttention) or not isinstance(s, FullAttention) for s in specs if s.grows):
        out.append(_skip("K (MiB)", total_f.groups[2], "llama.cpp's sliding-window and MLA caches are not compared "
                                                       "here", total_f.line))
        return out
    from kvcalc.dtypes import get_dtype

    n_ctx = integer(n_ctx_f.groups[0], n_ctx_f.line)
    if cells_f is not None and (st := r.first("llama_kv_streams")) is not None:
        # Non-unified -np N: N streams of n_ctx_seq cells each (llama-kv-cache.cpp n_stream).
        n_ctx *= integer(st.groups[2], st.line)
    k_dtype, v_dtype = get_dtype(total_f.groups[1]), get_dtype(total_f.groups[3])
    layer_k = [n_ctx * k_dtype.row_bytes(s.num_kv_heads * s.head_dim) for s in specs if isinstance(s, FullAttention)]
    layer_v = [n_ctx * v_dtype.row_bytes(s.num_kv_heads * s.v_dim) for s in specs if isinstance(s, FullAttention)]
    for item, text, total in (("K (MiB)", total_f.groups[2], sum(layer_k)),
                              ("V (MiB)", total_f.groups[4], sum(layer_v))):
        size = Decimal(total) / MiB
        out.append(_compare_rounded(item, text, Interval(size, size),
                                    f"{n_ctx:,} cells (all streams) x {len(layer_k)} layers' rows ({total:,} B)",
                                    total_f.line))
    host = [b for b in buffers if b.groups[0] in ("CPU", "CUDA_Host", "CPU_Mapped")]
    if (rep := r.first("llama_offloading_repeating")) is not None:
        return out + _check_llama_devices(r, rep, buffers, host, layer_k, layer_v)
    off = r.first("llama_offloaded")
    if off is not None and host:
        n_gpu = min(integer(off.groups[0], off.line), len(layer_k))
        host_layers = len(layer_k) - n_gpu
        size = Decimal(sum(layer_k[:host_layers]) + sum(layer_v[:host_layers])) / MiB
        out.append(_compare_rounded(f"{host[0].groups[0]} KV buffer (MiB)", host[0].groups[1], Interval(size, size),
                                    f"{host_layers} layers not offloaded ({len(layer_k)} - {n_gpu} with -ngl) keep "
                                    "their KV in host memory", host[0].line))
        for b in buffers:
            if b not in host:
                out.append(_skip(f"{b.groups[0]} KV buffer (MiB)", b.groups[1], "which GPU holds how many layers "
                                 "follows the split of free memory (--tensor-split); the sum is compared above",
                                 b.line))
    return out


def _check_llama_devices(r: LogReading, rep: Found, buffers: list[Found], host: list[Found], layer_k: list[int],
                         layer_v: list[int]) -> list[Check]:
    """Each ``<device> KV buffer size`` line against the layers ``load_tensors`` put there.

    ``offloaded X/Y layers to GPU``: X is the active layer count ``min(ngl, n_layer + 1)`` in every
    build; the last X - 1 repeating layers are on GPUs when the build also printed ``offloading
    output layer to GPU`` / ``offloading non-repeating layers to GPU``, else the last X (mid-2024
    builds with ngl <= n_layer, ``i_gpu_start = n_layer - ngl``); llama.cpp vendored by
    llama-cpp-python 0.3.36, llama-model.cpp:1589-1597, :1912-1924. Without that line, ``offloading
    N repeating layers`` gives N (and N + 1 active with the output line). Which GPU holds which
    layers follows ``--tensor-split`` from the command line, else each device's free memory as
    ``using device ... - M MiB free`` printed it (whole MiB, so the split is tried at both ends of
    each MiB and compared only when every end agrees)."""
    from kvcalc.engines.llama_cpp import assign_layers

    out: list[Check] = []
    n_layer = len(layer_k)
    output = r.has("llama_offloading_output")
    n_rep = min(integer(rep.groups[0], rep.line), n_layer)
    act = n_rep + 1 if output else n_rep
    if (off := r.first("llama_offloaded")) is not None:
        # "offloaded X/Y layers": X = min(ngl, n_layer + 1) = act_gpu_layers in every build. Newer
        # builds print "offloading n_layer - 1 repeating layers" when all are offloaded (ngl is
        # capped at n_layer before the output layer is taken off), so X decides.
        act = min(integer(off.groups[0], off.line), n_layer + 1)
        n_rep = min(act - 1 if output else act, n_layer)
    start = n_layer - n_rep
    per_layer = [k + v for k, v in zip(layer_k, layer_v, strict=True)]
    if host:
        size = Decimal(sum(per_layer[:start])) / MiB
        out.append(_compare_rounded(f"{host[0].groups[0]} KV buffer (MiB)", host[0].groups[1], Interval(size, size),
                                    f"{start} layers not offloaded ({n_layer} - {n_rep} repeating layers on GPUs) "
                                    "keep their KV in host memory", host[0].line))
    gpus = [b for b in buffers if b not in host]
    if not gpus:
        return out
    logged = sum((number(b.groups[1], b.line) for b in gpus), Decimal(0))
    size = Decimal(sum(per_layer[start:])) / MiB
    out.append(Check(item="GPU KV buffers, sum (MiB)", logged=" + ".join(b.groups[1] for b in gpus),
                     predicted=f"{size:.2f}", difference=f"{logged - size:+.2f}",
                     matches=abs(logged - size) <= HALF * len(gpus),
                     basis=f"{n_rep} offloaded repeating layers' KV", line=gpus[0].line))
    splits = _llama_splits(r, gpus)
    if splits is None:
        for b in gpus:
            out.append(_skip(f"{b.groups[0]} KV buffer (MiB)", b.groups[1], "the log prints neither --tensor-split "
                             "nor each device's free memory, which decide the split; the sum is compared above",
                             b.line))
        return out
    names, candidates, source = splits
    counts = {tuple(_per_device(assign_layers(n_layer, start, act, c), per_layer, len(names))) for c in candidates}
    for b in gpus:
        i = names.index(b.groups[0]) if b.groups[0] in names else -1
        if i < 0 or len(counts) != 1:
            why = (f"{b.groups[0]} is not among the devices {', '.join(names)}" if i < 0 else
                   f"a layer sits on the boundary of the split by {source}: which device holds it depends on "
                   "bytes the log rounds to MiB")
            out.append(_skip(f"{b.groups[0]} KV buffer (MiB)", b.groups[1], why, b.line))
            continue
        layers, nbytes = next(iter(counts))[i]
        size = Decimal(nbytes) / MiB
        out.append(_compare_rounded(f"{b.groups[0]} KV buffer (MiB)", b.groups[1], Interval(size, size),
                                    f"{layers} layers by the split of {source} ({nbytes:,} B)", b.line))
    return out


def _per_device(devices: list[int | None], per_layer: list[int], n: int) -> list[tuple[int, int]]:
    acc = [(0, 0)] * n
    for d, b in zip(devices, per_layer, strict=True):
        if d is not None and d < n:
            acc[d] = (acc[d][0] + 1, acc[d][1] + b)
    return acc


def _llama_splits(r: LogReading, gpus: list[Found]) -> tuple[list[str], list[tuple[float, ...]], str] | None:
    """(device names in order, split vectors to try, where the split came from), or None."""
    free = r.found.get("llama_device_free", [])
    text = r.config("tensor_split")
    if text:
        try:
            weights = tuple(float(w) for w in text.replace("/", ",").split(",") if w.strip())
        except ValueError:
            return None
        if free:
            names = [f.groups[0] for f in free]
        else:
            prefix = gpus[0].groups[0].rstrip("0123456789")
            names = [f"{prefix}{i}" for i in range(len(weights))]
        return names, [weights], f"--tensor-split {text}"
    if not free:
        return None
    names = [f.groups[0] for f in free]
    mib = [float(integer(f.groups[1], f.line)) for f in free]
    candidates = [tuple(mib)]
    for j in range(len(mib)):
        candidates.append(tuple(m + (1 if i <= j else 0) for i, m in enumerate(mib)))
        candidates.append(tuple(m + (1 if i > j else 0) for i, m in enumerate(mib)))
    shown = ", ".join(f"{n} {f.groups[1]} MiB" for n, f in zip(names, free, strict=True))
    return names, candidates, f"free memory ({shown})"


# ----------------------------------------------------------------------------- TensorRT-LLM


def _check_trtllm(ctx: _Ctx) -> list[Check]:
    """The KV cache manager's lines (``kvcacalc.engines.trtllm``): tokens = primary blocks x tokens
    per block; the pool's GiB = tokens x the model's bytes a token (one attention window); the
    blocks from ``available x fraction`` when the log gives the fraction (the C++ runtime's
    "Memory usage when calculating max tokens" line, ``kDefaultGpuMemFraction`` 0.9 otherwise
    unknown, so without the fraction the blocks are listed with the fraction they imply)."""
    from kvcalc.engines.trtllm import TOKENS_PER_BLOCK, window_pools

    r = ctx.reading
    out: list[Check] = []
    alloc, tpb_f, blocks_f = r.first("trtllm_alloc"), r.first("trtllm_tokens_per_block"), r.first(
        "trtllm_primary_blocks")
    tpb = integer(tpb_f.groups[0], tpb_f.line) if tpb_f else (ctx.block_size or TOKENS_PER_BLOCK)
    tpb_why = "as logged" if tpb_f else ("--block-size" if ctx.block_size else "the default 32 (not logged)")
    tokens = integer(alloc.groups[1], alloc.line) if alloc else None
    blocks = integer(blocks_f.groups[0], blocks_f.line) if blocks_f else None
    if tokens is not None and blocks is not None:
        out.append(Check(item="tokens in paged KV cache", logged=f"{tokens:,}", predicted=f"{blocks * tpb:,}",
                         difference=f"{tokens - blocks * tpb:+,}", matches=tokens == blocks * tpb,
                         basis=f"{blocks:,} primary blocks x {tpb} tokens per block ({tpb_why})", line=alloc.line
                         if alloc else 0))
    elif tokens is not None and alloc is not None:
        out.append(Check(item="tokens in paged KV cache", logged=f"{tokens:,}", predicted=f"{tokens // tpb * tpb:,}",
                         difference=f"{tokens % tpb:+,}", matches=tokens % tpb == 0,
                         basis=f"whole blocks of {tpb} tokens ({tpb_why})", line=alloc.line))
    per_token: int | None = None
    if ctx.model is not None:
        specs = [s.shard(ctx.tp) for s in ctx.model.layer_specs if s.grows]
        if specs and all(isinstance(s, (FullAttention, LatentAttention)) and not isinstance(s, SlidingWindowAttention)
                         for s in specs):
            per_token = sum(s.bytes_per_token(ctx.dtype("trtllm")) for s in specs)
    if alloc is not None and tokens is not None:
        if per_token is None:
            out.append(_skip("paged KV cache (GiB)", alloc.groups[0], NEEDS_MODEL if ctx.model is None else
                             "sliding-window / state layers: several pools, not compared here", alloc.line))
        else:
            size = Decimal(tokens * per_token) / GiB
            out.append(_compare_rounded("paged KV cache (GiB)", alloc.groups[0], Interval(size, size),
                                        f"{tokens:,} tokens x {per_token:,} B a token", alloc.line))
    mem = r.first("trtllm_mem_usage")
    have = blocks if blocks is not None else (tokens // tpb if tokens is not None else None)
    if mem is not None and have is not None:
        both = r.first("trtllm_both_set")
        frac_text = both.groups[0] if both else (r.config("free_gpu_memory_fraction") or None)
        avail = Interval.printed(number(mem.groups[1], mem.line))
        if per_token is None:
            out.append(_skip("primary blocks from available memory", f"{have:,}", NEEDS_MODEL, mem.line))
        elif frac_text is None:
            implied = Decimal(have * tpb * per_token) / (number(mem.groups[1], mem.line) * GiB)
            out.append(_skip("primary blocks from available memory", f"{have:,}", "the log does not print "
                             f"free_gpu_memory_fraction (0.9 unless set); these blocks imply {implied:.3f} of the "
                             f"{mem.groups[1]} GiB available", mem.line))
        else:
            max_tokens = integer(both.groups[1], both.line) if both else None
            lo, hi = (window_pools(int(a * GiB * Decimal(frac_text)), {1: per_token}, tokens_per_block=tpb,
                                   max_tokens=max_tokens)[0].primary_blocks for a in (avail.lo, avail.hi))
            out.append(Check(item="primary blocks from available memory", logged=f"{have:,}",
                             predicted=f"{lo:,}" if lo == hi else f"{lo:,}..{hi:,}", difference="-",
                             matches=lo <= have <= hi,
                             basis=f"ceil(floor({mem.groups[1]} GiB (as printed, +-0.005) x {frac_text} / "
                                   f"{per_token:,} B) / {tpb})"
                                   + (f", max_tokens {max_tokens:,}" if max_tokens else ""),
                             line=mem.line))
    return out
