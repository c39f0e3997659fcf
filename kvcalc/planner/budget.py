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
  turned on the subtraction of a CUDA-graph memory estimate (``VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS``);
  kvcalc has no model of that estimate, so it belongs in ``--activation-memory``. The block rules in
  vllm_kv.py follow commit 001cabc1 (= 0.19.x and 0.20.0), from just before #38284 where the
  default was still 0.9 with no CUDA-graph term: pass ``--gpu-memory-utilization 0.9`` to
  reproduce 0.19.x exactly.
* ``sglang`` (``ModelRunner.profile_max_num_token``): ``rest = free_after_load - free_before_load x
  (1 - mem_fraction_static)``; with ``free_before_load = total - non-torch`` and ``free_after_load =
  free_before_load - weights`` this is ``free_before_load x mfs - weights``. The default
  ``mem_fraction_static`` is SGLang 0.5.23's own heuristic (``sglang_default_fraction`` below),
  computed from the GPU's nvidia-smi total, TP x PP and the model.
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
    "trtllm": "0.9",
}
"""Fixed defaults; SGLang's depends on the GPU and the deployment (``sglang_default_fraction``)."""
SGLANG_DEFAULTS_VERSION = "SGLang 0.5.23 arg_groups/memory_hook.py handle_gpu_memory_settings"
FRACTION_FLAGS: dict[str, str] = {
    "vllm": "--gpu-memory-utilization",
    "sglang": "--mem-fraction-static",
    "trtllm": "--free-gpu-memory-fraction",
}
BUDGET_ENGINES = ("vllm", "sglang", "trtllm", "llama.cpp", "hf")


def _sglang_prefill_graph_sizes(max_bs: int) -> int:
    """``len(generate_prefill_cuda_graph_batch_sizes(max_bs))`` (SGLang 0.5.23
    arg_groups/cuda_graph_hook.py): 4..32 step 4, 48..256 step 16, 288..512 step 32, 576..1024
    step 64, 1280..4096 step 256, 4608..max_bs step 512, all <= max_bs."""
    sizes = [*range(4, 33, 4), *range(48, 257, 16), *range(288, 513, 32), *range(576, 1025, 64),
             *range(1280, 4097, 256), *range(4608, max_bs + 1, 512)]
    return sum(1 for s in sizes if s <= max_bs)


def sglang_default_fraction(gpu_mem_mib: int, *, tp: int = 1, pp: int = 1, mla: bool = False,
                            model_name: str = "") -> tuple[str, str]:
    """SGLang's ``mem_fraction_static`` when none is given, and how it was reached.

    SGLang 0.5.23 ``handle_gpu_memory_settings`` (arg_groups/memory_hook.py), for a text-only
    model on CUDA with the defaults (no speculative decoding, DP attention, DeepEP or PD
    disaggregation): ``gpu_mem`` is nvidia-smi's ``memory.total`` in MiB (the smallest GPU);
    its bucket picks ``chunked_prefill_size`` and the decode CUDA-graph ``max_bs``; then
    ``reserved = 512 + max(chunk, 2048) x 1.5 + tp x pp / 8 x 1024 + graphs`` MiB, at least
    10 GiB on GPUs over 60 GiB, and ``round((gpu_mem - reserved) / gpu_mem, 3)``. Graphs: decode
    ``max_bs x 2``; the breakable prefill graph (on by default on CUDA, off by default with
    PP > 1) ``len(prefill sizes) x 8``, or 1.5 GiB for an MLA model; its max_bs is the chunk
    (MLA: at most 8192; a model path containing "llama-2": at most 4096). Floats and Python's
    ``round`` as SGLang computes them: this is SGLang's number, not a byte count.
    """
    g = gpu_mem_mib
    buckets = ((20 * 1024, 2048, 8, 8), (35 * 1024, 4096, 48, 160), (60 * 1024, 4096, 32, 160),
               (90 * 1024, 8192, 256, 512), (160 * 1024, 8192, 256, 512))
    chunk, max_bs = 16384, 512  # B200, MI300 and larger
    for limit, c, bs_small, bs_large in buckets:
        if g < limit:
            chunk, max_bs = c, (bs_small if tp < 4 else bs_large)
            break
    graphs = max_bs * 2.0
    prefill = "off (pp > 1)"
    if pp == 1:
        if mla:
            graphs += 1.5 * 1024
            prefill = "MLA 1536"
        else:
            prefill_bs = min(chunk, 4096) if "llama-2" in model_name.lower() else chunk
            n = _sglang_prefill_graph_sizes(prefill_bs)
            graphs += n * 8
            prefill = f"{n} sizes x 8"
    reserved = 512 + max(chunk, 2048) * 1.5 + tp * pp / 8 * 1024 + graphs
    floor = ""
    if g > 60 * 1024 and reserved < 10 * 1024:
        reserved, floor = 10 * 1024.0, ", floored at 10,240"
    frac = round((g - reserved) / g, 3)
    text = f"{frac:.3f}".rstrip("0").rstrip(".")
    how = (f"{SGLANG_DEFAULTS_VERSION}: gpu_mem {g:,} MiB -> chunked_prefill_size {chunk}, decode max_bs "
           f"{max_bs}; reserved = 512 + {max(chunk, 2048)} x 1.5 + {tp} x {pp} / 8 x 1024 + decode graph "
           f"{max_bs} x 2 + prefill graph {prefill} = {reserved:,.0f} MiB{floor}; "
           f"round(({g:,} - {reserved:,.0f}) / {g:,}, 3) = {text}")
    return text, how


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
    default_fraction: str | None = None,
) -> Budget:
    """The KV budget of one GPU of ``total_bytes`` under ``engine``'s memory model (may be <= 0).
    ``default_fraction`` replaces the engine's fixed default when ``fraction`` is not given (the
    planner passes SGLang's computed one)."""
    if engine not in BUDGET_ENGINES:
        raise InvalidRequestError("--engine", engine, ", ".join(BUDGET_ENGINES))
    flag = FRACTION_FLAGS.get(engine)
    if engine == "sglang" and fraction is None and default_fraction is None:
        default_fraction = sglang_default_fraction(total_bytes // MiB)[0]
    frac_text = fraction if fraction is not None else (default_fraction or DEFAULT_FRACTIONS.get(engine))
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
