"""`kvcalc plan` without typer: flags -> ``PlanRequest``, the run, and the rendering. Shared by
the typer command (``cmd_plan``) and the fast start-up path (``kvcalc.cli.fast``), so both print
the same bytes. The tables are drawn by ``kvcalc.cli.boxtable`` in rich's look (rich's import
costs ~50 ms of a ~150 ms cold start)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kvcalc.models import ModelConfig
    from kvcalc.planner.plan import Plan, PlanRequest


def run_plan(model: str | None, config: str | None, engine: str, fractions: dict[str, str | None], *,
             json: bool, plot: str | None = None, report: str | None = None, command: str = "",
             **flags: Any) -> int:
    """Resolve the model, plan, warn, write the plot / HTML report asked for, and print the JSON
    or the tables. A plan that does not fit is an answer: exit 0. ``command``: the command line
    the report quotes."""
    from kvcalc.cli.output import print_json, warn
    from kvcalc.cli.run_estimate import resolve_model
    from kvcalc.planner.plan import plan

    resolved = resolve_model(model, config)
    if flags.get("draft_model") is not None:  # --draft-model NAME: a built-in name, or a config path / hub id
        name = flags["draft_model"]
        flags["draft_model"] = resolve_model(name, None) if _is_builtin(name) else resolve_model(None, name)
    req = _request(resolved, engine, fractions, **flags)
    result = plan(req)
    for message in [*resolved.source.assumptions, *result.warnings]:
        warn(message)
    if plot:
        import sys

        from kvcalc.planner.plotting import plot_plan

        written = plot_plan(req, result, plot)
        sys.stderr.write(f"wrote {written}\n")
    if report:
        import sys

        from kvcalc.show.report import plan_report, write_report

        sys.stderr.write(f"wrote {write_report(report, plan_report(req, result, command))}\n")
    if json:
        print_json(result.to_dict())
        return 0
    render_plan(result)
    return 0


def _is_builtin(name: str) -> bool:
    from kvcalc.errors import UnknownNameError
    from kvcalc.registry import get_builtin

    try:
        get_builtin(name)
    except UnknownNameError:
        return False
    return True


def _request(model: ModelConfig, engine: str, fractions: dict[str, str | None], *, gpu_memory: str | None,
             kv_budget: str | None, activation_memory: str | None, non_torch_memory: str | None,
             **fields: Any) -> PlanRequest:
    """Flags -> ``PlanRequest``. Each fraction flag belongs to the engine that declares it
    (``Engine.fraction_flag``); sizes go through ``parse_size``."""
    from kvcalc.engines import get_engine, planner_engines
    from kvcalc.errors import InvalidRequestError
    from kvcalc.planner.plan import PlanRequest, plan_engine

    chosen = plan_engine(engine)
    for flag, value in fractions.items():
        if value is not None and flag != chosen.fraction_flag:
            owner = next((e for e in planner_engines() if get_engine(e).fraction_flag == flag), "?")
            raise InvalidRequestError(flag, value, f"used with --engine {owner} (this plan uses {chosen.name})")
    _engine_flags(chosen.name, fields)
    return PlanRequest(
        model=model, engine=engine, fraction=fractions.get(chosen.fraction_flag or ""),
        gpu_memory_bytes=_size(gpu_memory, "--gpu-memory"),
        kv_budget_bytes=_signed_size(kv_budget) if kv_budget else None,
        activation_bytes=_size(activation_memory, "--activation-memory"),
        non_torch_bytes=_size(non_torch_memory, "--non-torch-memory"), **fields,
    )


_ENGINE_FLAGS: dict[str, tuple[str, str, object]] = {
    # field: (flag, the engines it belongs to, its default)
    "max_tokens": ("--max-tokens", "trtllm", None), "host_cache_bytes": ("--host-cache-size", "trtllm", 0),
    "n_gpu_layers": ("--n-gpu-layers", "llama.cpp or ollama", -1),
    "tensor_split": ("--tensor-split", "llama.cpp", ()),
    "split_mode": ("--split-mode", "llama.cpp", "layer"), "parallel": ("--parallel", "llama.cpp or ollama", 1),
    "kv_unified": ("--kv-unified", "llama.cpp", False), "no_kv_offload": ("--no-kv-offload", "llama.cpp", False),
    "flash_attn": ("--flash-attn", "llama.cpp or ollama", "auto"),
}
"""Ollama passes llama-server only -c, -np, the cache types, -fa and -ngl (num_gpu): its GPUs split
by free memory (ollama/ollama llm/llama_server.go:375-410 @ v0.32.15)."""


def _engine_flags(engine: str, fields: dict[str, Any]) -> None:
    """An engine's own flag given with another engine is refused, not ignored (as the fractions)."""
    from kvcalc.errors import InvalidRequestError

    for key, (flag, owner, default) in _ENGINE_FLAGS.items():
        value = fields.get(key, default)
        if value != default and engine not in owner.split(" or "):
            raise InvalidRequestError(flag, str(value), f"used with --engine {owner} (this plan uses {engine})")


