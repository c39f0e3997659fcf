"""``Engine``: everything one engine (one version of it) decides, asked by every command.

``estimate``, ``plan``, ``verify``, ``check-log``, ``sweep`` and ``simulate`` ask the engine; none
of them tests an engine's name. The base class is kvcalc's engine-neutral definition; an engine
overrides what it does differently, and a newer release of an engine subclasses the older one
and overrides only what changed (with the file and version it read in a comment).

The questions, grouped:

* dtypes: ``auto_dtype`` (what ``--kv-dtype auto`` means), ``resolve_kv_dtype`` (the one place a
  ``--kv-dtype`` spelling becomes a ``KVDtype``, engine spellings included), ``compute_dtype``
  (what the weights run in), ``state_dtype`` (Mamba / linear-attention states);
* storage per layer: ``tokens_held``, ``bytes_per_token``, ``fixed_bytes``, ``state_rows``,
  ``fixed_layer_bytes``, ``bookkeeping_bytes``, ``kv_bytes_per_token``; ``prepare`` (engine-wide
  settings a layout implies, such as vLLM's hybrid block size); ``layer_bytes`` (the one per-layer
  formula estimate, plan and verify share); ``request_bytes`` (one rank, largest stage);
* tensors ``verify`` allocates: ``attention_tensors``, ``latent_tensors``;
* memory: ``fraction_flag``, ``budget``, ``default_fraction_for``, ``batch_defaults``;
* pool and capacity: ``pool`` (blocks, tokens, concurrency, the fit check, the longest context);
* advice: ``hints``;
* logs: ``log_unit_note`` (a note on a unit word); ``check-log`` reads the logs in
  ``kvcalc.engines.startup_log``, by the version or the line forms a log prints.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from kvcalc.dtypes import KVDtype
from kvcalc.specs import FixedState, FullAttention, IndexedLatentAttention, LatentAttention, Spec, StatefulAttention

if TYPE_CHECKING:
    from decimal import Decimal

    from kvcalc.engines.activation import Term
    from kvcalc.engines.capacity import Capacity
    from kvcalc.engines.memory import Budget
    from kvcalc.layout import RankLayout
    from kvcalc.measure.layout import TensorLayout
    from kvcalc.models import ModelConfig


@dataclass(frozen=True, kw_only=True)
class Workload:
    """What an engine is asked to hold: one request shape, repeated ``batch`` times."""

    seq_len: int
    batch: int = 1
    block_size: int | None = None
    max_num_batched_tokens: int = 8192
    state_page_bytes: int | None = None
    """Set by ``Engine.prepare`` where the engine pads a state to a page (vLLM hybrid models)."""
    in_flight_tokens: int | None = None
    """Tokens a sliding / chunked layer keeps past its window when the engine's release says more
    than ``max_num_batched_tokens`` (vLLM 0.28+: (pp + 1) batches in flight; set by ``prepare``)."""
    windows: bool = True
    """Whether the engine honours the layers' sliding windows for this model (``prepare``: llama.cpp
    ignores them for some architectures)."""


@dataclass(frozen=True, kw_only=True)
class PoolRequest:
    """What the planner asks an engine's pool: one rank's budget and one request's shape."""

    model: ModelConfig
    layout: RankLayout
    dtype: KVDtype
    kv_budget_bytes: int
    max_model_len: int
    block_size: int | None
    max_num_batched_tokens: int
    max_num_seqs: int | None
    budget: Budget
    gpu: str | None = None
    """The catalog GPU the plan is for (vLLM picks its attention backend, hence the MLA block size,
    by it); None with ``--gpu-memory`` / ``--kv-budget``."""
    dcp: int = 1
    """Decode context parallelism (vLLM ``--decode-context-parallel-size``): each rank stores
    ``cdiv(L, dcp)`` tokens of a request; engines without ``dcp_flag`` are never asked with more than 1."""
    draft_layers: int = 0
    """Of the model's layers, how many are a speculative draft's (the last ones; ``kvcalc.engines.speculative``):
    SGLang logs their pool on its own line."""
    draft_model: ModelConfig | None = None
    """A separate draft model (``--draft-model``): SGLang logs its own pool's real K/V sizes."""
    max_tokens: int | None = None
    """TensorRT-LLM ``KvCacheConfig.max_tokens`` (``--max-tokens``): a cap on the pool's tokens."""
    host_cache_bytes: int = 0
    """TensorRT-LLM ``KvCacheConfig.host_cache_size`` (``--host-cache-size``): the secondary (host) pool."""
    n_gpu_layers: int = -1
    """llama.cpp ``-ngl`` (-1: all layers and the output layer)."""
    tensor_split: tuple[float, ...] = ()
    """llama.cpp ``--tensor-split`` weights per GPU (empty: one GPU per rank)."""
    parallel: int = 1
    """llama.cpp ``-np`` slots (each of max_model_len cells: ``-c`` = max_model_len x slots)."""
    kv_unified: bool = False
    no_kv_offload: bool = False
    split_mode: str = "layer"
    flash_attn: str = "auto"
    """llama.cpp ``-fa``: a quantized V cache needs it (``off`` is refused, as llama.cpp does)."""


