"""vLLM 0.31.0-0.33.0: the engine of ``vllm@0.33``, the 0.20 engine with 0.33's rules
(``vllm_releases.Vllm033``; every change with the wheel's file and line in ``docs/engines.md`` §1):

* the fit check and the longest-context estimate hold back the null block (one block's bytes);
* sliding-window and chunked-local layers keep ``max_in_flight_tokens = (pp + 1) x
  max_num_batched_tokens`` past their window (async scheduling, on by default);
* a Mamba / linear-attention layer reserves 3 state pages a request ("align" mode: hybrid models
  get prefix caching by default);
* the logged token figure is ``int(concurrency x max_model_len)``, printed on one line with the
  concurrency; the fit error says "model's".
"""

from __future__ import annotations

from typing import ClassVar

from kvcalc.engines.vllm_0_20 import Vllm020Engine
from kvcalc.engines.vllm_releases import Vllm020, Vllm033


class Vllm033Engine(Vllm020Engine):
    rules: ClassVar[Vllm020] = Vllm033()
    version = Vllm033.title
    served_release = "vLLM 0.33.0"
    """The architecture table read from 0.33.0 (used for 0.31-0.33; ``kvcalc.engines.served``)."""
    source = (
        "vLLM 0.31.0-0.33.0 wheels: 0.20's paged blocks with the null block held back in the fit check, "
        "sliding layers cdiv(min(W-1+(pp+1)x chunk, L), B)+1 blocks, Mamba align mode (3 pages), MLA block by "
        "GPU backend; docs/engines.md"
    )


ENGINE = Vllm033Engine()
