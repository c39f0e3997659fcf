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

from typing import TYPE_CHECKING

from kvcalc.dtypes import KVDtype, cdiv
from kvcalc.engines.base import Engine, Workload
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

    def tokens_held(self, spec: Spec, work: Workload) -> int:
        if isinstance(spec, (IndexedLatentAttention, CrossAttention)):
            # Not checked against a llama.cpp build: the DSA indexer cache and the Mllama
            # cross-attention cache (removed with the vision-model rework) are refused, not guessed.
            raise UnsupportedByEngineError(
                f"--engine llama.cpp: {spec.kind} layers are not modelled for {LLAMA_CPP_VERSION}")
        if not spec.grows:
            return 0
        n_ctx = pad(work.seq_len, N_CTX_PAD)
        if isinstance(spec, (SlidingWindowAttention, ChunkedAttention)) and work.windows:
            return min(n_ctx, pad(spec.window + N_UBATCH, N_CTX_PAD))
        return n_ctx

    def describe_tokens(self, spec: Spec, work: Workload) -> str:
        n_ctx = pad(work.seq_len, N_CTX_PAD)
        if isinstance(spec, (SlidingWindowAttention, ChunkedAttention)) and work.windows:
            return (
                f"min(n_ctx {n_ctx}, PAD({spec.window} n_swa + {N_UBATCH} n_ubatch, 256)) = "
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


LlamaCppEngine = LlamaCppPolicy
ENGINE = LlamaCppPolicy()
POLICY = ENGINE
