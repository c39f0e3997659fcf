"""`kvcalc simulate`: reserved vs used KV memory for padded, contiguous, paged and ideal allocation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from kvcalc.show.simulate import Simulation


# Kept here (not imported from kvcalc.show.simulate) so registering the command stays cheap.
DIST_HELP = "fixed:N (or N), uniform:LO,HI, normal:MEAN,STD, lognormal:MU,SIGMA, csv:PATH"


def register(app: typer.Typer) -> None:
    @app.command(
        "simulate",
        epilog="Examples:\n\n"
        "  kvcalc simulate llama-2-7b --requests 1 --prompt-len 50 --output-len 50 --max-len 4096   # seed 002\n\n"
        "  kvcalc simulate llama-2-7b --requests 1000 --prompt-len lognormal:5.5,1 --output-len lognormal:5,1 "
        "--max-len 2048 --kv-budget 40GiB --seed 1 --explain\n\n"
        "  kvcalc simulate llama-3-8b --requests 64 --prompt-len uniform:100,2000 --output-len normal:500,150 "
        "--gpu h100 --json\n",
    )
    def simulate_cmd(
        model: Annotated[str, typer.Argument(help="Built-in model name or config path.")],
        requests: Annotated[int, typer.Option("--requests", "-n", min=1, help="Number of requests.")] = 100,
        prompt_len: Annotated[str, typer.Option(help=f"Prompt lengths: {DIST_HELP}.")] = "uniform:100,1000",
        output_len: Annotated[str, typer.Option(help="Output lengths (same DIST syntax).")] = "uniform:10,500",
        block_size: Annotated[int, typer.Option(min=1, help="Paged: tokens per block (vLLM default 16).")] = 16,
        max_len: Annotated[Optional[int], typer.Option(min=1, help="Contiguous reservation per request "
                                                       "(default: the model's max_position_embeddings).")] = None,
        kv_dtype: Annotated[str, typer.Option("--kv-dtype", help="KV dtype (auto = the model's).")] = "auto",
        engine: Annotated[str, typer.Option("--engine", "-e", help="Storage policy (neutral by default).")]
        = "neutral",
        gpu: Annotated[Optional[str], typer.Option(help="Budget: this GPU's usable memory x count (NAME[:COUNT]); "
                                                   "weights not subtracted, an upper bound.")] = None,
        kv_budget: Annotated[Optional[str], typer.Option(help="Budget for the KV cache, e.g. 40GiB.")] = None,
        seed: Annotated[int, typer.Option(help="Seed for random.Random (same seed, same lengths).")] = 0,
        json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
        explain: Annotated[bool, typer.Option(
            "--explain", help="Also compare with the vLLM blog and paper's published waste figures.")] = False,
    ) -> None:
        """Memory reserved vs used, waste %, and how many requests fit at once, under four allocation schemes."""
        from kvcalc.cli.output import print_json, stdout_console
        from kvcalc.errors import InvalidRequestError
        from kvcalc.registry import load_model
        from kvcalc.show.simulate import parse_dist, simulate
        from kvcalc.units import format_bytes

        if gpu is not None and kv_budget is not None:
            raise InvalidRequestError("--kv-budget", kv_budget, "either --gpu or --kv-budget, not both")
        budget, label = None, None
        if kv_budget is not None:  # '' is a bad size (parse_size refuses it), never "no budget"
            from kvcalc.units import parse_size

            budget = parse_size(kv_budget, "--kv-budget")
            label = f"--kv-budget {format_bytes(budget)}"
        elif gpu is not None:
            from kvcalc.planner.gpus import parse_gpu_spec

            g, count = parse_gpu_spec(gpu)
            budget = g.usable_bytes * count
            label = f"{count} x {g.name} usable {format_bytes(budget)} (weights not subtracted)"
        result = simulate(
            load_model(model), requests=requests, prompt_len=parse_dist(prompt_len, "--prompt-len"),
            output_len=parse_dist(output_len, "--output-len"), block_size=block_size, max_len=max_len,
            kv_dtype=kv_dtype, engine=engine, budget_bytes=budget, budget_label=label, seed=seed,
        )
        if json:
            print_json(result.to_dict())
        else:
            render_simulation(result, stdout_console(), explain=explain)


def render_simulation(sim: Simulation, console: Console, *, explain: bool = False) -> None:
    from rich.table import Table

    from kvcalc.show.simulate import PUBLISHED
    from kvcalc.units import format_bytes

    mean = sim.mean_tokens_num // sim.mean_tokens_den
    title = (f"{sim.model}, {sim.requests:,} request(s), {sim.kv_dtype} KV ({sim.engine}); prompt {sim.prompt_dist}, "
             f"output {sim.output_dist}, seed {sim.seed}; longest {sim.longest_tokens:,}, mean ~{mean:,} tokens")
    table = Table(title=title, title_justify="left")
    for col in ("Scheme", "Reserved tokens", "Used tokens", "Reserved", "Used", "Waste", "Waste %"):
        table.add_column(col, justify="left" if col == "Scheme" else "right")
    if sim.budget_bytes is not None:
        table.add_column("Fit at once", justify="right")
    for p in sim.policies:
        row = [p.policy, f"{p.reserved_tokens:,}", f"{p.used_tokens:,}", format_bytes(p.reserved_bytes),
               format_bytes(p.used_bytes), format_bytes(p.waste_bytes), f"{p.waste_percent:.2f} %"]
        if sim.budget_bytes is not None:
            row.append(f"{p.fits_at_once:,}")
        table.add_row(*row)
    console.print(table)
    for p in sim.policies:
        console.print(f"  {p.policy}: {p.description}", markup=False)
    console.print(f"Paged waste: {sim.paged_waste_tokens:,} tokens <= requests x (block_size - 1) = "
                  f"{sim.requests:,} x {sim.block_size - 1} = {sim.paged_waste_bound_tokens:,}", markup=False)
    if sim.budget_label:
        console.print(f"Budget: {sim.budget_label}; 'fit at once' takes requests in arrival order.", markup=False)
    for note in sim.notes:
        console.print(f"Note: {note}", markup=False)
    # The published comparison is the same paragraph every run: once asked for, not on every table.
    if explain:
        for line in PUBLISHED:
            console.print(line, markup=False, style="dim")
