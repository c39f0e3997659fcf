"""vLLM (V1 engine, commit 001cabc1): paged blocks, what vLLM reserves for one request.

``estimate --engine vllm`` reports, per layer, vLLM's ``max_memory_usage_bytes`` for one request
of ``--seq-len`` tokens (``vllm/v1/kv_cache_interface.py`` @ 001cabc1), the same quantity the
planner's fit check uses (``kvcalc.engines.vllm_kv``), expressed as tokens held:

* full attention and MLA: ``cdiv(L, B) x B`` tokens (whole blocks);
* sliding window W: ``(cdiv(min(W - 1 + max_num_batched_tokens, L), B) + 1) x B`` (the +1 block
  covers a window that does not start on a block boundary);
* chunked local attention C: ``cdiv(min(C + max_num_batched_tokens, L), B) x B``;
* recurrent state layers: their state, no tokens.

Page bytes per token: H x (d + d_v) x b (plus per-token-head scales), MLA the latent
(kv_lora_rank + rope) x b with no factor 2. The block size is 16 (``CacheConfig``), forced to 64
for MLA models only when no ``--block-size`` is given (FlashMLA); an explicit block size wins. A
hybrid attention + Mamba model raises the attention block so one page holds the Mamba state and
pads the state to that page (``prepare``), exactly as the planner's layout does.
Per-tensor fp8 scales live outside the page and are not counted (``KVQuantMode.FP8_PER_TENSOR``).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar

from kvcalc.dtypes import KVDtype, cdiv
from kvcalc.engines.base import Engine, Pool, PoolRequest, Workload
from kvcalc.engines.logcheck import NUM, Check, LogFacts, gib_range, num
from kvcalc.engines.vllm_kv import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_MAX_NUM_BATCHED_TOKENS,
    MAMBA_ALIGN,
    MLA_BLOCK_SIZE,
    VLLM_VERSION,
    Layout,
    build_layout,
    default_block_size,
    num_blocks_interval,
    vllm_kv,
)
from kvcalc.specs import ChunkedAttention, FixedState, FullAttention, LatentAttention, SlidingWindowAttention, Spec
from kvcalc.units import GiB

if TYPE_CHECKING:
    from kvcalc.engines.memory import Budget
    from kvcalc.layout import RankLayout
    from kvcalc.measure.layout import TensorLayout
    from kvcalc.models import ModelConfig

DEFAULT_MAX_NUM_SEQS = 256
"""``max_num_seqs`` when no GPU is named (``--kv-budget`` alone); with a GPU, vLLM's own default."""


