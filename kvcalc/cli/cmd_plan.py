"""`kvcalc plan`: will this model, at this context, serve this many users on these GPUs?

Parses flags into a ``PlanRequest``, calls ``kvcalc.planner.plan.plan`` and renders the
``Plan``; every number shown is a field of the result."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from kvcalc.units import tokens_parser

EPILOG = (
    "Examples:\n\n"
    "  kvcalc plan llama-3-70b --gpu h100:4 --kv-dtype fp8 --context 8192 --users 64\n\n"
    "  kvcalc plan llama-2-7b --kv-budget 50GiB --max-model-len 4096 --json\n\n"
    "  kvcalc plan deepseek-v3 --gpu h200:8 --weight-dtype fp8 --context 32768 --users 32\n"
)


def register(app: typer.Typer) -> None:
    @app.command("plan", epilog=EPILOG)
    def plan_cmd(
        ctx: typer.Context,
        model: Annotated[Optional[list[str]], typer.Argument(
            help="Built-in model name or alias; several: one comparison table (as `kvcalc fit`).",
            show_default=False)] = None,
        config: Annotated[Optional[str], typer.Option("--config", "-c", help="kvcalc YAML or HF config.json.")]
        = None,
        gpu: Annotated[Optional[str], typer.Option(
            "--gpu", help="GPU[:COUNT] from `kvcalc gpus`, e.g. h100:4, or auto (this machine).")] = None,
        gpu_memory: Annotated[Optional[str], typer.Option(
            "--gpu-memory", help="Any other GPU: its usable memory per GPU, e.g. 24GiB.")] = None,
        kv_budget: Annotated[Optional[str], typer.Option(
            "--kv-budget", help="Skip the memory model: KV pool per GPU, e.g. 50GiB (as vLLM logs it).")] = None,
        engine: Annotated[str, typer.Option(
            "--engine", "-e", help="vllm, sglang, trtllm (tensorrt-llm), llama.cpp, ollama or hf.")] = "vllm",
        context: Annotated[Optional[int], typer.Option(
            "--max-model-len", "--context", "--num-ctx", parser=tokens_parser("--context"),
            help="Tokens per request, e.g. 32768 or 32k (k = 1024; default: the model's maximum).")] = None,
        kv_dtype: Annotated[str, typer.Option("--kv-dtype", "--kv-cache-dtype", "--kv-cache-type",
                                              help="auto, bf16, fp8, int4, ...; llama.cpp/Ollama f16, q8_0, q4_0")]
        = "auto",
        weight_dtype: Annotated[str, typer.Option(
            "--weight-dtype", help="auto (the checkpoint's quantization_config or GGUF), bf16, fp16, fp8, int8, "
            "int4 (AWQ/GPTQ, group 128), GGUF q4_k_m, q8_0, ...")] = "auto",
        weights: Annotated[Optional[str], typer.Option(
            "--weights", help="Exact weight bytes: safetensors headers (file, folder, index), a .gguf, or a hub "
            "id (headers by range request).")] = None,
        tp: Annotated[Optional[int], typer.Option("--tp", "-tp", "--tensor-parallel-size", min=1,
                                                  help="Tensor-parallel degree (default: the GPU count).")] = None,
        pp: Annotated[int, typer.Option("--pp", "--pipeline-parallel-size", min=1, help="Pipeline stages.")] = 1,
        dp_attention: Annotated[int, typer.Option(
            "--dp-attention", min=1,
            help="SGLang --enable-dp-attention --dp-size N: N attention-DP ranks per TP group, each caching its own "
                 "requests (attention TP = tp / N).")] = 1,
        dcp: Annotated[int, typer.Option(
            "--dcp", "--decode-context-parallel-size", min=1,
            help="vLLM decode context parallelism: each request's KV split over N of the TP ranks.")] = 1,
        data_parallel: Annotated[int, typer.Option(
            "--data-parallel-size", "-dp", min=1,
            help="vLLM: DP engines of tp x pp GPUs each, each with its own KV pool; a MoE model's routed experts "
                 "are split over DP x TP ranks.")] = 1,
        expert_parallel: Annotated[bool, typer.Option(
            "--enable-expert-parallel", help="vLLM: whole routed experts per rank (EP size DP x TP).")] = False,
        speculative_config: Annotated[Optional[str], typer.Option(
            "--speculative-config", help="vLLM: speculative decoding as JSON, e.g. '{\"method\": \"mtp\", "
            "\"num_speculative_tokens\": 1}' (EAGLE/EAGLE-3/MTP layers share the pool).")] = None,
        speculative_algorithm: Annotated[Optional[str], typer.Option(
            "--speculative-algorithm", help="SGLang: EAGLE, EAGLE3, NEXTN or NGRAM (the draft's pool is sized "
            "with the target's).")] = None,
        speculative_num_draft_tokens: Annotated[Optional[int], typer.Option(
            "--speculative-num-draft-tokens", min=1, help="SGLang: draft tokens per step (recorded).")] = None,
        draft_model: Annotated[Optional[str], typer.Option(
            "--draft-model", help="A separate draft model (built-in name, config.json, folder or hub id): vLLM "
            "method draft_model, SGLang STANDALONE; its layers and weights are planned.")] = None,
        num_speculative_tokens: Annotated[Optional[int], typer.Option(
            "--num-speculative-tokens", min=1, help="With --draft-model alone: vLLM's num_speculative_tokens.")]
        = None,
        draft_layers: Annotated[Optional[int], typer.Option(
            "--draft-layers", min=0, help="Draft decoder layers whose KV shares the pool (default 1: an EAGLE "
            "head; DeepSeek-V3's num_nextn_predict_layers).")] = None,
        model_impl: Annotated[str, typer.Option(
            "--model-impl", help="auto, or transformers: plan an architecture the engine version has no own code "
                                 "for (its Transformers backend).")] = "auto",
        block_size: Annotated[Optional[int], typer.Option(
            "--block-size", "--tokens-per-block", min=1,
            help="Tokens per KV block (vLLM default 16; 64 for MLA; TensorRT-LLM 32).")] = None,
        max_num_batched_tokens: Annotated[Optional[int], typer.Option(
            "--max-num-batched-tokens", min=1,
            help="vLLM chunked-prefill budget (sizes sliding-window reservations); default: vllm serve's for the "
                 "GPU (8192 on 70 GiB+ GPUs but A100, else 2048; 8192 with --kv-budget alone).")] = None,
        max_num_seqs: Annotated[Optional[int], typer.Option(
            "--max-num-seqs", min=1,
            help="vLLM's cap on running requests; default: vllm serve's for the GPU (1024 or 256).")] = None,
        gpu_memory_utilization: Annotated[Optional[str], typer.Option(
            "--gpu-memory-utilization", help="vLLM: fraction of total GPU memory (default 0.92).")] = None,
        mem_fraction_static: Annotated[Optional[str], typer.Option(
            "--mem-fraction-static",
            help="SGLang: weights + KV fraction of free memory (default: SGLang 0.5.23's, from GPU size, tp x pp).",
        )] = None,
        free_gpu_memory_fraction: Annotated[Optional[str], typer.Option(
            "--free-gpu-memory-fraction", help="TensorRT-LLM: fraction of memory free after profiling (0.9).")]
        = None,
        activation_memory: Annotated[Optional[str], typer.Option(
            "--activation-memory", help="Activation peak per GPU (default 1.5GiB, an assumption).")] = None,
        non_torch_memory: Annotated[Optional[str], typer.Option(
            "--non-torch-memory", help="Non-torch memory per GPU: CUDA context, NCCL (default 0.5GiB).")] = None,
        users: Annotated[Optional[int], typer.Option("--users", min=1, help="Concurrent users to serve.")] = None,
        batch: Annotated[Optional[int], typer.Option("--batch", "-b", min=1,
                                                     help="Batch for the longest-context answer.")] = None,
        shared_prefix_tokens: Annotated[int, typer.Option(
            "--shared-prefix-tokens", min=0, help="A prompt prefix every user shares (prefix caching).")] = 0,
        plot: Annotated[Optional[str], typer.Option("--plot", help="Write concurrency vs context to FILE.png/.svg.")]
        = None,
        json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
        csv: Annotated[bool, typer.Option("--csv", help="Several models: the comparison as CSV.")] = False,
        markdown: Annotated[bool, typer.Option("--markdown", help="Several models: the comparison as Markdown.")]
        = False,
        report: Annotated[Optional[str], typer.Option(
            "--report", help="Write a self-contained HTML report (answer, charts, assumptions) to FILE.html.")]
        = None,
        max_tokens: Annotated[Optional[int], typer.Option(
            "--max-tokens", min=1, help="TensorRT-LLM: KvCacheConfig.max_tokens, a cap on the pool's tokens.")] = None,
        host_cache_size: Annotated[Optional[str], typer.Option(
            "--host-cache-size", help="TensorRT-LLM: KvCacheConfig.host_cache_size, the host (secondary) pool, "
            "e.g. 32GiB.")] = None,
        n_gpu_layers: Annotated[int, typer.Option(
            "--n-gpu-layers", "-ngl", "--num-gpu", min=-1, help="llama.cpp (Ollama num_gpu): layers on the GPUs, "
            "the output layer counted (-1: all).")] = -1,
        tensor_split: Annotated[Optional[str], typer.Option(
            "--tensor-split", "-ts", help="llama.cpp: share of layers per GPU, e.g. 3,1.")] = None,
        split_mode: Annotated[str, typer.Option(
            "--split-mode", "-sm", help="llama.cpp: none, layer or row.")] = "layer",
        parallel: Annotated[int, typer.Option(
            "--parallel", "-np", "--num-parallel", min=1,
            help="llama.cpp server slots (Ollama OLLAMA_NUM_PARALLEL), each of --context cells.")] = 1,
        kv_unified: Annotated[bool, typer.Option(
            "--kv-unified", help="llama.cpp: one KV stream shared by the slots.")] = False,
        no_kv_offload: Annotated[bool, typer.Option(
            "--no-kv-offload", "-nkvo", help="llama.cpp: keep the KV cache in host memory.")] = False,
        flash_attn: Annotated[str, typer.Option(
            "--flash-attn", "-fa", help="llama.cpp: auto, on or off (a quantized V cache needs it); Ollama: "
            "OLLAMA_FLASH_ATTENTION unset, 1 or 0.")] = "auto",
    ) -> None:
        """Plan a deployment: KV budget, blocks, concurrency, whether --users fit, and what to change.

        A plan that does not fit is an answer ("fits": false), not an error: the exit code is 0."""
        from kvcalc.cli.plan_run import run_plan
        if model and len(model) > 1:  # several models: one comparison table (kvcalc.cli.cmd_fit)
            from kvcalc.cli.cmd_fit import print_comparison, requests_for

            bases = requests_for(model, engine=engine, gpu=gpu, gpu_memory=gpu_memory, kv_budget=kv_budget,
                                 weight_dtype=weight_dtype, weights=weights, tp=tp, pp=pp)
            print_comparison(bases, kv_dtype=kv_dtype, context=context or 8192, json=json, csv=csv,
                             markdown=markdown)
            return
        if csv or markdown:
            from kvcalc.errors import InvalidRequestError

            raise InvalidRequestError("--csv" if csv else "--markdown", True, "several models (a comparison table)")

        fractions = {"--gpu-memory-utilization": gpu_memory_utilization, "--mem-fraction-static": mem_fraction_static,
                     "--free-gpu-memory-fraction": free_gpu_memory_fraction}
        run_plan(model[0] if model else None, config, engine, fractions, json=json, plot=plot,
                 max_model_len=context, kv_dtype=kv_dtype,
                 report=report, command=_command_line(ctx) if report else "",
                 weight_dtype=weight_dtype, gpu=gpu, gpu_memory=gpu_memory, kv_budget=kv_budget, tp=tp, pp=pp,
                 block_size=block_size, max_num_batched_tokens=max_num_batched_tokens, max_num_seqs=max_num_seqs,
                 activation_memory=activation_memory, non_torch_memory=non_torch_memory, users=users, batch=batch,
                 shared_prefix_tokens=shared_prefix_tokens, weights_path=weights, dp_attention=dp_attention, dcp=dcp,
                 data_parallel=data_parallel, expert_parallel=expert_parallel, model_impl=model_impl,
                 speculative_config=speculative_config,
                 speculative_algorithm=speculative_algorithm,
                 speculative_num_draft_tokens=speculative_num_draft_tokens, draft_layers=draft_layers,
                 draft_model=draft_model, num_speculative_tokens=num_speculative_tokens,
                 max_tokens=max_tokens, host_cache_bytes=_host_bytes(host_cache_size), n_gpu_layers=n_gpu_layers,
                 tensor_split=_split(tensor_split), split_mode=split_mode, parallel=parallel, kv_unified=kv_unified,
                 no_kv_offload=no_kv_offload, flash_attn=flash_attn)


def _host_bytes(text: str | None) -> int:
    from kvcalc.units import parse_size

    return parse_size(text, "--host-cache-size") if text else 0


def _split(text: str | None) -> tuple[float, ...]:
    """``--tensor-split 3,1`` (llama.cpp also takes ``3/1``) -> weights; a bad number names the flag."""
    from kvcalc.errors import InvalidRequestError

    if not text:
        return ()
    try:
        return tuple(float(w) for w in text.replace("/", ",").split(","))
    except ValueError:
        raise InvalidRequestError("--tensor-split", text, "comma-separated non-negative numbers, e.g. 3,1") from None


def _command_line(ctx: typer.Context) -> str:
    from kvcalc.show.report import command_line

    return command_line(ctx)
