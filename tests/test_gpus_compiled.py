"""``kvcalc/data/gpus.json`` is ``gpus.yaml`` compiled (``python -m kvcalc.planner.gpus``): current,
and read without PyYAML."""

from __future__ import annotations

import json
import subprocess
import sys

from kvcalc.planner.gpus import COMPILED_PATH, _gpu_from_entry, all_gpus, compile_catalog


def test_compiled_catalog_is_current() -> None:
    """Regenerate with: python -m kvcalc.planner.gpus"""
    assert json.loads(COMPILED_PATH.read_text(encoding="utf-8")) == compile_catalog()


def test_catalog_reads_the_compiled_file_as_the_yaml_says() -> None:
    assert all_gpus() == [_gpu_from_entry(e) for e in compile_catalog()["gpus"]]


def test_plan_catalog_lookup_imports_no_yaml() -> None:
    code = ("import sys; from kvcalc.planner.gpus import get_gpu; g = get_gpu('h100'); "
            "print(g.usable_bytes, 'yaml' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1] == "False" and int(out[0]) > 0
