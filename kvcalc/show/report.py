"""``--report FILE.html``: one self-contained HTML page a team can open, print, or attach to an e-mail.

The page loads nothing: CSS inline, charts as inline SVG (``kvcalc.show.svg``), no script, and a
Content-Security-Policy of ``default-src 'none'`` so a browser refuses any request it might try.
It is built only from core results: a ``Plan`` (with curves that are themselves ``plan()``
results at other contexts and KV dtypes, ``kvcalc.planner.plotting``), a ``SweepResult`` or a
``Fit`` (``kvcalc fit``: each figure a ``plan()`` field). The
answer comes first, in the JSON's own keys (``data-key`` on each figure, the exact integer
beside any rounded one); the full JSON is embedded as a ``application/json`` block.

Report data (``PlanReport``, ``SweepReport``) is separate from rendering (``render_html``) so
tests compare the page's figures with the data, and the data with the core.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kvcalc.errors import InvalidRequestError
from kvcalc.show.axes import context_label
from kvcalc.show.loglines import unit_note
from kvcalc.show.svg import Mark, Segment, Series, line_chart, stacked_bar
from kvcalc.units import format_bytes

if TYPE_CHECKING:
    from kvcalc.planner.fit import Fit
    from kvcalc.planner.plan import Plan, PlanRequest
    from kvcalc.show.sweep import SweepResult

SUFFIXES = (".html", ".htm")


def kvcalc_version() -> str:
    from kvcalc import __version__

    return str(__version__)


def command_line(ctx: Any) -> str:
    """The running command as the user typed it: ``sys.argv`` when kvcalc is the running program
    (the ``kvcalc`` script or ``python -m kvcalc``); otherwise (called in-process, e.g. by tests)
    rebuilt from the command's ``typer.Context``: the command name and each parameter that came
    from the command line (not a default), in declaration order, under its first flag name."""
    import shlex
    import sys

    argv = list(sys.argv)
    program = Path(argv[0]).name if argv else ""
    if (program == "kvcalc" or argv[0].endswith(("kvcalc/__main__.py", "kvcalc\\__main__.py"))) \
            and ctx.info_name in argv[1:]:
        return shlex.join(["kvcalc", *argv[1:]])
    words = ["kvcalc", ctx.info_name or ""]
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name) if param.name else None
        if source is None or source.name != "COMMANDLINE":
            continue
        value = ctx.params[param.name]
        if param.param_type_name == "argument":
            words += [str(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
        elif getattr(param, "is_flag", False):
            if value:
                words.append(param.opts[0])
            elif param.secondary_opts:
                words.append(param.secondary_opts[0])
        else:
            words += [param.opts[0], str(value)]
    return shlex.join(words)


@dataclass(frozen=True, kw_only=True)
class Headline:
    """One figure of the answer: the JSON key it comes from, its label, the text shown."""

    key: str
    label: str
    text: str
    value: Any


@dataclass(frozen=True, kw_only=True)
class PlanReport:
    command: str
    version: str
    question: str
    verdict: str
    plan: dict[str, Any]
    headline: list[Headline]
    memory: list[Segment]
    memory_total_bytes: int | None
    kv_curves: dict[str, list[tuple[int, int]]]
    kv_workload: str
    concurrency: list[tuple[int, int]]
    model_max_context: int
    assumptions: list[tuple[str, str]]
    """(what is assumed or taken as given, where it comes from)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _yes(flag: bool | None) -> str:
    return "YES" if flag else "NO"


def _bytes(n: int | None) -> str:
    return "unknown" if n is None else f"{format_bytes(n)} ({n:,} B)"


