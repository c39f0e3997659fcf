"""`kvcalc sweep`: one table of KV-cache bytes over models x dtypes x batches x context lengths."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from kvcalc.show.sweep import SweepResult

SEQ_HELP = ("Context lengths: comma list with k = x1024 (1k,4k,128k), plain ints, A..B (doubling: 1k..128k) "
            "or A..B:STEP.")


def gpu_capacity(gpu: str | None, gpu_memory: str | None, tp: int) -> tuple[int | None, str | None]:
    """Per-GPU capacity from ``--gpu NAME[:COUNT]`` (its usable memory) or ``--gpu-memory SIZE``;
    the label says "per GPU" only when the cells are per GPU (``tp`` > 1)."""
    from kvcalc.errors import InvalidRequestError

    if gpu is not None and gpu_memory is not None:
        raise InvalidRequestError("--gpu-memory", gpu_memory, "either --gpu or --gpu-memory, not both")
    if gpu_memory is not None:  # '' is a bad size, not "no size" (parse_size refuses it)
        from kvcalc.units import format_bytes, parse_size

        size = parse_size(gpu_memory, "--gpu-memory")
        return size, f"--gpu-memory {format_bytes(size)}" + (" per GPU" if tp > 1 else "")
    if gpu is not None:
        from kvcalc.planner.gpus import parse_gpu_spec
        from kvcalc.units import format_bytes

        g, count = parse_gpu_spec(gpu)
        label = f"{g.name} usable {format_bytes(g.usable_bytes)}"
        if tp > 1:
            label += f" per GPU (TP {tp}" + (f" of {count} GPUs)" if count != tp else ")")
        return g.usable_bytes, label
    return None, None


def default_tp(gpu: str | None, tp: int | None) -> int:
    """``--tp``, else ``--gpu``'s count (as ``plan`` does): ``--gpu h200:8`` shards the cache over 8."""
    if tp is not None:
        return tp
    if gpu:
        from kvcalc.planner.gpus import parse_gpu_spec

        return parse_gpu_spec(gpu)[1]
    return 1


def register(app: typer.Typer) -> None:
    @app.command(
        "sweep",
        epilog="Examples:\n\n"
        "  kvcalc sweep llama-2-7b llama-3-8b --seq-len 1k..128k --batch 1,8 --kv-dtype bf16,fp8 --gpu h100\n\n"
        "  kvcalc sweep llama-3-70b --seq-len 4k,32k,128k --batch 1,8,32 --csv\n\n"
        "  kvcalc sweep qwen3-32b mistral-7b-v0.1 --seq-len 1k..128k --gpu-memory 24GiB --plot kv.png "
        "--report kv.html\n",
    )
    def sweep_cmd(
        ctx: typer.Context,
        models: Annotated[list[str], typer.Argument(help="One or more built-in model names or config paths.")],
        seq_len: Annotated[str, typer.Option("--seq-len", "-s", help=SEQ_HELP)] = "1k..128k",
        batch: Annotated[str, typer.Option("--batch", "-b", help="Batch sizes (same list syntax).")] = "1",
        kv_dtype: Annotated[str, typer.Option("--kv-dtype", help="Comma list of KV dtypes (auto, bf16, fp8, ...).")]
        = "auto",
        engine: Annotated[str, typer.Option("--engine", "-e", help="Storage policy (neutral by default).")]
        = "neutral",
        tp: Annotated[Optional[int], typer.Option(
            "--tp", min=1, help="Tensor-parallel degree, bytes shown per GPU (default: --gpu's count, else 1).")]
        = None,
        gpu: Annotated[Optional[str], typer.Option(help="Mark cells over this GPU's usable memory: NAME[:COUNT].")]
        = None,
        gpu_memory: Annotated[Optional[str], typer.Option(help="Mark cells over this per-GPU size, e.g. 24GiB.")]
        = None,
        csv: Annotated[bool, typer.Option("--csv", help="Print CSV with exact byte counts.")] = False,
        json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
        plot: Annotated[Optional[str], typer.Option(help="Write a PNG/SVG plot of memory vs context.")] = None,
        chart: Annotated[bool, typer.Option("--chart/--no-chart", help="Terminal chart under the table.")] = True,
        report: Annotated[Optional[str], typer.Option(
            "--report", help="Write a self-contained HTML report (charts, table, command) to FILE.html.")] = None,
    ) -> None:
        """KV-cache memory over a grid of context lengths, batch sizes and KV dtypes, for one or more models."""
        import sys

        from kvcalc.cli.output import check_output_path, print_json, stdout_console, wrote
        from kvcalc.errors import InvalidRequestError
        from kvcalc.estimate import MAX_BATCH, MAX_TOKENS
        from kvcalc.registry import load_model
        from kvcalc.show.sweep import parse_int_list, parse_name_list, plot_sweep, sweep, to_csv

        if csv and json:
            raise InvalidRequestError("--csv", True, "either --csv or --json, not both")
        if plot is not None:
            check_output_path(plot, "--plot")
        if report is not None:
            check_output_path(report, "--report")
        seqs = parse_int_list(seq_len, "--seq-len", maximum=MAX_TOKENS)
        batches = parse_int_list(batch, "--batch", maximum=MAX_BATCH)
        dtypes = parse_name_list(kv_dtype, "--kv-dtype")
        tp_degree = default_tp(gpu, tp)
        capacity, label = gpu_capacity(gpu, gpu_memory, tp_degree)
        result = sweep([load_model(m) for m in models], seqs, batches, dtypes, engine=engine, tp=tp_degree,
                       capacity_bytes_per_gpu=capacity, capacity_label=label)
        written = plot_sweep(result, plot) if plot is not None else None
        if report is not None:
            from kvcalc.show.report import command_line, sweep_report, write_report

            wrote(write_report(report, sweep_report(result, command_line(ctx))))
        if json:
            print_json(result.to_dict())
        elif csv:
            sys.stdout.write(to_csv(result))
        else:
            console = stdout_console()
            render_sweep(result, console)
            if chart and not plot:
                console.print(render_chart(result), markup=False, highlight=False)
        if written is not None:
            wrote(written)


