"""llama.cpp: ``n_ctx`` padded to 256 cells, SWA layers in their own smaller cache, GGUF cache types.

Sources (ggml-org/llama.cpp, late-2025 upstream, after PR #17046):

* ``src/llama-context.cpp``, ``llama_context`` constructor:
  ``cparams.n_ctx = GGML_PAD(cparams.n_ctx, 256)``; with a non-unified cache
  ``n_ctx_seq = GGML_PAD(n_ctx / n_seq_max, 256)`` cells per sequence stream.
* ``src/llama-kv-cache-iswa.cpp``, ``llama_kv_cache_iswa`` constructor: non-SWA layers get
  ``size_base = kv_size`` cells, SWA layers
  ``size_swa = GGML_PAD(min(size_base, n_swa * (unified ? n_seq_max : 1) + n_ubatch), 256)``
  (``n_ubatch`` defaults to 512; ``size_base`` is already a multiple of 256, so this is
  ``min(size_base, PAD(n_swa + n_ubatch, 256))``), unless ``swa_full``: llama-server and
  llama-cli default to ``swa_full = false`` (common.h), which kvcalc models; the C API's
  ``llama_context_default_params`` (and so bindings such as llama-cpp-python) default to true,
  which keeps full-size SWA caches.
* Checked against a real llama.cpp: the one vendored in llama-cpp-python 0.3.36 (Oct 2026), on
  tiny GGUF models, ten cases (f16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl; n_ctx padding; SWA
  caches) all log the cells and K/V MiB kvcalc predicts (``benchmarks/llama_cpp_crosscheck.py``,
  ``tests/test_llama_cpp_real.py``).
* ``src/llama-kv-cache.cpp``: per layer K ``[n_embd_k_gqa, kv_size]`` of ``type_k`` and V of
  ``type_v``, bytes per cell ``ggml_row_size(type, H x d)``; the log line reports
  ``K (%s): %7.2f MiB, V (%s): %7.2f MiB`` apart, so kvcalc reports K and V apart too.
* ``ggml/src/ggml-common.h``: block sizes (q8_0 34 B / 32 values, q4_0 18 B / 32, ...), in
  ``kvcalc.dtypes``.
* MLA GGUFs cache the latent (``kv_lora_rank + n_rot`` = 576 values for DeepSeek-V3) as K and no V
  (``llama_kv_cache`` constructor: ``has_v = !is_mla``, with ``is_mla()`` true when the GGUF sets
  ``key_length_mla``/``value_length_mla``; read in the llama.cpp vendored by llama-cpp-python 0.3.36).

* Sliding windows, per architecture: llama.cpp slides only for the architectures whose
  ``load_arch_hparams`` reads ``LLM_KV_ATTENTION_SLIDING_WINDOW`` and sets a ``swa_type``
  (``src/models/<arch>.cpp`` in the llama.cpp vendored by llama-cpp-python 0.3.36): gemma2,
  gemma3, gemma3n, gemma4, cohere2, openai-moe (gpt-oss), llama4 (chunked), exaone4, olmo2 (OLMo-3),
  mimo2, step35, afmoe, smallthinker. ``models/llama.cpp`` (the ``llama`` architecture, which
  Mistral-7B converts to) and ``models/qwen2.cpp`` never read the key: ``n_swa = 0`` and every
  layer holds ``n_ctx`` cells; ``models/phi3.cpp`` reads it and turns it off ("Phi SWA is currently
  disabled", ``swa_type = LLAMA_SWA_TYPE_NONE``). A model with no architecture (a kvcalc YAML
  without one) keeps the windows it declares.

``--batch N`` is modelled as N parallel sequences (``-np N``) with a non-unified cache, each stream
of ``--seq-len`` cells; at batch 1 unified and non-unified are the same. No head sharding: llama.cpp
splits whole layers across devices, so ``--tp`` is not meaningful here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kvcalc.dtypes import KVDtype, cdiv
from kvcalc.engines.base import DeviceBudget, DeviceRequest, DeviceUse, Engine, Pool, PoolRequest, Workload
from kvcalc.errors import UnsupportedByEngineError
from kvcalc.specs import (
    ChunkedAttention,
    CrossAttention,
    FixedState,
    FullAttention,
    IndexedLatentAttention,
    LatentAttention,
    SlidingWindowAttention,
    Spec,
)

if TYPE_CHECKING:
    from kvcalc.layout import RankLayout
    from kvcalc.measure.layout import TensorLayout
    from kvcalc.models import ModelConfig

LLAMA_CPP_VERSION = "llama.cpp late-2025 and later (n_ctx padded to 256, PR #17046; checked on llama-cpp-python 0.3.36)"
N_CTX_PAD = 256
"""``GGML_PAD(cparams.n_ctx, 256)`` in ``llama_context::llama_context``."""
N_UBATCH = 512
"""Default ``n_ubatch`` (``common_params.n_ubatch = 512``)."""


SLIDING_ARCHITECTURES = frozenset({
    "Gemma2ForCausalLM", "Gemma3ForCausalLM", "Gemma3ForConditionalGeneration", "Gemma3nForCausalLM",
    "Gemma3nForConditionalGeneration", "Gemma4ForCausalLM", "Gemma4ForConditionalGeneration",
    "Cohere2ForCausalLM", "GptOssForCausalLM", "Llama4ForCausalLM", "Llama4ForConditionalGeneration",
    "Exaone4ForCausalLM", "Olmo3ForCausalLM", "MiMoV2FlashForCausalLM", "Step3p5ForCausalLM",
    "AfmoeForCausalLM", "SmallThinkerForCausalLM",
})
"""HF architectures whose llama.cpp architecture slides (reads ``sliding_window``, sets ``swa_type``)."""


def slides(model: ModelConfig) -> bool:
    """Whether llama.cpp gives ``model``'s sliding / chunked layers their own smaller cache."""
    return model.architecture is None or model.architecture in SLIDING_ARCHITECTURES


