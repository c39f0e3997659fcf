"""``plan``: will this model, at this context, serve this many users on these GPUs?

The budget comes from ``--kv-budget`` (per GPU, as vLLM logs it per worker) or from an engine
memory model over a GPU (``kvcalc.planner.budget``). For vLLM the blocks, log lines, fit check
and largest max model length are vLLM's own arithmetic (``kvcalc.planner.vllm_kv``, V1 @
001cabc1); for the other engines capacity is bytes over kvcalc's estimate of one request. A plan
that does not fit is an answer (``fits: false``), never an error.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from kvcalc.dtypes import cdiv, resolve_dtype
from kvcalc.errors import InvalidRequestError, UnknownNameError
from kvcalc.models import ModelConfig
from kvcalc.planner import budget as budget_mod
from kvcalc.planner.gpus import Gpu, is_auto, parse_gpu_spec, plan_on_local_gpus
from kvcalc.planner.roofline import Roofline, decode_roofline
from kvcalc.planner.sglang_pool import SGLANG_POOL_VERSION, sglang_pool
from kvcalc.planner.solvers import Capacity, TpOption, smallest_tp
from kvcalc.planner.vllm_kv import (
    DEFAULT_MAX_NUM_BATCHED_TOKENS,
    Layout,
    VllmKV,
    build_layout,
    reserved_bytes_per_request,
    vllm_kv,
)
from kvcalc.planner.weights import WeightsEstimate, checkpoint_weights
from kvcalc.specs import LatentAttention
from kvcalc.units import GiB, MiB, format_bytes

ENGINES = budget_mod.BUDGET_ENGINES
DEFAULT_MAX_NUM_SEQS = 256
"""``max_num_seqs`` when no GPU is named (``--kv-budget`` alone); with a GPU, vLLM's own default."""
TP_CANDIDATES = (1, 2, 4, 8, 16, 32, 64)
_POLICY_ENGINE = {"vllm": "vllm", "sglang": "sglang", "trtllm": "neutral", "llama.cpp": "llama.cpp", "hf": "hf"}


@dataclass(frozen=True, kw_only=True)
class PlanRequest:
    model: ModelConfig
    engine: str = "vllm"
    max_model_len: int | None = None
    """Context per request (``--max-model-len`` / ``--context``); the model's max by default."""
    kv_dtype: str = "auto"
    weight_dtype: str = "auto"
    gpu: str | None = None
    gpu_memory_bytes: int | None = None
    kv_budget_bytes: int | None = None
    tp: int | None = None
    pp: int = 1
    block_size: int | None = None
    max_num_batched_tokens: int | None = None
    """vLLM's; None: what ``vllm serve`` picks for the GPU (``vllm_batch_defaults``)."""
    max_num_seqs: int | None = None
    fraction: str | None = None
    """gpu_memory_utilization / mem_fraction_static / free_gpu_memory_fraction, as written."""
    activation_bytes: int | None = None
    non_torch_bytes: int | None = None
    users: int | None = None
    batch: int | None = None
    shared_prefix_tokens: int = 0
    weights_path: str | None = None
    solve_tp: bool = True
    """Search TP degrees for ``--users`` (off in the benchmark's inner loop)."""


