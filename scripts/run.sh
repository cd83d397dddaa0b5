#!/usr/bin/env bash
# The main job: installs what is missing, builds, fetches the default real model and text, then
# prints the synthetic per-mode error table, a short generation in bf16 and sharq-nvfp4, and
# the perplexity table for bf16, nvfp4 and sharq-nvfp4 on the default text.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
SHARQ=build/tools/sharq
model=$(scripts/fetch_model.sh | tail -n 1)
text=$(scripts/fetch_text.sh | tail -n 1)

echo "== per-mode quantization error on an LLM-like synthetic layer =="
"$SHARQ" demo
for mode in bf16 sharq-nvfp4; do
  echo
  echo "== generate ($mode) =="
  "$SHARQ" generate -m "$model" --mode "$mode" -p "What is the capital of France?" --chat -n 48
done
echo
echo "== perplexity ($text) =="
"$SHARQ" perplexity -m "$model" -f "$text" --modes bf16,nvfp4,sharq-nvfp4 --ctx 512 \
  --max-tokens "${SHARQ_MAX_TOKENS:-2048}"
