"""kvcalc bench on CPU with a tiny model: exact K/V projection counts (no timing asserts)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from kvcalc.errors import DoesNotFitError, InvalidRequestError
from kvcalc.show.bench import BenchConfig, memory_needed_bytes, projection_counts, run_bench

torch = pytest.importorskip("torch")

TINY = ["--layers", "1", "--d-model", "16", "--heads", "2", "--vocab", "32"]


def test_projection_counts_formula() -> None:
    # N with the cache, 1 + 2 + ... + N = N(N+1)/2 without; N = 1000: 500,500, ratio 500.5 (the articles' "500x").
    assert projection_counts(1) == (1, 1)
    assert projection_counts(4) == (4, 10)
    assert projection_counts(1000) == (1000, 500_500)


def test_bench_counts_projections_exactly() -> None:
    calls: list[tuple[int, int, str]] = []
    res = run_bench(BenchConfig(layers=2, d_model=16, heads=2, vocab=32, n_values=(1, 3, 10)),
                    progress=lambda done, total, label: calls.append((done, total, label)))
    # progress: 2 warm-up steps + (1 + 3 + 10) x 2 ways = 30 steps, reported after each generation
    assert calls[-1][:2] == (30, 30) and len(calls) == 6 and calls[0][2] == "N=1 with cache"
    got = [(r.n_tokens, r.kv_projections_cached, r.kv_projections_uncached,
            r.projection_ratio_num, r.projection_ratio_den) for r in res.rows]
    # N=3: cached 3; uncached 1 + 2 + 3 = 6; ratio 2 = (3+1)/2.  N=10: 10 vs 55, ratio 11/2.
    assert got == [(1, 1, 1, 1, 1), (3, 3, 6, 2, 1), (10, 10, 55, 11, 2)]
    assert all(r.tokens_match for r in res.rows)
    assert all(r.cached_s > 0 and r.uncached_s > 0 for r in res.rows)
    # parameters: emb 32x16 + pos 11x16 + block (4 x (16x16+16) + 2 LN x 32 + up 16x64+64 + down 64x16+16) x 2
    #   + final LN 32 + head 16x32
    block = 4 * (16 * 16 + 16) + 2 * 32 + (16 * 64 + 64) + (64 * 16 + 16)
    assert res.parameters == 32 * 16 + 11 * 16 + 2 * block + 32 + 16 * 32


def test_cli_json_and_table(cli: Any) -> None:
    res = cli("bench", *TINY, "--n", "2,5", "--json")
    assert res.exit_code == 0, res.stderr
    data = res.json()
    assert [(r["n_tokens"], r["kv_projections_cached"], r["kv_projections_uncached"]) for r in data["rows"]] == [
        (2, 2, 3), (5, 5, 15)]
    table = cli("bench", *TINY, "--n", "4")
    assert table.exit_code == 0, table.stderr
    # N = 4: 4 cached, 10 uncached, ratio 2.5
    row = next(line for line in table.stdout.splitlines() if re.match(r"^│\s+4 │", line))
    cells = [c.strip() for c in row.strip("│").split("│")]
    assert cells[:4] == ["4", "4", "10", "2.5"]


def test_plot(cli: Any, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "b.svg"
    res = cli("bench", *TINY, "--n", "2,4", "--plot", str(out))
    assert res.exit_code == 0, res.stderr
    svg = out.read_text()
    assert re.findall(r'id="series: ([^"]*)"', svg) == ["without KV cache", "with KV cache"]
    assert "ms per token" in svg and "tokens generated (N)" in svg


def test_refuses_beyond_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    import kvcalc.show.bench as bench

    cfg = BenchConfig(layers=1, d_model=16, heads=2, vocab=32, n_values=(8,))
    monkeypatch.setattr(bench, "_free_bytes", lambda torch, device: memory_needed_bytes(cfg) - 1)
    with pytest.raises(DoesNotFitError, match="free"):
        run_bench(cfg)


def test_bad_flags(cli: Any) -> None:
    with pytest.raises(InvalidRequestError):
        BenchConfig(d_model=10, heads=3).validate()
    res = cli("bench", "--d-model", "10", "--heads", "3")
    assert res.exit_code == 2 and res.stdout == "" and res.stderr.startswith("Error:")
    res = cli("bench", "--device", "tpu")
    assert res.exit_code == 2 and res.stdout == ""
    if not torch.cuda.is_available():
        res = cli("bench", *TINY, "--device", "cuda")
        assert res.exit_code == 1 and "cuda" in res.stderr  # a device problem: exit 1 (README)


def test_ctrl_c_exits_130(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import kvcalc.show.bench as bench

    def interrupt(*args: Any, **kwargs: Any) -> list[int]:
        raise KeyboardInterrupt

    monkeypatch.setattr(bench, "_generate", interrupt)
    before = torch.get_num_threads()
    res = cli("bench", *TINY, "--n", "4")
    assert res.exit_code == 130 and res.stdout == ""
    assert torch.get_num_threads() == before  # the finally block restored the thread count


def test_tokens_flag_and_free_memory_refusal(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import kvcalc.show.bench as bench
    from kvcalc.show.bench import doubling_to

    assert doubling_to(1000) == [32, 64, 128, 256, 512, 1000]
    res = cli("bench", *TINY, "--tokens", "3", "--json")
    assert [r["n_tokens"] for r in res.json()["rows"]] == [3]
    # N = 65,536 without the cache: scores alone are 4 heads x 65,536^2 x 2 x 4 B = 128 GiB; say 64 GiB are free.
    monkeypatch.setattr(bench, "_free_bytes", lambda torch, device: 64 << 30)
    huge = cli("bench", "--tokens", "65536")
    assert huge.exit_code == 1 and huge.stdout == "" and huge.stderr.startswith("Error:")
    assert "only 64.00 GiB is free" in huge.stderr
    assert cli("bench", "--tokens", "0").exit_code == 2
