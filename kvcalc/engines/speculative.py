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

kvcalc models drafts whose layers copy the target's attention (EAGLE, EAGLE-3, MTP) on targets
whose layers are all alike; a separate draft model (vLLM ``"model"``, SGLang ``STANDALONE``), and a
draft beside a mixed-layer target, are refused rather than guessed. n-gram / suffix proposers keep
no KV (zero draft layers).
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
DEFAULT_DRAFT_LAYERS = 1
"""An EAGLE / EAGLE-3 head is one decoder layer; DeepSeek-V3/R1, GLM-4.5 and MiMo ship
``num_nextn_predict_layers: 1``. ``--draft-layers`` changes it."""


@dataclass(frozen=True)
class Draft:
    method: str
    num_speculative_tokens: int | None
    layers: int
    """Draft decoder layers whose KV shares the pool (0: a proposer without KV)."""


def _count(flag: str, value: object) -> int:
    if type(value) is not int or value < 0:
        raise InvalidRequestError(flag, value, "a whole number >= 0")
    return value


def vllm_draft(text: str, draft_layers: int | None) -> Draft:
    """``--speculative-config`` as vllm serve takes it (JSON: method, num_speculative_tokens, model)."""
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError:
        raise InvalidRequestError("--speculative-config", text, 'JSON such as \'{"method": "mtp", '
                                  '"num_speculative_tokens": 1}\'') from None
    if not isinstance(cfg, dict):
        raise InvalidRequestError("--speculative-config", text, "a JSON object")
    method = cfg.get("method")
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


def sglang_draft(algorithm: str, draft_layers: int | None, num_draft_tokens: int | None) -> Draft:
    """``--speculative-algorithm`` (and ``--speculative-num-draft-tokens``) as sglang takes them."""
    algo = algorithm.upper()
    if algo == "STANDALONE":
        raise InvalidRequestError("--speculative-algorithm", algorithm, "EAGLE, EAGLE3, NEXTN or NGRAM (a separate "
                                  "draft model, STANDALONE, is not modelled yet)")
    if algo not in (*SGLANG_LAYER_ALGORITHMS, *SGLANG_NO_KV_ALGORITHMS):
        raise InvalidRequestError("--speculative-algorithm", algorithm, "EAGLE, EAGLE3, NEXTN or NGRAM")
    layers = 0 if algo in SGLANG_NO_KV_ALGORITHMS else (DEFAULT_DRAFT_LAYERS if draft_layers is None else draft_layers)
    return Draft(method=algo, num_speculative_tokens=num_draft_tokens, layers=layers)


def with_draft(model: ModelConfig, draft: Draft) -> ModelConfig:
    """The target with the draft's layers appended (what both engines' pools hold; module doc)."""
    if draft.layers == 0:
        return model
    specs = [s for s, _ in model.spec_counts()]  # distinct specs: per layer group, never per layer
    if any(s != specs[0] for s in specs):
        raise InvalidRequestError("--draft-layers", draft.layers, f"0 for {model.name}: its layers differ, and a "
                                  "draft beside a mixed-layer target is not modelled yet")
    groups = [LayerGroup(pattern=[specs[0]], repeat=model.num_layers + draft.layers)]
    return dataclasses.replace(model, layers=groups, layout=None, legend=None)
