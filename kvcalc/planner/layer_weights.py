"""Weights by layer, for engines that place whole layers on devices (llama.cpp, Ollama).

llama.cpp's ``load_tensors`` (llama-cpp-python 0.3.36, vendor/llama.cpp/src/llama-model.cpp:1589-1614)
puts three kinds of layer on devices: the input layer (``LLM_TENSOR_LAYER_INPUT``: token embeddings,
learned positions) always in host memory, each repeating layer (``blk.N.*``) on its device, and the
output layer (``LLM_TENSOR_LAYER_OUTPUT``: ``output_norm``, ``output``) on the device of layer
``n_layer``. A model with tied embeddings has no ``output`` tensor: ``models/llama.cpp:41-46`` loads
``token_embd`` a second time (``TENSOR_DUPLICATED``) as the output matrix, on the output device.

The bytes come from the same source ``checkpoint_weights`` uses: a GGUF's own tensor table (exact),
or the architecture's tensors sized by ``--weight-dtype`` (GGUF presets per tensor), the config's
``quantization_config`` or the model dtype.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kvcalc.models import ModelConfig
from kvcalc.planner.weights import (
    WeightTensor,
    _gguf_format,
    checkpoint_format,
    get_weight_dtype,
    gguf_weight_key,
    model_gguf,
    weight_tensors,
)

_BLK = re.compile(r"^blk\.(\d+)\.")
_INPUT = ("token_embd.", "position_embd.", "token_types.")
_OUTPUT = ("output.", "output_norm.")


@dataclass(frozen=True, kw_only=True)
class LayerWeights:
    input_bytes: int
    layer_bytes: tuple[int, ...]
    output_bytes: int
    source: str
    """Where the figures come from (shown in the plan's notes)."""
    duplicated_bytes: int = 0
    """The tied embeddings' second copy llama.cpp loads as the output matrix (0 when untied)."""

    @property
    def total_bytes(self) -> int:
        return self.input_bytes + sum(self.layer_bytes) + self.output_bytes


def gguf_layer_weights(path: str, n_layer: int) -> LayerWeights:
    """A GGUF's tensors by the layer llama.cpp puts them in (by name: ``blk.N.``, the input and
    output tensors); any other tensor (``rope_freqs`` ...) goes with layer 0, as llama.cpp loads it there."""
    from kvcalc.gguf import read_gguf

    g = read_gguf(path)
    layers = [0] * n_layer
    inp = out = 0
    embd = 0
    has_output = False
    for t in g.tensors:
        m = _BLK.match(t.name)
        if m and int(m.group(1)) < n_layer:
            layers[int(m.group(1))] += t.n_bytes
        elif t.name.startswith(_INPUT):
            inp += t.n_bytes
            embd += t.n_bytes if t.name.startswith("token_embd.") else 0
        elif t.name.startswith(_OUTPUT):
            out += t.n_bytes
            has_output = has_output or t.name.startswith("output.")
        elif n_layer:
            layers[0] += t.n_bytes
    dup = 0 if has_output else embd
    return LayerWeights(input_bytes=inp, layer_bytes=tuple(layers), output_bytes=out + dup,
                        source=f"GGUF tensor table of {Path(path).name}", duplicated_bytes=dup)


def _sizer(model: ModelConfig, weight_dtype: str, compute_dtype: str) -> tuple[str, object]:
    """How one architecture tensor is sized, by the first source ``checkpoint_weights`` would use."""
    key = weight_dtype.strip().lower()
    if gguf_weight_key(key) is not None:
        return f"--weight-dtype {key} per tensor (llama-quant.cpp rules)", key
    if key in ("auto", "") and model.quantization_config is not None:
        fmt = checkpoint_format(model.quantization_config, 4 if compute_dtype == "fp32" else 2)
        return f"quantization_config ({fmt.label}) per tensor", fmt
    wd = get_weight_dtype(weight_dtype, compute_dtype)
    return f"{wd.name} per tensor", wd


def tensor_bytes(t: WeightTensor, model: ModelConfig, how: object) -> int:
    from kvcalc.planner.weights import CheckpointFormat, WeightDtype

    if isinstance(how, str):
        return sum(_gguf_format(how, [t], model).values())
    if isinstance(how, CheckpointFormat):
        return sum(how.tensor_bytes(t).values())
    assert isinstance(how, WeightDtype)
    return how.bytes_for(t.numel)


def layer_weights(model: ModelConfig, weight_dtype: str, compute_dtype: str,
                  weights_path: str | None = None) -> LayerWeights | None:
    """The weights by layer, or None when the architecture's tensors are unknown (Mamba mixers,
    cross-attention: ``weight_tensors``)."""
    n_layer = model.num_layers
    gguf = weights_path if weights_path and weights_path.lower().endswith(".gguf") else None
    if gguf is None and weight_dtype.strip().lower() in ("auto", "") and weights_path is None:
        gguf = model_gguf(model)
    if gguf is not None:
        return gguf_layer_weights(gguf, n_layer)
    tensors = weight_tensors(model)
    if tensors is None:
        return None
    source, how = _sizer(model, weight_dtype, compute_dtype)
    if weights_path is not None:
        source += f" (--weights {Path(weights_path).name} gives the total only; llama.cpp loads GGUF files)"
    layers = [0] * n_layer
    inp = out = 0
    embd = 0
    for t in tensors:
        b = tensor_bytes(t, model, how)
        if t.role in ("embed", "pos"):
            inp += b
            embd += b if t.role == "embed" else 0
        elif t.layer is None:
            out += b  # the final norm and the output matrix
        else:
            layers[t.layer] += b
    dup = embd if model.tie_word_embeddings else 0
    return LayerWeights(input_bytes=inp, layer_bytes=tuple(layers), output_bytes=out + dup, source=source,
                        duplicated_bytes=dup)
