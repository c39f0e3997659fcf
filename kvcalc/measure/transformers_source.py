"""``verify --source transformers``: let transformers build the cache, and compare with kvcalc.

transformers decides every shape: a reduced-depth, random-weight copy of the model (same
attention geometry: heads, KV heads, head size, windows, layer types; tiny hidden, MLP and
vocabulary sizes so that it runs in milliseconds; nothing is downloaded) is built from the
model's ``config.json`` with the first N layers, N the smallest prefix holding ``layers_sample``
layers (default 1) of every kind kvcalc sees in the full model. Then either

* ``static``: a ``StaticCache(config, max_cache_len=seq_len)`` is filled by one forward pass
  (transformers allocates every layer at the first update: full layers ``max_cache_len``,
  sliding layers ``min(window, max_cache_len)``; reference §4.3), compared with kvcalc's
  ``hf-static`` policy; or
* ``dynamic``: ``generate`` runs with the model's own ``DynamicCache`` so that the cache ends
  holding ``seq_len`` positions (``generate`` never feeds back the last token, so a prompt of
  ``seq_len - new + 1`` tokens and ``new`` generated tokens leave ``seq_len``; reference §4.8),
  compared with kvcalc's ``hf`` policy.

Bytes are the cache tensors' ``numel() x element_size()`` per layer (what the cache holds);
the storage behind them (``untyped_storage().nbytes()``, a sliding layer's view may pin a
``window``-long tensor) is reported beside. Per kind, the built layers' bytes are scaled to the
full model's layer count (``x layers // built``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvcalc.errors import DoesNotFitError, InvalidRequestError, MissingDependencyError, UnknownNameError
from kvcalc.estimate import MAX_LAYERS, check_int, estimate
from kvcalc.measure.layout import layer_bytes
from kvcalc.specs import Spec
from kvcalc.units import format_bytes

_TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
_TINY_HIDDEN = 64
_TINY_INTERMEDIATE = 32
_TINY_VOCAB = 128
_SHRINKABLE = {
    "llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "gemma", "gemma2",
    "gemma3_text", "phi3", "olmo", "olmo2", "granite", "starcoder2",
}
"""Model types whose attention width comes from ``head_dim`` (not ``hidden_size``), so the
hidden size can shrink with the head geometry intact."""
GENERATED_TOKENS = 4
"""New tokens ``generate`` produces in the dynamic mode (a real decode, not only a prefill)."""
PREFILL_CHUNK = 1024
"""Dynamic mode: a prompt longer than this is fed to the model in chunks of this many tokens
before ``generate`` (which continues from the filled ``DynamicCache``), so that Ctrl-C is honoured
between chunks instead of after one attention call over the whole prompt (minutes at 100,000
tokens on a CPU). The cache ends the same: ``DynamicLayer.update`` concatenates what it is given."""


@dataclass(frozen=True, kw_only=True)
class TransformersKind:
    kind: str
    description: str
    layers: int
    built_layers: int
    shapes: list[list[int]]
    """Keys and values shapes of one built layer of this kind, as transformers allocated them."""
    predicted_bytes: int
    measured_bytes: int
    """transformers' cache tensors for every layer of this kind (extrapolated)."""
    storage_bytes: int
    ratio: float
    ok: bool
    verdict: str


@dataclass(frozen=True, kw_only=True)
class TransformersVerifyResult:
    model: str
    engine: str
    cache_class: str
    transformers_version: str
    kv_dtype: str
    seq_len: int
    batch: int
    device: str
    source: str
    predicted_bytes: int
    tensor_bytes: int
    """transformers' cache tensors (numel x element size), extrapolated to every layer."""
    measured_bytes: int
    """Same as ``tensor_bytes``: transformers' own allocation is the measurement here."""
    storage_bytes: int
    ratio: float
    sampled: bool
    sampled_layers: int
    built_layers: int
    num_layers: int
    ok: bool
    kinds: list[TransformersKind]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def read_hf_config(ref: str) -> tuple[dict[str, Any], Path]:
    """A Hugging Face ``config.json`` as a dict: a file, a folder holding one, or a hub id in the cache."""
    from kvcalc import hf
    from kvcalc.registry import resolve_name

    path = Path(ref)
    if path.is_dir():
        path = path / "config.json"
    if not path.exists():
        found = hf.find_in_hf_cache(ref) if "/" in ref and not ref.startswith((".", "/")) else None
        if found is None:
            why = ("a Hugging Face config.json: built-in models carry no config.json, pass --config"
                   if resolve_name(ref) is not None else "a Hugging Face config.json, a folder or a cached hub id")
            raise InvalidRequestError("--config", ref, why)
        path = found if found.name == "config.json" else found / "config.json"
    from kvcalc.loader import parse_json, read_text_capped

    data = parse_json(read_text_capped(path), str(path))  # size cap, no FIFO, UTF-8, bounded depth
    if not isinstance(data, dict) or "model_type" not in data:
        raise InvalidRequestError("--config", ref, "a Hugging Face config.json with a model_type")
    return data, path


