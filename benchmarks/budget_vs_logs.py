"""kvcalc's vLLM memory model beside the profile breakdown real start-up logs print.

For every log of ``tests/fixtures/logs`` that prints weights, non-torch memory, the activation
peak and the KV remainder (vLLM V0 0.6.4-0.10), run ``plan`` with the log's own GPU total and
``gpu_memory_utilization`` and kvcalc's default activation / non-torch terms, and print a Markdown
table of modelled against logged figures, with the error of the KV budget. This is the table in
the README ("How close the memory model is"). Run: ``python -m benchmarks.budget_vs_logs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

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
    for name, source, model, ctx in (("vllm_0_8_v0_gateway_api_h100.log", "gateway-api-inference-extension#550",
                                      "llama-2-7b", 4096),
                                     ("vllm_v0_llama3_8b_a100_40gb.log", "vllm#12330 (figures)", "llama-3-8b", 8192)):
        r = read_log((LOGS / name).read_text())
        b, p = r.first("v0_budget"), r.first("v0_parts")
        assert b is not None and p is not None
        out.append(Row(name, source, model, ctx, b.groups[0], b.groups[1], p.groups[0], p.groups[1], p.groups[2],
                       p.groups[3]))
    return out


def modelled(row: Row) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """(weights, non-torch, activation, KV) GiB as ``plan --engine vllm@0.20`` models them for the
    log's GPU total and utilization (0.20's arithmetic: ceil(total x util) - the three terms)."""
    total = int(Decimal(row.total_gib) * GiB)
    p = plan(PlanRequest(model=load_model(row.model), engine="vllm@0.20", gpu_memory_bytes=total,
                         fraction=row.util, max_model_len=row.context, solve_tp=False))
    b = p.budget
    return tuple(Decimal(b[k]) / GiB for k in ("weights_bytes", "non_torch_bytes", "activation_bytes",
                                                "kv_budget_bytes"))  # type: ignore[return-value]


def table() -> str:
    lines = ["| log (source) | model, context | GPU total x util | weights logged / kvcalc | non-torch logged / "
             "kvcalc | activation logged / kvcalc | KV budget logged / kvcalc | KV error |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    errors: list[Decimal] = []
    for row in rows():
        w, n, a, kv = modelled(row)
        err = (kv - Decimal(row.kv_gib)) / Decimal(row.kv_gib) * 100
        errors.append(err)
        lines.append(f"| {row.source} | {row.model}, {row.context:,} | {row.total_gib} x {row.util} | "
                     f"{row.weights_gib} / {w:.2f} | {row.non_torch_gib} / {n:.2f} | {row.activation_gib} / "
                     f"{a:.2f} | {row.kv_gib} / {kv:.2f} | {err:+.1f} % |")
    within = sum(abs(e) <= 2 for e in errors)
    lines.append("")
    median = sorted(errors)[len(errors) // 2]
    lines.append(f"KV budget error: {within} of {len(errors)} within 2 %; median {median:+.1f} %, "
                 f"range {min(errors):+.1f} % .. {max(errors):+.1f} %.")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
