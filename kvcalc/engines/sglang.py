"""SGLang: a token-granular pool (page size 1 by default), MLA stored as the latent.

Source: sgl-project/sglang ``python/sglang/srt/mem_cache/memory_pool.py`` (``MHATokenToKVPool``:
per layer K ``[size + page_size, H_rank, head_dim]`` and V ``[..., v_head_dim]``;
``MLATokenToKVPool``: one ``[size + page_size, 1, kv_lora_rank + qk_rope_head_dim]`` buffer) and
``model_runner.profile_max_num_token`` / ``pool_configurator.py`` (cell size per token:
``H_rank x (d + d_v) x L x b``, MLA ``(kv_lora_rank + rope) x L x b``), as described in the
kvcalc reference §2. A sequence of ``L`` tokens holds ``L`` slots per layer, rounded up to whole
pages when ``--block-size`` (SGLang ``--page-size``) is above 1. Sliding-window layers are
modelled with a full cache (SGLang's hybrid SWA pool is sized separately from a ratio and is a
planner concern); recurrent layers hold their state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kvcalc.dtypes import KVDtype, cdiv
from kvcalc.engines.base import Engine, Pool, PoolRequest, Workload
from kvcalc.errors import UnsupportedByEngineError
from kvcalc.specs import CrossAttention, FixedState, FullAttention, IndexedLatentAttention, LatentAttention, Spec
from kvcalc.units import GiB, MiB

if TYPE_CHECKING:
    from decimal import Decimal

    from kvcalc.engines.memory import Budget
    from kvcalc.layout import RankLayout
    from kvcalc.measure.layout import TensorLayout
    from kvcalc.models import ModelConfig

SGLANG_VERSION = "SGLang 0.5.23 (memory_pool.py token pools)"


def kv_row_bytes(layout: RankLayout, dtype: KVDtype) -> tuple[int, int]:
    """(K, V) bytes of one token slot over the first stage's attention layers, as SGLang's pools
    allocate them (``MHATokenToKVPool``: K ``H x d``, V ``H x d_v`` per layer; ``MLATokenToKVPool``
    one latent buffer, counted as K). The one place SGLang's K/V sizes are written."""
    k = v = 0
    for s, n in layout.stages[0].counts:
        if isinstance(s, LatentAttention):
            k += s.bytes_per_token(dtype) * n
        elif isinstance(s, FullAttention):
            k += dtype.row_bytes(s.num_kv_heads * s.head_dim) * n
            v += dtype.row_bytes(s.num_kv_heads * s.v_dim) * n
    return k, v


def alloc_log_line(tokens: int, k: int, v: int) -> str:
    """``KV Cache is allocated. #tokens: N, K size: x GB, V size: y GB`` ("GB" is GiB), over
    ``tokens + 1`` slots (one dummy page); an MLA pool prints one ``KV size``."""
    slots = tokens + 1
    if v == 0:
        return f"KV Cache is allocated. #tokens: {tokens}, KV size: {slots * k / GiB:.2f} GB"
    return (f"KV Cache is allocated. #tokens: {tokens}, K size: {slots * k / GiB:.2f} GB, "
            f"V size: {slots * v / GiB:.2f} GB")