def _size(text: str | None, flag: str) -> int | None:
    from kvcalc.units import parse_size

    return parse_size(text, flag) if text else None


def _signed_size(text: str) -> int:
    """``--kv-budget`` accepts zero or a negative size (an answer: nothing fits)."""
    from kvcalc.units import parse_size

    stripped = text.strip()
    if stripped.startswith("-"):
        return -parse_size(stripped[1:], "--kv-budget")
    return parse_size(stripped, "--kv-budget")


def render_plan(p: Plan) -> None:
    """Print the plan's lines (see ``plan_lines``) on stdout, styled and wrapped on a terminal."""
    import sys

    from kvcalc.cli.boxtable import styled_stdout, terminal_width

    lines = plan_lines(p, max_width=terminal_width(), style=styled_stdout())
    sys.stdout.write("".join(f"{line}\n" for line in lines))


def plan_lines(p: Plan, *, max_width: int | None = None, style: bool = False) -> list[str]:
    """The plan as tables and lines; every figure is a field of ``p``. ``max_width``: wrap to a
    terminal's width (None: piped, one line per row); ``style``: bold and italic as rich draws them."""
    from kvcalc.cli.boxtable import text_lines

    where = f"{p.gpu_count} x {p.gpu}" if p.gpu else "a given KV budget"
    title = (f"{p.model} on {where}, TP {p.tp}" + (f" x PP {p.pp}" if p.pp > 1 else "")
             + (f", {p.replicas} replicas" if p.replicas > 1 else "") + f", {p.engine} ({p.engine_version})")
    out = text_lines(title, max_width=max_width, bold=style)
    # The verdict is ``fits``, the same answer as the JSON's, to the question it names.
    verdict = "YES" if p.fits else "NO"
    if p.users is not None:
        out += text_lines(f"Serve {p.users:,} users x {p.max_model_len:,} tokens per request? {verdict} "
                          f"({p.binding_constraint})", max_width=max_width, bold=style)
    else:
        out += text_lines(f"Does one request of {p.max_model_len:,} tokens per request fit? {verdict}",
                          max_width=max_width, bold=style)
    out += _table("Memory per GPU", _memory_rows(p), max_width, style)
    out += _table(f"KV cache ({p.kv_dtype})", _kv_rows(p), max_width, style)
    if p.devices:
        out += _device_table(p, max_width, style)
    for line in _text(p):
        out += text_lines(line, max_width=max_width)
    return out


def _table(title: str, rows: list[tuple[str, str, bool]], max_width: int | None, style: bool) -> list[str]:
    """A two-column table without headers (label, right-justified value): rich's
    ``Table(show_header=False)`` look; rows marked bold are the answer rows."""
    from kvcalc.cli.boxtable import render

    return render(title, None, ["left", "right"], [[[label, value] for label, value, _ in rows]],
                  bold_rows=[(0, i) for i, (_, _, bold) in enumerate(rows) if bold], max_width=max_width,
                  style=style)