def pad(n: int, to: int) -> int:
    """``GGML_PAD(x, n)``: round up to a multiple of ``to``."""
    return cdiv(n, to) * to


class LlamaCppPolicy(Engine):
    name = "llama.cpp"
    title = "llama.cpp (llama_kv_cache / llama_kv_cache_iswa)"
    version = LLAMA_CPP_VERSION
    source = (
        "llama.cpp llama-context.cpp n_ctx = GGML_PAD(n_ctx, 256); llama-kv-cache-iswa.cpp SWA layers "
        "min(n_ctx, GGML_PAD(n_swa + n_ubatch 512, 256)) cells; ggml-common.h block bytes"
    )
    splits_kv = True
    plannable = True
    smaller_cache_dtypes = (("q8_0", "llama.cpp -ctk q8_0 -ctv q8_0"), ("q4_0", "llama.cpp -ctk q4_0 -ctv q4_0"))
    swa_full = False
    """llama-server's ``swa_full = false`` (common.h); the C API's default is true."""

    def state_rows(self, spec: FixedState, dtype: KVDtype) -> list[tuple[str, int, KVDtype]]:
        # llama_memory_recurrent is built with recurrent_type_r = recurrent_type_s = GGML_TYPE_F32
        # (llama-model.cpp create_memory), whatever -ctk/-ctv say; r holds (d_conv - 1) conv columns.
        from kvcalc.dtypes import get_dtype

        return [(key, n, get_dtype("fp32")) for key, n in spec.state_elements.items()]

    def auto_dtype(self, model: ModelConfig) -> tuple[str, str]:
        # llama_context_default_params / common.h: type_k = type_v = GGML_TYPE_F16 whatever the
        # weights are (-ctk/-ctv choose another); so "auto" is f16 here.
        return "fp16", "llama.cpp default cache type f16"

    def prepare(self, layout: RankLayout, dtype: KVDtype, state_dtype: KVDtype, work: Workload) -> Workload:
        """For an architecture llama.cpp does not slide, its windows are off."""
        import dataclasses

        return work if slides(layout.model) else dataclasses.replace(work, windows=False)

    stateful_attention_refusal = (
        "layers holding a Mamba state and an attention KV cache at once (Falcon-H1, Zamba2) are not modelled "
        "for llama.cpp; use --engine neutral, hf or hf-static")

    def tokens_held(self, spec: Spec, work: Workload) -> int:
        self.refuse_stateful_attention(spec)
        if isinstance(spec, (IndexedLatentAttention, CrossAttention)):
            # Not checked against a llama.cpp build: the DSA indexer cache and the Mllama
            # cross-attention cache (removed with the vision-model rework) are refused, not guessed.
            raise UnsupportedByEngineError(
                f"--engine llama.cpp: {spec.kind} layers are not modelled for {LLAMA_CPP_VERSION}")
        if not spec.grows:
            return 0
        n_ctx = pad(work.seq_len, N_CTX_PAD)
        if isinstance(spec, (SlidingWindowAttention, ChunkedAttention)) and work.windows:
            return min(n_ctx, pad(spec.window + self.work_ubatch(work), N_CTX_PAD))
        return n_ctx

    def describe_tokens(self, spec: Spec, work: Workload) -> str:
        n_ctx = pad(work.seq_len, N_CTX_PAD)
        if isinstance(spec, (SlidingWindowAttention, ChunkedAttention)) and work.windows:
            return (
                f"min(n_ctx {n_ctx}, PAD({spec.window} n_swa + {self.work_ubatch(work)} n_ubatch, 256)) = "
                f"{self.tokens_held(spec, work)} cells"
            )
        if isinstance(spec, (SlidingWindowAttention, ChunkedAttention)):
            return f"n_ctx PAD({work.seq_len}, 256) = {n_ctx} cells (this architecture's window is off in llama.cpp)"
        return f"n_ctx PAD({work.seq_len}, 256) = {n_ctx} cells"

    # -- tensors: K and V as rows of H x d values per cell, [b x T, row]; MLA one K row, no V
    def attention_tensors(self, spec: FullAttention, dtype: KVDtype, work: Workload,
                          tokens: int) -> list[TensorLayout]:
        from kvcalc.measure.layout import row

        lead = (work.batch * tokens,)
        h = spec.num_kv_heads
        return [row("k", lead, h * spec.head_dim, dtype), row("v", lead, h * spec.v_dim, dtype)]

    def latent_tensors(self, spec: LatentAttention, dtype: KVDtype, work: Workload,
                       tokens: int) -> list[TensorLayout]:
        from kvcalc.measure.layout import typed

        return [typed("k", (work.batch * tokens, spec.latent_dim), dtype)]

    def block_rows_lead(self, work: Workload, tokens: int) -> tuple[int, ...]:
        return (work.batch * tokens,)

    def pool(self, req: PoolRequest) -> Pool:
        """The byte pool of the base engine, plus llama.cpp's own buffer lines per device for
        ``-c max_model_len x slots -np slots -ngl -ts`` (``kv_placement``)."""
        import dataclasses

        from kvcalc.units import MiB

        fa_note = check_cache_types(req.dtype, req.dtype, req.flash_attn)
        base = super().pool(req)
        if fa_note:
            base = dataclasses.replace(base, notes=[*base.notes, fa_note])
        gpus = max(req.layout.tp * req.layout.pp, 1)
        dev_given = device_flags(req) or spreads(req)
        if not dev_given:
            # One GPU holds every layer: the estimate is the one buffer (and the placement, per
            # layer, would cost O(layers) on the 10**6-layer benchmark model).
            return base
        n_ctx = req.max_model_len * req.parallel
        try:
            p = kv_placement(req.model, req.dtype, req.dtype, n_ctx=n_ctx, n_parallel=req.parallel,
                             kv_unified=req.kv_unified, n_gpu_layers=req.n_gpu_layers,
                             split=gpu_split(req.tensor_split, (None,) * gpus), no_kv_offload=req.no_kv_offload,
                             split_mode=req.split_mode, flash_attn="on", n_ubatch=self.n_ubatch(req),
                             swa_full=self.swa_full)
        except UnsupportedByEngineError as e:
            if device_flags(req):
                raise
            return dataclasses.replace(base, notes=[*base.notes, f"not placed per device: {e}"])
        lines = [f"llama_kv_cache: {b.device:>10} KV buffer size = {b.total_bytes / MiB:8.2f} MiB" for b in p.buffers]
        where = ", ".join(f"{b.device} {b.layers} layers {b.total_bytes:,} B" for b in p.buffers)
        notes = [f"{self.name} per device ({self.command_line(req)}): "
                 f"{p.n_ctx_seq:,} cells x {p.streams} stream(s); {where}", *p.notes]
        return dataclasses.replace(base, log_lines=[*base.log_lines, *lines], notes=[*base.notes, *notes])

    def n_ubatch(self, req: PoolRequest) -> int:
        """``-ub``: llama-server's default 512 (common.h)."""
        return N_UBATCH

    def work_ubatch(self, work: Workload) -> int:
        """``-ub`` for an estimate's workload (``--batch`` slots of ``--seq-len``)."""
        return N_UBATCH

    def command_line(self, req: PoolRequest) -> str:
        n_ctx = req.max_model_len * req.parallel
        return (f"llama-server -c {n_ctx} -np {req.parallel}{' --kv-unified' if req.kv_unified else ''} "
                f"-ngl {req.n_gpu_layers}"
                + (f" -ts {','.join(f'{w:g}' for w in req.tensor_split)}" if req.tensor_split else "")
                + (f" -sm {req.split_mode}" if req.split_mode != "layer" else "")
                + (" -nkvo" if req.no_kv_offload else ""))

    def device_budget(self, req: PoolRequest, dev: DeviceRequest) -> DeviceBudget | None:
        """Per device: ``device_budget`` for ``-c max_model_len x slots -np slots`` and the device flags
        (None for a layer kind not placed, when no device flag asked for the placement)."""
        if not device_flags(req) and any(isinstance(sp, (IndexedLatentAttention, CrossAttention, FixedState))
                                         for sp, _ in req.model.spec_counts()):
            return None
        return device_budget(req.model, req.dtype, req.dtype, dev, n_ctx=req.max_model_len * req.parallel,
                             n_parallel=req.parallel, kv_unified=req.kv_unified, n_gpu_layers=req.n_gpu_layers,
                             tensor_split=req.tensor_split, no_kv_offload=req.no_kv_offload,
                             split_mode=req.split_mode, n_ubatch=self.n_ubatch(req), swa_full=self.swa_full)