def render_sweep(result: SweepResult, console: Console) -> None:
    """One row per (model, dtype, batch), one column per context length; '!' marks cells over capacity."""
    from rich.table import Table

    from kvcalc.units import KiB, format_bytes

    per = " per GPU" if result.tp > 1 else ""
    title = f"KV cache{per} ({result.engine} engine)"
    headers = ["Model", "KV dtype", "Batch"] + [
        # 1k = 1,024 tokens, the same k the --seq-len flag reads
        f"{s >> 10}k" if s % KiB == 0 else f"{s:,}" for s in result.seq_lens
    ]
    rows = [
        [model, dtype, str(batch)] + [format_bytes(c.per_gpu_bytes) + ("!" if c.exceeds else "")
                                      for c in cells]
        for (model, dtype, batch), cells in result.series().items()
    ]
    table = Table(title=title, title_justify="left")
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i < 2 else "right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    # A crushed table is unreadable: let a wide grid run past the terminal width instead
    # (each column: its widest cell + 2 padding + 1 border; plus the closing border).
    needed = sum(max(len(h), *(len(r[i]) for r in rows)) + 3 for i, h in enumerate(headers)) + 1
    if needed > console.width:
        console.width = needed
    console.print(table)
    if result.capacity_label:
        console.print(f"! = over {result.capacity_label} (KV cache only; weights not subtracted)", markup=False)
    for note in result.notes:
        console.print(f"Note: {note}", markup=False)


def render_chart(result: SweepResult) -> str:
    from kvcalc.show.axes import context_label
    from kvcalc.show.termchart import bar_chart
    from kvcalc.units import format_bytes

    # Contexts as --seq-len writes them (1k = 1,024 tokens), like the plots' base-2 axis.
    series = {
        f"{m} {d} batch {b}": [(context_label(c.seq_len), c.per_gpu_bytes, format_bytes(c.per_gpu_bytes))
                               for c in cells]
        for (m, d, b), cells in result.series().items()
    }
    return bar_chart(series, capacity=result.capacity_bytes_per_gpu, capacity_label=result.capacity_label or "")
