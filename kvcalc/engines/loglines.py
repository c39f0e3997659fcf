"""What engines print at start-up: every KV-cache line kvcalc reads, per engine and generation.

The forms, with the release and file:line each comes from, are listed in ``docs/engines.md`` §2-4.
Reading is separate from checking (``kvcalc.engines.startup_log``): this module turns a log into
figures exactly as printed (strings), the engine, the version the log prints (if any) and the
generation its line forms imply; it never guesses a figure the log does not print.

Numbers are read as printed. A number longer than ``MAX_DIGITS`` digits or a request length of 0
is not a log an engine wrote: it is refused with the line that carries it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from kvcalc.errors import InvalidConfigError

MAX_DIGITS = 30
"""More digits than any figure an engine prints (a 2**64 byte count has 20)."""

_N = r"([0-9]+(?:,[0-9]{3})*(?:\.[0-9]+)?)"
"""A printed number: digits with optional thousands separators (so "834615, K size" stops at the
comma) and decimals; length is checked when it is read (``number``)."""
_GIB = _N + r"\s*GiB"
_GB = _N + r"\s*GB"

LINE_PATTERNS: dict[str, re.Pattern[str]] = {
    # vLLM: version and configuration.
    "vllm_version": re.compile(r"Initializing an? (?:V1 )?LLM engine \(v([0-9][^) ]*)\)"),
    "vllm_server_version": re.compile(r"vLLM API server version ([0-9][\w.+-]*)"),
    "model_cfg": re.compile(r"\bmodel='([^']+)'|'model': '([^']+)'"),
    "max_seq_len": re.compile(r"max_seq_len=([0-9]+)|'max_model_len': ([0-9]+)"),
    "tp_cfg": re.compile(r"tensor_parallel_size=([0-9]+)|'tensor_parallel_size': ([0-9]+)"),
    "kv_dtype_cfg": re.compile(r"kv_cache_dtype=([A-Za-z0-9_]+)|'kv_cache_dtype': '([A-Za-z0-9_]+)'"),
    "block_cfg": re.compile(r"'block_size': ([0-9]+)"),
    # vLLM 0.11+ config line (``decode_context_parallel_size=N``) or non-default args dict.
    "dcp_cfg": re.compile(r"decode_context_parallel_size=([0-9]+)|'decode_context_parallel_size': ([0-9]+)"),
    "page_cfg": re.compile(r"page_size=([0-9]+)"),
    # vLLM V0 0.6.4 (worker.py:232-243): one line.
    "v0_oneline": re.compile(
        r"Memory profiling results: total_gpu_memory=" + _N + r"\s*GiB.*?peak_torch_memory=" + _N
        + r"\s*GiB.*?non_torch_memory=" + _N + r"\s*GiB kv_cache_size=" + _N
        + r"\s*GiB gpu_memory_utilization=" + _N, re.IGNORECASE),
    # vLLM V0 0.6.5 (PR #10511): a table, one figure a line.
    "v0_table_total": re.compile(r"total_gpu_memory\s+" + _GIB),
    "v0_table_util": re.compile(r"gpu_memory_utilization\s+" + _N + r"\s*$"),
    "v0_table_can_use": re.compile(r"the current vLLM instance can use\s+" + _GIB),
    "v0_table_weights": re.compile(r"model weights take\s+" + _GIB + r"\s*$"),
    "v0_table_non_torch": re.compile(r"non_torch_memory\s+" + _GIB),
    "v0_table_activation": re.compile(r"PyTorch activation peak memory\s+" + _GIB),
    "v0_table_kv": re.compile(r"available_kv_cache_memory\s+" + _GIB),
    # vLLM V0 0.7-0.10 (worker.py): two budget lines.
    "v0_budget": re.compile(r"total_gpu_memory \(\s*" + _GIB + r"\) x gpu_memory_utilization \(\s*" + _N
                            + r"\) = " + _GIB),
    "v0_parts": re.compile(r"model weights take " + _GIB + r"; non_torch_memory takes " + _GIB
                           + r"; PyTorch activation peak memory takes " + _GIB
                           + r"; the rest of the memory reserved for KV Cache is " + _GIB),
    # vLLM V0 executor / early V1 kv_cache_utils: blocks ("# CPU blocks" follows only in V0).
    "blocks": re.compile(r"(?:#\s*)?(?:GPU|CUDA|cuda|gpu) blocks:\s*" + _N + r"(, # CPU blocks)?"),
    # vLLM V1.
    "available": re.compile(r"Available KV cache memory:\s*" + _GIB),
    "tokens": re.compile(r"(?:\b([A-Z]+(?: \+ host)?) )?KV cache size:\s*" + _N + r"\s*tokens"
                         r"(?:, Maximum concurrency for\s*" + _N + r"\s*tokens per request:\s*" + _N + "x)?"),
    "concurrency": re.compile(r"^(?!.*KV cache size).*Maximum concurrency for\s*" + _N
                              + r"\s*tokens per request:\s*" + _N + "x"),
    "advisory": re.compile(
        r"Free memory on device \(" + _N + "/" + _N + r" GiB\) on startup\. Desired GPU memory utilization is \("
        + _N + ", " + _N + r" GiB\)\. Actual usage is (.*?)\. Replace gpu_memory_utilization config with "
        r"`--kv-cache-memory=" + _N + r"` \(" + _N + r" GiB\) to fit into requested memory, or "
        r"`--kv-cache-memory=" + _N + r"` \(" + _N + r" GiB\) to fully utilize gpu memory\. "
        r"Current kv cache memory in use is " + _N + " GiB"),
    "warmup": re.compile(r"Memory after warmup: " + _GIB + r" free, " + _GIB + r" committed to the KV cache, .*?; "
                         + _N + r" KV cache blocks \(" + _GIB + r"\) fit within the requested " + _GIB),
    "extended": re.compile(r"Extended KV cache to " + _N + r" blocks \(" + _GIB + r"\)"),
    # SGLang (memory_pool.py): "GB" there is GiB (GB = 1024 ** 3).
    "sglang_version": re.compile(r"[Ss][Gg][Ll]ang version:? v?([0-9][\w.+-]*)"),
    "sglang_alloc": re.compile(
        r"(?<![A-Za-z])(?:(Full|SWA) )?KV Cache (is allocated|VA upper bound)\. (?:dtype: ([\w.]+), )?#tokens: "
        + _N + r"(?:, K size: " + _GB + r", V size: " + _GB + r"|, KV size: " + _GB + r")?"),
    "sglang_post_capture": re.compile(r"Post-capture KV sizing: KV cache allocated\. dtype: ([\w.]+), #tokens: "
                                      + _N + r", KV size: " + _GB),
    "sglang_weights": re.compile(r"Load weight end\. type=(\w+), dtype=torch\.(\w+)"),
    "sglang_pool_end": re.compile(r"Memory pool end\. avail mem=" + _GB),
    # scheduler.py: the pool's size again, as the scheduler reads it (``max_total_num_tokens``).
    "sglang_max_total": re.compile(r"max_total_num_tokens=([0-9]+)"),
    # hybrid GDN / Mamba models (memory_pool.py MambaPool): the state pool beside the KV pool.
    "sglang_mamba": re.compile(r"Mamba Cache is allocated\. max_mamba_cache_size: ([0-9]+), conv_state size: "
                               + _N + r"\s*GB, ssm_state size: " + _N + r"\s*GB"),
    # A rank prefix "[... DP3 TP3]" (SGLang with --enable-dp-attention).
    "sglang_dp_rank": re.compile(r"\[[^\[\]]*\bDP([0-9]+) TP([0-9]+)\]"),
    # kvcached (kvcached/integration/sglang/patches.py).
    "kvcached_virtual": re.compile(r"VirtualKV Cache is allocated(?: \(group_id=[0-9]+\))?\. #tokens: " + _N
                                   + r"(?:, #layers: " + _N + r")?, K size: " + _GB + r", V size: " + _GB),
    "kvcached_physical": re.compile(r"Physical KV Cache limits by --mem-fraction-static: #tokens: " + _N
                                    + r", K size: " + _GB + r", V size: " + _GB),
    # llama.cpp (llama_kv_cache_init / llama_kv_cache): MiB with 2 decimals.
    "llama_kv_buffer": re.compile(r"\b([A-Za-z][A-Za-z_]*[0-9]*) KV buffer size\s*=\s*" + _N + r"\s*MiB"),
    "llama_kv_self": re.compile(r"KV self size\s*=\s*" + _N + r"\s*MiB, K \((\w+)\):\s*" + _N
                                + r"\s*MiB, V \((\w+)\):\s*" + _N + r"\s*MiB"),
    "llama_kv_size": re.compile(r"llama_kv_cache(?:_unified)?: size =\s*" + _N + r"\s*MiB \(\s*" + _N
                                + r" cells,\s*" + _N + r" layers,.*?\), K \((\w+)\):\s*" + _N
                                + r"\s*MiB, V \((\w+)\):\s*" + _N + r"\s*MiB"),
    # llama-kv-cache.cpp:300 "(%6u cells, %3d layers, %2u/%u seqs)": cells are per stream, the
    # second seqs figure is the stream count (n_seq_max unless kv_unified).
    "llama_kv_streams": re.compile(r"llama_kv_cache(?:_unified)?: size =.*?cells,\s*" + _N + r" layers,\s*"
                                   + _N + "/" + _N + r" seqs\)"),
    # TensorRT-LLM, cpp/tensorrt_llm/batch_manager/kvCacheManager.cpp (KVCacheManager constructor,
    # calculateMaxNumBlocks) and the LLM API's warning when max_tokens is set with a fraction.
    "trtllm_alloc": re.compile(r"\[MemUsageChange\] Allocated " + _N + r" GiB for max tokens in paged KV cache \("
                               + _N + r"\)"),
    "trtllm_tokens_per_block": re.compile(r"Number of tokens per block: " + _N),
    "trtllm_primary_blocks": re.compile(r"Number of blocks in KV cache primary pool: " + _N),
    "trtllm_mem_usage": re.compile(r"Memory usage when calculating max tokens in paged kv cache: total: " + _N
                                   + r" GiB, available: " + _N + r" GiB"),
    "trtllm_both_set": re.compile(r"Both free_gpu_memory_fraction and max_tokens are set \(to " + _N + r" and "
                                  + _N + r", respectively\)"),
    "llama_n_ctx": re.compile(r"\bn_ctx\s*=\s*" + _N),
    # llama-model.cpp load_tensors (0.3.36 vendored: :1912-1924; mid-2024 builds the same words).
    "llama_offloading_repeating": re.compile(r"offloading " + _N + r" repeating layers to GPU"),
    "llama_offloading_output": re.compile(r"offloading (?:output|non-repeating) layers? to GPU()"),
    # src/llama.cpp:306 "using device %s (%s) (%s) - %zu MiB free" (older builds one parenthesis).
    "llama_device_free": re.compile(r"using device (\w+) \(.*\) - " + _N + r" MiB free"),
    "llama_offloaded": re.compile(r"offloaded " + _N + "/" + _N + " layers to GPU"),
}

FIT_ERROR_V1 = re.compile(
    r"To serve at least one request with the (models's|model's) max seq len \(" + _N + r"\),\s*\(?" + _N
    + r" GiB KV cache is needed, which is larger than the available KV cache memory \(" + _N + r" GiB\)\."
    r"(?:\s*Based on the available memory, the estimated maximum model length is " + _N + r"\.)?")
FIT_ERROR_V0 = re.compile(r"The model's max seq len \(" + _N + r"\) is larger than the maximum number of tokens "
                          r"that can be stored in KV cache \(" + _N + r"\)")
_CMD_FLAGS = {
    "--max-model-len": "max_model_len", "--max_model_len": "max_model_len", "--tensor-parallel-size": "tp",
    "--tensor_parallel_size": "tp", "-tp": "tp", "--tp": "tp", "--tp-size": "tp", "--kv-cache-dtype": "kv_dtype",
    "--block-size": "block_size", "--model": "model", "--model-path": "model", "--context-length": "max_model_len",
    "--page-size": "page_size", "--dp": "dp", "--dp-size": "dp", "--data-parallel-size": "dp", "-dp": "dp",
    "--decode-context-parallel-size": "dcp", "-dcp": "dcp",
}
_BOOL_FLAGS = {"--enable-dp-attention": "dp_attention"}
"""Flags without a value (SGLang ``--enable-dp-attention``: attention TP = tp / dp)."""
_QUOTE = re.compile(r"^\s*(?:[\u258e\u2502>|]\s*)+")
"""A frame or quote marker a thread put before pasted lines (``▎``, ``│``, ``>``)."""
_LLAMA_FLAGS = {
    "-c": "n_ctx", "--ctx-size": "n_ctx", "-m": "model", "--model": "model", "--cache-type-k": "cache_type_k",
    "-ctk": "cache_type_k", "--cache-type-v": "cache_type_v", "-ctv": "cache_type_v", "-ngl": "n_gpu_layers",
    "--n-gpu-layers": "n_gpu_layers", "-np": "parallel", "--parallel": "parallel", "-ts": "tensor_split",
    "--tensor-split": "tensor_split", "-sm": "split_mode", "--split-mode": "split_mode",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True, kw_only=True)
class Found:
    """One match: the captured figures as printed and the 1-based line it is on."""

    groups: tuple[str, ...]
    line: int


@dataclass(frozen=True, kw_only=True)
class LogReading:
    engine: str | None
    """vllm, sglang, llama.cpp (or None when no KV line was recognised)."""
    printed_version: str | None
    generation: str
    """The line forms the log uses (``docs/engines.md`` §2), e.g. "vLLM V0 0.7-0.10"."""
    kvcached: bool
    found: dict[str, list[Found]]
    command: dict[str, str] = field(default_factory=dict)

    def first(self, key: str) -> Found | None:
        items = self.found.get(key)
        return items[0] if items else None

    def has(self, key: str) -> bool:
        return bool(self.found.get(key))

    def config(self, key: str) -> str | None:
        """A setting from the command line, else from the engine's config line."""
        if key in self.command:
            return self.command[key]
        f = self.first({"model": "model_cfg", "max_model_len": "max_seq_len", "tp": "tp_cfg",
                        "kv_dtype": "kv_dtype_cfg", "block_size": "block_cfg", "dcp": "dcp_cfg"}.get(key, key))
        if f is None:
            return None
        return next((g for g in f.groups if g), None)