LlamaCppEngine = LlamaCppPolicy
ENGINE = LlamaCppPolicy()
POLICY = ENGINE


# ----------------------------------------------------------------------------- devices and slots
# How llama.cpp spreads the cache over devices and parallel slots, read in the llama.cpp vendored
# by llama-cpp-python 0.3.36 (sdist, vendor/llama.cpp):
#
# * src/llama-model.cpp ``llama_model_base::load_tensors`` (lines 1556-1614): split points are the
#   cumulative ``--tensor-split`` weights (or, when none is given or all are 0, each device's free
#   memory), normalised; ``n_gpu_layers`` counts the output layer (``n_gpu_layers()`` is
#   ``n_layer + 1`` for -1 / "all"); ``i_gpu_start = max(n_layer + 1 - ngl, 0)``,
#   ``act_gpu_layers = min(ngl, n_layer + 1)``; repeating layer ``il >= i_gpu_start`` goes to device
#   ``upper_bound(splits, float(il - i_gpu_start) / act_gpu_layers)``, the others to the CPU. The
#   arithmetic is float32 (kvcalc rounds each step to float32 the same way).
# * src/llama-kv-cache.cpp constructor (lines 208-221): a layer's K/V tensors go to the buffer type
#   of ``model.dev_layer(il)`` when ``offload`` (``offload_kqv``, off with ``--no-kv-offload``),
#   else to the CPU buffer; one buffer per device, logged as ``%10s KV buffer size = %8.2f MiB``
#   (line 291). Each tensor is ``[n_embd_gqa, kv_size, n_stream]``: ``n_stream`` = ``n_seq_max``
#   unless ``kv_unified`` (then 1).
# * src/llama-context.cpp (lines 289-305): ``n_ctx = PAD(n_ctx, 256)``; unified: ``n_ctx_seq =
#   n_ctx``; else ``n_ctx_seq = PAD(n_ctx / n_seq_max, 256)`` and ``n_ctx = n_ctx_seq x n_seq_max``.
#   So ``-np N`` without ``--kv-unified`` splits n_ctx across N streams (each slot gets n_ctx / N
#   cells), and the whole n_ctx (rounded) is allocated at start-up either way.
# * tools/server/server.cpp lines 156-160: llama-server's default ``-np`` is auto = 4 slots with
#   ``kv_unified = true`` (one n_ctx-cell stream shared by the slots); an explicit ``-np N`` keeps
#   ``kv_unified = false`` unless ``--kv-unified`` (common/arg.cpp: "default: enabled if number of
#   slots is auto").
# * src/llama-context.cpp lines 3840-3849: a quantized V cache needs flash attention: ``-fa auto``
#   turns it on ("enabling flash_attn since it is required for quantized V cache"), ``-fa off``
#   refuses ("quantized V cache requires flash_attn to be enabled").
# * Ollama runs llama-server with ``-c num_ctx x N -np N`` (kvcalc/engines/ollama.py, v0.32.15;
#   ollama_0_24.py for the last release with its own runners).

