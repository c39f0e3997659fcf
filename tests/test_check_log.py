"""`kvcalc check-log`: the older samples (tests/fixtures/logs/README.md) and the CLI contract.
The real-log corpus is tested in tests/test_startup_log.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kvcalc.engines.loglines import read_log
from kvcalc.engines.startup_log import LogCheck, check_log
from kvcalc.errors import InvalidRequestError
from kvcalc.registry import load_model

LOGS = Path(__file__).parent / "fixtures" / "logs"


def by_item(result: LogCheck) -> dict[str, Any]:
    return {c.item: c for c in result.checks}


def test_v0_lines_issue_12330() -> None:
    """The figures of vllm#12330 (A100-40GB, Llama-3-8B): 39.50 x 0.90 - 14.96 - 0.10 - 9.37 =
    11.12 GiB, inside the interval the 2-decimal utilization allows; 11.115..11.125 GiB over 2 MiB
    blocks = 5,690..5,696, logged 5,691; 5,691 x 16 / 8,192 = 11.115 -> "11.12x"."""
    r = check_log(LOGS / "vllm_v0_llama3_8b_a100_40gb.log")
    assert (r.engine, r.model_resolved, r.max_model_len, r.tp, r.version) == ("vllm", "llama-3-8b", 8192, 1,
                                                                              "0.6.6.post1")
    checks = by_item(r)
    assert checks["KV cache memory (GiB)"].matches
    assert checks["blocks"].predicted == "5,690..5,696" and checks["blocks"].matches
    assert checks["Maximum concurrency at 8,192 tokens"].predicted == "11.12x"
    assert r.all_match


def test_v1_early_lines_pr_12569() -> None:
    reading = read_log((LOGS / "vllm_v1_early_llama31_70b.log").read_text())
    assert reading.config("max_model_len") == "2048" and reading.found["blocks"][0].groups[0] == "1381"
    r = check_log(LOGS / "vllm_v1_early_llama31_70b.log", load_model("llama-3.1-70b"))
    # 1,381 x 16 / 2,048 = 10.789 -> "10.79x", as logged.
    c = by_item(r)["Maximum concurrency at 2,048 tokens"]
    assert (c.logged, c.predicted, c.matches) == ("10.79x", "10.79x", True)
    # Without a model the log's name (a w8a8 checkpoint) is not built in: said, not guessed.
    assert "not a built-in model" in check_log(LOGS / "vllm_v1_early_llama31_70b.log").notes[0]


def test_newer_vllm_one_line_format() -> None:
    """vLLM 0.33.0 (printed) logs tokens as int(num_blocks / blocks per request x L) on one line.
    Gemma-2-27B (a float32 config vLLM runs in bf16) at 50.0 GiB: pages of 16 x 16 x 256 x 2 =
    131,072 B, two groups of 23 layers -> 3,014,656 B a block; 49.995..50.005 GiB -> 17,806..17,810
    blocks; one 8,192-token request takes 512 + cdiv(min(4095 + 2 x 8192, 8192), 16) + 1 = 1,025;
    int(17,808 / 1,025 x 8,192) = 142,325 tokens, 17.37x; compared against the 0.33 rules."""
    r = check_log(LOGS / "vllm_0_33_gemma2_27b_synthetic.log")
    assert r.model_resolved == "gemma-2-27b" and r.rules == "printed v0.33.0: 0.33 rules (0.31.0-0.33.0)"
    checks = by_item(r)
    tokens = checks["GPU KV cache size (tokens)"]
    assert tokens.matches and "1,025 blocks a request" in tokens.basis
    assert checks["Maximum concurrency at 8,192 tokens"].matches
    assert r.all_match


def test_fit_error_line() -> None:
    reading = read_log((LOGS / "vllm_v1_fit_error.log").read_text())
    assert reading.found["fit_error"][0].groups == ("models's", "221000", "10.12", "5.59", "122080")
    assert check_log(LOGS / "vllm_v1_fit_error.log").max_model_len == 221_000


def test_cli_check_log(cli: Any) -> None:
    res = cli("check-log", str(LOGS / "vllm_v0_llama3_8b_a100_40gb.log"), "--json")
    assert res.exit_code == 0, res.stderr
    assert res.json() == check_log(LOGS / "vllm_v0_llama3_8b_a100_40gb.log").to_dict()
    assert res.json()["compared"] == 4 and res.json()["not_compared"] == 0
    table = cli("check-log", str(LOGS / "vllm_v0_llama3_8b_a100_40gb.log"))
    assert "5,690..5,696" in table.stdout and "11.12x" in table.stdout
    assert "compared against: printed v0.6.6.post1" in table.stdout


def test_cli_lists_what_it_cannot_compare(cli: Any) -> None:
    res = cli("check-log", str(LOGS / "vllm_v1_fit_error.log"), "--json")
    data = res.json()
    assert res.exit_code == 0 and data["checks"] and data["all_match"] is False and data["compared"] == 0


@pytest.mark.parametrize("line", ["# GPU blocks: " + "7" * 5000, "Maximum concurrency for 0 tokens per request: 1.00x"])
def test_cli_hostile_numbers(tmp_path: Path, cli: Any, line: str) -> None:
    """issue 14: one Error line naming the log line, exit 1, nothing on stdout, no traceback."""
    p = tmp_path / "vllm.log"
    p.write_text(line + "\n")
    res = cli("check-log", str(p))
    assert res.exit_code == 1 and res.stdout == ""
    assert res.stderr.startswith("Error:") and "line 1" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr) < 400


def test_not_a_log(tmp_path: Path, cli: Any) -> None:
    empty = tmp_path / "x.log"
    empty.write_text("hello\n")
    with pytest.raises(InvalidRequestError):
        check_log(empty)
    res = cli("check-log", str(tmp_path / "missing.log"))
    assert res.exit_code == 2 and res.stdout == "" and res.stderr.startswith("Error:")
