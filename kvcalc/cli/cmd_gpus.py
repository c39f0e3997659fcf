"""`kvcalc gpus`: the GPU catalog."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from kvcalc.planner.gpus import Gpu


def register(app: typer.Typer) -> None:
    @app.command(
        "gpus",
        epilog="Examples:\n\n  kvcalc gpus\n\n  kvcalc gpus --vendor amd\n\n  kvcalc gpus --json\n",
    )
    def gpus(
        vendor: Annotated[str, typer.Option(help="Only this vendor: nvidia, amd or apple.")] = "",
        json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
        sources: Annotated[bool, typer.Option("--sources", help="Show where every number comes from.")] = False,
    ) -> None:
        """List the catalogued GPUs: driver and usable memory, bandwidth, dense throughput, sources."""
        from kvcalc.cli.output import print_json, stdout_console
        from kvcalc.errors import UnknownNameError
        from kvcalc.planner.gpus import all_gpus

        rows = [g for g in all_gpus() if not vendor or g.vendor == vendor.strip().lower()]
        if vendor and not rows:
            raise UnknownNameError("vendor", vendor, sorted({g.vendor for g in all_gpus()}))
        if json:
            print_json({"gpus": [g.to_dict() for g in rows]})
            return
        render_gpus(rows, stdout_console(), sources=sources)


def render_gpus(rows: list[Gpu], console: Console, *, sources: bool = False) -> None:
    from rich.table import Table

    from kvcalc.units import GB, format_bytes, format_in

    table = Table(title="GPU catalog (memory: driver total / usable total that engines budget from)",
                  title_justify="left")
    table.add_column("Name")
    table.add_column("GPU")
    table.add_column("Driver total", justify="right")
    table.add_column("Usable", justify="right")
    table.add_column("Bandwidth", justify="right")
    table.add_column("16-bit TFLOPS", justify="right")
    table.add_column("fp8 TFLOPS", justify="right")
    for g in rows:
        def tflops(v: int | None) -> str:
            return "-" if v is None else format_in(v, "tb", 0)

        usable = format_bytes(g.usable_bytes) + ("*" if g.usable_is_estimated else "")
        table.add_row(
            g.name, g.title, f"{format_in(g.memory_bytes, 'MiB', 0)} MiB", usable,
            f"{format_in(g.bandwidth_bytes_per_s, 'gb', 0)} GB/s", tflops(g.dense_flops), tflops(g.fp8_flops),
        )
    console.print(table)
    console.print("Driver total as nvidia-smi prints it; usable = torch mem_get_info total. * estimated (no public "
                  f"log found): pass --gpu-memory. TFLOPS dense, decimal; bandwidth in GB/s of {GB:,} B.", markup=False)
    if sources:
        for g in rows:
            console.print(f"{g.name}: {g.source}; usable: {g.usable_source}", markup=False)
