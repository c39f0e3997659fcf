"""`kvcalc verify`: allocate the predicted KV cache on a device and measure it.

Parses flags, calls ``kvcalc.measure.verify.verify`` (or the transformers source) and renders
the ``VerifyResult``; every number shown is a field of the result. A rich progress bar runs on
stderr while tensors are written; Ctrl-C frees everything and exits 130.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from kvcalc.measure.verify import VerifyResult
    from kvcalc.models import ModelConfig

EPILOG = (
    "Examples:\n\n"
    "  kvcalc verify llama-2-7b --seq-len 1024\n\n"
    "  kvcalc verify llama-3-70b --seq-len 8192 --batch 8 --layers-sample 1 --json\n\n"
    "  kvcalc verify --config config.json --seq-len 512 --source transformers\n"
)


def register(app: typer.Typer) -> None:
    @app.command("verify", epilog=EPILOG)
    def verify_cmd(
        model: Annotated[Optional[str], typer.Argument(help="Built-in model name or alias.", show_default=False)]
        = None,
        seq_len: Annotated[int, typer.Option("--seq-len", "-s", min=1, help="Tokens per sequence.")]
        = ...,  # type: ignore[assignment]
        config: Annotated[Optional[str], typer.Option(
            "--config", "-c", help="kvcalc YAML or Hugging Face config.json (needed for --source transformers).")]
        = None,
        batch: Annotated[int, typer.Option("--batch", "-b", min=1, help="Concurrent sequences.")] = 1,
        kv_dtype: Annotated[str, typer.Option("--kv-dtype", "--kv-cache-dtype",
                                              help="auto, fp16, bf16, fp8, int8, int4, q8_0, q4_0, ...")] = "auto",
        engine: Annotated[str, typer.Option("--engine", "-e", help="Layout: neutral, hf, hf-static, vllm, sglang, "
                                            "llama.cpp.")] = "neutral",
        device: Annotated[str, typer.Option("--device", "-d", help="cpu, cuda, cuda:N or mps.")] = "cpu",
        layers_sample: Annotated[Optional[int], typer.Option(
            "--layers-sample", min=1, help="Allocate K layers of each kind and extrapolate.")] = None,
        max_memory: Annotated[Optional[str], typer.Option(
            "--max-memory", help="Allocate at most this much (e.g. 2GiB), below the device's own budget.")] = None,
        source: Annotated[str, typer.Option(
            "--source", help="formula (kvcalc's layout) or transformers (transformers builds the cache).")]
        = "formula",
        cache: Annotated[str, typer.Option(
            "--cache", help="With --source transformers: static (StaticCache) or dynamic (generate).")] = "static",
        tp: Annotated[int, typer.Option("--tp", "-tp", "--tensor-parallel-size", min=1,
                                        help="Tensor-parallel degree: verify one rank's share.")] = 1,
        block_size: Annotated[Optional[int], typer.Option(min=1, help="Paged engines: tokens per block.")] = None,
        layers: Annotated[Optional[int], typer.Option(min=1, help="What-if: number of layers.")] = None,
        kv_heads: Annotated[Optional[int], typer.Option(min=1, help="What-if: KV heads per layer.")] = None,
        head_dim: Annotated[Optional[int], typer.Option(min=1, help="What-if: head size.")] = None,
        image_tokens: Annotated[Optional[int], typer.Option(
            min=0, help="Cross-attention models (Llama-3.2-Vision): vision tokens each sequence holds "
            "(1601 per image tile; 0 = text only).")] = None,
        json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    ) -> int:
        """Allocate the KV cache on a device, write it, and compare what the device spent with the formula."""
        from kvcalc.cli.output import error_line, print_json, stdout_console, warn
        from kvcalc.errors import InvalidRequestError
        from kvcalc.units import parse_size

        src = source.strip().lower()
        if src not in ("formula", "transformers"):
            raise InvalidRequestError("--source", source, "formula or transformers")
        # '' is a bad size (parse_size refuses it), never "no limit".
        limit = parse_size(max_memory, "--max-memory") if max_memory is not None else None
        if src == "transformers":
            # transformers decides the dtype (the config's) and the cache class (--cache) itself.
            for flag, value, default in (("--kv-dtype", kv_dtype, "auto"), ("--engine", engine, "neutral"),
                                         ("--tp", tp, 1), ("--max-memory", max_memory, None),
                                         ("--image-tokens", image_tokens, None)):
                if value != default:
                    raise InvalidRequestError(flag, value, "left out with --source transformers")
        try:
            label = "transformers is running the model" if src == "transformers" else "allocating and writing"
            with _progress_bar(json, label) as progress:
                if src == "transformers":
                    from kvcalc.measure.transformers_source import verify_transformers

                    ref = config or model
                    if ref is None or model and config:
                        raise InvalidRequestError("--config", config, "a Hugging Face config.json (MODEL or --config)")
                    result: Any = verify_transformers(
                        ref, seq_len, batch, cache=cache, layers_sample=layers_sample, device=device, on_slow=warn)
                else:
                    from kvcalc.measure.verify import verify

                    resolved = _formula_model(model, config, image_tokens, layers, kv_heads, head_dim)
                    result = verify(
                        resolved, seq_len, batch, kv_dtype, engine=engine, device=device, tp=tp,
                        block_size=block_size, layers_sample=layers_sample, max_memory_bytes=limit,
                        progress=progress,
                    )
        except KeyboardInterrupt:
            error_line("interrupted: verify freed every tensor it had allocated")
            return 130
        for note in result.notes:
            warn(note)
        if json:
            print_json(result.to_dict())
        elif src == "transformers":
            render_transformers(result, stdout_console())
        else:
            render_verify(result, stdout_console())
        if not result.ok:
            failed = [f"{k.description}: {k.verdict}" for k in result.kinds if not k.ok]
            error_line("verification failed: " + ("; ".join(failed) or "the totals differ"))
            return 1
        return 0


def _formula_model(model: str | None, config: str | None, image_tokens: int | None, layers: int | None,
                   kv_heads: int | None, head_dim: int | None) -> ModelConfig:
    """The model verify lays out, with the vision tokens and what-ifs applied as ``estimate`` applies them."""
    from kvcalc.cli.output import warn
    from kvcalc.cli.run_estimate import resolve_model
    from kvcalc.estimate import apply_overrides

    resolved = resolve_model(model, config)
    for assumption in resolved.source.assumptions:
        warn(assumption)
    if image_tokens is not None:
        from kvcalc.hf import with_image_tokens

        resolved = with_image_tokens(resolved, image_tokens)
    return apply_overrides(resolved, layers=layers, kv_heads=kv_heads, head_dim=head_dim)


class _progress_bar:  # noqa: N801 - used as a context manager
    """A rich progress bar on stderr (hidden when stderr is not a terminal or with --json)."""

    def __init__(self, quiet: bool, label: str = "allocating and writing") -> None:
        self.quiet = quiet
        self.label = label
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> Any:
        import sys

        if self.quiet or not sys.stderr.isatty():
            return None
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

        self.bar = Progress(TextColumn(self.label), BarColumn(), DownloadColumn(binary_units=True),
                            console=Console(stderr=True), transient=True)
        self.bar.start()
        self.task = self.bar.add_task("verify", total=None)
        return self.update

    def update(self, done: int, total: int) -> None:
        self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def render_verify(r: VerifyResult, console: Console) -> None:
    from rich.table import Table

    from kvcalc.units import format_bytes

    sampled = f", {r.sampled_layers} of {r.num_layers} layers allocated and extrapolated" if r.sampled else ""
    console.print(f"[bold]{r.model}[/bold]: {r.seq_len:,} tokens x batch {r.batch}, {r.kv_dtype}, "
                  f"engine {r.engine}, on {r.device}{sampled}", markup=True, highlight=False)
    table = Table(show_header=True)
    for col in ("kind", "layers", "predicted", "tensors", f"expected {r.counter}", f"measured {r.counter}",
                "ratio", "verdict"):
        table.add_column(col, justify="left" if col in ("kind", "verdict") else "right")
    for k in r.kinds:
        table.add_row(
            k.description, f"{k.sampled_layers}/{k.layers}" if r.sampled else f"{k.layers}",
            f"{k.predicted_bytes:,}", f"{k.tensor_bytes:,}", f"{k.expected_bytes[r.counter]:,}",
            f"{k.measured_bytes:,}", f"{k.ratio:.4f}", "OK" if k.ok else "FAIL")
    table.add_row("total", f"{r.sampled_layers}/{r.num_layers}" if r.sampled else f"{r.num_layers}",
                  f"{r.predicted_bytes:,}", f"{r.tensor_bytes:,}", f"{r.expected_bytes:,}", f"{r.measured_bytes:,}",
                  f"{r.ratio:.4f}", "OK" if r.ok else "FAIL", style="bold")
    console.print(table)
    for k in r.kinds:
        if not k.ok:
            console.print(f"{k.description}: {k.verdict}", markup=False)
    for counter in r.measured_counters:
        if counter != r.counter:
            console.print(f"{counter}: measured {r.measured_counters[counter]:,} B, expected "
                          f"{r.expected_counters[counter]:,} B", markup=False)
    console.print(f"predicted {format_bytes(r.predicted_bytes)}; tensors "
                  f"{'equal the prediction exactly' if r.exact else 'DIFFER from the prediction (a bug)'}; "
                  f"tolerance {r.tolerance_bytes:,} B: {r.tolerance_rule}", markup=False)
    console.print(f"Verdict: {'OK' if r.ok else 'FAIL'}", markup=False)


def render_transformers(r: Any, console: Console) -> None:
    from rich.table import Table

    console.print(f"[bold]{r.model}[/bold]: transformers {r.transformers_version} {r.cache_class}, "
                  f"{r.seq_len:,} tokens x batch {r.batch}, built with {r.built_layers} of {r.num_layers} layers",
                  highlight=False)
    table = Table(show_header=True)
    for col in ("kind", "layers", "built", f"kvcalc {r.engine}", "transformers", "ratio", "verdict"):
        table.add_column(col, justify="left" if col in ("kind", "verdict") else "right")
    for k in r.kinds:
        table.add_row(k.description, f"{k.layers}", f"{k.built_layers}", f"{k.predicted_bytes:,}",
                      f"{k.measured_bytes:,}", f"{k.ratio:.4f}", "OK" if k.ok else "FAIL")
    table.add_row("total", f"{r.num_layers}", f"{r.built_layers}", f"{r.predicted_bytes:,}",
                  f"{r.measured_bytes:,}", f"{r.ratio:.4f}", "OK" if r.ok else "FAIL", style="bold")
    console.print(table)
    console.print(f"Verdict: {'OK' if r.ok else 'FAIL'}", markup=False)
