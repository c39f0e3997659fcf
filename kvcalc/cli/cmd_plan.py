"""`kvcalc plan`: will this model, at this context, serve this many users on these GPUs?

Parses flags into a ``PlanRequest``, calls ``kvcalc.planner.plan.plan`` and renders the
``Plan``; every number shown is a field of the result."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from kvcalc.planner.plan import Plan

EPILOG = (
    "Examples:\n\n"
    "  kvcalc plan llama-3-70b --gpu h100:4 --kv-dtype fp8 --context 8192 --users 64\n\n"
    "  kvcalc plan llama-2-7b --kv-budget 50GiB --max-model-len 4096 --json\n\n"
    "  kvcalc plan deepseek-v3 --gpu h200:8 --weight-dtype fp8 --context 32768 --users 32\n"
)


def register(app: typer.Typer) -> None:  # noqa: C901 - one flag per vLLM knob
    @app.command("plan", epilog=EPILOG)
    def plan_cmd(
        ctx: typer.Context,
        model: Annotated[Optional[str], typer.Argument(help="Built-in model name or alias.", show_default=False)]
        = None,
        config: Annotated[Optional[str], typer.Option("--config", "-c", help="kvcalc YAML or HF config.json.")]
        = None,
        gpu: Annotated[Optional[str], typer.Option("--gpu", help="GPU[:COUNT] from `kvcalc gpus`, e.g. h100:4.")]
        = None,
        gpu_memory: Annotated[Optional[str], typer.Option(
            "--gpu-memory", help="Any other GPU: its usable memory per GPU, e.g. 24GiB.")] = None,
        kv_budget: Annotated[Optional[str], typer.Option(
            "--kv-budget", help="Skip the memory model: KV pool per GPU, e.g. 50GiB (as vLLM logs it).")] = None,
        engine: Annotated[str, typer.Option("--engine", "-e", help="vllm, sglang, trtllm, llama.cpp or hf.")]
        = "vllm",
        context: Annotated[Optional[int], typer.Option(
            "--max-model-len", "--context", min=1, help="Tokens per request (default: the model's maximum).")]
        = None,
        kv_dtype: Annotated[str, typer.Option("--kv-dtype", "--kv-cache-dtype", help="auto, bf16, fp8, int4, ...")]
        = "auto",
        weight_dtype: Annotated[str, typer.Option(
            "--weight-dtype", help="auto, bf16, fp16, fp8, int8, int4 (AWQ/GPTQ, group 128).")] = "auto",
        weights: Annotated[Optional[str], typer.Option(
            "--weights", help="Exact weight bytes from safetensors headers (file, folder or index).")] = None,
        tp: Annotated[Optional[int], typer.Option("--tp", "-tp", "--tensor-parallel-size", min=1,
                                                  help="Tensor-parallel degree (default: the GPU count).")] = None,
        pp: Annotated[int, typer.Option("--pp", "--pipeline-parallel-size", min=1, help="Pipeline stages.")] = 1,
        block_size: Annotated[Optional[int], typer.Option(
            "--block-size", min=1, help="Tokens per KV block (vLLM default 16; 64 for MLA).")] = None,
        max_num_batched_tokens: Annotated[Optional[int], typer.Option(
            "--max-num-batched-tokens", min=1,
            help="vLLM chunked-prefill budget (sizes sliding-window reservations); default: vllm serve's for the "
                 "GPU (8192 on 70 GiB+ GPUs but A100, else 2048; 8192 with --kv-budget alone).")] = None,
        max_num_seqs: Annotated[Optional[int], typer.Option(
            "--max-num-seqs", min=1,
            help="vLLM's cap on running requests; default: vllm serve's for the GPU (1024 or 256).")] = None,
        gpu_memory_utilization: Annotated[Optional[str], typer.Option(
            "--gpu-memory-utilization", help="vLLM: fraction of total GPU memory (default 0.92).")] = None,
        mem_fraction_static: Annotated[Optional[str], typer.Option(
            "--mem-fraction-static",
            help="SGLang: weights + KV fraction of free memory (default: SGLang 0.5.23's, from GPU size, tp x pp).",
        )] = None,
        free_gpu_memory_fraction: Annotated[Optional[str], typer.Option(
            "--free-gpu-memory-fraction", help="TensorRT-LLM: fraction of memory free after profiling (0.9).")]
        = None,
        activation_memory: Annotated[Optional[str], typer.Option(
            "--activation-memory", help="Activation peak per GPU (default 1.5GiB, an assumption).")] = None,
        non_torch_memory: Annotated[Optional[str], typer.Option(
            "--non-torch-memory", help="Non-torch memory per GPU: CUDA context, NCCL (default 0.5GiB).")] = None,
        users: Annotated[Optional[int], typer.Option("--users", min=1, help="Concurrent users to serve.")] = None,
        batch: Annotated[Optional[int], typer.Option("--batch", "-b", min=1,
                                                     help="Batch for the longest-context answer.")] = None,
        shared_prefix_tokens: Annotated[int, typer.Option(
            "--shared-prefix-tokens", min=0, help="A prompt prefix every user shares (prefix caching).")] = 0,
        plot: Annotated[Optional[str], typer.Option("--plot", help="Write concurrency vs context to FILE.png/.svg.")]
        = None,
        json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
        report: Annotated[Optional[str], typer.Option(
            "--report", help="Write a self-contained HTML report (answer, charts, assumptions) to FILE.html.")]
        = None,
    ) -> None:
        """Plan a deployment: KV budget, blocks, concurrency, whether --users fit, and what to change."""
        from kvcalc.cli.output import print_json, stdout_console, warn
        from kvcalc.cli.run_estimate import resolve_model
        from kvcalc.engines import get_engine, planner_engines
        from kvcalc.errors import InvalidRequestError
        from kvcalc.planner.plan import PlanRequest, plan, plan_engine
        from kvcalc.units import parse_size

        # Each fraction flag belongs to the engine that declares it (Engine.fraction_flag).
        given = {"--gpu-memory-utilization": gpu_memory_utilization, "--mem-fraction-static": mem_fraction_static,
                 "--free-gpu-memory-fraction": free_gpu_memory_fraction}
        chosen = plan_engine(engine)
        for flag, value in given.items():
            if value is not None and flag != chosen.fraction_flag:
                owner = next((e for e in planner_engines() if get_engine(e).fraction_flag == flag), "?")
                raise InvalidRequestError(flag, value, f"used with --engine {owner} (this plan uses {chosen.name})")
        resolved = resolve_model(model, config)
        req = PlanRequest(
            model=resolved, engine=engine, max_model_len=context, kv_dtype=kv_dtype, weight_dtype=weight_dtype,
            gpu=gpu, gpu_memory_bytes=parse_size(gpu_memory, "--gpu-memory") if gpu_memory else None,
            kv_budget_bytes=_signed_size(kv_budget) if kv_budget else None, tp=tp, pp=pp,
            block_size=block_size, max_num_batched_tokens=max_num_batched_tokens, max_num_seqs=max_num_seqs,
            fraction=given.get(chosen.fraction_flag or ""),
            activation_bytes=parse_size(activation_memory, "--activation-memory") if activation_memory else None,
            non_torch_bytes=parse_size(non_torch_memory, "--non-torch-memory") if non_torch_memory else None,
            users=users, batch=batch, shared_prefix_tokens=shared_prefix_tokens, weights_path=weights,
        )
        result = plan(req)
        for assumption in resolved.source.assumptions:
            warn(assumption)
        for message in result.warnings:
            warn(message)
        if plot:
            from kvcalc.planner.plotting import plot_plan

            written = plot_plan(req, result, plot)
            typer.echo(f"wrote {written}", err=True)
        if report:
            from kvcalc.show.report import command_line, plan_report, write_report

            typer.echo(f"wrote {write_report(report, plan_report(req, result, command_line(ctx)))}", err=True)
        if json:
            print_json(result.to_dict())
            return
        render_plan(result, stdout_console())


def _signed_size(text: str) -> int:
    """``--kv-budget`` accepts zero or a negative size (an answer: nothing fits)."""
    from kvcalc.units import parse_size

    stripped = text.strip()
    if stripped.startswith("-"):
        return -parse_size(stripped[1:], "--kv-budget")
    return parse_size(stripped, "--kv-budget")


def render_plan(p: Plan, console: Console) -> None:  # noqa: C901 - a linear report
    from rich.table import Table

    from kvcalc.units import format_bytes

    def size(n: int | None) -> str:
        return "unknown" if n is None else f"{format_bytes(n)} ({n:,} B)"

    where = f"{p.gpu_count} x {p.gpu}" if p.gpu else "a given KV budget"
    title = (f"{p.model} on {where}, TP {p.tp}" + (f" x PP {p.pp}" if p.pp > 1 else "")
             + (f", {p.replicas} replicas" if p.replicas > 1 else "") + f", {p.engine} ({p.engine_version})")
    console.print(f"[bold]{title}[/bold]")
    ctx = f"{p.max_model_len:,} tokens per request"
    if p.users is not None:
        verdict = "YES" if p.users_fit else "NO"
        console.print(f"[bold]Serve {p.users:,} users x {ctx}? {verdict}[/bold] ({p.binding_constraint})")
    else:
        verdict = "YES" if p.fits else "NO"
        console.print(f"[bold]Does one request of {ctx} fit? {verdict}[/bold]")

    b = p.budget
    mem = Table(title="Memory per GPU", title_justify="left", show_header=False)
    mem.add_column("item")
    mem.add_column("value", justify="right")
    if b["total_bytes"] is not None:
        # Rows in the order the engine applies them, so the column adds up (budget.py has the rules):
        # vLLM takes its fraction of the total first; SGLang of what is free before the weights
        # load; TensorRT-LLM of what is free after profiling.
        fraction_row = (f"x {b['fraction_flag']} {b['fraction']}", b["requested_bytes"])
        weights_row = (f"- weights ({p.weight_dtype}, {p.parameters_source}; 1/{p.tp * p.pp} per GPU)",
                       b["weights_bytes"])
        activation_row = ("- activation peak (--activation-memory)", b["activation_bytes"] or None)
        non_torch_row = ("- non-torch: CUDA context, NCCL (--non-torch-memory)", b["non_torch_bytes"])
        rows: list[tuple[str, int | None]] = [("GPU memory the engine sees", b["total_bytes"])]
        if b["engine"] == "sglang":
            rows += [non_torch_row, fraction_row, weights_row]
        elif b["engine"] == "trtllm":
            rows += [weights_row, activation_row, non_torch_row,
                     (f"x {b['fraction_flag']} {b['fraction']} of what is left", None)]
        else:
            rows += [fraction_row, weights_row, activation_row, non_torch_row]
        for label, value in rows:
            if value is not None or (label.startswith("x ") and b["fraction"] is not None):
                mem.add_row(label, size(value) if value is not None else "")
    else:
        mem.add_row("weights (all GPUs)", size(p.weights_bytes))
    mem.add_row("= KV cache budget", size(p.kv_budget_bytes), style="bold")
    console.print(mem)

    kv = Table(title=f"KV cache ({p.kv_dtype})", title_justify="left", show_header=False)
    kv.add_column("item")
    kv.add_column("value", justify="right")
    if p.vllm is not None:
        v = p.vllm
        kv.add_row("block size / page per layer", f"{v['block_size']} tokens / {v['page_size_bytes']:,} B")
        kv.add_row("layer groups", f"{v['num_groups']} x {v['group_size']} layers ({v['layout']})")
        kv.add_row("blocks (vLLM's count, incl. 1 null block)", f"{p.num_blocks:,}")
        kv.add_row("blocks per request at max_model_len", f"{v['blocks_per_request']:,}")
        kv.add_row("--max-num-batched-tokens", f"{p.max_num_batched_tokens:,}")
    if p.kv_cache_tokens is not None:
        kv.add_row("tokens the cache holds", f"{p.kv_cache_tokens:,}")
    kv.add_row("max concurrency at max_model_len", f"{p.max_concurrency:.2f}x")
    kv.add_row("requests resident at once (per replica)" + (" (null block excluded)" if p.vllm else ""),
               f"{p.max_sequences:,}")
    kv.add_row(f"longest context for {p.batch:,} requests at once", f"{p.longest_context_at_batch:,} tokens")
    kv.add_row("KV for this workload, per GPU", size(p.per_gpu_bytes))
    if p.headroom_bytes is not None:
        kv.add_row("headroom (KV left over)",
                   f"{format_bytes(p.headroom_bytes)} ({p.headroom_units:,} {p.capacity_unit})")
    if p.shared_prefix_tokens:
        kv.add_row(f"shared prefix {p.shared_prefix_tokens:,} tokens: saving", size(p.shared_prefix_saving_bytes))
        kv.add_row("requests resident without sharing", f"{p.max_sequences_without_prefix_sharing:,}")
    console.print(kv)

    if p.tp_options:
        console.print("TP options for --users " + ", ".join(
            f"TP {o['tp']}: {o['max_sequences']:,} per replica" for o in p.tp_options)
            + (f"; smallest TP {p.min_tp_for_users}" if p.min_tp_for_users else "")
            + (f"; fewest GPUs {p.min_gpus_for_users}" if p.min_gpus_for_users else ""), markup=False)
    if p.roofline is not None:
        r = p.roofline
        comp = r["compute_bound_tokens_per_s"]
        console.print(
            f"Decode roofline at batch {r['batch']} ({r['label']}): {r['tokens_per_s_per_sequence']:.1f} tok/s per "
            f"sequence, {r['aggregate_tokens_per_s']:.0f} tok/s total; {r['bound']}-bound (memory "
            f"{r['memory_bound_tokens_per_s']:.1f}" + (f", compute {comp:.1f}" if comp is not None else "")
            + " tok/s per sequence)", markup=False)
    if p.log_lines:
        console.print(f"{p.engine} would log:", markup=False)
        from kvcalc.show.loglines import unit_note

        for line in p.log_lines:
            console.print(f"  {line}", markup=False)  # verbatim: the engine's own words
            if note := unit_note(p.engine, line):
                console.print(f"  note: {note}", markup=False)
    if p.reason and not any(p.reason in line for line in p.log_lines):
        console.print(f"Why not: {p.reason}", markup=False)
    for hint in p.hints:
        console.print(f"Try: {hint}", markup=False)
    for note in p.notes:
        console.print(f"note: {note}", markup=False)