def plan_headline(p: dict[str, Any]) -> list[Headline]:
    """The answer in the JSON's keys, in the order a reader asks: does it fit, how many, how long."""
    # ``fits`` answers the question asked (with --users, the users'); this line is one request's.
    out = [Headline(key="one_request_fits", label="One request of max_model_len fits",
                    text=_yes(p["one_request_fits"]), value=p["one_request_fits"])]
    if p["users"] is not None:
        out.append(Headline(key="users_fit", label=f"{p['users']:,} users at once", text=_yes(p["users_fit"]),
                            value=p["users_fit"]))
    out += [
        Headline(key="max_sequences", label=f"Requests of {p['max_model_len']:,} tokens resident at once "
                 "(per replica)", text=f"{p['max_sequences']:,}", value=p["max_sequences"]),
        Headline(key="longest_context_at_batch", label=f"Longest context for {p['batch']:,} requests at once",
                 text=f"{p['longest_context_at_batch']:,} tokens", value=p["longest_context_at_batch"]),
        Headline(key="max_concurrency", label=f"Maximum concurrency at {p['max_model_len']:,} tokens",
                 text=f"{p['max_concurrency']:.2f}x", value=p["max_concurrency"]),
    ]
    if p["estimated_max_model_len"] is not None:
        out.append(Headline(key="estimated_max_model_len", label="Largest max_model_len that fits",
                            text=f"{p['estimated_max_model_len']:,} tokens", value=p["estimated_max_model_len"]))
    if p["num_blocks"] is not None:
        out.append(Headline(key="num_blocks", label="KV blocks (num_blocks)", text=f"{p['num_blocks']:,}",
                            value=p["num_blocks"]))
    if p["kv_cache_tokens"] is not None:
        out.append(Headline(key="kv_cache_tokens", label="Tokens the KV cache holds",
                            text=f"{p['kv_cache_tokens']:,}", value=p["kv_cache_tokens"]))
    out += [
        Headline(key="kv_budget_bytes", label="KV cache budget per GPU", text=_bytes(p["kv_budget_bytes"]),
                 value=p["kv_budget_bytes"]),
        Headline(key="per_gpu_bytes", label="KV for this workload, per GPU", text=_bytes(p["per_gpu_bytes"]),
                 value=p["per_gpu_bytes"]),
        Headline(key="weights_bytes", label="Weights, all GPUs", text=_bytes(p["weights_bytes"]),
                 value=p["weights_bytes"]),
        Headline(key="gpu_count", label="GPUs", text=f"{p['gpu_count']:,}", value=p["gpu_count"]),
    ]
    return out


def memory_segments(p: dict[str, Any]) -> tuple[list[Segment], int | None]:
    """One GPU's memory as the engine divides it, left to right; the segments add up to the
    total the engine sees (the last one, what the engine's fraction leaves out, is the rest)."""
    b = p["budget"]
    weights = b["weights_bytes"]
    tp_pp = p["tp"] * p["pp"]
    w_label = f"weights ({p['weight_dtype']}, 1/{tp_pp} per GPU)" if tp_pp > 1 else f"weights ({p['weight_dtype']})"
    kv = Segment(label="KV cache budget", bytes=b["kv_budget_bytes"], kind="kv")
    if b["total_bytes"] is None:
        return ([Segment(label=w_label, bytes=weights, kind="weights")] if weights is not None else []) + [kv], None
    segs = [Segment(label=w_label, bytes=weights, kind="weights")]
    if b["activation_bytes"]:
        segs.append(Segment(label="activation peak (--activation-memory)", bytes=b["activation_bytes"],
                            kind="activation"))
    segs.append(Segment(label="non-torch: CUDA context, NCCL (--non-torch-memory)", bytes=b["non_torch_bytes"],
                        kind="non-torch"))
    if b.get("reserve_bytes"):
        # Memory the engine keeps free besides those (vLLM 0.34's extensible-cache margin).
        segs.append(Segment(label=b["reserve_label"], bytes=b["reserve_bytes"], kind="reserve"))
    segs.append(kv)
    # The rest is what the engine's fraction leaves out (vLLM: total - ceil(total x fraction)); with
    # the KV budget taken as it is (negative when the weights do not fit) the segments sum to the total.
    rest = b["total_bytes"] - sum(seg.bytes for seg in segs)
    if b["fraction_flag"]:
        rest_label = f"outside {b['fraction_flag']} {b['fraction']}"
    else:
        rest_label = "left over"
    segs.append(Segment(label=rest_label, bytes=rest, kind="free"))
    return segs, b["total_bytes"]


