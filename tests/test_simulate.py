"""kvcalc simulate: the arithmetic of padded / contiguous / paged / ideal reservation, on hand-derived cases."""

from __future__ import annotations

import random
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcalc.errors import InvalidRequestError
from kvcalc.registry import get_builtin
from kvcalc.show.simulate import LengthDist, parse_dist, simulate
from kvcalc.units import MiB

LLAMA2 = get_builtin("llama-2-7b")
# llama-2-7b: 32 layers x 32 KV heads x 128 head_dim x 2 (K and V) x 2 bytes (fp16) = 524,288 B = 0.5 MiB/token.
TOKEN = 32 * 32 * 128 * 2 * 2


def fixed(n: int) -> LengthDist:
    return parse_dist(f"fixed:{n}", "len")


def test_seed_002_preallocation_example() -> None:
    # Seed 002: reserve 4096 tokens x 0.5 MB = 2 GB, use 100 x 0.5 MB = 50 MB, "waste 1.95 GB (97.5 %)".
    # Exact: (4096 - 100) / 4096 = 3996 / 4096 = 999 / 1024 = 97.5586 %; the seed rounds 1.951 GiB to 1.95.
    sim = simulate(LLAMA2, requests=1, prompt_len=fixed(50), output_len=fixed(50), max_len=4096)
    c = sim.policy("contiguous")
    assert TOKEN == 512 * 1024 == MiB // 2
    assert (c.reserved_tokens, c.used_tokens) == (4096, 100)
    assert (c.reserved_bytes, c.used_bytes) == (4096 * TOKEN, 100 * TOKEN) == (2 << 30, 50 * MiB)
    assert c.waste == Fraction(999, 1024) and c.waste_percent == 97.5586
    # Paged, B = 16: cdiv(100, 16) = 7 blocks = 112 tokens; waste 12 / 112 = 3 / 28.
    p = sim.policy("paged")
    assert (p.reserved_tokens, p.waste) == (112, Fraction(3, 28))
    assert sim.paged_waste_tokens == 12 <= sim.paged_waste_bound_tokens == 15


def test_three_requests_by_hand() -> None:
    # Lengths (prompt + output), taken in order from lists: 10+5 = 15, 20+13 = 33, 6+10 = 16; B = 16; max_len 64.
    # padded: 3 x 33 = 99 slots; contiguous: 3 x 64 = 192; paged: 16 + 48 + 16 = 80; ideal: 64.
    dist_p = LengthDist("csv", values=(10, 20, 6), text="csv")
    dist_o = LengthDist("csv", values=(5, 13, 10), text="csv")
    sim = simulate(LLAMA2, requests=3, prompt_len=dist_p, output_len=dist_o, block_size=16, max_len=64,
                   budget_bytes=100 * TOKEN)
    got = {p.policy: (p.reserved_tokens, p.used_tokens, p.waste, p.fits_at_once) for p in sim.policies}
    assert got == {
        # fit: padded k=3 costs 3 x 33 = 99 tokens <= 100
        "padded": (99, 64, Fraction(35, 99), 3),
        # fit: floor(100 / 64) = 1
        "contiguous": (192, 64, Fraction(128, 192), 1),
        # fit: 16 + 48 + 16 = 80 <= 100 -> all 3
        "paged": (80, 64, Fraction(16, 80), 3),
        "ideal": (64, 64, Fraction(0), 3),
    }
    assert sim.paged_waste_tokens == 1 + 15 + 0 == 16 <= 3 * 15
    assert sim.longest_tokens == 33 and Fraction(sim.mean_tokens_num, sim.mean_tokens_den) == Fraction(64, 3)


def test_fit_boundary_n_fits_n_plus_1_does_not() -> None:
    # Paged, B=16, every request 100 tokens -> 112 tokens each. Budget 5 x 112 tokens fits 5; one byte less fits 4.
    for budget, want in ((5 * 112 * TOKEN, 5), (5 * 112 * TOKEN - 1, 4)):
        sim = simulate(LLAMA2, requests=10, prompt_len=fixed(60), output_len=fixed(40), max_len=4096,
                       budget_bytes=budget)
        assert sim.policy("paged").fits_at_once == want
        # contiguous: 4096 tokens each = 2 GiB; floor(budget / 2 GiB) = 0 here
        assert sim.policy("contiguous").fits_at_once == budget // (4096 * TOKEN)


def test_clamping_to_max_len() -> None:
    sim = simulate(LLAMA2, requests=2, prompt_len=fixed(100), output_len=fixed(50), max_len=120)
    assert sim.clamped == 2 and sim.policy("ideal").used_tokens == 240
    assert sim.policy("contiguous").waste == 0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), b=st.integers(1, 64), n=st.integers(1, 40))
def test_paged_waste_is_below_block_size_per_request(seed: int, b: int, n: int) -> None:
    sim = simulate(LLAMA2, requests=n, prompt_len=parse_dist("uniform:1,500", "p"),
                   output_len=parse_dist("lognormal:4,1", "o"), block_size=b, seed=seed, max_len=4096)
    assert 0 <= sim.paged_waste_tokens <= n * (b - 1)
    pad, cont, paged, ideal = (sim.policy(x) for x in ("padded", "contiguous", "paged", "ideal"))
    # ideal <= paged <= contiguous and ideal <= padded <= contiguous (tokens)
    assert ideal.reserved_tokens <= paged.reserved_tokens <= cont.reserved_tokens
    assert ideal.reserved_tokens <= pad.reserved_tokens <= cont.reserved_tokens
    # llama-2-7b is full attention: bytes are tokens x 524,288 exactly.
    assert all(p.reserved_bytes == p.reserved_tokens * TOKEN for p in sim.policies)


