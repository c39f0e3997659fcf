"""Speculative decoding: the draft's KV in the engine's pool.

* vLLM 0.34.0: every attention layer of the loaded modules, the drafter's included, gets a KV
  spec (``v1/worker/gpu/attn_utils.py:140-154``); a draft layer's spec is marked ``is_draft``, a
  field excluded from comparison (``v1/kv_cache_interface.py:204``, ``compare=False``), so EAGLE /
  EAGLE-3 heads and MTP layers shaped like the target's join the target's group: the pool is
  that of a model with ``L + d`` such layers.
* SGLang 0.5.23: for EAGLE / EAGLE3 / NEXTN (MTP, run as EAGLE) the target's per-token cell grows
  by ``int(cell x d / L)`` (``srt/model_executor/pool_configurator.py:259-313``, "assumes the
  draft shares the target's per-layer KV size"), ``d`` = ``num_nextn_predict_layers`` for MTP
  drafts, else the draft's layer count (``model_runner_components/spec_aux_hidden_state.py:174-176``);
  the draft worker then allocates its own pool of the same ``#tokens`` (a second "KV Cache is
  allocated" line). For a target whose layers are all alike, ``int(cell x d / L)`` is exactly ``d``
  layers' bytes, so both engines hold the pool of a model with ``L + d`` layers.

A separate draft model (``--draft-model``; vLLM ``method: draft_model``, SGLang ``STANDALONE``):

* vLLM 0.34.0 loads the drafter inside the same memory profile as the target
  (``v1/worker/gpu/model_runner.py:410-441``, ``spec_decode/standalone_ar/speculator.py:106-131``),
  so its weights count in "Model loading took"; its attention layers get KV specs like any other
  (``attn_utils.py:140-154``) and join the target's pool: for all-full-attention layers of one
  block size but different pages, one ``UniformTypeKVCacheSpecs`` group whose block covers every
  target and draft layer (``v1/core/kv_cache_planning.py:1187-1191``), so both have the same block
  count; otherwise the usual hybrid grouping. Refused as vLLM refuses: ``num_speculative_tokens``
  missing or <= 0 (``config/speculative.py:1653-1662``), a vocabulary different from the target's
  (``:1725-1740``), ``draft_tensor_parallel_size`` other than 1 or the target's TP (``:1530-1551``;
  0.20.0 ``v1/spec_decode/draft_model.py:36-51`` requires the target's TP), which kvcalc models
  only as the target's TP.
* SGLang 0.5.23 budgets a ``STANDALONE`` draft as ``d`` target-sized layers, ``d`` the draft's
  ``num_hidden_layers`` (``spec_aux_hidden_state.py:156-176``; ``pool_configurator.py:259-313``, "assumes
  the draft shares the target's per-layer KV size"), the draft worker reuses the target's pool
  sizes (``model_runner.py:362-365``) with its own layers' real K/V, and it requires the same
  vocabulary (``speculative/standalone_worker_v2.py:185-200``). The target's weights and pool are
  set up before the draft worker loads (``managers/scheduler.py:1128-1133``), so the draft's
  weights come out of the memory ``--mem-fraction-static`` leaves, not out of the KV budget.

Pipeline parallelism with a draft model is not modelled (refused).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from kvcalc.errors import InvalidRequestError
from kvcalc.models import LayerGroup, ModelConfig

# vLLM SpeculativeConfig.method values (0.34.0 config/speculative.py:53-97): the layer-copying
# drafts (eagle, eagle3 and every MTPModelTypes name, "mtp" or "<family>_mtp") and the proposers
# without KV; "draft_model", dflash and dspark are refused.
VLLM_LAYER_METHODS = ("eagle", "eagle3", "mtp", "deepseek_mtp", "glm4_moe_mtp", "mimo_mtp", "qwen3_next_mtp")
VLLM_NO_KV_METHODS = ("ngram", "ngram_gpu", "suffix")
# SGLang --speculative-algorithm values (0.5.23 srt/speculative/spec_info.py:32-65; NEXTN is an alias of EAGLE).
SGLANG_LAYER_ALGORITHMS = ("EAGLE", "EAGLE3", "NEXTN")
SGLANG_NO_KV_ALGORITHMS = ("NGRAM",)
VLLM_DRAFT_MODEL_METHOD = "draft_model"
SGLANG_DRAFT_MODEL_ALGORITHM = "STANDALONE"
DEFAULT_DRAFT_LAYERS = 1
"""An EAGLE / EAGLE-3 head is one decoder layer; DeepSeek-V3/R1, GLM-4.5 and MiMo ship
``num_nextn_predict_layers: 1``. ``--draft-layers`` changes it."""


@dataclass(frozen=True)
class Draft:
    method: str
    num_speculative_tokens: int | None
    layers: int
    """Draft decoder layers whose KV shares the pool (0: a proposer without KV)."""
    model: ModelConfig | None = None
    """A separate draft model (``--draft-model``), whose own layers and weights are planned."""
    draft_tp: int | None = None
    """vLLM ``draft_tensor_parallel_size`` as given (None: the target's TP)."""

    @property
    def weights_in_budget(self) -> bool:
        """Whether the draft model's weights come out of the KV budget (vLLM: loaded and profiled
        with the target) or out of the memory the fraction leaves (SGLang: loaded after the pool)."""
        return self.method == VLLM_DRAFT_MODEL_METHOD


def _count(flag: str, value: object) -> int:
    if type(value) is not int or value < 0:
        raise InvalidRequestError(flag, value, "a whole number >= 0")
    return value


def vllm_draft(text: str, draft_layers: int | None, draft_model: ModelConfig | None = None) -> Draft:
    """``--speculative-config`` as vllm serve takes it (JSON: method, num_speculative_tokens, model,
    draft_tensor_parallel_size); a separate draft model's config comes from ``--draft-model``."""
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError:
        raise InvalidRequestError("--speculative-config", text, 'JSON such as \'{"method": "mtp", '
                                  '"num_speculative_tokens": 1}\'') from None
    if not isinstance(cfg, dict):
        raise InvalidRequestError("--speculative-config", text, "a JSON object")
    method = cfg.get("method")
    if method is None and (draft_model is not None or "model" in cfg):
        method = VLLM_DRAFT_MODEL_METHOD  # vLLM detects a plain checkpoint as draft_model (speculative.py:1349-1372)
    if method == VLLM_DRAFT_MODEL_METHOD or draft_model is not None:
        return _vllm_draft_model(cfg, text, method, draft_model, draft_layers)
    if not isinstance(method, str):
        raise InvalidRequestError("--speculative-config method", method, "a method name such as mtp, eagle, eagle3")
    method_kind = "mtp" if method.endswith("_mtp") else method
    if "model" in cfg and method_kind not in VLLM_LAYER_METHODS:
        raise InvalidRequestError("--speculative-config", text, "a draft that copies the target's layers (method "
                                  f"{', '.join(VLLM_LAYER_METHODS)}); a separate draft model is not modelled yet")
    allowed = (*VLLM_LAYER_METHODS, *VLLM_NO_KV_METHODS)
    if method_kind not in allowed:
        raise InvalidRequestError("--speculative-config method", method, ", ".join(allowed))
    tokens = cfg.get("num_speculative_tokens")
    if tokens is not None:
        _count("--speculative-config num_speculative_tokens", tokens)
    layers = 0 if method in VLLM_NO_KV_METHODS else (DEFAULT_DRAFT_LAYERS if draft_layers is None else draft_layers)
    return Draft(method=method, num_speculative_tokens=tokens, layers=layers)


def _vllm_draft_model(cfg: dict[str, object], text: str, method: object, draft_model: ModelConfig | None,
                      draft_layers: int | None) -> Draft:
    if method != VLLM_DRAFT_MODEL_METHOD:
        raise InvalidRequestError("--speculative-config method", method,
                                  f"{VLLM_DRAFT_MODEL_METHOD} with --draft-model (a layer-copying draft, "
                                  f"{', '.join(VLLM_LAYER_METHODS)}, takes --draft-layers)")
    if draft_model is None:
        raise InvalidRequestError("--draft-model", "", "the draft model's config (a built-in name, config.json, "
                                  f"folder or hub id) for method {VLLM_DRAFT_MODEL_METHOD}"
                                  + (f" (its \"model\" is {cfg['model']})" if "model" in cfg else ""))
    if draft_layers is not None:
        raise InvalidRequestError("--draft-layers", draft_layers, "not given with --draft-model (its layers are the "
                                  "draft model's own)")
    tokens = cfg.get("num_speculative_tokens")
    if type(tokens) is not int or tokens <= 0:
        # vLLM 0.34.0 config/speculative.py:1653-1662
        raise InvalidRequestError("--speculative-config num_speculative_tokens", tokens, "a whole number > 0 "
                                  "(vLLM requires it with a draft model)")
    given_tp = cfg.get("draft_tensor_parallel_size")
    draft_tp = None if given_tp is None else _count("--speculative-config draft_tensor_parallel_size", given_tp)
    return Draft(method=VLLM_DRAFT_MODEL_METHOD, num_speculative_tokens=tokens,
                 layers=draft_model.num_layers, model=draft_model, draft_tp=draft_tp)


def draft_model_flags(engine_flag: str | None, draft_model: ModelConfig, num_speculative_tokens: int | None) -> Draft:
    """``--draft-model`` alone: vLLM ``{"method": "draft_model", "num_speculative_tokens": N}`` or SGLang
    ``--speculative-algorithm STANDALONE``, by the flag the engine reads."""
    if engine_flag == "--speculative-config":
        if num_speculative_tokens is None:
            raise InvalidRequestError("--num-speculative-tokens", "", "a whole number > 0 with --draft-model (vLLM "
                                      "requires num_speculative_tokens with a draft model)")
        cfg = {"method": VLLM_DRAFT_MODEL_METHOD, "num_speculative_tokens": num_speculative_tokens}
        return vllm_draft(json.dumps(cfg), None, draft_model)
    if engine_flag == "--speculative-algorithm":
        return sglang_draft(SGLANG_DRAFT_MODEL_ALGORITHM, None, num_speculative_tokens, draft_model)
    raise InvalidRequestError("--draft-model", draft_model.name, "used with --engine vllm or sglang (speculative "
                              "decoding with a draft model)")


def sglang_draft(algorithm: str, draft_layers: int | None, num_draft_tokens: int | None,
                 draft_model: ModelConfig | None = None) -> Draft:
    """``--speculative-algorithm`` (and ``--speculative-num-draft-tokens``) as sglang takes them;
    ``STANDALONE`` takes its draft from ``--draft-model`` (SGLang ``--speculative-draft-model-path``)."""
    algo = algorithm.upper()
    if algo == SGLANG_DRAFT_MODEL_ALGORITHM or draft_model is not None:
        if algo != SGLANG_DRAFT_MODEL_ALGORITHM:
            raise InvalidRequestError("--speculative-algorithm", algorithm, "STANDALONE with --draft-model (EAGLE "
                                      "heads and MTP layers take --draft-layers)")
        if draft_model is None:
            raise InvalidRequestError("--draft-model", "", "the draft model's config (SGLang "
                                      "--speculative-draft-model-path) for --speculative-algorithm STANDALONE")
        if draft_layers is not None:
            raise InvalidRequestError("--draft-layers", draft_layers, "not given with --draft-model")
        return Draft(method=SGLANG_DRAFT_MODEL_ALGORITHM, num_speculative_tokens=num_draft_tokens,
                     layers=draft_model.num_layers, model=draft_model)
    if algo not in (*SGLANG_LAYER_ALGORITHMS, *SGLANG_NO_KV_ALGORITHMS):
        raise InvalidRequestError("--speculative-algorithm", algorithm, "EAGLE, EAGLE3, NEXTN, NGRAM or STANDALONE")
    layers = 0 if algo in SGLANG_NO_KV_ALGORITHMS else (DEFAULT_DRAFT_LAYERS if draft_layers is None else draft_layers)
    return Draft(method=algo, num_speculative_tokens=num_draft_tokens, layers=layers)


def check_draft_model(target: ModelConfig, draft: Draft, *, tp: int, pp: int) -> None:
    """What both engines refuse, and what kvcalc does not model, for a separate draft model."""
    dm = draft.model
    assert dm is not None
    if target.vocab_size is None or dm.vocab_size is None or target.vocab_size != dm.vocab_size:
        # vLLM 0.34.0 config/speculative.py:1725-1740; SGLang 0.5.23 standalone_worker_v2.py:185-200
        raise InvalidRequestError("--draft-model", dm.name, f"a draft with the target's vocabulary "
                                  f"(vocab_size {target.vocab_size}; {dm.name} has {dm.vocab_size}): vLLM and SGLang "
                                  "refuse different vocabularies")
    if draft.draft_tp is not None and draft.draft_tp != tp:
        allowed = "1 or the target's" if draft.draft_tp == 1 else "the target's"
        raise InvalidRequestError("--speculative-config draft_tensor_parallel_size", draft.draft_tp,
                                  f"{tp}, the target's TP (vLLM takes {allowed}, config/speculative.py:1530-1551 @ "
                                  "0.34.0; kvcalc models the draft at the target's TP)")
    if pp > 1:
        raise InvalidRequestError("--pp", pp, "1 with --draft-model (a draft model beside pipeline stages is not "
                                  "modelled)")


def with_draft_model(model: ModelConfig, draft: Draft) -> ModelConfig:
    """vLLM: the target's layers, then the draft model's own (each sharded at the target's TP),
    in one pool (module doc)."""
    dm = draft.model
    assert dm is not None
    groups = [LayerGroup(pattern=list(p), repeat=r) for p, r in (*model.layer_blocks, *dm.layer_blocks)]
    try:
        return dataclasses.replace(model, layers=groups, layout=None, legend=None)
    except ValueError as exc:
        raise InvalidRequestError("--draft-model", dm.name, f"a draft whose layers kvcalc can lay out beside "
                                  f"{model.name}'s ({exc})") from None


def with_draft(model: ModelConfig, draft: Draft) -> ModelConfig:
    """The target with the draft's layers appended (what both engines' pools hold; module doc).
    A separate SGLang draft model counts as ``d`` target-sized layers, as SGLang budgets it."""
    if draft.layers == 0:
        return model
    if draft.model is not None and draft.method == VLLM_DRAFT_MODEL_METHOD:
        return with_draft_model(model, draft)
    specs = [s for s, _ in model.spec_counts()]  # distinct specs: per layer group, never per layer
    if any(s != specs[0] for s in specs):
        raise InvalidRequestError("--draft-layers", draft.layers, f"0 for {model.name}: its layers differ, and a "
                                  "draft beside a mixed-layer target is not modelled yet")
    groups = [LayerGroup(pattern=[specs[0]], repeat=model.num_layers + draft.layers)]
    return dataclasses.replace(model, layers=groups, layout=None, legend=None)