def plan_question(p: dict[str, Any]) -> str:
    where = f"{p['gpu_count']} x {p['gpu']}" if p["gpu"] else "the given KV budget"
    setup = (f"{p['model']} on {where} (TP {p['tp']}" + (f" x PP {p['pp']}" if p["pp"] > 1 else "")
             + f"), {p['engine']}, {p['kv_dtype']} KV cache")
    if p["users"] is not None:
        return f"Can {setup} serve {p['users']:,} users at {p['max_model_len']:,} tokens each?"
    return f"Does one request of {p['max_model_len']:,} tokens fit with {setup}?"


def plan_verdict(p: dict[str, Any]) -> str:
    if p["users"] is not None:
        head = f"{_yes(p['users_fit'])}: {p['max_sequences']:,} requests of {p['max_model_len']:,} tokens " \
               f"fit at once per replica ({p['replicas']} replica{'s' if p['replicas'] > 1 else ''})"
        if not p["users_fit"] and p["one_request_fits"]:
            head += f"; {p['users']:,} users fit at up to {p['longest_context_at_batch']:,} tokens each"
        return head
    if p["fits"]:
        return f"YES: {p['max_sequences']:,} requests of {p['max_model_len']:,} tokens fit at once"
    if p["estimated_max_model_len"]:
        return f"NO: the largest max_model_len that fits is {p['estimated_max_model_len']:,}"
    return f"NO: {p['binding_constraint']}" if p["binding_constraint"] else "NO"


def plan_assumptions(req: PlanRequest, p: dict[str, Any], refused: list[str]) -> list[tuple[str, str]]:
    b = p["budget"]
    out = [(f"KV budget per GPU: {b['formula']}", b["source"])]
    if p["parameters"] is not None:
        out.append((f"weights: {p['parameters']:,} parameters in {p['weight_dtype']}", p["parameters_source"]))
    else:
        out.append((f"weights: {p['weight_dtype']}", p["parameters_source"]))
    out.append((f"engine arithmetic: {p['engine_version']}", "kvcalc's model of the engine (kvcalc.planner)"))
    if req.gpu is not None:
        from kvcalc.planner.gpus import parse_gpu_spec

        g, _ = parse_gpu_spec(req.gpu)
        out.append((f"{g.title}: {format_bytes(g.memory_bytes)} total, {format_bytes(g.usable_bytes)} usable",
                    f"{g.source}; usable: {g.usable_source}"))
    src = req.model.source
    out.append((f"model {p['model']}: max context {req.model.max_position_embeddings:,}, config dtype "
                f"{req.model.dtype}", src.hf_repo or src.config or "kvcalc's built-in config"))
    out += [(a, "filled in on import (the model config lacks it)") for a in src.assumptions]
    out += [(n, "kvcalc plan") for n in p["notes"]]
    out += [(w, "kvcalc plan (warning)") for w in p["warnings"]]
    out += [(f"KV dtype not charted: {r}", "the engine refuses it") for r in refused]
    if p["roofline"] is not None:
        out.append((f"decode roofline: {p['roofline']['label']}", "kvcalc.planner.roofline"))
    return out


def plan_report(req: PlanRequest, result: Plan, command: str) -> PlanReport:
    """Everything the page shows, from ``result`` and ``plan()`` at other contexts and dtypes."""
    from kvcalc.planner.plotting import concurrency_curve, kv_curves

    p = result.to_dict()
    curves, refused = kv_curves(req, result)
    workload = (f"{p['users']:,} users" if p["users"] is not None else
                f"batch {req.batch:,}" if req.batch else "one request")
    return PlanReport(
        command=command, version=kvcalc_version(), question=plan_question(p), verdict=plan_verdict(p), plan=p,
        headline=plan_headline(p), memory=memory_segments(p)[0], memory_total_bytes=memory_segments(p)[1],
        kv_curves=curves, kv_workload=workload, concurrency=concurrency_curve(req, result),
        model_max_context=req.model.max_position_embeddings, assumptions=plan_assumptions(req, p, refused),
    )


