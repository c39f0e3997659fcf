"""Allocate laid-out tensors on a device and read the device's own accounting.

torch is imported lazily, inside functions (``pip install 'kvcalc[measure]'``).

* CPU: every tensor is backed by its own anonymous ``mmap`` wrapped with ``torch.frombuffer``,
  written in full, and measured as the resident-set (RSS) delta. Not ``torch.empty``: glibc
  serves allocations below its (dynamic, up to 32 MiB) mmap threshold from the heap, where a
  freed chunk can be handed out again without new pages (reference §6.4), which would hide
  memory. A private anonymous mapping always starts non-resident and gains exactly one page per
  page written, so the expected delta is the tensor rounded up to whole pages.
* CUDA: ``torch.empty`` through PyTorch's caching allocator, written in full, measured as the
  deltas of ``torch.cuda.memory_allocated()`` and ``memory_reserved()`` after
  ``torch.cuda.empty_cache()``; kvcalc's model of the allocator (``kvcalc.measure.allocator``)
  predicts both.
* MPS: ``torch.mps.current_allocated_memory()`` delta.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kvcalc.dtypes import cdiv
from kvcalc.errors import DeviceError, InvalidRequestError, MissingDependencyError
from kvcalc.measure.allocator import CachingAllocatorModel
from kvcalc.measure.layout import TensorLayout
from kvcalc.units import MiB, parse_count

WRITE_CHUNK_BYTES = 64 * MiB
"""Tensors are written in chunks of this size so progress moves and Ctrl-C is prompt."""


def import_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("torch", "measure") from None
    return torch


@dataclass
class Allocation:
    layout: TensorLayout
    tensor: Any
    """The typed tensor with the engine's shape (a view of ``raw``)."""
    raw: Any
    """The flat uint8 tensor that owns (or views) the memory."""
    mapping: mmap.mmap | None = None


@dataclass
class Device:
    """A place to allocate tensors, and the counters it keeps."""

    name: str
    torch: Any
    live: list[Allocation] = field(default_factory=list)

    kind: ClassVar[str] = "cpu"
    counters: ClassVar[tuple[str, ...]] = ("resident",)
    commits_on_write: ClassVar[bool] = False
    """True where allocating commits nothing (CPU mappings): all tensors are created before the
    first counter read, so only the pages written move the counter, not the Python objects."""

    def prepare(self) -> None:
        """Bring the device to a clean state before measuring."""
        return None

    def available_bytes(self) -> int:
        raise NotImplementedError

    def budget_bytes(self) -> int:
        """What verify may allocate at most: available memory minus a margin."""
        raise NotImplementedError

    def budget_rule(self) -> str:
        raise NotImplementedError

    def expected(self, sizes_bytes: list[int]) -> dict[str, int]:
        """What each counter should grow by for these allocations, in order."""
        raise NotImplementedError

    def expected_sequence(self, groups: list[list[int]]) -> list[dict[str, int]]:
        """``expected`` for each group of allocations, made one group after the other."""
        return [self.expected(sizes) for sizes in groups]

    def snapshot(self) -> dict[str, int]:
        raise NotImplementedError

    def tolerance_bytes(self, expected_bytes: int) -> int:
        raise NotImplementedError

    def tolerance_rule(self) -> str:
        raise NotImplementedError

    def allocate(self, layout: TensorLayout) -> Allocation:
        raise NotImplementedError

    def torch_dtype(self, name: str) -> Any:
        return getattr(self.torch, name)

    def write(self, alloc: Allocation, progress: Callable[[int], None] | None = None) -> None:
        """Write every byte (a non-zero pattern, so no page can stay shared or lazily zeroed)."""
        raw = alloc.raw
        n = raw.numel()
        for start in range(0, n, WRITE_CHUNK_BYTES):
            stop = min(n, start + WRITE_CHUNK_BYTES)
            raw[start:stop].fill_(0x3C)
            if progress is not None:
                progress(stop - start)
        self.sync()

    def sync(self) -> None:
        return None

    def free_all(self) -> None:
        """Drop every live allocation (tensors first, then the mappings they view)."""
        while self.live:
            alloc = self.live.pop()
            mapping = alloc.mapping
            alloc.tensor = None
            alloc.raw = None
            if mapping is not None:
                try:
                    mapping.close()
                except BufferError:
                    # A frame of an interrupted write (Ctrl-C inside fill_) still views the buffer;
                    # the mapping is unmapped when that last view is collected.
                    pass
        self.release()

    def release(self) -> None:
        return None

    def _view(self, raw: Any, layout: TensorLayout) -> Any:
        typed = raw.view(self.torch_dtype(layout.torch_dtype))
        return typed.view(*layout.shape)