def number(text: str, line: int) -> Decimal:
    """A figure exactly as printed; a malformed or absurd one is an error naming its line."""
    digits = sum(ch.isdigit() for ch in text)
    if digits > MAX_DIGITS:
        raise InvalidConfigError("log", f"line {line}: a number of {digits:,} digits; engines print at most "
                                        f"{MAX_DIGITS}")
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation:
        raise InvalidConfigError("log", f"line {line}: expected a number, found {text[:40]!r}") from None
    return value


def integer(text: str, line: int) -> int:
    value = number(text, line)
    if value != value.to_integral_value():
        raise InvalidConfigError("log", f"line {line}: expected a whole number, found {text[:40]!r}")
    return int(value)


def clean(text: str) -> str:
    """A name from a log, with control characters shown escaped (a log is untrusted text)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _parse_command(line: str, out: dict[str, str]) -> None:
    words = line.split()
    flags = _LLAMA_FLAGS if any(w.split("/")[-1] in ("llama-server", "llama-cli") for w in words) else _CMD_FLAGS
    for i, word in enumerate(words):
        if word in _BOOL_FLAGS:
            out.setdefault(_BOOL_FLAGS[word], "true")
            continue
        key, _, inline = word.partition("=")
        name = flags.get(key)
        if name is None:
            continue
        value = inline or (words[i + 1] if i + 1 < len(words) else "")
        if value:
            out.setdefault(name, value)
    if "serve" in words:
        idx = words.index("serve")
        if idx + 1 < len(words) and not words[idx + 1].startswith("-"):
            out.setdefault("model", words[idx + 1])


def _is_command(line: str) -> bool:
    return any(k in line for k in ("vllm serve", "vllm.entrypoints", "sglang.launch_server", "llama-server",
                                   "llama-cli"))


def read_log(text: str) -> LogReading:
    found: dict[str, list[Found]] = {}
    command: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        if _is_command(line):
            _parse_command(line, command)
        for key, pattern in LINE_PATTERNS.items():
            m = pattern.search(line)
            if m:
                found.setdefault(key, []).append(Found(groups=tuple(g or "" for g in m.groups()), line=n))
    # A message wrapped over lines is read as one; quote markers before pasted lines are dropped.
    flat = " ".join(" ".join(_QUOTE.sub("", ln) for ln in text.splitlines()).split())
    for key, pattern in (("fit_error", FIT_ERROR_V1), ("fit_error_v0", FIT_ERROR_V0)):
        hit = pattern.search(flat)
        if hit:
            at = next((i for i, ln in enumerate(text.splitlines(), start=1) if "max seq len" in ln), 0)
            found[key] = [Found(groups=tuple(g or "" for g in hit.groups()), line=at)]
    _refuse_zero_lengths(found)
    engine, generation = _generation(found)
    version = None
    for key in ("vllm_version", "vllm_server_version", "sglang_version"):
        if key in found:
            version = clean(found[key][0].groups[0])
            break
    return LogReading(engine=engine, printed_version=version, generation=generation,
                      kvcached=any(k.startswith("kvcached") for k in found), found=found, command=command)


def _refuse_zero_lengths(found: dict[str, list[Found]]) -> None:
    """vLLM's request length is its max_model_len (at least 1): a 0 there is not an engine's log."""
    for key, index in (("concurrency", 0), ("tokens", 2), ("fit_error", 1), ("fit_error_v0", 0)):
        for f in found.get(key, []):
            if len(f.groups) > index and f.groups[index] and number(f.groups[index], f.line) <= 0:
                raise InvalidConfigError("log", f"line {f.line}: a request length of {f.groups[index]} tokens; "
                                                "vLLM's max model length is at least 1")


def _generation(found: dict[str, list[Found]]) -> tuple[str | None, str]:
    has = found.__contains__
    if has("kvcached_virtual") or has("kvcached_physical"):
        return "sglang", "SGLang with kvcached (VirtualKV / Physical KV Cache lines)"
    if has("sglang_alloc") or has("sglang_post_capture"):
        dtype_form = any(f.groups[2] for f in found.get("sglang_alloc", []))
        return "sglang", ("SGLang 0.5.x with dtype in the allocation line (0.5.23)" if dtype_form
                          else "SGLang 0.4-0.5.2 (allocation line without dtype)")
    if has("trtllm_alloc") or has("trtllm_primary_blocks"):
        return "trtllm", "TensorRT-LLM (KV cache manager's MemUsageChange / primary pool lines)"
    if has("llama_kv_buffer") or has("llama_kv_self") or has("llama_kv_size"):
        return "llama.cpp", "llama.cpp (KV buffer size / KV self size lines)"
    return vllm_generation(found)


def vllm_generation(found: dict[str, list[Found]]) -> tuple[str | None, str]:
    """The vLLM generation the vLLM lines of a log imply (``docs/engines.md`` §2)."""
    has = found.__contains__
    if has("warmup") or has("extended"):
        return "vllm", "vLLM V1 0.34 (extensible KV cache: Memory after warmup)"
    if any(f.groups[2] for f in found.get("tokens", [])):
        return "vllm", "vLLM V1 0.28+ (one-line KV cache size and concurrency)"
    if has("tokens") or has("available") or has("fit_error") or has("advisory"):
        return "vllm", "vLLM V1 0.7.3-0.27 (two lines: KV cache size, Maximum concurrency)"
    if has("v0_oneline"):
        return "vllm", "vLLM V0 0.6.4 (one-line Memory profiling results)"
    if has("v0_table_kv"):
        return "vllm", "vLLM V0 0.6.5 (Memory profiling results table)"
    if has("v0_budget") or has("v0_parts"):
        return "vllm", "vLLM V0 0.7-0.10 (total_gpu_memory x gpu_memory_utilization lines)"
    if has("blocks"):
        v0 = any(f.groups[1] for f in found["blocks"])
        return "vllm", ("vLLM V0 (# GPU blocks, # CPU blocks)" if v0 else "vLLM V1 0.7 (# GPU blocks)")
    if has("fit_error_v0"):
        return "vllm", "vLLM V0 (fit error)"
    return None, "no KV-cache line recognised"