@dataclass(frozen=True, kw_only=True)
class SweepLine:
    label: str
    model: str
    kv_dtype: str
    batch: int
    points: list[tuple[int, int]]
    longest_fitting: int | None
    """The longest swept context within the capacity and the model's maximum context (None: none
    is, or no capacity was given)."""


@dataclass(frozen=True, kw_only=True)
class SweepReport:
    command: str
    version: str
    question: str
    sweep: dict[str, Any]
    lines: list[SweepLine]
    title: str
    y_label: str
    max_context_marks: dict[str, int]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def sweep_report(result: SweepResult, command: str) -> SweepReport:
    from kvcalc.show.sweep import figure_labels, max_context_marks, series_label

    lines = []
    for (model, dtype, batch), cells in result.series().items():
        # Past the model's maximum context is not a context it serves: never an answer.
        limit = result.model_max_context.get(model)
        within = [c.seq_len for c in cells if c.exceeds is False and (limit is None or c.seq_len <= limit)]
        lines.append(SweepLine(label=series_label(result, model, dtype, batch), model=model, kv_dtype=dtype,
                               batch=batch, points=[(c.seq_len, c.per_gpu_bytes) for c in cells],
                               longest_fitting=max(within) if within else None))
    seqs = result.seq_lens
    against = f" against {result.capacity_label}" if result.capacity_label else ""
    question = (f"KV cache of {', '.join(result.models)} from {context_label(seqs[0])} to {context_label(seqs[-1])} "
                f"tokens, batch {', '.join(map(str, result.batches))}, KV {', '.join(result.kv_dtypes)} "
                f"({result.engine} engine" + (f", TP {result.tp}" if result.tp > 1 else "") + f"){against}")
    title, y_label = figure_labels(result)
    notes = list(result.notes)
    if result.capacity_label:
        notes.append("KV cache only: weights and runtime overheads are not subtracted (see kvcalc plan)")
    return SweepReport(command=command, version=kvcalc_version(), question=question, sweep=result.to_dict(),
                       lines=lines, title=title, y_label=y_label, max_context_marks=max_context_marks(result),
                       notes=notes)


@dataclass(frozen=True, kw_only=True)
class FitReport:
    command: str
    version: str
    question: str
    fit: dict[str, Any]
    """``Fit.to_dict()``: the JSON ``kvcalc fit --json`` prints."""
    users_curves: dict[str, list[tuple[int, int]]]
    """KV dtype -> (context, the most users at once) for each asked context within the model's maximum."""
    weights: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _ctx_text(n: int) -> str:
    return f"{n >> 10}k" if n % 1024 == 0 else f"{n:,}"


def fit_report(result: Fit, command: str) -> FitReport:
    f = result.to_dict()
    where = f"{f['gpu_count']} x {f['gpu']}" if f["gpu"] else "a given KV budget"
    question = (f"{f['model']} on {where}, TP {f['tp']}, {f['engine']}: the longest context for "
                f"{', '.join(map(str, f['batches']))} users at once, and the most users at "
                f"{', '.join(_ctx_text(c) for c in f['contexts'])} tokens each, per KV dtype")
    curves = {r.kv_dtype: [(c, users) for c in result.contexts if (users := r.max_users[c]) is not None]
              for r in result.rows}
    return FitReport(command=command, version=kvcalc_version(), question=question, fit=f,
                     users_curves={k: v for k, v in curves.items() if v},
                     weights=f"{_bytes(result.weights_bytes)} from {result.weights_source}")


