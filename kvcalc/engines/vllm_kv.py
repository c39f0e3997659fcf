"""vLLM's KV-cache block arithmetic, modelled on ONE vLLM version: V1 at commit ``001cabc1``.

Sources read (vllm-project/vllm @ 001cabc1be16a59a70d720ed61a13b678c060a18):

* ``vllm/v1/kv_cache_interface.py``: ``AttentionSpec.page_size_bytes`` (per-token-head scales
  carved from the page), ``FullAttentionSpec.real_page_size_bytes`` = B x H x (d + d_v) x b,
  ``MLAAttentionSpec.real_page_size_bytes`` = B x 1 x (kv_lora_rank + rope) x b,
  ``max_memory_usage_bytes``: full ``cdiv(L, B) x page``; sliding
  ``(cdiv(min(W - 1 + max_num_batched_tokens, L), B) + 1) x page``; chunked local
  ``cdiv(min(chunk + max_num_batched_tokens, L), B) x page``; Mamba ``page`` (mode "none").
* ``vllm/v1/core/kv_cache_utils.py``: ``get_kv_cache_groups`` (uniform spec -> one group;
  same type, different pages -> one ``UniformTypeKVCacheSpecs`` group; otherwise
  ``unify_kv_cache_spec_page_size`` then ``_get_kv_cache_groups_uniform_page_size`` with
  ``group_size = min`` layer count, or the max when max < 1.5 x min, layers assigned
  ``layers[i::num_groups]``); ``get_num_blocks`` = ``available // page // group_size``;
  ``get_kv_cache_configs`` (per-worker projected groups, fit check per worker, then the minimum
  ``num_blocks`` over workers); ``_max_memory_usage_bytes_from_groups`` =
  ``group_size x page x sum(cdiv(group max usage, page))`` and ``_estimate_max_model_len_from_groups``
  (binary search over [1, max_model_len]); ``_check_enough_kv_cache_memory`` (messages below);
  ``_report_kv_cache_config``: tokens = ``num_blocks // len(groups) x min block size`` and
  ``get_max_concurrency_for_kv_cache_config`` = ``num_blocks / cdiv(n x sum usage, page x n)``.

Releases with the same rules (read from the PyPI wheels, 2026-12): 0.19.0 and 0.19.1 (all of them,
with their default gpu_memory_utilization 0.9) and 0.20.0 (blocks, grouping, fit check and log
lines identical; it raised the default to 0.92 and subtracts a CUDA-graph memory estimate, which
kvcalc folds into ``--activation-memory``). 0.20.1 changed the logged token figure to
``int(max_concurrency x max_model_len)``; 0.22.0 fixed the "models's" typo in the fit error;
``check-log`` reads both token forms.

What this version does with the null block: ``BlockPool`` reserves block 0 (usable blocks are
``num_blocks - 1``), but at 001cabc1 neither the fit check, nor the logged token count, nor the
logged concurrency subtracts it. kvcalc reports vLLM's own figures and uses ``num_blocks - 1``
only for its own solvers (how many requests can really be resident).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kvcalc.dtypes import KVDtype, cdiv
from kvcalc.errors import InvalidRequestError, UnsupportedByEngineError
from kvcalc.layout import Segment, counts_in, pp_partition, segments_from_specs
from kvcalc.specs import (
    ChunkedAttention,
    CrossAttention,
    FixedState,
    IndexedLatentAttention,
    LatentAttention,
    SlidingWindowAttention,
    Spec,
    StatefulAttention,
)
from kvcalc.units import GiB

if TYPE_CHECKING:
    from kvcalc.layout import RankLayout
    from kvcalc.models import ModelConfig

VLLM_VERSION = "vLLM V1 @ 001cabc1 (= releases 0.19.x and 0.20.0)"
"""The one vLLM version modelled (kv_cache_utils.py / kv_cache_interface.py at commit 001cabc1)."""
DEFAULT_BLOCK_SIZE = 16
"""``CacheConfig.DEFAULT_BLOCK_SIZE`` (vllm/config/cache.py)."""
MLA_BLOCK_SIZE = 64
"""FlashMLA forces a multiple of 64 for MLA on CUDA (``CudaPlatformBase.check_and_update_config``)."""
DEFAULT_MAX_NUM_BATCHED_TOKENS = 8192
MAMBA_ALIGN = 16
"""Attention block-size alignment when raising it to the Mamba page
(``HybridAttentionMambaModelConfig.verify_and_update_config``)."""
CONSERVING_MEMORY_URL = "https://docs.vllm.ai/en/latest/configuration/conserving_memory/"


@dataclass(frozen=True, kw_only=True)
class VSpec:
    """One layer's KV-cache spec as vLLM sees it (a ``KVCacheSpec``)."""

    kind: str
    """full, sliding, chunked, mla or mamba."""
    block_size: int
    page_size_bytes: int
    window: int | None = None
    """Sliding window, or the chunk size of chunked local attention."""

    def max_memory_usage_bytes(self, max_model_len: int, max_num_batched_tokens: int) -> int:
        """Bytes one request of ``max_model_len`` tokens may hold in this layer (worst case)."""
        if self.kind == "mamba":
            return self.page_size_bytes
        if self.kind == "sliding":
            assert self.window is not None
            tokens = min(self.window - 1 + max_num_batched_tokens, max_model_len)
            # +1: the window may not start on a block boundary (vLLM SlidingWindowSpec).
            return (cdiv(tokens, self.block_size) + 1) * self.page_size_bytes
        if self.kind == "chunked":
            assert self.window is not None
            tokens = min(self.window + max_num_batched_tokens, max_model_len)
            return cdiv(tokens, self.block_size) * self.page_size_bytes
        return cdiv(max_model_len, self.block_size) * self.page_size_bytes

    def describe(self) -> str:
        extra = f", window {self.window}" if self.window is not None else ""
        return f"{self.kind}, block {self.block_size}, page {self.page_size_bytes:,} B{extra}"


