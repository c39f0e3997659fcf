"""transformers' QuantizedCache (KIVI-style) against kvcalc's ``quanto-int*`` / ``hqq-int*`` dtypes,
with the real backends, when installed (optimum-quanto, hqq; not in CI's extras).

A random-weight Llama (2 layers, 2 KV heads x 64, fp32) generates; the bytes of every tensor the
cache holds (packed values, scales, zero points, and the full-precision residual) are summed and
compared with ``estimate(..., engine="hf")``. transformers 5.23 ``QuantizedLayer.update``
quantizes the whole prompt at prefill, then keeps decoded tokens full precision until the
residual reaches ``residual_length``, so after G = residual_length new tokens the residual holds
exactly residual_length - 1 tokens, the figure kvcalc assumes (its estimate is the upper bound;
other G give fewer full-precision tokens and fewer bytes).

Hand check (quanto-int4, P = 300, G = 128, R = 128, group 64): per layer and per K or V, 300
quantized tokens x 2 heads x 64 = 38,400 values = 600 groups of 32 packed bytes + fp32 scale +
fp32 zero point = 24,000 B; the residual is 127 x 2 x 64 x 4 B = 65,024 B; 2 layers x 2 x (24,000 +
65,024) = 356,096 B.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

P, G, R, GROUP = 300, 128, 128, 64
# The third-party backends warn on import (torch.jit.script in hqq, deprecations in quanto):
# their warnings, not kvcalc's, so they do not fail this module.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning",
                                        "ignore::FutureWarning")


def _have(backend: str) -> bool:
    """The backend really usable: importable with the entry point transformers calls (an empty
    namespace package left by an uninstall does not count)."""
    import importlib

    module, attr = ("optimum.quanto", "quantize_weight") if backend == "quanto" else ("hqq.core.quantize", "Quantizer")
    try:
        return hasattr(importlib.import_module(module), attr)
    except Exception:  # an installed backend may still fail to import (missing dependency)
        return False


def _nbytes(t: Any) -> int:
    if isinstance(t, torch.Tensor):
        if type(t) is not torch.Tensor and hasattr(t, "__tensor_flatten__"):
            names, _ = t.__tensor_flatten__()  # quanto's WeightQBitsTensor / PackedTensor
            return sum(_nbytes(getattr(t, n)) for n in names)
        return int(t.numel() * t.element_size())
    if isinstance(t, tuple | list):
        return sum(_nbytes(x) for x in t)
    if isinstance(t, dict):  # hqq keeps (packed, meta) with scale and zero in meta
        return sum(_nbytes(x) for x in t.values())
    return 0


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, str]:
    cfg = transformers.LlamaConfig(vocab_size=128, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                                   max_position_embeddings=4096, dtype="float32")
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    path = tmp_path_factory.mktemp("qcfg")
    cfg.to_json_file(os.path.join(path, "config.json"))
    return cfg, model, str(path / "config.json")


CASES = [("quanto", b) for b in (2, 4)] + [("hqq", b) for b in (1, 2, 3, 4, 8)]


@pytest.mark.parametrize("backend,nbits", CASES)
@pytest.mark.parametrize("new_tokens", [G, 50])
def test_quantized_cache_bytes(llama: tuple[Any, Any, str], backend: str, nbits: int, new_tokens: int) -> None:
    if not _have(backend):
        pytest.skip(f"the {backend} backend is not installed")
    import kvcalc

    cfg, model, config_path = llama
    cache = transformers.QuantizedCache(backend=backend, config=cfg, nbits=nbits, q_group_size=GROUP,
                                        residual_length=R)
    ids = torch.randint(0, 128, (1, P), generator=torch.Generator().manual_seed(1))
    out = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                         past_key_values=cache, return_dict_in_generate=True)
    c = out.past_key_values
    real = sum(_nbytes(layer._quantized_keys) + _nbytes(layer._quantized_values) + _nbytes(layer.keys)
               + _nbytes(layer.values) for layer in c.layers)
    est = kvcalc.estimate(kvcalc.load_model(config_path), c.get_seq_length(), 1, f"{backend}-int{nbits}",
                          engine="hf", kv_group_size=GROUP, residual_length=R)
    if new_tokens == G:  # residual of exactly R - 1 tokens: kvcalc's figure, to the byte
        assert real == est.total_bytes
    else:  # 49 residual tokens instead of 127: fewer full-precision bytes, never more
        assert real < est.total_bytes
