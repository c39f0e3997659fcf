"""Rich rendering of core results. Rendering formats numbers; it computes none."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kvcalc.units import Units, format_bytes

if TYPE_CHECKING:
    from rich.console import Console

    from kvcalc.estimate import Estimate


def render_estimate(est: Estimate, console: Console, units: Units = "iec", explain: bool = False) -> None:
    from rich.table import Table

    unit_name = "IEC, 1024-based" if units == "iec" else "SI, 1000-based"
    title = (
        f"KV cache of {est.model}: {est.seq_len:,} tokens x batch {est.batch}, "
        f"{est.kv_dtype} ({est.kv_dtype_source}), engine {est.engine}"
    )
    if est.tp > 1 or est.pp > 1:
        title += f", tp {est.tp} x pp {est.pp}"
    table = Table(title=title, title_justify="left")
    table.add_column("Layers", justify="right")
    table.add_column("Kind")
    table.add_column("Tokens held", justify="right")
    table.add_column("B/token/layer", justify="right")
    table.add_column("Bytes", justify="right")
    table.add_column(f"Size ({unit_name})", justify="right")
    for g in est.layers:
        table.add_row(
            str(g.layers),
            g.description,
            f"{g.tokens_held:,}" if g.bytes_per_token else "-",
            f"{g.bytes_per_token:,}" if g.bytes_per_token else (
                f"{g.fixed_bytes_per_sequence:,}/seq" if g.fixed_bytes_per_sequence else "0"
            ),
            f"{g.total_bytes:,}",
            format_bytes(g.total_bytes, units),
        )
    table.add_section()
    table.add_row(
        str(est.num_layers), "total", "", f"{est.bytes_per_token:,}/token",
        f"{est.total_bytes:,}", format_bytes(est.total_bytes, units), style="bold",
    )
    console.print(table)
    if est.tp > 1 or est.pp > 1:
        console.print(
            f"per GPU (largest rank): {est.per_gpu_bytes:,} B = {format_bytes(est.per_gpu_bytes, units)}"
        )
    if est.k_bytes is not None and est.v_bytes is not None:
        # As llama.cpp logs it: "K (q8_0):  544.00 MiB, V (q8_0):  544.00 MiB".
        console.print(
            f"K ({est.kv_dtype}): {format_bytes(est.k_bytes, units)} ({est.k_bytes:,} B), "
            f"V ({est.kv_dtype}): {format_bytes(est.v_bytes, units)} ({est.v_bytes:,} B)",
            markup=False, highlight=False,
        )
    if est.scale_bytes:
        console.print(
            f"scale overhead (in the total): {est.scale_bytes:,} B = {format_bytes(est.scale_bytes, units)}",
            markup=False, highlight=False,
        )
    if est.bookkeeping_bytes:
        console.print(
            f"engine bookkeeping (not in the total): {est.bookkeeping_bytes:,} B",
            markup=False, highlight=False,
        )
    for line in est.what_if:
        console.print(line, markup=False, highlight=False)
    if est.engine_version:
        console.print(f"engine: {est.engine} ({est.engine_version})", markup=False, highlight=False)
    if explain:
        console.print("[bold]Formula[/bold] (bytes = layers x per-token bytes x tokens held x batch):")
        for line in est.formula:
            console.print(f"  {line}", markup=False)
        if est.engine_source:
            console.print(f"  engine rule: {est.engine_source}", markup=False)
    for note in est.notes:
        console.print(f"note: {note}", markup=False)