SERVER_AUTO_SLOTS = 4
"""llama-server's ``-np`` auto: 4 slots, unified cache (tools/server/server.cpp:156-160)."""


def _f32(x: float) -> float:
    """Round to IEEE float32, as llama.cpp's ``float`` split arithmetic does."""
    import struct

    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def layer_devices(n_layer: int, n_gpu_layers: int, split: tuple[float, ...]) -> list[int | None]:
    """The device index each repeating layer's weights and KV live on (None: host memory), for
    ``n_gpu_layers`` (-1: all) and ``split`` (one weight per device: ``--tensor-split`` or each
    device's free memory); ``load_tensors`` in llama-model.cpp (see above)."""
    from kvcalc.errors import InvalidRequestError

    if n_gpu_layers < -1:
        raise InvalidRequestError("--n-gpu-layers", str(n_gpu_layers), "-1 (all) or a count >= 0")
    if any(w < 0 for w in split) or (split and not any(w > 0 for w in split)):
        raise InvalidRequestError("--tensor-split", ",".join(f"{w:g}" for w in split),
                                  "non-negative weights, at least one above 0 (all 0 makes llama.cpp split by each "
                                  "device's free memory, which kvcalc does not know: give the weights)")
    ngl = n_layer + 1 if n_gpu_layers == -1 else n_gpu_layers
    return assign_layers(n_layer, max(n_layer + 1 - ngl, 0), min(ngl, n_layer + 1) if split else 0, split)


