"""kvcalc's model of PyTorch's CUDA caching allocator, against the worked examples of the
reference §6.1 (c10/cuda/CUDACachingAllocator.cpp: round_size, get_allocation_size, should_split)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kvcalc.measure.allocator import (
    CachingAllocatorModel,
    predict_cuda,
    round_size,
    segment_size,
    should_split,
)
from kvcalc.units import GiB, KiB, MiB


def test_torch_empty_one_element_is_512_allocated_2mib_reserved() -> None:
    # torch.empty(1, device="cuda") (4 B of float32): rounded to kMinBlockSize 512 B, small pool, a 2 MiB
    # kSmallBuffer segment, split (remainder 2 MiB - 512 B >= 512 B).
    assert predict_cuda([4]) == (512, 2 * MiB)
    assert predict_cuda([1]) == (512, 2_097_152)


def test_11_5_mib_is_not_split_so_12_mib_allocated() -> None:
    # 11.5 MiB >= kMinLargeAlloc 10 MiB -> segment ceil to 2 MiB = 12 MiB; the 0.5 MiB remainder is not
    # > kSmallSize 1 MiB, so the whole 12 MiB block is handed out.
    n = 11 * MiB + 512 * KiB
    assert segment_size(round_size(n)) == 12 * MiB
    assert not should_split(12 * MiB, n)
    assert predict_cuda([n]) == (12 * MiB, 12 * MiB)


def test_50_gib_rounds_up_to_2_mib() -> None:
    # 50 GiB is a multiple of 2 MiB: one segment of exactly 50 GiB; 50 GiB + 1 B -> 50 GiB + 2 MiB,
    # remainder 2 MiB - 512 B > 1 MiB, so it is split: allocated 50 GiB + 512 B.
    assert predict_cuda([50 * GiB]) == (50 * GiB, 50 * GiB)
    assert predict_cuda([50 * GiB + 1]) == (50 * GiB + 512, 50 * GiB + 2 * MiB)


def test_mid_size_requests_share_a_20_mib_segment() -> None:
    # 1 MiB < 5 MiB < 10 MiB -> one 20 MiB kLargeBuffer segment; remainder 15 MiB > 1 MiB: split;
    # the second 5 MiB is served from the remainder (10 MiB left), no new segment.
    model = CachingAllocatorModel()
    assert model.malloc(5 * MiB) == 5 * MiB
    assert model.malloc(5 * MiB) == 5 * MiB
    assert (model.allocated_bytes, model.reserved_bytes) == (10 * MiB, 20 * MiB)
    # 9.5 MiB does not fit the 10 MiB remainder with a > 1 MiB split, so it takes the whole 10 MiB block.
    assert model.malloc(9 * MiB + 512 * KiB) == 10 * MiB
    assert (model.allocated_bytes, model.reserved_bytes) == (20 * MiB, 20 * MiB)


def test_round_size_boundaries() -> None:
    assert [round_size(n) for n in (0, 1, 511, 512, 513, 1024)] == [512, 512, 512, 512, 1024, 1024]
    assert segment_size(MiB) == 2 * MiB  # 1 MiB is still the small pool (<= kSmallSize)
    assert segment_size(MiB + 512) == 20 * MiB
    assert segment_size(10 * MiB - 512) == 20 * MiB
    assert segment_size(10 * MiB) == 10 * MiB


@given(st.lists(st.integers(min_value=1, max_value=64 * MiB), min_size=1, max_size=30))
def test_counters_are_consistent(sizes: list[int]) -> None:
    model = CachingAllocatorModel()
    for n in sizes:
        block = model.malloc(n)
        assert block >= round_size(n) >= n
        assert block % 512 == 0
    assert model.requested_bytes == sum(sizes)
    assert model.requested_bytes <= model.allocated_bytes <= model.reserved_bytes
    assert model.reserved_bytes % (2 * MiB) == 0