def _device_table(p: Plan, max_width: int | None, style: bool) -> list[str]:
    """Per device (llama.cpp, Ollama): layers, weights, KV, compute + overhead, total, memory, verdict."""
    from kvcalc.cli.boxtable import render
    from kvcalc.units import format_bytes

    rows = []
    for d in p.devices:
        where = f"{d['layers']:,}" + (" + output" if d["output_layer"] else "")
        verdict = "host" if d["device"] == "CPU" else ("?" if d["fits"] is None else ("yes" if d["fits"] else "NO"))
        rows.append([d["device"], where, format_bytes(d["weights_bytes"]), format_bytes(d["kv_bytes"]),
                     format_bytes(d["compute_bytes"] + d["overhead_bytes"]), format_bytes(d["total_bytes"]),
                     "" if d["memory_bytes"] is None else format_bytes(d["memory_bytes"]), verdict])
    title = "Memory per device" + ("" if p.devices_fit is None else f": fits {'YES' if p.devices_fit else 'NO'}")
    return render(title, ["device", "layers", "weights", "KV", "compute + overhead", "total", "memory", "fits"],
                  ["left", "right", "right", "right", "right", "right", "right", "left"], [rows],
                  max_width=max_width, style=style)


def _size_text(n: int | None) -> str:
    from kvcalc.units import format_bytes

    return "unknown" if n is None else f"{format_bytes(n)} ({n:,} B)"


def _memory_rows(p: Plan) -> list[tuple[str, str, bool]]:
    b = p.budget
    rows: list[tuple[str, str, bool]] = []
    if b["total_bytes"] is None:
        rows.append(("weights (all GPUs)", _size_text(p.weights_bytes), False))
    else:
        # Rows in the order the engine applies them (Budget.order), so the column adds up.
        frac_label = f"x {b['fraction_flag']} {b['fraction']}"
        items: dict[str, tuple[str, int | None]] = {
            "fraction": (frac_label + (" of what is left" if b["requested_bytes"] is None else ""),
                         b["requested_bytes"]),
            "weights": (f"- weights ({p.weight_dtype}, {p.parameters_source}; 1/{p.tp * p.pp} per GPU)",
                        b["weights_bytes"]),
            "activation": ("- activation peak (--activation-memory)", b["activation_bytes"] or None),
            "non_torch": ("- non-torch: CUDA context, NCCL (--non-torch-memory)", b["non_torch_bytes"]),
        }
        modelled = {("non_torch" if t["name"] == "non_torch" else "activation") for t in p.budget_terms
                    if t["status"] == "modelled"}
        if any(t["name"] == "cudagraph" and t["status"] == "modelled" for t in p.budget_terms):
            items["activation"] = ("- activation peak + CUDA graphs (--activation-memory)", items["activation"][1])
        for key in modelled:  # say which terms are modelled (best value shown) and which given
            label, value = items[key]
            items[key] = (label.replace(" (--", ", modelled best (--"), value)
        rows.append(("GPU memory the engine sees", _size_text(b["total_bytes"]), False))
        for key in b["order"]:
            label, value = items[key]
            if value is not None or (key == "fraction" and b["fraction"] is not None):
                rows.append((label, _size_text(value) if value is not None else "", False))
        if b.get("reserve_bytes"):
            rows.append((f"- {b['reserve_label']}", _size_text(b["reserve_bytes"]), False))
    rows.append(("= KV cache budget", _size_text(p.kv_budget_bytes), True))
    if p.kv_budget_bytes_low is not None and p.kv_budget_bytes_high is not None:
        rows.append(("  KV budget if the modelled terms sit at their bounds",
                     f"{_size_text(p.kv_budget_bytes_low)} .. {_size_text(p.kv_budget_bytes_high)}", False))
    return rows


