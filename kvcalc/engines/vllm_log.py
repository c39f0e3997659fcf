"""vLLM's start-up log lines as ``check-log`` reads them, predicted from the same block arithmetic
(``engines/vllm_kv.py`` @ 001cabc1): the blocks, the token count (the 001cabc1 form and the newer
one), the concurrency, the fit error's needed memory and estimated max model length. Imported only
by ``VllmEngine.check_log``."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from kvcalc.dtypes import KVDtype
from kvcalc.engines.logcheck import Check, LogFacts, gib_range, num
from kvcalc.engines.vllm_kv import Layout, VllmKV, num_blocks_interval, vllm_kv
from kvcalc.specs import Spec
from kvcalc.units import GiB

if TYPE_CHECKING:
    from kvcalc.engines.vllm import VllmEngine
    from kvcalc.models import ModelConfig


def check_vllm_log(engine: VllmEngine, facts: LogFacts, model: ModelConfig, dtype: KVDtype, tp: int,
                bs: int | None) -> list[Check]:
    from kvcalc.layout import RankLayout

    mml = facts.max_model_len or model.max_position_embeddings
    layout = engine.vllm_layout(RankLayout(model, tp, 1), dtype, bs)
    specs = model.layer_specs
    avail_text = facts.first("available_gib") or facts.first("rest_gib")
    logged_blocks = int(num(facts.values["blocks"][0])) if "blocks" in facts.values else None
    logged_tokens = int(num(facts.values["kv_tokens"][0])) if "kv_tokens" in facts.values else None
    blocks_item = "blocks"
    if logged_blocks is None and logged_tokens is not None and len(layout.grouping.groups) == 1:
        logged_blocks = logged_tokens // layout.grouping.groups[0].spec.block_size
        blocks_item = "blocks (logged tokens / block size)"
    out: list[Check] = []
    if avail_text is not None:
        low, mid, high = gib_range(avail_text)
        r = vllm_kv(specs, dtype, mid, mml, tp=tp, block_size=bs, layout=layout)
        lo_b, hi_b = num_blocks_interval(low, high, r.block_bytes)
        if logged_blocks is not None:
            out.append(Check(item=blocks_item, logged=f"{logged_blocks:,}", predicted=f"{lo_b:,}..{hi_b:,}",
                             difference=f"{logged_blocks - r.num_blocks:+,} vs midpoint {r.num_blocks:,}",
                             matches=lo_b <= logged_blocks <= hi_b,
                             basis=f"{avail_text} GiB +-0.005 // {r.block_bytes:,} B per block ({r.version})"))
        if logged_tokens is not None:
            out.append(_tokens_check(facts, r, specs, dtype, layout, logged_tokens, (lo_b, hi_b), mml, tp, bs))
        if "fit_error" in facts.values:
            out += _fit_error_checks(facts, specs, dtype, layout, (low, mid, high), tp, bs)
    if "concurrency" in facts.values and avail_text is not None and logged_blocks is None:
        # No block count in the log (a hybrid model's newer-form token line): predict the
        # concurrency from the block range the logged memory allows.
        length, shown = facts.values["concurrency"]
        low, mid, high = gib_range(avail_text)
        r3 = vllm_kv(specs, dtype, mid, int(num(length)), tp=tp, block_size=bs, layout=layout)
        lo_b, hi_b = num_blocks_interval(low, high, r3.block_bytes)
        lo_c, hi_c = f"{lo_b / r3.blocks_per_request:.2f}", f"{hi_b / r3.blocks_per_request:.2f}"
        out.append(Check(item=f"Maximum concurrency at {int(num(length)):,} tokens", logged=f"{shown}x",
                         predicted=f"{lo_c}x..{hi_c}x" if lo_c != hi_c else f"{lo_c}x",
                         difference=f"{num(shown) - Decimal(f'{r3.max_concurrency:.2f}'):+.2f}",
                         matches=Decimal(lo_c) <= num(shown) <= Decimal(hi_c),
                         basis=f"{lo_b:,}..{hi_b:,} blocks / {r3.blocks_per_request:,} blocks per request"))
    if "concurrency" in facts.values and logged_blocks is not None:
        length, shown = facts.values["concurrency"]
        r2 = vllm_kv(specs, dtype, 0, int(num(length)), tp=tp, block_size=bs, layout=layout)
        bpr = layout.active[0].blocks_per_request(int(num(length)), r2.max_num_batched_tokens)
        value = logged_blocks / bpr
        out.append(Check(item=f"Maximum concurrency at {int(num(length)):,} tokens", logged=f"{shown}x",
                         predicted=f"{value:.2f}x", difference=f"{num(shown) - Decimal(f'{value:.2f}'):+.2f}",
                         matches=f"{value:.2f}" == f"{num(shown):.2f}",
                         basis=f"logged blocks {logged_blocks:,} / {bpr:,} blocks per request"))
    if avail_text is None and logged_blocks is not None:
        implied = logged_blocks * layout.active[0].page_size_bytes * max(layout.active[0].group_size, 1)
        out.append(Check(item="KV cache memory implied by the blocks", logged=f"{logged_blocks:,} blocks",
                         predicted=f"{implied / GiB:.2f} GiB", difference="-", matches=None,
                         basis="blocks x block bytes (the log gives no memory figure to compare)"))
    return out


def _tokens_check(facts: LogFacts, r: object, specs: tuple[Spec, ...], dtype: KVDtype, layout: Layout,
                  logged_tokens: int, blocks: tuple[int, int], mml: int, tp: int, bs: int | None) -> Check:
    """001cabc1 (_report_kv_cache_config): num_blocks // groups x block size. Newer vLLM
    (get_kv_cache_capacity, e.g. 0.33.0): int(num_blocks / blocks_per_request x L), L the max model
    length. Both agree for one group with L a multiple of the block size; the log is matched
    against either, and the check says which."""
    assert isinstance(r, VllmKV)
    lo_b, hi_b = blocks
    lo_t = lo_b // r.num_groups * r.token_block_size
    hi_t = hi_b // r.num_groups * r.token_block_size
    req_len = int(num(facts.values["concurrency"][0])) if "concurrency" in facts.values else mml
    bpr = r.blocks_per_request if r.max_model_len == req_len else vllm_kv(
        specs, dtype, r.available_bytes, req_len, tp=tp, block_size=bs, layout=layout).blocks_per_request
    lo_n, hi_n = (int(lo_b / bpr * req_len), int(hi_b / bpr * req_len)) if bpr else (0, 0)
    old_form = lo_t <= logged_tokens <= hi_t
    new_form = bool(bpr) and lo_n <= logged_tokens <= hi_n
    basis = "num_blocks // groups x block size (001cabc1 form)"
    predicted = f"{lo_t:,}..{hi_t:,}"
    if new_form and not old_form:
        basis = f"int(num_blocks / {bpr:,} blocks per request x {req_len:,}) (newer vLLM form)"
        predicted = f"{lo_n:,}..{hi_n:,}"
    elif not old_form:
        basis += f"; newer vLLM form int(num_blocks / {bpr:,} x {req_len:,}) gives {lo_n:,}..{hi_n:,}"
    return Check(item="GPU KV cache size (tokens)", logged=f"{logged_tokens:,}", predicted=predicted,
                 difference=f"{logged_tokens - r.kv_cache_tokens:+,}", matches=old_form or new_form,
                 basis=basis + ", from the logged KV memory")


def _fit_error_checks(facts: LogFacts, specs: tuple[Spec, ...], dtype: KVDtype, layout: Layout,
                      avail: tuple[int, int, int], tp: int, bs: int | None) -> list[Check]:
    low, mid, high = avail
    length, needed, _avail, est = facts.values["fit_error"]
    rr = vllm_kv(specs, dtype, mid, int(num(length)), tp=tp, block_size=bs, layout=layout)
    out = [Check(item="KV needed for max seq len (GiB)", logged=needed, predicted=f"{rr.needed_bytes / GiB:.2f}",
                 difference=f"{num(needed) - Decimal(rr.needed_bytes) / GiB:+.2f}",
                 matches=f"{rr.needed_bytes / GiB:.2f}" == f"{num(needed):.2f}",
                 basis="sum over groups of max_memory_usage_bytes (001cabc1)")]
    if est:
        pred = rr.estimated_max_model_len or 0
        lo_e = vllm_kv(specs, dtype, low, int(num(length)), tp=tp, block_size=bs,
                       layout=layout).estimated_max_model_len or 0
        hi_e = vllm_kv(specs, dtype, high, int(num(length)), tp=tp, block_size=bs,
                       layout=layout).estimated_max_model_len or 0
        out.append(Check(item="estimated maximum model length", logged=est, predicted=f"{lo_e:,}..{hi_e:,}",
                         difference=f"{int(num(est)) - pred:+,}", matches=lo_e <= int(num(est)) <= hi_e,
                         basis="binary search over the groups' usage (001cabc1)"))
    return out
