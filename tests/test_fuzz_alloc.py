"""Commands that allocate real memory (``verify``, ``bench``) must refuse a request larger than
free memory before allocating anything. Each present command is run in a subprocess under an
address-space limit (so a missing guard fails the test instead of swapping the machine), with
a request of about 0.5 PB of KV cache: exit 1 or 2, one ``Error:`` line, nothing on stdout,
within seconds. Skipped for commands not (yet) registered."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from test_fuzz_cli import COMMANDS, Command

ADDRESS_SPACE_LIMIT_BYTES = 8 << 30
"""8 GiB of address space: room for python + torch CPU, far below the request."""

HUGE_INTS = {"seq_len": "1000000000", "context": "1000000000", "max_model_len": "1000000000",
             "batch": "1000", "users": "1000",
             "tokens": "65536", "d_model": "65536", "layers": "256", "vocab": "65536"}
"""Within each flag's own limit, far past memory: verify llama-2-7b at 524,288 bytes/token x
10**9 tokens x 1,000 sequences = 5.2 x 10**17 bytes; bench at its largest N, d_model and depth
(65,536 tokens x 65,536 wide x 256 layers of K and V in fp32 alone is 2 x 4 x 2**40 bytes = 8 TiB)."""


def _argv(cmd: Command) -> list[str]:
    argv = list(cmd.path)
    for p in cmd.params:
        if p.positional and p.name == "model":
            argv.append("llama-2-7b")
        elif p.kind == "int" and p.name in HUGE_INTS and not (cmd.path == ("verify",) and p.name == "layers"):
            argv += [p.opts[0], HUGE_INTS[p.name]]
        elif p.kind == "str" and p.name in ("device",):
            argv += [p.opts[0], "cpu"]
        elif p.kind == "str" and any(w in p.name for w in ("memory", "size", "budget")):
            argv += [p.opts[0], "1000TiB"]
        elif p.required and p.positional:
            argv.append("llama-2-7b")
    return argv


def _limit_memory() -> None:  # runs in the child before exec
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT_BYTES, ADDRESS_SPACE_LIMIT_BYTES))


ALLOCATORS = [c for c in COMMANDS if c.allocates]


@pytest.mark.skipif(not ALLOCATORS, reason="no verify/bench command registered yet")
@pytest.mark.parametrize("cmd", ALLOCATORS or [None], ids=lambda c: "-".join(c.path) if c else "none")
def test_huge_allocation_is_refused(cmd: Any) -> None:
    argv = _argv(cmd)
    env = {k: v for k, v in os.environ.items() if k != "KVCALC_DEBUG"}
    proc = subprocess.run([sys.executable, "-m", "kvcalc", *argv], capture_output=True, text=True,
                          timeout=120, preexec_fn=_limit_memory, env=env)
    assert proc.returncode in (1, 2), (argv, proc.returncode, proc.stderr[-800:])
    assert proc.stdout == "", argv
    assert proc.stderr.count("Error:") == 1 and "Traceback" not in proc.stderr, proc.stderr[-800:]
    assert "internal error" not in proc.stderr and "out of memory while" not in proc.stderr, proc.stderr
    # Refused by the free-memory check (not by a flag's range): the message says what is free.
    assert "free" in proc.stderr or "available" in proc.stderr, proc.stderr
