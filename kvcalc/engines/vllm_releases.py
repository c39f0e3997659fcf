"""vLLM releases as objects: each release holds only the rules that changed since the one before.

``Vllm020`` is the rule set kvcalc modelled first (V1 at 001cabc1 = the 0.19.x and 0.20.0
wheels); ``Vllm033`` (0.31.0-0.33.0) and ``Vllm034`` (0.34.0, the newest release on PyPI when
read) subclass it and override what changed. Every rule cites the wheel it was read from; the
full table, with line numbers per release, is ``docs/engines.md`` §1.

The block arithmetic itself (specs -> pages -> groups -> blocks, the fit check, the binary search
for the longest context) is the 001cabc1 model of ``kvcalc.engines.vllm_kv``; a release changes
its inputs (block size, the tokens a sliding window keeps in flight, the pages a Mamba layer
reserves, the memory the fit check may use) and its outputs (the token figure, the log lines,
the fit error's wording).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kvcalc.dtypes import KVDtype, cdiv
from kvcalc.engines import vllm_kv as vk
from kvcalc.errors import UnknownNameError
from kvcalc.specs import ChunkedAttention, FixedState, FullAttention, LatentAttention, SlidingWindowAttention, Spec

if TYPE_CHECKING:
    from kvcalc.layout import RankLayout

CONSERVING_MEMORY_URL = "https://docs.vllm.ai/en/latest/configuration/conserving_memory/"

SM_MAJOR: dict[str, int] = {
    "t4": 7, "v100-16gb": 7, "v100-32gb": 7,
    "a10g": 8, "l4": 8, "l40s": 8, "a100-40gb": 8, "a100-40gb-pcie": 8, "a100-80gb": 8,
    "a100-80gb-pcie": 8, "rtx-3090": 8, "rtx-4090": 8,
    "h100": 9, "h100-pcie": 9, "h100-nvl": 9, "h200": 9,
    "b200": 10, "gb200": 10,
    "rtx-5090": 12,
}
"""CUDA compute capability (major) of the catalog's NVIDIA GPUs (developer.nvidia.com/cuda-gpus):
vLLM picks its attention backend by it (``platforms/cuda.py:_get_backend_priorities``)."""
DEFAULT_SM = 9
"""Without ``--gpu``, kvcalc assumes a Hopper GPU (sm90) and says so."""


@dataclass(frozen=True, kw_only=True)
class BlockChoice:
    """The block size vLLM ends with, and why."""

    block_size: int
    reason: str


@dataclass(frozen=True, kw_only=True)
class AlignedMambaVSpec(vk.VSpec):
    """A Mamba layer in "align" mode: ``2 + num_speculative_blocks + num_prefill_checkpoint_blocks``
    pages per request (vllm 0.34.0 ``v1/kv_cache_interface.py:1168-1172``); Mamba2 mixers and
    Qwen's gated-delta-net layers declare one prefill checkpoint block
    (``mamba_mixer2.py:1098``, ``qwen_gdn_linear_attn.py:910``), hence 3 pages."""

    pages: int = 3

    def max_memory_usage_bytes(self, max_model_len: int, max_num_batched_tokens: int) -> int:
        return self.pages * self.page_size_bytes


def _sm_major(gpu: str | None) -> tuple[int, str]:
    if gpu is None:
        return DEFAULT_SM, "no --gpu given, Hopper assumed"
    key = gpu.strip().lower()
    if key not in SM_MAJOR:
        return DEFAULT_SM, f"{key}: not a CUDA GPU whose backend kvcalc knows, Hopper's assumed"
    return SM_MAJOR[key], f"--gpu {key}"


def _quantized(dtype: KVDtype) -> bool:
    """Under two bytes a value: fp8 (and narrower) caches, which FLASH_ATTN_MLA does not take."""
    return dtype.block_bytes < 2 * dtype.block_values


def _promote_chunked(specs: Sequence[Spec]) -> list[Spec]:
    """With chunked local attention vLLM turns the hybrid KV-cache manager off (unless
    ``VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE=1``) and ``unify_hybrid_kv_cache_specs``
    allocates the local layers (chunked, and sliding if any) as full attention when full layers
    exist too (0.20.0 ``config/vllm.py:1268-1286``, ``v1/core/kv_cache_utils.py:1363-1380``;
    0.34.0 ``config/vllm.py:2157-2176``, ``v1/core/kv_cache_planning.py:829-846``).
    ``specs`` may be the distinct specs only: the rule looks at which kinds exist."""
    chunked = any(isinstance(s, ChunkedAttention) for s in specs)
    full = any(type(s) is FullAttention for s in specs)
    if not chunked or not full:
        return list(specs)
    return [FullAttention(num_kv_heads=s.num_kv_heads, head_dim=s.head_dim, v_head_dim=s.v_head_dim)
            if isinstance(s, (ChunkedAttention, SlidingWindowAttention)) else s for s in specs]


def _distinct(specs: Sequence[Spec] | RankLayout) -> Sequence[Spec]:
    """The model's distinct layer specs (a ``RankLayout``: per layer group, never per layer), or
    an explicit layer list as given: what the block-size rules look at (which kinds exist)."""
    from kvcalc.layout import RankLayout

    return [s for s, _ in specs.model.spec_counts()] if isinstance(specs, RankLayout) else specs


class Vllm020:
    """vLLM V1 at 001cabc1: the 0.19.x and 0.20.0 wheels (kvcalc's first vLLM model)."""

    key = "0.20"
    printed_version = "0.20.0"
    """What this release prints on "Initializing a V1 LLM engine (vX)"."""
    title = "vLLM 0.20 (V1 @ 001cabc1; releases 0.19.0-0.20.0)"
    default_block_size = 16
    """``CacheConfig.DEFAULT_BLOCK_SIZE`` (0.20.0 ``config/cache.py:45``)."""
    default_gpu_memory_utilization = "0.92"
    """0.20.0 ``config/cache.py:66`` (0.19.x: 0.9)."""
    holds_back_null_block = False
    hybrid_prefix_caching = False
    """0.20.0 ``config/model.py:1789``: hybrid models run without prefix caching, Mamba mode
    "none" (one state page per request)."""
    tokens_from_concurrency = False
    """0.20.0 ``v1/core/kv_cache_utils.py:1694-1698``: ``num_blocks // len(groups) x block``."""
    one_line_capacity_log = False
    fit_error_possessive = "models's"
    subtracts_cudagraph_estimate = True
    """The KV budget less the CUDA-graph memory estimate: ``VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS``
    defaults on from 0.20.0 (``envs.py:1724-1726``; applied at ``v1/worker/gpu_worker.py:399-424``),
    PR #38284, with the 0.92 default utilization."""

    def in_flight_tokens(self, max_num_batched_tokens: int, pp: int) -> int:
        """Tokens a sliding-window or chunked layer keeps past its window (0.20.0
        ``v1/kv_cache_interface.py:390``, ``:436``: one batch)."""
        return max_num_batched_tokens

    def mla_block_size(self, gpu: str | None, dtype: KVDtype) -> BlockChoice:
        """The first MLA backend for the GPU keeps the default block if it can, else takes its
        smallest (0.20.0 ``platforms/cuda.py:110-125``; ``mla/flashattn_mla.py:53`` MultipleOf(16),
        sm90, no fp8; ``mla/flashmla.py:59`` [64]; ``mla/flashinfer_mla.py:50`` [32, 64], sm100;
        TRITON_MLA MultipleOf(16) elsewhere)."""
        sm, gpu_text = _sm_major(gpu)
        if sm == 9 and not _quantized(dtype):
            backend, size = "FLASH_ATTN_MLA (multiples of 16)", 16
        elif sm == 9:
            backend, size = f"FLASHMLA (64 only; FLASH_ATTN_MLA takes no {dtype.name} cache)", 64
        elif sm == 10:
            backend, size = "FLASHINFER_MLA (32 or 64: the smaller)", 32
        else:
            backend, size = "TRITON_MLA (multiples of 16)", 16
        return BlockChoice(block_size=size, reason=f"MLA block {size}: {backend} on sm{sm}0 ({gpu_text})")

    def block_size(self, specs: Sequence[Spec] | RankLayout, dtype: KVDtype, *, gpu: str | None = None,
                   block_size: int | None = None) -> BlockChoice:
        if block_size is not None:
            return BlockChoice(block_size=block_size, reason="--block-size as given")
        if any(isinstance(s, LatentAttention) for s in _distinct(specs)):
            return self.mla_block_size(gpu, dtype)
        return BlockChoice(block_size=self.default_block_size,
                           reason=f"CacheConfig.DEFAULT_BLOCK_SIZE {self.default_block_size}")

    def hybrid_block_size(self, rank_specs: Sequence[Spec], dtype: KVDtype, state_dtype: KVDtype,
                          block: int) -> int:
        """Hybrid attention + Mamba: the attention page must hold the largest state page, so the
        block is raised to the smallest multiple of 16 that does (0.20.0
        ``HybridAttentionMambaModelConfig.verify_and_update_config``, as ``vllm_kv.layer_vspecs``)."""
        states = [s.fixed_bytes(state_dtype) for s in rank_specs if isinstance(s, FixedState)]
        per_token = [s.bytes_per_token(dtype) for s in rank_specs if s.grows]
        if not states or not per_token or block * per_token[0] >= max(states):
            return block
        return vk.MAMBA_ALIGN * cdiv(max(states), vk.MAMBA_ALIGN * per_token[0])

    def state_pages(self) -> int:
        return 3 if self.hybrid_prefix_caching else 1

    def layout(self, specs: Sequence[Spec] | RankLayout, dtype: KVDtype, *, tp: int = 1, pp: int = 1,
               block_size: int, state_dtype: KVDtype | None = None) -> vk.Layout:
        """``vllm_kv.build_layout`` with this release's inputs: local layers promoted when the hybrid
        manager is off, the release's hybrid block, and its Mamba pages per request. A
        ``RankLayout`` (its own TP and PP; ``tp`` and ``pp`` are then unused) is laid out per layer
        run, never per layer; an explicit layer list is split into runs here."""
        from kvcalc.layout import RankLayout, Segment, counts_in, pp_partition, segments_from_specs

        sd = state_dtype if state_dtype is not None else dtype
        shards: dict[Spec, Spec] = {}
        stages: list[range] = []
        if isinstance(specs, RankLayout):
            # The promotion and the shard per distinct spec, mapped over the model's runs.
            model_runs = specs.model.layer_blocks
            distinct_model = [s for s, _ in specs.model.spec_counts()]
            promoted = dict(zip(map(id, distinct_model), _promote_chunked(distinct_model), strict=True))
            runs: list[Segment] = []
            start = 0
            for pattern, repeat in model_runs:
                rank_pattern = tuple(shards[p] if p in shards else shards.setdefault(p, p.shard(specs.tp))
                                     for p in (promoted[id(x)] for x in pattern))
                runs.append(Segment(start, rank_pattern, repeat))
                start += len(pattern) * repeat
            segments = tuple(runs)
            stages = [st.layers for st in specs.stages]
        else:
            specs = _promote_chunked(specs)
            rank = [shards[s] if s in shards else shards.setdefault(s, s.shard(tp)) for s in specs]
            segments = tuple(segments_from_specs(rank))
            start = 0
            for size in pp_partition(len(rank), pp):
                stages.append(range(start, start + size))
                start += size
        distinct: list[Spec] = list(dict.fromkeys(s for seg in segments for s in seg.pattern))
        block = self.hybrid_block_size(distinct, dtype, sd, block_size)
        vspecs = vk.layer_vspecs(distinct, dtype, block, sd)
        if self.state_pages() != 1:
            vspecs = [
                AlignedMambaVSpec(kind=v.kind, block_size=v.block_size, page_size_bytes=v.page_size_bytes,
                                  pages=self.state_pages())
                if v is not None and v.kind == "mamba" else v
                for v in vspecs
            ]
        vspec_of = dict(zip(distinct, vspecs, strict=True))
        total = counts_in(segments, 0, stages[-1].stop if stages else 0)
        grouping = vk.group_layers(vspec_of, total)
        workers = tuple(vk.project(grouping, segments, r) for r in stages)
        stage_counts = tuple(tuple(counts_in(segments, r.start, r.stop).items()) for r in stages)
        return vk.Layout(block_size=block, vspec_of=vspec_of, grouping=grouping, workers=workers,
                         stage_counts=stage_counts)

    def fit_error(self, max_model_len: int, needed_bytes: int, check_bytes: int, estimated: int) -> str:
        based = (f"Based on the available memory, the estimated maximum model length is {estimated}. "
                 if estimated > 0 else "")
        return (
            f"To serve at least one request with the {self.fit_error_possessive} max seq len ({max_model_len}), "
            f"({vk.format_gib(needed_bytes)} GiB KV cache is needed, which is larger than the available KV cache "
            f"memory ({vk.format_gib(check_bytes)} GiB). {based}{self.fit_error_hint()}"
        )

    def fit_error_hint(self) -> str:
        return ("Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the "
                f"engine. See {CONSERVING_MEMORY_URL} for more details.")

    def logged_tokens(self, num_blocks: int, num_groups: int, min_block: int, concurrency: float,
                      max_model_len: int) -> int:
        if self.tokens_from_concurrency:
            return int(concurrency * max_model_len)
        return num_blocks // num_groups * min_block

    def capacity_lines(self, tokens: int, max_model_len: int, concurrency: float) -> list[str]:
        if self.one_line_capacity_log:
            return [f"GPU KV cache size: {tokens:,} tokens, Maximum concurrency for {max_model_len:,} tokens "
                    f"per request: {concurrency:.2f}x"]
        return [f"GPU KV cache size: {tokens:,} tokens",
                f"Maximum concurrency for {max_model_len:,} tokens per request: {concurrency:.2f}x"]

    def kv(self, specs: Sequence[Spec] | RankLayout, dtype: KVDtype, available_bytes: int, max_model_len: int, *,
           tp: int = 1, pp: int = 1, block_size: int | None = None, gpu: str | None = None,
           max_num_batched_tokens: int = vk.DEFAULT_MAX_NUM_BATCHED_TOKENS,
           state_dtype: KVDtype | None = None, dcp: int = 1) -> vk.VllmKV:
        """Blocks, the fit check, the logged figures and lines of this release, per worker.

        ``dcp`` (``--decode-context-parallel-size``): each DCP rank stores ``cdiv(L, dcp)`` tokens of
        a request (0.34.0 ``v1/kv_cache_interface.py:654-659``, 0.20.0 ``:188-193``), so the fit
        check, the concurrency and the estimate run on that length per rank; the estimate is then
        ``E x dcp`` (the largest L with ``cdiv(L, dcp) <= E``), and 0.20's token figure is multiplied
        by dcp (0.20.0 ``v1/core/kv_cache_utils.py:1699-1702``)."""
        choice = self.block_size(specs, dtype, gpu=gpu, block_size=block_size)
        layout = self.layout(specs, dtype, tp=tp, pp=pp, block_size=choice.block_size, state_dtype=state_dtype)
        in_flight = self.in_flight_tokens(max_num_batched_tokens, pp)
        rank_len = cdiv(max_model_len, dcp)
        base = vk.vllm_kv(specs, dtype, available_bytes, rank_len, max_num_batched_tokens=in_flight,
                          layout=layout)
        if base.layout == "none":
            return dataclasses.replace(base, version=self.title)
        check_bytes = available_bytes - base.block_bytes if self.holds_back_null_block else available_bytes
        check = vk.vllm_kv(specs, dtype, check_bytes, rank_len, max_num_batched_tokens=in_flight,
                           layout=layout) if check_bytes != available_bytes else base
        error = check.error
        est = check.estimated_max_model_len * dcp if check.estimated_max_model_len is not None else None
        if error is not None and check_bytes > 0:
            error = self.fit_error(max_model_len, check.needed_bytes, check_bytes, est or 0)
        min_block = min(g.spec.block_size for g in layout.grouping.groups)
        tokens = self.logged_tokens(base.num_blocks, base.num_groups, min_block * dcp, base.max_concurrency,
                                    max_model_len)
        lines = [f"Available KV cache memory: {vk.format_gib(available_bytes)} GiB"]
        lines += self.capacity_lines(tokens, max_model_len, base.max_concurrency) if error is None else [
            f"ValueError: {error}"]
        return dataclasses.replace(
            base, version=self.title, kv_cache_tokens=tokens, fits=error is None, error=error,
            max_model_len=max_model_len, estimated_max_model_len=est, log_lines=lines,
        )


class Vllm019(Vllm020):
    """0.19.0-0.19.1: 0.20's rules (the same 001cabc1 block model, ``vllm_kv.py``) without the two
    changes PR #38284 made in 0.20.0, so this class only undoes those."""

    key = "0.19"
    printed_version = "0.19.1"
    title = "vLLM 0.19 (releases 0.19.0-0.19.1)"
    default_gpu_memory_utilization = "0.9"
    """0.19.0 and 0.19.1 ``config/cache.py:41``."""
    subtracts_cudagraph_estimate = False
    """0.19.0 and 0.19.1 measure the estimate but apply it only when
    ``VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS`` is set: its default is "0" (``envs.py:1654-1655``;
    ``v1/worker/gpu_worker.py:395-420``)."""


class Vllm033(Vllm020):
    """0.31.0-0.33.0: what changed since 0.20 (``docs/engines.md`` §1)."""

    key = "0.33"
    printed_version = "0.33.0"
    title = "vLLM 0.33 (releases 0.31.0-0.33.0)"
    holds_back_null_block = True
    """0.33.0 ``v1/core/kv_cache_planning.py:1533`` (and 0.31.0 ``kv_cache_utils.py:2780``): the fit
    check and the longest-context estimate plan against ``available - bytes_per_block``."""
    hybrid_prefix_caching = True
    """Hybrid models get prefix caching, so Mamba "align" mode (0.28.0 ``config/model.py:2073``)."""
    tokens_from_concurrency = True
    """``int(max_concurrency x max_model_len)`` (0.22.0 ``kv_cache_utils.py:1731``)."""
    one_line_capacity_log = True
    fit_error_possessive = "model's"

    def in_flight_tokens(self, max_num_batched_tokens: int, pp: int) -> int:
        """``max_in_flight_tokens = max_concurrent_batches x max_num_batched_tokens``; async
        scheduling (on by default) with the V2 runner (the default) keeps ``pp + 1`` batches
        in flight (0.33.0 ``config/vllm.py:588-611``, ``v1/kv_cache_interface.py:938``)."""
        return (pp + 1) * max_num_batched_tokens

    def fit_error_hint(self) -> str:
        # 0.33.0 v1/core/kv_cache_planning.py:82-86
        return ("Try increasing `gpu_memory_utilization` (which also controls CPU memory on the CPU backend) "
                "or decreasing `max_model_len` when initializing the engine. "
                f"See {CONSERVING_MEMORY_URL} for more details.")


class Vllm034(Vllm033):
    """0.34.0, the newest release read: default block 64 and the extensible KV cache."""

    key = "0.34"
    printed_version = "0.34.0"
    title = "vLLM 0.34 (release 0.34.0)"
    default_block_size = 64
    """0.34.0 ``config/cache.py:185``; every CUDA backend read accepts 64, so it stays 64 (MLA too)."""
    default_gpu_memory_utilization = "1.0"
    """``resolved_gpu_memory_utilization``: 1.0 with the extensible KV cache, the default on CUDA
    (0.34.0 ``config/cache.py:495-501``, ``config/vllm.py:3253``); 0.92 without it."""

    def mla_block_size(self, gpu: str | None, dtype: KVDtype) -> BlockChoice:
        _, gpu_text = _sm_major(gpu)
        return BlockChoice(block_size=64,
                           reason=f"MLA block 64: the default, which every MLA backend takes ({gpu_text})")

    def hybrid_block_size(self, rank_specs: Sequence[Spec], dtype: KVDtype, state_dtype: KVDtype,
                          block: int) -> int:
        """``_align_hybrid_block_size`` (0.34.0 ``platforms/interface.py:1078-1118``): alignment
        ``max(smallest kernel block 16, cache block)``, at least 128 for MLA hybrids; the block
        is ``alignment x cdiv(state page, alignment x attention bytes per token)`` when larger."""
        states = [s.fixed_bytes(state_dtype) for s in rank_specs if isinstance(s, FixedState)]
        per_token = [s.bytes_per_token(dtype) for s in rank_specs if s.grows]
        if not states or not per_token:
            return block
        align = max(16, block)
        if any(isinstance(s, LatentAttention) for s in rank_specs):
            align = max(align, 128)
        needed = align * cdiv(max(states), align * per_token[0])
        return max(block, needed)

    def fit_error_hint(self) -> str:
        # 0.34.0 v1/core/kv_cache_planning.py:64-96 and :125-132 (extensible cache, utilization 1.0)
        return ("The extensible KV cache already takes all device memory left after the model and its "
                "activations; decrease `max_model_len` or `max_num_seqs`, or the model needs a device with "
                "more memory. Decreasing `max_model_len` also reduces what is needed. "
                f"See {CONSERVING_MEMORY_URL} for more details.")


RELEASES: dict[str, type[Vllm020]] = {"0.19": Vllm019, "0.20": Vllm020, "0.33": Vllm033, "0.34": Vllm034}
NEWEST = "0.34"
_VERSION_ALIASES: dict[str, str] = {
    "0.19.0": "0.19", "0.19.1": "0.19", "0.20.0": "0.20", "001cabc1": "0.20",
    "0.31": "0.33", "0.31.0": "0.33", "0.32": "0.33", "0.32.0": "0.33", "0.33.0": "0.33",
    "0.34.0": "0.34", "latest": "0.34", "newest": "0.34",
}


def get_release(version: str | None = None) -> Vllm020:
    """``--engine vllm`` (the newest modelled) or ``vllm@0.20``; an unknown version is an error
    listing the modelled ones."""
    key = NEWEST if version is None else version.strip().lower().removeprefix("v")
    key = _VERSION_ALIASES.get(key, key)
    cls = RELEASES.get(key)
    if cls is None:
        raise UnknownNameError("vLLM version", version or "", [*RELEASES, *_VERSION_ALIASES])
    return cls()


def release_for_printed(version: str) -> tuple[Vllm020, str]:
    """The modelled release whose rules a log printed by vLLM ``version`` follows, and why:
    the newest modelled release not newer than it (releases between two modelled ones are
    compared against the older, and the reason says so)."""
    parts = _version_tuple(version)
    if parts is None:
        return get_release(), f"version {version!r} not understood: compared against the newest, {NEWEST}"
    if parts >= (0, 34):
        return Vllm034(), f"printed v{version}: 0.34 rules"
    if parts >= (0, 31):
        return Vllm033(), f"printed v{version}: 0.33 rules (0.31.0-0.33.0)"
    if (0, 19) <= parts < (0, 20):
        return Vllm019(), f"printed v{version}: 0.19 rules"
    if parts >= (0, 20):
        exact = parts <= (0, 20, 0)
        why = "0.20 rules" if exact else (
            "0.20 rules, the nearest older modelled release (not modelled: the token figure is "
            "int(concurrency x length) from 0.20.1, in-flight sliding reservation from 0.28)")
        return Vllm020(), f"printed v{version}: {why}"
    return Vllm020(), f"printed v{version}: older than any modelled release; block arithmetic of 0.20"


def _version_tuple(text: str) -> tuple[int, ...] | None:
    import re

    m = re.match(r"v?(\d{1,3})\.(\d{1,3})(?:\.(\d{1,3}))?", text.strip())
    if m is None:
        return None
    return tuple(int(g) for g in m.groups() if g is not None)