def default_block_size(specs: Sequence[Spec], block_size: int | None) -> int:
    """An explicit block size always wins; otherwise 16, or 64 for MLA models."""
    if block_size is not None:
        return block_size
    if any(isinstance(s, LatentAttention) for s in specs):
        return MLA_BLOCK_SIZE
    return DEFAULT_BLOCK_SIZE


DSA_INDEXER_QUANT_BLOCK = 128
"""``Indexer.quant_block_size`` (vllm/model_executor/models/deepseek_v2.py): one float32 scale per 128
fp8 indexer values."""
FP8_DS_MLA_BYTES = 656
"""``fp8_ds_mla`` entry: 512 fp8 latent values + 4 float32 scales (16 B) + 64 bf16 rope values (128 B)
(vllm/v1/attention/backends/mla/flashmla_sparse.py; kvcalc reference 1.2)."""


def vllm_dsa_bytes_per_token(spec: IndexedLatentAttention, dtype: KVDtype) -> int:
    """One token of a DSA layer in vLLM: the MLA page plus the indexer's own cache.

    * The indexer key lives in a separate ``DeepseekV32IndexerCache`` layer whatever ``--kv-cache-dtype``
      says: ``head_dim = index_head_dim + index_head_dim // 128 x 4`` bytes of ``torch.uint8`` (fp8
      values and float32 scales; vllm/model_executor/models/deepseek_v2.py ``Indexer.__init__``, vLLM
      main 2026): 132 B for ``index_head_dim`` 128. Both pages share the MLA block size.
    * An fp8 cache for the latent becomes ``fp8_ds_mla`` (``DeepseekV32ForCausalLM.verify_and_update_config``):
      656 B per token, valid only for the 512 + 64 latent of DeepSeek-V3.2 / GLM-5.
    """
    indexer = spec.index_head_dim + spec.index_head_dim // DSA_INDEXER_QUANT_BLOCK * 4
    if dtype.name == "fp8_e4m3":
        if (spec.kv_lora_rank, spec.qk_rope_head_dim) != (512, 64):
            raise UnsupportedByEngineError(
                f"--engine vllm: fp8_ds_mla is laid out for a 512 + 64 latent, not "
                f"{spec.kv_lora_rank} + {spec.qk_rope_head_dim}")
        return FP8_DS_MLA_BYTES + indexer
    return spec.latent_bytes_per_token(dtype) + indexer


