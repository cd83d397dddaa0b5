#!/usr/bin/env bash
# The main job: installs what is missing, builds, fetches the default real model and text, then
# prints a short generation and the perplexity table for bf16, nvfp4 and sharq-nvfp4.
# Where the engine or the model is not available, it runs the synthetic per-mode error demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
SHARQ=build/tools/sharq

"$SHARQ" demo

if "$SHARQ" perplexity --help >/dev/null 2>&1 && [ -x scripts/fetch_model.sh ]; then
  model=$(scripts/fetch_model.sh | tail -n 1)
  text=$(scripts/fetch_text.sh | tail -n 1)
  echo
  echo "== generate (bf16) =="
  "$SHARQ" generate -m "$model" --mode bf16 -p "The meaning of life is" -n 32
  echo
  echo "== generate (sharq-nvfp4) =="
  "$SHARQ" generate -m "$model" --mode sharq-nvfp4 -p "The meaning of life is" -n 32
  echo
  echo "== perplexity =="
  "$SHARQ" perplexity -m "$model" -f "$text" --modes bf16,nvfp4,sharq-nvfp4 --ctx 512 \
    --max-tokens "${SHARQ_MAX_TOKENS:-2048}"
fi
