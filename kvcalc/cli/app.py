"""The typer app: one function per command, each a thin shell over a core function."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from kvcalc.cli.run_estimate import EstimateArgs
from kvcalc.units import tokens_parser

app = typer.Typer(
    name="kvcalc",
    help="Exact KV-cache memory for LLM inference, and GPU capacity planning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


class UnitsChoice(str, Enum):
    iec = "iec"
    si = "si"


# Shared option types (Annotated), reused by every command that takes them.
ModelArg = Annotated[
    Optional[str],
    typer.Argument(help="Built-in model name or alias (see `kvcalc models`).", show_default=False),
]
ConfigOpt = Annotated[
    Optional[str],
    typer.Option("--config", "-c", help="kvcalc YAML, Hugging Face config.json, a model folder, "
                 "or a hub id from the local HF cache.", show_default=False),
]
SeqLenOpt = Annotated[int, typer.Option("--seq-len", "-s", parser=tokens_parser("--seq-len"),
                                        help="Tokens per sequence, e.g. 4096 or 32k (k = 1024).")]
BatchOpt = Annotated[int, typer.Option("--batch", "-b", min=1, help="Concurrent sequences.")]
KvDtypeOpt = Annotated[
    str,
    typer.Option("--kv-dtype", "--kv-cache-dtype", help="auto (the model's dtype), fp32, fp16, bf16, "
                 "fp8 (= fp8_e4m3), fp8_e5m2, fp8_per_tensor, fp8_per_token_head, int8, int4, GGUF q8_0, "
                 "q4_0, q4_1, q5_0, q5_1, iq4_nl, transformers quantized caches quanto-int2/4, hqq-int1..8."),
]
EngineOpt = Annotated[
    str, typer.Option("--engine", "-e", help="Storage policy: neutral (default), hf (transformers "
                      "DynamicCache), hf-static (StaticCache), vllm, sglang, llama.cpp.")
]
UnitsOpt = Annotated[
    UnitsChoice, typer.Option("--units", help="iec: GiB/MiB (1024-based); si: GB/MB (1000-based).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]
AssumeStandardOpt = Annotated[bool, typer.Option(
    "--assume-standard", help="Read a Hugging Face config key kvcalc cannot place under a stated assumption "
    "(printed as a warning) instead of refusing it.")]


@app.command(
    epilog="Examples:\n\n"
    "  kvcalc estimate llama-2-7b --seq-len 4096\n\n"
    "  kvcalc estimate llama-3-70b --seq-len 8192 --batch 8 --kv-dtype fp8 --json\n\n"
    "  kvcalc estimate llama-3-70b --seq-len 4096 --kv-heads 64 --explain   # ignore GQA\n\n"
    "  kvcalc estimate --config ./config.json --seq-len 4096 --engine llama.cpp --kv-dtype q8_0\n",
)
def estimate(
    model: ModelArg = None,
    seq_len: SeqLenOpt = ...,  # type: ignore[assignment]
    config: ConfigOpt = None,
    batch: BatchOpt = 1,
    kv_dtype: KvDtypeOpt = "auto",
    engine: EngineOpt = "neutral",
    json: JsonOpt = False,
    explain: Annotated[bool, typer.Option("--explain", help="Show the formula with numbers.")] = False,
    units: UnitsOpt = UnitsChoice.iec,
    layers: Annotated[Optional[int], typer.Option(min=1, help="What-if: number of layers.")] = None,
    kv_heads: Annotated[Optional[int], typer.Option(min=1, help="What-if: KV heads per layer.")] = None,
    head_dim: Annotated[Optional[int], typer.Option(min=1, help="What-if: head size.")] = None,
    tp: Annotated[int, typer.Option("--tp", "-tp", "--tensor-parallel-size", min=1,
                                    help="Tensor-parallel degree.")] = 1,
    pp: Annotated[int, typer.Option("--pp", "--pipeline-parallel-size", min=1,
                                    help="Pipeline-parallel degree.")] = 1,
    block_size: Annotated[Optional[int], typer.Option(min=1, help="Paged engines: tokens per block.")] = None,
    window: Annotated[Optional[int], typer.Option(
        min=1, help="What-if: every full-attention layer keeps only the last N tokens.")] = None,
    sink_tokens: Annotated[int, typer.Option(
        min=0, help="What-if with --window: also keep the first S tokens (attention sinks).")] = 0,
    kv_group_size: Annotated[Optional[int], typer.Option(
        min=1, help="Quantized cache (quanto-/hqq-): values per scale group (default 64).")] = None,
    residual_length: Annotated[Optional[int], typer.Option(
        min=1, help="Quantized cache: residual length kept in full precision (default 128).")] = None,
    assume_standard: AssumeStandardOpt = False,
    image_tokens: Annotated[Optional[int], typer.Option(
        min=0, help="Cross-attention models (Llama-3.2-Vision): vision tokens each sequence holds "
        "(1601 per image tile; 0 = text only).")] = None,
) -> int:
    """How many bytes of KV cache a model holds for a sequence length and batch."""
    from kvcalc.cli.run_estimate import run

    return run(EstimateArgs(
        model=model, config=config, seq_len=seq_len, batch=batch, kv_dtype=kv_dtype, engine=engine,
        json=json, explain=explain, units=units.value, layers=layers, kv_heads=kv_heads,
        head_dim=head_dim, tp=tp, pp=pp, block_size=block_size, window=window, sink_tokens=sink_tokens,
        kv_group_size=kv_group_size, residual_length=residual_length, assume_standard=assume_standard,
        image_tokens=image_tokens,
    ))


models_app = typer.Typer(
    help="List the built-in models, or show one.", invoke_without_command=True, no_args_is_help=False
)
app.add_typer(models_app, name="models")


@models_app.callback(
    epilog="Examples:\n\n  kvcalc models\n\n  kvcalc models --family qwen --json\n\n  kvcalc models show llama-3-70b\n",
)
def models_list(
    ctx: typer.Context,
    kv_dtype: KvDtypeOpt = "auto",
    json: JsonOpt = False,
    units: UnitsOpt = UnitsChoice.iec,
    family: Annotated[Optional[str], typer.Option(
        "--family", help="Only this family, e.g. llama, qwen, gemma (the name before its version).")] = None,
) -> None:
    """List built-in models with their bytes per token, grouped by family."""
    if ctx.invoked_subcommand is not None:
        return
    from kvcalc.cli.run_models import run_list

    run_list(kv_dtype=kv_dtype, json=json, units=units.value, family=family)


@models_app.command(
    "show", epilog="Examples:\n\n  kvcalc models show gemma-2-27b\n\n  kvcalc models show deepseek-v3 --yaml\n",
)
def models_show(
    name: Annotated[str, typer.Argument(help="Model name, alias, or a config path.")],
    json: JsonOpt = False,
    yaml: Annotated[bool, typer.Option("--yaml", help="Print the model as kvcalc YAML.")] = False,
) -> None:
    """Show one model: its layers, dims and where each number comes from."""
    from kvcalc.cli.run_models import run_show

    run_show(name, json=json, as_yaml=yaml)


@app.command(
    "import",
    epilog="Examples:\n\n  kvcalc import ./config.json\n\n"
    "  kvcalc import meta-llama/Llama-3.1-8B -o llama-3.1-8b.yaml\n",
)
def import_(
    path: Annotated[str, typer.Argument(help="A config.json, a model folder, or a hub id in the HF cache.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the YAML here.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Name for the imported model.")] = None,
    assume_standard: AssumeStandardOpt = False,
) -> None:
    """Convert a Hugging Face config.json into kvcalc YAML."""
    from kvcalc.cli.run_models import run_import

    run_import(path, output=output, name=name, assume_standard=assume_standard)


@app.command(epilog="Examples:\n\n  kvcalc version\n")
def version() -> None:
    """Print kvcalc's version."""
    from kvcalc import __version__

    typer.echo(__version__)


# Commands that live in their own modules register themselves here (one module per command).
def _register_commands() -> None:
    import importlib
    import importlib.util

    for name in ("gpus", "plan", "fit", "check_log", "verify", "sweep", "simulate", "bench", "engines"):
        module = f"kvcalc.cli.cmd_{name}"
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module).register(app)


_register_commands()