_CSS = """
:root{--fg:#1b1b1b;--muted:#5f5f5f;--line:#d0d0d0;--ok:#1a7f37;--no:#b42318;--bg:#fff}
*{box-sizing:border-box}
body{margin:0 auto;max-width:980px;padding:16px;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--fg);background:var(--bg)}
h1{font-size:1.35rem;margin:.2rem 0 .6rem}h2{font-size:1.1rem;margin:1.6rem 0 .5rem;border-bottom:1px solid var(--line)}
.question{color:var(--muted);margin:0 0 .8rem}
.verdict{font-size:1.15rem;font-weight:700;padding:.6rem .8rem;border-radius:6px;border:2px solid}
.verdict.yes{color:var(--ok);border-color:var(--ok)}.verdict.no{color:var(--no);border-color:var(--no)}
dl.headline{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:8px;margin:.8rem 0}
dl.headline div{border:1px solid var(--line);border-radius:6px;padding:.45rem .6rem}
dl.headline dt{color:var(--muted);font-size:.85rem}dl.headline dd{margin:0;font-weight:600;overflow-wrap:anywhere}
figure.chart{margin:.6rem 0 1.2rem}figure.chart svg{width:100%;height:auto;display:block}
figcaption{font-size:.9rem}ul.legend{list-style:none;padding:0;margin:.3rem 0;display:flex;flex-wrap:wrap;gap:4px 14px}
.swatch{display:inline-block;width:14px;height:10px;margin-right:5px;vertical-align:middle}
.swatch.dash{height:0;border-top:2px dashed;width:16px}
svg .plot{fill:none;stroke:#999}svg .grid{stroke:#eee}svg text{font:12px system-ui,sans-serif;fill:#333}
svg .tick.x,svg .axis-label{text-anchor:middle}svg .tick.y{text-anchor:end}svg .mark-label.end{text-anchor:end}
svg .series polyline{stroke-width:2}svg .mark line{stroke-dasharray:6 4;stroke-width:1.4}
svg .mark.v line{stroke-dasharray:2 3}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.9rem}td,th{border-bottom:1px solid var(--line);padding:.25rem .5rem;
text-align:left;vertical-align:top}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.total td{font-weight:600}td.over{color:var(--no);font-weight:600}
pre,code{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}
pre{background:#f6f6f6;padding:.6rem;overflow-x:auto;white-space:pre-wrap;overflow-wrap:anywhere}
.note{color:var(--muted);font-size:.88rem}ul.plain{padding-left:1.1rem}footer{margin-top:2rem;color:var(--muted);
font-size:.85rem}
@media (max-width:600px){body{padding:10px;font-size:14px}dl.headline{grid-template-columns:1fr 1fr}}
@media print{body{max-width:none;padding:0;font-size:11pt}figure,table,dl.headline div,pre{break-inside:avoid}
h2{break-after:avoid}.scroll{overflow:visible}}
"""
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
"""No script, no fetch, no font, no frame: the page can make no request at all."""


def _page(title: str, body: list[str], data: dict[str, Any]) -> str:
    # A JSON data block is never executed (its type is not JavaScript); "</" is escaped so the
    # text cannot close the element early.
    payload = json.dumps(data, indent=1, sort_keys=False).replace("</", "<\\/")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="generator" content="kvcalc">',
        f"<title>{escape(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>", *body,
        f'<script type="application/json" id="kvcalc-data">{payload}</script>', "</body>", "</html>", "",
    ])


def _log_block(engine: str, lines: list[str]) -> list[str]:
    if not lines:
        return []
    out = [f"<h2>What {escape(engine)} would log</h2>", '<pre class="log">']
    notes = []
    for line in lines:
        out.append(escape(line))
        note = unit_note(engine, line)
        if note and note not in notes:
            notes.append(note)
    out.append("</pre>")
    out += [f'<p class="note">Note: {escape(n)}</p>' for n in notes]
    return out


def _footer(command: str, version: str) -> list[str]:
    return ["<h2>How this was made</h2>", f'<pre class="command">{escape(command)}</pre>',
            f'<footer>kvcalc {escape(version)}. Sizes: GiB/MiB are 1024-based (IEC), GB is 10<sup>9</sup> B; '
            "exact bytes are given beside every rounded figure. The figures are also embedded below as JSON "
            "(element <code>kvcalc-data</code>).</footer>"]


