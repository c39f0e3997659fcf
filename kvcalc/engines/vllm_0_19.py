"""vLLM 0.19.0-0.19.1: the engine of ``vllm@0.19``, the 0.20 engine with 0.19's rules
(``vllm_releases.Vllm019``). 0.19 shares 0.20's block model (001cabc1); what PR #38284 changed in
0.20.0 is undone here and nothing else:

* the default ``gpu_memory_utilization`` is 0.9 (0.19.x ``config/cache.py:41``), not 0.92;
* the CUDA-graph memory estimate is measured but not subtracted from the KV budget:
  ``VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS`` defaults to "0" (0.19.x ``envs.py:1654-1655``,
  applied only when set, ``v1/worker/gpu_worker.py:395-420``); 0.20.0 turned it on
  (``envs.py:1724-1726``), so ``vllm@0.20`` keeps the term.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from kvcalc.engines.vllm_0_20 import Vllm020Engine
from kvcalc.engines.vllm_releases import Vllm019, Vllm020

if TYPE_CHECKING:
    from kvcalc.engines.activation import Term
    from kvcalc.models import ModelConfig


class Vllm019Engine(Vllm020Engine):
    rules: ClassVar[Vllm020] = Vllm019()
    version = Vllm019.title
    default_fraction = Vllm019.default_gpu_memory_utilization
    source = (
        "vLLM 0.19.0-0.19.1 wheels: 0.20's paged blocks (001cabc1) with gpu_memory_utilization 0.9 and no "
        "CUDA-graph estimate in the budget (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS off); docs/engines.md"
    )

    def profile_terms(self, model: ModelConfig, *, tp: int, max_num_batched_tokens: int,
                      max_num_seqs: int | None) -> tuple[Term, ...]:
        """0.20's profile-run terms less the CUDA-graph estimate, which 0.19 does not subtract."""
        terms = super().profile_terms(model, tp=tp, max_num_batched_tokens=max_num_batched_tokens,
                                      max_num_seqs=max_num_seqs)
        if self.rules.subtracts_cudagraph_estimate:
            return terms
        return tuple(t for t in terms if t.name != "cudagraph")


ENGINE = Vllm019Engine()
