#!/usr/bin/env bash
# Regenerates every image in docs/gallery/. Run from the repository root:
#   bash docs/gallery/regenerate.sh            (uses .venv/bin/python if present, else python)
# Each line below is a documented command; tests/test_gallery.py checks that each --plot / --report
# file exists (and re-runs the sweeps and the report to check they still draw the same figures).
# The report screenshot needs Debian's Chromium (apt-get install chromium) and Playwright (dev extra).
set -euo pipefail
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
KVCALC="$PY -m kvcalc"

# 1. KV cache vs context for six models (GQA, MHA, sliding window, sliding+full mix, MLA) on one H100
#    (base-2 context axis; a model whose maximum context is inside the range has it marked).
$KVCALC sweep llama-3.1-8b llama-2-7b mistral-7b-v0.1 gpt-oss-120b deepseek-v3 llama-3.1-70b --seq-len 1k..128k --kv-dtype bf16 --gpu h100 --plot docs/gallery/sweep_models.png
# 2. One model, three KV dtypes, batch 8: where each crosses an H100.
$KVCALC sweep llama-3.1-70b --seq-len 1k..128k --batch 8 --kv-dtype bf16,fp8,int4 --gpu h100 --plot docs/gallery/sweep_dtypes.png
# 3. Requests resident at once vs context for a vLLM deployment (kvcalc plan, same plotting helper).
$KVCALC plan llama-3.1-8b --gpu h100 --context 32768 --users 64 --plot docs/gallery/plan_concurrency.png
# 4. A capacity report a team can open (one self-contained HTML file), and its screenshot.
$KVCALC plan llama-3.1-8b --gpu h100 --context 32768 --users 64 --report docs/gallery/plan_report.html
$PY docs/gallery/screenshot.py docs/gallery/plan_report.html docs/gallery/plan_report.png
# 5. Time per token with and without the KV cache, measured on this machine's CPU (takes a minute or two).
$KVCALC bench --n 32..512 --repeats 2 --plot docs/gallery/bench_speedup.png
