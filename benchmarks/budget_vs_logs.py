"""kvcalc's modelled vLLM memory terms beside the profile breakdown real start-up logs print.

For every log of ``tests/fixtures/logs`` that prints weights, non-torch memory, the activation
peak and the KV remainder (vLLM V0 0.6.4-0.8), model the profile run's activation peak and the
non-torch memory of the log's release (``kvcalc.engines.activation.vllm_v0_profile_terms``: V0's
batch, ``max(max_model_len, 2048)`` or 2,048 under chunked prefill, 256 sequences, the sampler's
sort path; non-torch bounds per V0 generation) and apply vLLM's budget arithmetic
(``ceil(total x util) - weights - activation - non-torch``) through the planner (``plan`` with both
terms pinned to the modelled figure) at the log's GPU total, utilization, context and TP: best,
and the interval with both terms at their high / low bounds.

Each row says how it is used: ``evaluated`` (held out: no constant of kvcalc was read from it),
``calibration`` (a non-torch constant was read from it; its error is shown but it is not held
out), or ``not counted`` (the inputs the profile run depends on are not known, or the log is not a
verbatim copy), with the reason. Prints the Markdown table of the README ("How close the memory
model is"). Run: ``python -m benchmarks.budget_vs_logs``.

``read_log`` parses every line used here except 0.6.4's one-line form's weights, which 0.6.4
prints on its own "Loading model weights took" line: read here from that line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from kvcalc.engines.activation import vllm_v0_profile_terms
from kvcalc.engines.loglines import read_log
from kvcalc.planner.plan import PlanRequest, plan
from kvcalc.registry import load_model
from kvcalc.units import GiB

LOGS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "logs"

EVALUATED, CALIBRATION, NOT_COUNTED = "evaluated", "calibration", "not counted"
OUTSIDE = (
    "vllm#12126 (`vllm serve meta-llama/Llama-3.2-11B-Vision --load-format dummy --max-model-len 65536 "
    "--max-num-seqs 128 --enforce-eager`, H100; `vllm_0_7_v0_llama32_11b_vision_h100.log`) states its flags "
    "but is left out of the table: its 36.63 GiB activation is the vision encoder and cross-attention of "
    "the profile run, outside kvcalc's activation model, and kvcalc's vLLM 0.20 no longer serves Mllama "
    "(served until v0.10.2) and has no parameter count for it; its non-torch 0.16 GiB is one of 0.7's "
    "calibration figures."
)


@dataclass(frozen=True)
class Row:
    log: str
    source: str
    model: str
    """A built-in name or a config file in tests/fixtures/logs."""
    context: int
    release: str
    """The V0 generation whose rules apply (``kvcalc.engines.activation.V0_RELEASES``)."""
    tp: int
    total_gib: str
    util: str
    weights_gib: str
    non_torch_gib: str
    activation_gib: str
    kv_gib: str
    use: str = EVALUATED
    caveat: str = ""
    """Why the row is not counted, or what it assumes."""
    max_num_seqs: int = 256
    """V0's default unless the log's flags set it."""

    @property
    def model_label(self) -> str:
        return Path(self.model).stem if self.model.endswith(".yaml") else self.model


@dataclass(frozen=True)
class Modelled:
    weights_bytes: int
    non_torch: tuple[int, int, int]
    """low, best, high bytes."""
    activation: tuple[int, int, int]
    kv: tuple[int, int, int]
    """KV budget low (both terms high), best, high (both terms low)."""


def _parts(name: str) -> tuple[str, str, str, str, str, str]:
    """(total, util, weights, non-torch, activation, KV) of a 0.6.5+ log, as printed."""
    r = read_log((LOGS / name).read_text())
    b, p = r.first("v0_budget"), r.first("v0_parts")
    if b is not None and p is not None:
        return b.groups[0], b.groups[1], p.groups[0], p.groups[1], p.groups[2], p.groups[3]

    def g(key: str) -> str:
        f = r.first(key)
        assert f is not None, key
        return f.groups[0]

    return (g("v0_table_total"), g("v0_table_util"), g("v0_table_weights"), g("v0_table_non_torch"),
            g("v0_table_activation"), g("v0_table_kv"))


def _oneline(name: str) -> tuple[str, str, str, str, str, str]:
    """0.6.4's one line: its peak torch memory is weights + activation; the weights come from the
    "Loading model weights took X GB" line (GiB, as vLLM 0.6 prints it), read here."""
    text = (LOGS / name).read_text()
    f = read_log(text).first("v0_oneline")
    assert f is not None
    m = re.search(r"Loading model weights took (\d+\.\d+) GB", text)
    assert m is not None
    weights = Decimal(m.group(1)).quantize(Decimal("0.01"))
    act = Decimal(f.groups[1]) - weights
    return f.groups[0], f.groups[4], str(weights), f.groups[2], str(act), f.groups[3]


def rows() -> list[Row]:
    """The corpus's profile-breakdown logs, with the inputs each thread states."""
    out: list[Row] = []
    # vllm#10511 (youkaichao): `vllm serve meta-llama/Meta-Llama-3-8B`, H100, defaults (TP 1 block).
    out.append(Row("vllm_0_6_5_profiling_table_llama3_8b_h100.log", "vllm#10511", "llama-3-8b", 8192, "0.6.5", 1,
                   *_parts("vllm_0_6_5_profiling_table_llama3_8b_h100.log"), use=CALIBRATION,
                   caveat="its non-torch (1.79 GiB) is one of 0.6.5-0.6.6's four calibration figures, the high bound"))
    # A public course-notes file (code-search index id 69421856836): vLLM 0.6.6.post1 offline (LLM class),
    # Qwen/Qwen2.5-0.5B fp16 on a T4, max_seq_len 32768, TP 1, chunked prefill off, util 0.90.
    out.append(Row("vllm_0_6_6_v0_qwen25_05b_t4.log", "Qwen2.5-0.5B on a T4 (repo notes)",
                   str(LOGS / "qwen2.5-0.5b.yaml"), 32768, "0.6.5", 1, *_parts("vllm_0_6_6_v0_qwen25_05b_t4.log")))
    # vllm#10517 (kaspersiminski): Llama-3.1-8B-Instruct, RTX 3090, --max-model-len 20000 / 29000.
    out.append(Row("vllm_0_6_4_oneline_llama31_8b_rtx3090_20k.log", "vllm#10517", "llama-3.1-8b", 20000, "0.6.4", 1,
                   *_oneline("vllm_0_6_4_oneline_llama31_8b_rtx3090_20k.log")))
    out.append(Row("vllm_0_6_4_oneline_llama31_8b_rtx3090_29k_fit_error.log", "vllm#10517", "llama-3.1-8b", 29000,
                   "0.6.4", 1, *_oneline("vllm_0_6_4_oneline_llama31_8b_rtx3090_29k_fit_error.log")))
    # A public notes file (code-search index id 19400629813): `vllm serve "meta-llama/Llama-3.2-1B"
    # --dtype=half --gpu-memory-utilization=0.95 --max-model-len=105088` on a GTX 1080, vLLM 0.6.4.post1:
    # chunked prefill on (above 32K), 512 tokens a step (printed).
    out.append(Row("vllm_0_6_4_oneline_llama32_1b_gtx1080_105k.log", "Llama-3.2-1B on a GTX 1080 (repo notes)",
                   str(LOGS / "llama-3.2-1b.yaml"), 105088, "0.6.4", 1,
                   *_oneline("vllm_0_6_4_oneline_llama32_1b_gtx1080_105k.log")))
    # A public training log (code-search index id 54021851790): vLLM 0.6.4.post1 offline (LLM class),
    # realtreetune/rho-1b-sft-GSM8K bf16 on an H200, max_seq_len 2048, TP 1, util 0.90 (printed).
    out.append(Row("vllm_0_6_4_oneline_rho1b_h200.log", "rho-1b on an H200 (repo log)", str(LOGS / "rho-1b.yaml"),
                   2048, "0.6.4", 1, *_oneline("vllm_0_6_4_oneline_rho1b_h200.log")))
    # vllm#15815 (Hemanth-stack): Qwen2.5-32B-Instruct bf16, 2 x L40S, TP 2, max_seq_len 10000,
    # chunked prefill off (all from the printed engine config).
    out.append(Row("vllm_0_7_1_v0_qwen25_32b_l40s_tp2_issue15815.log", "vllm#15815",
                   str(LOGS / "qwen2.5-32b.yaml"), 10000, "0.7", 2,
                   *_parts("vllm_0_7_1_v0_qwen25_32b_l40s_tp2_issue15815.log")))
    # A public GRPO training log (code-search index id 55594152188): vLLM 0.7.2 V0,
    # Qwen/Qwen2.5-1.5B-Instruct fp16, T4, max_seq_len 32768, TP 1, chunked prefill off, util 0.50.
    out.append(Row("vllm_0_7_2_v0_qwen25_15b_t4.log", "Qwen2.5-1.5B on a T4 (repo log)",
                   str(LOGS / "qwen2.5-1.5b.yaml"), 32768, "0.7", 1, *_parts("vllm_0_7_2_v0_qwen25_15b_t4.log")))
    # A public README (code-search index id 40791855483): ./Qwen/Qwen3-4B in a vLLM 0.8 V0 image on an
    # RTX 2060 12GB, dtype float16, max_num_seqs 1, max_model_len 10k (the log: 10,000 tokens), util 0.95.
    out.append(Row("vllm_0_8_v0_qwen3_4b_rtx2060.log", "Qwen3-4B on an RTX 2060 (repo README)",
                   str(LOGS / "qwen3-4b.yaml"), 10000, "0.7", 1, *_parts("vllm_0_8_v0_qwen3_4b_rtx2060.log"),
                   max_num_seqs=1))
    out.append(Row("vllm_0_8_v0_gateway_api_h100.log", "gateway-api-inference-extension#550", "llama-2-7b", 4096,
                   "0.7", 1, *_parts("vllm_0_8_v0_gateway_api_h100.log"), use=NOT_COUNTED,
                   caveat=("serve flags not stated: the repository's manifest at that date "
                           "(config/manifests/vllm/gpu-deployment.yaml @ 12bcc9a8) runs Llama-2-7b-hf with "
                           "--enable-lora --max-loras 4, but the logged weights (12.55 GiB) are the base checkpoint "
                           "alone, while V0's load_model counts the LoRA stacks in them (about 0.30 GiB at rank 16 x 4 "
                           "adapters; vllm/worker/model_runner.py:1109-1139, lora/models.py:365, lora/layers.py:"
                           "299-340 @ 0.8.5), so the logged run did not serve "
                           "LoRA as the manifest says; it also compiled (torch.compile, 28.77 s), whose temporaries "
                           "vLLM then counts as activation: 2.38 GiB is not explained by stated inputs")))
    out.append(Row("vllm_0_6_6_v0_llama3_8b_a100_40gb_issue12330.log", "vllm#12330", "llama-3-8b", 8192, "0.6.5", 1,
                   *_parts("vllm_0_6_6_v0_llama3_8b_a100_40gb_issue12330.log"), use=NOT_COUNTED,
                   caveat=("serve flags not stated (\"The server prints out\"; meta-llama/Meta-Llama-3-8B on one A100 "
                           "40GB); its 9.37 GiB is what the sort-path sampler takes over 2,048 rows (2,048 x 128,256 x "
                           "38 B + 2 x 8,192 x 4,096 x 2 B = 9.42 GiB), i.e. it fits `--max-num-seqs 2048`, which the "
                           "thread does not say; its non-torch 0.10 GiB is one of 0.6.5-0.6.6's calibration figures")))
    return out


