"""The GPUs of the machine kvcalc runs on (``--gpu auto``): each GPU's total and free memory, as read.

Sources, in order: ``nvidia-smi --query-gpu`` when it is on ``PATH``; else NVML through
``nvidia-ml-py`` (``pynvml``); else torch (``torch.cuda.mem_get_info``). ``CUDA_VISIBLE_DEVICES``
is honoured as CUDA reads it: a comma list of indices or ``GPU-`` UUIDs (prefixes allowed), in
that order, stopping at the first entry that names no GPU; empty means none. nvidia-smi and
NVML report memory in MiB/bytes as the driver sees it; ``memory.reserved`` (driver R510 and later)
is the part of the total no process can allocate, so ``total - reserved`` is the total
``torch.cuda.mem_get_info`` (and vLLM) sees.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from kvcalc.errors import InvalidRequestError
from kvcalc.units import MiB

QUERY_FIELDS = "index,uuid,name,memory.total,memory.reserved,memory.used,memory.free"
QUERY_FIELDS_OLD = "index,uuid,name,memory.total,memory.used,memory.free"
"""Drivers before R510 have no ``memory.reserved`` (nvidia-smi then says the field is not valid)."""
TIMEOUT_S = 20


@dataclass(frozen=True, kw_only=True)
class LocalGpu:
    index: int
    uuid: str
    name: str
    total_bytes: int
    """As the driver reports it (nvidia-smi ``memory.total``)."""
    free_bytes: int
    used_bytes: int
    reserved_bytes: int | None
    """Driver-reserved memory (nvidia-smi ``memory.reserved``); None when not reported."""
    source: str

    @property
    def usable_total_bytes(self) -> int:
        """The total frameworks see (``mem_get_info``): driver total less the reserve, when known."""
        return self.total_bytes - (self.reserved_bytes or 0)


class GpuProbeError(InvalidRequestError):
    """The machine's GPUs could not be read: a device problem (exit 1), not a usage error."""

    exit_code = 1

    def __init__(self, why: str) -> None:
        super().__init__("--gpu", "auto", f"readable local NVIDIA GPUs ({why})")


def _mib(text: str, what: str) -> int:
    value = text.strip()
    if not value.isdigit() or len(value) > 12:
        raise GpuProbeError(f"nvidia-smi printed {what} = {value[:40]!r}, expected MiB as an integer")
    return int(value) * MiB


def parse_nvidia_smi(text: str, with_reserved: bool = True) -> list[LocalGpu]:
    """``nvidia-smi --query-gpu=QUERY_FIELDS --format=csv,noheader,nounits`` output -> GPUs."""
    gpus: list[LocalGpu] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != (7 if with_reserved else 6):
            raise GpuProbeError(f"unexpected nvidia-smi line {line.strip()[:60]!r}")
        if with_reserved:
            index, uuid, name, total, reserved, used, free = cells
            reserved_bytes: int | None = _mib(reserved, "memory.reserved")
        else:
            index, uuid, name, total, used, free = cells
            reserved_bytes = None
        if not index.isdigit():
            raise GpuProbeError(f"nvidia-smi printed index {index[:20]!r}")
        gpus.append(LocalGpu(index=int(index), uuid=uuid, name=name, total_bytes=_mib(total, "memory.total"),
                             free_bytes=_mib(free, "memory.free"), used_bytes=_mib(used, "memory.used"),
                             reserved_bytes=reserved_bytes, source="nvidia-smi"))
    return gpus


def _nvidia_smi(exe: str) -> list[LocalGpu]:
    def run(fields: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([exe, f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=TIMEOUT_S, check=False)

    try:
        out = run(QUERY_FIELDS)
        if out.returncode != 0 and "memory.reserved" in (out.stdout + out.stderr):
            out = run(QUERY_FIELDS_OLD)
            if out.returncode == 0:
                return parse_nvidia_smi(out.stdout, with_reserved=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GpuProbeError(f"nvidia-smi failed: {exc}") from None
    if out.returncode != 0:
        first = (out.stderr or out.stdout).strip().splitlines()[:1]
        raise GpuProbeError(f"nvidia-smi exited {out.returncode}: {first[0][:80] if first else ''}")
    return parse_nvidia_smi(out.stdout)


def _nvml() -> list[LocalGpu] | None:
    try:
        import pynvml  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - NVMLError_LibraryNotFound / DriverNotLoaded: no NVML here
        return None
    try:
        gpus = []
        for i in range(int(pynvml.nvmlDeviceGetCount())):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            try:  # v2 reports the reserve (driver R510+)
                mem = pynvml.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
                reserved: int | None = int(mem.reserved)
            except Exception:  # noqa: BLE001 - older bindings or drivers: v1, no reserve
                mem = pynvml.nvmlDeviceGetMemoryInfo(h)
                reserved = None
            name = pynvml.nvmlDeviceGetName(h)
            uuid = pynvml.nvmlDeviceGetUUID(h)
            gpus.append(LocalGpu(index=i, uuid=str(uuid), name=name.decode() if isinstance(name, bytes) else str(name),
                                 total_bytes=int(mem.total), free_bytes=int(mem.free), used_bytes=int(mem.used),
                                 reserved_bytes=reserved, source="NVML (nvidia-ml-py)"))
        return gpus
    finally:
        pynvml.nvmlShutdown()


def _torch() -> list[LocalGpu] | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    gpus = []
    for i in range(torch.cuda.device_count()):  # torch applies CUDA_VISIBLE_DEVICES itself
        free, total = torch.cuda.mem_get_info(i)
        gpus.append(LocalGpu(index=i, uuid="", name=torch.cuda.get_device_name(i), total_bytes=int(total),
                             free_bytes=int(free), used_bytes=int(total) - int(free), reserved_bytes=0,
                             source="torch.cuda.mem_get_info"))
    return gpus


def visible(gpus: list[LocalGpu], env: str | None) -> list[LocalGpu]:
    """``CUDA_VISIBLE_DEVICES`` as CUDA applies it (see the module docstring)."""
    if env is None:
        return gpus
    out: list[LocalGpu] = []
    for entry in (e.strip() for e in env.split(",")):
        match = None
        if entry.isdigit():
            match = next((g for g in gpus if g.index == int(entry)), None)
        elif entry.startswith("GPU-") or entry.startswith("MIG-"):
            match = next((g for g in gpus if g.uuid and g.uuid.startswith(entry)), None)
        if match is None or match in out:
            break  # CUDA stops at the first invalid entry
        out.append(match)
    return out


_PINNED: list[LocalGpu] | None = None


@contextmanager
def one_reading() -> Iterator[list[LocalGpu]]:
    """Read the GPUs once for a whole command (``fit`` plans many times): every ``probe()`` inside
    returns this reading, so all answers use the same free memory."""
    global _PINNED
    outer = _PINNED
    _PINNED = probe()
    try:
        yield _PINNED
    finally:
        _PINNED = outer


def probe() -> list[LocalGpu]:
    """The visible local GPUs, from the first source that answers; an error names what was tried."""
    if _PINNED is not None:
        return list(_PINNED)
    exe = shutil.which("nvidia-smi")
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if exe is not None:
        gpus = visible(_nvidia_smi(exe), env)
    else:
        nvml = _nvml()
        if nvml is not None:
            gpus = visible(nvml, env)
        else:
            gpus = _torch() or []
            if not gpus:
                raise GpuProbeError("no nvidia-smi on PATH, no NVML (pip install nvidia-ml-py), no CUDA torch")
    if not gpus:
        raise GpuProbeError(f"no GPU is visible (CUDA_VISIBLE_DEVICES={env!r})")
    return gpus
