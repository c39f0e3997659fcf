"""``kvcalc sweep``: KV-cache bytes over a grid of models x KV dtypes x batch sizes x context lengths.

Every number comes from ``kvcalc.estimate.estimate`` (engine-neutral unless ``engine`` says
otherwise); this module only builds the grid and compares each cell with a capacity.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from kvcalc.errors import InvalidRequestError
from kvcalc.estimate import MAX_BATCH, MAX_TOKENS, estimate
from kvcalc.models import ModelConfig
from kvcalc.units import parse_tokens

MAX_GRID_CELLS = 4_096
"""A sweep larger than this is a typo (e.g. a range with step 1 over 128k), not a question; at about
1 ms per estimate it keeps a sweep to a few seconds."""
_LIST_HELP = "comma-separated integers with optional k (x1024) or m (x1024^2) suffix, e.g. 1k,2k,128k, or a " \
    "range A..B (doubling from A to B) or A..B:STEP (arithmetic)"


def _parse_int(token: str, field_name: str) -> int:
    """One value of a list or range, by the one token parser (``kvcalc.units.parse_tokens``: k = 1024,
    as context lengths are quoted); refused with the list syntax named."""
    try:
        return parse_tokens(token, field_name)
    except InvalidRequestError:
        raise InvalidRequestError(field_name, token, _LIST_HELP) from None


def parse_int_list(text: str, field_name: str, *, maximum: int) -> list[int]:
    """``"1k,2k,8192"`` -> [1024, 2048, 8192]; ``"1k..8k"`` -> [1024, 2048, 4096, 8192] (doubling);
    ``"1..10:3"`` -> [1, 4, 7, 10]. Sorted, duplicates dropped; every value from 1 to ``maximum``."""
    values: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise InvalidRequestError(field_name, text, _LIST_HELP)
        if ".." in part:
            lo_text, _, rest = part.partition("..")
            hi_text, colon, step_text = rest.partition(":")
            lo, hi = _parse_int(lo_text, field_name), _parse_int(hi_text, field_name)
            if lo < 1 or hi < lo:
                raise InvalidRequestError(field_name, part, "a range A..B with 1 <= A <= B")
            if colon:
                step = _parse_int(step_text, field_name)
                if step < 1 or (hi - lo) // step + 1 > MAX_GRID_CELLS:
                    raise InvalidRequestError(field_name, part, f"a step >= 1 giving at most {MAX_GRID_CELLS:,} values")
                values.update(range(lo, hi + 1, step))
            else:
                v = lo
                while v <= hi:
                    values.add(v)
                    v *= 2
        else:
            values.add(_parse_int(part, field_name))
    for v in values:
        if not 1 <= v <= maximum:
            raise InvalidRequestError(field_name, v, f"values from 1 to {maximum:,}")
    return sorted(values)


def parse_name_list(text: str, field_name: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise InvalidRequestError(field_name, text, "one or more comma-separated names")
    return list(dict.fromkeys(names))


@dataclass(frozen=True, kw_only=True)
class SweepCell:
    model: str
    kv_dtype: str
    batch: int
    seq_len: int
    total_bytes: int
    per_gpu_bytes: int
    exceeds: bool | None
    """True when ``per_gpu_bytes`` is over the per-GPU capacity; None when no capacity was given."""


@dataclass(frozen=True, kw_only=True)
class SweepResult:
    engine: str
    tp: int
    seq_lens: list[int]
    batches: list[int]
    kv_dtypes: list[str]
    models: list[str]
    capacity_label: str | None
    capacity_bytes_per_gpu: int | None
    """KV bytes allowed per GPU (``--gpu``'s usable memory or ``--gpu-memory``); weights not subtracted."""
    cells: list[SweepCell]
    notes: list[str] = field(default_factory=list)
    model_max_context: dict[str, int] = field(default_factory=dict)
    """Each model's ``max_position_embeddings``: charts mark it, cells past it are flagged in notes."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def series(self) -> dict[tuple[str, str, int], list[SweepCell]]:
        """Cells grouped by (model, kv_dtype, batch), each ordered by seq_len (a line per group)."""
        out: dict[tuple[str, str, int], list[SweepCell]] = {}
        for c in self.cells:
            out.setdefault((c.model, c.kv_dtype, c.batch), []).append(c)
        return out


def sweep(
    models: list[ModelConfig],
    seq_lens: list[int],
    batches: list[int],
    kv_dtypes: list[str],
    *,
    engine: str = "neutral",
    tp: int = 1,
    capacity_bytes_per_gpu: int | None = None,
    capacity_label: str | None = None,
) -> SweepResult:
    """One ``estimate`` per grid cell, in the order model, kv_dtype, batch, seq_len."""
    if not models or not seq_lens or not batches or not kv_dtypes:
        raise InvalidRequestError("grid", "empty", "at least one model, seq_len, batch and kv_dtype")
    n_cells = len(models) * len(seq_lens) * len(batches) * len(kv_dtypes)
    if n_cells > MAX_GRID_CELLS:
        raise InvalidRequestError("grid", n_cells, f"at most {MAX_GRID_CELLS:,} cells")
    for s in seq_lens:
        if not 1 <= s <= MAX_TOKENS:
            raise InvalidRequestError("seq_len", s, f"from 1 to {MAX_TOKENS:,}")
    for b in batches:
        if not 1 <= b <= MAX_BATCH:
            raise InvalidRequestError("batch", b, f"from 1 to {MAX_BATCH:,}")
    if capacity_bytes_per_gpu is not None and capacity_bytes_per_gpu < 1:
        raise InvalidRequestError("capacity", capacity_bytes_per_gpu, "a positive byte count")
    cells: list[SweepCell] = []
    notes: list[str] = []
    for model in models:
        for dtype in kv_dtypes:
            for batch in batches:
                for seq in seq_lens:
                    est = estimate(model, seq, batch, dtype, engine=engine, tp=tp)
                    exceeds = None if capacity_bytes_per_gpu is None else est.per_gpu_bytes > capacity_bytes_per_gpu
                    cells.append(SweepCell(
                        model=est.model, kv_dtype=est.kv_dtype, batch=batch, seq_len=seq,
                        total_bytes=est.total_bytes, per_gpu_bytes=est.per_gpu_bytes, exceeds=exceeds,
                    ))
                    if seq > model.max_position_embeddings:
                        note = f"{model.name}: seq_len above max_position_embeddings "
                        note += f"({model.max_position_embeddings:,})"
                        if note not in notes:
                            notes.append(note)
    return SweepResult(
        engine=engine, tp=tp, seq_lens=list(seq_lens), batches=list(batches),
        kv_dtypes=list(dict.fromkeys(c.kv_dtype for c in cells)),
        models=[m.name for m in models], capacity_label=capacity_label,
        capacity_bytes_per_gpu=capacity_bytes_per_gpu, cells=cells, notes=notes,
        model_max_context={m.name: m.max_position_embeddings for m in models},
    )


def to_csv(result: SweepResult) -> str:
    """CSV with exact byte counts (no rounding): one row per cell."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", "kv_dtype", "batch", "seq_len", "total_bytes", "per_gpu_bytes", "exceeds"])
    for c in result.cells:
        w.writerow([c.model, c.kv_dtype, c.batch, c.seq_len, c.total_bytes, c.per_gpu_bytes,
                    "" if c.exceeds is None else str(c.exceeds).lower()])
    return buf.getvalue()