def render_plan_html(r: PlanReport) -> str:
    p = r.plan
    ok = p["users_fit"] if p["users"] is not None else p["fits"]
    body = [f"<h1>kvcalc capacity report: {escape(p['model'])}</h1>",
            f'<p class="question">{escape(r.question)}</p>',
            f'<p class="verdict {"yes" if ok else "no"}" data-key="verdict">{escape(r.verdict)}</p>',
            '<dl class="headline">']
    for h in r.headline:
        body.append(f'<div><dt>{escape(h.label)}</dt><dd data-key="{h.key}">{escape(h.text)}</dd></div>')
    body.append("</dl>")
    if p["reason"]:
        body.append(f"<p><b>Why not:</b> {escape(p['reason'])}</p>")
    if p["hints"]:
        body += ["<h2>What to change</h2>", '<ul class="plain">',
                 *[f"<li>{escape(h)}</li>" for h in p["hints"]], "</ul>"]
    body.append("<h2>Memory per GPU</h2>")
    body.append(stacked_bar("memory", title=f"One GPU's memory under {p['engine']}'s memory model",
                            segments=r.memory, total_bytes=r.memory_total_bytes))
    marks_v = [Mark(label=f"{p['model']} max {r.model_max_context:,}", value=r.model_max_context,
                    kind="max-context")]
    if p["max_model_len"] != r.model_max_context:
        marks_v.insert(0, Mark(label=f"--max-model-len {p['max_model_len']:,}", value=p["max_model_len"],
                               kind="context"))
    per_gpu = " per GPU" if p["tp"] * p["pp"] > 1 else ""
    body.append("<h2>KV cache vs context</h2>")
    hl = (Mark(label=f"KV budget{per_gpu} {format_bytes(p['kv_budget_bytes'])}", value=p["kv_budget_bytes"],
               kind="budget"),) if p["kv_budget_bytes"] > 0 else ()
    body.append(line_chart(
        "kv-vs-context", title=f"KV cache for {r.kv_workload}{per_gpu}, by KV dtype",
        x_label="context per request (tokens, log2)", y_label=f"KV cache{per_gpu}",
        series=[Series(label=f"{d} KV", points=tuple(pts)) for d, pts in r.kv_curves.items()],
        hlines=hl, vlines=tuple(marks_v),
        # Where the curves cross the budget is the point of the chart: stop the axis at 4x the budget.
        y_limit=4 * p["kv_budget_bytes"] if p["kv_budget_bytes"] > 0 else None))
    body.append("<h2>Concurrency vs context</h2>")
    hc = []
    if p["users"] is not None:
        hc.append(Mark(label=f"{p['users']:,} users", value=p["users"], kind="users"))
    if p["max_num_seqs"] is not None:
        hc.append(Mark(label=f"--max-num-seqs {p['max_num_seqs']:,}", value=p["max_num_seqs"], kind="cap"))
    body.append(line_chart(
        "concurrency-vs-context", title="Requests resident at once (per replica) vs context",
        x_label="context per request (tokens, log2)", y_label="requests at once (log2)",
        series=[Series(label=f"{p['model']}, TP {p['tp']}, {p['kv_dtype']} KV", points=tuple(r.concurrency))],
        hlines=tuple(hc), vlines=tuple(marks_v), y_kind="count"))
    if p["tp_options"]:
        body += ["<h2>Tensor-parallel options</h2>", '<div class="scroll"><table id="tp-options">',
                 '<tr><th class="num">TP</th><th class="num">requests per replica</th>'
                 '<th class="num">replicas needed</th><th class="num">GPUs</th></tr>']
        for o in p["tp_options"]:
            mark = ' class="total"' if o["tp"] == p["min_tp_for_users"] else ""
            body.append(f'<tr{mark} data-tp="{o["tp"]}"><td class="num">{o["tp"]}</td>'
                        f'<td class="num">{o["max_sequences"]:,}</td><td class="num">{o["replicas_needed"]:,}</td>'
                        f'<td class="num">{o["gpus"]:,}</td></tr>')
        body.append("</table></div>")
        if p["min_tp_for_users"]:
            body.append(f'<p class="note">Smallest TP serving all {p["users"]:,} users in one replica: '
                        f'{p["min_tp_for_users"]}; fewest GPUs: {p["min_gpus_for_users"]}.</p>')
    body += _log_block(p["engine"], p["log_lines"])
    body += ["<h2>Assumptions and sources</h2>", '<div class="scroll"><table id="assumptions">',
             "<tr><th>assumed or given</th><th>source</th></tr>"]
    body += [f"<tr><td>{escape(a)}</td><td>{escape(s)}</td></tr>" for a, s in r.assumptions]
    body.append("</table></div>")
    body += _footer(r.command, r.version)
    return _page(f"kvcalc: {p['model']} capacity report", body, {"report": "plan", "plan": p})


