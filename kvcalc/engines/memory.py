"""Engine memory models: how much of a GPU each engine gives its KV cache.

All sizes are per GPU (per worker), integers; fractions are applied with ``Decimal`` and the
rounding each engine uses.

* ``vllm`` (``Worker.init_device`` / ``determine_available_memory``, vllm/v1/worker/gpu_worker.py;
  ``request_memory`` in vllm/v1/worker/utils.py rounds up):
  ``KV = ceil(total x gpu_memory_utilization) - weights - activation peak - non-torch``.
  ``total`` is ``torch.cuda.mem_get_info`` total (the catalog's usable figure). Default
  utilization 0.92, current vLLM's (``CacheConfig.gpu_memory_utilization`` in vllm/config/cache.py
  @ 002f10e0; docs.vllm.ai ``vllm serve``: "If unspecified, will use the default value of 0.92").
  It became 0.92 in vLLM PR #38284 (April 2026, first released in 0.20.0), which at the same time
  turned on the subtraction of a CUDA-graph memory estimate (``VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS``
  defaults to "1" from 0.20.0, ``envs.py:1724-1726``; "0" in 0.19.0 and 0.19.1, ``envs.py:1654-1655``,
  where ``gpu_worker.py:395-420`` measures it but applies it only when set). kvcalc models that
  estimate (``activation.vllm_cudagraph``) as a term of the activation row for ``vllm@0.20`` and
  later; ``vllm@0.19`` (``vllm_0_19.py``) has neither the term nor the 0.92 default (0.9). The block
  rules in vllm_kv.py follow commit 001cabc1 (= 0.19.x and 0.20.0).
* ``sglang`` (``ModelRunner.profile_max_num_token``): ``rest = free_after_load - free_before_load x
  (1 - mem_fraction_static)``; with ``free_before_load = total - non-torch`` and ``free_after_load =
  free_before_load - weights`` this is ``free_before_load x mfs - weights``. The default
  ``mem_fraction_static`` is SGLang 0.5.23's own heuristic (``sglang_default_fraction`` below),
  computed from the GPU's nvidia-smi total, TP x PP and the model.
* ``trtllm`` (``KvCacheCreator``, tensorrt_llm/_torch/pyexecutor/_util.py): ``(total - peak) x
  free_gpu_memory_fraction``, fraction 0.9 (``KvCacheConfig`` default), peak = weights +
  activation + non-torch.
* ``llama.cpp`` and ``hf``: no fraction: ``total - weights - activation - non-torch``.

For vLLM the activation peak and non-torch memory are modelled (``activation.py``: best by
default, low/high bounds in ``plan``'s ``*_low`` / ``*_high`` keys); for the other engines they are
kvcalc assumptions (defaults below, the figures of the kvcalc reference §8.2 worked example). Both
are named in the output and overridable (``--activation-memory``, ``--non-torch-memory``); real
values come from the engine's own start-up log (``kvcalc check-log``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

from kvcalc.errors import InvalidRequestError
from kvcalc.units import MiB

DEFAULT_ACTIVATION_BYTES = 1536 * MiB
"""Assumed PyTorch activation peak of the profiling run: 1.5 GiB (reference §8.2)."""
DEFAULT_NON_TORCH_BYTES = 512 * MiB
"""Assumed non-torch memory (CUDA context growth, NCCL, cuBLAS workspaces): 0.5 GiB (§8.2)."""


def parse_fraction(value: str | float | Decimal, flag: str) -> Decimal:
    """A fraction in (0, 1], exactly as written (``0.92`` stays 0.92, not a binary float)."""
    try:
        frac = Decimal(str(value))
    except InvalidOperation:
        raise InvalidRequestError(flag, value, "a fraction between 0 and 1, e.g. 0.9") from None
    if not frac.is_finite() or not Decimal(0) < frac <= Decimal(1):
        raise InvalidRequestError(flag, value, "a fraction between 0 and 1, e.g. 0.9")
    return frac


def mul_ceil(n: int, frac: Decimal) -> int:
    return int((Decimal(n) * frac).to_integral_value(rounding=ROUND_CEILING))


def mul_floor(n: int, frac: Decimal) -> int:
    return int((Decimal(n) * frac).to_integral_value(rounding=ROUND_FLOOR))


@dataclass(frozen=True, kw_only=True)
class Budget:
    """What one GPU gives the KV cache, and how the figure was reached."""

    engine: str
    total_bytes: int | None
    """The total the engine starts from (``mem_get_info`` total); None with ``--kv-budget``."""
    fraction: str | None
    fraction_flag: str | None
    requested_bytes: int | None
    weights_bytes: int | None
    """This GPU's share of the weights."""
    activation_bytes: int | None
    non_torch_bytes: int | None
    kv_budget_bytes: int
    source: str
    formula: str
    order: tuple[str, ...] = ("fraction", "weights", "activation", "non_torch")
    """The order the engine applies the terms in (so a table of them adds up)."""
    reserve_bytes: int | None = None
    """Memory the engine keeps free besides those terms (vLLM 0.34's extensible-cache margin),
    subtracted last; None when it keeps none."""
    reserve_label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["order"] = list(self.order)  # JSON has lists, not tuples
        return data