def refuse_cross_attention(specs: Sequence[Spec]) -> None:
    """vLLM V1 would hold cross-attention as a ``CrossAttentionSpec`` (``cdiv(max_num_encoder_input_tokens,
    B)`` pages), but no release since 0.10.2 serves Mllama (its model file was removed), and the version
    modelled here is later: refused, naming the version."""
    if any(isinstance(s, CrossAttention) for s in specs):
        raise UnsupportedByEngineError(
            f"--engine vllm: {VLLM_VERSION} does not serve cross-attention (Mllama) models; "
            "vLLM dropped Mllama in 0.10.2")


STATEFUL_ATTENTION_REFUSAL = (
    "layers holding a Mamba state and an attention KV cache at once (Falcon-H1, Zamba2) are laid out "
    "by plan and estimate (an attention layer and a Mamba mixer each, vllm_kv.cache_layout), not by "
    "this path (an explicit layer list, as check-log passes)")
"""Why ``layer_vspecs`` refuses a ``StatefulAttention`` layer (a caller that skipped ``cache_layout``)."""
ZAMBA2 = "Zamba2ForCausalLM"


def refuse_stateful_attention(specs: Sequence[Spec]) -> None:
    if any(isinstance(s, StatefulAttention) for s in specs):
        raise UnsupportedByEngineError(f"--engine vllm: {STATEFUL_ATTENTION_REFUSAL}")


def cache_parts(spec: Spec) -> tuple[Spec, ...]:
    """The cache layers vLLM registers for one decoder layer: a ``StatefulAttention`` layer
    (Falcon-H1, a Zamba2 "hybrid" layer) is an ``Attention`` layer and a ``MambaMixer2``, each
    with its own layer name and KV-cache spec (vllm 0.34.0 ``model_executor/models/falcon_h1.py:334-353``:
    "In V1 all attention/ssm layers must have different index in prefix", the mixer at index
    ``num_hidden_layers + i``; ``zamba2.py:181-205``: one ``Attention`` per hybrid layer, "KV cache
    is unique for every attention layer", and the hybrid layer's ``Zamba2MambaDecoderLayer``;
    0.20.0 the same files). The hybrid KV-cache manager then groups them like any attention and
    Mamba layers (``get_kv_cache_groups``), the attention block raised so that its page holds the
    Mamba state (``HybridAttentionMambaModelConfig`` / ``_align_hybrid_block_size``)."""
    if isinstance(spec, StatefulAttention):
        return (spec.attention, spec.state)
    return (spec,)


def cache_specs(specs: Iterable[Spec]) -> list[Spec]:
    """``specs`` with every ``StatefulAttention`` split into its two cache layers (``cache_parts``)."""
    return [p for s in specs for p in cache_parts(s)]


def check_stateful(model: ModelConfig) -> None:
    """Refuse what vLLM would size differently from kvcalc's spec: a Zamba2 whose
    ``num_key_value_heads`` differs from ``num_attention_heads`` (vLLM's ``Attention`` there is
    built without ``num_kv_heads``, so it caches ``num_attention_heads`` heads, 0.34.0
    ``zamba2.py:148-150``, ``:195-200``, while the hybrid block alignment sizes the page from
    ``num_key_value_heads``, ``platforms/interface.py:1042-1048``)."""
    if model.architecture != ZAMBA2:
        return
    for s, _ in model.spec_counts():
        if isinstance(s, StatefulAttention) and s.attention.num_kv_heads != model.num_attention_heads:
            raise UnsupportedByEngineError(
                f"--engine vllm: {model.name}: Zamba2 with num_key_value_heads {s.attention.num_kv_heads} != "
                f"num_attention_heads {model.num_attention_heads}: vLLM caches num_attention_heads heads but "
                "aligns its block to num_key_value_heads (zamba2.py:195-200, platforms/interface.py:1042 @ "
                "0.34.0); not modelled")