class VllmEngine(Engine):
    name = "vllm"
    title = "vLLM (paged blocks)"
    version = VLLM_VERSION
    source = (
        "vLLM V1 @ 001cabc1, vllm/v1/kv_cache_interface.py max_memory_usage_bytes: whole blocks of "
        "--block-size tokens (16; 64 for MLA unless given); sliding layers cdiv(min(W-1+chunk, L), B)+1 blocks"
    )
    plannable = True
    fraction_flag = "--gpu-memory-utilization"
    default_fraction = "0.92"
    """vllm/config/cache.py @ 002f10e0 (0.92 since PR #38284, released in 0.20.0); see engines/memory.py."""
    shares_prefix = True
    log_engine = "vllm"
    dtype_spellings: ClassVar[dict[str, str]] = {"fp8_inc": "fp8_e4m3"}
    """vllm/config/cache.py CacheDType: ``fp8_inc`` is fp8 E4M3 for Intel Gaudi (1 byte a value)."""
    smaller_cache_dtypes = (("fp8", "halves a 16-bit KV cache (vLLM --kv-cache-dtype fp8)"),)

    # MambaStateDtypeCalculator (vllm/model_executor/layers/mamba/mamba_utils.py, 0.19.1): conv
    # state in get_kv_cache_torch_dtype(mamba_cache_dtype "auto", model dtype), the temporal state
    # the same unless mamba_ssm_cache_dtype is set (NemotronH: float16, 2 bytes like the bf16
    # model); --kv-cache-dtype does not apply to them.
    states_in_model_dtype = True

    def auto_dtype(self, model: ModelConfig) -> tuple[str, str]:
        # vllm/config/model.py _resolve_auto_dtype (0.33.0, and since 2024): a float32 config is
        # downcast to the platform's first supported dtype, bf16 on Ampere and newer (fp16 on
        # V100/T4: the same 2 bytes); the cache dtype "auto" follows the model dtype.
        if model.dtype == "fp32":
            return "bf16", "vLLM downcasts a float32 model"
        return model.dtype, "model dtype"

    def compute_dtype(self, model: ModelConfig) -> str:
        return self.auto_dtype(model)[0]

    @staticmethod
    def block_size(spec: Spec, work: Workload) -> int:
        if work.block_size is not None:
            return work.block_size
        return MLA_BLOCK_SIZE if isinstance(spec, LatentAttention) else DEFAULT_BLOCK_SIZE

    def prepare(self, layout: RankLayout, dtype: KVDtype, state_dtype: KVDtype, work: Workload) -> Workload:
        """The block size vLLM uses for every layer (``default_block_size``), raised for a hybrid
        attention + Mamba model to the smallest multiple of 16 whose page holds the state, and the
        state padded to that page (``HybridAttentionMambaModelConfig.verify_and_update_config``)."""
        import dataclasses

        specs = list(layout.counts)
        block = default_block_size(specs, work.block_size)
        states = [s.fixed_bytes(state_dtype) for s in specs if isinstance(s, FixedState)]
        attn = [s.bytes_per_token(dtype) for s in specs if s.grows]
        page: int | None = None
        if states and attn:
            if block * attn[0] < max(states):
                block = MAMBA_ALIGN * cdiv(max(states), MAMBA_ALIGN * attn[0])
            page = block * attn[0]
        return dataclasses.replace(work, block_size=block, state_page_bytes=page)

    def _blocks(self, spec: Spec, work: Workload) -> int:
        b = self.block_size(spec, work)
        length = work.seq_len
        if isinstance(spec, SlidingWindowAttention):
            return cdiv(min(spec.window - 1 + work.max_num_batched_tokens, length), b) + 1
        if isinstance(spec, ChunkedAttention):
            return cdiv(min(spec.chunk_size + work.max_num_batched_tokens, length), b)
        return cdiv(length, b)

    def tokens_held(self, spec: Spec, work: Workload) -> int:
        if not spec.grows:
            return 0
        return self._blocks(spec, work) * self.block_size(spec, work)

    def fixed_bytes(self, spec: Spec, dtype: KVDtype, work: Workload | None = None) -> int:
        state = super().fixed_bytes(spec, dtype, work)
        if isinstance(spec, FixedState) and work is not None and work.state_page_bytes is not None:
            return max(state, work.state_page_bytes)  # the Mamba page padded to the attention page
        return state

    def fixed_layer_bytes(self, spec: Spec, dtype: KVDtype) -> int:
        # Per-tensor K/V scales are module attributes, not carved from the KV pages.
        return 0

    def describe_tokens(self, spec: Spec, work: Workload) -> str:
        if not spec.grows:
            return "0 tokens"
        b = self.block_size(spec, work)
        blocks = self._blocks(spec, work)
        if isinstance(spec, SlidingWindowAttention):
            span = min(spec.window - 1 + work.max_num_batched_tokens, work.seq_len)
            return (
                f"(cdiv(min({spec.window} - 1 + {work.max_num_batched_tokens}, {work.seq_len}) = {span}, {b}) + 1)"
                f" = {blocks} blocks x {b} = {blocks * b} tokens"
            )
        if isinstance(spec, ChunkedAttention):
            span = min(spec.chunk_size + work.max_num_batched_tokens, work.seq_len)
            return f"cdiv({span}, {b}) = {blocks} blocks x {b} = {blocks * b} tokens"
        return f"cdiv({work.seq_len}, {b}) = {blocks} blocks x {b} = {blocks * b} tokens"

    # -- tensors: FlashAttention's [2, num_blocks, B, H, d] per layer; MLA [num_blocks, B, latent]
    def _paged(self, spec: Spec, work: Workload, tokens: int) -> tuple[int, int] | None:
        block = self.block_size(spec, work)
        if block <= 0 or tokens % block:
            return None
        return work.batch * tokens // block, block

    def attention_tensors(self, spec: FullAttention, dtype: KVDtype, work: Workload,
                          tokens: int) -> list[TensorLayout]:
        from kvcalc.measure.layout import typed

        h, d, dv = spec.num_kv_heads, spec.head_dim, spec.v_dim
        paged = self._paged(spec, work, tokens)
        if paged is None:
            n = work.batch * tokens
            return [typed("k_buffer", (n, h, d), dtype), typed("v_buffer", (n, h, dv), dtype)]
        blocks, block = paged
        if d == dv:
            return [typed("kv_cache", (2, blocks, block, h, d), dtype)]
        return [typed("k_cache", (blocks, block, h, d), dtype), typed("v_cache", (blocks, block, h, dv), dtype)]

    def latent_tensors(self, spec: LatentAttention, dtype: KVDtype, work: Workload,
                       tokens: int) -> list[TensorLayout]:
        from kvcalc.measure.layout import typed

        paged = self._paged(spec, work, tokens)
        if paged is None:
            return super().latent_tensors(spec, dtype, work, tokens)
        return [typed("kv_cache", (paged[0], paged[1], spec.latent_dim), dtype)]

    def block_rows_lead(self, work: Workload, tokens: int) -> tuple[int, ...]:
        return (work.batch * tokens,)

    # -- memory -----------------------------------------------------------------------------
    def fraction_budget(self, frac: Decimal, total_bytes: int, weights: int, activation: int,
                        non_torch: int) -> Budget:
        from kvcalc.engines.memory import fraction_of_total

        assert self.fraction_flag is not None
        return fraction_of_total(self.name, self.fraction_flag, frac, total_bytes, weights, activation, non_torch)

    def no_memory_reason(self, bud: Budget) -> str:
        from kvcalc.engines.vllm_kv import CONSERVING_MEMORY_URL

        return ("No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
                f"initializing the engine. See {CONSERVING_MEMORY_URL} for more details.")

    def batch_defaults(self, driver_bytes: int | None, gpu_label: str, max_model_len: int,
                       max_num_batched_tokens: int | None, max_num_seqs: int | None) -> tuple[int, int | None, str]:
        """(max_num_batched_tokens, max_num_seqs, where they came from) as ``vllm serve`` sets them.

        vLLM ``EngineArgs.get_batch_defaults`` / ``_set_default_max_num_seqs_and_batched_tokens_args``
        (vllm/engine/arg_utils.py, the tree of 001cabc1): usage context OPENAI_API_SERVER; a GPU whose
        NVML total is >= 70 GiB and whose name has no "a100" gets 8192 tokens and 1024 sequences,
        any other 2048 and 256; then, for defaulted values, ``tokens = min(seqs x max_model_len,
        tokens)`` and ``seqs = min(seqs, tokens)`` (chunked prefill is on in V1). With no GPU named
        (``--kv-budget`` alone) kvcalc uses 8192 and 256.
        """
        if driver_bytes is None:
            tokens, seqs, why = DEFAULT_MAX_NUM_BATCHED_TOKENS, DEFAULT_MAX_NUM_SEQS, "kvcalc's default (no GPU named)"
        elif driver_bytes >= 70 * GiB and "a100" not in gpu_label.lower():
            tokens, seqs, why = 8192, 1024, "vllm serve's default for a GPU of 70 GiB or more (not A100)"
        else:
            tokens, seqs, why = 2048, 256, "vllm serve's default for this GPU (under 70 GiB, or an A100)"
        tokens = min((max_num_seqs or seqs) * max_model_len, tokens) if max_num_batched_tokens is None \
            else max_num_batched_tokens
        seqs = min(seqs, tokens) if max_num_seqs is None else max_num_seqs
        if max_num_batched_tokens is not None and max_num_seqs is not None:
            why = "given"
        return tokens, seqs, why

    # -- pool: vLLM's own block arithmetic (engines/vllm_kv.py) ------------------------------
    def vllm_layout(self, layout: RankLayout, dtype: KVDtype, block_size: int | None) -> Layout:
        return build_layout(layout.model.layer_specs, dtype, tp=layout.tp, pp=layout.pp, block_size=block_size,
                            state_dtype=self.state_dtype(dtype, layout.model))

    def pool(self, req: PoolRequest) -> Pool:
        from kvcalc.engines.capacity import Capacity

        vl = self.vllm_layout(req.layout, req.dtype, req.block_size)
        mnbt = req.max_num_batched_tokens
        vk = vllm_kv(req.model.layer_specs, req.dtype, req.kv_budget_bytes, req.max_model_len,
                     block_size=req.block_size, max_num_batched_tokens=mnbt, layout=vl)
        workers = vl.active

        def cost(length: int) -> int:
            return max(w.blocks_per_request(length, mnbt) for w in workers)

        def shared(p: int) -> int:
            # Prefix caching hashes whole blocks of full-attention / MLA groups only.
            return max(sum(p // g.spec.block_size for g in w.groups if g.spec.kind in ("full", "mla"))
                       for w in workers)

        cap = Capacity(unit="blocks", available=max(vk.num_blocks - 1, 0), cost=cost, shared=shared,
                       max_len=max(req.model.max_position_embeddings, vk.max_model_len))
        return Pool(capacity=cap, fits=vk.fits, num_blocks=vk.num_blocks, kv_cache_tokens=vk.kv_cache_tokens,
                    max_concurrency=vk.max_concurrency, estimated_max_model_len=vk.estimated_max_model_len,
                    reason=vk.error, block_size=vk.block_size, unit_bytes=vk.block_bytes, engine_version=vk.version,
                    log_lines=list(vk.log_lines), details=vk.to_dict(), max_running=req.max_num_seqs,
                    max_running_flag="--max-num-seqs")

    # -- logs -------------------------------------------------------------------------------
    log_patterns: ClassVar[dict[str, re.Pattern[str]]] = {
        "available_gib": re.compile(r"Available KV cache memory:\s*" + NUM + r"\s*GiB"),
        "kv_tokens": re.compile(r"GPU KV cache size:\s*" + NUM + r"\s*tokens"),
        "concurrency": re.compile(r"Maximum concurrency for\s*" + NUM + r"\s*tokens per request:\s*" + NUM + "x"),
        "blocks": re.compile(r"#\s*(?:GPU|CUDA|cuda|gpu)\s+blocks:\s*" + NUM),
        "total_gib": re.compile(r"total_gpu_memory \(\s*" + NUM + r"\s*GiB\) x gpu_memory_utilization \(\s*" + NUM),
        "weights_gib": re.compile(r"model weights take\s*" + NUM + r"\s*GiB"),
        "non_torch_gib": re.compile(r"non_torch_memory takes\s*" + NUM + r"\s*GiB"),
        "activation_gib": re.compile(r"activation peak memory takes\s*" + NUM + r"\s*GiB"),
        "rest_gib": re.compile(r"reserved for KV Cache is\s*" + NUM + r"\s*GiB"),
        "fit_error": re.compile(r"max seq len \(" + NUM + r"\), \(" + NUM + r" GiB KV cache is needed.*?memory \("
                                + NUM + r" GiB\)(?:.*?estimated maximum model length is " + NUM + ")?"),
        "model_cfg": re.compile(r"model='([^']+)'"),
        "max_seq_len": re.compile(r"max_seq_len=([0-9]+)"),
        "tp_cfg": re.compile(r"tensor_parallel_size=([0-9]+)"),
        "kv_dtype_cfg": re.compile(r"kv_cache_dtype=([A-Za-z0-9_]+)"),
    }
    log_markers = ("vllm serve", "vllm.entrypoints")
    log_keys = ("available_gib", "kv_tokens", "blocks", "rest_gib")

    def reads_log(self, facts: LogFacts) -> bool:
        return facts.engine == "vllm" or any(k in facts.values for k in ("available_gib", "blocks", "kv_tokens"))

    def check_log(self, facts: LogFacts, model: ModelConfig, dtype: KVDtype, tp: int,
                  block_size: int | None) -> list[Check]:
        return _check_vllm(self, facts, model, dtype, tp, block_size)


def _check_vllm(engine: VllmEngine, facts: LogFacts, model: ModelConfig, dtype: KVDtype, tp: int,
                bs: int | None) -> list[Check]:
    from kvcalc.layout import RankLayout

    mml = facts.max_model_len or model.max_position_embeddings
    layout = engine.vllm_layout(RankLayout(model, tp, 1), dtype, bs)
    specs = model.layer_specs
    avail_text = facts.first("available_gib") or facts.first("rest_gib")
    logged_blocks = int(num(facts.values["blocks"][0])) if "blocks" in facts.values else None
    logged_tokens = int(num(facts.values["kv_tokens"][0])) if "kv_tokens" in facts.values else None
    blocks_item = "blocks"
    if logged_blocks is None and logged_tokens is not None and len(layout.grouping.groups) == 1:
        logged_blocks = logged_tokens // layout.block_size
        blocks_item = "blocks (logged tokens / block size)"
    out: list[Check] = []
    if avail_text is not None:
        low, mid, high = gib_range(avail_text)
        r = vllm_kv(specs, dtype, mid, mml, tp=tp, block_size=bs, layout=layout)
        lo_b, hi_b = num_blocks_interval(low, high, r.block_bytes)
        if logged_blocks is not None:
            out.append(Check(item=blocks_item, logged=f"{logged_blocks:,}", predicted=f"{lo_b:,}..{hi_b:,}",
                             difference=f"{logged_blocks - r.num_blocks:+,} vs midpoint {r.num_blocks:,}",
                             matches=lo_b <= logged_blocks <= hi_b,
                             basis=f"{avail_text} GiB +-0.005 // {r.block_bytes:,} B per block ({r.version})"))
        if logged_tokens is not None:
            out.append(_tokens_check(facts, r, specs, dtype, layout, logged_tokens, (lo_b, hi_b), mml, tp, bs))
        if "fit_error" in facts.values:
            out += _fit_error_checks(facts, specs, dtype, layout, (low, mid, high), tp, bs)
    if "concurrency" in facts.values and avail_text is not None and logged_blocks is None:
        # No block count in the log (a hybrid model's newer-form token line): predict the
        # concurrency from the block range the logged memory allows.
        length, shown = facts.values["concurrency"]
        low, mid, high = gib_range(avail_text)
        r3 = vllm_kv(specs, dtype, mid, int(num(length)), tp=tp, block_size=bs, layout=layout)
        lo_b, hi_b = num_blocks_interval(low, high, r3.block_bytes)
        lo_c, hi_c = f"{lo_b / r3.blocks_per_request:.2f}", f"{hi_b / r3.blocks_per_request:.2f}"
        out.append(Check(item=f"Maximum concurrency at {int(num(length)):,} tokens", logged=f"{shown}x",
                         predicted=f"{lo_c}x..{hi_c}x" if lo_c != hi_c else f"{lo_c}x",
                         difference=f"{num(shown) - Decimal(f'{r3.max_concurrency:.2f}'):+.2f}",
                         matches=Decimal(lo_c) <= num(shown) <= Decimal(hi_c),
                         basis=f"{lo_b:,}..{hi_b:,} blocks / {r3.blocks_per_request:,} blocks per request"))
    if "concurrency" in facts.values and logged_blocks is not None:
        length, shown = facts.values["concurrency"]
        r2 = vllm_kv(specs, dtype, 0, int(num(length)), tp=tp, block_size=bs, layout=layout)
        bpr = layout.active[0].blocks_per_request(int(num(length)), r2.max_num_batched_tokens)
        value = logged_blocks / bpr
        out.append(Check(item=f"Maximum concurrency at {int(num(length)):,} tokens", logged=f"{shown}x",
                         predicted=f"{value:.2f}x", difference=f"{num(shown) - Decimal(f'{value:.2f}'):+.2f}",
                         matches=f"{value:.2f}" == f"{num(shown):.2f}",
                         basis=f"logged blocks {logged_blocks:,} / {bpr:,} blocks per request"))
    if avail_text is None and logged_blocks is not None:
        implied = logged_blocks * layout.active[0].page_size_bytes * max(layout.active[0].group_size, 1)
        out.append(Check(item="KV cache memory implied by the blocks", logged=f"{logged_blocks:,} blocks",
                         predicted=f"{implied / GiB:.2f} GiB", difference="-", matches=None,
                         basis="blocks x block bytes (the log gives no memory figure to compare)"))
    return out


def _tokens_check(facts: LogFacts, r: object, specs: tuple[Spec, ...], dtype: KVDtype, layout: Layout,
                  logged_tokens: int, blocks: tuple[int, int], mml: int, tp: int, bs: int | None) -> Check:
    """001cabc1 (_report_kv_cache_config): num_blocks // groups x block size. Newer vLLM
    (get_kv_cache_capacity, e.g. 0.33.0): int(num_blocks / blocks_per_request x L), L the max model
    length. Both agree for one group with L a multiple of the block size; the log is matched
    against either, and the check says which."""
    from kvcalc.engines.vllm_kv import VllmKV

    assert isinstance(r, VllmKV)
    lo_b, hi_b = blocks
    lo_t = lo_b // r.num_groups * r.block_size
    hi_t = hi_b // r.num_groups * r.block_size
    req_len = int(num(facts.values["concurrency"][0])) if "concurrency" in facts.values else mml
    bpr = r.blocks_per_request if r.max_model_len == req_len else vllm_kv(
        specs, dtype, r.available_bytes, req_len, tp=tp, block_size=bs, layout=layout).blocks_per_request
    lo_n, hi_n = (int(lo_b / bpr * req_len), int(hi_b / bpr * req_len)) if bpr else (0, 0)
    old_form = lo_t <= logged_tokens <= hi_t
    new_form = bool(bpr) and lo_n <= logged_tokens <= hi_n
    basis = "num_blocks // groups x block size (001cabc1 form)"
    predicted = f"{lo_t:,}..{hi_t:,}"
    if new_form and not old_form:
        basis = f"int(num_blocks / {bpr:,} blocks per request x {req_len:,}) (newer vLLM form)"
        predicted = f"{lo_n:,}..{hi_n:,}"
    elif not old_form:
        basis += f"; newer vLLM form int(num_blocks / {bpr:,} x {req_len:,}) gives {lo_n:,}..{hi_n:,}"
    return Check(item="GPU KV cache size (tokens)", logged=f"{logged_tokens:,}", predicted=predicted,
                 difference=f"{logged_tokens - r.kv_cache_tokens:+,}", matches=old_form or new_form,
                 basis=basis + ", from the logged KV memory")


def _fit_error_checks(facts: LogFacts, specs: tuple[Spec, ...], dtype: KVDtype, layout: Layout,
                      avail: tuple[int, int, int], tp: int, bs: int | None) -> list[Check]:
    low, mid, high = avail
    length, needed, _avail, est = facts.values["fit_error"]
    rr = vllm_kv(specs, dtype, mid, int(num(length)), tp=tp, block_size=bs, layout=layout)
    out = [Check(item="KV needed for max seq len (GiB)", logged=needed, predicted=f"{rr.needed_bytes / GiB:.2f}",
                 difference=f"{num(needed) - Decimal(rr.needed_bytes) / GiB:+.2f}",
                 matches=f"{rr.needed_bytes / GiB:.2f}" == f"{num(needed):.2f}",
                 basis="sum over groups of max_memory_usage_bytes (001cabc1)")]
    if est:
        pred = rr.estimated_max_model_len or 0
        lo_e = vllm_kv(specs, dtype, low, int(num(length)), tp=tp, block_size=bs,
                       layout=layout).estimated_max_model_len or 0
        hi_e = vllm_kv(specs, dtype, high, int(num(length)), tp=tp, block_size=bs,
                       layout=layout).estimated_max_model_len or 0
        out.append(Check(item="estimated maximum model length", logged=est, predicted=f"{lo_e:,}..{hi_e:,}",
                         difference=f"{int(num(est)) - pred:+,}", matches=lo_e <= int(num(est)) <= hi_e,
                         basis="binary search over the groups' usage (001cabc1)"))
    return out


VllmPolicy = VllmEngine
"""The former name."""
ENGINE = VllmEngine()
POLICY = ENGINE