def _built_prefix(specs: tuple[Spec, ...], per_kind: int) -> int:
    """Smallest N such that the first N layers hold ``per_kind`` layers of every cached kind."""
    need = {s: min(per_kind, sum(1 for t in specs if t == s)) for s in set(specs) if s.grows}
    seen: dict[Spec, int] = {}
    for i, s in enumerate(specs):
        seen[s] = seen.get(s, 0) + 1
        if all(seen.get(k, 0) >= n for k, n in need.items()):
            return i + 1
    return len(specs)


def shrink_config(data: dict[str, Any], layers: int) -> dict[str, Any]:
    """The config with ``layers`` layers and tiny hidden/MLP/vocab sizes, same attention geometry."""
    d = {k: v for k, v in data.items() if k not in ("quantization_config", "auto_map", "architectures")}
    heads = int(d["num_attention_heads"])
    if d.get("model_type") in _SHRINKABLE:
        if d.get("head_dim") is None:
            d["head_dim"] = int(d["hidden_size"]) // heads  # the model's own default (hidden / heads)
        d["hidden_size"] = _TINY_HIDDEN
        d["intermediate_size"] = _TINY_INTERMEDIATE
        for key in ("moe_intermediate_size", "shared_expert_intermediate_size"):
            if key in d:
                d[key] = _TINY_INTERMEDIATE
    d["vocab_size"] = _TINY_VOCAB
    d["num_hidden_layers"] = layers
    if isinstance(d.get("layer_types"), list):
        d["layer_types"] = d["layer_types"][:layers]
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        value = d.get(key)
        if isinstance(value, int) and value >= _TINY_VOCAB:
            d[key] = 0
        elif isinstance(value, list):
            d[key] = [v if v < _TINY_VOCAB else 0 for v in value]
    return d