def cache_layout(layout: RankLayout) -> RankLayout:
    """vLLM's view of ``layout``: each ``StatefulAttention`` decoder layer becomes its two cache
    layers (``cache_parts``), on the same pipeline stage as the decoder layer (``get_pp_indices``
    splits decoder layers; both branches live in it). A model without such layers is returned as is.
    The work is per layer run, never per layer."""
    from kvcalc.layout import RankLayout as RankLayoutCls
    from kvcalc.models import LayerGroup

    model = layout.model
    stateful = {id(s) for s, _ in model.spec_counts() if isinstance(s, StatefulAttention)}
    if not stateful:
        return layout
    check_stateful(model)
    groups = [LayerGroup(pattern=list(cache_specs(pattern)), repeat=repeat) for pattern, repeat in model.layer_blocks]
    split = dataclasses.replace(model, layers=groups, layout=None, legend=None)
    # Each stage gains one cache layer per StatefulAttention layer it holds.
    sizes = [len(st.layers) + sum(n for s, n in st.counts if isinstance(s, StatefulAttention)) for st in layout.stages]
    return RankLayoutCls(split, layout.tp, layout.pp, stage_sizes=sizes)


def attention_bytes_per_token(spec: Spec, dtype: KVDtype) -> int:
    """Page bytes per token: H x (d + d_v) x b plus per-token-head scales
    (``AttentionSpec.page_size_bytes``), or the MLA latent; kvcalc's ``bytes_per_token``; a DSA
    layer adds its fp8 indexer page (``vllm_dsa_bytes_per_token``)."""
    if isinstance(spec, IndexedLatentAttention):
        return vllm_dsa_bytes_per_token(spec, dtype)
    return spec.bytes_per_token(dtype)


def layer_vspecs(specs: Sequence[Spec], dtype: KVDtype, block_size: int,
                 state_dtype: KVDtype | None = None) -> list[VSpec | None]:
    """vLLM specs for one rank's layers (already TP-sharded); None for layers with no cache.

    Hybrid attention + Mamba models: the attention block size is raised to the smallest multiple
    of 16 whose page holds the Mamba state, and the Mamba page is padded to it
    (``HybridAttentionMambaModelConfig``); an explicit larger block size is kept.
    """
    refuse_cross_attention(specs)
    refuse_stateful_attention(specs)
    # Mamba / GDN states are in the model dtype (MambaStateDtypeCalculator), not --kv-cache-dtype.
    sd = state_dtype if state_dtype is not None else dtype
    state_pages = [s.fixed_bytes(sd) for s in specs if isinstance(s, FixedState)]
    attn_ppt = [attention_bytes_per_token(s, dtype) for s in specs if s.grows]
    attn_block = block_size
    if state_pages and attn_ppt:
        mamba_page = max(state_pages)
        per_token = attn_ppt[0]
        if attn_block * per_token < mamba_page:
            attn_block = MAMBA_ALIGN * cdiv(mamba_page, MAMBA_ALIGN * per_token)
    out: list[VSpec | None] = []
    memo: dict[Spec, VSpec | None] = {}
    for s in specs:
        if s in memo:
            out.append(memo[s])
            continue
        if isinstance(s, FixedState):
            page = s.fixed_bytes(sd)
            if attn_ppt:
                page = max(page, attn_block * attn_ppt[0])
            out.append(VSpec(kind="mamba", block_size=attn_block, page_size_bytes=page))
        elif not s.grows:
            out.append(None)
        else:
            page = attn_block * attention_bytes_per_token(s, dtype)
            if isinstance(s, SlidingWindowAttention):
                out.append(VSpec(kind="sliding", block_size=attn_block, page_size_bytes=page, window=s.window))
            elif isinstance(s, ChunkedAttention):
                out.append(
                    VSpec(kind="chunked", block_size=attn_block, page_size_bytes=page, window=s.chunk_size)
                )
            elif isinstance(s, LatentAttention):
                out.append(VSpec(kind="mla", block_size=attn_block, page_size_bytes=page))
            else:
                out.append(VSpec(kind="full", block_size=attn_block, page_size_bytes=page))
        memo[s] = out[-1]
    return out


@dataclass(frozen=True, kw_only=True)
class KVGroup:
    """A KV-cache group: layers sharing one block table (``KVCacheGroupSpec``). Layers are
    counted, not listed: a bucket's ``num`` groups take its layers ``[index::num]`` (in layer
    order), so a stage's share of a group is arithmetic (``share``)."""

    spec: VSpec
    size: int
    """Layers in this group (the whole model)."""
    bucket: tuple[Spec, ...] = ()
    """The rank specs whose layers this group's bucket holds (hybrid layouts)."""
    index: int = 0
    num: int = 1