@dataclass(frozen=True, kw_only=True)
class Plan:
    """The answer. The first eight fields are the ``--json`` contract (stable keys)."""

    fits: bool
    """The engine would start: the budget is positive and one request of max_model_len fits."""
    kv_budget_bytes: int
    num_blocks: int | None
    """vLLM: its block count, null block included; TRT-LLM: 32-token blocks; else None."""
    kv_cache_tokens: int | None
    """vLLM: as 001cabc1 logs it; SGLang: max_total_num_tokens; others: tokens that fit."""
    max_concurrency: float
    """Requests of max_model_len the pool holds, unrounded (vLLM's ``X.XXx`` before formatting)."""
    estimated_max_model_len: int | None
    """When one request does not fit: the largest max_model_len that does (vLLM's search)."""
    weights_bytes: int | None
    """All weights, every GPU together; None when the parameter count is unknown."""
    per_gpu_bytes: int
    """KV bytes the workload (users, else batch, else one request) takes on the largest rank."""
    model: str
    engine: str
    engine_version: str
    gpu: str | None
    gpu_count: int
    tp: int
    pp: int
    replicas: int
    kv_dtype: str
    weight_dtype: str
    max_model_len: int
    max_num_batched_tokens: int
    max_num_seqs: int | None
    block_size: int | None
    parameters: int | None
    parameters_source: str
    weights_per_gpu_bytes: int | None
    budget: dict[str, Any]
    max_sequences: int
    """Requests of max_model_len that can be resident at once (vLLM: usable blocks, null excluded)."""
    batch: int
    longest_context_at_batch: int
    users: int | None = None
    users_fit: bool | None = None
    """The ``--users`` verdict: all users at max_model_len resident at once, on all replicas."""
    binding_constraint: str = ""
    headroom_bytes: int | None = None
    headroom_units: int | None = None
    capacity_unit: str = "bytes"
    min_tp_for_users: int | None = None
    min_gpus_for_users: int | None = None
    tp_options: list[dict[str, int]] = field(default_factory=list)
    shared_prefix_tokens: int = 0
    shared_prefix_saving_bytes: int = 0
    max_sequences_without_prefix_sharing: int | None = None
    reason: str | None = None
    hints: list[str] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)
    vllm: dict[str, Any] | None = None
    roofline: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    weights_source: str = ""
    """Which source sized the weights (``kvcalc.planner.weights.checkpoint_weights``)."""
    weights_breakdown: dict[str, int] = field(default_factory=dict)
    """Weight bytes per storage kind (fp8, scales, unquantized bf16, ggml types ...)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class _Deployment:
    gpu: Gpu | None
    gpu_name: str | None
    total_bytes: int | None
    count: int
    tp: int
    replicas: int


def _deployment(req: PlanRequest) -> _Deployment:
    gpu: Gpu | None = None
    count: int | None = None
    if req.gpu is not None:
        gpu, count = parse_gpu_spec(req.gpu)
    if req.gpu_memory_bytes is not None and req.gpu_memory_bytes <= 0:
        raise InvalidRequestError("--gpu-memory", req.gpu_memory_bytes, "a positive size such as 24GiB")
    total = req.gpu_memory_bytes if req.gpu_memory_bytes is not None else (gpu.usable_bytes if gpu else None)
    if total is None and req.kv_budget_bytes is None:
        raise InvalidRequestError("--gpu", "", "a GPU (--gpu h100:4), --gpu-memory SIZE, or --kv-budget SIZE")
    pp = req.pp
    tp = req.tp
    if tp is None:
        tp = (count // pp) if count and count % pp == 0 else 1
    if count is None:
        count = tp * pp
    if count % (tp * pp):
        raise InvalidRequestError("--gpu", req.gpu, f"a GPU count that is a multiple of tp x pp = {tp * pp}")
    name = gpu.name if gpu else ("custom" if req.gpu_memory_bytes is not None else None)
    return _Deployment(gpu=gpu, gpu_name=name, total_bytes=total, count=count, tp=tp, replicas=count // (tp * pp))


def _weights(req: PlanRequest, engine: str) -> WeightsEstimate:
    """The weights from the best source there is (``kvcalc.planner.weights.checkpoint_weights``:
    --weights, --weight-dtype, a GGUF tensor table, quantization_config, the model dtype). ``auto``
    is the dtype the engine runs the model in: vLLM, SGLang and TensorRT-LLM run a float32 config
    in 16 bits (the same rule as the cache's auto dtype); llama.cpp and transformers as the config says."""
    compute: str = req.model.dtype
    if engine in ("vllm", "sglang", "trtllm"):
        compute = _auto_kv_dtype(engine, req.model, "auto")
    return checkpoint_weights(req.model, req.weight_dtype, compute, req.weights_path)


def vllm_batch_defaults(gpu_total_bytes: int | None, gpu_name: str, max_model_len: int,
                        max_num_batched_tokens: int | None = None, max_num_seqs: int | None = None,
                        ) -> tuple[int, int, str]:
    """(max_num_batched_tokens, max_num_seqs, where they came from) as ``vllm serve`` sets them.

    vLLM ``EngineArgs.get_batch_defaults`` / ``_set_default_max_num_seqs_and_batched_tokens_args``
    (vllm/engine/arg_utils.py, the tree of 001cabc1): usage context OPENAI_API_SERVER; a GPU whose
    NVML total is >= 70 GiB and whose name has no "a100" gets 8192 tokens and 1024 sequences,
    any other 2048 and 256; then, for defaulted values, ``tokens = min(seqs x max_model_len,
    tokens)`` and ``seqs = min(seqs, tokens)`` (chunked prefill is on in V1). With no GPU named
    (``--kv-budget`` alone) kvcalc uses 8192 and 256.
    """
    if gpu_total_bytes is None:
        tokens, seqs, why = DEFAULT_MAX_NUM_BATCHED_TOKENS, DEFAULT_MAX_NUM_SEQS, "kvcalc's default (no GPU named)"
    elif gpu_total_bytes >= 70 * GiB and "a100" not in gpu_name.lower():
        tokens, seqs, why = 8192, 1024, "vllm serve's default for a GPU of 70 GiB or more (not A100)"
    else:
        tokens, seqs, why = 2048, 256, "vllm serve's default for this GPU (under 70 GiB, or an A100)"
    if max_num_batched_tokens is None:
        tokens = min((max_num_seqs or seqs) * max_model_len, tokens)
    else:
        tokens = max_num_batched_tokens
    if max_num_seqs is None:
        seqs = min(seqs, tokens)
    else:
        seqs = max_num_seqs
    if max_num_batched_tokens is not None and max_num_seqs is not None:
        why = "given"
    return tokens, seqs, why


def _auto_kv_dtype(engine: str, model: ModelConfig, kv_dtype: str) -> str:
    """``--kv-dtype auto`` as ``engine`` reads it: the engine policy's rule (vLLM and SGLang downcast
    float32 models, llama.cpp defaults to f16); TensorRT-LLM sizes 2 bytes unless fp8
    (``get_cache_size_per_token``), so a float32 model's cache is fp16 there."""
    from kvcalc.dtypes import canonical_dtype_name
    from kvcalc.engines import get_policy

    if not isinstance(kv_dtype, str) or canonical_dtype_name(kv_dtype) != "auto":
        return kv_dtype
    if engine == "trtllm":
        return "fp16" if model.dtype == "fp32" else model.dtype
    return get_policy(_POLICY_ENGINE[engine]).auto_dtype(model)[0]


def _policy_name(engine: str) -> str:
    from kvcalc.engines import get_policy

    name = _POLICY_ENGINE[engine]
    try:
        get_policy(name)
    except UnknownNameError:
        return "neutral"
    return name


def plan(req: PlanRequest) -> Plan:  # noqa: C901 - one linear pipeline, commented by step
    from kvcalc.estimate import check_int, estimate

    if is_auto(req.gpu):  # --gpu auto: the local GPUs as read (kvcalc.planner.gpus)
        return plan_on_local_gpus(req, plan)
    engine = req.engine.strip().lower()
    engine = {"trt-llm": "trtllm", "tensorrt-llm": "trtllm", "llama_cpp": "llama.cpp", "llamacpp": "llama.cpp",
              "transformers": "hf"}.get(engine, engine)
    if engine not in ENGINES:
        raise UnknownNameError("engine", req.engine, ENGINES)
    model = req.model
    max_len = req.max_model_len if req.max_model_len is not None else model.max_position_embeddings
    check_int("max_model_len", max_len, maximum=10**9)
    check_int("pp", req.pp, maximum=4096)
    if req.tp is not None:
        check_int("tp", req.tp, maximum=4096)
    if req.users is not None:
        check_int("users", req.users, maximum=10**9)
    if req.shared_prefix_tokens < 0 or req.shared_prefix_tokens > max_len:
        raise InvalidRequestError("--shared-prefix-tokens", req.shared_prefix_tokens, f"0 to max_model_len ({max_len})")
    dep = _deployment(req)
    tp, pp = dep.tp, req.pp
    # The GPU's total as the driver reports it (NVML, nvidia-smi): vLLM's batch defaults and
    # SGLang's default memory fraction are sized from it, not from mem_get_info.
    driver_bytes: int | None = None  # --kv-budget alone: no GPU to ask
    if req.gpu_memory_bytes is not None:
        driver_bytes = req.gpu_memory_bytes
    elif dep.gpu is not None:
        driver_bytes = dep.gpu.memory_bytes
    # vLLM's batch limits (they size sliding-window reservations and cap running requests).
    gpu_label = f"{dep.gpu.name} {dep.gpu.title}" if dep.gpu is not None else ""
    mnbt, max_seqs_cap, batch_why = vllm_batch_defaults(
        driver_bytes, gpu_label, max_len, req.max_num_batched_tokens, req.max_num_seqs)
    req = dataclasses.replace(req, max_num_batched_tokens=mnbt, max_num_seqs=max_seqs_cap)
    kv_name = _auto_kv_dtype(engine, model, req.kv_dtype)
    dtype = resolve_dtype(kv_name, model.dtype)
    w = _weights(req, engine)
    weights, params, params_source, wname = w.bytes, w.parameters, w.parameters_source, w.dtype
    weights_per_gpu = cdiv(weights, tp * pp) if weights is not None else None
    warnings: list[str] = []
    notes: list[str] = [] if weights is None else [
        f"weights {format_bytes(weights)} ({weights:,} B) from {w.source}"
        + ("; " + ", ".join(f"{k} {format_bytes(v)}" for k, v in w.breakdown.items()) if w.breakdown else "")]
    if engine == "vllm" and batch_why != "given":
        notes.append(f"max_num_batched_tokens {mnbt:,}, max_num_seqs {max_seqs_cap:,}: {batch_why} "
                     "(EngineArgs.get_batch_defaults); pass --max-num-batched-tokens / --max-num-seqs to change")
    if max_len > model.max_position_embeddings:
        warnings.append(
            f"max_model_len {max_len:,} exceeds {model.name}'s max_position_embeddings "
            f"({model.max_position_embeddings:,}); vLLM refuses this unless overridden"
        )

    # 1. The KV budget of one GPU.
    if req.kv_budget_bytes is not None:
        bud = budget_mod.given_budget(engine, req.kv_budget_bytes, weights_per_gpu)
    else:
        assert dep.total_bytes is not None
        if weights_per_gpu is None:
            raise InvalidRequestError(
                "--weights", model.name, "a parameter count for the memory model: the config lacks one "
                "(give --weights PATH to safetensors, or --kv-budget SIZE)",
            )
        default_fraction: str | None = None
        if engine == "sglang" and req.fraction is None:
            assert driver_bytes is not None  # a memory model needs a GPU (checked by _deployment)
            default_fraction, how = budget_mod.sglang_default_fraction(
                driver_bytes // MiB, tp=tp, pp=pp, mla=any(isinstance(s, LatentAttention) for s in model.layer_specs),
                model_name=f"{model.name} {model.source.hf_repo or ''}")
            notes.append(f"--mem-fraction-static not given: {how}")
        bud = budget_mod.engine_budget(
            engine, dep.total_bytes, weights_per_gpu, fraction=req.fraction, default_fraction=default_fraction,
            activation_bytes=req.activation_bytes if req.activation_bytes is not None
            else budget_mod.DEFAULT_ACTIVATION_BYTES,
            non_torch_bytes=req.non_torch_bytes if req.non_torch_bytes is not None
            else budget_mod.DEFAULT_NON_TORCH_BYTES,
        )
        if req.activation_bytes is None or req.non_torch_bytes is None:
            notes.append(
                "activation peak and non-torch memory are kvcalc's assumed defaults (1.50 GiB and 0.50 GiB); "
                "take the real figures from the engine log (kvcalc check-log) and pass --activation-memory / "
                "--non-torch-memory"
            )
    kv_budget = bud.kv_budget_bytes
    prefix = req.shared_prefix_tokens

    # 2. The engine's pool and the cost of one request.
    vk: VllmKV | None = None
    policy = _policy_name(engine)
    engine_version = ""
    log_lines: list[str] = []
    num_blocks: int | None = None
    kv_tokens: int | None = None
    estimated: int | None = None
    reason: str | None = None
    cap: Capacity
    layout: Layout | None = None
    if engine == "vllm":
        from kvcalc.engines import get_policy

        layout = build_layout(model.layer_specs, dtype, tp=tp, pp=pp, block_size=req.block_size,
                              state_dtype=get_policy("vllm").state_dtype(dtype, model))
        vk = vllm_kv(
            model.layer_specs, dtype, kv_budget, max_len, tp=tp, pp=pp, block_size=req.block_size,
            max_num_batched_tokens=mnbt, layout=layout,
        )
        engine_version = vk.version
        log_lines = list(vk.log_lines)
        num_blocks, kv_tokens = vk.num_blocks, vk.kv_cache_tokens
        estimated, reason = vk.estimated_max_model_len, vk.error
        fits = vk.fits
        concurrency = vk.max_concurrency
        cap = _vllm_capacity(req, layout, vk, model.max_position_embeddings)
        block_size: int | None = vk.block_size
    else:
        from kvcalc.engines import get_policy

        engine_version = get_policy(policy).version or policy
        if policy != _POLICY_ENGINE[engine]:
            notes.append(f"the {engine} storage policy is not installed; KV per request uses the {policy} policy")

        def cost(length: int) -> int:
            return estimate(model, length, 1, kv_name, engine=policy, tp=tp, pp=pp,
                            block_size=req.block_size).per_gpu_bytes

        shared = cost if engine == "sglang" else (lambda _p: 0)
        if prefix and engine != "sglang":
            notes.append(f"{engine}: no cross-request prefix sharing modelled; --shared-prefix-tokens ignored")
        cap = Capacity(unit="bytes", available=kv_budget, cost=cost, shared=shared,
                       max_len=max(model.max_position_embeddings, max_len))
        block_size = req.block_size
        per_token = _neutral_rank_bytes(model, dtype, tp, pp, 1)
        kv_tokens = max(kv_budget, 0) // per_token if per_token else 0
        pool_error: str | None = None
        if engine == "trtllm":
            num_blocks = kv_tokens // 32
        if engine == "sglang":
            pool = sglang_pool(model, dtype, kv_budget, tp=tp, pp=pp, page_size=req.block_size or 1)
            kv_tokens = pool.max_total_num_tokens
            page = req.block_size or 1
            if pool.hybrid_swa:
                # Split pools: a request holds its whole length in the full-layer pool (the one
                # SGLang reports); the SWA pool, 0.8 of it, holds only the window.
                cap = Capacity(unit="tokens", available=kv_tokens, cost=lambda n: -(-n // page) * page,
                               shared=lambda n: n // page * page, max_len=max(model.max_position_embeddings, max_len))
                notes.append(f"SGLang hybrid sliding-window pool ({SGLANG_POOL_VERSION}, architecture "
                             f"{model.architecture}): {pool.cell}; full-layer pool {kv_tokens:,} tokens, SWA pool "
                             f"{pool.swa_tokens:,} tokens (swa_full_tokens_ratio 0.8)")
                log_lines = list(pool.log_lines)
                pool_error = pool.error
            else:
                log_lines = pool.log_lines + _sglang_log(model, dtype, tp, kv_tokens)
        one = cap.cost_of(max_len)
        fits = kv_budget > 0 and one <= cap.available and pool_error is None
        concurrency = cap.available / one if kv_budget > 0 and one and pool_error is None else 0.0
        if pool_error is not None:
            reason = pool_error
        elif kv_budget <= 0:
            reason = _no_memory_reason(engine, bud)
        elif not fits:
            estimated = cap.longest_context(1)
            need = f"{one:,} tokens of its {cap.available:,}-token pool" if cap.unit == "tokens" else (
                f"{format_bytes(one)} of KV per GPU, more than the {format_bytes(kv_budget)} available")
            reason = (f"one request of {max_len:,} tokens needs {need}; the largest context that fits "
                      f"is {estimated:,}")
        if kv_budget <= 0 and engine != "vllm":
            fits = False

    # 3. Solvers.
    max_seqs = cap.max_sequences(max_len, prefix) if fits else 0
    batch = req.batch or req.users or 1
    longest = cap.longest_context(batch, prefix)
    workload = req.users or req.batch or 1
    if layout is not None:
        per_gpu = workload * reserved_bytes_per_request(layout, max_len, mnbt)
    else:
        per_gpu = estimate(model, max_len, workload, kv_name, engine=policy, tp=tp, pp=pp,
                           block_size=block_size, max_num_batched_tokens=mnbt).per_gpu_bytes
    # Bytes per capacity unit: a vLLM block; a byte; a token of SGLang's full-layer pool (its share
    # of the budget, floored: headroom and savings in bytes are then never overstated).
    unit_bytes = vk.block_bytes if vk is not None else (
        max(kv_budget, 0) // cap.available if cap.unit == "tokens" and cap.available > 0 else 1)
    users_fit: bool | None = None
    headroom_units: int | None = None
    binding = _binding(fits, kv_budget, weights_per_gpu)
    hints: list[str] = []
    saving = 0
    no_share: int | None = None
    if prefix:
        no_share = cap.max_sequences(max_len) if fits else 0
        n = max(max_seqs, 1)
        saving = (cap.units_for(n, max_len) - cap.units_for(n, max_len, prefix)) * unit_bytes
    if req.users is not None:
        total_seqs = max_seqs * dep.replicas
        users_fit = fits and total_seqs >= req.users
        per_replica = cdiv(req.users, dep.replicas)
        headroom_units = cap.available - cap.units_for(per_replica, max_len, prefix) if fits else None
        if fits:
            if not users_fit:
                binding = "KV cache: too few blocks/bytes for all users at max_model_len"
            elif engine == "vllm" and per_replica > max_seqs_cap:
                users_fit = False
                binding = f"--max-num-seqs {max_seqs_cap}: vLLM runs at most that many requests per replica"
            else:
                binding = "none: every user fits"
    elif fits:
        binding = "KV cache (max concurrent requests at max_model_len)"
        headroom_units = cap.available - cap.units_for(max(max_seqs, 1), max_len, prefix)
    headroom_bytes = headroom_units * unit_bytes if headroom_units is not None else None

    # 4. The smallest TP / GPU count for --users.
    min_tp = min_gpus = None
    tp_options: list[dict[str, int]] = []
    if req.users is not None and req.solve_tp:
        options = _tp_options(req, dep, max_len)
        tp_options = [dataclasses.asdict(o) for o in options]
        one_rep, fewest = smallest_tp(options, req.users)
        min_tp = one_rep.tp if one_rep else None
        min_gpus = fewest.gpus if fewest else None

    if not fits or users_fit is False:
        hints = _hints(engine, bud, fits, estimated, longest, batch, max_seqs, req, min_tp, min_gpus)

    # 5. Roofline (needs a catalogued GPU's bandwidth).
    roof: Roofline | None = None
    if dep.gpu is not None and weights_per_gpu is not None and fits:
        rb = req.users or req.batch or max(min(max_seqs, max_seqs_cap), 1)
        rb = max(1, min(rb, max(max_seqs, 1)))
        kv_seq = _neutral_rank_bytes(model, dtype, tp, pp, max_len)
        active = _active_params(model, params)
        flops = dep.gpu.fp8_flops if wname.startswith("fp8") and dep.gpu.fp8_flops else dep.gpu.dense_flops
        roof = decode_roofline(
            batch=rb, weights_per_gpu=weights_per_gpu,
            kv_per_sequence_per_gpu=kv_seq,
            active_params_per_gpu=cdiv(active, tp * pp) if active else None,
            bandwidth_bytes_per_s=dep.gpu.bandwidth_bytes_per_s, dense_flops=flops,
        )
    if (dep.gpu is not None and dep.gpu.usable_is_estimated and req.gpu_memory_bytes is None
            and req.kv_budget_bytes is None):
        notes.append(f"{dep.gpu.name}: usable memory is an estimate ({dep.gpu.usable_source}); pass --gpu-memory")

    return Plan(
        fits=fits,
        kv_budget_bytes=kv_budget,
        num_blocks=num_blocks,
        kv_cache_tokens=kv_tokens,
        max_concurrency=concurrency,
        estimated_max_model_len=estimated,
        weights_bytes=weights,
        per_gpu_bytes=per_gpu,
        model=model.name,
        engine=engine,
        engine_version=engine_version,
        gpu=dep.gpu_name,
        gpu_count=dep.count,
        tp=tp,
        pp=pp,
        replicas=dep.replicas,
        kv_dtype=dtype.name,
        weight_dtype=wname,
        max_model_len=max_len,
        max_num_batched_tokens=mnbt,
        max_num_seqs=max_seqs_cap if engine == "vllm" else None,
        block_size=block_size,
        parameters=params,
        parameters_source=params_source,
        weights_per_gpu_bytes=weights_per_gpu,
        budget=bud.to_dict(),
        max_sequences=max_seqs,
        batch=batch,
        longest_context_at_batch=longest,
        users=req.users,
        users_fit=users_fit,
        binding_constraint=binding,
        headroom_bytes=headroom_bytes,
        headroom_units=headroom_units,
        capacity_unit=cap.unit,
        min_tp_for_users=min_tp,
        min_gpus_for_users=min_gpus,
        tp_options=tp_options,
        shared_prefix_tokens=prefix,
        shared_prefix_saving_bytes=saving,
        max_sequences_without_prefix_sharing=no_share,
        reason=reason,
        hints=hints,
        log_lines=log_lines,
        vllm=vk.to_dict() if vk is not None else None,
        roofline=roof.to_dict() if roof is not None else None,
        notes=notes,
        warnings=warnings,
        weights_source=w.source,
        weights_breakdown=dict(w.breakdown),
    )


def _neutral_rank_bytes(model: ModelConfig, dtype: Any, tp: int, pp: int, length: int) -> int:
    """Engine-neutral KV of one sequence on the largest rank (kvcalc's definition; what a decode
    step reads): per layer ``tokens_held x bytes_per_token + state``."""
    from kvcalc.estimate import pp_partition

    per_spec: dict[Any, int] = {}
    best = start = 0
    for size in pp_partition(model.num_layers, pp):
        total = 0
        for s in model.layer_specs[start:start + size]:
            b = per_spec.get(s)
            if b is None:
                r = s.shard(tp)
                b = per_spec[s] = r.tokens_held(length) * r.bytes_per_token(dtype) + r.fixed_bytes(dtype)
            total += b
        best = max(best, total)
        start += size
    return best


def _vllm_capacity(req: PlanRequest, layout: Layout | None, vk: VllmKV, model_max: int) -> Capacity:
    """Blocks: usable = num_blocks - 1 (null block); a request costs vLLM's blocks per request;
    a shared prefix shares the full blocks of full-attention/MLA groups (vLLM prefix caching
    hashes whole blocks only)."""
    assert layout is not None
    workers = layout.active
    mnbt = req.max_num_batched_tokens
    assert mnbt is not None  # resolved by plan()

    def cost(length: int) -> int:
        return max(w.blocks_per_request(length, mnbt) for w in workers)

    def shared(p: int) -> int:
        return max(sum(p // g.spec.block_size for g in w.groups if g.spec.kind in ("full", "mla")) for w in workers)

    return Capacity(unit="blocks", available=max(vk.num_blocks - 1, 0), cost=cost, shared=shared,
                    max_len=max(model_max, vk.max_model_len))


def _tp_options(req: PlanRequest, dep: _Deployment, max_len: int) -> list[TpOption]:
    heads = req.model.num_attention_heads
    out: list[TpOption] = []
    assert req.users is not None
    for tp in TP_CANDIDATES:
        if heads % tp:
            continue
        gpu = None if req.gpu is None else req.gpu.split(":")[0] + f":{tp * req.pp}"
        sub = dataclasses.replace(req, tp=tp, gpu=gpu, users=None, solve_tp=False, batch=None)
        try:
            p = plan(sub)
        except InvalidRequestError:
            continue
        seqs = p.max_sequences if p.engine != "vllm" else min(p.max_sequences, p.max_num_seqs or p.max_sequences)
        replicas = cdiv(req.users, seqs) if seqs else 0
        out.append(TpOption(tp=tp, max_sequences=seqs, replicas_needed=replicas, gpus=replicas * tp * req.pp))
        if seqs >= req.users and len(out) > 1 and out[-2].max_sequences >= req.users:
            break
    return out


def _active_params(model: ModelConfig, params: int | None) -> int | None:
    """Parameters touched per token: all, or for MoE the non-expert part plus k experts."""
    if params is None:
        return None
    moe = model.moe
    if moe is None:
        return params
    e_inter = moe.moe_intermediate_size or model.intermediate_size or 0
    moe_layers = model.num_layers - moe.first_dense_layers
    idle = (moe.num_experts - moe.experts_per_token) * 3 * model.hidden_size * e_inter * moe_layers
    return max(params - idle, 0)


def _binding(fits: bool, kv_budget: int, weights_per_gpu: int | None) -> str:
    if kv_budget <= 0:
        return "memory: nothing left for the KV cache after weights and overheads"
    if not fits:
        return "KV cache: one request of max_model_len does not fit"
    return ""


def _no_memory_reason(engine: str, bud: budget_mod.Budget) -> str:
    if engine == "sglang":
        return "Not enough memory. Please try to increase --mem-fraction-static."
    return (
        f"no memory for the KV cache: the budget is {format_bytes(bud.kv_budget_bytes)} "
        f"({bud.formula})"
    )


def _sglang_log(model: ModelConfig, dtype: Any, tp: int, tokens: int) -> list[str]:
    """SGLang's ``KV Cache is allocated. #tokens: N, K size: x GB, V size: y GB`` ("GB" = GiB),
    K/V over ``tokens + page`` slots (one dummy page)."""
    from kvcalc.specs import FullAttention, LatentAttention

    k = v = 0
    for s in model.layer_specs:
        r = s.shard(tp)
        if isinstance(r, LatentAttention):
            k += r.bytes_per_token(dtype)
        elif isinstance(r, FullAttention):
            k += dtype.row_bytes(r.num_kv_heads * r.head_dim)
            v += dtype.row_bytes(r.num_kv_heads * r.v_dim)
    slots = tokens + 1
    if v == 0:
        return [f"KV Cache is allocated. #tokens: {tokens}, KV size: {slots * k / GiB:.2f} GB"]
    return [f"KV Cache is allocated. #tokens: {tokens}, K size: {slots * k / GiB:.2f} GB, "
            f"V size: {slots * v / GiB:.2f} GB"]


def _hints(engine: str, bud: budget_mod.Budget, fits: bool, estimated: int | None, longest: int, batch: int,
           max_seqs: int, req: PlanRequest, min_tp: int | None, min_gpus: int | None) -> list[str]:
    out: list[str] = []
    flag = bud.fraction_flag
    tp_hints = []
    if min_tp is not None:
        tp_hints.append(f"--tp {min_tp} serves all users in one replica")
    if min_gpus is not None:
        tp_hints.append(f"fewest GPUs for all users: {min_gpus} (TP x data-parallel replicas)")
    if bud.kv_budget_bytes <= 0:
        if flag:
            out.append(f"raise {flag} (now {bud.fraction}), or use more GPUs (--tp), or a smaller --weight-dtype")
        else:
            out.append("use more GPUs (--tp), a smaller --weight-dtype, or a GPU with more memory")
        return out + tp_hints
    if not fits and estimated:
        out.append(f"lower --max-model-len to {estimated:,} (the largest that fits), or raise the budget")
    if fits and req.users is not None and max_seqs < req.users:
        out.append(f"at --max-model-len {req.max_model_len or ''} one replica holds {max_seqs:,} requests; "
                   f"the longest context for {batch:,} at once is {longest:,} tokens")
    out.extend(tp_hints)
    if engine != "vllm" or req.kv_dtype in ("auto", "bf16", "fp16", "fp32"):
        out.append("--kv-dtype fp8 halves the KV cache")
    return out