def verify_transformers(
    ref: str,
    seq_len: int,
    batch: int = 1,
    *,
    cache: str = "static",
    layers_sample: int | None = None,
    device: str = "cpu",
    on_slow: Callable[[str], None] | None = None,
) -> TransformersVerifyResult:
    """Build the cache with transformers from ``ref``'s config.json and compare with kvcalc's hf policy.

    ``on_slow(sentence)`` is called before the model runs when the run is slow by nature (a long
    prompt through real attention), so the CLI can say so up front."""
    from kvcalc.engines import get_policy
    from kvcalc.engines.base import Workload
    from kvcalc.registry import load_model

    mode = cache.strip().lower()
    if mode not in ("static", "dynamic"):
        raise InvalidRequestError("--cache", cache, "static or dynamic")
    check_int("seq_len", seq_len, minimum=2 if mode == "dynamic" else 1, maximum=1 << 24)
    check_int("batch", batch, maximum=1 << 16)
    per_kind = 1 if layers_sample is None else check_int("layers_sample", layers_sample, maximum=MAX_LAYERS)
    data, path = read_hf_config(ref)
    if data["model_type"] not in _SHRINKABLE:
        # Other families tie attention width to hidden_size (or carry Mamba/MoE blocks whose random
        # initialisation at full width costs gigabytes): they are not built here.
        raise InvalidRequestError("--source transformers", data["model_type"],
                                  f"a model type whose head size is independent of hidden_size: "
                                  f"{', '.join(sorted(_SHRINKABLE))}")
    model = load_model(path)
    engine = "hf-static" if mode == "static" else "hf"
    try:
        policy = get_policy(engine)
    except UnknownNameError:
        raise UnknownNameError("engine", engine, ["neutral"]) from None
    est = estimate(model, seq_len, batch, "auto", engine=policy)
    dtype = model.dtype
    specs = model.layer_specs
    built = _built_prefix(specs, per_kind)
    work = Workload(seq_len=seq_len, batch=batch)
    from kvcalc.dtypes import resolve_dtype

    kv = resolve_dtype("auto", dtype)
    built_predicted = sum(layer_bytes(s, policy, kv, work) for s in specs[:built])
    from kvcalc.measure.device import host_available_bytes

    budget = host_available_bytes() // 4  # the cache, plus generate's transient copies
    if built_predicted > budget:
        raise DoesNotFitError(
            f"{built} layers built by transformers need {format_bytes(built_predicted)} ({built_predicted:,} B) "
            f"but only {format_bytes(budget)} ({budget:,} B) may be used (a quarter of the host's available "
            "memory); nothing was allocated; lower --seq-len or --batch")

    try:
        import torch
        import transformers
    except ImportError:
        raise MissingDependencyError("transformers", "hf") from None
    slow = slow_warning(data, built, seq_len, batch)
    if slow is not None and on_slow is not None:
        on_slow(slow)
    layer_tensors = _run(transformers, torch, shrink_config(data, built), mode, seq_len, batch,
                         _TORCH_DTYPES[dtype], device)
    return _compare(model.name, specs, built, layer_tensors, policy, kv, work, est.per_gpu_bytes, mode,
                    transformers.__version__, batch, seq_len, device)


SLOW_FLOPS = 10**12
"""Attention work above which ``verify --source transformers`` warns before it starts."""


def attention_flops(data: dict[str, Any], built_layers: int, seq_len: int, batch: int) -> int:
    """Floating-point operations of the prompt's causal attention in the built layers: about
    seq_len^2 / 2 query-key pairs, each a dot product over heads x head_dim for the scores and again
    for the weighted values (2 flops per multiply-add): ``2 x seq_len^2 x heads x head_dim`` a layer.
    The projections are linear in seq_len and small beside it at these lengths."""
    heads = data.get("num_attention_heads")
    head_dim = data.get("head_dim")
    hidden = data.get("hidden_size")
    if not isinstance(heads, int) or isinstance(heads, bool) or heads < 1:
        return 0
    if not isinstance(head_dim, int) or isinstance(head_dim, bool) or head_dim < 1:
        head_dim = hidden // heads if isinstance(hidden, int) and not isinstance(hidden, bool) and hidden > 0 else 0
    return 2 * seq_len * seq_len * heads * head_dim * built_layers * batch


def slow_warning(data: dict[str, Any], built_layers: int, seq_len: int, batch: int) -> str | None:
    """A sentence for a run that is slow by nature (None otherwise): transformers runs the whole
    prompt through real attention, quadratic in its length."""
    flops = attention_flops(data, built_layers, seq_len, batch)
    if flops <= SLOW_FLOPS:
        return None
    return (f"slow by nature: transformers runs a {seq_len:,}-token prompt through real attention in "
            f"{built_layers} built layer(s), about {flops:,} floating-point operations (quadratic in "
            f"--seq-len); expect minutes or more on a CPU (Ctrl-C stops it between chunks of {PREFILL_CHUNK:,} "
            "tokens; --cache static runs 8)")


