"""Engine memory models: how much of a GPU each engine gives its KV cache.

All sizes are per GPU (per worker), integers; fractions are applied with ``Decimal`` and the
rounding each engine uses.

* ``vllm`` (``Worker.init_device`` / ``determine_available_memory``, vllm/v1/worker/gpu_worker.py;
  ``request_memory`` in vllm/v1/worker/utils.py rounds up):
  ``KV = ceil(total x gpu_memory_utilization) - weights - activation peak - non-torch``.
  ``total`` is ``torch.cuda.mem_get_info`` total (the catalog's usable figure). Default
  utilization 0.92 (``CacheConfig.gpu_memory_utilization`` in vllm/config/cache.py @ 002f10e0 and
  docs.vllm.ai ``vllm serve --gpu-memory-utilization``: "If unspecified, will use the default
  value of 0.92"; it was 0.9 up to ~v0.10).
* ``sglang`` (``ModelRunner.profile_max_num_token``): ``rest = free_after_load - free_before_load x
  (1 - mem_fraction_static)``; with ``free_before_load = total - non-torch`` and ``free_after_load =
  free_before_load - weights`` this is ``free_before_load x mfs - weights``. Default
  ``mem_fraction_static`` 0.88 (SGLang's value when the GPU size is unknown; the real default is
  computed from GPU memory and CUDA-graph settings, so pass ``--mem-fraction-static`` to match a
  deployment).
* ``trtllm`` (``KvCacheCreator``, tensorrt_llm/_torch/pyexecutor/_util.py): ``(total - peak) x
  free_gpu_memory_fraction``, fraction 0.9 (``KvCacheConfig`` default), peak = weights +
  activation + non-torch.
* ``llama.cpp`` and ``hf``: no fraction: ``total - weights - activation - non-torch``.

The activation peak and non-torch memory are kvcalc assumptions (defaults below), named in the
output and overridable (``--activation-memory``, ``--non-torch-memory``); the defaults are the
figures of the kvcalc reference §8.2 worked example. Real values come from the engine's own
start-up log (``kvcalc check-log``).
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
DEFAULT_FRACTIONS: dict[str, str] = {
    "vllm": "0.92",
    "sglang": "0.88",
    "trtllm": "0.9",
}
FRACTION_FLAGS: dict[str, str] = {
    "vllm": "--gpu-memory-utilization",
    "sglang": "--mem-fraction-static",
    "trtllm": "--free-gpu-memory-fraction",
}
BUDGET_ENGINES = ("vllm", "sglang", "trtllm", "llama.cpp", "hf")


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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def given_budget(engine: str, kv_budget_bytes: int, weights_per_gpu: int | None) -> Budget:
    return Budget(
        engine=engine, total_bytes=None, fraction=None, fraction_flag=None, requested_bytes=None,
        weights_bytes=weights_per_gpu, activation_bytes=None, non_torch_bytes=None,
        kv_budget_bytes=kv_budget_bytes, source="--kv-budget",
        formula=f"KV budget given: {kv_budget_bytes:,} B per GPU (memory model skipped)",
    )


def engine_budget(
    engine: str,
    total_bytes: int,
    weights_per_gpu: int,
    *,
    fraction: str | None = None,
    activation_bytes: int = DEFAULT_ACTIVATION_BYTES,
    non_torch_bytes: int = DEFAULT_NON_TORCH_BYTES,
) -> Budget:
    """The KV budget of one GPU of ``total_bytes`` under ``engine``'s memory model (may be <= 0)."""
    if engine not in BUDGET_ENGINES:
        raise InvalidRequestError("--engine", engine, ", ".join(BUDGET_ENGINES))
    flag = FRACTION_FLAGS.get(engine)
    frac_text = fraction if fraction is not None else DEFAULT_FRACTIONS.get(engine)
    frac = parse_fraction(frac_text, flag or "fraction") if frac_text is not None else None
    requested: int | None = None
    if engine == "vllm":
        assert frac is not None
        requested = mul_ceil(total_bytes, frac)
        kv = requested - weights_per_gpu - activation_bytes - non_torch_bytes
        formula = (
            f"ceil({total_bytes:,} x {frac}) = {requested:,} - weights {weights_per_gpu:,} - activation "
            f"{activation_bytes:,} - non-torch {non_torch_bytes:,} = {kv:,} B"
        )
    elif engine == "sglang":
        assert frac is not None
        free_before = total_bytes - non_torch_bytes
        requested = mul_floor(free_before, frac)
        kv = requested - weights_per_gpu
        activation_bytes = 0
        formula = (
            f"({total_bytes:,} - non-torch {non_torch_bytes:,}) x {frac} = {requested:,} - weights "
            f"{weights_per_gpu:,} = {kv:,} B"
        )
    elif engine == "trtllm":
        assert frac is not None
        free = total_bytes - weights_per_gpu - activation_bytes - non_torch_bytes
        kv = mul_floor(free, frac) if free > 0 else free
        formula = (
            f"({total_bytes:,} - weights {weights_per_gpu:,} - activation {activation_bytes:,} - non-torch "
            f"{non_torch_bytes:,}) x {frac} = {kv:,} B"
        )
    else:
        kv = total_bytes - weights_per_gpu - activation_bytes - non_torch_bytes
        formula = (
            f"{total_bytes:,} - weights {weights_per_gpu:,} - activation {activation_bytes:,} - non-torch "
            f"{non_torch_bytes:,} = {kv:,} B"
        )
    return Budget(
        engine=engine, total_bytes=total_bytes, fraction=str(frac) if frac is not None else None,
        fraction_flag=flag, requested_bytes=requested, weights_bytes=weights_per_gpu,
        activation_bytes=activation_bytes, non_torch_bytes=non_torch_bytes, kv_budget_bytes=kv,
        source=f"{engine} memory model", formula=formula,
    )