def _kv_rows(p: Plan) -> list[tuple[str, str, bool]]:
    from kvcalc.units import format_bytes

    kv: list[tuple[str, str, bool]] = []
    if p.vllm is not None:
        v = p.vllm
        kv.append(("block size / page per layer", f"{v['block_size']} tokens / {v['page_size_bytes']:,} B",
                   False))
        kv.append(("layer groups", f"{v['num_groups']} x {v['group_size']} layers ({v['layout']})", False))
        kv.append(("blocks (vLLM's count, incl. 1 null block)", f"{p.num_blocks:,}", False))
        kv.append(("blocks per request at max_model_len", f"{v['blocks_per_request']:,}", False))
        kv.append(("--max-num-batched-tokens", f"{p.max_num_batched_tokens:,}", False))
    if p.kv_cache_tokens is not None:
        kv.append(("tokens the cache holds", f"{p.kv_cache_tokens:,}", False))
    kv.append(("max concurrency at max_model_len", f"{p.max_concurrency:.2f}x", False))
    if p.max_concurrency_low is not None and p.max_concurrency_high is not None \
            and f"{p.max_concurrency_low:.2f}" != f"{p.max_concurrency_high:.2f}":
        kv.append(("  with the modelled terms at their bounds",
                   f"{p.max_concurrency_low:.2f}x .. {p.max_concurrency_high:.2f}x", False))
    if p.estimated_max_model_len_low is not None and p.estimated_max_model_len_high is not None \
            and p.estimated_max_model_len_low != p.estimated_max_model_len_high:
        kv.append(("estimated max model len, terms at their bounds",
                   f"{p.estimated_max_model_len_low:,} .. {p.estimated_max_model_len_high:,} tokens", False))
    resident = f"{p.max_sequences:,}"
    if p.max_running_requests is not None and p.max_sequences < p.max_sequences_by_memory:
        resident += f" (--max-num-seqs; the KV cache holds {p.max_sequences_by_memory:,})"
    kv.append(("requests resident at once (per replica)" + (" (null block excluded)" if p.vllm else ""), resident,
               False))
    kv.append((f"longest context for {p.batch:,} requests at once", f"{p.longest_context_at_batch:,} tokens",
               False))
    kv.append(("KV for this workload, per GPU", _size_text(p.per_gpu_bytes), False))
    if p.headroom_bytes is not None:
        kv.append(("headroom (KV left over after this workload)",
                   f"{format_bytes(p.headroom_bytes)} ({p.headroom_units:,} {p.capacity_unit})", False))
    if p.shared_prefix_tokens:
        kv.append((f"shared prefix {p.shared_prefix_tokens:,} tokens: saving",
                   _size_text(p.shared_prefix_saving_bytes), False))
        kv.append(("requests resident without sharing", f"{p.max_sequences_without_prefix_sharing:,}", False))
    return kv


def _text(p: Plan) -> list[str]:
    out: list[str] = []
    if p.tp_options:
        out.append("TP options for --users " + ", ".join(
            f"TP {o['tp']}: {o['max_sequences']:,} per replica" for o in p.tp_options)
            + (f"; smallest TP {p.min_tp_for_users}" if p.min_tp_for_users else "")
            + (f"; fewest GPUs {p.min_gpus_for_users}" if p.min_gpus_for_users else ""))
    if p.roofline is not None:
        r = p.roofline
        comp = r["compute_bound_tokens_per_s"]
        out.append(
            f"Decode roofline at batch {r['batch']} ({r['label']}): {r['tokens_per_s_per_sequence']:.1f} tok/s per "
            f"sequence, {r['aggregate_tokens_per_s']:.0f} tok/s total; {r['bound']}-bound (memory "
            f"{r['memory_bound_tokens_per_s']:.1f}" + (f", compute {comp:.1f}" if comp is not None else "")
            + " tok/s per sequence)")
    if p.log_lines:
        out.append(f"{p.engine} would log:")
        from kvcalc.show.loglines import unit_note

        for line in p.log_lines:
            out.append(f"  {line}")  # verbatim: the engine's own words
            if note := unit_note(p.engine, line):
                out.append(f"  note: {note}")
    if p.device_short:
        out.append(f"Does not fit: {p.device_short}")
    if p.reason and not any(p.reason in line for line in p.log_lines):
        out.append(f"Why not: {p.reason}")
    out += [f"Try: {hint}" for hint in p.hints]
    out += [f"note: {note}" for note in p.notes]
    return out