@dataclass(frozen=True, kw_only=True)
class Grouping:
    """How vLLM lays the layers out: ``uniform`` (one group, one spec), ``uniform_type``
    (one group, per-layer pages) or ``hybrid`` (several groups of one page size)."""

    layout: str
    groups: tuple[KVGroup, ...]
    vspec_of: dict[Spec, VSpec]
    """Every cached rank spec's vLLM spec (after page unification for hybrid layouts)."""
    padding_layers: int = 0


def group_layers(vspec_of: dict[Spec, VSpec | None], counts: dict[Spec, int]) -> Grouping:
    """``get_kv_cache_groups`` at 001cabc1 (hybrid KV-cache manager enabled), over the distinct
    rank specs (``vspec_of``, in layer order of first appearance) and their layer counts."""
    cached = {s: v for s, v in vspec_of.items() if v is not None and counts.get(s)}
    if not cached:
        return Grouping(layout="none", groups=(), vspec_of={})
    distinct = set(cached.values())
    total = sum(counts[s] for s in cached)
    if len(distinct) == 1:
        spec = next(iter(distinct))
        return Grouping(layout="uniform", groups=(KVGroup(spec=spec, size=total, bucket=tuple(cached)),),
                        vspec_of=cached)
    slots = {(v.kind, v.window, v.block_size) for v in distinct}
    if len(slots) == 1:
        # Same number of token slots per layer, different pages: UniformTypeKVCacheSpecs.
        first = next(iter(cached.values()))
        total_page = sum(v.page_size_bytes * counts[s] for s, v in cached.items())
        merged = dataclasses.replace(first, page_size_bytes=total_page)
        return Grouping(layout="uniform_type", groups=(KVGroup(spec=merged, size=total, bucket=tuple(cached)),),
                        vspec_of=cached)
    # unify_kv_cache_spec_page_size: grow smaller pages' block size by max_page / page.
    max_page = max(v.page_size_bytes for v in distinct)
    unified: dict[Spec, VSpec] = {}
    for s, v in cached.items():
        if v.page_size_bytes != max_page:
            if max_page % v.page_size_bytes:
                raise InvalidRequestError(
                    "model", f"{v.kind} page {v.page_size_bytes} B vs {max_page} B",
                    "layer page sizes that divide the largest one (vLLM cannot unify them by block size)",
                )
            ratio = max_page // v.page_size_bytes
            v = dataclasses.replace(v, block_size=v.block_size * ratio, page_size_bytes=max_page)
        unified[s] = v
    buckets: dict[VSpec, list[Spec]] = {}
    for s, v in unified.items():
        buckets.setdefault(v, []).append(s)
    sizes = [sum(counts[s] for s in members) for members in buckets.values()]
    group_size = min(sizes)
    if max(sizes) < min(sizes) * 1.5:
        group_size = max(sizes)
    groups: list[KVGroup] = []
    padding = 0
    for (spec, members), n in zip(buckets.items(), sizes, strict=True):
        num_groups = cdiv(n, group_size)
        padding += num_groups * group_size - n
        for i in range(num_groups):
            groups.append(KVGroup(spec=spec, size=_stride_count(n, i, num_groups), bucket=tuple(members),
                                  index=i, num=num_groups))
    return Grouping(layout="hybrid", groups=tuple(groups), vspec_of=unified, padding_layers=padding)


