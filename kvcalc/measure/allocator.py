"""kvcalc's model of PyTorch's CUDA caching allocator (pure Python, no torch).

Source: pytorch/pytorch ``c10/cuda/CUDACachingAllocator.cpp`` (``round_size``,
``get_allocation_size``, ``should_split``; constants now in ``c10/core/AllocatorConfig.h``),
as summarised in the kvcalc reference §6.1:

* a request is rounded up to a multiple of 512 B (``kMinBlockSize``), at least 512 B;
* rounded sizes up to 1 MiB (``kSmallSize``) go to the small pool, larger ones to the large pool;
* a new segment (``cudaMalloc``) is 2 MiB (``kSmallBuffer``) for small requests, 20 MiB
  (``kLargeBuffer``) for requests below 10 MiB (``kMinLargeAlloc``), else the request rounded up
  to a multiple of 2 MiB (``kRoundLarge``);
* a free block is split when the remainder is >= 512 B (small pool) or > 1 MiB (large pool);
  an unsplit block is handed out whole, so ``memory_allocated()`` grows by the block's size.

Defaults only: no ``PYTORCH_CUDA_ALLOC_CONF`` (no ``roundup_power2_divisions``, no
``max_split_size_mb``, no expandable segments). The model starts from an empty cache
(``torch.cuda.empty_cache()`` before measuring) and serves requests best-fit from free blocks
of the right pool, as ``get_free_block`` does (``pool.blocks.lower_bound(search_key)``: the smallest
free block that is large enough). Read in ``DeviceCachingAllocator`` (``round_size``,
``get_allocation_size``, ``should_split``: ``remaining >= kMinBlockSize`` for the small pool,
``size < max_split_size() && remaining > kSmallSize`` for the large one; ``max_split_size`` is
unlimited by default).
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable
from dataclasses import dataclass, field

from kvcalc.dtypes import cdiv
from kvcalc.units import MiB

MIN_BLOCK_BYTES = 512
"""``kMinBlockSize``: every request is rounded up to a multiple of this."""
SMALL_SIZE_BYTES = 1 * MiB
"""``kSmallSize``: largest request served from the small pool."""
SMALL_BUFFER_BYTES = 2 * MiB
"""``kSmallBuffer``: segment size for small-pool requests."""
LARGE_BUFFER_BYTES = 20 * MiB
"""``kLargeBuffer``: segment size for requests between 1 MiB and 10 MiB."""
MIN_LARGE_ALLOC_BYTES = 10 * MiB
"""``kMinLargeAlloc``: from this size on a request gets its own segment rounded to 2 MiB."""
ROUND_LARGE_BYTES = 2 * MiB
"""``kRoundLarge``: rounding of large segments."""


def round_size(n_bytes: int) -> int:
    """``round_size``: up to a multiple of 512 B, at least 512 B (``torch.empty(0)`` aside)."""
    if n_bytes < MIN_BLOCK_BYTES:
        return MIN_BLOCK_BYTES
    return cdiv(n_bytes, MIN_BLOCK_BYTES) * MIN_BLOCK_BYTES


def is_small(rounded_bytes: int) -> bool:
    return rounded_bytes <= SMALL_SIZE_BYTES


def segment_size(rounded_bytes: int) -> int:
    """``get_allocation_size``: the ``cudaMalloc`` a request triggers when no cached block fits."""
    if rounded_bytes <= SMALL_SIZE_BYTES:
        return SMALL_BUFFER_BYTES
    if rounded_bytes < MIN_LARGE_ALLOC_BYTES:
        return LARGE_BUFFER_BYTES
    return cdiv(rounded_bytes, ROUND_LARGE_BYTES) * ROUND_LARGE_BYTES


def should_split(block_bytes: int, rounded_bytes: int) -> bool:
    """``should_split``: small pool at a >= 512 B remainder, large pool only above 1 MiB."""
    remaining = block_bytes - rounded_bytes
    if is_small(rounded_bytes):
        return remaining >= MIN_BLOCK_BYTES
    return remaining > SMALL_SIZE_BYTES


@dataclass
class CachingAllocatorModel:
    """Replays a sequence of allocations (never frees) and tracks both counters."""

    allocated_bytes: int = 0
    """What ``torch.cuda.memory_allocated()`` would report (block sizes handed out)."""
    reserved_bytes: int = 0
    """What ``torch.cuda.memory_reserved()`` would report (segments obtained)."""
    requested_bytes: int = 0
    """The raw request sizes (``requested_bytes.all.current``)."""
    _free_small: list[int] = field(default_factory=list)
    _free_large: list[int] = field(default_factory=list)

    def malloc(self, n_bytes: int) -> int:
        """Serve one request; return the block size it occupies (the ``allocated`` increase)."""
        if n_bytes == 0:
            return 0  # torch.empty(0) allocates nothing
        size = round_size(n_bytes)
        pool = self._free_small if is_small(size) else self._free_large
        block = next((b for b in pool if b >= size), None)  # pool is sorted: best fit
        if block is None:
            block = segment_size(size)
            self.reserved_bytes += block
        else:
            pool.remove(block)
        if should_split(block, size):
            insort(pool, block - size)
            block = size
        self.allocated_bytes += block
        self.requested_bytes += n_bytes
        return block


def predict_cuda(sizes_bytes: Iterable[int]) -> tuple[int, int]:
    """(allocated, reserved) bytes after allocating ``sizes_bytes`` in order on an empty cache.

    >>> predict_cuda([1])
    (512, 2097152)
    """
    model = CachingAllocatorModel()
    for n in sizes_bytes:
        model.malloc(n)
    return model.allocated_bytes, model.reserved_bytes