def page_size() -> int:
    return mmap.PAGESIZE


def resident_bytes() -> int:
    """This process's resident set size, in bytes (psutil, or /proc/self/statm on Linux)."""
    try:
        import psutil
    except ImportError:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return int(psutil.Process().memory_info().rss)


def host_available_bytes() -> int:
    """Memory the kernel could give without swapping (``MemAvailable``)."""
    try:
        import psutil
    except ImportError:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # /proc/meminfo reports kB (KiB)
        raise OSError("cannot read MemAvailable from /proc/meminfo") from None
    return int(psutil.virtual_memory().available)


class CpuDevice(Device):
    kind: ClassVar[str] = "cpu"
    counters: ClassVar[tuple[str, ...]] = ("resident",)
    commits_on_write: ClassVar[bool] = True
    _threads: int = 0

    def release(self) -> None:
        if self._threads:
            self.torch.set_num_threads(self._threads)
            self._threads = 0

    def available_bytes(self) -> int:
        return host_available_bytes()

    def budget_bytes(self) -> int:
        # Never more than half of what the host has available: the other half is the margin
        # for the rest of the machine (the rule).
        return self.available_bytes() // 2

    def budget_rule(self) -> str:
        return "half of the host's available memory (MemAvailable)"

    def expected(self, sizes_bytes: list[int]) -> dict[str, int]:
        page = page_size()
        return {"resident": sum(cdiv(n, page) * page for n in sizes_bytes)}

    def prepare(self) -> None:
        # Warm torch's code paths (frombuffer, view, fill_) once, so their first-use allocations
        # do not land between two RSS reads.
        warm = self.allocate(TensorLayout(name="warm-up", shape=(page_size(),), torch_dtype="uint8"))
        self.write(warm)
        self.free_all()
        # One thread: writing is page-fault bound, and waking OpenMP workers for every small tensor
        # costs more than the write (15 ms vs 0.4 ms per 128 KiB tensor on a loaded 2-core host).
        self._threads = int(self.torch.get_num_threads())
        self.torch.set_num_threads(1)

    def snapshot(self) -> dict[str, int]:
        return {"resident": resident_bytes()}

    def tolerance_bytes(self, expected_bytes: int) -> int:
        return max(expected_bytes // 100, 64 * page_size())

    def tolerance_rule(self) -> str:
        return ("1 % (at least 64 pages): each mapping is rounded up to whole pages in the expectation, so "
                "the slack only absorbs the interpreter's own allocations between the two RSS reads")

    def allocate(self, layout: TensorLayout) -> Allocation:
        torch = self.torch
        if hasattr(mmap, "MAP_PRIVATE"):
            mapping = mmap.mmap(-1, layout.nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        else:  # Windows: -1 is an anonymous mapping backed by the paging file
            mapping = mmap.mmap(-1, layout.nbytes)
        raw = torch.frombuffer(mapping, dtype=torch.uint8)
        alloc = Allocation(layout=layout, tensor=self._view(raw, layout), raw=raw, mapping=mapping)
        self.live.append(alloc)
        return alloc


class CudaDevice(Device):
    kind: ClassVar[str] = "cuda"
    counters: ClassVar[tuple[str, ...]] = ("allocated", "reserved")

    def _dev(self) -> Any:
        return self.torch.device(self.name)

    def available_bytes(self) -> int:
        free, _total = self.torch.cuda.mem_get_info(self._dev())
        return int(free)

    def budget_bytes(self) -> int:
        free = self.available_bytes()
        return free - max(free // 20, 512 * MiB)

    def budget_rule(self) -> str:
        return "free device memory (cudaMemGetInfo) minus 5 % (at least 512 MiB) for the CUDA context's growth"

    def expected(self, sizes_bytes: list[int]) -> dict[str, int]:
        model = CachingAllocatorModel()
        for n in sizes_bytes:
            model.malloc(n)
        return {"allocated": model.allocated_bytes, "reserved": model.reserved_bytes}

    def expected_sequence(self, groups: list[list[int]]) -> list[dict[str, int]]:
        # One allocator state across groups: a later group may reuse a remainder of an earlier
        # group's segment.
        model = CachingAllocatorModel()
        out: list[dict[str, int]] = []
        for sizes in groups:
            allocated, reserved = model.allocated_bytes, model.reserved_bytes
            for n in sizes:
                model.malloc(n)
            out.append({"allocated": model.allocated_bytes - allocated, "reserved": model.reserved_bytes - reserved})
        return out

    def snapshot(self) -> dict[str, int]:
        cuda = self.torch.cuda
        cuda.synchronize(self._dev())
        return {"allocated": int(cuda.memory_allocated(self._dev())),
                "reserved": int(cuda.memory_reserved(self._dev()))}

    def tolerance_bytes(self, expected_bytes: int) -> int:
        return 0

    def tolerance_rule(self) -> str:
        return ("exact: the caching allocator's rounding (512 B, 2/20 MiB segments, 2 MiB large rounding, "
                "no split below a 1 MiB remainder) is deterministic on an emptied cache")

    def prepare(self) -> None:
        self.torch.cuda.synchronize(self._dev())
        self.torch.cuda.empty_cache()

    def sync(self) -> None:
        self.torch.cuda.synchronize(self._dev())

    def allocate(self, layout: TensorLayout) -> Allocation:
        torch = self.torch
        raw = torch.empty(layout.nbytes, dtype=torch.uint8, device=self._dev())
        alloc = Allocation(layout=layout, tensor=self._view(raw, layout), raw=raw)
        self.live.append(alloc)
        return alloc

    def release(self) -> None:
        self.torch.cuda.synchronize(self._dev())
        self.torch.cuda.empty_cache()


class MpsDevice(Device):
    kind: ClassVar[str] = "mps"
    counters: ClassVar[tuple[str, ...]] = ("allocated",)

    def available_bytes(self) -> int:
        mps = self.torch.mps
        return int(mps.recommended_max_memory()) - int(mps.driver_allocated_memory())

    def budget_bytes(self) -> int:
        free = self.available_bytes()
        return free - max(free // 10, 512 * MiB)

    def budget_rule(self) -> str:
        return "recommended_max_memory() - driver_allocated_memory() minus 10 % (at least 512 MiB)"

    def expected(self, sizes_bytes: list[int]) -> dict[str, int]:
        return {"allocated": sum(sizes_bytes)}

    def snapshot(self) -> dict[str, int]:
        self.torch.mps.synchronize()
        return {"allocated": int(self.torch.mps.current_allocated_memory())}

    def tolerance_bytes(self, expected_bytes: int) -> int:
        return max(expected_bytes // 100, 16 * MiB)

    def tolerance_rule(self) -> str:
        return ("1 % (at least 16 MiB): the MPS allocator rounds each buffer to its heap granularity, "
                "which kvcalc does not model (not measured by kvcalc's authors)")

    def sync(self) -> None:
        self.torch.mps.synchronize()

    def allocate(self, layout: TensorLayout) -> Allocation:
        torch = self.torch
        raw = torch.empty(layout.nbytes, dtype=torch.uint8, device="mps")
        alloc = Allocation(layout=layout, tensor=self._view(raw, layout), raw=raw)
        self.live.append(alloc)
        return alloc

    def release(self) -> None:
        self.torch.mps.empty_cache()


def open_device(name: str) -> Device:
    """``cpu``, ``cuda``, ``cuda:I`` or ``mps``; torch is imported here."""
    text = name.strip().lower()
    torch = import_torch()
    if text == "cpu":
        return CpuDevice(name="cpu", torch=torch)
    if text == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError(name, "MPS is not available on this machine")
        return MpsDevice(name="mps", torch=torch)
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            # A device problem, not a usage error: exit 1 (README, "One error line").
            raise DeviceError(name, "CUDA is not available on this machine")
        index = parse_count(text.partition(":")[2] or str(torch.cuda.current_device()))
        if index is None:
            raise InvalidRequestError("--device", name, "cpu, cuda, cuda:N or mps")
        if index >= torch.cuda.device_count():
            raise DeviceError(name, f"this machine has cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
        return CudaDevice(name=f"cuda:{index}", torch=torch)
    raise InvalidRequestError("--device", name, "cpu, cuda, cuda:N or mps")