def assign_layers(n_layer: int, i_gpu_start: int, act: int, split: tuple[float, ...]) -> list[int | None]:
    """``get_layer_buft_list`` for each repeating layer, from the start layer and the active
    layer count (``act_gpu_layers``); older builds (mid-2024) had ``i_gpu_start = n_layer - ngl``
    and ``act = ngl`` when ngl <= n_layer, which ``check-log`` reads from the printed lines."""
    points: list[float] = []
    total = 0.0
    for w in split:
        total = _f32(total + _f32(w))
        points.append(total)
    points = [_f32(p / total) for p in points]
    import bisect

    out: list[int | None] = []
    for il in range(n_layer):
        if il < i_gpu_start or il - i_gpu_start >= act:
            out.append(None)
        else:
            out.append(bisect.bisect_right(points, _f32(_f32(float(il - i_gpu_start)) / act)))
    return out


def placement(n_layer: int, n_gpu_layers: int, split: tuple[float, ...], split_mode: str = "layer",
              main_gpu: int = 0) -> tuple[list[int | None], int | None]:
    """(device of each repeating layer, device of the output layer); None is host memory.

    llama-model.cpp ``load_tensors`` (llama-cpp-python 0.3.36, vendor/llama.cpp/src/llama-model.cpp
    :1589-1614): the input layer (token embeddings) always stays on the CPU ("there is very little
    benefit to offloading the input layer"), repeating layer ``il`` on ``get_layer_buft_list(il)``,
    the output layer (``output_norm``, ``output``) on ``get_layer_buft_list(n_layer)``: it is the
    last of the ``n_layer + 1`` layers -ngl counts. ``--split-mode none`` keeps only ``main_gpu``
    (src/llama.cpp:288-301)."""
    from kvcalc.errors import InvalidRequestError

    if split_mode not in ("none", "layer", "row"):
        raise InvalidRequestError("--split-mode", split_mode, "none, layer or row")
    used = (1.0,) if split_mode == "none" else split
    layer_devices(0, n_gpu_layers, used)  # the same checks of -ngl and the split
    ngl = n_layer + 1 if n_gpu_layers == -1 else n_gpu_layers
    both = assign_layers(n_layer + 1, max(n_layer + 1 - ngl, 0), min(ngl, n_layer + 1) if used else 0, used)
    if split_mode == "none":
        both = [None if d is None else main_gpu for d in both]
    return both[:n_layer], both[n_layer]


