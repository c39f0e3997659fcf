"""llama.cpp per device: each GPU's weights + KV + compute buffer + overhead against its memory,
and host memory, as ``plan`` reports them (``devices``, ``devices_fit``, ``device_short``, ``host_bytes``).

Placement from llama.cpp's ``load_tensors`` (llama-cpp-python 0.3.36, vendor/llama.cpp/src/
llama-model.cpp:1589-1614): the input layer (token_embd) on the CPU, repeating layer il on device
upper_bound(splits, (il - i_gpu_start) / act), the output layer (output_norm, output) as layer
n_layer, the last of the n_layer + 1 layers -ngl counts. Every figure below is derived by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kvcalc.planner.layer_weights import gguf_layer_weights, layer_weights
from kvcalc.planner.plan import PlanRequest, plan
from kvcalc.planner.weights import checkpoint_weights
from kvcalc.registry import get_builtin

MiB = 1 << 20
GiB = 1 << 30
LOGS = Path(__file__).parent / "fixtures" / "logs"

# Llama-3-70B (hidden 8192, 64 heads, 8 KV heads x 128, intermediate 28672, vocab 128256, 80
# layers, untied) under llama-quantize's Q4_0 preset: every 2-D weight q4_0 (18 B per 32 values)
# but output.weight, which the preset makes q6_k (210 B per 256 values); norms stay f32:
#   q, o: 8,192 rows x (8,192 / 32 x 18 = 4,608 B) = 37,748,736 B each
#   k, v: 1,024 rows x 4,608 B = 4,718,592 B each
#   gate, up: 28,672 rows x 4,608 B = 132,120,576 B each; down: 8,192 rows x (28,672 / 32 x 18 =
#   16,128 B) = 132,120,576 B
#   2 norms: 2 x 8,192 x 4 B = 65,536 B
#   a layer: 2 x 37,748,736 + 2 x 4,718,592 + 3 x 132,120,576 + 65,536 = 481,361,920 B
LAYER_Q4_0 = 481_361_920
EMBD_Q4_0 = 128_256 * 4_608          # token_embd, 591,003,648 B (input layer, on the CPU)
OUTPUT_Q4_0 = 128_256 * 6_720 + 8_192 * 4  # output (q6_k: 8,192 / 256 x 210 = 6,720 B a row) + output_norm
# = 861,880,320 + 32,768 = 861,913,088 B
# f16 KV at 8,192 cells: 8 x 128 x 2 B x 2 (K, V) x 8,192 = 32 MiB a layer.
KV_8K = 32 * MiB
COMPUTE, OVERHEAD = 1536 * MiB, 512 * MiB  # kvcalc's assumed per-GPU defaults (not modelled)


def _plan(**kw: Any) -> Any:
    return plan(PlanRequest(model=get_builtin(kw.pop("model", "llama-3-70b")), engine=kw.pop("engine", "llama.cpp"),
                            max_model_len=kw.pop("max_model_len", 8192), **kw))


def _dev(p: Any) -> dict[str, dict[str, Any]]:
    return {d["device"]: d for d in p.devices}


def test_layer_weights_add_up_to_the_total() -> None:
    m = get_builtin("llama-3-70b")
    lw = layer_weights(m, "q4_0", "bf16")
    assert lw is not None
    assert lw.layer_bytes == (LAYER_Q4_0,) * 80
    assert (lw.input_bytes, lw.output_bytes, lw.duplicated_bytes) == (EMBD_Q4_0, OUTPUT_Q4_0, 0)
    # untied: the per-layer split is the total checkpoint_weights gives (the final norm in "output").
    assert lw.total_bytes == checkpoint_weights(m, "q4_0", "bf16").bytes
    # a preset: the same sum as the whole-model figure, tensor by tensor.
    q4km = layer_weights(m, "q4_k_m", "bf16")
    assert q4km is not None and q4km.total_bytes == checkpoint_weights(m, "q4_k_m", "bf16").bytes


def test_tied_embeddings_are_loaded_twice() -> None:
    # models/llama.cpp:41-46 (and gemma2's loader alike): no output tensor -> token_embd again,
    # TENSOR_DUPLICATED, on the output layer's device. Gemma-2-9B: vocab 256,000 x hidden 3,584 in
    # bf16 = 1,835,008,000 B, once in the input layer, once more beside output_norm (3,584 x 2 B).
    m = get_builtin("gemma-2-9b")
    assert m.tie_word_embeddings
    lw = layer_weights(m, "bf16", "bf16")
    assert lw is not None
    assert lw.input_bytes == lw.duplicated_bytes == 256_000 * 3_584 * 2
    assert lw.output_bytes == 256_000 * 3_584 * 2 + 3_584 * 2
    # (the architecture's tensors, not the published count: Gemma-2's pre/post-feedforward norms are
    # not among kvcalc's weight_tensors, 42 x 2 x 3,584 x 2 B = 602,112 B short of 9,241,705,984 x 2)
    assert lw.total_bytes - lw.duplicated_bytes == checkpoint_weights(m, "bf16", "bf16").bytes - 602_112


def test_70b_q4_on_two_24gb_gpus_ts_3_2_ngl_60() -> None:
    # -ngl 60 -ts 3,2: i_gpu_start = 81 - 60 = 21, act = 60, split points 0.6, 1.0.
    # Layers 0..20 (21) on the CPU; (il - 21) / 60 < 0.6 for il - 21 <= 35: layers 21..56 (36) on
    # CUDA0; 57..79 (23) and the output layer ((80 - 21) / 60 = 0.98) on CUDA1.
    p = _plan(weight_dtype="q4_0", gpu_memory_bytes=22 * GiB, tp=2, n_gpu_layers=60, tensor_split=(3.0, 2.0))
    d = _dev(p)
    assert (d["CUDA0"]["layers"], d["CUDA1"]["layers"], d["CPU"]["layers"]) == (36, 23, 21)
    assert d["CUDA1"]["output_layer"] and not d["CUDA0"]["output_layer"]
    assert d["CUDA0"]["weights_bytes"] == 36 * LAYER_Q4_0                      # 17,329,029,120 B
    assert d["CUDA1"]["weights_bytes"] == 23 * LAYER_Q4_0 + OUTPUT_Q4_0        # 11,933,237,248 B
    assert d["CPU"]["weights_bytes"] == 21 * LAYER_Q4_0 + EMBD_Q4_0            # 10,699,603,968 B
    assert (d["CUDA0"]["kv_bytes"], d["CUDA1"]["kv_bytes"], d["CPU"]["kv_bytes"]) == (36 * KV_8K, 23 * KV_8K,
                                                                                      21 * KV_8K)
    # CUDA0: 17,329,029,120 + 1,207,959,552 + 2 GiB = 20,684,472,320 B of 22 GiB (23,622,320,128 B).
    assert d["CUDA0"]["total_bytes"] == 20_684_472_320 and d["CUDA0"]["free_bytes"] == 22 * GiB - 20_684_472_320
    assert d["CUDA0"]["compute_bytes"] == COMPUTE and d["CUDA0"]["overhead_bytes"] == OVERHEAD
    assert d["CPU"]["compute_bytes"] == 0 and p.host_bytes == 21 * LAYER_Q4_0 + EMBD_Q4_0 + 21 * KV_8K
    assert p.devices_fit is True and p.fits is True and p.device_short is None


def test_a_gpu_that_does_not_fit_is_named_with_its_numbers() -> None:
    # All layers, -ts 3,2: act 81, il / 81 < 0.6 for il <= 48: 49 layers on CUDA0:
    # 49 x 481,361,920 = 23,586,734,080 B of weights alone, more than 22 GiB (23,622,320,128 B) less
    # KV 49 x 32 MiB and 2 GiB of compute + overhead: CUDA0 is short by
    # 23,586,734,080 + 1,644,167,168 + 2,147,483,648 - 23,622,320,128 = 3,756,064,768 B.
    p = _plan(weight_dtype="q4_0", gpu_memory_bytes=22 * GiB, tp=2, tensor_split=(3.0, 2.0))
    d = _dev(p)
    assert d["CUDA0"]["layers"] == 49 and d["CUDA0"]["fits"] is False and d["CUDA1"]["fits"] is True
    assert d["CUDA0"]["free_bytes"] == -3_756_064_768
    assert p.devices_fit is False and p.fits is False
    assert p.device_short is not None and p.device_short.startswith("CUDA0 needs")
    assert "of 22.00 GiB" in p.device_short and p.binding_constraint.startswith("device memory: CUDA0")


def test_split_mode_none_and_no_kv_offload() -> None:
    # -sm none: every offloaded layer on CUDA0 (src/llama.cpp:288-301); -nkvo: all KV in host memory.
    p = _plan(weight_dtype="q4_0", kv_budget_bytes=GiB, n_gpu_layers=60, split_mode="none", no_kv_offload=True)
    d = _dev(p)
    assert d["CUDA0"]["layers"] == 59 and d["CUDA0"]["kv_bytes"] == 0 and d["CPU"]["kv_bytes"] == 80 * KV_8K
    assert d["CUDA0"]["fits"] is None and p.devices_fit is None  # --kv-budget alone: memory unknown


def test_split_mode_row_spreads_a_layer_over_the_gpus() -> None:
    # -sm row -ts 1,1 with every layer offloaded: each layer's weights half on each GPU; the KV stays
    # with the layer's device (il / 81 < 0.5: 41 layers on CUDA0).
    p = _plan(weight_dtype="q4_0", kv_budget_bytes=GiB, tp=2, split_mode="row", tensor_split=(1.0, 1.0))
    d = _dev(p)
    assert d["CUDA0"]["weights_bytes"] + d["CUDA1"]["weights_bytes"] == 80 * LAYER_Q4_0 + OUTPUT_Q4_0
    assert d["CUDA0"]["weights_bytes"] == 80 * (LAYER_Q4_0 // 2) + OUTPUT_Q4_0 // 2
    assert (d["CUDA0"]["kv_bytes"], d["CUDA1"]["kv_bytes"]) == (41 * KV_8K, 39 * KV_8K)


def test_tensor_split_longer_than_the_gpus_is_refused() -> None:
    from kvcalc.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="--tensor-split"):
        _plan(weight_dtype="q4_0", gpu="rtx-4090:2", tensor_split=(1.0, 1.0, 1.0))


def test_real_log_pr8035_reproduced_per_device(cli: Any) -> None:
    # llama_cpp_offload_split_llama3_70b_pr8035.log (a mid-2024 build): "offloaded 78/81 layers",
    # CUDA_Host KV 64.00 MiB, CUDA0 1472.00 MiB, CUDA1 1024.00 MiB at n_ctx 8192. That build's -ngl 78
    # put 78 repeating layers on the GPUs and the output layer on the CPU; today's counts the output
    # layer, so the same 78 repeating layers are -ngl 79. The split came from the GPUs' free memory
    # (not printed); -ts 4,3 gives the same layers: act 79, i_gpu_start 2, (il - 2) / 79 < 4/7 for
    # il - 2 <= 45: 46 layers on CUDA0 (46 x 32 = 1,472 MiB), 32 on CUDA1 (1,024 MiB), 2 on the host (64 MiB).
    text = (LOGS / "llama_cpp_offload_split_llama3_70b_pr8035.log").read_text()
    for line in ("CUDA_Host KV buffer size =    64.00 MiB", "CUDA0 KV buffer size =  1472.00 MiB",
                 "CUDA1 KV buffer size =  1024.00 MiB"):
        assert line in text
    res = cli("plan", "llama-3-70b", "--engine", "llama.cpp", "--gpu-memory", "15GiB", "--tp", "2", "--context",
              "8192", "-ngl", "79", "-ts", "4,3", "--weight-dtype", "q4_0", "--json")
    assert res.exit_code == 0, res.stderr
    d = {x["device"]: x for x in json.loads(res.stdout)["devices"]}
    assert {k: v["kv_bytes"] // MiB for k, v in d.items()} == {"CUDA0": 1472, "CUDA1": 1024, "CPU": 64}
    assert (d["CUDA0"]["layers"], d["CUDA1"]["layers"], d["CPU"]["layers"]) == (46, 32, 2)


def test_plan_table_names_the_device(cli: Any) -> None:
    res = cli("plan", "llama-3-70b", "--engine", "llama.cpp", "--gpu-memory", "22GiB", "--tp", "2", "--context",
              "8192", "-ts", "3,2", "--weight-dtype", "q4_0")
    assert res.exit_code == 0, res.stderr
    assert "Memory per device: fits NO" in res.stdout
    assert "Does not fit: CUDA0 needs" in res.stdout and "short" in res.stdout


def test_gguf_layers_by_name(tmp_path: Path) -> None:
    # A GGUF's tensors by name: blk.N.* to layer N, token_embd to the input layer, output_norm +
    # output to the output layer; without output.weight llama.cpp loads token_embd again there.
    pytest.importorskip("gguf")
    from tests.gguf_writer import write_gguf

    tensors: list[Any] = [("token_embd.weight", (10, 16), "f32"), ("blk.0.attn_q.weight", (16, 16), "f32"),
                          ("blk.1.attn_q.weight", (16, 16), "f32"), ("output_norm.weight", (16,), "f32")]
    path = tmp_path / "tiny.gguf"
    write_gguf(path, "llama", {}, tensors)
    lw = gguf_layer_weights(str(path), 2)
    # f32: token_embd 160 x 4 = 640 B; each attn_q 256 x 4 = 1,024 B; output_norm 64 B.
    assert (lw.input_bytes, lw.layer_bytes, lw.output_bytes, lw.duplicated_bytes) == (640, (1024, 1024), 704, 640)
