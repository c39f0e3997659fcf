"""``--gpu auto``: a fake ``nvidia-smi`` on PATH prints the ``--query-gpu`` CSV of an 8 x H100 node
(idle) and of a node where other processes hold memory; the plan uses the memory it reported.

The CSV is in the format nvidia-smi prints for ``--query-gpu=index,uuid,name,memory.total,
memory.reserved,memory.used,memory.free --format=csv,noheader,nounits`` (an H100 80GB HBM3 reports
81,559 MiB total, 469 MiB reserved: 81,090 MiB = 79.19 GiB is what torch's mem_get_info and vLLM
see). It was written for this test, not captured on a real node (this project's test machines have
no GPU)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kvcalc.errors import InvalidRequestError
from kvcalc.planner.localgpu import parse_nvidia_smi, visible
from kvcalc.planner.plan import PlanRequest, plan
from kvcalc.registry import get_builtin
from kvcalc.units import GiB, MiB

UUID = "GPU-5c6c8d52-1a9e-2b3f-7c1d-0e4f5a6b7c8"
IDLE = "".join(f"{i}, {UUID}{i}, NVIDIA H100 80GB HBM3, 81559, 469, 4, 81086\n" for i in range(8))
# GPUs 2 and 5 share the node with another job holding 20,480 MiB each.
BUSY = "".join(
    f"{i}, {UUID}{i}, NVIDIA H100 80GB HBM3, 81559, 469, {20484 if i in (2, 5) else 4}, "
    f"{60606 if i in (2, 5) else 81086}\n" for i in range(8))
USABLE = (81559 - 469) * MiB  # 85,029,027,840 B


def fake_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, csv: str, old_driver: bool = False) -> None:
    data = tmp_path / "smi.csv"
    data.write_text(csv)
    script = tmp_path / "nvidia-smi"
    old = ('case "$1" in *memory.reserved*) echo \'Field "memory.reserved" is not a valid field to query.\' >&2; '
           'exit 2;; esac\n' if old_driver else "")
    # The old-driver CSV has no reserved column: drop the 5th field.
    body = f"cut -d, -f1-4,6- {data}\n" if old_driver else f"cat {data}\n"
    script.write_text("#!/bin/sh\n" + old + body)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def req(name: str = "llama-3.1-70b", **kw: object) -> PlanRequest:
    return PlanRequest(model=get_builtin(name), gpu="auto", max_model_len=8192, **kw)  # type: ignore[arg-type]


def test_idle_node_plans_like_eight_h100(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # vLLM 0.20's rules: a fraction of the total, checked against the free memory at start-up.
    fake_smi(tmp_path, monkeypatch, IDLE)
    p = plan(req(engine="vllm@0.20"))
    assert p.gpu == "h100" and p.gpu_count == 8 and p.tp == 8 and p.fits
    same = plan(PlanRequest(model=get_builtin("llama-3.1-70b"), gpu="h100:8", gpu_memory_bytes=USABLE,
                            max_model_len=8192, engine="vllm@0.20"))
    assert (p.kv_budget_bytes, p.num_blocks, p.max_sequences) == (same.kv_budget_bytes, same.num_blocks,
                                                                  same.max_sequences)
    # vLLM: ceil(85,029,027,840 x 0.92) = 78,226,705,613 B requested, as read from nvidia-smi.
    assert p.budget["requested_bytes"] == -(-USABLE * 92 // 100) == 78_226_705_613
    assert sum("total 79.65 GiB, free 79.19 GiB (nvidia-smi)" in n for n in p.notes) == 8


def test_busy_node_vllm_refuses_with_both_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_smi(tmp_path, monkeypatch, BUSY)
    p = plan(req(engine="vllm@0.20"))
    assert not p.fits and p.max_sequences == 0
    # free 60,606 MiB = 59.19 GiB < 0.92 x 79.19 GiB = 72.85 GiB
    assert p.reason is not None and "free memory on GPU 2 (59.19 GiB of 79.19 GiB)" in p.reason
    assert "(0.92, 72.85 GiB)" in p.reason and "at most 0.747" in p.reason  # 60,606 / 81,090 = 0.7473...
    ok = plan(req(engine="vllm@0.20", fraction="0.74"))
    assert ok.fits and ok.budget["requested_bytes"] == -(-USABLE * 74 // 100)


def test_busy_node_vllm_0_34_starts_and_sizes_from_free_memory(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # vLLM 0.34 (the default): the extensible KV cache skips the start-up check (v1/worker/utils.py:783-786)
    # and sizes the cache from the memory it finds, so the busy node starts, its tightest GPU binding.
    fake_smi(tmp_path, monkeypatch, BUSY)
    p = plan(req())
    assert p.gpu_count == 8 and "would not start" not in (p.reason or "")
    free = 60606 * MiB  # GPU 2: what is free binds every rank's pool
    assert p.budget["total_bytes"] == free
    same = plan(PlanRequest(model=get_builtin("llama-3.1-70b"), gpu="h100:8", gpu_memory_bytes=free,
                            max_model_len=8192))
    assert (p.kv_budget_bytes, p.num_blocks, p.fits) == (same.kv_budget_bytes, same.num_blocks, same.fits)
    assert p.fits


def test_busy_node_sglang_sizes_from_free_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_smi(tmp_path, monkeypatch, BUSY)
    p = plan(req(engine="sglang", fraction="0.8"))
    # SGLang: (free 60,606 MiB - non-torch 512 MiB) x 0.8 - weights/8, on the GPU with least free.
    free = 60606 * MiB
    weights_per_gpu = -(-(p.weights_bytes or 0) // 8)
    assert p.budget["total_bytes"] == free
    assert p.kv_budget_bytes == (free - 512 * MiB) * 8 // 10 - weights_per_gpu
    assert p.fits


def test_cuda_visible_devices_and_old_driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_smi(tmp_path, monkeypatch, IDLE, old_driver=True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    p = plan(req("llama-3.1-8b", engine="vllm@0.20"))  # 0.20 budgets from the total
    assert p.gpu_count == 2 and p.tp == 2
    # No memory.reserved column on old drivers: the driver total is all kvcalc can read.
    assert p.budget["total_bytes"] == 81559 * MiB
    gpus = parse_nvidia_smi(IDLE)
    assert [g.index for g in visible(gpus, f"{UUID}5,7,x,0")] == [5, 7]  # CUDA stops at "x"
    assert visible(gpus, "") == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(InvalidRequestError, match="no GPU is visible"):
        plan(req())


def test_cli_json_gpu_count_and_error_without_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   cli) -> None:  # type: ignore[no-untyped-def]
    fake_smi(tmp_path, monkeypatch, IDLE)
    out = cli("plan", "llama-3.1-70b", "--gpu", "auto", "--context", "8192", "--json")
    assert out.exit_code == 0 and out.json()["gpu_count"] == 8
    out = cli("fit", "llama-3.1-70b", "--gpu", "auto", "--json")
    assert out.exit_code == 0 and out.json()["gpu_count"] == 8
    bad = tmp_path / "bad" / "nvidia-smi"
    bad.parent.mkdir()
    bad.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the driver' >&2\n"
                   "exit 9\n")
    bad.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bad.parent}:/usr/bin:/bin")
    out = cli("plan", "llama-3.1-70b", "--gpu", "auto")
    assert out.exit_code == 1 and out.stdout == "" and "nvidia-smi exited 9" in out.stderr


def test_gib_figures_are_exact() -> None:
    assert parse_nvidia_smi(IDLE)[0].free_bytes == 81086 * MiB and 81090 * MiB * 100 // GiB == 7918


def test_nvml_when_no_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No nvidia-smi on PATH: NVML through nvidia-ml-py (here a stand-in module with its API:
    nvmlInit, nvmlDeviceGetCount, ...GetHandleByIndex, ...GetMemoryInfo(version=nvmlMemory_v2))."""
    import sys
    import types

    class Mem:
        def __init__(self, i: int) -> None:
            self.total, self.reserved = 81559 * MiB, 469 * MiB
            self.used = (20484 if i == 1 else 4) * MiB
            self.free = self.total - self.reserved - self.used

    fake = types.ModuleType("pynvml")
    fake.nvmlMemory_v2 = 2  # type: ignore[attr-defined]
    fake.nvmlInit = lambda: None  # type: ignore[attr-defined]
    fake.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    fake.nvmlDeviceGetCount = lambda: 2  # type: ignore[attr-defined]
    fake.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    fake.nvmlDeviceGetMemoryInfo = lambda h, version=1: Mem(h)  # type: ignore[attr-defined]
    fake.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"  # type: ignore[attr-defined]
    fake.nvmlDeviceGetUUID = lambda h: f"{UUID}{h}"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    from kvcalc.planner.localgpu import probe

    gpus = probe()
    assert [g.source for g in gpus] == ["NVML (nvidia-ml-py)"] * 2
    assert gpus[1].free_bytes == 60606 * MiB and gpus[0].usable_total_bytes == USABLE
    p = plan(req("llama-3.1-8b", engine="sglang", fraction="0.8"))
    assert p.budget["total_bytes"] == 60606 * MiB and p.gpu_count == 2


def test_fit_reads_the_gpus_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_smi(tmp_path, monkeypatch, IDLE)
    calls = tmp_path / "calls"
    script = tmp_path / "nvidia-smi"
    script.write_text(script.read_text().replace("#!/bin/sh\n", f"#!/bin/sh\necho x >> {calls}\n", 1))
    from kvcalc.planner.fit import fit

    f = fit(req("llama-3.1-8b"))
    assert f.gpu_count == 8 and len(f.rows) == 2
    assert calls.read_text().count("x") == 1  # one reading for the 14 plans
