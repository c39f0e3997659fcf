"""The model schema: a named sequence of layers, each with a cache spec.

A model lists its layers as groups (``repeat`` x ``pattern``) or as a ``layout`` string with
a ``legend`` (Nemotron-H's ``M-M-M-M*-...``), so 80 identical layers take one entry.

Stdlib frozen dataclasses, validated from files by pydantic v2 in ``kvcalc.loader`` (see
``kvcalc.specs`` for why). Derived values are properties, never stored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Literal

from kvcalc.dtypes import MODEL_DTYPES
from kvcalc.errors import InvalidConfigError
from kvcalc.specs import FixedState, FullAttention, LatentAttention, Spec, spec_from_dict

ModelDtype = Literal["fp32", "fp16", "bf16"]
_STRICT: dict[str, Any] = {"extra": "forbid"}


def _invalid(obj: object, message: str) -> InvalidConfigError:
    """kvcalc's own error (also a ``ValueError``, which pydantic wraps when it validates a file):
    a model or spec built in Python with a bad value gets the same error type as a bad file."""
    return InvalidConfigError(type(obj).__name__, message)


def _kind(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _positive(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise _invalid(obj, f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class LayerGroup:
    """``pattern`` repeated ``repeat`` times, in order."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT
    pattern: list[Spec]
    repeat: int = 1

    def __post_init__(self) -> None:
        _positive(self, "repeat")
        if not isinstance(self.pattern, list | tuple) or not all(isinstance(s, Spec) for s in self.pattern):
            raise _invalid(self, f"pattern must be a list of layer specs, got {_kind(self.pattern)}")
        if not self.pattern:
            raise _invalid(self, "pattern must list at least one layer spec")


@dataclass(frozen=True, kw_only=True)
class Source:
    """Where a model's numbers come from."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT
    hf_repo: str | None = None
    config: str | None = None
    """The file the numbers were read from (e.g. the repo's ``config.json``)."""
    notes: list[str] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)
    """Defaults filled in on import (transformers' defaults), shown as warnings."""


