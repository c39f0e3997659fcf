"""Rendering of core results. Rendering formats numbers; it computes none."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kvcalc.units import Units, format_bytes

if TYPE_CHECKING:
    from kvcalc.estimate import Estimate


def estimate_lines(est: Estimate, units: Units = "iec", explain: bool = False, *,
                   max_width: int | None = None, style: bool = False) -> list[str]:
    """The human ``estimate`` output, line by line (drawn without rich: see ``boxtable``)."""
    from kvcalc.cli.boxtable import BOLD, RESET, clean, render

    unit_name = "IEC, 1024-based" if units == "iec" else "SI, 1000-based"
    title = (
        f"KV cache of {est.model}: {est.seq_len:,} tokens x batch {est.batch}, "
        f"{est.kv_dtype} ({est.kv_dtype_source}), engine {est.engine}"
    )
    if est.tp > 1 or est.pp > 1:
        title += f", tp {est.tp} x pp {est.pp}"
    rows = [
        [
            str(g.layers),
            g.description,
            f"{g.tokens_held:,}" if g.bytes_per_token else "-",
            f"{g.bytes_per_token:,}" if g.bytes_per_token else (
                f"{g.fixed_bytes_per_sequence:,}/seq" if g.fixed_bytes_per_sequence else "0"
            ),
            f"{g.total_bytes:,}",
            format_bytes(g.total_bytes, units),
        ]
        for g in est.layers
    ]
    total = [str(est.num_layers), "total", "", f"{est.bytes_per_token:,}/token",
             f"{est.total_bytes:,}", format_bytes(est.total_bytes, units)]
    lines = render(
        title,
        ["Layers", "Kind", "Tokens held", "B/token/layer", "Bytes", f"Size ({unit_name})"],
        ["right", "left", "right", "right", "right", "right"],
        [rows, [total]], bold_sections=[1], max_width=max_width, style=style,
    )
    if est.tp > 1 or est.pp > 1:
        lines.append(f"per GPU (largest rank): {est.per_gpu_bytes:,} B = {format_bytes(est.per_gpu_bytes, units)}")
    if est.k_bytes is not None and est.v_bytes is not None:
        # As llama.cpp logs it: "K (q8_0):  544.00 MiB, V (q8_0):  544.00 MiB".
        lines.append(
            f"K ({est.kv_dtype}): {format_bytes(est.k_bytes, units)} ({est.k_bytes:,} B), "
            f"V ({est.kv_dtype}): {format_bytes(est.v_bytes, units)} ({est.v_bytes:,} B)"
        )
    if est.scale_bytes:
        lines.append(f"scale overhead (in the total): {est.scale_bytes:,} B = {format_bytes(est.scale_bytes, units)}")
    if est.bookkeeping_bytes:
        lines.append(f"engine bookkeeping (not in the total): {est.bookkeeping_bytes:,} B")
    lines += [clean(line) for line in est.what_if]
    if est.engine_version:
        lines.append(f"engine: {est.engine} ({est.engine_version})")
    if explain:
        head = f"{BOLD}Formula{RESET}" if style else "Formula"
        lines.append(f"{head} (bytes = layers x per-token bytes x tokens held x batch):")
        lines += [f"  {clean(line)}" for line in est.formula]
        if est.engine_source:
            lines.append(f"  engine rule: {est.engine_source}")
    lines += [f"note: {clean(note)}" for note in est.notes]
    return lines