def render_sweep_html(r: SweepReport) -> str:
    s = r.sweep
    body = ["<h1>kvcalc KV-cache sweep</h1>", f'<p class="question">{escape(r.question)}</p>']
    if s["capacity_label"]:
        body += ["<h2>Longest context within the capacity</h2>", '<div class="scroll"><table id="answer">',
                 '<tr><th>series</th><th class="num">longest swept context that fits</th>'
                 '<th class="num">model maximum</th></tr>']
        for line in r.lines:
            text = "none" if line.longest_fitting is None else f"{line.longest_fitting:,} tokens"
            body.append(f'<tr data-series="{escape(line.label, quote=True)}"><td>{escape(line.label)}</td>'
                        f'<td class="num" data-key="longest_fitting">{escape(text)}</td>'
                        f'<td class="num">{s["model_max_context"].get(line.model, 0):,}</td></tr>')
        body.append("</table></div>")
    cap = (Mark(label=s["capacity_label"], value=s["capacity_bytes_per_gpu"], kind="capacity"),) \
        if s["capacity_bytes_per_gpu"] is not None else ()
    first_line = {line.model: line.label for line in reversed(r.lines)}
    vl = tuple(Mark(label=k, value=v, kind="max-context",
                    series=next((first_line[m] for m in first_line if k.startswith(f"{m} ")), None))
               for k, v in r.max_context_marks.items())
    body.append(line_chart("kv-vs-context", title=r.title, x_label="context length (tokens, log2)",
                           y_label=r.y_label, series=[Series(label=x.label, points=tuple(x.points)) for x in r.lines],
                           hlines=cap, vlines=vl))
    per = " per GPU" if s["tp"] > 1 else ""
    body += [f"<h2>KV cache{per} by context</h2>", '<div class="scroll"><table id="grid">',
             "<tr><th>series</th>" + "".join(f'<th class="num">{escape(context_label(n))}</th>'
                                              for n in s["seq_lens"]) + "</tr>"]
    cells = {(c["model"], c["kv_dtype"], c["batch"], c["seq_len"]): c for c in s["cells"]}
    for line in r.lines:
        row = [f"<td>{escape(line.label)}</td>"]
        for n in s["seq_lens"]:
            c = cells[(line.model, line.kv_dtype, line.batch, n)]
            cls = "num over" if c["exceeds"] else "num"
            row.append(f'<td class="{cls}" data-bytes="{c["per_gpu_bytes"]}" title="{c["per_gpu_bytes"]:,} B">'
                       f'{escape(format_bytes(c["per_gpu_bytes"]))}{"!" if c["exceeds"] else ""}</td>')
        body.append("<tr>" + "".join(row) + "</tr>")
    body.append("</table></div>")
    if s["capacity_label"]:
        body.append(f'<p class="note">! = over {escape(s["capacity_label"])}.</p>')
    if r.notes:
        body += ["<h2>Notes</h2>", '<ul class="plain">', *[f"<li>{escape(n)}</li>" for n in r.notes], "</ul>"]
    body += _footer(r.command, r.version)
    return _page("kvcalc: KV-cache sweep", body, {"report": "sweep", "sweep": s})


