"""``plan``: will this model, at this context, serve this many users on these GPUs?

A short pipeline over typed results, each step a function a test can call:

1. ``resolve``: the engine (from the registry), the deployment, the engine's batch defaults, the
   KV dtype (``Engine.resolve_kv_dtype``) and the rank layout (``RankLayout``: stages, sharding);
2. ``weights_of``: the weights and their dtype (``Engine.compute_dtype``);
3. ``budget_of``: ``--kv-budget``, or the engine's memory model (``Engine.budget``);
4. ``Engine.pool``: blocks / tokens, concurrency, the fit check, the longest context, log lines;
5. ``answer``: requests resident at once, the workload's bytes, ``--users`` / ``--batch``, headroom;
6. ``tp_search``, ``hints_of``, ``roofline_of``.

Nothing here tests an engine's name: every engine-specific rule is a method of its ``Engine``.
A plan that does not fit is an answer (``fits: false``, exit 0), never an error.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kvcalc.dtypes import KVDtype, cdiv
from kvcalc.engines import canonical_engine, get_engine, planner_engines
from kvcalc.engines.base import DeviceBudget, DeviceUse, Engine, Pool, PoolRequest, Workload
from kvcalc.engines.capacity import TpOption, smallest_tp
from kvcalc.engines.memory import DEFAULT_ACTIVATION_BYTES, DEFAULT_NON_TORCH_BYTES, Budget, given_budget
from kvcalc.errors import InvalidRequestError, UnknownNameError
from kvcalc.layout import RankLayout
from kvcalc.models import ModelConfig
from kvcalc.planner.gpus import Gpu, is_auto, parse_gpu_spec, plan_on_local_gpus
from kvcalc.units import format_bytes

if TYPE_CHECKING:
    from kvcalc.engines.activation import Term
    from kvcalc.engines.speculative import Draft
    from kvcalc.planner.roofline import Roofline

TP_CANDIDATES = (1, 2, 4, 8, 16, 32, 64)


def vllm_batch_defaults(gpu_total_bytes: int | None, gpu_name: str, max_model_len: int,
                        max_num_batched_tokens: int | None = None, max_num_seqs: int | None = None,
                        ) -> tuple[int, int | None, str]:
    """vLLM's ``max_num_batched_tokens`` / ``max_num_seqs`` defaults (``VllmEngine.batch_defaults``)."""
    return get_engine("vllm").batch_defaults(gpu_total_bytes, gpu_name, max_model_len, max_num_batched_tokens,
                                             max_num_seqs)


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
    """vLLM's; None: what ``vllm serve`` picks for the GPU (``Engine.batch_defaults``)."""
    max_num_seqs: int | None = None
    fraction: str | None = None
    """The engine's memory fraction (``Engine.fraction_flag``), as written."""
    activation_bytes: int | None = None
    non_torch_bytes: int | None = None
    users: int | None = None
    batch: int | None = None
    shared_prefix_tokens: int = 0
    weights_path: str | None = None
    solve_tp: bool = True
    """Search TP degrees for ``--users`` (off in the benchmark's inner loop)."""
    dp_attention: int = 1
    """SGLang ``--enable-dp-attention --dp N``: N attention-DP ranks in each TP group, each holding
    the cache of its own requests (``Engine.dp_attention_flag``)."""
    dcp: int = 1
    """vLLM ``--decode-context-parallel-size``: each of the TP group's requests is split over dcp ranks."""
    data_parallel: int = 1
    """vLLM ``--data-parallel-size``: DP ranks, each a TP x PP engine with its own KV pool; a MoE
    model's routed experts are split over DP x TP ranks (``weights.rank_weight_bytes``)."""
    expert_parallel: bool = False
    """vLLM ``--enable-expert-parallel``: whole experts per rank (EP size DP x TP)."""
    model_impl: str = "auto"
    """``--model-impl``: ``transformers`` plans an architecture the engine has no own code for."""
    speculative_config: str | None = None
    """vLLM ``--speculative-config`` JSON (``kvcalc.engines.speculative``)."""
    speculative_algorithm: str | None = None
    """SGLang ``--speculative-algorithm`` (EAGLE, EAGLE3, NEXTN, NGRAM)."""
    speculative_num_draft_tokens: int | None = None
    draft_layers: int | None = None
    """Draft decoder layers sharing the pool (default 1: an EAGLE head, ``num_nextn_predict_layers: 1``)."""
    draft_model: ModelConfig | None = None
    """A separate draft model (vLLM ``method: draft_model``, SGLang ``STANDALONE``)."""
    num_speculative_tokens: int | None = None
    """With ``--draft-model`` alone: vLLM's ``num_speculative_tokens``."""
    max_tokens: int | None = None
    """TensorRT-LLM ``--max-tokens`` (``KvCacheConfig.max_tokens``)."""
    host_cache_bytes: int = 0
    """TensorRT-LLM ``--host-cache-size`` (``KvCacheConfig.host_cache_size``)."""
    n_gpu_layers: int = -1
    tensor_split: tuple[float, ...] = ()
    parallel: int = 1
    kv_unified: bool = False
    no_kv_offload: bool = False
    split_mode: str = "layer"
    flash_attn: str = "auto"
    """llama.cpp's ``-ngl``, ``--tensor-split``, ``-np``, ``--kv-unified``, ``--no-kv-offload``, ``-sm``, ``-fa``."""


