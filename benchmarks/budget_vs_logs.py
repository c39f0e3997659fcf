"""kvcalc's modelled vLLM memory terms beside the profile breakdown real start-up logs print.

For every log of ``tests/fixtures/logs`` that prints weights, non-torch memory, the activation
peak and the KV remainder (vLLM V0 0.6.4-0.10), model the profile run's activation peak and the
non-torch memory (``kvcalc.engines.activation.vllm_v0_profile_terms``: the logs are V0, whose
sampler takes the sort path and whose batch is ``max(max_model_len, 2048)`` tokens) and apply vLLM's
budget arithmetic (``ceil(total x util) - weights - activation - non-torch``, the engine's own
``budget``) with the log's GPU total and utilization: best, and the interval with both terms at
their high / low bounds. Prints the Markdown table of the README ("How close the memory model
is"). Run: ``python -m benchmarks.budget_vs_logs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from kvcalc.engines import get_engine
from kvcalc.engines.activation import vllm_v0_profile_terms
from kvcalc.engines.loglines import read_log
from kvcalc.planner.plan import PlanRequest, plan
from kvcalc.registry import load_model
from kvcalc.units import GiB

LOGS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "logs"


@dataclass(frozen=True)
class Row:
    log: str
    source: str
    model: str
    context: int
    total_gib: str
    util: str
    weights_gib: str
    non_torch_gib: str
    activation_gib: str
    kv_gib: str
    caveat: str = ""
    """What the log does not state that the model needs (flags), if anything."""


@dataclass(frozen=True)
class Modelled:
    weights_bytes: int
    non_torch: tuple[int, int, int]
    """low, best, high bytes."""
    activation: tuple[int, int, int]
    kv: tuple[int, int, int]
    """KV budget low (both terms high), best, high (both terms low)."""


def rows() -> list[Row]:
    """The logged figures, read from each log (the activation of 0.6.4's one line is its peak
    torch memory less the weights it logged on "Loading model weights took")."""
    out: list[Row] = []
    r = read_log((LOGS / "vllm_0_6_5_profiling_table_llama3_8b_h100.log").read_text())

    def g(key: str, i: int = 0) -> str:
        f = r.first(key)
        assert f is not None, key
        return f.groups[i]

    out.append(Row("vllm_0_6_5_profiling_table_llama3_8b_h100.log", "vllm#10511", "llama-3-8b", 8192,
                   g("v0_table_total"), g("v0_table_util"), g("v0_table_weights"), g("v0_table_non_torch"),
                   g("v0_table_activation"), g("v0_table_kv")))
    for name, ctx in (("vllm_0_6_4_oneline_llama31_8b_rtx3090_20k.log", 20000),
                      ("vllm_0_6_4_oneline_llama31_8b_rtx3090_29k_fit_error.log", 29000)):
        r = read_log((LOGS / name).read_text())
        f = r.first("v0_oneline")
        assert f is not None
        weights = "14.99"  # "Loading model weights took 14.9888 GB" (GiB, as vLLM 0.6 prints it)
        act = str(Decimal(f.groups[1]) - Decimal(weights))
        out.append(Row(name, "vllm#10517", "llama-3.1-8b", ctx, f.groups[0], f.groups[4], weights, f.groups[2],
                       act, f.groups[3]))
    for name, source, model, ctx, caveat in (
            ("vllm_0_8_v0_gateway_api_h100.log", "gateway-api-inference-extension#550", "llama-2-7b", 4096,
             "model inferred from the block size; serve flags not stated"),
            ("vllm_v0_llama3_8b_a100_40gb.log", "vllm#12330 (figures)", "llama-3-8b", 8192,
             "reconstructed figures; serve flags not stated")):
        r = read_log((LOGS / name).read_text())
        b, p = r.first("v0_budget"), r.first("v0_parts")
        assert b is not None and p is not None
        out.append(Row(name, source, model, ctx, b.groups[0], b.groups[1], p.groups[0], p.groups[1], p.groups[2],
                       p.groups[3], caveat))
    return out


def modelled(row: Row) -> Modelled:
    """kvcalc's figures for the log's model, context, GPU total and utilization (bytes)."""
    total = int(Decimal(row.total_gib) * GiB)
    model = load_model(row.model)
    act, non_torch = vllm_v0_profile_terms(model, max_model_len=row.context)
    # The weights as plan sizes them (both terms pinned: only weights_bytes is read here).
    p = plan(PlanRequest(model=model, engine="vllm@0.20", gpu_memory_bytes=total, fraction=row.util,
                         max_model_len=row.context, solve_tp=False, activation_bytes=0, non_torch_bytes=0))
    weights = p.budget["weights_bytes"]
    engine = get_engine("vllm@0.20")

    def kv(a: int, n: int) -> int:
        return engine.budget(total, weights, fraction=row.util, activation_bytes=a, non_torch_bytes=n).kv_budget_bytes

    return Modelled(
        weights_bytes=weights,
        non_torch=(non_torch.low_bytes, non_torch.best_bytes, non_torch.high_bytes),
        activation=(act.low_bytes, act.best_bytes, act.high_bytes),
        kv=(kv(act.high_bytes, non_torch.high_bytes), kv(act.best_bytes, non_torch.best_bytes),
            kv(act.low_bytes, non_torch.low_bytes)),
    )


def contains(row: Row, m: Modelled) -> bool:
    """Whether the KV interval holds the logged figure (printed to 2 decimals: +-0.005 GiB)."""
    logged = Decimal(row.kv_gib) * GiB
    half = Decimal("0.005") * GiB
    return m.kv[0] <= logged + half and logged - half <= m.kv[2]


def _gib(n: int) -> str:
    return f"{Decimal(n) / GiB:.2f}"


def table() -> str:
    lines = ["| log (source) | model, context | GPU total x util | weights logged / kvcalc | non-torch logged / "
             "kvcalc best [low, high] | activation logged / kvcalc best [low, high] | KV budget logged / kvcalc "
             "best [low, high] | KV error (best) | in interval |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    errors: list[Decimal] = []
    inside = 0
    notes: list[str] = []
    for row in rows():
        m = modelled(row)
        err = (Decimal(m.kv[1]) / GiB - Decimal(row.kv_gib)) / Decimal(row.kv_gib) * 100
        errors.append(err)
        ok = contains(row, m)
        inside += ok
        n, a, kv = m.non_torch, m.activation, m.kv
        lines.append(
            f"| {row.source} | {row.model}, {row.context:,} | {row.total_gib} x {row.util} | {row.weights_gib} / "
            f"{_gib(m.weights_bytes)} | {row.non_torch_gib} / {_gib(n[1])} [{_gib(n[0])}, {_gib(n[2])}] | "
            f"{row.activation_gib} / {_gib(a[1])} [{_gib(a[0])}, {_gib(a[2])}] | {row.kv_gib} / {_gib(kv[1])} "
            f"[{_gib(kv[0])}, {_gib(kv[2])}] | {err:+.1f} % | {'yes' if ok else 'no'} |")
        if row.caveat:
            notes.append(f"{row.source}: {row.caveat}.")
    within = sum(abs(e) <= 2 for e in errors)
    median = sorted(errors)[len(errors) // 2]
    lines.append("")
    lines.append(f"KV budget error of the best value: {within} of {len(errors)} within 2 %; median {median:+.1f} %, "
                 f"range {min(errors):+.1f} % .. {max(errors):+.1f} %; the interval holds the logged budget in "
                 f"{inside} of {len(errors)}.")
    if notes:
        lines.append("")
        lines.append("Not stated by the log: " + " ".join(notes))
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