def modelled(row: Row) -> Modelled:
    """kvcalc's figures for the log's model, context, TP, GPU total and utilization (bytes), each
    KV budget the planner's (``plan`` with the terms pinned)."""
    total = int(Decimal(row.total_gib) * GiB)
    model = load_model(row.model)
    act, non_torch = vllm_v0_profile_terms(model, max_model_len=row.context, tp=row.tp, release=row.release,
                                           max_num_seqs=row.max_num_seqs)

    def kv(a: int, n: int) -> tuple[int, int]:
        p = plan(PlanRequest(model=model, engine="vllm@0.20", gpu_memory_bytes=total, fraction=row.util,
                             max_model_len=row.context, tp=row.tp, solve_tp=False, activation_bytes=a,
                             non_torch_bytes=n))
        return p.kv_budget_bytes, int(p.budget["weights_bytes"])

    best, weights = kv(act.best_bytes, non_torch.best_bytes)
    return Modelled(
        weights_bytes=weights,
        non_torch=(non_torch.low_bytes, non_torch.best_bytes, non_torch.high_bytes),
        activation=(act.low_bytes, act.best_bytes, act.high_bytes),
        kv=(kv(act.high_bytes, non_torch.high_bytes)[0], best, kv(act.low_bytes, non_torch.low_bytes)[0]),
    )