def slot_cells(n_ctx: int, n_parallel: int, kv_unified: bool) -> tuple[int, int]:
    """(cells per stream ``n_ctx_seq``, streams) for ``-c n_ctx -np n_parallel`` (llama-context.cpp
    :289-305; llama-kv-cache.cpp ``n_stream = unified ? 1 : n_seq_max``)."""
    from kvcalc.errors import InvalidRequestError

    if n_parallel < 1:
        raise InvalidRequestError("--parallel", str(n_parallel), "a slot count >= 1")
    padded = pad(n_ctx, N_CTX_PAD)
    if kv_unified:
        return padded, 1
    per = pad(padded // n_parallel, N_CTX_PAD)
    if per == 0:
        raise InvalidRequestError("--context", str(n_ctx), f"at least 1 cell per slot (n_ctx / {n_parallel} slots)")
    return per, n_parallel


def check_cache_types(k_dtype: KVDtype, v_dtype: KVDtype, flash_attn: str) -> str | None:
    """llama.cpp's refusal of a quantized V cache without flash attention (llama-context.cpp
    :3840-3849): ``-fa off`` is an error, ``-fa auto`` turns flash attention on (returned as a note)."""
    from kvcalc.errors import InvalidRequestError

    if flash_attn not in ("auto", "on", "off"):
        raise InvalidRequestError("--flash-attn", flash_attn, "auto, on or off")
    if v_dtype.is_block_format:
        if flash_attn == "off":
            raise UnsupportedByEngineError(
                f"--engine llama.cpp: quantized V cache ({v_dtype.name}) requires flash_attn to be enabled "
                "(llama.cpp refuses it with -fa off: 'quantized V cache requires flash_attn to be enabled')")
        if flash_attn == "auto":
            return "flash_attn enabled since it is required for quantized V cache (llama.cpp -fa auto)"
    return None


@dataclass(frozen=True)
class DeviceKv:
    """One llama.cpp KV buffer: the device's name as llama.cpp logs it, its layers and bytes."""

    device: str
    layers: int
    k_bytes: int
    v_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.k_bytes + self.v_bytes


@dataclass(frozen=True)
class KvPlacement:
    """The KV cache per device for one llama.cpp context."""

    n_ctx_seq: int
    streams: int
    buffers: tuple[DeviceKv, ...]
    notes: tuple[str, ...] = ()

    @property
    def total_bytes(self) -> int:
        return sum(b.total_bytes for b in self.buffers)


def layer_kv(model: ModelConfig, k_dtype: KVDtype, v_dtype: KVDtype, *, n_ctx_seq: int, streams: int,
             n_parallel: int, kv_unified: bool, n_ubatch: int = N_UBATCH, swa_full: bool = False,
             ) -> list[tuple[int, int] | None]:
    """(K bytes, V bytes) of each layer's cache, None for a layer without one: ``n_ctx_seq x
    streams`` cells, sliding layers ``min(n_ctx_seq, PAD(n_swa x (n_seq_max if unified else 1) +
    n_ubatch, 256))`` unless ``swa_full`` (llama-kv-cache-iswa.cpp)."""
    windows = slides(model)
    out: list[tuple[int, int] | None] = []
    for spec in model.layer_specs:
        if isinstance(spec, (IndexedLatentAttention, CrossAttention, FixedState)):
            raise UnsupportedByEngineError(
                f"--engine llama.cpp: per-device placement of {spec.kind} layers is not modelled for "
                f"{LLAMA_CPP_VERSION}")
        if not spec.grows:
            out.append(None)
            continue
        cells = n_ctx_seq
        if isinstance(spec, (SlidingWindowAttention, ChunkedAttention)) and windows and not swa_full:
            cells = min(n_ctx_seq, pad(spec.window * (n_parallel if kv_unified else 1) + n_ubatch, N_CTX_PAD))
        if isinstance(spec, LatentAttention):
            out.append((cells * streams * k_dtype.row_bytes(spec.latent_dim), 0))
        elif isinstance(spec, FullAttention):
            h = spec.num_kv_heads
            out.append((cells * streams * k_dtype.row_bytes(h * spec.head_dim),
                        cells * streams * v_dtype.row_bytes(h * spec.v_dim)))
        else:  # pragma: no cover - every growing kind is one of the above
            raise UnsupportedByEngineError(f"--engine llama.cpp: {spec.kind} layers are not placed")
    return out


def kv_placement(model: ModelConfig, k_dtype: KVDtype, v_dtype: KVDtype, *, n_ctx: int, n_parallel: int = 1,
                 kv_unified: bool = False, n_gpu_layers: int = -1, split: tuple[float, ...] = (1.0,),
                 no_kv_offload: bool = False, flash_attn: str = "auto", split_mode: str = "layer",
                 main_gpu: int = 0, device: str = "CUDA", n_ubatch: int = N_UBATCH,
                 swa_full: bool = False) -> KvPlacement:
    """Bytes of K and V on each device (``CUDA0``, ``CUDA1``, ..., ``CPU``) as llama.cpp allocates
    them: each layer's cache on its layer's device (``placement``) unless ``no_kv_offload``;
    ``n_ctx_seq x streams`` cells (``slot_cells``), sliding layers as ``layer_kv``. ``split_mode``
    ``row`` splits the weight matrices but assigns layers, hence their KV, exactly as ``layer``
    (``load_tensors`` has no row branch)."""
    note = check_cache_types(k_dtype, v_dtype, flash_attn)
    n_ctx_seq, streams = slot_cells(n_ctx, n_parallel, kv_unified)
    kv = layer_kv(model, k_dtype, v_dtype, n_ctx_seq=n_ctx_seq, streams=streams, n_parallel=n_parallel,
                  kv_unified=kv_unified, n_ubatch=n_ubatch, swa_full=swa_full)
    devices, _ = placement(len(kv), n_gpu_layers, split, split_mode, main_gpu)
    per: dict[str, list[int]] = {}
    for kv_bytes, dev in zip(kv, devices, strict=True):
        if kv_bytes is None:
            continue
        name = "CPU" if dev is None or no_kv_offload else f"{device}{dev}"
        acc = per.setdefault(name, [0, 0, 0])
        acc[0] += 1
        acc[1] += kv_bytes[0]
        acc[2] += kv_bytes[1]
    buffers = tuple(DeviceKv(device=n, layers=a[0], k_bytes=a[1], v_bytes=a[2]) for n, a in per.items())
    return KvPlacement(n_ctx_seq=n_ctx_seq, streams=streams, buffers=buffers, notes=(note,) if note else ())


def device_flags(req: PoolRequest) -> bool:
    """Whether a llama.cpp device or slot flag was given (-ngl, -ts, -np, --kv-unified, -nkvo, -sm)."""
    return bool(req.n_gpu_layers != -1 or req.tensor_split or req.parallel != 1 or req.kv_unified
                or req.no_kv_offload or req.split_mode != "layer")


def spreads(req: PoolRequest) -> bool:
    """Whether the plan puts llama.cpp on several GPUs without a device flag: ``--gpu X:N`` (TP N).
    With ``--pp`` the plan keeps its engine-neutral stage view (llama.cpp has no such flag)."""
    return req.layout.tp > 1 and req.layout.pp == 1


def gpu_split(tensor_split: tuple[float, ...], gpu_memory: tuple[int | None, ...]) -> tuple[float, ...]:
    """The split llama.cpp uses over the GPUs: ``--tensor-split`` (missing weights are 0), else each
    device's free memory (llama-model.cpp:1557-1587); kvcalc takes each GPU's usable memory as its
    free memory, equal weights when that is unknown."""
    from kvcalc.errors import InvalidRequestError

    if tensor_split:
        if len(tensor_split) > len(gpu_memory) and any(m is not None for m in gpu_memory):
            raise InvalidRequestError("--tensor-split", ",".join(f"{w:g}" for w in tensor_split),
                                      f"at most one weight per GPU ({len(gpu_memory)} GPU(s) planned: give "
                                      "--gpu NAME:N or --tp N)")
        return tensor_split + (0.0,) * (len(gpu_memory) - len(tensor_split))
    if gpu_memory and all(m is not None and m > 0 for m in gpu_memory):
        return tuple(float(m or 0) for m in gpu_memory)
    return (1.0,) * max(len(gpu_memory), 1)


def device_budget(model: ModelConfig, k_dtype: KVDtype, v_dtype: KVDtype, dev: DeviceRequest, *, n_ctx: int,
                  n_parallel: int = 1, kv_unified: bool = False, n_gpu_layers: int = -1,
                  tensor_split: tuple[float, ...] = (), no_kv_offload: bool = False, split_mode: str = "layer",
                  main_gpu: int = 0, n_ubatch: int = N_UBATCH, swa_full: bool = False) -> DeviceBudget:
    """Each GPU's weights, KV, compute buffer and overhead, and host memory's weights and KV, for one
    llama.cpp context; ``placement`` puts the layers, ``layer_kv`` sizes their caches.

    * Weights: the input layer in host memory, repeating layers and the output layer on their
      devices (``placement``). ``--split-mode row`` puts a GPU layer's matrices in a split buffer
      spread over all GPUs by the split (llama-model.cpp ``make_gpu_buft_list``:1139-1162): kvcalc
      spreads the layer's whole weights that way (its norms, a few KiB, move with them).
    * KV: on its layer's device, or host memory with ``--no-kv-offload`` (``kv_placement``).
    * The compute buffer (llama-context.cpp:740 "compute buffer size") is not modelled: each GPU
      holding layers is charged ``dev.compute_bytes`` and ``dev.overhead_bytes``, stated as such."""
    split = gpu_split(tensor_split, dev.gpu_memory_bytes)
    memory = dev.gpu_memory_bytes + (None,) * (len(split) - len(dev.gpu_memory_bytes))
    n_ctx_seq, streams = slot_cells(n_ctx, n_parallel, kv_unified)
    kv = layer_kv(model, k_dtype, v_dtype, n_ctx_seq=n_ctx_seq, streams=streams, n_parallel=n_parallel,
                  kv_unified=kv_unified, n_ubatch=n_ubatch, swa_full=swa_full)
    if len(dev.layer_weights_bytes) != len(kv):
        raise UnsupportedByEngineError(f"--engine llama.cpp: the weights list {len(dev.layer_weights_bytes)} "
                                       f"layers, the model {len(kv)}")
    devices, out_dev = placement(len(kv), n_gpu_layers, split, split_mode, main_gpu)
    n = len(split)
    weights, kvs, layers = [0] * (n + 1), [0] * (n + 1), [0] * (n + 1)  # index n: host memory
    from fractions import Fraction

    total_w = sum((Fraction(w) for w in split), Fraction(0))

    def put_weights(d: int | None, nbytes: int) -> None:
        if d is None:
            weights[n] += nbytes
        elif split_mode == "row":
            shares = [int(nbytes * Fraction(w) / total_w) for w in split]
            shares[d] += nbytes - sum(shares)
            for i, share in enumerate(shares):
                weights[i] += share
        else:
            weights[d] += nbytes

    weights[n] += dev.input_weights_bytes
    for kv_bytes, wb, d in zip(kv, dev.layer_weights_bytes, devices, strict=True):
        put_weights(d, wb)
        layers[n if d is None else d] += 1
        if kv_bytes is not None:
            kvs[n if d is None or no_kv_offload else d] += kv_bytes[0] + kv_bytes[1]
    put_weights(out_dev, dev.output_weights_bytes)
    rows: list[DeviceUse] = []
    for i in range(n):
        used = layers[i] > 0 or out_dev == i or weights[i] > 0
        rows.append(DeviceUse(device=f"CUDA{i}", memory_bytes=memory[i], layers=layers[i], output_layer=out_dev == i,
                              weights_bytes=weights[i], kv_bytes=kvs[i],
                              compute_bytes=dev.compute_bytes if used else 0,
                              overhead_bytes=dev.overhead_bytes if used else 0))
    rows.append(DeviceUse(device="CPU", memory_bytes=None, layers=layers[n], output_layer=out_dev is None,
                          weights_bytes=weights[n], kv_bytes=kvs[n], compute_bytes=0, overhead_bytes=0))
    notes = [f"per device: {len(kv) - layers[n]} of {len(kv)} repeating layers on GPUs"
             f"{', the output layer too' if out_dev is not None else ''}; the input layer (token embeddings) "
             "stays in host memory (llama-model.cpp:1605)"]
    if not tensor_split and n > 1:
        notes.append("no --tensor-split: llama.cpp splits by each GPU's free memory; kvcalc takes each GPU's "
                     "usable memory as free")
    return DeviceBudget(devices=tuple(rows), notes=tuple(notes))
