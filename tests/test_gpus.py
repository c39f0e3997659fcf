"""The GPU catalog: lookups, the driver figures the issue quotes, and internal consistency."""

from __future__ import annotations

import pytest

from kvcalc.errors import InvalidRequestError, UnknownNameError
from kvcalc.planner.gpus import all_gpus, get_gpu, parse_gpu_spec
from kvcalc.units import GiB, MiB

REQUIRED = [
    "t4", "v100-16gb", "v100-32gb", "a10g", "l4", "l40s", "a100-40gb", "a100-40gb-pcie", "a100-80gb",
    "a100-80gb-pcie", "h100", "h100-pcie", "h100-nvl", "h200", "b200", "gb200", "rtx-3090", "rtx-4090",
    "rtx-5090", "mi250x", "mi300x", "mi325x",
]


@pytest.mark.parametrize("name", REQUIRED)
def test_issue_gpus_are_catalogued(name: str) -> None:
    assert get_gpu(name).name == name


def test_apple_unified_memory_class_present() -> None:
    assert sum(1 for g in all_gpus() if g.vendor == "apple") >= 2


def test_driver_totals_quoted_by_the_issue() -> None:
    # nvidia-smi: H100 80GB HBM3 81,559 MiB; H200 143,771 MiB; A100 80GB 81,920 MiB.
    assert get_gpu("h100").memory_bytes == 81_559 * MiB == 85_520_809_984
    assert get_gpu("h200").memory_bytes == 143_771 * MiB
    assert get_gpu("a100-80gb").memory_bytes == 81_920 * MiB == 85_899_345_920


def test_usable_totals_match_logged_gib() -> None:
    # vLLM issue #12330 logs total_gpu_memory (39.50GiB) on an A100-40GB:
    # 39.50 x 2**30 = 42,412,802,048 B exactly.
    assert get_gpu("a100-40gb").usable_bytes == 42_412_802_048
    # H100 logs show about 79.1-79.3 GiB.
    h100 = get_gpu("h100").usable_bytes
    assert int(79.1 * GiB) <= h100 <= int(79.3 * GiB)


@pytest.mark.parametrize("gpu", all_gpus(), ids=lambda g: g.name)
def test_every_entry_is_consistent_and_cited(gpu: object) -> None:
    from kvcalc.planner.gpus import Gpu

    assert isinstance(gpu, Gpu)
    assert 0 < gpu.usable_bytes <= gpu.memory_bytes
    assert gpu.bandwidth_bytes_per_s > 0
    assert gpu.source and gpu.usable_source
    assert gpu.vendor in {"nvidia", "amd", "apple"}
    for value in (gpu.memory_bytes, gpu.usable_bytes, gpu.bandwidth_bytes_per_s):
        assert isinstance(value, int)
    if gpu.fp8_flops is not None and gpu.bf16_flops is not None:
        assert gpu.fp8_flops >= gpu.bf16_flops


def test_aliases_and_case() -> None:
    assert get_gpu("H100-SXM") is get_gpu("h100")
    assert get_gpu("4090").name == "rtx-4090"
    assert get_gpu("a100_80gb").name == "a100-80gb"


def test_unknown_gpu_did_you_mean() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'h100'"):
        get_gpu("h10")


def test_parse_gpu_spec() -> None:
    gpu, count = parse_gpu_spec("h100:4")
    assert (gpu.name, count) == ("h100", 4)
    assert parse_gpu_spec("l4") == (get_gpu("l4"), 1)
    for bad in ("h100:0", "h100:x", "h100:", "h100:-2"):
        with pytest.raises(InvalidRequestError):
            parse_gpu_spec(bad)


def test_cli_gpus_json_and_table(cli: object) -> None:
    from collections.abc import Callable
    from typing import Any, cast

    run = cast(Callable[..., Any], cli)
    res = run("gpus", "--json")
    assert res.exit_code == 0, res.stderr
    data = res.json()
    assert data == {"gpus": [g.to_dict() for g in all_gpus()]}
    table = run("gpus")
    assert table.exit_code == 0 and "81559 MiB" in table.stdout and "79.19 GiB" in table.stdout
    bad = run("gpus", "--vendor", "intel")
    assert bad.exit_code == 2 and bad.stdout == "" and bad.stderr.startswith("Error:")
