"""`kvcalc check-log FILE`: kvcalc's prediction beside every figure an engine's start-up log prints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from kvcalc.engines.startup_log import LogCheck


def register(app: typer.Typer) -> None:
    @app.command(
        "check-log",
        epilog="Examples:\n\n  kvcalc check-log vllm.log\n\n"
        "  kvcalc check-log server.log llama-3-8b --tp 2\n\n"
        "  kvcalc check-log sglang.log --config ./config.json --json\n",
    )
    def check_log_cmd(
        file: Annotated[str, typer.Argument(
            help="A vLLM (V0 or V1, any release), SGLang, TensorRT-LLM or llama.cpp start-up log.")],
        model: Annotated[Optional[str], typer.Argument(help="Model, when the log's name is not built in.",
                                                       show_default=False)] = None,
        config: Annotated[Optional[str], typer.Option("--config", "-c", help="kvcalc YAML or HF config.json.")]
        = None,
        tp: Annotated[Optional[int], typer.Option("--tp", "-tp", "--tensor-parallel-size", min=1,
                                                  help="Override the log's tensor-parallel size.")] = None,
        kv_dtype: Annotated[Optional[str], typer.Option("--kv-dtype", "--kv-cache-dtype",
                                                        help="Override the log's KV dtype.")] = None,
        block_size: Annotated[Optional[int], typer.Option("--block-size", min=1, help="vLLM block size.")] = None,
        gpu: Annotated[Optional[str], typer.Option("--gpu", help="The GPU the log came from (vLLM picks the MLA "
                                                   "block size by it; default: Hopper).")] = None,
        dcp: Annotated[Optional[int], typer.Option("--dcp", "--decode-context-parallel-size", min=1,
                                                   help="vLLM decode context parallel size (default: the log's "
                                                   "decode_context_parallel_size, else 1).")] = None,
        dp_attention: Annotated[Optional[int], typer.Option("--dp-attention", min=1,
                                                            help="SGLang attention data-parallel size (default: "
                                                            "--dp of the log's command with --enable-dp-attention, "
                                                            "else 1).")] = None,
        json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    ) -> None:
        """Compare an engine's start-up log with kvcalc's prediction for the same inputs, under the
        rules of the engine version that printed it."""
        from kvcalc.cli.output import print_json, stdout_console
        from kvcalc.engines.startup_log import check_log

        resolved = None
        if model or config:
            from kvcalc.cli.run_estimate import resolve_model

            resolved = resolve_model(model, config)
        result = check_log(file, resolved, tp=tp, kv_dtype=kv_dtype, block_size=block_size, gpu=gpu, dcp=dcp,
                           dp_attention=dp_attention)
        if json:
            print_json(result.to_dict())
            return
        render_check(result, stdout_console())


def render_check(r: LogCheck, console: Console) -> None:
    from rich.table import Table

    from kvcalc.engines.loglines import clean

    version = f" {r.version}" if r.version else ""
    title = clean(f"{r.path}: {r.engine or 'unknown engine'}{version}, model {r.model_resolved or r.model or '?'}, "
                  f"max_model_len {r.max_model_len or '?'}, TP {r.tp}")
    table = Table(title=title, title_justify="left")
    table.add_column("Figure")
    table.add_column("Logged", justify="right")
    table.add_column("kvcalc", justify="right")
    table.add_column("Difference", justify="right")
    table.add_column("Match")
    for c in r.checks:
        table.add_row(c.item, c.logged, c.predicted, c.difference,
                      {True: "yes", False: "NO", None: "-"}[c.matches])
    console.print(table)
    console.print(f"compared against: {r.rules}", markup=False)
    for c in r.checks:
        console.print(f"  {c.item}: {c.basis}", markup=False)
    compared = len(r.checks) - r.not_compared
    console.print(f"{compared} figure(s) compared, {r.not_compared} listed but not compared; all match: "
                  f"{'yes' if r.all_match else 'no'}", markup=False)
    for note in r.notes:
        console.print(f"note: {note}", markup=False)