def contains(row: Row, m: Modelled) -> bool:
    """Whether the KV interval holds the logged figure (printed to 2 decimals: +-0.005 GiB)."""
    logged = Decimal(row.kv_gib) * GiB
    half = Decimal("0.005") * GiB
    return m.kv[0] <= logged + half and logged - half <= m.kv[2]


def error_pct(row: Row, m: Modelled) -> Decimal:
    """The best KV budget's error against the logged one, in percent."""
    return (Decimal(m.kv[1]) / GiB - Decimal(row.kv_gib)) / Decimal(row.kv_gib) * 100


def _gib(n: int) -> str:
    return f"{Decimal(n) / GiB:.2f}"


def _summary(label: str, pairs: list[tuple[Row, Modelled]]) -> str:
    errors = sorted(error_pct(r, m) for r, m in pairs)
    if not errors:
        return f"{label}: none."
    within = sum(abs(e) <= 2 for e in errors)
    n = len(errors)
    median = errors[n // 2] if n % 2 else (errors[n // 2 - 1] + errors[n // 2]) / 2
    inside = sum(contains(r, m) for r, m in pairs)
    return (f"{label}: {within} of {n} within 2 %; median {median:+.1f} %, range {errors[0]:+.1f} % .. "
            f"{errors[-1]:+.1f} %; the interval holds the logged budget in {inside} of {n}.")


def table() -> str:
    lines = ["| log (source) | use | model, context, TP | GPU total x util | weights logged / kvcalc | non-torch "
             "logged / kvcalc best [low, high] | activation logged / kvcalc best [low, high] | KV budget logged / "
             "kvcalc best [low, high] | KV error (best) | in interval |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    pairs: list[tuple[Row, Modelled]] = []
    notes: list[str] = []
    for row in rows():
        m = modelled(row)
        pairs.append((row, m))
        n, a, kv = m.non_torch, m.activation, m.kv
        lines.append(
            f"| {row.source} | {row.use} | {row.model_label}, {row.context:,}, {row.tp} | {row.total_gib} x "
            f"{row.util} | {row.weights_gib} / {_gib(m.weights_bytes)} | {row.non_torch_gib} / {_gib(n[1])} "
            f"[{_gib(n[0])}, {_gib(n[2])}] | {row.activation_gib} / {_gib(a[1])} [{_gib(a[0])}, {_gib(a[2])}] | "
            f"{row.kv_gib} / {_gib(kv[1])} [{_gib(kv[0])}, {_gib(kv[2])}] | {error_pct(row, m):+.1f} % | "
            f"{'yes' if contains(row, m) else 'no'} |")
        if row.caveat:
            notes.append(f"- {row.source} ({row.use}): {row.caveat}.")
    lines.append("")
    lines.append("KV budget error of the best value:")
    lines.append("")
    lines.append("- " + _summary("held out (evaluated)", [p for p in pairs if p[0].use == EVALUATED]))
    lines.append("- " + _summary("counted (evaluated + calibration)",
                                 [p for p in pairs if p[0].use != NOT_COUNTED]))
    lines.append("- " + _summary("every row", pairs))
    lines.append("")
    lines.extend(notes)
    lines.append(f"- {OUTSIDE}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
