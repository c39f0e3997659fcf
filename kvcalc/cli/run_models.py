"""`kvcalc models`, `kvcalc models show`, `kvcalc import`."""

from __future__ import annotations

from pathlib import Path

from kvcalc.units import Units, format_bytes


def run_list(kv_dtype: str, json: bool, units: Units) -> None:
    from kvcalc.catalog import model_rows

    rows = model_rows(kv_dtype)
    if json:
        from kvcalc.cli.output import print_json

        print_json({"models": [r.to_dict() for r in rows]})
        return
    from rich.table import Table

    from kvcalc.cli.output import stdout_console

    table = Table(title=f"Built-in models (KV dtype {kv_dtype})", title_justify="left")
    for col, justify in (("Name", "left"), ("Layers", "right"), ("Cache layers", "left"),
                         ("KV dtype", "left"), ("B/token", "right"), ("Per 1k tokens", "right"),
                         ("Max context", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(r.name, str(r.num_layers), r.layer_summary, r.kv_dtype, f"{r.bytes_per_token:,}",
                      format_bytes(r.bytes_per_1k_tokens, units), f"{r.max_position_embeddings:,}")
    stdout_console().print(table)


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


def run_import(path: str, output: Path | None, name: str | None) -> None:
    from kvcalc.catalog import import_to_yaml
    from kvcalc.cli.output import check_output_path, warn, wrote

    if output is not None:
        output = check_output_path(output, "--output")  # a FIFO would block forever: refuse first
    model, text = import_to_yaml(path, name)
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
