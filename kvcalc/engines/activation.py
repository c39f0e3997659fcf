"""vLLM's profile-run budget terms, modelled: the activation peak and non-torch memory.

vLLM sizes its KV cache as ``requested - weights - activation peak - non-torch`` (memory.py); the
activation peak is ``torch.cuda`` peak allocated bytes during one profile run, which is

* one forward pass over ``max_num_batched_tokens`` dummy tokens (V1 ``GPUModelRunner.profile_run``
  -> ``_dummy_run(self.max_num_tokens, is_profile=True)``, vllm/v1/worker/gpu_model_runner.py:5788-5887
  @ 0.20.0; V0 ``ModelRunner.profile_run`` the same batch split over ``max_num_seqs`` sequences), then
* the sampler on one row per request, ``num_reqs = min(max_num_seqs, tokens)`` rows of the full
  vocabulary (``_dummy_sampler_run``, :5622-5660 @ 0.20.0) with top-k = vocab - 1 and top-p 0.9, so
  the sort path runs (``apply_top_k_top_p_pytorch``, vllm/v1/sample/ops/topk_topp_sampler.py:258-300
  @ 0.20.0), while ``profile_run`` still holds the forward's hidden states (:5889-5895).

The peak is the larger of the two phases (the forward's intermediates are freed before the
sampler). Per rank, ``b`` = bytes of the compute dtype, ``H`` hidden, ``I`` = intermediate / TP:

* forward, dense MLP (``LlamaMLP``: ``gate_up_proj`` -> ``SiluAndMul`` -> ``down_proj``): live at
  the activation are the residual and normed input (2 H), ``gate_up`` (2 I) and its output (I):
  low ``T b (2H + 3I)``; best ``T b (3H + 3I)`` (one more hidden-size tensor, the layer loop's
  previous output; 0.6.4's two logs on one card differ by 0.92 GiB for 9,000 tokens = 109,760 B per
  token +- 1,200, and ``2 (3 x 4,096 + 3 x 14,336) = 110,592``); high ``T b (4H + 4I)`` (a quantized
  or compiled kernel keeping a further output of each size).
* forward, MoE (``fused_moe``'s ``intermediate_cache1..3``: ``M x topk x 2 I_e``, ``M topk x I_e``,
  ``M x topk x H``, vllm/model_executor/layers/fused_moe/fused_moe.py, ``M = min(T, 32,768)``,
  ``VLLM_FUSED_MOE_CHUNK_SIZE``): ``T b (3H + topk (3 I_e + H))`` best, the same + shared expert as high.
* sampler, V0 (the sort path), per element of the ``num_reqs x vocab`` logits: low 26 B = logits in the model dtype (b)
  + their fp32 copy (4, sampler.py:91) + the sort's values (4) and int64 indices (8) + the int64
  iota torch's CUDA sort feeds as values (8); best 38 B = + CUB radix sort's alternate key/value
  buffers (12); high 46 B = + top-p's softmax and cumsum (8, topk_topp_sampler.py:290-300) if the
  allocator frees nothing in between. Plus 2 T H b of hidden states held (the forward's output and
  the residual). 0.6.5's ``vllm serve meta-llama/Meta-Llama-3-8B`` logged 1.26 GiB at TP 1 and TP 2
  alike (vllm#10511): the sampler phase, not sharded; best gives 1.29.

Kernels kvcalc cannot model (attention workspaces, quantized GEMM scratch, LoRA, multimodal
encoders) are outside these bounds: pass ``--activation-memory`` with the logged figure.

Non-torch memory (CUDA context growth after the baseline, cuBLAS/cuBLASLt workspaces, NCCL and
custom all-reduce buffers at TP > 1) is not a formula in vLLM's code: it is measured
(``MemorySnapshot``, vllm/utils/mem_utils.py), and what is counted changed between releases. kvcalc's
bounds are assumptions from named measurements: per V0 generation (``V0_RELEASES``: 0.6.4 counts
the whole device outside torch, 0.6.5-0.6.6 the growth since ``init_device``'s baseline, 0.7-0.8 the
``MemorySnapshot`` growth; calibrated on logs ``benchmarks/budget_vs_logs`` does not evaluate) and
for V1 by TP (``NON_TORCH_TP1``, ``NON_TORCH_TP``; the V1 advisories were found with the code
search's exact string "GiB for non-torch memory, and", 2026-12).
"""

