"""`kvcalc engines`: the engine versions kvcalc models, and the architectures each serves."""

from __future__ import annotations

from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command(
        "engines",
        epilog="Examples:\n\n  kvcalc engines\n\n  kvcalc engines --architectures vllm@0.20\n\n"
               "  kvcalc engines --architectures sglang --json\n",
    )
    def engines(
        architectures: Annotated[Optional[str], typer.Option(
            "--architectures", help="List the architectures this engine (or engine@version) serves.")] = None,
        json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    ) -> None:
        """List the engine versions kvcalc models (per version: the architecture table read from its wheel)."""
        from kvcalc.cli.output import print_json, stdout_console
        from kvcalc.engines import engine_names, engine_versions, get_engine
        from kvcalc.engines.served import table

        if architectures is not None:
            engine = get_engine(architectures)
            found = table(engine.served_release) if engine.served_release else None
            if found is None:
                from kvcalc.errors import InvalidRequestError

                raise InvalidRequestError("--architectures", architectures, "an engine with an architecture table: "
                                          "vllm, vllm@0.20, vllm@0.33, sglang")
            doc = {"release": found.release, "generate": sorted(found.generate), "other": sorted(found.other),
                   "transformers": sorted(found.transformers), "removed": found.removed}
            if json:
                print_json(doc)
                return
            console = stdout_console()
            console.print(f"[bold]{found.release}[/bold]: {len(found.generate)} generative architectures "
                          f"(own code), {len(found.other)} pooling / draft, {len(found.transformers)} through its "
                          "Transformers backend")
            for name in sorted(found.generate):
                console.print(name, highlight=False)
            return
        rows = []
        for spelling in [*engine_names(), *engine_versions()]:
            e = get_engine(spelling)
            t = table(e.served_release) if e.served_release else None
            rows.append({"engine": spelling, "version": e.version, "plannable": e.plannable,
                         "architectures_from": t.release if t else None,
                         "architectures": len(t.generate) if t else None})
        if json:
            print_json({"engines": rows})
            return
        from rich.table import Table

        out = Table(title="Engines and versions (--engine NAME or NAME@VERSION)", title_justify="left")
        for col in ("engine", "version", "plan", "architectures (own code)"):
            out.add_column(col)
        for r in rows:
            arch = f"{r['architectures']} ({r['architectures_from']})" if r["architectures"] is not None else "-"
            out.add_row(str(r["engine"]), str(r["version"]), "yes" if r["plannable"] else "no", arch)
        stdout_console().print(out)
