"""`kvcalc bench`: generation time with and without the KV cache on a small random-weight decoder."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from kvcalc.show.bench import BenchResult


def register(app: typer.Typer) -> None:
    @app.command(
        "bench",
        epilog="Examples:\n\n"
        "  kvcalc bench\n\n  kvcalc bench --tokens 1000 --layers 2 --d-model 128\n\n"
        "  kvcalc bench --n 64..1k --layers 2 --d-model 128 --plot speedup.png\n\n"
        "  kvcalc bench --device cuda --n 128..2k --json\n",
    )
    def bench_cmd(
        device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
        n: Annotated[str, typer.Option("--n", help="Tokens to generate: comma list or A..B (doubling), k = x1024.")]
        = "32..256",
        tokens: Annotated[Optional[int], typer.Option(help="Instead of --n: N doubling from 32 up to TOKENS, "
                                                      "TOKENS included (e.g. 1000 for the articles' 500x).")]
        = None,
        layers: Annotated[int, typer.Option(min=1, help="Decoder layers.")] = 4,
        d_model: Annotated[int, typer.Option(min=1, help="Hidden size.")] = 256,
        heads: Annotated[int, typer.Option(min=1, help="Attention heads (must divide d-model).")] = 4,
        vocab: Annotated[int, typer.Option(min=1, help="Vocabulary size.")] = 1024,
        repeats: Annotated[int, typer.Option(min=1, help="Runs per N; the best time is kept.")] = 1,
        threads: Annotated[int, typer.Option(min=1, help="CPU threads for torch.")] = 1,
        seed: Annotated[int, typer.Option(help="torch.manual_seed for the random weights.")] = 0,
        json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
        plot: Annotated[Optional[str], typer.Option(help="Write a PNG/SVG of time per token vs N.")] = None,
    ) -> None:
        """Measure generating N tokens with and without a KV cache; show the exact K/V projection counts."""
        import sys

        from kvcalc.cli.output import check_output_path, print_json, stdout_console, warn, wrote
        from kvcalc.cli.term import escape
        from kvcalc.show.bench import MAX_TOKENS, BenchConfig, doubling_to, run_bench
        from kvcalc.show.sweep import parse_int_list

        n_values = doubling_to(tokens) if tokens is not None else parse_int_list(n, "--n", maximum=MAX_TOKENS)
        cfg = BenchConfig(layers=layers, d_model=d_model, heads=heads, vocab=vocab,
                          n_values=tuple(n_values), device=device,
                          repeats=repeats, seed=seed, threads=threads)
        cfg.validate()
        if plot is not None:
            check_output_path(plot, "--plot")  # before minutes of measuring, not after
        if not sys.stderr.isatty():
            # No bar when stderr is a pipe or a file: it would only leave control characters there.
            result = run_bench(cfg, on_slow=warn)
        else:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                          console=Console(stderr=True), transient=True) as bar:
                task = bar.add_task("bench", total=None)

                def progress(done: int, total: int, label: str) -> None:
                    bar.update(task, completed=done, total=total, description=label)

                def slow(text: str) -> None:  # above the bar, as a Warning: line
                    bar.console.print(f"Warning: {escape(text)}", markup=False, highlight=False)

                result = run_bench(cfg, progress, on_slow=slow)
        written = plot_bench(result, plot) if plot is not None else None
        if json:
            print_json(result.to_dict())
        else:
            render_bench(result, stdout_console())
        if written is not None:
            wrote(written)


def plot_bench(result: BenchResult, path: str) -> object:
    from kvcalc.show.plot import plot_series

    c = result.config
    return plot_series(
        path, title=f"Time per generated token, {c['layers']} layers x d {c['d_model']} ({result.device_name})",
        xlabel="tokens generated (N)", ylabel="ms per token",
        series={"without KV cache": [(float(r.n_tokens), r.uncached_ms_per_token) for r in result.rows],
                "with KV cache": [(float(r.n_tokens), r.cached_ms_per_token) for r in result.rows]},
    )


def render_bench(result: BenchResult, console: Console) -> None:
    from decimal import Decimal

    from rich.table import Table

    c = result.config
    table = Table(title=f"KV cache speedup: random decoder {c['layers']} layers, d_model {c['d_model']}, "
                  f"{c['heads']} heads, vocab {c['vocab']} ({result.parameters:,} parameters) on "
                  f"{result.device_name}, torch {result.torch_version}", title_justify="left")
    for col in ("N", "KV proj cached", "KV proj uncached", "ratio", "ms/tok cached",
                "ms/tok uncached", "s cached", "s uncached", "speedup", "same"):
        table.add_column(col, justify="right")
    for r in result.rows:
        ratio = str(Decimal(r.projection_ratio_num) / Decimal(r.projection_ratio_den))
        table.add_row(f"{r.n_tokens:,}", f"{r.kv_projections_cached:,}", f"{r.kv_projections_uncached:,}", ratio,
                      f"{r.cached_ms_per_token:.3f}", f"{r.uncached_ms_per_token:.3f}", f"{r.cached_s:.3f}",
                      f"{r.uncached_s:.3f}", f"{r.speedup:.2f}x", "yes" if r.tokens_match else "NO")
    console.print(table)
    console.print("KV proj: tokens projected to K and V per layer (counted): N cached, N(N+1)/2 uncached; "
                  "ratio = (N+1)/2. Times: best of --repeats, wall clock.", markup=False)
    for note in result.notes:
        console.print(note, markup=False)