@dataclass(frozen=True, kw_only=True)
class DeviceRequest:
    """What the planner hands an engine that places whole layers on devices (llama.cpp, Ollama):
    the weights by layer (the planner's layer_weights), each GPU's usable memory, and the
    per-GPU terms the plan assumes or was given."""

    gpu_memory_bytes: tuple[int | None, ...]
    """Usable memory of each GPU, in device order (None: not known, e.g. ``--kv-budget`` alone)."""
    input_weights_bytes: int
    """The input layer (token embeddings): llama.cpp keeps it in host memory."""
    layer_weights_bytes: tuple[int, ...]
    """Each repeating layer's weights."""
    output_weights_bytes: int
    """The output layer (final norm and output matrix; a tied model's copy of the embeddings)."""
    compute_bytes: int
    """Per GPU holding layers: the engine's compute buffer (``--activation-memory``)."""
    overhead_bytes: int
    """Per GPU holding layers: the CUDA context and the like (``--non-torch-memory``)."""


@dataclass(frozen=True, kw_only=True)
class DeviceUse:
    """One device's share: the layers placed on it, their weights and KV, and the terms assumed."""

    device: str
    """The name the engine logs (``CUDA0``, ``CUDA1``, ``CPU`` for host memory)."""
    memory_bytes: int | None
    """Usable memory (None: host memory, or a GPU of unknown size)."""
    layers: int
    output_layer: bool
    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    overhead_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes + self.compute_bytes + self.overhead_bytes

    @property
    def free_bytes(self) -> int | None:
        return None if self.memory_bytes is None else self.memory_bytes - self.total_bytes

    @property
    def fits(self) -> bool | None:
        free = self.free_bytes
        return None if free is None else free >= 0

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.update(total_bytes=self.total_bytes, free_bytes=self.free_bytes, fits=self.fits)
        return data


@dataclass(frozen=True, kw_only=True)
class DeviceBudget:
    """Every device's share (GPUs in order, then host memory) and what was assumed."""

    devices: tuple[DeviceUse, ...]
    notes: tuple[str, ...] = ()

    @property
    def fits(self) -> bool | None:
        """All GPUs fit (None: no GPU's memory is known); host memory is reported, not checked."""
        verdicts = [d.fits for d in self.devices if d.device != "CPU"]
        if any(v is False for v in verdicts):
            return False
        return None if all(v is None for v in verdicts) else True

    @property
    def short(self) -> DeviceUse | None:
        """The first GPU that does not fit, if any."""
        return next((d for d in self.devices if d.fits is False), None)

    @property
    def host_bytes(self) -> int:
        return sum(d.total_bytes for d in self.devices if d.device == "CPU")


@dataclass(frozen=True, kw_only=True)
class Pool:
    """An engine's answer for one rank's pool (typed: the planner reads fields, never a dict)."""

    capacity: Capacity
    fits: bool
    """The engine starts and one request of max_model_len fits."""
    num_blocks: int | None
    kv_cache_tokens: int | None
    max_concurrency: float
    estimated_max_model_len: int | None
    reason: str | None
    block_size: int | None
    unit_bytes: int
    """Bytes of one capacity unit (a block, a byte, a pool token)."""
    engine_version: str
    log_lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] | None = None
    """Engine-specific figures for the JSON (vLLM's ``vllm`` key)."""
    max_running: int | None = None
    """The engine's cap on requests running at once (vLLM ``max_num_seqs``), if any."""
    max_running_flag: str | None = None


