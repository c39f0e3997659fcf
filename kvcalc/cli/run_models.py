"""`kvcalc models`, `kvcalc models show`, `kvcalc import`."""

from __future__ import annotations

from pathlib import Path

from kvcalc.units import Units, format_bytes


def run_list(kv_dtype: str, json: bool, units: Units, family: str | None = None) -> None:
    from kvcalc.catalog import model_rows

    rows = model_rows(kv_dtype, family)
    if json:
        from kvcalc.cli.output import print_json

        print_json({"models": [r.to_dict() for r in rows]})
        return
    from rich.table import Table

    from kvcalc.cli.output import stdout_console

    title = f"Built-in models (KV dtype {kv_dtype}" + (f", family {rows[0].family}" if family else "") + ")"
    table = Table(title=title, title_justify="left")
    with_state = any(r.state_bytes_per_sequence for r in rows)
    # Layer counts are in "Cache layers" (num_layers stays in --json): the table fits 110 columns.
    columns = [("Name", "left"), ("Cache layers", "left"), ("KV dtype", "left"),
               ("B/token", "right")] + ([("State/seq", "right")] if with_state else []) + [
               ("1k tokens", "right"), ("Max context", "right")]
    for col, justify in columns:
        # Long names (llama-3.3-nemotron-super-49b) fold onto a second line rather than lose their end.
        table.add_column(col, justify=justify, no_wrap=col not in ("Name", "Cache layers"),  # type: ignore[arg-type]
                         overflow="fold" if col == "Name" else "ellipsis",
                         min_width=len("layers") if col == "Cache layers" else None)
    served: list[str] = []
    for i, r in enumerate(rows):
        mark = ""
        if r.engine_kv_dtypes:
            mark = "*"
            served.append(f"{r.name} (" + ", ".join(f"{e}: {d}" for e, d in r.engine_kv_dtypes.items()) + ")")
        per_token = f"{r.bytes_per_token:,}"
        if r.bytes_per_token_long != r.bytes_per_token:
            per_token += f" -> {r.bytes_per_token_long:,}"
        cells = [r.name, r.layer_summary, r.kv_dtype + mark, per_token]
        if with_state:
            cells.append(format_bytes(r.state_bytes_per_sequence, units) if r.state_bytes_per_sequence else "-")
        cells += [format_bytes(r.bytes_per_1k_tokens, units), f"{r.max_position_embeddings:,}"]
        table.add_row(*cells, end_section=i + 1 < len(rows) and rows[i + 1].family != r.family)
    console = stdout_console()
    console.print(table)
    for line in legend(served):
        console.print(line, markup=False, highlight=False)


def legend(served: list[str]) -> list[str]:
    """What each column means: B/token and the 1k-token column agree (1,024 x B/token) unless a
    model has windows shorter than 1,024 tokens or fixed state, and then the legend says why."""
    lines = [
        "B/token: bytes each new token adds while every window is still filling (all cache layers grow); "
        "A -> B: past every window only full-attention and MLA layers grow, B per token.",
        "1k tokens: one sequence of 1,024 tokens, windows and state included; for a model without "
        "windows under 1,024 tokens it is 1,024 x B/token (+ State/seq: fixed Mamba / linear-attention state).",
    ]
    if served:
        lines.append("* the config's dtype; engines serve these in 16 bits, and their cache with them: "
                     + "; ".join(served) + ". Pass --kv-dtype bf16 (or fp16) for the size they allocate.")
    return lines


def run_show(name: str, json: bool, as_yaml: bool) -> None:
    from kvcalc.registry import load_model

    model = load_model(name)
    if json:
        from kvcalc.cli.output import print_json

        print_json(model.to_dict())
        return
    if as_yaml:
        from kvcalc.catalog import to_yaml

        print(to_yaml(model), end="")
        return
    from kvcalc.catalog import describe_model
    from kvcalc.cli.output import stdout_console

    console = stdout_console()
    for line in describe_model(model):
        console.print(line, markup=False, highlight=False)


def run_import(path: str, output: Path | None, name: str | None, assume_standard: bool = False) -> None:
    from kvcalc.catalog import import_to_yaml
    from kvcalc.cli.output import check_output_path, warn, wrote

    if output is not None:
        output = check_output_path(output, "--output")  # a FIFO would block forever: refuse first
    model, text = import_to_yaml(path, name, assume_standard)
    for assumption in model.source.assumptions:
        warn(assumption)
    if output is None:
        print(text, end="")
        return
    from kvcalc.errors import InvalidRequestError

    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidRequestError("--output", str(output), f"a writable path ({exc.strerror})") from None
    wrote(output)