class SglangEngine(Engine):
    name = "sglang"
    title = "SGLang (token pool)"
    version = SGLANG_VERSION
    dp_attention_flag = "--enable-dp-attention"
    speculative_flag = "--speculative-algorithm"
    """Data-parallel attention (``--enable-dp-attention --dp N``): attention runs at TP
    ``tp // dp`` (0.5.23 ``srt/layers/dp_attention.py:445-460``, ``srt/distributed/parallel_state.py:2604-2606``),
    the pool's KV heads are split by that width (``srt/mem_cache/kv_cache_configurator.py:1375-1376``), and
    each DP rank keeps its own requests' cache; an MLA latent is not split by TP at all."""
    served_release: str | None = "SGLang 0.5.23"
    """The architecture table read from this release (``kvcalc.engines.served``)."""
    source = (
        "SGLang memory_pool.py MHATokenToKVPool/MLATokenToKVPool: one slot per token per layer "
        "(page_size 1 unless --block-size), MLA latent (kv_lora_rank + rope) x b, no window cap"
    )
    plannable = True
    fraction_flag = "--mem-fraction-static"
    shares_prefix = True
    log_engine = "sglang"
    smaller_cache_dtypes = (("fp8", "SGLang --kv-cache-dtype fp8_e4m3"),)

    def auto_dtype(self, model: ModelConfig) -> tuple[str, str]:
        # sglang/srt/configs/model_config.py _get_and_verify_dtype (0.5.23): a float32 config runs
        # in float16, Gemma models in bfloat16; the cache dtype "auto" follows the model dtype.
        if model.dtype == "fp32":
            gemma = (model.architecture or "").lower().startswith("gemma") or model.name.lower().startswith("gemma")
            return ("bf16", "SGLang downcasts a float32 Gemma to bf16") if gemma else (
                "fp16", "SGLang downcasts a float32 model to fp16")
        return model.dtype, "model dtype"

    def compute_dtype(self, model: ModelConfig) -> str:
        return self.auto_dtype(model)[0]

    def state_rows(self, spec: FixedState, dtype: KVDtype) -> list[tuple[str, int, KVDtype]]:
        # sglang/srt/configs/mamba_utils.py mamba2_state_dtype (0.5.23): conv state bfloat16
        # (SGLANG_MAMBA_CONV_DTYPE default), temporal / SSM state float32 (mamba_ssm_dtype default),
        # in the separate Mamba pool; conv keeps conv_kernel - 1 columns, as vLLM's.
        from kvcalc.dtypes import get_dtype

        return [(key, n, get_dtype("bf16" if key == "conv" else "fp32")) for key, n in spec.state_elements.items()]

    def bytes_per_token(self, spec: Spec, dtype: KVDtype) -> int:
        if isinstance(spec, IndexedLatentAttention):
            # NSATokenToKVPool (memory_pool.py) / pool_configurator: the latent plus an fp8 indexer key
            # with one float32 scale per 128 values, index_head_dim + index_head_dim // 128 x 4 bytes
            # (kvcalc reference 2.4), whatever the latent's dtype; one rule with the pool's cell.
            from kvcalc.engines.sglang_pool import indexed_latent_bytes_per_token

            return indexed_latent_bytes_per_token(spec, dtype)
        return spec.bytes_per_token(dtype)

    stateful_attention_refusal = (
        "layers holding a Mamba state and an attention KV cache at once (Falcon-H1, Zamba2) are not modelled "
        "for SGLang (0.5.23 serves FalconH1ForCausalLM with a separate Mamba pool, srt/models/falcon_h1.py; "
        "it has no Zamba2); use --engine neutral, hf or hf-static")

    def tokens_held(self, spec: Spec, work: Workload) -> int:
        self.refuse_stateful_attention(spec)
        if isinstance(spec, CrossAttention):
            if spec.encoder_tokens:
                raise UnsupportedByEngineError(
                    "--engine sglang: cross-attention (Mllama) pools for vision tokens are not modelled")
            return 0
        if not spec.grows:
            return 0
        page = work.block_size or 1
        return cdiv(work.seq_len, page) * page

    def describe_tokens(self, spec: Spec, work: Workload) -> str:
        page = work.block_size or 1
        held = self.tokens_held(spec, work)
        if page == 1:
            return f"{held} tokens (page 1)"
        return f"cdiv({work.seq_len}, page {page}) x {page} = {held} tokens"

    # -- tensors: K [b x T, H, d], V [b x T, H, d_v]; MLA [b x T, 1, latent] --------------------
    def attention_tensors(self, spec: FullAttention, dtype: KVDtype, work: Workload,
                          tokens: int) -> list[TensorLayout]:
        from kvcalc.measure.layout import typed

        n, h = work.batch * tokens, spec.num_kv_heads
        return [typed("k_buffer", (n, h, spec.head_dim), dtype), typed("v_buffer", (n, h, spec.v_dim), dtype)]

    def latent_tensors(self, spec: LatentAttention, dtype: KVDtype, work: Workload,
                       tokens: int) -> list[TensorLayout]:
        from kvcalc.measure.layout import typed

        return [typed("kv_buffer", (work.batch * tokens, 1, spec.latent_dim), dtype)]

    def indexer_tensors(self, spec: IndexedLatentAttention, dtype: KVDtype, work: Workload,
                        tokens: int) -> list[TensorLayout]:
        # The NSA indexer key buffer: fp8 values and a float32 scale per 128, as uint8 rows.
        from kvcalc.measure.layout import TensorLayout as TL

        row = spec.index_head_dim + spec.index_head_dim // 128 * 4
        return [TL(name="index_k_buffer", shape=(work.batch * tokens, 1, row), torch_dtype="uint8")]

    def block_rows_lead(self, work: Workload, tokens: int) -> tuple[int, ...]:
        return (work.batch * tokens,)

    # -- memory -----------------------------------------------------------------------------
    def default_fraction_for(self, model: ModelConfig, driver_bytes: int | None, tp: int,
                             pp: int) -> tuple[str, str] | None:
        """SGLang 0.5.23's derived ``mem_fraction_static`` (engines/sglang_memory.py). A deployment
        whose reserve exceeds the GPU (e.g. tp x pp in the thousands) derives a fraction <= 0:
        SGLang cannot start with it, and the error says so instead of blaming a flag not given."""
        from kvcalc.engines.sglang_memory import sglang_default_fraction
        from kvcalc.errors import InvalidRequestError

        if driver_bytes is None:
            return None
        text, how = sglang_default_fraction(
            driver_bytes // MiB, tp=tp, pp=pp, mla=model.is_mla,
            model_name=f"{model.name} {model.source.hf_repo or ''}")
        if not float(text) > 0:
            raise InvalidRequestError(
                "tp x pp", f"{tp} x {pp}",
                f"a deployment SGLang's default memory fraction can start: {how}, which is not a fraction "
                "(the reserve it computes exceeds the GPU); pass --mem-fraction-static, or use fewer GPUs per replica")
        return text, how

    def fraction_budget(self, frac: Decimal, total_bytes: int, weights: int, activation: int,
                        non_torch: int) -> Budget:
        from kvcalc.engines.memory import fraction_of_free_before_load

        assert self.fraction_flag is not None
        return fraction_of_free_before_load(self.name, self.fraction_flag, frac, total_bytes, weights, non_torch)

    def budget(self, total_bytes: int, weights_per_gpu: int, *, fraction: str | None = None,
               activation_bytes: int | None = None, non_torch_bytes: int | None = None,
               default_fraction: str | None = None) -> Budget:
        if fraction is None and default_fraction is None:
            from kvcalc.engines.sglang_memory import sglang_default_fraction

            default_fraction = sglang_default_fraction(total_bytes // MiB)[0]
        return super().budget(total_bytes, weights_per_gpu, fraction=fraction, activation_bytes=activation_bytes,
                              non_torch_bytes=non_torch_bytes, default_fraction=default_fraction)

    def no_memory_reason(self, bud: Budget) -> str:
        return "Not enough memory. Please try to increase --mem-fraction-static."

    # -- pool -------------------------------------------------------------------------------
    def pool(self, req: PoolRequest) -> Pool:
        """``max_total_num_tokens`` from the budget (engines/sglang_pool.py); a request of L
        tokens costs its bytes (default pool), or L page-aligned slots of the full-layer pool
        (hybrid SWA); a shared prefix is stored once (the radix cache)."""
        from kvcalc.engines.capacity import Capacity
        from kvcalc.engines.sglang_pool import SGLANG_POOL_VERSION, sglang_pool

        layout, dtype, page = req.layout, req.dtype, req.block_size or 1
        pool = sglang_pool(req.model, dtype, req.kv_budget_bytes, tp=layout.tp, pp=layout.pp, page_size=page)
        tokens = pool.max_total_num_tokens
        top = max(req.model.max_position_embeddings, req.max_model_len)
        if pool.hybrid_swa:
            # Split pools: a request holds its whole length in the full-layer pool (the one
            # SGLang reports); the SWA pool, 0.8 of it, holds only the window.
            cap = Capacity(unit="tokens", available=tokens, cost=lambda n: -(-n // page) * page,
                           shared=lambda n: n // page * page, max_len=top)
            notes = [f"SGLang hybrid sliding-window pool ({SGLANG_POOL_VERSION}, architecture "
                     f"{req.model.architecture}): {pool.cell}; full-layer pool {tokens:,} tokens, SWA pool "
                     f"{pool.swa_tokens:,} tokens (swa_full_tokens_ratio 0.8)"]
            unit = max(req.kv_budget_bytes, 0) // tokens if tokens > 0 else 1
            return self.pool_answer(req, cap, unit_bytes=unit, num_blocks=None, kv_tokens=tokens, error=pool.error,
                                    log_lines=list(pool.log_lines), notes=notes)
        sd = self.state_dtype(dtype, req.model)

        def cost(length: int) -> int:
            return self.request_bytes(layout, dtype, Workload(seq_len=length, block_size=req.block_size), sd)

        cap = Capacity(unit="bytes", available=req.kv_budget_bytes, cost=cost, shared=cost, max_len=top)
        k, v = kv_row_bytes(layout, dtype)
        lines = [alloc_log_line(tokens, k, v)]
        d = req.draft_layers
        if d and layout.pp == 1:
            # The draft worker allocates its own pool of the same #tokens and prints its own line
            # (docs/engines.md §3); the layers are alike (speculative.with_draft), so each is 1/(L+d).
            n = req.model.num_layers
            kd, vd = k // n * d, v // n * d
            if req.draft_model is not None:
                # STANDALONE: budgeted as d target-sized layers, but the draft worker's pool holds the
                # draft model's own layers at the same #tokens (model_runner.py:362-365 @ 0.5.23).
                from kvcalc.layout import RankLayout as DraftLayout

                kd, vd = kv_row_bytes(DraftLayout(req.draft_model, layout.tp), dtype)
            lines = [alloc_log_line(tokens, k // n * (n - d), v // n * (n - d)), alloc_log_line(tokens, kd, vd)]
        return self.pool_answer(req, cap, unit_bytes=1, num_blocks=None, kv_tokens=tokens,
                                log_lines=[*pool.log_lines, *lines])

    # -- logs ----------------------------------------------------------------------------------
    def log_unit_note(self, line: str) -> str | None:
        # sglang/srt/mem_cache/memory_pool.py (0.5.23, the wheel's line 116): GB = 2^30 and the pool
        # logs ``K size: {k_size / GB:.2f} GB``; kvcalc's GB is 10^9 bytes, so give both.
        import re

        from kvcalc.units import GB

        figures = re.findall(r"(\d+(?:\.\d+)?) GB\b", line)
        if not figures:
            return None
        # Display only: the logged figure is already rounded to 0.01 GiB, so the GB value is approximate.
        shown = ", ".join(f"{f} GiB = {float(f) * GiB / GB:,.2f} GB" for f in dict.fromkeys(figures))
        return f'SGLang\'s "GB" is GiB, 2^30 bytes (sglang/srt/mem_cache/memory_pool.py): {shown}'


SglangPolicy = SglangEngine
"""The former name."""
ENGINE = SglangEngine()
POLICY = ENGINE
