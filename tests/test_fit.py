"""``kvcalc fit``: the longest context for N users and the most users at L, per KV dtype, each
answer a boundary (it fits, one more does not); several models in one comparison table."""

from __future__ import annotations

import csv
import io
from typing import Any

from kvcalc.planner.fit import compare, fit
from kvcalc.planner.plan import PlanRequest, plan
from kvcalc.registry import get_builtin


def base(name: str = "llama-3.1-8b", **kw: Any) -> PlanRequest:
    return PlanRequest(model=get_builtin(name), gpu=kw.pop("gpu", "h100"), **kw)


def test_fit_answers_are_boundaries() -> None:
    f = fit(base())
    assert [r.kv_dtype for r in f.rows] == ["bf16", "fp8_e4m3"]
    for row, dtype in zip(f.rows, ("auto", "fp8"), strict=True):
        for users, ctx in row.longest_context.items():
            if row.context_limited_by_model[users]:
                assert ctx == 131072
                continue
            assert plan(base(kv_dtype=dtype, max_model_len=ctx, users=users, solve_tp=False)).users_fit
            assert not plan(base(kv_dtype=dtype, max_model_len=ctx + 1, users=users, solve_tp=False)).users_fit
        for ctx, users in row.max_users.items():
            assert users is not None and users >= 1
            assert plan(base(kv_dtype=dtype, max_model_len=ctx, users=users, solve_tp=False)).users_fit
            assert not plan(base(kv_dtype=dtype, max_model_len=ctx, users=users + 1, solve_tp=False)).users_fit
    # fp8 halves the cache: about twice the users (block rounding aside).
    assert f.rows[1].max_users[8192] in (2 * f.rows[0].max_users[8192], 2 * f.rows[0].max_users[8192] + 1)  # type: ignore[operator]


def test_hobbyist_numbers_by_hand() -> None:
    # Qwen2.5-7B with Q4_K_M weights (llama-quant.cpp rules, 4,676,603,904 B without the q/k/v
    # biases) on an RTX 4090 (usable 25,286,619,955 B), llama.cpp, q8_0 cache: 28 layers x 1,024
    # values x 34/32 = 30,464 B per token. Budget 25,286,619,955 - 4,676,603,904 - 1.5 GiB - 0.5 GiB
    # = 18,462,532,403 B; at 32k a user needs 32,768 x 30,464 = 998,244,352 B: 18 users.
    f = fit(base("qwen2.5-7b", gpu="rtx-4090", engine="llama.cpp", weight_dtype="q4_k_m"), kv_dtypes=("q8_0",))
    row = f.rows[0]
    assert f.weights_bytes == 4_676_603_904 and row.kv_budget_bytes == 18_462_532_403
    assert row.max_users[32768] == 18_462_532_403 // 998_244_352 == 18
    # The built-in config allows 131,072 tokens (max_position_embeddings): 3,992,977,408 B each, 4 users.
    assert row.max_users[131072] == 18_462_532_403 // (131_072 * 30_464) == 4
    assert row.longest_context[1] == 131072 and row.context_limited_by_model[1]
    # A context beyond the model's maximum has no answer.
    assert fit(base("qwen3-8b", gpu="rtx-4090"), contexts=(65536,)).rows[0].max_users[65536] is None


def test_comparison_three_models_one_command(cli) -> None:  # type: ignore[no-untyped-def]
    args = ("fit", "deepseek-v3", "llama-3.1-405b", "qwen3-32b", "--gpu", "h200:8", "--context", "32768")
    c = compare([base(m, gpu="h200:8") for m in ("deepseek-v3", "llama-3.1-405b", "qwen3-32b")], 32768)
    # Bytes per token by hand: DeepSeek-V3 61 x (512 + 64) x 2 = 70,272; Llama-3.1-405B
    # 126 x 2 x 8 x 128 x 2 = 516,096; Qwen3-32B 64 x 2 x 8 x 128 x 2 = 262,144.
    assert [r.bytes_per_token for r in c.rows] == [70_272, 516_096, 262_144]
    assert c.rows[0].weights_dtype == "fp8 block 128x128"
    for r in c.rows:
        p = plan(base(r.model, gpu="h200:8", max_model_len=32768))
        assert r.max_users == p.max_sequences and r.weights_bytes == p.weights_bytes and r.fits
    out = cli(*args, "--csv")
    assert out.exit_code == 0, out.stderr
    table = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [int(t["max_users"]) for t in table] == [r.max_users for r in c.rows]
    assert [int(t["weights_bytes"]) for t in table] == [r.weights_bytes for r in c.rows]
    md = cli(*args, "--markdown")
    lines = md.stdout.splitlines()
    assert md.exit_code == 0 and "| model | KV dtype |" in md.stdout
    assert sum(1 for line in lines if line.startswith("| deepseek-v3 |")) == 1
    assert cli(*args, "--json").json() == c.to_dict()


def test_fit_json_equals_core_and_csv(cli) -> None:  # type: ignore[no-untyped-def]
    out = cli("fit", "llama-3.1-8b", "--gpu", "h100", "--json")
    assert out.exit_code == 0 and out.json() == fit(base()).to_dict()
    rows = list(csv.DictReader(io.StringIO(cli("fit", "llama-3.1-8b", "--gpu", "h100", "--csv").stdout)))
    assert len(rows) == 2 * (3 + 4)


def test_fit_bad_input_is_one_error_line(cli) -> None:  # type: ignore[no-untyped-def]
    for args in (("fit", "--gpu", "h100"), ("fit", "llama-3.1-8b", "--gpu", "h100", "--users", "0"),
                 ("fit", "llama-3.1-8b", "--gpu", "h100", "--csv", "--json"),
                 ("fit", "llama-3.1-8b", "--gpu", "h100", "--kv-dtype", "fp9"),
                 ("fit", "llama-3.1-8b", "llama-2-7b", "--gpu", "h100", "--kv-dtype", "auto,fp8")):
        out = cli(*args)
        assert out.exit_code == 2 and out.stdout == "" and out.stderr.startswith("Error:"), (args, out.stderr)


def test_plan_with_several_models_prints_the_same_comparison(cli) -> None:  # type: ignore[no-untyped-def]
    models = ("deepseek-v3", "llama-3.1-405b", "qwen3-32b")
    for fmt in ("--csv", "--markdown", "--json"):
        via_plan = cli("plan", *models, "--gpu", "h200:8", "--context", "32768", fmt)
        via_fit = cli("fit", *models, "--gpu", "h200:8", "--context", "32768", fmt)
        assert via_plan.exit_code == 0 and via_plan.stdout == via_fit.stdout, via_plan.stderr
    one = cli("plan", "llama-2-7b", "--gpu", "h100", "--csv")
    assert one.exit_code == 2 and one.stdout == "" and "several models" in one.stderr


def test_context_takes_the_one_token_parser(cli) -> None:  # type: ignore[no-untyped-def]
    # --context 32k means 32 x 1024 = 32,768 tokens, as in plan and estimate (kvcalc.units.tokens_parser).
    args = ("fit", "llama-3.1-8b", "qwen3-32b", "--gpu", "h100", "--json")
    short, full = cli(*args, "--context", "32k"), cli(*args, "--context", "32768")
    assert short.exit_code == full.exit_code == 0 and short.stdout == full.stdout
    bad = cli(*args, "--context", "0")
    assert bad.exit_code == 2 and bad.stdout == "" and bad.stderr.startswith("Error:") and "--context" in bad.stderr