@dataclass(frozen=True, kw_only=True)
class Plan:
    """The answer. The first eight fields are the ``--json`` contract (stable keys); every key is
    documented in README ("plan --json keys")."""

    fits: bool
    """The answer to the question asked (``fits_question``): with ``--users``, whether every user
    fits at max_model_len at once (= ``users_fit``); without, whether one request of max_model_len
    fits and the engine starts (= ``one_request_fits``)."""
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
    """Requests of max_model_len resident at once per replica: the pool's count (vLLM: usable
    blocks, null excluded), capped by the engine's limit on running requests (``--max-num-seqs``)."""
    batch: int
    longest_context_at_batch: int
    users: int | None = None
    users_fit: bool | None = None
    """The ``--users`` verdict: all users at max_model_len resident at once, on all replicas."""
    binding_constraint: str = ""
    headroom_bytes: int | None = None
    """KV left over per GPU after the workload (``--users``, else ``--batch``, else the pool filled
    with ``max_sequences`` requests)."""
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
    fits_question: str = ""
    """The question ``fits`` answers, in words."""
    one_request_fits: bool = False
    """One request of max_model_len fits and the engine starts (``fits`` without ``--users``)."""
    batch_fits: bool | None = None
    """With ``--batch``: that many requests of max_model_len fit at once in one replica."""
    max_sequences_by_memory: int = 0
    """Requests of max_model_len the KV pool alone holds per replica (before ``--max-num-seqs``)."""
    max_running_requests: int | None = None
    """The engine's cap on running requests per replica (vLLM ``max_num_seqs``), if it has one."""
    weights_source: str = ""
    """Which source sized the weights (``kvcalc.planner.weights.checkpoint_weights``)."""
    weights_breakdown: dict[str, int] = field(default_factory=dict)
    """Weight bytes per storage kind (fp8, scales, unquantized bf16, ggml types ...)."""
    kv_budget_bytes_low: int | None = None
    """The KV budget with the modelled terms (activation, non-torch) at their high bounds; None
    when nothing is modelled. ``kv_budget_bytes`` keeps the best value."""
    kv_budget_bytes_high: int | None = None
    """... at their low bounds."""
    max_concurrency_low: float | None = None
    max_concurrency_high: float | None = None
    estimated_max_model_len_low: int | None = None
    estimated_max_model_len_high: int | None = None
    budget_terms: list[dict[str, Any]] = field(default_factory=list)
    """Per modelled term: name, low/best/high bytes, source, status (modelled / given)."""
    dp_attention: int = 1
    """Attention-DP ranks per TP group (SGLang ``--enable-dp-attention``); ``max_sequences`` counts all of them."""
    attention_tp: int = 0
    """The TP width the KV heads are split by: ``tp // dp_attention``."""
    dcp: int = 1
    """vLLM decode context parallelism: each rank stores ``cdiv(max_model_len, dcp)`` tokens of a request."""
    speculative_method: str | None = None
    """The draft's method (vLLM ``method``, SGLang algorithm); None without speculative decoding."""
    draft_model: str | None = None
    """A separate draft model's name (``--draft-model``); None otherwise."""
    draft_layers: int = 0
    """Draft layers whose KV the pool holds beside the target's (EAGLE heads, MTP layers)."""
    data_parallel: int = 1
    """vLLM ``--data-parallel-size`` (each DP rank is a replica with its own pool)."""
    expert_parallel: bool = False
    """vLLM ``--enable-expert-parallel``: whole routed experts per rank (``weights_per_gpu_bytes``)."""
    devices: list[dict[str, Any]] = field(default_factory=list)
    """Engines that place whole layers on devices (llama.cpp, Ollama): per GPU (``CUDA0`` ...), then
    host memory (``CPU``): layers, weights, KV, compute buffer and overhead bytes, the total, the
    GPU's usable memory, what is left, and whether it fits (``Engine.device_budget``)."""
    devices_fit: bool | None = None
    """Every GPU holds its weights, KV, compute buffer and overhead (None: not checked)."""
    device_short: str | None = None
    """The first GPU that does not fit, with the numbers."""
    host_bytes: int | None = None
    """Host memory for the layers (weights, KV) not offloaded and the input layer."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- 1. resolve ------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Deployment:
    gpu: Gpu | None
    gpu_name: str | None
    total_bytes: int | None
    """The usable total the engine budgets from (``mem_get_info``)."""
    driver_bytes: int | None
    """The total the driver reports (NVML): vLLM's batch defaults and SGLang's fraction use it."""
    count: int
    tp: int
    pp: int
    replicas: int


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything ``plan`` resolved from the request before any arithmetic."""

    engine: Engine
    model: ModelConfig
    max_len: int
    dep: Deployment
    layout: RankLayout
    dtype: KVDtype
    max_num_batched_tokens: int
    max_running: int | None
    batch_why: str
    dp_attention: int = 1
    dcp: int = 1
    served_note: str | None = None
    draft: Draft | None = None
    data_parallel: int = 1
    expert_parallel: bool = False
    engine_notes: tuple[str, ...] = ()
    """What the engine chose for the request (its default context, its cache dtype fallback)."""


