#!/usr/bin/env bash
# Lists, for every kernel of the CUDA library's objects that waits on the kernel before it
# (griddepcontrol.wait: SASS ACQBULK), how many global loads it issues before that wait. A
# decode product written to stream its weights before the wait must show them there: in session
# 27 ptxas had sunk the M = 1 product's whole prefetch below the wait (legal: a load may always
# move after an acquire), which only the SASS shows. Exits 1 when a kernel named in MUST (a
# regex, default the decode GEMMs) has none.
#   dev/cuda/check_prewait_loads.sh [build-cuda]
# Needs cuobjdump and nvdisasm: taken from PATH, else from the PyPI wheels
# nvidia-cuda-cuobjdump / nvidia-cuda-nvdisasm (downloaded once into .cache/sass-tools).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="${1:-$ROOT/build-cuda}"
MUST="${MUST:-gemm_decode_(m1|mma|shared|wgmma)_kernel}"
if ! command -v cuobjdump >/dev/null || ! command -v nvdisasm >/dev/null; then
  T="$ROOT/.cache/sass-tools"
  if [ ! -x "$T/nvidia/cu13/bin/cuobjdump" ] || [ ! -x "$T/nvidia/cu13/bin/nvdisasm" ]; then
    mkdir -p "$T/whl"
    python3 -m pip download -q --no-deps nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm -d "$T/whl"
    for w in "$T"/whl/*.whl; do python3 -m zipfile -e "$w" "$T"; done
    chmod +x "$T"/nvidia/cu13/bin/*
  fi
  export PATH="$T/nvidia/cu13/bin:$PATH"
fi
objs=$(find "$BUILD/src/cuda" -name '*.cu.o' | sort)
[ -n "$objs" ] || { echo "check_prewait_loads: no CUDA objects under $BUILD/src/cuda" >&2; exit 2; }
status=0
for o in $objs; do
  cuobjdump -sass "$o" | awk -v obj="$(basename "$o")" -v must="$MUST" '
    function report() {
      if (name != "" && acq) {
        bad = (name ~ must && before == 0)
        printf "%s %-5s loads before the wait: %3d  %s\n", obj, bad ? "BAD" : "ok", before, name
        if (bad) exit_code = 1
      }
    }
    /Function :/ { report(); name = $3; acq = 0; before = 0; next }
    /ACQBULK/ { acq = 1 }
    /LDG|LDGSTS|UBLKCP|UTMALDG/ { if (!acq) before++ }
    END { report(); exit exit_code }' || status=1
done
exit $status