def _stride_count(n: int, i: int, step: int) -> int:
    """How many of positions 0..n-1 are ``i`` modulo ``step``."""
    return max(0, (n - i + step - 1) // step)


@dataclass(frozen=True, kw_only=True)
class WorkerGroups:
    """The groups projected onto one worker's layers (``_project_kv_cache_groups_to_worker``):
    each group with its layer count on this worker (0 when none), and the worker's layer counts
    per vLLM spec (a uniform_type group sums their pages)."""

    layout: str
    groups: tuple[tuple[VSpec, int], ...]
    spec_counts: tuple[tuple[VSpec, int], ...]

    @property
    def group_size(self) -> int:
        return max((n for _, n in self.groups), default=0)

    @property
    def page_size_bytes(self) -> int:
        """Page of one block: per layer (hybrid/uniform) or summed over layers (uniform_type)."""
        if self.layout == "uniform_type":
            return sum(v.page_size_bytes * n for v, n in self.spec_counts)
        return self.groups[0][0].page_size_bytes

    def num_blocks(self, available_bytes: int) -> int:
        """``get_num_blocks`` (floor), or ``available // sum(pages)`` for uniform_type."""
        if available_bytes <= 0 or not self.group_size:
            return 0
        if self.layout == "uniform_type":
            return available_bytes // self.page_size_bytes
        return available_bytes // self.page_size_bytes // self.group_size

    def _uniform_type_usage(self, max_model_len: int, mnbt: int) -> int:
        return sum(v.max_memory_usage_bytes(max_model_len, mnbt) * n for v, n in self.spec_counts)

    def max_usage_bytes(self, max_model_len: int, mnbt: int) -> int:
        """``_max_memory_usage_bytes_from_groups``: one request of ``max_model_len``, padded as
        vLLM allocates it (every group pays ``group_size`` layers of pages)."""
        if not self.group_size:
            return 0
        if self.layout == "uniform_type":
            return self._uniform_type_usage(max_model_len, mnbt)
        page = self.page_size_bytes
        blocks = sum(cdiv(v.max_memory_usage_bytes(max_model_len, mnbt), page) for v, _ in self.groups)
        return self.group_size * page * blocks

    def blocks_per_request(self, max_model_len: int, mnbt: int) -> int:
        """Blocks one request of ``max_model_len`` takes: the denominator of vLLM's concurrency
        (``get_max_concurrency_for_kv_cache_config``)."""
        if not self.group_size:
            return 0
        n = self.group_size
        if self.layout == "uniform_type":
            return cdiv(n * self._uniform_type_usage(max_model_len, mnbt), self.page_size_bytes * n)
        usage = sum(v.max_memory_usage_bytes(max_model_len, mnbt) for v, _ in self.groups)
        return cdiv(n * usage, self.page_size_bytes * n)

    def estimate_max_model_len(self, available_bytes: int, max_model_len: int, mnbt: int) -> int:
        """``_estimate_max_model_len_from_groups``: the largest n in [1, max_model_len] whose
        padded usage fits; 0 if one token does not fit."""
        def fits(n: int) -> bool:
            return self.max_usage_bytes(n, mnbt) <= available_bytes

        if not fits(1):
            return 0
        left, right, result = 1, max_model_len, 1
        while left <= right:
            mid = (left + right) // 2
            if fits(mid):
                result, left = mid, mid + 1
            else:
                right = mid - 1
        return result


def project(grouping: Grouping, segments: Sequence[Segment], stage: range) -> WorkerGroups:
    """A group's layers on the worker holding ``stage``: the bucket's positions
    ``[C(lo), C(hi))`` (C counts the bucket's layers before a layer index) that are ``index``
    modulo ``num``."""
    before = counts_in(segments, 0, stage.start)
    upto = counts_in(segments, 0, stage.stop)
    groups: list[tuple[VSpec, int]] = []
    for g in grouping.groups:
        p0 = sum(before.get(s, 0) for s in g.bucket)
        p1 = sum(upto.get(s, 0) for s in g.bucket)
        groups.append((g.spec, _stride_count(p1, g.index, g.num) - _stride_count(p0, g.index, g.num)))
    here = counts_in(segments, stage.start, stage.stop)
    spec_counts: dict[VSpec, int] = {}
    for s, v in grouping.vspec_of.items():
        if here.get(s):
            spec_counts[v] = spec_counts.get(v, 0) + here[s]
    return WorkerGroups(layout=grouping.layout, groups=tuple(groups), spec_counts=tuple(spec_counts.items()))


@dataclass(frozen=True, kw_only=True)
class Layout:
    """A model laid out for one TP degree: each rank spec's vLLM spec (as vLLM builds them,
    before page unification), the grouping, and each PP worker's projection."""

    block_size: int
    vspec_of: dict[Spec, VSpec | None]
    grouping: Grouping
    workers: tuple[WorkerGroups, ...]
    stage_counts: tuple[tuple[tuple[Spec, int], ...], ...]
    """Per stage: (rank spec, layers) as ``RankLayout`` counts them."""

    @property
    def active(self) -> list[WorkerGroups]:
        return [w for w in self.workers if w.group_size]


def build_layout(
    specs: Sequence[Spec] | RankLayout, dtype: KVDtype, *, tp: int = 1, pp: int = 1, block_size: int | None = None,
    state_dtype: KVDtype | None = None,
) -> Layout:
    """vLLM's layout of a model's layers (a ``RankLayout``, or an explicit list of layer specs
    sharded here). The work is per distinct spec and per layer run, never per layer."""
    from kvcalc.layout import RankLayout

    if isinstance(specs, RankLayout):
        segments, stages, tp = specs.rank_segments, [st.layers for st in specs.stages], specs.tp
    else:
        shards: dict[Spec, Spec] = {}
        rank = [shards[s] if s in shards else shards.setdefault(s, s.shard(tp)) for s in specs]
        segments = tuple(segments_from_specs(rank))
        stages, start = [], 0
        for size in pp_partition(len(rank), pp):
            stages.append(range(start, start + size))
            start += size
    distinct: list[Spec] = list(dict.fromkeys(s for seg in segments for s in seg.pattern))
    bs = default_block_size(distinct, block_size)
    vspec_of = dict(zip(distinct, layer_vspecs(distinct, dtype, bs, state_dtype), strict=True))
    total = counts_in(segments, 0, stages[-1].stop if stages else 0)
    grouping = group_layers(vspec_of, total)
    workers = tuple(project(grouping, segments, r) for r in stages)
    stage_counts = tuple(tuple(counts_in(segments, r.start, r.stop).items()) for r in stages)
    return Layout(block_size=bs, vspec_of=vspec_of, grouping=grouping, workers=workers, stage_counts=stage_counts)


def reserved_bytes_per_request(layout: Layout, max_model_len: int, mnbt: int) -> int:
    """Largest worker's sum of per-layer ``max_memory_usage_bytes`` (what ``estimate --engine
    vllm`` reports for one request on a rank)."""
    best = 0
    for stage in layout.stage_counts:
        total = 0
        for s, n in stage:
            v = layout.vspec_of.get(s)
            if v is not None:
                total += v.max_memory_usage_bytes(max_model_len, mnbt) * n
        best = max(best, total)
    return best


def format_gib(n_bytes: int) -> str:
    """vLLM ``format_gib``: GiB rounded to two decimals."""
    return f"{round(n_bytes / GiB, 2)}"


@dataclass(frozen=True, kw_only=True)
class VllmKV:
    """What vLLM would compute and log for this KV budget (per worker), at 001cabc1."""

    version: str
    block_size: int
    layout: str
    num_groups: int
    group_size: int
    padding_layers: int
    page_size_bytes: int
    """Bytes of one block in one layer (the summed page for a uniform_type group)."""
    block_bytes: int
    """Bytes one block id costs across the worker's layers: page x group_size."""
    available_bytes: int
    max_model_len: int
    max_num_batched_tokens: int
    num_blocks: int
    """vLLM's count (null block included), the minimum over workers."""
    usable_blocks: int
    """``num_blocks - 1``: block 0 is the null block (``BlockPool.__init__``)."""
    kv_cache_tokens: int
    """As 001cabc1 logs it: ``num_blocks // len(groups) x min block size``."""
    blocks_per_request: int
    max_concurrency: float
    needed_bytes: int
    """KV one request of ``max_model_len`` needs (the fit check's left side), largest worker."""
    fits: bool
    estimated_max_model_len: int | None
    error: str | None
    log_lines: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    token_block_size: int = 0
    """The smallest group block size, the one the logged token count uses (a hybrid Mamba model's
    attention block is raised above ``block_size``)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def vllm_kv(
    specs: Sequence[Spec] | RankLayout,
    dtype: KVDtype,
    available_bytes: int,
    max_model_len: int,
    *,
    tp: int = 1,
    pp: int = 1,
    block_size: int | None = None,
    max_num_batched_tokens: int = DEFAULT_MAX_NUM_BATCHED_TOKENS,
    layout: Layout | None = None,
) -> VllmKV:
    """Blocks, log lines and the fit check, from a per-worker KV budget (``available_bytes``).
    ``specs`` is read only to build the layout when none is given (a ``RankLayout``: per run)."""
    if layout is None:
        layout = build_layout(specs, dtype, tp=tp, pp=pp, block_size=block_size)
    bs = layout.block_size
    grouping = layout.grouping
    mnbt = max_num_batched_tokens
    active = layout.active
    first = active[0] if active else None
    if first is None:
        # Attention-free: vLLM keeps num_blocks = 1 (the null block) and needs no KV.
        return VllmKV(
            version=VLLM_VERSION, block_size=bs, layout="none", num_groups=0, group_size=0, padding_layers=0,
            page_size_bytes=0, block_bytes=0, available_bytes=available_bytes, max_model_len=max_model_len,
            max_num_batched_tokens=mnbt, num_blocks=1, usable_blocks=0, kv_cache_tokens=0, blocks_per_request=0,
            max_concurrency=0.0, needed_bytes=0, fits=True, estimated_max_model_len=None, error=None,
        )
    needed = max(w.max_usage_bytes(max_model_len, mnbt) for w in active)
    error: str | None = None
    estimated: int | None = None
    if available_bytes <= 0:
        error = (
            "No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
            f"initializing the engine. See {CONSERVING_MEMORY_URL} for more details."
        )
    else:
        for w in active:
            need_w = w.max_usage_bytes(max_model_len, mnbt)
            if need_w > available_bytes:
                estimated = min(
                    x.estimate_max_model_len(available_bytes, max_model_len, mnbt) for x in active
                )
                based = (
                    f"Based on the available memory, the estimated maximum model length is {estimated}. "
                    if estimated > 0 else ""
                )
                error = (
                    f"To serve at least one request with the models's max seq len ({max_model_len}), "
                    f"({format_gib(need_w)} GiB KV cache is needed, which is larger than the available KV cache "
                    f"memory ({format_gib(available_bytes)} GiB). {based}Try increasing `gpu_memory_utilization` "
                    f"or decreasing `max_model_len` when initializing the engine. See {CONSERVING_MEMORY_URL} "
                    "for more details."
                )
                break
    num_blocks = min(w.num_blocks(available_bytes) for w in active)
    n_groups = len(grouping.groups)
    min_block = min(g.spec.block_size for g in grouping.groups)
    tokens = num_blocks // n_groups * min_block
    bpr = first.blocks_per_request(max_model_len, mnbt)
    concurrency = num_blocks / bpr if bpr else 0.0
    page = first.page_size_bytes
    block_bytes = page if first.layout == "uniform_type" else page * first.group_size
    lines = [f"Available KV cache memory: {available_bytes / GiB:.2f} GiB"]
    if error is None:
        lines += [
            f"GPU KV cache size: {tokens:,} tokens",
            f"Maximum concurrency for {max_model_len:,} tokens per request: {concurrency:.2f}x",
        ]
    else:
        lines.append(f"ValueError: {error}")
    return VllmKV(
        version=VLLM_VERSION,
        block_size=bs,
        layout=grouping.layout,
        num_groups=n_groups,
        group_size=first.group_size,
        padding_layers=grouping.padding_layers,
        page_size_bytes=page,
        block_bytes=block_bytes,
        available_bytes=available_bytes,
        max_model_len=max_model_len,
        max_num_batched_tokens=mnbt,
        num_blocks=num_blocks if error is None or available_bytes > 0 else 0,
        usable_blocks=max(num_blocks - 1, 0),
        kv_cache_tokens=tokens,
        blocks_per_request=bpr,
        max_concurrency=concurrency,
        needed_bytes=needed,
        fits=error is None,
        estimated_max_model_len=estimated,
        error=error,
        log_lines=lines,
        groups=[f"{g.size} layers: {g.spec.describe()}" for g in grouping.groups],
        token_block_size=min_block,
    )


def num_blocks_interval(low_bytes: int, high_bytes: int, block_bytes: int) -> tuple[int, int]:
    """The block counts a budget anywhere in [low, high] can give (floor at both ends): used to
    show a logged count is consistent with inputs a log rounded."""
    return max(low_bytes, 0) // block_bytes, max(high_bytes, 0) // block_bytes