from __future__ import annotations

from dataclasses import dataclass

from kvcalc.models import ModelConfig
from kvcalc.units import MiB

FUSED_MOE_CHUNK_TOKENS = 32768
"""``VLLM_FUSED_MOE_CHUNK_SIZE`` default (vllm/envs.py): fused_moe works on at most this many tokens."""

SAMPLER_V1_BYTES_PER_LOGIT_EXTRA = (8, 12, 36)
"""V1 0.20+ (low, best, high): batches of 8 or more take the in-place Triton top-k/top-p kernel
(topk_topp_sampler.py:251-252 @ 0.20.0; 0.34.0 takes it for every batch, :212; its scratch is ``num_SMs x vocab``,
topk_topp_triton.py:1013-1020), then ``probs = softmax`` (4) and ``random_sample``'s exponential
``q`` (4, :334): fp32 copy 4 + probs 4 (+ q 4 = 12, best); high: the sort path below (36)."""
SAMPLER_BYTES_PER_LOGIT_EXTRA = (24, 36, 44)
"""Sampler bytes per ``num_reqs x vocab`` element besides the model-dtype logits (low, best, high):
fp32 copy 4 + sort values 4 + int64 indices 8 + int64 iota 8 = 24; + CUB double buffers 12 = 36;
+ top-p softmax and cumsum 8 = 44 (see the module docstring)."""

NON_TORCH_TP1 = (21 * MiB, 205 * MiB, 1833 * MiB)
"""V1 (the planner's vLLM releases): (low, best, high) non-torch bytes at TP 1, each rounded up to
a MiB: 0.02 GiB (V1 ``--kv-cache-memory`` advisories on 24 GB cards, "0.02 GiB for non-torch
memory"); 0.20 GiB, an assumption at the top of what V0 0.7-0.8 logged at TP 1 (0.05-0.16 GiB,
``V0_RELEASES["0.7"]``; V1's ``MemorySnapshot`` counts from the same kind of baseline); 1.79 GiB, the
largest TP 1 figure logged by any release read (vllm#10511, 0.6.5). No V1 log with the breakdown
and known inputs is in the corpus to evaluate them (``benchmarks/budget_vs_logs`` is V0)."""
NON_TORCH_TP = (205 * MiB, 1414 * MiB, 3666 * MiB)
"""V1 at TP > 1 (NCCL and custom all-reduce buffers join the context): 0.20 GiB (vllm#14447, V0
workers of a TP group), 1.38 GiB (the middle of the V1 advisories read at TP > 1: 0.95, 1.38, 1.63
GiB), 3.58 GiB (vllm#10511 at TP 2)."""

_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "half": 2, "float32": 4, "float": 4}


@dataclass(frozen=True, kw_only=True)
class Term:
    """One budget term as low / best / high bytes per GPU, and where each comes from."""

    name: str
    low_bytes: int
    best_bytes: int
    high_bytes: int
    source: str

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "low_bytes": self.low_bytes, "best_bytes": self.best_bytes,
                "high_bytes": self.high_bytes, "source": self.source}


def compute_dtype_bytes(dtype: str) -> int:
    """Bytes of the dtype the profile run computes in; a quantized checkpoint still computes in
    16-bit activations, so anything not listed counts as 2."""
    return _DTYPE_BYTES.get(dtype.lower(), 2)


