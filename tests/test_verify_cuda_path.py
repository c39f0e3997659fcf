"""The CUDA path of verify, exercised on CPU CI with a stand-in for ``torch.cuda`` (no GPU here).

The stand-in only records what the code asks for through torch's documented API
(``mem_get_info``, ``memory_allocated``, ``memory_reserved``, ``synchronize``, ``empty_cache``,
``torch.empty(..., device=...)``); its counters are deliberately naive (they grow by the exact
request), so this checks the wiring and the verdict, not the allocator model (tests/test_allocator.py
does that against the reference's worked examples). Real CUDA numbers need a GPU run.
"""

from __future__ import annotations

from typing import Any

import pytest

from kvcalc.errors import DoesNotFitError
from kvcalc.registry import get_builtin
from kvcalc.units import GiB, MiB

torch = pytest.importorskip("torch")

from kvcalc.measure import device as device_mod  # noqa: E402
from kvcalc.measure.verify import verify  # noqa: E402


class _FakeCuda:
    def __init__(self, free_bytes: int) -> None:
        self.free_bytes = free_bytes
        self.allocated = 0
        self.calls: list[str] = []

    def is_available(self) -> bool:
        return True

    def current_device(self) -> int:
        return 0

    def device_count(self) -> int:
        return 1

    def mem_get_info(self, device: Any) -> tuple[int, int]:
        self.calls.append("mem_get_info")
        return self.free_bytes, 80 * GiB

    def synchronize(self, device: Any = None) -> None:
        self.calls.append("synchronize")

    def empty_cache(self) -> None:
        self.calls.append("empty_cache")

    def memory_allocated(self, device: Any) -> int:
        return self.allocated

    def memory_reserved(self, device: Any) -> int:
        return self.allocated  # naive: no segments


class _FakeTorch:
    def __init__(self, cuda: _FakeCuda) -> None:
        self.cuda = cuda

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    def device(self, name: str) -> str:
        return name

    def empty(self, n: int, *, dtype: Any, device: str) -> Any:
        assert device == "cuda:0"
        self.cuda.allocated += n
        return torch.empty(n, dtype=dtype)


def test_cuda_counters_are_read_and_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = _FakeCuda(free_bytes=70 * GiB)
    monkeypatch.setattr(device_mod, "import_torch", lambda: _FakeTorch(cuda))
    # Llama-2-7B, 64 tokens: 64 tensors of 64 x 32 x 128 x 2 B = 524,288 B (a multiple of 512, small pool).
    # kvcalc's allocator model: allocated 64 x 524,288 = 33,554,432 B; reserved: 2 MiB small segments hold
    # 4 such blocks each -> 16 segments = 32 MiB = 33,554,432 B too.
    r = verify(get_builtin("llama-2-7b"), 64, device="cuda")
    assert r.device == "cuda:0" and r.counter == "allocated"
    assert r.expected_counters == {"allocated": 33_554_432, "reserved": 33_554_432}
    assert r.measured_counters == {"allocated": 33_554_432, "reserved": 33_554_432}
    assert r.ok and r.tolerance_bytes == 0
    assert "empty_cache" in cuda.calls and "mem_get_info" in cuda.calls


def test_cuda_reserved_mismatch_fails_the_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = _FakeCuda(free_bytes=70 * GiB)
    monkeypatch.setattr(device_mod, "import_torch", lambda: _FakeTorch(cuda))
    # 1000 tokens: tensors of 1000 x 32 x 128 x 2 = 8,192,000 B (7.8 MiB, between 1 and 10 MiB): the
    # allocator serves them from 20 MiB segments, two per segment (8,192,000 x 2 = 16,384,000; the
    # 4,587,520 B remainder is > 1 MiB, so each is split). reserved: 64 / 2 = 32 segments x 20 MiB.
    r = verify(get_builtin("llama-2-7b"), 1000, device="cuda")
    assert r.expected_counters == {"allocated": 64 * 8_192_000, "reserved": 32 * 20 * MiB}
    assert not r.ok  # the naive stand-in's reserved (= allocated) is not what the allocator would reserve
    assert r.kinds[0].verdict.startswith("FAIL: reserved grew by 524,288,000 B, expected 671,088,640 B")


def test_cuda_budget_refuses_before_allocating(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = _FakeCuda(free_bytes=1 * GiB)
    monkeypatch.setattr(device_mod, "import_torch", lambda: _FakeTorch(cuda))
    # One Llama-3-70B layer at 8192 x 8 is 268,435,456 B (two 128 MiB tensors, 2 MiB multiples: segments
    # of exactly their size); budget 1 GiB - max(5 %, 512 MiB) = 512 MiB: 2 layers fit exactly, 3 do not,
    # so the 80-layer cache is sampled automatically at 2 layers. At 65,536 x 8 one layer is 2 GiB: refused.
    r = verify(get_builtin("llama-3-70b"), 8192, 8, device="cuda")
    assert r.sampled and r.sampled_layers == 2 and r.budget_bytes == 512 * MiB
    cuda.allocated = 0
    with pytest.raises(DoesNotFitError, match="nothing was allocated"):
        verify(get_builtin("llama-3-70b"), 65536, 8, device="cuda")
    assert cuda.allocated == 0