def given_budget(engine: str, kv_budget_bytes: int, weights_per_gpu: int | None) -> Budget:
    """``--kv-budget``: the memory model is skipped."""
    return Budget(
        engine=engine, total_bytes=None, fraction=None, fraction_flag=None, requested_bytes=None,
        weights_bytes=weights_per_gpu, activation_bytes=None, non_torch_bytes=None,
        kv_budget_bytes=kv_budget_bytes, source="--kv-budget",
        formula=f"KV budget given: {kv_budget_bytes:,} B per GPU (memory model skipped)",
    )


def fraction_of_total(engine: str, flag: str, frac: Decimal, total_bytes: int, weights: int, activation: int,
                      non_torch: int) -> Budget:
    """vLLM: ``ceil(total x fraction) - weights - activation - non-torch``."""
    requested = mul_ceil(total_bytes, frac)
    kv = requested - weights - activation - non_torch
    formula = (f"ceil({total_bytes:,} x {frac}) = {requested:,} - weights {weights:,} - activation "
               f"{activation:,} - non-torch {non_torch:,} = {kv:,} B")
    return Budget(engine=engine, total_bytes=total_bytes, fraction=str(frac), fraction_flag=flag,
                  requested_bytes=requested, weights_bytes=weights, activation_bytes=activation,
                  non_torch_bytes=non_torch, kv_budget_bytes=kv, source=f"{engine} memory model", formula=formula)


def fraction_of_free_before_load(engine: str, flag: str, frac: Decimal, total_bytes: int, weights: int,
                                 non_torch: int) -> Budget:
    """SGLang: ``floor((total - non-torch) x fraction) - weights`` (no activation term)."""
    free_before = total_bytes - non_torch
    requested = mul_floor(free_before, frac)
    kv = requested - weights
    formula = (f"({total_bytes:,} - non-torch {non_torch:,}) x {frac} = {requested:,} - weights "
               f"{weights:,} = {kv:,} B")
    return Budget(engine=engine, total_bytes=total_bytes, fraction=str(frac), fraction_flag=flag,
                  requested_bytes=requested, weights_bytes=weights, activation_bytes=0, non_torch_bytes=non_torch,
                  kv_budget_bytes=kv, source=f"{engine} memory model", formula=formula,
                  order=("non_torch", "fraction", "weights"))


def fraction_of_free_after_profile(engine: str, flag: str, frac: Decimal, total_bytes: int, weights: int,
                                   activation: int, non_torch: int) -> Budget:
    """TensorRT-LLM: ``floor((total - weights - activation - non-torch) x fraction)``."""
    free = total_bytes - weights - activation - non_torch
    kv = mul_floor(free, frac) if free > 0 else free
    formula = (f"({total_bytes:,} - weights {weights:,} - activation {activation:,} - non-torch "
               f"{non_torch:,}) x {frac} = {kv:,} B")
    return Budget(engine=engine, total_bytes=total_bytes, fraction=str(frac), fraction_flag=flag,
                  requested_bytes=None, weights_bytes=weights, activation_bytes=activation,
                  non_torch_bytes=non_torch, kv_budget_bytes=kv, source=f"{engine} memory model", formula=formula,
                  order=("weights", "activation", "non_torch", "fraction"))


def whole_remainder(engine: str, total_bytes: int, weights: int, activation: int, non_torch: int) -> Budget:
    """No fraction (llama.cpp, transformers): ``total - weights - activation - non-torch``."""
    kv = total_bytes - weights - activation - non_torch
    formula = (f"{total_bytes:,} - weights {weights:,} - activation {activation:,} - non-torch "
               f"{non_torch:,} = {kv:,} B")
    return Budget(engine=engine, total_bytes=total_bytes, fraction=None, fraction_flag=None, requested_bytes=None,
                  weights_bytes=weights, activation_bytes=activation, non_torch_bytes=non_torch, kv_budget_bytes=kv,
                  source=f"{engine} memory model", formula=formula, order=("weights", "activation", "non_torch"))