class Engine:
    """Engine-neutral by default: subclasses override only what their engine does differently.

    ``tokens_held`` is per sequence and per layer; the estimate multiplies by ``batch``.
    """

    name = "neutral"
    title = "engine-neutral"
    version = ""
    source = "kvcalc definition: a full layer holds seq_len tokens, a sliding layer min(seq_len, window)"
    plannable = False
    """Whether ``plan`` has a memory model and pool for this engine."""
    fraction_flag: str | None = None
    """The engine's memory-fraction flag (``--gpu-memory-utilization`` ...), None if it has none."""
    served_release: str | None = None
    """The release whose architecture table (``kvcalc.engines.served``) ``plan`` checks; None: unchecked."""
    dp_attention_flag: str | None = None
    """The engine's data-parallel-attention flag, if ``plan`` models it (``--dp-attention``)."""
    dcp_flag: str | None = None
    data_parallel_flag: str | None = None
    """The engine's data-parallel flag whose MoE weight split ``plan`` models (``--data-parallel-size``)."""
    """The engine's decode-context-parallel flag, if ``plan`` models it (``--dcp``)."""
    speculative_flag: str | None = None
    """The engine's speculative-decoding flag ``plan`` reads (``kvcalc.engines.speculative``), if any."""
    default_fraction: str | None = None
    refuses_when_free_below_request = False
    """Whether the engine budgets a fraction of the *total* and refuses to start when a GPU has less
    than that free (``plan --gpu auto`` then says so with both numbers); the others size from the
    free memory they find."""
    shares_prefix = False
    """Whether requests share a common prefix's cache (prefix caching in the pool)."""
    splits_kv = False
    """Whether the engine reports K and V apart (llama.cpp logs ``K (q8_0): ... MiB, V ...``)."""
    states_in_model_dtype = False
    """Whether Mamba / linear-attention states are kept in the model's compute dtype (as this
    engine runs the model) rather than the KV dtype; kvcalc's neutral definition applies the KV dtype."""
    dtype_spellings: ClassVar[dict[str, str]] = {}
    """This engine's own ``--kv-cache-dtype`` spellings -> kvcalc names (vLLM ``fp8_inc``)."""
    stateful_attention_refusal: ClassVar[str | None] = None
    """Why this engine refuses a layer holding a Mamba state and a KV cache at once
    (``StatefulAttention``: Falcon-H1, Zamba2); None where it is modelled."""

    # -- dtypes -----------------------------------------------------------------------------
    def auto_dtype(self, model: ModelConfig) -> tuple[str, str]:
        """The cache dtype ``--kv-dtype auto`` means under this engine, and why (shown in the output)."""
        return model.dtype, "model dtype"

    def compute_dtype(self, model: ModelConfig) -> str:
        """The dtype the engine runs the model's weights in (``--weight-dtype auto``)."""
        return model.dtype

    def resolve_kv_dtype(self, name: str, model: ModelConfig, *, group_size: int | None = None,
                         residual_length: int | None = None) -> tuple[KVDtype, str]:
        """The one place a ``--kv-dtype`` spelling becomes a ``KVDtype`` (and where it came from)."""
        from kvcalc.dtypes import canonical_dtype_name, resolve_dtype

        source = "--kv-dtype"
        if isinstance(name, str):
            name = self.dtype_spellings.get(name.strip().lower(), name)
            if canonical_dtype_name(name) == "auto":
                name, source = self.auto_dtype(model)
        return resolve_dtype(name, model.dtype, group_size=group_size, residual_length=residual_length), source

    def state_dtype(self, kv_dtype: KVDtype, model: ModelConfig) -> KVDtype:
        """The dtype handed to ``state_rows`` for ``model`` under a ``kv_dtype`` cache."""
        if not self.states_in_model_dtype:
            return kv_dtype
        from kvcalc.dtypes import resolve_dtype

        return resolve_dtype(self.auto_dtype(model)[0], model.dtype)

    # -- storage per layer ------------------------------------------------------------------
    def tokens_held(self, spec: Spec, work: Workload) -> int:
        self.refuse_stateful_attention(spec)
        return spec.tokens_held(work.seq_len)

    def refuse_stateful_attention(self, spec: Spec) -> None:
        """Raise for a ``StatefulAttention`` layer where this engine does not model it."""
        if self.stateful_attention_refusal is not None and isinstance(spec, StatefulAttention):
            from kvcalc.errors import UnsupportedByEngineError

            raise UnsupportedByEngineError(f"--engine {self.name}: {self.stateful_attention_refusal}")

    def bytes_per_token(self, spec: Spec, dtype: KVDtype) -> int:
        return spec.bytes_per_token(dtype)

    def fixed_bytes(self, spec: Spec, dtype: KVDtype, work: Workload | None = None) -> int:
        """Per-sequence bytes that do not grow (recurrent state); ``work`` carries a page to pad to."""
        if isinstance(spec, FixedState):
            return sum(d.row_bytes(n) for _, n, d in self.state_rows(spec, dtype))
        if isinstance(spec, StatefulAttention):
            # Its only per-sequence bytes are its state's, held as this engine holds a state layer's.
            return self.fixed_bytes(spec.state, dtype, work)
        return spec.fixed_bytes(dtype)

    def state_rows(self, spec: FixedState, dtype: KVDtype) -> list[tuple[str, int, KVDtype]]:
        """(name, values, dtype) of each tensor a fixed-state layer holds per sequence; ``verify``
        allocates exactly these. ``dtype`` is what ``state_dtype`` chose. Engine-neutral: the
        declared element counts in that dtype."""
        return [(key, n, dtype) for key, n in spec.state_elements.items()]

    def describe_state(self, spec: FixedState, dtype: KVDtype) -> str:
        """The state's formula terms, for ``--explain``."""
        return " + ".join(f"{key} {n:,} x {d.block_bytes} B" for key, n, d in self.state_rows(spec, dtype)) + \
            " per sequence"

    def fixed_layer_bytes(self, spec: Spec, dtype: KVDtype) -> int:
        """Per-layer bytes independent of batch (per-tensor scales)."""
        return spec.fixed_layer_bytes(dtype)

    def bookkeeping_bytes(self, spec: Spec) -> int:
        """Per-layer engine bookkeeping outside the K/V payload (transformers' int64 position
        scalars); reported apart from ``total_bytes``."""
        return 0

    def kv_bytes_per_token(self, spec: Spec, dtype: KVDtype) -> tuple[int, int]:
        """(K, V) bytes of one token in this layer; they sum to ``bytes_per_token``."""
        if isinstance(spec, StatefulAttention):
            return self.kv_bytes_per_token(spec.attention, dtype)
        total = self.bytes_per_token(spec, dtype)
        if isinstance(spec, FullAttention):
            heads = spec.num_kv_heads
            k = dtype.row_bytes(heads * spec.head_dim) + heads * dtype.scale_bytes_per_token_head
            return k, total - k
        if isinstance(spec, LatentAttention):
            # The latent is one K-like row; there is no separate V (llama.cpp MLA caches, recent builds).
            return total, 0
        return 0, 0

    def describe_tokens(self, spec: Spec, work: Workload) -> str:
        """How ``tokens_held`` was reached, for ``--explain``."""
        held = self.tokens_held(spec, work)
        window = getattr(spec, "window", None)
        if window is not None and held < work.seq_len:
            return f"min({work.seq_len}, window {window}) = {held} tokens"
        return f"{held} tokens"

    def prepare(self, layout: RankLayout, dtype: KVDtype, state_dtype: KVDtype, work: Workload) -> Workload:
        """Engine-wide settings a model's layout implies (vLLM raises the block size of a hybrid
        attention + Mamba model); the neutral engine has none."""
        return work

    def fixed_dtype(self, spec: Spec, kv_dtype: KVDtype, state_dtype: KVDtype) -> KVDtype:
        """The dtype a layer's per-sequence (non-growing) bytes are sized in: a state layer's own."""
        return state_dtype if isinstance(spec, FixedState | StatefulAttention) else kv_dtype

    def layer_bytes(self, spec: Spec, dtype: KVDtype, work: Workload, state_dtype: KVDtype | None = None,
                    residual_dtype: KVDtype | None = None) -> int:
        """Bytes one layer of ``spec`` holds for ``work``: the one formula estimate, plan and verify
        share. ``residual_dtype``: a quantized cache's full-precision residual (transformers
        ``QuantizedLayer`` keeps up to ``residual_length - 1`` newest tokens unquantized)."""
        held = self.tokens_held(spec, work)
        per = self.bytes_per_token(spec, dtype)
        token_bytes = held * per
        if residual_dtype is not None:
            residual = min(held, dtype.residual_tokens)
            token_bytes = (held - residual) * per + residual * self.bytes_per_token(spec, residual_dtype)
        sd = state_dtype if state_dtype is not None else dtype
        return ((token_bytes + self.fixed_bytes(spec, self.fixed_dtype(spec, dtype, sd), work)) * work.batch
                + self.fixed_layer_bytes(spec, dtype))

    def request_bytes(self, layout: RankLayout, dtype: KVDtype, work: Workload,
                      state_dtype: KVDtype | None = None) -> int:
        """KV bytes ``work`` takes on the largest rank (max over pipeline stages)."""
        from kvcalc.dtypes import resolve_dtype

        residual = resolve_dtype(dtype.residual_dtype, layout.model.dtype) if dtype.residual_dtype else None
        sd = state_dtype if state_dtype is not None else self.state_dtype(dtype, layout.model)
        work = self.prepare(layout, dtype, sd, work)
        memo: dict[Spec, int] = {}
        best = 0
        for stage in layout.stages:
            total = 0
            for s, n in stage.counts:
                b = memo.get(s)
                if b is None:
                    b = memo[s] = self.layer_bytes(s, dtype, work, sd, residual)
                total += b * n
            best = max(best, total)
        return best

    # -- tensors verify allocates -----------------------------------------------------------
    def cache_heads(self, spec: FullAttention) -> int:
        """KV heads this engine really caches for ``spec`` (transformers: Falcon's broadcast heads)."""
        return spec.num_kv_heads

    def attention_tensors(self, spec: FullAttention, dtype: KVDtype, work: Workload,
                          tokens: int) -> list[TensorLayout]:
        """Contiguous per-layer K ``[b, T, H, d]`` and V ``[b, T, H, d_v]`` (kvcalc's neutral layout)."""
        from kvcalc.measure.layout import typed

        b, h = work.batch, spec.num_kv_heads
        return [typed("k", (b, tokens, h, spec.head_dim), dtype), typed("v", (b, tokens, h, spec.v_dim), dtype)]

    def latent_tensors(self, spec: LatentAttention, dtype: KVDtype, work: Workload,
                       tokens: int) -> list[TensorLayout]:
        from kvcalc.measure.layout import typed

        return [typed("latent", (work.batch, tokens, spec.latent_dim), dtype)]

    def indexer_tensors(self, spec: IndexedLatentAttention, dtype: KVDtype, work: Workload,
                        tokens: int) -> list[TensorLayout]:
        """A DSA layer's indexer keys, one single-headed row per token (transformers 5.23
        ``DynamicIndexedLayer.indexer_keys`` ``[batch, seq, index_head_dim]``), scales as the latent's."""
        from kvcalc.measure.layout import row, token_scales

        out = [row("indexer_keys", (work.batch, tokens), spec.index_head_dim, dtype)]
        if dtype.scale_bytes_per_token_head:
            out += token_scales(dtype, work.batch, tokens, 1, ("indexer_scales",))
        return out

    def block_rows_lead(self, work: Workload, tokens: int) -> tuple[int, ...]:
        """Leading shape of block-format (GGUF, packed int4) rows: per sequence and token."""
        return (work.batch, tokens)

    # -- memory model -----------------------------------------------------------------------
    def default_fraction_for(self, model: ModelConfig, driver_bytes: int | None, tp: int,
                             pp: int) -> tuple[str, str] | None:
        """(fraction, how it was derived) when the engine computes its default; None: a fixed one."""
        return None

    def budget(self, total_bytes: int, weights_per_gpu: int, *, fraction: str | None = None,
               activation_bytes: int | None = None, non_torch_bytes: int | None = None,
               default_fraction: str | None = None) -> Budget:
        """What one GPU of ``total_bytes`` gives the KV cache under this engine (may be <= 0)."""
        from kvcalc.engines.memory import DEFAULT_ACTIVATION_BYTES, DEFAULT_NON_TORCH_BYTES, whole_remainder

        act = DEFAULT_ACTIVATION_BYTES if activation_bytes is None else activation_bytes
        non_torch = DEFAULT_NON_TORCH_BYTES if non_torch_bytes is None else non_torch_bytes
        frac = self.fraction(fraction, default_fraction)
        if frac is not None:
            return self.fraction_budget(frac, total_bytes, weights_per_gpu, act, non_torch)
        return whole_remainder(self.name, total_bytes, weights_per_gpu, act, non_torch)

    def profile_terms(self, model: ModelConfig, *, tp: int, max_num_batched_tokens: int,
                      max_num_seqs: int | None) -> tuple[Term, ...] | None:
        """The budget terms modelled as low / best / high for this engine's start-up (``name``
        ``non_torch`` is the non-torch term; every other one adds to the activation row), or None
        where kvcalc has no model and the fixed assumptions of memory.py apply."""
        return None

    def fraction(self, given: str | None, default: str | None = None) -> Decimal | None:
        """The memory fraction in force: given, else the derived default, else the fixed one."""
        from kvcalc.engines.memory import parse_fraction

        if self.fraction_flag is None:
            return None
        text = given if given is not None else (default or self.default_fraction)
        return parse_fraction(text, self.fraction_flag) if text is not None else None

    def fraction_budget(self, frac: Decimal, total_bytes: int, weights: int, activation: int,
                        non_torch: int) -> Budget:
        raise NotImplementedError(f"{type(self).__name__} declares {self.fraction_flag} but no fraction_budget")

    def batch_defaults(self, driver_bytes: int | None, gpu_label: str, max_model_len: int,
                       max_num_batched_tokens: int | None, max_num_seqs: int | None) -> tuple[int, int | None, str]:
        """(tokens per scheduler step, cap on running requests or None, where they came from); an
        engine without such limits: the given step size or the ``Workload`` default, no cap."""
        default = Workload.__dataclass_fields__["max_num_batched_tokens"].default
        assert isinstance(default, int)
        tokens = max_num_batched_tokens if max_num_batched_tokens is not None else default
        return tokens, None, "given"

    # -- pool -------------------------------------------------------------------------------
    def default_context(self, model: ModelConfig, total_vram_bytes: int | None,
                        given: int | None = None) -> tuple[int, str] | None:
        """The context per request the engine uses for ``given`` (None: not given; Ollama's default
        by VRAM, its cut to the trained context), and why; None: ``given``, else the model's maximum."""
        return None

    def cache_dtype_for(self, dtype: KVDtype, flash_attn: str) -> tuple[KVDtype, str | None]:
        """The cache dtype the engine really uses for ``dtype`` with flash attention ``flash_attn``
        (an engine that falls back to f16 says why); by default the one asked for."""
        return dtype, None

    def device_budget(self, req: PoolRequest, dev: DeviceRequest) -> DeviceBudget | None:
        """Weights, KV and the assumed terms per device, for engines that place whole layers on
        devices (llama.cpp ``-ngl`` / ``--tensor-split``); None: the engine shards every layer over
        its ranks and the per-GPU budget above is the answer."""
        return None

    def pool(self, req: PoolRequest) -> Pool:
        """Bytes over kvcalc's per-request cost: ``tokens`` = budget // bytes one token costs on the
        largest rank (states excluded: they are per request, not per token)."""
        from kvcalc.engines.capacity import Capacity

        budget = req.kv_budget_bytes
        layout, dtype = req.layout, req.dtype
        sd = self.state_dtype(dtype, layout.model)

        def cost(length: int) -> int:
            work = Workload(seq_len=length, block_size=req.block_size,
                            max_num_batched_tokens=req.max_num_batched_tokens)
            return self.request_bytes(layout, dtype, work, sd)

        cap = Capacity(unit="bytes", available=budget, cost=cost,
                       max_len=max(layout.model.max_position_embeddings, req.max_model_len))
        per_token = growing_bytes_per_token(layout, dtype)
        tokens = max(budget, 0) // per_token if per_token else 0
        return self.pool_answer(req, cap, unit_bytes=1, num_blocks=self.blocks_of(tokens), kv_tokens=tokens)

    def blocks_of(self, tokens: int) -> int | None:
        """The engine's block count for a pool of ``tokens`` (None when it has no blocks)."""
        return None

    def pool_answer(self, req: PoolRequest, cap: Capacity, *, unit_bytes: int, num_blocks: int | None,
                    kv_tokens: int | None, error: str | None = None, log_lines: list[str] | None = None,
                    notes: list[str] | None = None) -> Pool:
        """The fit check and the longest context from a capacity (every byte- or token-pool engine)."""
        from kvcalc.units import format_bytes

        budget = req.kv_budget_bytes
        one = cap.cost_of(req.max_model_len)
        fits = budget > 0 and one <= cap.available and error is None
        concurrency = cap.available / one if budget > 0 and one and error is None else 0.0
        reason, estimated = error, None
        if reason is None and budget <= 0:
            reason = self.no_memory_reason(req.budget)
        elif reason is None and not fits:
            estimated = cap.longest_context(1)
            need = f"{one:,} tokens of its {cap.available:,}-token pool" if cap.unit == "tokens" else (
                f"{format_bytes(one)} of KV per GPU, more than the {format_bytes(budget)} available")
            reason = (f"one request of {req.max_model_len:,} tokens needs {need}; the largest context that fits "
                      f"is {estimated:,}")
        return Pool(capacity=cap, fits=fits, num_blocks=num_blocks, kv_cache_tokens=kv_tokens,
                    max_concurrency=concurrency, estimated_max_model_len=estimated, reason=reason,
                    block_size=req.block_size, unit_bytes=unit_bytes, engine_version=self.version or self.name,
                    log_lines=list(log_lines or []), notes=list(notes or []))

    def no_memory_reason(self, bud: Budget) -> str:
        from kvcalc.units import format_bytes

        return f"no memory for the KV cache: the budget is {format_bytes(bud.kv_budget_bytes)} ({bud.formula})"

    # -- advice -----------------------------------------------------------------------------
    smaller_cache_dtypes: tuple[tuple[str, str], ...] = ()
    """(kvcalc dtype name, how to ask the engine for it), in the order to suggest them."""
    beyond_context = "the model was not trained on longer contexts"
    """What this engine does with a context beyond the model's max_position_embeddings."""

    def cache_dtype_hint(self, dtype: KVDtype) -> str | None:
        """The first smaller cache dtype this engine offers than ``dtype``, with the bytes it
        saves (per 1,024 values: exact), or None."""
        from kvcalc.dtypes import get_dtype

        current = dtype.row_bytes(1024)
        for name, how in self.smaller_cache_dtypes:
            smaller = get_dtype(name).row_bytes(1024)
            if smaller < current:
                return (f"--kv-dtype {name} ({how}): {smaller:,} B per 1,024 cached values instead of "
                        f"{current:,} B ({dtype.name})")
        return None

    # -- logs (``check-log`` reads them in ``kvcalc.engines.startup_log``) ---------------------
    def log_unit_note(self, line: str) -> str | None:
        """A note for one of this engine's log lines whose unit word differs from kvcalc's (the
        line itself is quoted verbatim), or None."""
        return None


StoragePolicy = Engine
"""The former name of ``Engine`` (its storage methods kept their names); kept for older callers."""


def growing_bytes_per_token(layout: RankLayout, dtype: KVDtype) -> int:
    """Bytes one more token costs on the largest rank, over the layers whose cache grows."""
    return max((sum(s.bytes_per_token(dtype) * n for s, n in st.counts if s.grows) for st in layout.stages),
               default=0)