def deployment(req: PlanRequest) -> Deployment:
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
    dp = req.data_parallel  # vLLM --data-parallel-size: dp engines of tp x pp GPUs
    if tp is None:
        tp = (count // (pp * dp)) if count and count % (pp * dp) == 0 else 1
    if count is None:
        count = tp * pp * dp
    if count % (tp * pp * dp):
        what = "tp x pp" if dp == 1 else "dp x tp x pp"
        raise InvalidRequestError("--gpu", req.gpu, f"a GPU count that is a multiple of {what} = {tp * pp * dp}")
    name = gpu.name if gpu else ("custom" if req.gpu_memory_bytes is not None else None)
    driver = req.gpu_memory_bytes if req.gpu_memory_bytes is not None else (gpu.memory_bytes if gpu else None)
    return Deployment(gpu=gpu, gpu_name=name, total_bytes=total, driver_bytes=driver, count=count, tp=tp, pp=pp,
                      replicas=count // (tp * pp))


def plan_engine(name: str) -> Engine:
    """The engine for ``plan``: any registered spelling of one with a memory model and pool."""
    try:
        key = canonical_engine(name)
    except UnknownNameError:
        raise UnknownNameError("engine", name, planner_engines()) from None
    engine = get_engine(name)
    if not engine.plannable:
        raise InvalidRequestError("--engine", name, f"an engine plan models: {', '.join(planner_engines())}"
                                  + (" (the engine-neutral definition has no memory model)" if key else ""))
    return engine


def resolve(req: PlanRequest) -> Settings:
    from kvcalc.estimate import check_int

    engine = plan_engine(req.engine)
    model = req.model
    max_len, engine_notes = _context(req, engine, model)
    check_int("max_model_len", max_len, maximum=10**9)
    check_int("pp", req.pp, maximum=4096)
    if req.tp is not None:
        check_int("tp", req.tp, maximum=4096)
    if req.users is not None:
        check_int("users", req.users, maximum=10**9)
    if req.shared_prefix_tokens < 0 or req.shared_prefix_tokens > max_len:
        raise InvalidRequestError("--shared-prefix-tokens", req.shared_prefix_tokens, f"0 to max_model_len ({max_len})")
    from kvcalc.engines.served import check_served

    served_note = check_served(engine.served_release, model.architecture, model.name,
                               req.model_impl)
    draft = _draft(req, engine)
    dep = deployment(req)
    if draft is not None:
        from kvcalc.engines.speculative import check_draft_model, with_draft

        if draft.model is not None:
            check_draft_model(model, draft, tp=dep.tp, pp=dep.pp)
        model = with_draft(model, draft)
    dpa, dcp = _parallel(req, engine, model, dep.tp)
    _data_parallel(req, engine)
    layout = RankLayout(model, dep.tp // dpa, dep.pp)  # refuses pp > layers, as estimate does
    label = f"{dep.gpu.name} {dep.gpu.title}" if dep.gpu is not None else ""
    mnbt, running, why = engine.batch_defaults(dep.driver_bytes, label, max_len, req.max_num_batched_tokens,
                                               req.max_num_seqs)
    dtype, _ = engine.resolve_kv_dtype(req.kv_dtype, model)
    dtype, fallback = engine.cache_dtype_for(dtype, req.flash_attn)
    if fallback:
        engine_notes.append(fallback)
    return Settings(engine=engine, model=model, max_len=max_len, dep=dep, layout=layout, dtype=dtype,
                    max_num_batched_tokens=mnbt, max_running=running, batch_why=why, dp_attention=dpa, dcp=dcp,
                    served_note=served_note, draft=draft, data_parallel=req.data_parallel,
                    expert_parallel=req.expert_parallel,
                    engine_notes=tuple(engine_notes))


def _context(req: PlanRequest, engine: Engine, model: ModelConfig) -> tuple[int, list[str]]:
    """``--context``, else the engine's own default (Ollama's by VRAM: ``Engine.default_context``),
    else the model's maximum."""
    if type(engine).default_context is Engine.default_context:
        return (req.max_model_len if req.max_model_len is not None else model.max_position_embeddings), []
    dep = deployment(req)
    vram = dep.driver_bytes * dep.count if dep.driver_bytes is not None and dep.gpu_name is not None else None
    chosen = engine.default_context(model, vram, req.max_model_len)
    if chosen is None:
        return (req.max_model_len if req.max_model_len is not None else model.max_position_embeddings), []
    return chosen[0], [chosen[1]]


def _draft(req: PlanRequest, engine: Engine) -> Draft | None:
    """The speculative draft from the engine's own flag (``kvcalc.engines.speculative``)."""
    from kvcalc.engines.speculative import sglang_draft, vllm_draft
    from kvcalc.estimate import check_int

    if req.draft_layers is not None:
        check_int("draft_layers", req.draft_layers, minimum=0, maximum=4096)
    given = [(f, v) for f, v in (("--speculative-config", req.speculative_config),
                                 ("--speculative-algorithm", req.speculative_algorithm)) if v is not None]
    for flag, value in given:
        if flag != engine.speculative_flag:
            raise InvalidRequestError(flag, value, f"used with the engine it belongs to (--engine "
                                      f"{'vllm' if flag == '--speculative-config' else 'sglang'}; this plan uses "
                                      f"{engine.name})")
    if req.num_speculative_tokens is not None and (req.draft_model is None or req.speculative_config is not None):
        raise InvalidRequestError("--num-speculative-tokens", req.num_speculative_tokens, "given with --draft-model "
                                  "alone (in --speculative-config it is the JSON's num_speculative_tokens)")
    if req.speculative_config is not None:
        return vllm_draft(req.speculative_config, req.draft_layers, req.draft_model)
    if req.speculative_algorithm is not None:
        return sglang_draft(req.speculative_algorithm, req.draft_layers,
                            req.speculative_num_draft_tokens or req.num_speculative_tokens, req.draft_model)
    if req.draft_model is not None:
        from kvcalc.engines.speculative import draft_model_flags

        return draft_model_flags(engine.speculative_flag, req.draft_model, req.num_speculative_tokens)
    if req.draft_layers is not None:
        raise InvalidRequestError("--draft-layers", req.draft_layers, "given with --speculative-config (vLLM) or "
                                  "--speculative-algorithm (SGLang)")
    return None


def _data_parallel(req: PlanRequest, engine: Engine) -> None:
    """Check ``--data-parallel-size`` / ``--enable-expert-parallel`` against the engine."""
    from kvcalc.estimate import check_int

    check_int("data_parallel", req.data_parallel, maximum=4096)
    if (req.data_parallel > 1 or req.expert_parallel) and engine.data_parallel_flag is None:
        flag, value = (("--data-parallel-size", req.data_parallel) if req.data_parallel > 1
                       else ("--enable-expert-parallel", True))
        raise InvalidRequestError(flag, value, f"{'1' if req.data_parallel > 1 else 'off'} with --engine "
                                  f"{engine.name} (vLLM's data / expert parallelism; SGLang: --dp-attention)")


def _parallel(req: PlanRequest, engine: Engine, model: ModelConfig, tp: int) -> tuple[int, int]:
    """Check ``--dp-attention`` / ``--dcp`` against the engine and the TP degree."""
    from kvcalc.estimate import check_int
    from kvcalc.specs import ChunkedAttention, FixedState, SlidingWindowAttention

    check_int("dp_attention", req.dp_attention, maximum=4096)
    check_int("dcp", req.dcp, maximum=4096)
    if req.dp_attention > 1:
        if engine.dp_attention_flag is None:
            raise InvalidRequestError("--dp-attention", req.dp_attention,
                                      f"1 with --engine {engine.name} (data-parallel attention is SGLang's)")
        if tp % req.dp_attention:
            # SGLang: attn_tp_size = tp_size // dp_size (srt/layers/dp_attention.py:445-460 @ 0.5.23)
            raise InvalidRequestError("--dp-attention", req.dp_attention, f"a divisor of --tp ({tp})")
    if req.dcp > 1:
        if engine.dcp_flag is None:
            raise InvalidRequestError("--dcp", req.dcp, f"1 with --engine {engine.name} (decode context "
                                      "parallelism is vLLM's --decode-context-parallel-size)")
        if tp % req.dcp:
            # vLLM reuses the TP ranks for DCP: config/parallel.py:637-641 @ 0.34.0
            raise InvalidRequestError("--dcp", req.dcp, f"a divisor of --tp ({tp}) (vLLM: tp_size must be "
                                      "divisible by dcp_size)")
        local = [s for s, _ in model.spec_counts()
                 if isinstance(s, (SlidingWindowAttention, ChunkedAttention, FixedState))]
        if local:
            raise InvalidRequestError("--dcp", req.dcp, f"1 for {model.name}: vLLM asserts DCP == 1 for "
                                      f"{local[0].kind} layers (v1/core/single_type_kv_cache_manager.py:989, "
                                      ":1341, :1490 @ 0.34.0)")
    return req.dp_attention, req.dcp


# -- 2. weights ------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Weights:
    total_bytes: int | None
    parameters: int | None
    source: str
    dtype: str
    per_gpu_bytes: int | None
    origin: str = ""
    """Which source sized them (``kvcalc.planner.weights.checkpoint_weights``)."""
    breakdown: dict[str, int] = field(default_factory=dict)


def weights_of(req: PlanRequest, s: Settings) -> Weights:
    """The weights from the best source there is (``kvcalc.planner.weights.checkpoint_weights``:
    --weights, --weight-dtype, a GGUF tensor table, quantization_config, the model dtype); ``auto``
    is the dtype the engine runs the model in (``Engine.compute_dtype``)."""
    from kvcalc.planner.weights import checkpoint_weights, rank_weight_bytes

    dm = s.draft.model if s.draft is not None else None
    target = req.model if dm is not None else s.model  # a draft model's layers are not the target's weights
    w = checkpoint_weights(target, req.weight_dtype, s.engine.compute_dtype(target), req.weights_path)
    experts = target.moe.num_experts if target.moe is not None else None
    per_gpu = rank_weight_bytes(w, experts, tp=s.dep.tp, pp=s.dep.pp, dp=s.data_parallel,
                                expert_parallel=s.expert_parallel)
    total = w.bytes
    if dm is not None and s.draft is not None:
        # The draft at the target's TP (speculative.check_draft_model), in its own dtype.
        dw = checkpoint_weights(dm, "auto", s.engine.compute_dtype(dm)).bytes
        total = None if dw is None or total is None else total + dw
        if s.draft.weights_in_budget:
            per_gpu = None if dw is None or per_gpu is None else per_gpu + cdiv(dw, s.dep.tp)
    return Weights(total_bytes=total, parameters=w.parameters, source=w.parameters_source, dtype=w.dtype,
                   per_gpu_bytes=per_gpu, origin=w.source,
                   breakdown=dict(w.breakdown))


# -- 3. budget -------------------------------------------------------------------------------

def budget_of(req: PlanRequest, s: Settings, w: Weights, notes: list[str]) -> Budget:
    if req.kv_budget_bytes is not None:
        return given_budget(s.engine.name, req.kv_budget_bytes, w.per_gpu_bytes)
    assert s.dep.total_bytes is not None  # checked by deployment()
    if w.per_gpu_bytes is None:
        raise InvalidRequestError(
            "--weights", s.model.name, "a parameter count for the memory model: the config lacks one "
            "(give --weights PATH to safetensors, or --kv-budget SIZE)",
        )
    default: str | None = None
    if req.fraction is None:
        derived = s.engine.default_fraction_for(s.model, s.dep.driver_bytes, s.dep.tp, s.dep.pp)
        if derived is not None:
            default = derived[0]
            notes.append(f"{s.engine.fraction_flag} not given: {derived[1]}")
    terms = s.engine.profile_terms(s.model, tp=s.dep.tp, max_num_batched_tokens=s.max_num_batched_tokens,
                                   max_num_seqs=s.max_running)
    act, non_torch = req.activation_bytes, req.non_torch_bytes
    if terms is not None:
        act = _term_sum(terms, "best_bytes", False) if act is None else act
        non_torch = _term_sum(terms, "best_bytes", True) if non_torch is None else non_torch
    bud = s.engine.budget(s.dep.total_bytes, w.per_gpu_bytes, fraction=req.fraction, default_fraction=default,
                          activation_bytes=act, non_torch_bytes=non_torch)
    if terms is not None:
        shown = [f"{t.name} {format_bytes(t.best_bytes)} [{format_bytes(t.low_bytes)}, {format_bytes(t.high_bytes)}]"
                 for t in terms if (req.non_torch_bytes if t.name == "non_torch" else req.activation_bytes) is None]
        if shown:
            notes.append("budget terms modelled, best [low, high]: " + "; ".join(shown) + " (sources: --json "
                         "budget_terms; the activation row holds activation + cudagraph)")
    if terms is None and (req.activation_bytes is None or req.non_torch_bytes is None):
        notes.append(
            f"activation peak and non-torch memory are kvcalc's assumed defaults ({DEFAULT_ACTIVATION_BYTES >> 20:,} "
            f"MiB and {DEFAULT_NON_TORCH_BYTES >> 20:,} MiB, i.e. 1.50 GiB and 0.50 GiB); take the real figures from "
            "the engine log (kvcalc check-log) and pass --activation-memory / --non-torch-memory"
        )
    return bud


def _term_sum(terms: tuple[Term, ...], key: str, non_torch: bool) -> int:
    """The non-torch term's bound, or the sum of the others' (what the activation row holds)."""
    return sum(int(getattr(t, key)) for t in terms if (t.name == "non_torch") == non_torch)


@dataclass(frozen=True, kw_only=True)
class Interval:
    """The KV budget and what it buys when the modelled terms sit at their bounds: ``low`` is the
    budget with both terms high, ``high`` with both low; ``terms`` says per term what was modelled,
    assumed or given."""

    low: Budget
    high: Budget
    terms: list[dict[str, Any]]


def interval_of(req: PlanRequest, s: Settings, w: Weights, bud: Budget) -> Interval | None:
    """None when nothing is modelled (``--kv-budget``, an engine without a profile model, or both
    terms pinned): the one budget is then the only figure."""
    if req.kv_budget_bytes is not None or s.dep.total_bytes is None or w.per_gpu_bytes is None:
        return None
    terms = s.engine.profile_terms(s.model, tp=s.dep.tp, max_num_batched_tokens=s.max_num_batched_tokens,
                                   max_num_seqs=s.max_running)
    if terms is None:
        return None
    if req.activation_bytes is not None and req.non_torch_bytes is not None:
        return None
    rows: list[dict[str, Any]] = []
    for term in terms:
        row = term.to_dict()
        row["status"] = "modelled"
        given = req.non_torch_bytes if term.name == "non_torch" else req.activation_bytes
        if given is not None:
            row["status"] = "given (--non-torch-memory)" if term.name == "non_torch" else "given (--activation-memory)"
        rows.append(row)
    fraction = bud.fraction

    def at(key: str) -> Budget:
        act = req.activation_bytes if req.activation_bytes is not None else _term_sum(terms, key, False)
        non_torch = req.non_torch_bytes if req.non_torch_bytes is not None else _term_sum(terms, key, True)
        return s.engine.budget(s.dep.total_bytes or 0, w.per_gpu_bytes or 0, fraction=fraction,
                               activation_bytes=act, non_torch_bytes=non_torch)

    return Interval(low=at("high_bytes"), high=at("low_bytes"), terms=rows)


# -- 4. pool ---------------------------------------------------------------------------------

def pool_of(req: PlanRequest, s: Settings, bud: Budget) -> Pool:
    return s.engine.pool(_pool_request(req, s, bud))


def _pool_request(req: PlanRequest, s: Settings, bud: Budget) -> PoolRequest:
    return PoolRequest(
        model=s.model, layout=s.layout, dtype=s.dtype, kv_budget_bytes=bud.kv_budget_bytes, max_model_len=s.max_len,
        block_size=req.block_size, max_num_batched_tokens=s.max_num_batched_tokens, max_num_seqs=s.max_running,
        budget=bud, gpu=s.dep.gpu.name if s.dep.gpu else None, dcp=s.dcp,
        draft_layers=s.draft.layers if s.draft else 0, draft_model=s.draft.model if s.draft else None,
        max_tokens=req.max_tokens,
        host_cache_bytes=req.host_cache_bytes, n_gpu_layers=req.n_gpu_layers, tensor_split=req.tensor_split,
        parallel=req.parallel, kv_unified=req.kv_unified, no_kv_offload=req.no_kv_offload,
        split_mode=req.split_mode, flash_attn=req.flash_attn)


def devices_of(req: PlanRequest, s: Settings, w: Weights) -> DeviceBudget | None:
    """Per device (``Engine.device_budget``: llama.cpp, Ollama), when the engine places whole
    layers and the plan spreads them (several GPUs, -ngl, --tensor-split, ...): each GPU's usable
    memory, the weights by layer (``kvcalc.planner.layer_weights``), and the per-GPU compute buffer
    and overhead (``--activation-memory`` / ``--non-torch-memory``, else kvcalc's assumed defaults)."""
    from kvcalc.engines.base import DeviceRequest
    from kvcalc.planner.layer_weights import layer_weights

    flags = (req.n_gpu_layers != -1 or req.tensor_split or req.parallel != 1 or req.kv_unified
             or req.no_kv_offload or req.split_mode != "layer" or (s.dep.tp > 1 and s.dep.pp == 1))
    if not flags or type(s.engine).device_budget is Engine.device_budget:
        return None
    lw = layer_weights(s.model, req.weight_dtype, s.engine.compute_dtype(s.model), req.weights_path)
    if lw is None:
        return None
    gpus = s.dep.tp * s.dep.pp
    dev = DeviceRequest(gpu_memory_bytes=(s.dep.total_bytes,) * gpus, input_weights_bytes=lw.input_bytes,
                        layer_weights_bytes=lw.layer_bytes, output_weights_bytes=lw.output_bytes,
                        compute_bytes=req.activation_bytes if req.activation_bytes is not None
                        else DEFAULT_ACTIVATION_BYTES,
                        overhead_bytes=req.non_torch_bytes if req.non_torch_bytes is not None
                        else DEFAULT_NON_TORCH_BYTES)
    budget = s.engine.device_budget(_pool_request(req, s, given_budget(s.engine.name, 0, None)), dev)
    if budget is None:
        return None
    notes = [f"per-device weights from {lw.source}"
             + (f"; tied embeddings: llama.cpp loads token_embd again as the output matrix "
                f"(+{format_bytes(lw.duplicated_bytes)})" if lw.duplicated_bytes else ""),
             "per GPU holding layers: compute buffer "
             + (f"{format_bytes(dev.compute_bytes)} (--activation-memory)" if req.activation_bytes is not None
                else f"{format_bytes(dev.compute_bytes)} assumed (not modelled; llama.cpp logs 'compute buffer "
                     "size': pass it as --activation-memory)")
             + " and overhead " + format_bytes(dev.overhead_bytes)
             + (" (--non-torch-memory)" if req.non_torch_bytes is not None else " assumed (--non-torch-memory)"),
             *budget.notes]
    return dataclasses.replace(budget, notes=tuple(notes))


def _device_short(d: DeviceUse) -> str:
    return (f"{d.device} needs {format_bytes(d.total_bytes)} (weights {format_bytes(d.weights_bytes)} + KV "
            f"{format_bytes(d.kv_bytes)} + compute {format_bytes(d.compute_bytes)} + overhead "
            f"{format_bytes(d.overhead_bytes)}) of {format_bytes(d.memory_bytes or 0)}: "
            f"{format_bytes(-(d.free_bytes or 0))} short")


# -- 5. the answer ---------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Answer:
    fits: bool
    question: str
    max_sequences: int
    by_memory: int
    batch: int
    longest: int
    per_gpu_bytes: int
    users_fit: bool | None
    batch_fits: bool | None
    binding: str
    headroom_units: int | None
    headroom_bytes: int | None
    saving_bytes: int
    without_sharing: int | None


def workload_bytes(s: Settings, req: PlanRequest, requests: int) -> int:
    """KV bytes ``requests`` requests of max_model_len take on the largest rank (what estimate
    reports for the same settings: the engine's ``request_bytes``)."""
    # A DCP rank stores cdiv(L, dcp) tokens of each request; attention-DP ranks share the requests.
    work = Workload(seq_len=cdiv(s.max_len, s.dcp), batch=cdiv(requests, s.dp_attention), block_size=req.block_size,
                    max_num_batched_tokens=s.max_num_batched_tokens)
    return s.engine.request_bytes(s.layout, s.dtype, work)


def answer(req: PlanRequest, s: Settings, pool: Pool) -> Answer:
    cap, starts, length = pool.capacity, pool.fits, s.max_len
    prefix = req.shared_prefix_tokens if s.engine.shares_prefix else 0
    # The pool is one rank's; with attention DP each of the dp ranks of a replica holds its own requests.
    dpa = s.dp_attention
    rank_memory = cap.max_sequences(length, prefix) if starts else 0
    by_memory = rank_memory * dpa
    resident = (min(rank_memory, s.max_running) if s.max_running is not None else rank_memory) * dpa
    batch = req.batch or req.users or 1
    longest = cap.longest_context(cdiv(batch, dpa), prefix)
    per_replica_load = cdiv(req.users, s.dep.replicas) if req.users is not None else (req.batch or None)
    binding = _binding(starts, pool)
    users_fit: bool | None = None
    batch_fits: bool | None = None
    if req.users is not None:
        users_fit = starts and resident * s.dep.replicas >= req.users
        if starts:
            binding = "none: every user fits"
            if by_memory * s.dep.replicas < req.users:
                binding = "KV cache: too few blocks/bytes for all users at max_model_len"
            elif users_fit is False:
                binding = (f"{pool.max_running_flag} {s.max_running}: the engine runs at most that many requests "
                           "per replica")
    elif starts:
        binding = "KV cache (max concurrent requests at max_model_len)"
        if s.max_running is not None and rank_memory > s.max_running:
            binding = f"{pool.max_running_flag} {s.max_running} (the KV cache holds {by_memory:,})"
    if req.users is None and req.batch is not None:
        batch_fits = starts and resident >= req.batch
    load = cdiv(per_replica_load, dpa) if per_replica_load is not None else max(resident // dpa, 1)
    headroom_units = cap.available - cap.units_for(load, length, prefix) if starts else None
    headroom_bytes = headroom_units * pool.unit_bytes if headroom_units is not None else None
    saving, without = 0, None
    if prefix:
        without = cap.max_sequences(length) * dpa if starts else 0
        n = max(rank_memory, 1)
        saving = (cap.units_for(n, length) - cap.units_for(n, length, prefix)) * pool.unit_bytes
    if req.users is not None:
        fits, question = bool(users_fit), f"all {req.users:,} users at {length:,} tokens at once"
    else:
        fits, question = starts, f"one request of {length:,} tokens, and the engine starts"
    return Answer(fits=fits, question=question, max_sequences=resident, by_memory=by_memory, batch=batch,
                  longest=longest, per_gpu_bytes=workload_bytes(s, req, req.users or req.batch or 1),
                  users_fit=users_fit, batch_fits=batch_fits, binding=binding, headroom_units=headroom_units,
                  headroom_bytes=headroom_bytes, saving_bytes=saving, without_sharing=without)


def _binding(starts: bool, pool: Pool) -> str:
    if pool.capacity.available <= 0 and not starts:
        return "memory: nothing left for the KV cache after weights and overheads"
    if not starts:
        return "KV cache: one request of max_model_len does not fit"
    return ""


# -- 6. TP search, hints, roofline -----------------------------------------------------------

def tp_search(req: PlanRequest, s: Settings) -> list[TpOption]:
    heads = s.model.num_attention_heads
    out: list[TpOption] = []
    assert req.users is not None
    for tp in TP_CANDIDATES:
        if heads % tp:
            continue
        gpu = None if req.gpu is None else req.gpu.split(":")[0] + f":{tp * req.pp * req.data_parallel}"
        sub = dataclasses.replace(req, tp=tp, gpu=gpu, users=None, solve_tp=False, batch=None)
        try:
            p = plan(sub)
        except InvalidRequestError:
            continue
        seqs = p.max_sequences
        replicas = cdiv(req.users, seqs) if seqs else 0
        out.append(TpOption(tp=tp, max_sequences=seqs, replicas_needed=replicas, gpus=replicas * tp * req.pp))
        if seqs >= req.users and len(out) > 1 and out[-2].max_sequences >= req.users:
            break
    return out


def hints_of(req: PlanRequest, s: Settings, bud: Budget, pool: Pool, a: Answer, min_tp: int | None,
             min_gpus: int | None) -> list[str]:
    """What to change, from the engine (its flag, its smaller cache dtype) and the settings."""
    if a.fits and a.batch_fits is not False:
        return []
    out: list[str] = []
    tp_hints = []
    if min_tp is not None:
        tp_hints.append(f"--tp {min_tp} serves all users in one replica")
    if min_gpus is not None:
        tp_hints.append(f"fewest GPUs for all users: {min_gpus} (TP x data-parallel replicas)")
    if bud.kv_budget_bytes <= 0:
        if bud.fraction_flag:
            out.append(f"raise {bud.fraction_flag} (now {bud.fraction}), or use more GPUs (--tp), or a smaller "
                       "--weight-dtype")
        else:
            out.append("use more GPUs (--tp), a smaller --weight-dtype, or a GPU with more memory")
        return out + tp_hints
    if not pool.fits and pool.estimated_max_model_len:
        out.append(f"lower --max-model-len to {pool.estimated_max_model_len:,} (the largest that fits), or raise "
                   "the budget")
    if pool.fits and req.users is not None and a.max_sequences * s.dep.replicas < req.users:
        out.append(f"at --max-model-len {s.max_len:,} one replica holds {a.max_sequences:,} requests; "
                   f"the longest context for {a.batch:,} at once is {a.longest:,} tokens")
    if pool.fits and a.batch_fits is False:
        out.append(f"at --max-model-len {s.max_len:,} one replica holds {a.max_sequences:,} requests; the longest "
                   f"context for --batch {a.batch:,} is {a.longest:,} tokens")
    if (a.by_memory > a.max_sequences and pool.max_running_flag and s.max_running is not None
            and (req.users or req.batch or 0) > a.max_sequences):
        out.append(f"raise {pool.max_running_flag} (now {s.max_running:,}): the KV cache holds {a.by_memory:,}")
    out.extend(tp_hints)
    smaller = s.engine.cache_dtype_hint(s.dtype)
    if smaller:
        out.append(smaller)
    return out


def roofline_of(s: Settings, w: Weights, a: Answer, req: PlanRequest, starts: bool) -> Roofline | None:
    """Decode roofline (needs a catalogued GPU's bandwidth): KV read per step is kvcalc's neutral
    bytes of one sequence on the largest rank."""
    from kvcalc.engines import get_engine
    from kvcalc.planner.roofline import decode_roofline

    gpu = s.dep.gpu
    if gpu is None or w.per_gpu_bytes is None or not starts:
        return None
    rb = req.users or req.batch or max(a.max_sequences, 1)
    rb = max(1, min(rb, max(a.max_sequences, 1)))
    kv_seq = get_engine("neutral").request_bytes(s.layout, s.dtype, Workload(seq_len=s.max_len))
    active = _active_params(s.model, w.parameters)
    flops = gpu.fp8_flops if w.dtype.startswith("fp8") and gpu.fp8_flops else gpu.dense_flops
    return decode_roofline(
        batch=rb, weights_per_gpu=w.per_gpu_bytes, kv_per_sequence_per_gpu=kv_seq,
        active_params_per_gpu=cdiv(active, s.dep.tp * s.dep.pp) if active else None,
        bandwidth_bytes_per_s=gpu.bandwidth_bytes_per_s, dense_flops=flops,
    )


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


def _notes(req: PlanRequest, s: Settings, warnings: list[str]) -> list[str]:
    notes: list[str] = []
    if s.batch_why != "given" and s.max_running is not None:
        notes.append(f"max_num_batched_tokens {s.max_num_batched_tokens:,}, max_num_seqs {s.max_running:,}: "
                     f"{s.batch_why} (EngineArgs.get_batch_defaults); pass --max-num-batched-tokens / --max-num-seqs "
                     "to change")
    if s.max_len > s.model.max_position_embeddings:
        warnings.append(
            f"max_model_len {s.max_len:,} exceeds {s.model.name}'s max_position_embeddings "
            f"({s.model.max_position_embeddings:,}); {s.engine.beyond_context}"
        )
    if req.shared_prefix_tokens and not s.engine.shares_prefix:
        notes.append(f"{s.engine.name}: no cross-request prefix sharing modelled; --shared-prefix-tokens ignored")
    return notes


def _draft_model_note(req: PlanRequest, s: Settings) -> str:
    """Where a separate draft model's KV and weights go (``kvcalc.engines.speculative``)."""
    from kvcalc.planner.weights import checkpoint_weights

    assert s.draft is not None and s.draft.model is not None
    dm, d = s.draft.model, s.draft.layers
    dw = checkpoint_weights(dm, "auto", s.engine.compute_dtype(dm)).bytes
    weights = f"weights {format_bytes(dw)} ({dw:,} B) at TP {s.dep.tp}" if dw is not None else "weights unknown"
    if s.draft.weights_in_budget:
        where = (f"its {d} layers' KV in the target's block pool (one block count for both; planned as "
                 f"{s.model.num_layers:,} layers), {weights} in the KV budget (loaded with the target)")
    else:
        where = (f"its pool of the target's #tokens, budgeted as {d} target-sized layers (pool_configurator.py:"
                 f"259-313 @ 0.5.23); {weights} loaded after the pool, from the memory the fraction leaves")
    return f"speculative decoding ({s.draft.method}, draft {dm.name}): {where}"


def _dp_note(s: Settings) -> str:
    """How a MoE model's weights spread under vLLM's data / expert parallelism (``rank_weight_bytes``)."""
    assert s.model.moe is not None
    flat, e = s.data_parallel * s.dep.tp, s.model.moe.num_experts
    split = (f"expert parallel, EP size {flat}: at most cdiv({e}, {flat}) = {cdiv(e, flat)} whole experts per rank"
             if s.expert_parallel else f"each expert TP-sharded over DP x TP = {flat} ranks")
    return (f"{s.engine.data_parallel_flag} {s.data_parallel}: attention and dense weights split by TP {s.dep.tp} "
            f"(replicated over DP), routed experts: {split} (vLLM fused_moe/config.py:1143-1151, :1235-1285 @ "
            f"0.34.0); each DP rank has its own KV pool (TP {s.dep.tp}), counted as a replica")


def plan(req: PlanRequest) -> Plan:
    if is_auto(req.gpu):  # --gpu auto: the local GPUs as read (kvcalc.planner.gpus)
        return plan_on_local_gpus(req, plan)
    s = resolve(req)
    w = weights_of(req, s)
    warnings: list[str] = []
    notes = _notes(req, s, warnings)
    if w.total_bytes is not None:
        notes.insert(0, f"weights {format_bytes(w.total_bytes)} ({w.total_bytes:,} B) from {w.origin}" + (
            "; " + ", ".join(f"{k} {format_bytes(v)}" for k, v in w.breakdown.items()) if w.breakdown else ""))
    bud = budget_of(req, s, w, notes)
    pool = pool_of(req, s, bud)
    span = interval_of(req, s, w, bud)
    lo_pool = pool_of(req, s, span.low) if span is not None else None
    hi_pool = pool_of(req, s, span.high) if span is not None else None
    notes += pool.notes
    if s.served_note:
        notes.append(s.served_note)
    if s.dp_attention > 1:
        notes.append(f"{s.engine.dp_attention_flag} --dp {s.dp_attention}: attention TP {s.layout.tp}, each of the "
                     f"{s.dp_attention} attention-DP ranks holds the cache of its own requests; the pool is one rank's")
    if s.draft is not None and s.draft.model is not None:
        notes.append(_draft_model_note(req, s))
    elif s.draft is not None and s.draft.layers:
        notes.append(f"speculative decoding ({s.draft.method}): {s.draft.layers} draft layer(s) shaped like the "
                     f"target's share the pool: planned as {s.model.num_layers:,} layers")
    if (s.data_parallel > 1 or s.expert_parallel) and s.model.moe is not None:
        notes.append(_dp_note(s))
    if s.dcp > 1:
        notes.append(f"{s.engine.dcp_flag} {s.dcp}: each rank stores cdiv({s.max_len:,}, {s.dcp}) = "
                     f"{cdiv(s.max_len, s.dcp):,} tokens of a request")
    a = answer(req, s, pool)
    notes += s.engine_notes
    devs = devices_of(req, s, w)
    if devs is not None:
        notes += devs.notes
        if devs.short is not None:
            short = _device_short(devs.short)
            a = dataclasses.replace(a, fits=False, binding=f"device memory: {short}")
    options = tp_search(req, s) if req.users is not None and req.solve_tp else []
    one_rep, fewest = smallest_tp(options, req.users) if req.users is not None else (None, None)
    min_tp = one_rep.tp if one_rep else None
    min_gpus = fewest.gpus if fewest else None
    roof = roofline_of(s, w, a, req, pool.fits)
    gpu = s.dep.gpu
    if gpu is not None and gpu.usable_is_estimated and req.gpu_memory_bytes is None and req.kv_budget_bytes is None:
        notes.append(f"{gpu.name}: usable memory is an estimate ({gpu.usable_source}); pass --gpu-memory")
    return Plan(
        fits=a.fits, kv_budget_bytes=bud.kv_budget_bytes, num_blocks=pool.num_blocks,
        kv_cache_tokens=pool.kv_cache_tokens, max_concurrency=pool.max_concurrency,
        estimated_max_model_len=pool.estimated_max_model_len, weights_bytes=w.total_bytes,
        per_gpu_bytes=a.per_gpu_bytes, model=s.model.name, engine=s.engine.name, engine_version=pool.engine_version,
        gpu=s.dep.gpu_name, gpu_count=s.dep.count, tp=s.dep.tp, pp=s.dep.pp, replicas=s.dep.replicas,
        kv_dtype=s.dtype.name, weight_dtype=w.dtype, max_model_len=s.max_len,
        max_num_batched_tokens=s.max_num_batched_tokens, max_num_seqs=s.max_running, block_size=pool.block_size,
        parameters=w.parameters, parameters_source=w.source, weights_per_gpu_bytes=w.per_gpu_bytes,
        budget=bud.to_dict(), max_sequences=a.max_sequences, batch=a.batch, longest_context_at_batch=a.longest,
        users=req.users, users_fit=a.users_fit, binding_constraint=a.binding, headroom_bytes=a.headroom_bytes,
        headroom_units=a.headroom_units, capacity_unit=pool.capacity.unit, min_tp_for_users=min_tp,
        min_gpus_for_users=min_gpus, tp_options=[dataclasses.asdict(o) for o in options],
        shared_prefix_tokens=req.shared_prefix_tokens, shared_prefix_saving_bytes=a.saving_bytes,
        max_sequences_without_prefix_sharing=a.without_sharing, reason=pool.reason,
        hints=hints_of(req, s, bud, pool, a, min_tp, min_gpus), log_lines=pool.log_lines, vllm=pool.details,
        roofline=roof.to_dict() if roof is not None else None, notes=notes, warnings=warnings,
        fits_question=a.question, one_request_fits=pool.fits, batch_fits=a.batch_fits,
        max_sequences_by_memory=a.by_memory, max_running_requests=s.max_running,
        weights_source=w.origin, weights_breakdown=w.breakdown,
        kv_budget_bytes_low=span.low.kv_budget_bytes if span else None,
        kv_budget_bytes_high=span.high.kv_budget_bytes if span else None,
        max_concurrency_low=lo_pool.max_concurrency if lo_pool else None,
        max_concurrency_high=hi_pool.max_concurrency if hi_pool else None,
        estimated_max_model_len_low=lo_pool.estimated_max_model_len if lo_pool else None,
        estimated_max_model_len_high=hi_pool.estimated_max_model_len if hi_pool else None,
        budget_terms=span.terms if span else [],
        dp_attention=s.dp_attention,
        attention_tp=s.layout.tp, dcp=s.dcp, speculative_method=s.draft.method if s.draft else None,
        draft_layers=s.draft.layers if s.draft else 0,
        draft_model=s.draft.model.name if s.draft and s.draft.model else None,
        data_parallel=s.data_parallel, expert_parallel=s.expert_parallel,
        devices=[d.to_dict() for d in devs.devices] if devs else [],
        devices_fit=devs.fits if devs else None,
        device_short=_device_short(devs.short) if devs and devs.short else None,
        host_bytes=devs.host_bytes if devs else None,
    )
