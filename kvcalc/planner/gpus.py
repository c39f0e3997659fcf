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
from typing import Any

from kvcalc.errors import InvalidRequestError, UnknownNameError
from kvcalc.units import GB, GiB, MiB, parse_count

CATALOG_PATH = Path(__file__).resolve().parent.parent / "data" / "gpus.yaml"
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


@lru_cache(maxsize=1)
def _catalog() -> tuple[tuple[Gpu, ...], dict[str, Gpu]]:
    import yaml

    loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with CATALOG_PATH.open(encoding="utf-8") as fh:
        data = yaml.load(fh, Loader=loader)  # noqa: S506 - a SafeLoader
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