def test_distributions_are_seeded_and_documented(tmp_path: Path) -> None:
    rng = random.Random(7)
    want = [rng.randint(100, 200) for _ in range(5)]
    assert parse_dist("uniform:100,200", "p").sample(random.Random(7), 5) == want
    assert parse_dist("512", "p").sample(random.Random(0), 3) == [512, 512, 512]
    assert all(x >= 1 for x in parse_dist("normal:1,50", "p").sample(random.Random(0), 200))
    f = tmp_path / "lens.csv"
    f.write_text("length\n5\n7\n")
    assert parse_dist(f"csv:{f}", "p").sample(random.Random(0), 5) == [5, 7, 5, 7, 5]
    # A cell that str.isdigit() accepts but int() does not, and one past int()'s 4,300-digit limit.
    (tmp_path / "sup.csv").write_text("length\n5\n\u00b2\n")
    (tmp_path / "long.csv").write_text("9" * 5000 + "\n")
    for bad in ("fixed:0", "uniform:5,1", "gamma:1,2", "normal:1", "fixed:1.5", "csv:/nonexistent.csv",
                "lognormal:a,b", f"csv:{tmp_path / 'sup.csv'}", f"csv:{tmp_path / 'long.csv'}"):
        with pytest.raises(InvalidRequestError):
            parse_dist(bad, "--prompt-len")


def test_cli_json_equals_core(cli: Any) -> None:
    res = cli("simulate", "llama-2-7b", "--requests", "1", "--prompt-len", "50", "--output-len", "50",
              "--max-len", "4096", "--json")
    assert res.exit_code == 0, res.stderr
    core = simulate(LLAMA2, requests=1, prompt_len=fixed(50), output_len=fixed(50), max_len=4096)
    data = res.json()
    core_dict = core.to_dict()
    core_dict["prompt_dist"] = data["prompt_dist"] = core_dict["output_dist"] = data["output_dist"] = "x"
    assert data == core_dict


def test_cli_table_shows_seed_figure_and_published_comparison(cli: Any) -> None:
    res = cli("simulate", "llama-2-7b", "--requests", "1", "--prompt-len", "fixed:50", "--output-len", "fixed:50",
              "--max-len", "4096")
    assert res.exit_code == 0, res.stderr
    out = res.stdout
    # 2 GiB reserved, 50 MiB used, 1.95 GiB (2,095,054,848 B / 2^30 = 1.951) wasted, 97.56 %.
    assert "2.00 GiB" in out and "50.00 MiB" in out and "1.95 GiB" in out and "97.56 %" in out
    assert "12 tokens <= requests x (block_size - 1) = 1 x 15 = 15" in out
    # The vLLM blog / paper paragraph is the same on every run: only under --explain.
    assert "vLLM blog" not in out and "60-80 %" not in out
    explained = cli("simulate", "llama-2-7b", "--requests", "1", "--prompt-len", "fixed:50", "--output-len",
                    "fixed:50", "--max-len", "4096", "--explain")
    assert explained.exit_code == 0, explained.stderr
    assert explained.stdout.startswith(out.rstrip("\n").split("\n")[0])
    assert "60-80 %" in explained.stdout and "20.4-38.2 %" in explained.stdout


def test_cli_budget_and_errors(cli: Any) -> None:
    res = cli("simulate", "llama-2-7b", "--requests", "10", "--prompt-len", "60", "--output-len", "40",
              "--max-len", "4096", "--kv-budget", "280MiB", "--json")
    # 280 MiB = 560 tokens x 0.5 MiB = 5 requests of 112 tokens (paged); ideal 560 // 100 = 5.
    data = res.json()
    assert {p["policy"]: p["fits_at_once"] for p in data["policies"]} == {
        "padded": 5, "contiguous": 0, "paged": 5, "ideal": 5}
    bad = cli("simulate", "llama-2-7b", "--prompt-len", "weibull:1,2")
    assert bad.exit_code == 2 and bad.stdout == "" and bad.stderr.startswith("Error:")
    both = cli("simulate", "llama-2-7b", "--gpu", "h100", "--kv-budget", "1GiB")
    assert both.exit_code == 2 and both.stdout == ""


def test_cli_gpu_budget(cli: Any) -> None:
    gpus = pytest.importorskip("kvcalc.planner.gpus")
    g = gpus.get_gpu("h100")
    res = cli("simulate", "llama-2-7b", "--requests", "500", "--prompt-len", "100", "--output-len", "100",
              "--max-len", "4096", "--gpu", "h100", "--json")
    data = res.json()
    assert data["budget_bytes"] == g.usable_bytes
    # contiguous: floor(usable / (4096 x 0.5 MiB = 2 GiB))
    assert data["policies"][1]["fits_at_once"] == min(500, g.usable_bytes // (2 << 30))


def test_request_count_is_bounded(cli: Any) -> None:
    from kvcalc.show.simulate import MAX_REQUESTS

    res = cli("simulate", "llama-2-7b", "--requests", str(MAX_REQUESTS + 1))
    assert MAX_REQUESTS == 100_000 and res.exit_code == 2 and res.stdout == "" and res.stderr.startswith("Error:")
