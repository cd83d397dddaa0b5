#!/usr/bin/env bash
# The test command: installs what is missing, builds everything (CUDA targets included when
# nvcc exists), runs every CPU test (CTest label cpu) and the bounded fuzz runs.
# GPU tests (label gpu) run only on the device machine: see docs/gpu_testing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
# The default real model and text are test inputs too (tokenizer ids, loader, engine checks).
scripts/fetch_model.sh >/dev/null
scripts/fetch_text.sh >/dev/null
(cd build && ctest -L cpu -j "$(nproc)" --output-on-failure --timeout 900)
if [ -x scripts/fuzz.sh ]; then
  scripts/fuzz.sh
fi
