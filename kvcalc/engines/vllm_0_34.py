"""vLLM 0.34.0 (the newest release on PyPI when read, 2026-12): the engine of ``vllm`` and
``vllm@0.34``, a subclass of 0.33 overriding only what changed (``vllm_releases.Vllm034``,
``docs/engines.md`` §1):

* ``CacheConfig.DEFAULT_BLOCK_SIZE`` is 64 (``config/cache.py:185``), which every CUDA attention
  backend read accepts, MLA ones included; hybrid attention + Mamba models align to it;
* the extensible KV cache is on by default on CUDA (``config/vllm.py:3253``), so
  ``gpu_memory_utilization`` defaults to 1.0 (``config/cache.py:495-501``) and the cache is sized
  after warmup from measured memory, keeping ``max(1 GiB, 0.75 x activation peak)`` free as a
  margin besides the peak itself (``v1/worker/extensible_kv_cache.py:64-65``, ``:592-617``).

The margin's base, read in full (0.34.0): ``measure_kv_cache_bytes`` takes ``transient_peak_bytes
= kv_cache.reserved_headroom_bytes`` (``extensible_kv_cache.py:641-649``), which
``initialize_kv_cache`` sets to ``peak_activation_memory`` (``v1/worker/gpu_worker.py:946-948``),
itself ``transient_peak_headroom + cudagraph_memory_estimate`` (``:771-773``); warmup only raises it
(``:270-277``). So the margin is ``max(1 GiB, 0.75 x (activation peak + CUDA-graph estimate))``, and
that sum is exactly kvcalc's activation row (``VllmEngine.profile_terms``): kvcalc applies what
0.34.0 uses. Two things 0.34.0 also does are not modelled, both making kvcalc's figure higher than
vLLM's: the graphs captured before the sizing stay resident and are counted again in
``non_kv_used`` (capture at ``gpu_worker.py:1101-1103``, sizing at ``:1229-1238``,
``extensible_kv_cache.py:613-617``), and the headroom starts from ``init_free_memory``, not the
device total (the CUDA context and other processes' memory at start-up are outside it).
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar

from kvcalc.engines.vllm_0_33 import Vllm033Engine
from kvcalc.engines.vllm_releases import Vllm020, Vllm034
from kvcalc.units import GiB

if TYPE_CHECKING:
    from kvcalc.engines.memory import Budget

MARGIN_FLOOR_BYTES = GiB
"""``KV_CACHE_MARGIN_FLOOR_BYTES`` on CUDA (``extensible_kv_cache.py:64``)."""
MARGIN_FRACTION = Decimal("0.75")
"""``KV_CACHE_MARGIN_FRACTION`` (``extensible_kv_cache.py:65``)."""


class Vllm034Engine(Vllm033Engine):
    rules: ClassVar[Vllm020] = Vllm034()
    version = Vllm034.title
    served_release = "vLLM 0.34.0"
    """The architecture table read from this release (``kvcalc.engines.served``)."""
    source = (
        "vLLM 0.34.0 wheel: 0.33's rules with block 64 (config/cache.py:185) and the extensible KV cache "
        "(gpu_memory_utilization 1.0, sized after warmup with a max(1 GiB, 0.75 x peak) margin); docs/engines.md"
    )
    default_fraction = "1.0"
    refuses_when_free_below_request = False
    """0.34.0 ``v1/worker/utils.py:783-786``: the start-up check is skipped with the extensible KV cache
    ("the budget is only a cap; exceeding free memory over-reserves address space rather than pages");
    the cache is then sized from the memory measured after warmup, so ``--gpu auto`` plans it from
    the free memory."""

    def fraction_budget(self, frac: Decimal, total_bytes: int, weights: int, activation: int,
                        non_torch: int) -> Budget:
        """``measure_kv_cache_bytes``: ``min(requested - used, free + committed - margin) - peak``.
        With the whole device requested, the margin binds: KV = total - margin - weights - non-torch
        - activation; a lower utilization caps it as before."""
        budget = super().fraction_budget(frac, total_bytes, weights, activation, non_torch)
        margin = max(MARGIN_FLOOR_BYTES, int(activation * MARGIN_FRACTION))
        capped = total_bytes - margin - weights - activation - non_torch
        if budget.kv_budget_bytes <= capped:
            return budget
        return dataclasses.replace(
            budget, kv_budget_bytes=capped, reserve_bytes=budget.kv_budget_bytes - capped,
            reserve_label="margin vLLM 0.34 keeps free (extensible KV cache: max(1 GiB, 0.75 x activation))",
            formula=(f"min(ceil({total_bytes:,} x {frac}), {total_bytes:,} - margin max(1 GiB, 0.75 x activation) "
                     f"{margin:,}) - weights {weights:,} - activation {activation:,} - non-torch {non_torch:,} "
                     f"= {capped:,} B (extensible KV cache, sized after warmup)"))


ENGINE = Vllm034Engine()
