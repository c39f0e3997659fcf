"""The GPU catalog (``kvcalc/data/gpus.yaml``): memory as the driver reports it, the usable
total frameworks budget from, bandwidth and dense tensor throughput, each with its source.

``memory_bytes`` is the driver's figure (nvidia-smi MiB); ``usable_bytes`` is what
``torch.cuda.mem_get_info()`` returns as total, the base vLLM multiplies by
``gpu_memory_utilization`` (vLLM ``Worker.init_device``/``MemorySnapshot``). The catalog stores
the usable total as the GiB figure a public log printed (rounded to 0.01 GiB there); it is
converted here exactly, rounding down to whole bytes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kvcalc.errors import InvalidRequestError, UnknownNameError
from kvcalc.units import GB, GiB, MiB, parse_count

if TYPE_CHECKING:
    from collections.abc import Callable

    from kvcalc.planner.plan import Plan, PlanRequest

CATALOG_PATH = Path(__file__).resolve().parent.parent / "data" / "gpus.yaml"
"""The source of truth, edited by hand (each figure with its source)."""
COMPILED_PATH = CATALOG_PATH.with_name("gpus.json")
"""``gpus.yaml`` compiled to JSON (``python -m kvcalc.planner.gpus``; a test fails when it is stale):
``plan`` starts without importing PyYAML (~25 ms), as built-in models load from ``builtin_models.json``."""
TFLOPS = 10**12
"""Decimal tera (spec sheets quote FLOPS in SI units)."""
MAX_GPU_COUNT = 4096


@dataclass(frozen=True, kw_only=True)
class Gpu:
    """One accelerator model."""

    name: str
    title: str
    aliases: tuple[str, ...]
    vendor: str
    memory_bytes: int
    """Total as the driver reports it (nvidia-smi), in bytes."""
    usable_bytes: int
    """Total that frameworks see (``torch.cuda.mem_get_info`` total); engine budgets start here."""
    bandwidth_bytes_per_s: int
    bf16_flops: int | None
    """Dense bf16 tensor FLOP/s (no sparsity); None where the GPU has no bf16 unit."""
    fp16_flops: int | None
    fp8_flops: int | None
    source: str
    usable_source: str

    @property
    def usable_is_estimated(self) -> bool:
        return self.usable_source.startswith("estimated")

    @property
    def dense_flops(self) -> int | None:
        """The 16-bit dense throughput used for the compute bound (bf16, else fp16)."""
        return self.bf16_flops if self.bf16_flops is not None else self.fp16_flops

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["aliases"] = list(self.aliases)
        return data


def _gpu_from_entry(entry: dict[str, Any]) -> Gpu:
    def flops(key: str) -> int | None:
        value = entry.get(key)
        return None if value is None else int(Decimal(str(value)) * TFLOPS)

    return Gpu(
        name=entry["name"],
        title=entry["title"],
        aliases=tuple(str(a) for a in entry.get("aliases", [])),
        vendor=entry["vendor"],
        memory_bytes=int(entry["memory_mib"]) * MiB,
        usable_bytes=int(Decimal(str(entry["usable_gib"])) * GiB),
        bandwidth_bytes_per_s=int(Decimal(str(entry["bandwidth_gb_s"])) * GB),
        bf16_flops=flops("bf16_tflops"),
        fp16_flops=flops("fp16_tflops"),
        fp8_flops=flops("fp8_tflops"),
        source=entry["source"],
        usable_source=entry["usable_source"],
    )


def compile_catalog() -> dict[str, Any]:
    """``gpus.yaml`` as plain data, every entry checked by building its ``Gpu``."""
    import yaml

    loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with CATALOG_PATH.open(encoding="utf-8") as fh:
        data: dict[str, Any] = yaml.load(fh, Loader=loader)  # noqa: S506 - a SafeLoader
    for entry in data["gpus"]:
        _gpu_from_entry(entry)
    return data


def write_compiled() -> Path:
    import json

    COMPILED_PATH.write_text(json.dumps(compile_catalog(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return COMPILED_PATH


@lru_cache(maxsize=1)
def _catalog() -> tuple[tuple[Gpu, ...], dict[str, Gpu]]:
    import json

    with COMPILED_PATH.open(encoding="utf-8") as fh:
        data = json.load(fh)
    gpus = tuple(_gpu_from_entry(e) for e in data["gpus"])
    index: dict[str, Gpu] = {}
    for gpu in gpus:
        for key in (gpu.name, *gpu.aliases):
            index[_key(key)] = gpu
    return gpus, index


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def all_gpus() -> list[Gpu]:
    """Every catalogued GPU, in catalog order."""
    return list(_catalog()[0])


def gpu_names() -> list[str]:
    """Every accepted name and alias."""
    return sorted(_catalog()[1])


def get_gpu(name: str) -> Gpu:
    """A GPU by name or alias (case-insensitive); ``UnknownNameError`` with "did you mean"."""
    gpu = _catalog()[1].get(_key(name))
    if gpu is None:
        raise UnknownNameError("GPU", name, gpu_names())
    return gpu


def parse_gpu_spec(spec: str) -> tuple[Gpu, int]:
    """``"h100:4"`` -> (H100, 4); ``"a100-80gb"`` -> (A100 80GB, 1)."""
    name, sep, count_text = spec.strip().partition(":")
    if not sep:
        return get_gpu(name), 1
    count = parse_count(count_text.strip())
    if count is None or not 1 <= count <= MAX_GPU_COUNT:
        raise InvalidRequestError("--gpu", spec, f"NAME[:COUNT] with COUNT from 1 to {MAX_GPU_COUNT}, e.g. h100:4")
    return get_gpu(name), count


# ---------------------------------------------------------------------------------------------
# --gpu auto: the machine kvcalc runs on.

AUTO = "auto"


def is_auto(spec: str | None) -> bool:
    return spec is not None and spec.strip().lower() == AUTO


def match_catalog(name: str, total_bytes: int) -> Gpu | None:
    """The catalog entry for a GPU nvidia-smi names (``NVIDIA H100 80GB HBM3``) with the same driver
    total, or None: the catalog supplies bandwidth and FLOPs (the roofline), never the memory."""
    text = name.lower().replace("nvidia", " ").replace("geforce", " ").replace("tesla", " ").replace("-", " ")
    words = set(text.split())
    best: Gpu | None = None
    for gpu in all_gpus():
        if gpu.memory_bytes != total_bytes:
            continue
        base = gpu.name.split("-")
        if base[0] == "rtx":
            base = base[:2]
        else:
            base = base[:1]
        if all(b in words for b in base):
            variant = {"pcie", "nvl"} & set(gpu.name.split("-"))
            if variant and not variant <= words:
                continue
            if best is None or len(gpu.name) > len(best.name):
                best = gpu
    return best


def plan_on_local_gpus(req: PlanRequest, plan_fn: Callable[[PlanRequest], Plan]) -> Plan:
    """``plan`` with ``--gpu auto``: the visible GPUs as read (``kvcalc.planner.localgpu``), planned as
    the engine would on them.

    * vLLM up to 0.33 budgets ``gpu_memory_utilization x total`` (``mem_get_info`` total: the driver
      total less its reserve) and refuses to start when a GPU's free memory is below that; 0.34's
      extensible KV cache skips that check and sizes from what is free
      (``Engine.refuses_when_free_below_request``)
      (vllm/v1/worker/utils.py ``request_memory``: "Free memory on device (free/total GiB) on startup
      is less than desired GPU memory utilization (util, requested GiB)").
    * SGLang sizes from the free memory it reads at start-up (``get_available_gpu_memory``, the
      smallest over the TP ranks), its default fraction from the driver total.
    * llama.cpp, transformers and TensorRT-LLM allocate from what is free.

    The GPU with the least free memory binds (every rank allocates the same pool)."""
    import dataclasses

    from kvcalc.engines.memory import mul_ceil
    from kvcalc.planner.localgpu import probe
    from kvcalc.planner.plan import plan_engine
    from kvcalc.units import format_bytes

    gpus = probe()
    engine = plan_engine(req.engine)
    lines = [f"GPU {g.index} {g.name}: total {format_bytes(g.total_bytes)}, free {format_bytes(g.free_bytes)} "
             f"({g.source})" for g in gpus]
    tight = min(gpus, key=lambda g: g.free_bytes)
    total = min(g.usable_total_bytes for g in gpus)
    driver_total = min(g.total_bytes for g in gpus)
    names = {g.name for g in gpus}
    catalog = match_catalog(tight.name, tight.total_bytes) if len(names) == 1 else None
    count = len(gpus)
    fraction = req.fraction
    refusal: str | None = None
    if engine.refuses_when_free_below_request:
        budget_total = total
        frac = engine.fraction(fraction)
        assert frac is not None  # vLLM always has a fraction
        requested = mul_ceil(total, frac)
        if tight.free_bytes < requested:
            most = (Decimal(tight.free_bytes) / Decimal(total)).quantize(Decimal("0.001"), rounding="ROUND_FLOOR")
            refusal = (f"{engine.name} would not start: free memory on GPU {tight.index} "
                       f"({format_bytes(tight.free_bytes)} of {format_bytes(total)}) on startup is less than desired "
                       f"GPU memory utilization ({frac}, {format_bytes(requested)}); lower {engine.fraction_flag} to "
                       "at most " f"{most}, or free the memory other processes hold")
        how = (f"{engine.name} budgets {frac} x the total {format_bytes(total)} = {format_bytes(requested)} "
               f"(driver total less its reserve); the smallest free memory is {format_bytes(tight.free_bytes)}")
    else:
        budget_total = tight.free_bytes
        if fraction is None:  # a derived default (SGLang's) comes from the driver total, not the free memory
            derived = engine.default_fraction_for(req.model, driver_total, req.tp or count, req.pp)
            fraction = derived[0] if derived is not None else None
        how = f"{engine.name} sizes from the free memory: {format_bytes(tight.free_bytes)} (GPU {tight.index})"
    sub = dataclasses.replace(req, gpu=f"{catalog.name}:{count}" if catalog else None,
                              gpu_memory_bytes=budget_total, fraction=fraction,
                              tp=req.tp if req.tp is not None or catalog else max(count // req.pp, 1))
    result = plan_fn(sub)
    notes = [*lines, how, *result.notes]
    changes: dict[str, Any] = {"notes": notes, "gpu": catalog.name if catalog else tight.name, "gpu_count": count}
    if refusal is not None:
        changes.update(fits=False, reason=refusal, users_fit=False if req.users is not None else None,
                       max_sequences=0, max_concurrency=0.0, longest_context_at_batch=0, log_lines=[],
                       headroom_bytes=None, headroom_units=None, one_request_fits=False,
                       batch_fits=False if req.batch is not None else None,
                       binding_constraint="free GPU memory: vLLM refuses to start",
                       hints=[f"lower {engine.fraction_flag}, or stop what else holds GPU memory"])
    return dataclasses.replace(result, **changes)


if __name__ == "__main__":  # pragma: no cover - developer tool
    print(f"wrote {write_compiled()}")
