"""`kvcalc verify` on CPU: allocate the predicted cache, write it, measure the resident-set delta.

Independent figures (hand arithmetic):
* Llama-2-7B, 1024 tokens, batch 1, fp16: 32 layers x 2 (K, V) x 32 heads x 128 x 2 B x 1024
  = 536,870,912 B (reference §8.1: 524,288 B per token x 1024).
* Llama-3-70B, 8192 x batch 8, bf16: 80 x 2 x 8 x 128 x 2 B x 8192 x 8 = 21,474,836,480 B; one layer
  268,435,456 B.
* DeepSeek-V3, 65,536 tokens, bf16: 61 x 576 x 2 B x 65,536 = 4,605,345,792 B; one layer 75,497,472 B.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest

from kvcalc.errors import DoesNotFitError
from kvcalc.registry import get_builtin

torch = pytest.importorskip("torch")

from kvcalc.measure import device as device_mod  # noqa: E402
from kvcalc.measure.verify import verify  # noqa: E402

CONTRACT = {"predicted_bytes", "tensor_bytes", "measured_bytes", "sampled_layers", "device", "ok", "kinds"}


def _within_1_percent(measured: int, predicted: int) -> bool:
    return abs(measured - predicted) * 100 <= predicted


def test_llama_2_7b_1024_exact_and_resident_within_1_percent(cli: Callable[..., Any]) -> None:
    r = cli("verify", "llama-2-7b", "--seq-len", "1024", "--json")
    assert r.exit_code == 0, r.stderr
    data = r.json()
    assert CONTRACT <= set(data)
    assert data["predicted_bytes"] == data["tensor_bytes"] == 536_870_912
    assert data["sampled_layers"] == 32 and data["sampled"] is False
    assert data["device"] == "cpu" and data["ok"] is True and data["exact"] is True
    # 16 MiB tensors are whole pages: the expected resident growth is the tensor bytes themselves.
    assert data["expected_bytes"] == 536_870_912
    assert _within_1_percent(data["measured_bytes"], 536_870_912)
    (kind,) = data["kinds"]
    assert kind["tensors"][0] == {"name": "k", "shape": [1, 1024, 32, 128], "dtype": "float16", "bytes": 8_388_608}
    assert kind["allocated_tensor_bytes"] == 536_870_912


def test_json_matches_the_core_result() -> None:
    # The same request through the core: every deterministic field equals the CLI's (measured ones vary).
    result = verify(get_builtin("llama-2-7b"), 64).to_dict()
    assert result["predicted_bytes"] == result["tensor_bytes"] == 32 * 2 * 32 * 128 * 2 * 64


def test_cli_json_equals_to_dict_for_deterministic_fields(cli: Callable[..., Any]) -> None:
    r = cli("verify", "llama-2-7b", "--seq-len", "64", "--kv-dtype", "int8", "--json")
    core = verify(get_builtin("llama-2-7b"), 64, kv_dtype="int8").to_dict()
    data = r.json()
    varying = {"measured_bytes", "measured_counters", "ratio", "kinds", "budget_bytes", "ok"}
    assert {k: v for k, v in data.items() if k not in varying} == {k: v for k, v in core.items() if k not in varying}


@pytest.mark.parametrize(
    ("args", "predicted", "sampled"),
    [
        (("llama-3-70b", "--seq-len", "8192", "--batch", "8"), 21_474_836_480, 1),
        (("deepseek-v3", "--seq-len", "65536"), 4_605_345_792, 1),
    ],
)
def test_sampled_large_models(cli: Callable[..., Any], args: tuple[str, ...], predicted: int, sampled: int) -> None:
    r = cli("verify", *args, "--layers-sample", "1", "--json")
    assert r.exit_code == 0, r.stderr
    data = r.json()
    assert data["predicted_bytes"] == data["tensor_bytes"] == predicted
    assert data["sampled"] is True and data["sampled_layers"] == sampled
    assert _within_1_percent(data["measured_bytes"], predicted)
    assert "--layers-sample 1" in r.stderr  # says so


def test_fp8_with_per_tensor_scales() -> None:
    # fp8 E4M3: 1 B per value -> 268,435,456 B at 1024 tokens, plus 2 float32 scales per layer (8 B x 32).
    r = verify(get_builtin("llama-2-7b"), 1024, kv_dtype="fp8_per_tensor")
    assert r.predicted_bytes == r.tensor_bytes == 268_435_456 + 256
    assert r.kinds[0].tensors[0]["dtype"] == "float8_e4m3fn"
    # Each 4 B scale is its own mapping: one 4 KiB page each (32 layers x 2 x 4096 B expected on top).
    assert r.expected_bytes == 268_435_456 + 64 * device_mod.page_size()
    assert r.ok and _within_1_percent(r.measured_bytes, r.expected_bytes)


def test_int4_packed_as_uint8() -> None:
    # int4: two values per byte: 32 layers x 2 x 4096 values / 2 x 1024 tokens = 134,217,728 B.
    r = verify(get_builtin("llama-2-7b"), 1024, kv_dtype="int4")
    assert r.predicted_bytes == r.tensor_bytes == 134_217_728
    assert r.kinds[0].tensors[0] == {"name": "k", "shape": [1, 1024, 2048], "dtype": "uint8", "bytes": 2_097_152}
    assert r.ok and _within_1_percent(r.measured_bytes, 134_217_728)


def test_engine_layouts_on_device() -> None:
    # vLLM blocks and transformers' [b, H, T, d], really allocated: tensors equal the engine's estimate.
    for engine in ("vllm", "hf"):
        r = verify(get_builtin("gemma-2-9b"), 100, 2, engine=engine)
        assert r.exact and r.ok, r.to_dict()


def test_far_beyond_memory_is_refused_without_allocating(cli: Callable[..., Any],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*_: Any) -> Any:
        raise AssertionError("allocation attempted")

    monkeypatch.setattr(device_mod.CpuDevice, "allocate", never)
    monkeypatch.setattr(device_mod.CpuDevice, "write", never)
    # One Llama-3-70B layer at 10M tokens x 64: 2 x 8 x 128 x 2 B x 10,000,000 x 64 = 2,621,440,000,000 B.
    r = cli("verify", "llama-3-70b", "--seq-len", "10000000", "--batch", "64")
    assert r.exit_code == 1 and r.stdout == ""
    assert r.stderr.startswith("Error: one layer needs 2.38 TiB (2,621,440,000,000 B) on cpu but only ")
    assert "nothing was allocated" in r.stderr
    with pytest.raises(DoesNotFitError):
        verify(get_builtin("llama-3-70b"), 10_000_000, 64)


def test_auto_sampling_when_the_whole_cache_does_not_fit(cli: Callable[..., Any]) -> None:
    # 40 MiB budget; one Llama-2-7B layer at 1024 tokens is 16 MiB: 2 layers fit (32 MiB), 3 do not.
    r = cli("verify", "llama-2-7b", "--seq-len", "1024", "--max-memory", "40MiB", "--json")
    assert r.exit_code == 0, r.stderr
    data = r.json()
    assert data["sampled"] is True and data["sampled_layers"] == 2
    assert data["predicted_bytes"] == data["tensor_bytes"] == 536_870_912
    assert "sampled 2 layer(s) of each kind automatically" in r.stderr
    assert _within_1_percent(data["measured_bytes"], 536_870_912)
    # One layer (16 MiB) over an 8 MiB budget: refused.
    r = cli("verify", "llama-2-7b", "--seq-len", "1024", "--max-memory", "8MiB")
    assert r.exit_code == 1 and r.stdout == "" and "16.00 MiB (16,777,216 B)" in r.stderr


def test_ctrl_c_frees_everything_and_exits_130(cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    live: list[int] = []
    real_write = device_mod.Device.write
    calls = 0

    def interrupted(self: Any, alloc: Any, progress: Any = None) -> None:
        nonlocal calls
        calls += 1
        raw = alloc.raw  # as in a write interrupted inside fill_: this frame still views the buffer
        if calls == 3 and raw is not None:
            live.append(len(self.live))
            raise KeyboardInterrupt
        real_write(self, alloc, progress)

    real_free = device_mod.Device.free_all

    def free_all(self: Any) -> None:
        real_free(self)
        live.append(len(self.live))

    monkeypatch.setattr(device_mod.Device, "write", interrupted)
    monkeypatch.setattr(device_mod.Device, "free_all", free_all)
    r = cli("verify", "llama-2-7b", "--seq-len", "64")
    assert r.exit_code == 130 and r.stdout == ""
    assert r.stderr.startswith("Error: interrupted: verify freed every tensor")
    # Write 1 is the warm-up page (freed at once); on CPU all 32 x 2 tensors are mapped before the first
    # write, so 64 are live when Ctrl-C hits the second tensor's write, and none after.
    assert live[-2:] == [64, 0]


def test_table_output(cli: Callable[..., Any]) -> None:
    r = cli("verify", "llama-2-7b", "--seq-len", "64")
    assert r.exit_code == 0
    # 32 x 2 x 32 x 128 x 2 B x 64 = 33,554,432 B in the predicted and tensor columns.
    assert r.stdout.count("33,554,432") >= 4 and "Verdict: OK" in r.stdout


def test_bad_requests(cli: Callable[..., Any]) -> None:
    r = cli("verify", "llama-2-7b", "--seq-len", "64", "--device", "tpu")
    assert r.exit_code == 2 and r.stdout == "" and "cpu, cuda, cuda:N or mps" in r.stderr
    r = cli("verify", "llama-2-7b", "--seq-len", "64", "--device", "cuda")
    if not torch.cuda.is_available():
        assert r.exit_code == 1 and "CUDA is not available" in r.stderr  # a device problem (README)
    r = cli("verify", "llama-2-7b", "--seq-len", "64", "--source", "vllm")
    assert r.exit_code == 2 and "formula or transformers" in r.stderr


def test_without_torch_names_the_extra(cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    r = cli("verify", "llama-2-7b", "--seq-len", "64")
    assert r.exit_code == 1 and r.stdout == ""
    assert r.stderr.strip() == "Error: torch is not installed; pip install 'kvcalc[measure]'"


def test_many_tiny_layers_are_sampled_not_mapped_one_by_one(cli: Callable[..., Any]) -> None:
    # 5,000 layers x 2 tensors = 10,000 mappings > MAX_TENSORS 4,096: 2,048 layers (4,096 tensors) are
    # allocated and the rest extrapolated; each tensor is 16 tokens x 32 x 128 x 2 B = 131,072 B.
    r = cli("verify", "llama-2-7b", "--seq-len", "16", "--layers", "5000", "--json")
    assert r.exit_code == 0, r.stderr
    data = r.json()
    assert data["sampled_layers"] == 2048 and "more than 4,096 at once" in r.stderr
    assert data["predicted_bytes"] == data["tensor_bytes"] == 5000 * 2 * 131_072


def test_a_layout_that_differs_from_the_prediction_fails_the_run(cli: Callable[..., Any],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from kvcalc.measure import layout
    from kvcalc.measure import verify as verify_mod

    real = layout.layer_tensors

    def one_token_short(spec: Any, policy: Any, dtype: Any, work: Any, state_dtype: Any = None) -> list[Any]:
        tensors = real(spec, policy, dtype, work, state_dtype)
        k = tensors[0]
        return [layout.TensorLayout(name=k.name, shape=(k.shape[0], k.shape[1] - 1, *k.shape[2:]),
                                    torch_dtype=k.torch_dtype), *tensors[1:]]

    monkeypatch.setattr(verify_mod, "layer_tensors", one_token_short)
    r = cli("verify", "llama-2-7b", "--seq-len", "64", "--json")
    # K of every layer one token short: 32 x 32 x 128 x 2 B = 262,144 B less than 33,554,432 B.
    assert r.exit_code == 1
    data = r.json()
    assert data["exact"] is False and data["ok"] is False
    assert data["tensor_bytes"] == 33_554_432 - 262_144 and data["predicted_bytes"] == 33_554_432
    assert "Error: verification failed: full, 32 KV heads x 128: FAIL: tensors 33,292,288 B" in r.stderr


def test_progress_reaches_the_total() -> None:
    seen: list[tuple[int, int]] = []
    verify(get_builtin("llama-2-7b"), 64, progress=lambda done, total: seen.append((done, total)))
    # 64 tensors of 524,288 B: the bar starts at 0 and ends at 33,554,432 B, never going back.
    assert seen[0] == (0, 33_554_432) and seen[-1] == (33_554_432, 33_554_432)
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:], strict=False))


def test_transformers_source_rejects_formula_flags(cli: Callable[..., Any]) -> None:
    r = cli("verify", "--config", "x.json", "--seq-len", "8", "--source", "transformers", "--kv-dtype", "fp8")
    assert r.exit_code == 2 and r.stdout == "" and "--kv-dtype='fp8' is not allowed" in r.stderr