@dataclass(frozen=True, kw_only=True)
class MoE:
    """Mixture-of-experts fields: they change the weights, never the KV cache."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT
    num_experts: int
    experts_per_token: int
    moe_intermediate_size: int | None = None
    num_shared_experts: int = 0
    shared_expert_intermediate_size: int | None = None
    first_dense_layers: int = 0
    """Leading layers with a dense MLP instead of experts (DeepSeek ``first_k_dense_replace``)."""

    def __post_init__(self) -> None:
        _positive(self, "num_experts", "experts_per_token", "moe_intermediate_size",
                  "shared_expert_intermediate_size")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """A model as kvcalc sees it."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT
    name: str
    dtype: ModelDtype
    """The dtype the model computes in (a config's ``torch_dtype``); ``--kv-dtype auto`` uses it."""
    max_position_embeddings: int
    num_attention_heads: int
    hidden_size: int
    layers: list[LayerGroup] | None = None
    layout: str | None = None
    legend: dict[str, Spec] | None = None
    aliases: list[str] = field(default_factory=list)
    source: Source = field(default_factory=Source)
    intermediate_size: int | None = None
    vocab_size: int | None = None
    num_parameters: int | None = None
    """Published parameter count, when the model card or safetensors index gives one."""
    tie_word_embeddings: bool = False
    moe: MoE | None = None
    architecture: str | None = None
    """The Hugging Face ``architectures[0]`` (e.g. ``GptOssForCausalLM``): engines choose code paths
    by it (SGLang's hybrid sliding-window pool), never the KV formula."""
    quantization_config: dict[str, Any] | None = None
    """The Hugging Face ``quantization_config`` as the checkpoint's config.json gives it (fp8
    block-wise, compressed-tensors, AWQ, GPTQ, bitsandbytes, MXFP4, NVFP4): it sizes the weights
    (``kvcalc.planner.weights``), never the KV cache."""

    def __post_init__(self) -> None:
        self._check_structure()
        if not self.name:
            raise _invalid(self, "name must not be empty")
        if self.dtype not in MODEL_DTYPES:
            raise _invalid(self, f"dtype must be one of fp32, fp16, bf16, got {self.dtype!r}")
        _positive(self, "max_position_embeddings", "num_attention_heads", "hidden_size",
                  "intermediate_size", "vocab_size", "num_parameters")
        if (self.layers is None) == (self.layout is None):
            raise _invalid(self, "give exactly one of 'layers' (groups) or 'layout' (with 'legend')")
        if self.layout is not None:
            if not self.legend:
                raise _invalid(self, "'layout' needs a 'legend' mapping each character to a layer spec")
            unknown = sorted(set(self.layout) - set(self.legend))
            if unknown:
                raise _invalid(self, f"layout characters {unknown} are not in the legend")
        elif self.legend is not None:
            raise _invalid(self, "'legend' is only used with 'layout'")
        if not self.layer_blocks or self.num_layers == 0:
            raise _invalid(self, "a model needs at least one layer")
        for i, spec in self._first_layer_of_each_spec():
            if isinstance(spec, FullAttention):
                if self.num_attention_heads % spec.num_kv_heads:
                    raise _invalid(
                        self,
                        f"layer {i}: num_attention_heads ({self.num_attention_heads}) is not "
                        f"divisible by num_kv_heads ({spec.num_kv_heads})"
                    )
                window = getattr(spec, "window", None)
                if window is not None and window > self.max_position_embeddings:
                    raise _invalid(
                        self,
                        f"layer {i}: window {window} exceeds max_position_embeddings "
                        f"({self.max_position_embeddings})"
                    )

    def _check_structure(self) -> None:
        """The types a model built in Python must have (files are checked strictly by the loader
        first): a wrong one is an ``InvalidConfigError`` here, not an AttributeError later."""
        checks: tuple[tuple[str, Any, bool], ...] = (
            ("name", self.name, isinstance(self.name, str)),
            ("dtype", self.dtype, isinstance(self.dtype, str)),
            ("layers", self.layers, self.layers is None or (
                isinstance(self.layers, list | tuple) and all(isinstance(g, LayerGroup) for g in self.layers))),
            ("layout", self.layout, self.layout is None or isinstance(self.layout, str)),
            ("legend", self.legend, self.legend is None or (isinstance(self.legend, dict) and all(
                isinstance(k, str) and isinstance(v, Spec) for k, v in self.legend.items()))),
            ("aliases", self.aliases, isinstance(self.aliases, list | tuple)
             and all(isinstance(a, str) for a in self.aliases)),
            ("source", self.source, isinstance(self.source, Source)),
            ("moe", self.moe, self.moe is None or isinstance(self.moe, MoE)),
            ("tie_word_embeddings", self.tie_word_embeddings, isinstance(self.tie_word_embeddings, bool)),
            ("architecture", self.architecture, self.architecture is None or isinstance(self.architecture, str)),
        )
        for name, value, ok in checks:
            if not ok:
                raise _invalid(self, f"{name} has the wrong type: {_kind(value)}")

    def _first_layer_of_each_spec(self) -> list[tuple[int, Spec]]:
        """(index of its first layer, spec) for each distinct spec object, in layer order."""
        seen: set[int] = set()
        out: list[tuple[int, Spec]] = []
        start = 0
        for pattern, repeat in self.layer_blocks:
            for k, spec in enumerate(pattern):
                if id(spec) not in seen:
                    seen.add(id(spec))
                    out.append((start + k, spec))
            start += len(pattern) * repeat
        return out

    @cached_property
    def layer_blocks(self) -> tuple[tuple[tuple[Spec, ...], int], ...]:
        """The layers in order as ``(pattern, repeat)`` blocks, never expanded: a 10**6-layer
        model of two groups is two blocks, so work that walks blocks (``estimate``, the checks
        above) costs per distinct group, not per layer. A ``layout`` string becomes one block
        per run of equal characters."""
        if self.layout is not None:
            assert self.legend is not None  # guarded by __post_init__
            from itertools import groupby

            return tuple(((self.legend[c],), sum(1 for _ in run)) for c, run in groupby(self.layout))
        assert self.layers is not None
        return tuple((tuple(g.pattern), g.repeat) for g in self.layers)

    def spec_counts(self) -> list[tuple[Spec, int]]:
        """Each distinct spec object with its number of layers, in order of first appearance."""
        counts: dict[int, list[Any]] = {}
        for pattern, repeat in self.layer_blocks:
            for spec in pattern:
                entry = counts.setdefault(id(spec), [spec, 0])
                entry[1] += repeat
        return [(spec, n) for spec, n in counts.values()]

    @cached_property
    def layer_specs(self) -> tuple[Spec, ...]:
        """Every layer's spec, in order."""
        if self.layout is not None:
            assert self.legend is not None  # guarded by __post_init__
            return tuple(self.legend[c] for c in self.layout)
        assert self.layers is not None
        out: list[Spec] = []
        for group in self.layers:
            for _ in range(group.repeat):
                out.extend(group.pattern)
        return tuple(out)

    @cached_property
    def num_layers(self) -> int:
        return sum(len(pattern) * repeat for pattern, repeat in self.layer_blocks)

    @property
    def is_mla(self) -> bool:
        return any(isinstance(s, LatentAttention) for s, _n in self.spec_counts())

    @property
    def has_state(self) -> bool:
        return any(isinstance(s, FixedState) for s, _n in self.spec_counts())

    @property
    def all_names(self) -> list[str]:
        return [self.name, *self.aliases]

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with ``changes``; an unknown field or a bad value is an ``InvalidConfigError``."""
        try:
            return dataclasses.replace(self, **changes)
        except TypeError as exc:  # an unknown field name
            raise _invalid(self, str(exc).split(".")[-1].strip() or str(exc)) from None

    def with_layer_specs(self, specs: list[Spec] | tuple[Spec, ...]) -> ModelConfig:
        """A copy with an explicit layer list, stored as runs of equal specs (re-validated)."""
        runs: list[list[Any]] = []  # [spec, count]: one object per run, however long
        for spec in specs:
            if runs and (runs[-1][0] is spec or runs[-1][0] == spec):
                runs[-1][1] += 1
            else:
                runs.append([spec, 1])
        groups = [LayerGroup(pattern=[spec], repeat=n) for spec, n in runs]
        return dataclasses.replace(self, layers=groups, layout=None, legend=None)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as YAML would hold it (None fields and empty defaults dropped)."""
        out: dict[str, Any] = {"name": self.name}
        if self.aliases:
            out["aliases"] = list(self.aliases)
        src = {k: v for k, v in dataclasses.asdict(self.source).items() if v}
        if src:
            out["source"] = src
        for key in ("architecture", "dtype", "max_position_embeddings", "num_attention_heads", "hidden_size",
                    "intermediate_size", "vocab_size", "num_parameters"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.tie_word_embeddings:
            out["tie_word_embeddings"] = True
        if self.moe is not None:
            out["moe"] = {k: v for k, v in dataclasses.asdict(self.moe).items() if v}
        if self.layout is not None:
            assert self.legend is not None
            out["layout"] = self.layout
            out["legend"] = {k: v.to_dict() for k, v in self.legend.items()}
        else:
            assert self.layers is not None
            out["layers"] = [
                {"repeat": g.repeat, "pattern": [s.to_dict() for s in g.pattern]} for g in self.layers
            ]
        if self.quantization_config is not None:
            out["quantization_config"] = dict(self.quantization_config)
        return out


def model_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Build a model from trusted, already-validated data (the compiled built-in index).

    Files go through ``kvcalc.loader``, which validates with pydantic first.
    """
    d = dict(data)
    if "layers" in d:
        d["layers"] = [
            LayerGroup(repeat=g.get("repeat", 1), pattern=[spec_from_dict(s) for s in g["pattern"]])
            for g in d["layers"]
        ]
    if "legend" in d:
        d["legend"] = {k: spec_from_dict(v) for k, v in d["legend"].items()}
    if "source" in d:
        d["source"] = Source(**d["source"])
    if "moe" in d:
        d["moe"] = MoE(**d["moe"])
    return ModelConfig(**d)