def forward_bytes_per_token(model: ModelConfig, tp: int, b: int) -> tuple[int, int, int]:
    """(low, best, high) bytes one token of the profile batch holds at the MLP's peak, per rank."""
    h = model.hidden_size
    inter = -(-(model.intermediate_size or 4 * h) // tp)  # ceil: column-parallel shards round up
    dense = (b * (2 * h + 3 * inter), b * (3 * h + 3 * inter), b * (4 * h + 4 * inter))
    if model.moe is None:
        return dense
    moe = model.moe
    ie = -(-(moe.moe_intermediate_size or model.intermediate_size or 4 * h) // tp)
    shared = -(-(moe.shared_expert_intermediate_size or moe.num_shared_experts * ie * tp) // tp)
    k = moe.experts_per_token
    routed = (b * (2 * h + k * 3 * ie), b * (3 * h + k * (3 * ie + h)), b * (3 * h + k * (3 * ie + h) + 3 * shared))
    if moe.first_dense_layers == 0:
        return routed
    # leading dense layers (DeepSeek's first_k_dense_replace) run the dense MLP: the larger peak counts
    return tuple(max(d, r) for d, r in zip(dense, routed, strict=True))  # type: ignore[return-value]


def vllm_activation(model: ModelConfig, *, tp: int, max_num_batched_tokens: int, max_num_seqs: int | None,
                    dtype: str, sampler: str = "triton") -> Term:
    """The profile run's activation peak (module docstring), low / best / high; ``sampler`` is
    ``"triton"`` (V1 0.20+) or ``"sort"`` (V0's ``_apply_top_k_top_p`` sort path)."""
    b = compute_dtype_bytes(dtype)
    tokens = max_num_batched_tokens
    reqs = min(max_num_seqs or 256, tokens)
    vocab = model.vocab_size or 0
    moe_tokens = min(tokens, FUSED_MOE_CHUNK_TOKENS) if model.moe is not None else tokens
    fwd = forward_bytes_per_token(model, tp, b)
    fwd_bytes = [moe_tokens * f + (tokens - moe_tokens) * 2 * b * model.hidden_size for f in fwd]
    held = 2 * tokens * model.hidden_size * b
    samp = [reqs * vocab * (b + extra) + held for extra in
            (SAMPLER_V1_BYTES_PER_LOGIT_EXTRA if sampler == "triton" else SAMPLER_BYTES_PER_LOGIT_EXTRA)]
    low, best, high = (max(f, s) for f, s in zip(fwd_bytes, samp, strict=True))
    phase = "sampler" if samp[1] >= fwd_bytes[1] else "forward MLP"
    source = (f"vLLM profile run modelled: {tokens:,} batched tokens, {reqs:,} sampler rows x {vocab:,} vocab, "
              f"{b}-byte activations, TP {tp}; {phase} phase dominates (kvcalc/engines/activation.py)")
    return Term(name="activation", low_bytes=low, best_bytes=best, high_bytes=high, source=source)


def vllm_non_torch(tp: int) -> Term:
    """Non-torch memory bounds by TP (module docstring: measured by vLLM, bounded from logs)."""
    low, best, high = NON_TORCH_TP1 if tp == 1 else NON_TORCH_TP
    return Term(name="non_torch", low_bytes=low, best_bytes=best, high_bytes=high,
                source=(f"bounds from logged vLLM figures at TP {'1' if tp == 1 else '> 1'} "
                        "(vllm#10511, #10517, #12126, #12330, #14447, V1 advisories); measured by vLLM, not derived"))


V0_MAX_NUM_SEQS = 256
"""V0 ``SchedulerConfig.max_num_seqs`` default (vllm/config.py, 0.6-0.10)."""
V0_LONG_CONTEXT_TOKENS = 32768
"""V0 turns chunked prefill on by default above this ``max_model_len`` (``use_long_context``,
vllm/engine/arg_utils.py:1064-1085 @ 0.6.5, :1164-1186 @ 0.7.3, :1505-1524 @ 0.8.5) for a text
model without sliding window, LoRA or speculative decoding; the batch is then 2,048 tokens
(``_DEFAULT_MAX_NUM_BATCHED_TOKENS``, vllm/config.py:68 and :1977-1978 @ 0.8.5)."""
V0_DEFAULT_BATCHED_TOKENS = 2048


def vllm_v0_batched_tokens(max_model_len: int, *, chunked_prefill: bool | None = None,
                           chunked_tokens: int = V0_DEFAULT_BATCHED_TOKENS) -> int:
    """V0 ``SchedulerConfig``'s ``max_num_batched_tokens``: ``chunked_tokens`` with chunked prefill
    (2,048 from 0.6.5, vllm/config.py:1340-1344 @ 0.6.5, :1974-1994 @ 0.8.5; 512 in 0.6.4,
    config.py:1110-1114 @ 0.6.4.post1), else ``max(max_model_len, 2048)``.
    ``chunked_prefill=None``: V0's default, on above 32K (``V0_LONG_CONTEXT_TOKENS``; 0.6.4.post1
    ``engine/arg_utils.py:996-1012``)."""
    if chunked_prefill is None:
        chunked_prefill = max_model_len > V0_LONG_CONTEXT_TOKENS
    return chunked_tokens if chunked_prefill else max(max_model_len, V0_DEFAULT_BATCHED_TOKENS)


@dataclass(frozen=True, kw_only=True)
class NonTorchBounds:
    """Non-torch memory of one vLLM generation at TP 1 or TP > 1: low / best / high bytes, each
    from a measurement named in ``source`` (a kvcalc assumption: vLLM measures it, no formula)."""

    low_bytes: int
    best_bytes: int
    high_bytes: int
    source: str


def _gib_mib(hundredths: int) -> int:
    """A figure vLLM printed as ``X.XXGiB`` (given in hundredths), rounded up to whole MiB."""
    return -(-hundredths * 1024 // 100) * MiB


NCCL_GROWTH_HIGH_BYTES = _gib_mib(179)
"""What TP > 1 added to non-torch memory in the one pair of runs that differ only in TP: vllm#10511
(0.6.5, Llama-3-8B on H100) logged 1.79 GiB at TP 1 and 3.58 at TP 2 (NCCL communicators, the
custom all-reduce buffers): 1.79 GiB, the high bound of that growth at TP > 1."""


@dataclass(frozen=True, kw_only=True)
class V0Release:
    """A vLLM V0 generation's profile-run rules for the budget terms: what its non-torch
    figure counts (read from its ``worker.py``) and the bounds measured for it.

    The activation peak is the same model in every V0 release read (0.6.4, 0.6.5, 0.7.0, 0.7.3,
    0.8.5: ``ModelRunner.profile_run`` runs ``max_num_batched_tokens`` over ``max_num_seqs``
    prompts with ``SamplingParams(top_p=0.99, top_k=vocab - 1)``, worker/model_runner.py:1229-1231 @
    0.6.5, :1243 @ 0.7.3, :1268 @ 0.8.5: the sampler's sort path, ``_apply_top_k_top_p``,
    model_executor/layers/sampler.py:387-412 @ 0.8.5)."""

    key: str
    counts: str
    """What vLLM counts as non-torch memory in this generation (from the code)."""
    chunked_tokens: int
    """The batch under chunked prefill (``vllm_v0_batched_tokens``)."""
    tp1: NonTorchBounds
    tp: NonTorchBounds


V0_RELEASES: dict[str, V0Release] = {
    "0.6.4": V0Release(
        key="0.6.4",
        counts=("device memory in use (mem_get_info) less torch's allocated bytes after empty_cache: the "
                "CUDA context and anything outside torch (vllm/worker/worker.py:206-213 @ 0.6.4.post1)"),
        chunked_tokens=512,
        # High: 0.6.4 counts the CUDA context, which grows with the device, so one GTX 1080's 0.47 GiB
        # cannot bound an H-class GPU; the high bound is the largest non-torch figure any release
        # logged at TP 1 (vllm#10511, H100), as for V1 (NON_TORCH_TP1). Widened after rho-1b on an
        # H200 (0.73 GiB) fell outside the GTX 1080 bound: that row no longer tests the high bound.
        tp1=NonTorchBounds(low_bytes=_gib_mib(15), best_bytes=_gib_mib(31), high_bytes=_gib_mib(179),
                           source=("low and best calibrated on the two 0.6.4.post1 logs whose models kvcalc's "
                                   "activation model does not cover (non-gated MLPs), on one GTX 1080: "
                                   "facebook/opt-125m 0.15 GiB (code-search index id 19719842090), microsoft/phi-1_5 "
                                   "0.47 (index id 19400629813): low, the middle; high: the largest TP 1 figure "
                                   "any release logged, 1.79 GiB (vllm#10511), since 0.6.4 counts the CUDA context")),
        tp=NonTorchBounds(low_bytes=_gib_mib(15), best_bytes=_gib_mib(31 + 7), high_bytes=_gib_mib(179 + 179),
                          source=("assumed: TP 1's bounds plus 0.07 best (0.7-0.8's TP > 1 calibration over its "
                                  "TP 1 best) and up to 1.79 GiB of NCCL growth (vllm#10511)")),
    ),
    "0.6.5": V0Release(
        key="0.6.5",
        counts=("device memory used since init_device's free-memory baseline (taken before the distributed "
                "init), less the weights and torch's growth during the profile run (vllm/worker/worker.py:"
                "142-148, :198-201 and vllm/utils.py:1714-1742 @ 0.6.5; the same in 0.6.6.post1, worker.py:143, "
                ":198-199, utils.py:1819)"),
        chunked_tokens=V0_DEFAULT_BATCHED_TOKENS,
        tp1=NonTorchBounds(
            low_bytes=_gib_mib(10), best_bytes=_gib_mib(19), high_bytes=_gib_mib(179),
            source=("calibrated on four 0.6.5-0.6.6 TP 1 logs: 1.79 GiB (vllm#10511, H100), 0.26 (Phi-4 GPTQ on an "
                    "H100, code-search index id 5773335890), 0.12 (a vLLM guide's example, 79.14 GiB GPU, index id "
                    "57908690698), 0.10 (vllm#12330, A100 40GB): low the least, best the median, high the most")),
        tp=NonTorchBounds(
            low_bytes=_gib_mib(10), best_bytes=_gib_mib(19 + 7), high_bytes=_gib_mib(179 + 179),
            source=("assumed: TP 1's bounds plus 0.07 best (0.7-0.8's TP > 1 calibration over its TP 1 best) and "
                    "up to 1.79 GiB of NCCL growth; high = vllm#10511's 3.58 GiB at TP 2")),
    ),
    "0.7": V0Release(
        key="0.7",
        counts=("``MemorySnapshot`` growth from init_device's baseline (taken before the distributed init) "
                "less the weights and torch's current growth: CUDA lazy module loading, NCCL and custom "
                "all-reduce buffers at TP > 1 (vllm/worker/worker.py:159-166, :226-235 @ 0.7.3; "
                "vllm/utils.py memory_profiling; the same in 0.7.0-0.8.5)"),
        chunked_tokens=V0_DEFAULT_BATCHED_TOKENS,
        tp1=NonTorchBounds(
            low_bytes=_gib_mib(5), best_bytes=_gib_mib(13), high_bytes=_gib_mib(16),
            source=("calibrated on four TP 1 logs in 0.7-0.8's two-line form that the table does not evaluate: "
                    "0.16 GiB (vllm#12126, H100), 0.16 (generative-computing/mellea#416, H100), 0.09 (a 32B "
                    "model's TP 1 probe log, code-search index id 62251832846), 0.05 (OCI AI Quick Actions docs, "
                    "22.07 GiB GPU, index id 14319663172): low the least, best the median (0.125, rounded up), "
                    "high the most")),
        tp=NonTorchBounds(
            low_bytes=_gib_mib(5), best_bytes=_gib_mib(20), high_bytes=_gib_mib(16 + 179),
            source=("calibrated: best 0.20 GiB (vllm#14447, a TP/PP group of RTX 3090s, not evaluated); low TP 1's "
                    "low; high TP 1's high plus 1.79 GiB of NCCL growth (vllm#10511, TP 2 less TP 1), which also "
                    "holds vllm#11743's 1.27 GiB (TP > 1 workers under sleep mode's allocator)")),
    ),
}
"""Non-torch bounds per V0 generation. No log evaluated in ``benchmarks/budget_vs_logs`` is used
here; the one row it marks "calibration" (vllm#10511) is one of 0.6.5-0.6.6's four figures."""


def v0_release(version: str) -> V0Release:
    """The generation whose rules a V0 log printed by ``version`` follows (0.6.4, 0.6.5-0.6.6, 0.7-0.8)."""
    parts = tuple(int(p) for p in version.split(".")[:3] if p.isdigit())
    if parts[:2] == (0, 6):
        return V0_RELEASES["0.6.5" if parts >= (0, 6, 5) else "0.6.4"]
    if (0, 7) <= parts[:2] <= (0, 10):
        return V0_RELEASES["0.7"]
    raise ValueError(f"vLLM {version}: not a V0 generation kvcalc models (0.6.4-0.10)")


def vllm_v0_profile_terms(model: ModelConfig, *, max_model_len: int, tp: int = 1, release: str = "0.7",
                          max_num_seqs: int = V0_MAX_NUM_SEQS, max_num_batched_tokens: int | None = None,
                          chunked_prefill: bool | None = None) -> tuple[Term, Term]:
    """(activation, non-torch) of a V0 start-up: the profile run over ``max_num_batched_tokens``
    (default: V0's, ``vllm_v0_batched_tokens``) and ``max_num_seqs`` sequences, sampled on the sort
    path; non-torch from the generation's bounds (``V0_RELEASES``)."""
    rel = V0_RELEASES[release]
    tokens = max_num_batched_tokens or vllm_v0_batched_tokens(max_model_len, chunked_prefill=chunked_prefill,
                                                              chunked_tokens=rel.chunked_tokens)
    act = vllm_activation(model, tp=tp, max_num_batched_tokens=tokens, max_num_seqs=max_num_seqs,
                          dtype=model.dtype, sampler="sort")
    b = rel.tp1 if tp == 1 else rel.tp
    non_torch = Term(name="non_torch", low_bytes=b.low_bytes, best_bytes=b.best_bytes, high_bytes=b.high_bytes,
                     source=f"vLLM {rel.key} V0 at TP {tp}: {b.source}; counts {rel.counts}")
    return act, non_torch


CUDAGRAPH_PER_GRAPH_BYTES = (1 * MiB, 4 * MiB, 16 * MiB)
"""(low, best, high) bytes each further captured graph adds. Low: the floor vLLM itself uses ("at
least 1 MiB per graph for driver overhead", gpu_model_runner.py:6009-6010 @ 0.20.0); best and high
are kvcalc assumptions (vLLM measures the second capture's growth; logged totals of 0.05-0.68 GiB for
single-GPU models of 8-17 GiB weights fit 1-7 MiB per graph)."""


def vllm_capture_sizes(max_num_batched_tokens: int, max_num_seqs: int | None) -> list[int]:
    """vLLM's default CUDA-graph capture sizes (``VllmConfig._set_cudagraph_sizes``,
    vllm/config/vllm.py:1469-1521 @ 0.20.0): largest ``min(2 x max_num_seqs, 512, max_num_batched_tokens)``
    (no speculative decoding); 1, 2, 4, then steps of 8 below 256 and of 16 from 256."""
    largest = min(2 * (max_num_seqs or 256), 512, max_num_batched_tokens)
    sizes = [i for i in (1, 2, 4) if i <= largest]
    if largest >= 8:
        sizes += list(range(8, min(largest + 1, 256), 8))
    if largest >= 256:
        sizes += list(range(256, largest + 1, 16))
    return sorted(set(sizes))


def vllm_cudagraph(model: ModelConfig, *, tp: int, max_num_batched_tokens: int, max_num_seqs: int | None,
                   dtype: str) -> Term:
    """vLLM's CUDA-graph memory estimate, subtracted from the KV budget since 0.20.0
    (``VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS`` defaults on, vllm/envs.py:1724-1726; gpu_worker.py:
    379-424). ``profile_cudagraph_memory`` (gpu_model_runner.py:5949-6040) captures, per mode, the
    largest size first and takes ``max over modes of that first capture + (graphs - 1) x per-graph``
    summed over modes; the default mode FULL_AND_PIECEWISE has two modes of the same sizes. The first
    capture holds the forward's intermediates at the largest size (the graph pool keeps them):
    ``largest x forward bytes per token`` (low / best / high as the activation's), twice that as the
    high bound (FULL captures attention at ``max_num_tokens / size`` sequence lengths)."""
    sizes = vllm_capture_sizes(max_num_batched_tokens, max_num_seqs)
    largest = sizes[-1]
    fwd = forward_bytes_per_token(model, tp, compute_dtype_bytes(dtype))
    modes = 2
    further = modes * (len(sizes) - 1)
    low = largest * fwd[0] + further * CUDAGRAPH_PER_GRAPH_BYTES[0]
    best = largest * fwd[1] + further * CUDAGRAPH_PER_GRAPH_BYTES[1]
    high = 2 * largest * fwd[2] + further * CUDAGRAPH_PER_GRAPH_BYTES[2]
    source = (f"vLLM CUDA-graph estimate modelled: {len(sizes)} capture sizes up to {largest} in 2 modes "
              "(FULL_AND_PIECEWISE); per-graph bytes assumed (1 MiB floor from vLLM, 4 MiB best, 16 MiB high)")
    return Term(name="cudagraph", low_bytes=low, best_bytes=best, high_bytes=high, source=source)