def _run(transformers: Any, torch: Any, cfg_data: dict[str, Any], mode: str, seq_len: int, batch: int,
         torch_dtype: str, device: str) -> list[tuple[list[list[int]], int, int]]:
    """Per built layer: (shapes, tensor bytes, storage bytes) of what transformers cached."""
    config = transformers.AutoConfig.for_model(**cfg_data)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=getattr(torch, torch_dtype))
    model.to(device)
    model.eval()
    vocab = int(cfg_data["vocab_size"])
    try:
        with torch.no_grad():
            if mode == "static":
                cache = transformers.StaticCache(config=config, max_cache_len=seq_len)
                ids = torch.randint(0, vocab, (batch, min(seq_len, 8)), device=device)
                model(ids, past_key_values=cache, use_cache=True)
            else:
                new = min(GENERATED_TOKENS, seq_len - 1)
                ids = torch.randint(0, vocab, (batch, seq_len - new + 1), device=device)
                filled = None
                if ids.shape[1] - 1 > PREFILL_CHUNK:
                    # All but the last prompt token, chunk by chunk; generate runs the rest.
                    filled = transformers.DynamicCache(config=config)
                    for start in range(0, ids.shape[1] - 1, PREFILL_CHUNK):
                        stop = min(ids.shape[1] - 1, start + PREFILL_CHUNK)
                        model(ids[:, start:stop], past_key_values=filled, use_cache=True)
                out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                                     min_new_tokens=new, do_sample=False, return_dict_in_generate=True,
                                     pad_token_id=0, past_key_values=filled)
                cache = out.past_key_values
            result = []
            for layer in cache.layers:
                tensors = [t for t in (getattr(layer, "keys", None), getattr(layer, "values", None)) if t is not None]
                # LinearAttentionLayer (Qwen3-Next, Nemotron-H): conv and recurrent states, {index: tensor}.
                for name in ("conv_states", "recurrent_states"):
                    states = getattr(layer, name, None)
                    if isinstance(states, dict):
                        tensors += [t for t in states.values() if isinstance(t, torch.Tensor)]
                result.append((
                    [list(t.shape) for t in tensors],
                    sum(int(t.numel()) * int(t.element_size()) for t in tensors),
                    sum(int(t.untyped_storage().nbytes()) for t in tensors),
                ))
            return result
    finally:
        del model


def _compare(name: str, specs: tuple[Spec, ...], built: int, layers: list[tuple[list[list[int]], int, int]],
             policy: Any, kv: Any, work: Any, predicted_total: int, mode: str, version: str, batch: int,
             seq_len: int, device: str) -> TransformersVerifyResult:
    notes: list[str] = []
    if len(layers) != built:
        notes.append(f"transformers built {len(layers)} cache layers for {built} model layers")
    groups: dict[Spec, list[int]] = {}
    for i, spec in enumerate(specs[:built]):
        groups.setdefault(spec, []).append(i)
    kinds: list[TransformersKind] = []
    for spec, idx in groups.items():
        n = sum(1 for s in specs if s == spec)
        got = [layers[i] for i in idx if i < len(layers)]
        measured = sum(g[1] for g in got) * n // len(idx)
        storage = sum(g[2] for g in got) * n // len(idx)
        predicted = layer_bytes(spec, policy, kv, work) * n
        ok = measured == predicted
        kinds.append(TransformersKind(
            kind=spec.kind, description=spec.describe(), layers=n, built_layers=len(idx),
            shapes=got[0][0] if got else [], predicted_bytes=predicted, measured_bytes=measured,
            storage_bytes=storage, ratio=measured / predicted if predicted else 0.0, ok=ok,
            verdict="OK: exact" if ok else f"FAIL: transformers {measured:,} B != kvcalc {predicted:,} B"))
    measured_total = sum(k.measured_bytes for k in kinds)
    storage_total = sum(k.storage_bytes for k in kinds)
    if storage_total != measured_total:
        notes.append(f"the cache tensors view {storage_total:,} B of storage (sliding views pin whole windows)")
    if built < len(specs):
        notes.append(f"transformers built {built} of {len(specs)} layers (random weights, tiny hidden/vocab, "
                     "same attention geometry); figures are scaled per layer kind")
    ok = all(k.ok for k in kinds) and measured_total == predicted_total
    return TransformersVerifyResult(
        model=name, engine=policy.name, cache_class="StaticCache" if mode == "static" else "DynamicCache",
        transformers_version=version, kv_dtype=kv.name, seq_len=seq_len, batch=batch, device=device,
        source="transformers", predicted_bytes=predicted_total, tensor_bytes=measured_total,
        measured_bytes=measured_total, storage_bytes=storage_total,
        ratio=measured_total / predicted_total if predicted_total else 0.0, sampled=built < len(specs),
        sampled_layers=built, built_layers=built, num_layers=len(specs), ok=ok, kinds=kinds, notes=notes)