def max_context_marks(result: SweepResult) -> dict[str, int]:
    """label -> context for each model whose maximum context falls inside the swept range (a
    curve drawn past that point is past what the model supports)."""
    lo, hi = min(result.seq_lens), max(result.seq_lens)
    return {f"{model} maximum context {n:,}": n for model, n in result.model_max_context.items() if lo <= n < hi}


def figure_labels(result: SweepResult) -> tuple[str, str]:
    """(title, y-axis label). "per GPU" only when the figure is per GPU: with ``tp > 1`` each
    cell is the largest rank's share; with ``tp`` 1 the one GPU holds the whole cache."""
    multi_batch = len(result.batches) > 1
    batch_note = f", batch {result.batches[0]}" if not multi_batch else ""
    tp_note = f", TP {result.tp}: bytes per GPU" if result.tp > 1 else ""
    per = " per GPU" if result.tp > 1 else ""
    return f"KV cache vs context ({result.engine} engine{batch_note}{tp_note})", f"KV cache{per}"


def series_label(result: SweepResult, model: str, dtype: str, batch: int) -> str:
    return f"{model} {dtype}" + (f" x{batch}" if len(result.batches) > 1 else "")


def plot_sweep(result: SweepResult, path: str) -> Any:
    """Memory vs context on a base-2 context axis, one line per (model, dtype, batch), the
    capacity as a dashed line, each model's maximum context (when in range) as a dotted one."""
    from kvcalc.show.plot import plot_series
    from kvcalc.units import GiB

    size, units_label = GiB, "GiB"
    series: dict[str, list[tuple[float, float]]] = {}
    for (model, dtype, batch), cells in result.series().items():
        # Floats only for drawing; the exact bytes are in the table/CSV/JSON.
        series[series_label(result, model, dtype, batch)] = [(float(c.seq_len), c.per_gpu_bytes / size)
                                                             for c in cells]
    hlines = None
    if result.capacity_bytes_per_gpu is not None:
        hlines = {result.capacity_label or "capacity": result.capacity_bytes_per_gpu / size}
    marks = max_context_marks(result)
    vlines = {label: float(n) for label, n in marks.items()} or None
    # Each mark in the colour of its model's first line.
    first = {model: series_label(result, model, dtype, batch) for (model, dtype, batch) in reversed(result.series())}
    owner = {label: first[model] for model in result.models for label in marks if label.startswith(f"{model} ")}
    title, ylabel = figure_labels(result)
    return plot_series(path, title=title, xlabel="context length (tokens, log2)", ylabel=f"{ylabel} ({units_label})",
                       series=series, hlines=hlines, vlines=vlines, x_log2=True, vline_series=owner)
