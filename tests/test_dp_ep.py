"""vLLM data parallel + expert parallel: a MoE model's weights per rank.

vllm 0.34.0 ``model_executor/layers/fused_moe/config.py``: with DP > 1 the MoE layers see
``dp x tp`` devices (``flatten_tp_across_dp_and_pcp``, :1143-1151); without
``--enable-expert-parallel`` each expert is TP-sharded over them, with it ``ep_size`` is that
flattened size and the expert TP is 1 (:1235-1285), whole experts placed ``E // ep`` per rank plus
one on the first ``E % ep`` ranks (``expert_map_manager.py:67``). Attention and dense weights keep
the TP split and are replicated over DP; each DP rank is an engine with its own KV pool.

Mixtral-8x7B (built-in): 46,702,792,704 parameters (published = computed), bf16 = 93,405,585,408 B.
Routed experts: 32 layers x 8 experts x 3 x 4096 x 14336 = 45,097,156,608 parameters =
90,194,313,216 B; the rest (attention, embeddings, norms, routers) 3,211,272,192 B.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from conftest import CliResult

from kvcalc.errors import InvalidRequestError
from kvcalc.planner.plan import Plan, PlanRequest, plan
from kvcalc.planner.weights import routed_expert_parameters
from kvcalc.registry import get_builtin

TOTAL = 93_405_585_408
ROUTED = 90_194_313_216
DENSE = TOTAL - ROUTED  # 3,211,272,192


def _plan(**kw: object) -> Plan:
    kw.setdefault("engine", "vllm")
    return plan(PlanRequest(model=get_builtin("mixtral-8x7b"), max_model_len=8192, **kw))  # type: ignore[arg-type]


def test_routed_share_from_the_architecture() -> None:
    assert routed_expert_parameters(get_builtin("mixtral-8x7b")) == 32 * 8 * 3 * 4096 * 14336 == 45_097_156_608
    assert routed_expert_parameters(get_builtin("llama-3.1-8b")) is None


def test_tp_only_is_unchanged() -> None:
    p = _plan(gpu="h100:2", tp=2)
    assert p.weights_per_gpu_bytes == TOTAL // 2 and p.replicas == 1


def test_dp_without_ep_shards_experts_over_dp_x_tp() -> None:
    # DP 2 x TP 2: dense 3,211,272,192 / 2 = 1,605,636,096; experts 90,194,313,216 / 4 = 22,548,578,304.
    p = _plan(gpu="h100:4", tp=2, data_parallel=2)
    assert p.weights_per_gpu_bytes == DENSE // 2 + ROUTED // 4 == 24_154_214_400
    assert (p.replicas, p.tp, p.data_parallel) == (2, 2, 2)


def test_dp_ep_whole_experts_uneven() -> None:
    # DP 3 x TP 1, EP 3: 8 experts -> 3, 3, 2 per rank; the largest holds 3/8 of every MoE layer:
    # 90,194,313,216 x 3 / 8 = 33,822,867,456, plus all 3,211,272,192 dense bytes = 37,034,139,648.
    p = _plan(gpu="h100:3", data_parallel=3, expert_parallel=True)
    assert p.tp == 1
    assert p.weights_per_gpu_bytes == DENSE + ROUTED * 3 // 8 == 37_034_139_648
    assert any("cdiv(8, 3) = 3 whole experts" in n for n in p.notes)


def test_ep_alone_over_tp() -> None:
    # TP 2 + EP (dp 1): ep_size 2, 4 experts each, as TP's half: the same bytes as TP-sharding.
    p = _plan(gpu="h100:2", tp=2, expert_parallel=True)
    assert p.weights_per_gpu_bytes == DENSE // 2 + ROUTED // 2


def test_kv_pool_is_a_tp_rank_s() -> None:
    # The KV per rank is that of a TP-2 layout: on the same per-GPU budget the block count matches TP 2 alone.
    a = _plan(kv_budget_bytes=2**30, gpu="h100:4", tp=2, data_parallel=2)
    b = _plan(kv_budget_bytes=2**30, gpu="h100:2", tp=2)
    assert a.num_blocks == b.num_blocks


def test_gpu_count_must_cover_dp() -> None:
    with pytest.raises(InvalidRequestError, match="dp x tp x pp = 4"):
        _plan(gpu="h100:2", tp=2, data_parallel=2)


def test_other_engines_refuse() -> None:
    with pytest.raises(InvalidRequestError, match="--data-parallel-size"):
        _plan(engine="sglang", gpu="h100:2", tp=1, data_parallel=2)


def test_weights_path_refused_when_the_split_matters() -> None:
    from kvcalc.planner.weights import WeightsEstimate, rank_weight_bytes

    w = WeightsEstimate(bytes=TOTAL, parameters=None, parameters_source="safetensors", dtype="as stored",
                        source="--weights: x")
    assert rank_weight_bytes(w, 8, tp=2, pp=1) == TOTAL // 2
    with pytest.raises(InvalidRequestError, match="routed experts"):
        rank_weight_bytes(w, 8, tp=2, pp=1, dp=2)


def test_cli(cli: Callable[..., CliResult]) -> None:
    r = cli("plan", "mixtral-8x7b", "--gpu", "h100:4", "--tp", "2", "--data-parallel-size", "2",
            "--enable-expert-parallel", "--context", "8192", "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["weights_per_gpu_bytes"] == DENSE // 2 + ROUTED // 4
    assert (data["data_parallel"], data["expert_parallel"]) == (2, True)
