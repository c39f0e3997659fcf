"""Weights: parameter counts from the architecture, weight bytes, safetensors headers."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from kvcalc.errors import InvalidConfigError, InvalidRequestError
from kvcalc.models import ModelConfig
from kvcalc.planner.weights import computed_parameters, get_weight_dtype, model_parameters, read_safetensors
from kvcalc.registry import builtin_names, get_builtin

PUBLISHED = [n for n in builtin_names() if get_builtin(n).num_parameters is not None]


@pytest.mark.parametrize("name", PUBLISHED)
def test_computed_count_within_half_percent_of_published(name: str) -> None:
    model = get_builtin(name)
    computed = computed_parameters(model)
    assert computed is not None and model.num_parameters is not None
    assert abs(computed - model.num_parameters) * 200 <= model.num_parameters  # |diff| <= 0.5 %


def test_llama2_7b_count_exact() -> None:
    # 32000 x 4096 x 2 (embed + lm_head) + 32 x (4 x 4096^2 + 3 x 4096 x 11008 + 2 x 4096) + 4096
    # = 262,144,000 + 32 x 202,383,360 + 4,096 = 6,738,415,616 (the published safetensors total).
    assert computed_parameters(get_builtin("llama-2-7b")) == 6_738_415_616


def test_mla_and_moe_counts_are_plausible() -> None:
    # DeepSeek-V3: 671B in the paper (671,026,404,352 computed; +14B MTP module not counted).
    ds = computed_parameters(get_builtin("deepseek-v3"))
    assert ds is not None and abs(ds - 671_000_000_000) * 100 < 671_000_000_000


def test_unknown_count_is_none(builtin_model: ModelConfig) -> None:
    count = model_parameters(builtin_model)
    if count.parameters is None:
        # Unknown only where the structure leaves weights kvcalc does not count: Mamba / hybrid
        # states, cross-attention (the vision tower), or a config without vocab / MLP sizes.
        from kvcalc.specs import CrossAttention, StatefulAttention

        uncounted = any(isinstance(s, CrossAttention | StatefulAttention) for s in builtin_model.layer_specs)
        assert (builtin_model.has_state or uncounted or builtin_model.vocab_size is None
                or builtin_model.intermediate_size is None)


def test_weight_dtypes() -> None:
    assert get_weight_dtype("auto", "bf16").bytes_for(10) == 20
    assert get_weight_dtype("fp8", "bf16").bytes_for(10) == 10
    # int4 AWQ/GPTQ: 4 bits each + 32 bits (scale + zero) per group of 128:
    # 1,280 weights -> 640 B + 10 groups x 4 B = 680 B.
    assert get_weight_dtype("int4", "bf16").bytes_for(1280) == 680
    with pytest.raises(InvalidRequestError):
        get_weight_dtype("int3", "bf16")


def _write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], int]]) -> None:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape, size) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)


def test_safetensors_headers_exact(tmp_path: Path) -> None:
    # bf16 [4, 8] = 64 B; int32-packed int4 qweight [2, 8] = 64 B; fp16 scales [8] = 16 B.
    _write_safetensors(tmp_path / "model-00001-of-00002.safetensors",
                       {"a.weight": ("BF16", [4, 8], 64), "b.qweight": ("I32", [2, 8], 64)})
    _write_safetensors(tmp_path / "model-00002-of-00002.safetensors", {"b.scales": ("F16", [8], 16)})
    st = read_safetensors(tmp_path)
    assert (st.bytes, st.parameters, st.files) == (144, 32 + 16 + 8, 2)


def test_safetensors_index_total(tmp_path: Path) -> None:
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 16_060_522_496}, "weight_map": {}}))
    assert read_safetensors(index).bytes == 16_060_522_496
    assert read_safetensors(tmp_path).bytes == 16_060_522_496


def test_safetensors_bad_files(tmp_path: Path) -> None:
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"abc")
    with pytest.raises(InvalidConfigError):
        read_safetensors(short)
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(struct.pack("<Q", 1 << 40))
    with pytest.raises(InvalidConfigError, match="exceeds the cap"):
        read_safetensors(huge)


def test_plan_with_weights_path(tmp_path: Path, cli: Any) -> None:
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 16_060_522_496}}))
    res = cli("plan", "llama-3-8b", "--gpu", "a100-40gb", "--weights", str(tmp_path), "--context", "8192", "--json")
    assert res.exit_code == 0, res.stderr
    assert res.json()["weights_bytes"] == 16_060_522_496
