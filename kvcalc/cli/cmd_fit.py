"""`kvcalc fit`: the longest context for 1, 8, 32 users and the most users at 4k ... 128k, per KV
dtype; with several models, one comparison table. Parses flags, calls ``kvcalc.planner.fit`` and
renders its result (table, ``--json``, ``--csv``, ``--markdown``); every number is a result field."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

from kvcalc.units import tokens_parser

if TYPE_CHECKING:
    from kvcalc.planner.fit import Comparison, Fit
    from kvcalc.planner.plan import PlanRequest

EPILOG = (
    "Examples:\n\n"
    "  kvcalc fit llama-3.1-8b --gpu h100\n\n"
    "  kvcalc fit --config Qwen2.5-7B-Instruct-Q4_K_M.gguf --gpu rtx-4090 --engine llama.cpp --kv-dtype q8_0\n\n"
    "  kvcalc fit deepseek-v3 llama-3.1-405b qwen3-32b --gpu h200:8 --context 32768 --markdown\n\n"
    "  kvcalc fit llama-3.1-70b --gpu h100:4 --report fit.html\n"
)


def register(app: typer.Typer) -> None:
    @app.command("fit", epilog=EPILOG)
    def fit_cmd(
        ctx: typer.Context,
        models: Annotated[Optional[list[str]], typer.Argument(
            help="One or more built-in models, config paths (HF config.json, kvcalc YAML, .gguf) or hub ids.",
            show_default=False)] = None,
        config: Annotated[Optional[str], typer.Option("--config", "-c", help="A config path or GGUF file.")] = None,
        gpu: Annotated[Optional[str], typer.Option("--gpu", help="GPU[:COUNT] from `kvcalc gpus`, or auto.")]
        = None,
        gpu_memory: Annotated[Optional[str], typer.Option(
            "--gpu-memory", help="Any other GPU: its usable memory per GPU, e.g. 24GiB.")] = None,
        kv_budget: Annotated[Optional[str], typer.Option("--kv-budget", help="KV pool per GPU, e.g. 50GiB.")] = None,
        engine: Annotated[str, typer.Option("--engine", "-e", help="vllm, sglang, trtllm, llama.cpp or hf.")]
        = "vllm",
        kv_dtype: Annotated[Optional[str], typer.Option(
            "--kv-dtype", help="Comma list of KV dtypes (default: those the engine offers, e.g. auto,fp8).")] = None,
        weight_dtype: Annotated[str, typer.Option(
            "--weight-dtype", help="auto (the checkpoint's), bf16, fp8, int4, GGUF q4_k_m, q8_0, ...")] = "auto",
        weights: Annotated[Optional[str], typer.Option(
            "--weights", help="Exact weights: safetensors file/folder/index or a .gguf file.")] = None,
        tp: Annotated[Optional[int], typer.Option("--tp", min=1, help="Tensor-parallel degree (default: GPUs).")]
        = None,
        pp: Annotated[int, typer.Option("--pp", min=1, help="Pipeline stages.")] = 1,
        users: Annotated[str, typer.Option("--users", help="Users at once for the longest-context columns.")]
        = "1,8,32",
        contexts: Annotated[str, typer.Option(
            "--contexts", help="Contexts for the most-users columns (k = x1024).")] = "4k,8k,32k,128k",
        context: Annotated[int, typer.Option(
            "--context", "--max-model-len", parser=tokens_parser("--context"),
            help="Several models: the context they are compared at, e.g. 32768 or 32k.")]
        = 8192,
        json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
        csv: Annotated[bool, typer.Option("--csv", help="Print CSV (exact integers).")] = False,
        markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown table (for a design doc).")]
        = False,
        report: Annotated[Optional[str], typer.Option(
            "--report", help="Also write a self-contained HTML page (FILE.html) with the table and a chart.")]
        = None,
        offline: Annotated[bool, typer.Option(
            "--offline", help="Never contact the Hub (HF_HUB_OFFLINE=1): hub ids from the local HF cache only.")]
        = False,
    ) -> None:
        """What fits: the longest context for N users and the most users at each context, per KV dtype;
        with several models, one comparison table."""
        run_fit(ctx, list(models or []) + ([config] if config else []), gpu=gpu, gpu_memory=gpu_memory,
                kv_budget=kv_budget, engine=engine, kv_dtype=kv_dtype, weight_dtype=weight_dtype, weights=weights,
                tp=tp, pp=pp, users=users, contexts=contexts, context=context, json=json, csv=csv,
                markdown=markdown, report=report, offline=offline)


def run_fit(ctx: typer.Context, refs: list[str], *, gpu: str | None, gpu_memory: str | None, kv_budget: str | None,
            engine: str, kv_dtype: str | None, weight_dtype: str, weights: str | None, tp: int | None, pp: int,
            users: str, contexts: str, context: int, json: bool, csv: bool, markdown: bool, report: str | None,
            offline: bool) -> None:
    """``kvcalc fit`` without typer's flag declarations: the models (``refs``: positional models,
    then ``--config``), the fit or the comparison, and its output."""
    import sys

    from kvcalc.cli.output import warn
    from kvcalc.errors import InvalidRequestError
    from kvcalc.estimate import MAX_BATCH, MAX_TOKENS
    from kvcalc.planner.fit import fit
    from kvcalc.show.sweep import parse_int_list, parse_name_list

    if offline:
        import os

        os.environ["HF_HUB_OFFLINE"] = "1"  # huggingface_hub reads it when first imported (lazily, below)
    if sum((json, csv, markdown)) > 1:
        raise InvalidRequestError("--json/--csv/--markdown", "several", "one output format")
    if not refs:
        raise InvalidRequestError("MODEL", "", "one or more models (built-in names, config paths or --config)")
    bases = requests_for(refs, engine=engine, gpu=gpu, gpu_memory=gpu_memory, kv_budget=kv_budget,
                         weight_dtype=weight_dtype, weights=weights, tp=tp, pp=pp)
    for base in bases:
        for assumption in base.model.source.assumptions:
            warn(assumption)
    if len(bases) > 1:
        if report:
            raise InvalidRequestError("--report", report, "one model (several: --markdown, --csv or --json)")
        print_comparison(bases, kv_dtype=kv_dtype, context=context, json=json, csv=csv, markdown=markdown)
        return
    dtypes = tuple(parse_name_list(kv_dtype, "--kv-dtype")) if kv_dtype else None
    answer = fit(bases[0], kv_dtypes=dtypes,
                 batches=tuple(parse_int_list(users, "--users", maximum=MAX_BATCH)),
                 contexts=tuple(parse_int_list(contexts, "--contexts", maximum=MAX_TOKENS)))
    if report:
        from kvcalc.show.report import command_line, fit_report, write_report

        sys.stderr.write(f"wrote {write_report(report, fit_report(answer, command_line(ctx)))}\n")
    print_fit(answer, json=json, csv=csv, markdown=markdown)


def print_fit(answer: Fit, *, json: bool, csv: bool, markdown: bool) -> None:
    """One fit in the output format asked for (the table by default)."""
    import sys

    from kvcalc.cli.output import print_json

    if json:
        print_json(answer.to_dict())
    elif csv:
        sys.stdout.write(fit_csv(answer))
    elif markdown:
        sys.stdout.write(_markdown(*_fit_cells(answer)))
    else:
        render_fit(answer)


def print_comparison(bases: list[PlanRequest], *, kv_dtype: str | None, context: int, json: bool, csv: bool,
                     markdown: bool) -> None:
    """Several models, one table (``kvcalc.planner.fit.compare``); ``plan`` with several models
    calls this too."""
    import dataclasses
    import sys

    from kvcalc.cli.output import print_json
    from kvcalc.errors import InvalidRequestError
    from kvcalc.planner.fit import compare

    if sum((json, csv, markdown)) > 1:
        raise InvalidRequestError("--json/--csv/--markdown", "several", "one output format")
    if kv_dtype is not None and "," in kv_dtype:
        raise InvalidRequestError("--kv-dtype", kv_dtype, "one KV dtype when comparing several models")
    result = compare([dataclasses.replace(b, kv_dtype=kv_dtype or "auto") for b in bases], context)
    if json:
        print_json(result.to_dict())
    elif csv:
        sys.stdout.write(compare_csv(result))
    elif markdown:
        sys.stdout.write(compare_markdown(result))
    else:
        render_compare(result)


def requests_for(refs: list[str], *, engine: str, gpu: str | None, gpu_memory: str | None, kv_budget: str | None,
                 weight_dtype: str, weights: str | None, tp: int | None, pp: int) -> list[PlanRequest]:
    """One ``PlanRequest`` per model reference (built-in, path, .gguf, hub id), the same deployment."""
    from kvcalc.hub import load_model_or_hub
    from kvcalc.planner.plan import PlanRequest
    from kvcalc.units import parse_size

    gpu_bytes = parse_size(gpu_memory, "--gpu-memory") if gpu_memory else None
    budget = parse_size(kv_budget, "--kv-budget") if kv_budget else None
    return [PlanRequest(model=load_model_or_hub(ref), engine=engine, gpu=gpu, gpu_memory_bytes=gpu_bytes,
                        kv_budget_bytes=budget, weight_dtype=weight_dtype, weights_path=weights, tp=tp, pp=pp,
                        solve_tp=False) for ref in refs]


def _ctx(n: int) -> str:
    return f"{n >> 10}k" if n % 1024 == 0 else f"{n:,}"


def _fit_cells(f: Fit) -> tuple[list[str], list[list[str]]]:
    headers = ["KV dtype"] + [f"ctx @{b} user{'s' if b > 1 else ''}" for b in f.batches] + [
        f"users @{_ctx(c)}" for c in f.contexts]
    rows = []
    for r in f.rows:
        cells = [r.kv_dtype]
        for b in f.batches:
            cells.append(f"{r.longest_context[b]:,}" + ("*" if r.context_limited_by_model[b] else ""))
        for c in f.contexts:
            u = r.max_users[c]
            cells.append("-" if u is None else f"{u:,}")
        rows.append(cells)
    return headers, rows


def render_fit(f: Fit) -> None:
    from rich.table import Table

    from kvcalc.cli.output import stdout_console
    from kvcalc.units import format_bytes

    console = stdout_console()
    where = f"{f.gpu_count} x {f.gpu}" if f.gpu else "a given KV budget"
    console.print(f"[bold]{f.model} on {where}, TP {f.tp}, {f.engine}[/bold]")
    weights = "unknown" if f.weights_bytes is None else f"{format_bytes(f.weights_bytes)} ({f.weights_bytes:,} B)"
    console.print(f"weights {weights} from {f.weights_source}", markup=False)
    headers, rows = _fit_cells(f)
    table = Table(title_justify="left")
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    capped = any(any(r.context_limited_by_model.values()) for r in f.rows)
    console.print("ctx @N users: the longest context each of N users can have at once; users @L: the most users at "
                  "L tokens each" + (f"; * = the model's maximum context ({f.max_context:,} tokens), memory allows "
                                     "more" if capped else ""), markup=False)
    for note in f.notes:
        console.print(f"note: {note}", markup=False)


def fit_csv(f: Fit) -> str:
    lines = ["model,engine,kv_dtype,question,value,answer,limited_by_model"]
    for r in f.rows:
        for b in f.batches:
            lines.append(f"{f.model},{f.engine},{r.kv_dtype},longest_context_tokens,{b},{r.longest_context[b]},"
                         f"{str(r.context_limited_by_model[b]).lower()}")
        for c in f.contexts:
            u = r.max_users[c]
            lines.append(f"{f.model},{f.engine},{r.kv_dtype},max_users,{c},{'' if u is None else u},")
    return "\n".join(lines) + "\n"


def _compare_cells(c: Comparison) -> tuple[list[str], list[list[str]]]:
    from kvcalc.units import format_bytes

    headers = ["model", "KV dtype", "KV B/token", f"KV/req @{_ctx(c.context)}/GPU", "weights",
               f"users @{_ctx(c.context)}", "ctx @1 user"]
    rows = []
    for r in c.rows:
        weights = "unknown" if r.weights_bytes is None else f"{format_bytes(r.weights_bytes)} ({r.weights_dtype})"
        rows.append([r.model, r.kv_dtype, f"{r.bytes_per_token:,}", format_bytes(r.kv_per_request_per_gpu_bytes),
                     weights, f"{r.max_users:,}" if r.fits else "0 (does not fit)",
                     f"{r.longest_context:,}" + ("*" if r.longest_context == r.max_context else "")])
    return headers, rows


def render_compare(c: Comparison) -> None:
    from rich.table import Table

    from kvcalc.cli.output import stdout_console

    console = stdout_console()
    console.print(f"[bold]{len(c.rows)} models on {c.gpu_count} x {c.gpu or 'a given budget'}, {c.engine}, "
                  f"{c.context:,} tokens per request[/bold]")
    headers, rows = _compare_cells(c)
    table = Table()
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i in (0, 1, 4) else "right", no_wrap=i == 0)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print("KV/req: KV of one request per GPU; * = the model's maximum context", markup=False)


def compare_csv(c: Comparison) -> str:
    cols = ["model", "kv_dtype", "bytes_per_token", "kv_per_request_bytes", "kv_per_request_per_gpu_bytes",
            "weights_bytes", "weights_dtype", "kv_budget_bytes", "fits", "max_users", "longest_context", "max_context"]
    lines = ["engine,gpu,gpu_count,context," + ",".join(cols)]
    for r in c.rows:
        d = r.__dict__
        vals = ["" if d[k] is None else (str(d[k]).lower() if isinstance(d[k], bool) else str(d[k])) for k in cols]
        lines.append(f"{c.engine},{c.gpu or ''},{c.gpu_count},{c.context}," + ",".join(_csv(v) for v in vals))
    return "\n".join(lines) + "\n"


def _csv(value: str) -> str:
    return f'"{value}"' if "," in value or '"' in value else value


def compare_markdown(c: Comparison) -> str:
    headers, rows = _compare_cells(c)
    title = (f"{len(c.rows)} models on {c.gpu_count} x {c.gpu or 'a given budget'} ({c.engine}), "
             f"{c.context:,} tokens per request\n\n")
    return title + _markdown(headers, rows) + "\n\\* the model's maximum context\n"


def _markdown(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(out) + "\n"