def render_fit_html(r: FitReport) -> str:
    f = r.fit
    body = [f"<h1>kvcalc fit: {escape(f['model'])}</h1>", f'<p class="question">{escape(r.question)}</p>',
            '<dl class="headline">',
            f'<div><dt>Weights</dt><dd data-key="weights_bytes">{escape(r.weights)}</dd></div>',
            f'<div><dt>Model maximum context</dt><dd data-key="max_context">{f["max_context"]:,} tokens</dd></div>',
            f'<div><dt>GPUs</dt><dd data-key="gpu_count">{f["gpu_count"]:,}</dd></div>',
            f'<div><dt>Replicas</dt><dd data-key="replicas">{f["replicas"]:,}</dd></div>',
            "</dl>", "<h2>What fits</h2>", '<div class="scroll"><table id="fit">',
            "<tr><th>KV dtype</th>"
            + "".join(f'<th class="num">longest context @{b} user{"s" if b > 1 else ""}</th>' for b in f["batches"])
            + "".join(f'<th class="num">users @{escape(_ctx_text(c))}</th>' for c in f["contexts"])
            + '<th class="num">KV budget per GPU</th></tr>']
    for row in f["rows"]:
        cells = [f"<td>{escape(row['kv_dtype'])}</td>"]
        for b in f["batches"]:
            n = row["longest_context"][str(b)]
            star = "*" if row["context_limited_by_model"][str(b)] else ""
            cells.append(f'<td class="num" data-key="longest_context" data-users="{b}">{n:,}{star}</td>')
        for c in f["contexts"]:
            u = row["max_users"][str(c)]
            cells.append(f'<td class="num" data-key="max_users" data-context="{c}">'
                         f'{"-" if u is None else f"{u:,}"}</td>')
        cells.append(f'<td class="num" data-key="kv_budget_bytes">{escape(_bytes(row["kv_budget_bytes"]))}</td>')
        body.append(f'<tr data-kv-dtype="{escape(row["kv_dtype"], quote=True)}">' + "".join(cells) + "</tr>")
    body.append("</table></div>")
    body.append('<p class="note">longest context @N users: the longest context each of N users can have at once; '
                "users @L: the most users at L tokens each (all replicas); * = the model's maximum context "
                "(memory allows more); - = beyond the model's maximum context.</p>")
    if r.users_curves:
        body.append("<h2>Users vs context</h2>")
        body.append(line_chart(
            "users-vs-context", title="The most users at once vs context, by KV dtype",
            x_label="context per request (tokens, log2)", y_label="users at once (log2)",
            series=[Series(label=f"{d} KV", points=tuple(pts)) for d, pts in r.users_curves.items()],
            vlines=(Mark(label=f"{f['model']} max {f['max_context']:,}", value=f["max_context"], kind="max-context"),),
            y_kind="count"))
    if f["notes"]:
        body += ["<h2>Notes</h2>", '<ul class="plain">', *[f"<li>{escape(n)}</li>" for n in f["notes"]], "</ul>"]
    body += _footer(r.command, r.version)
    return _page(f"kvcalc: {f['model']} fit", body, {"report": "fit", "fit": f})


def render_html(report: PlanReport | SweepReport | FitReport) -> str:
    if isinstance(report, FitReport):
        return render_fit_html(report)
    return render_plan_html(report) if isinstance(report, PlanReport) else render_sweep_html(report)


def write_report(path: str | Path, report: PlanReport | SweepReport | FitReport) -> Path:
    """Write the page (UTF-8) to ``path``, which must end in .html or .htm."""
    out = Path(path)
    if out.suffix.lower() not in SUFFIXES:
        raise InvalidRequestError("--report", str(path), "a file name ending in .html")
    out.write_text(render_html(report), encoding="utf-8")
    return out
