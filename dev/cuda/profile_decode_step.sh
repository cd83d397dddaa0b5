#!/usr/bin/env bash
# Device machine: per-kernel GPU time of decode steps (ncu, gpu__time_duration) on a 2-layer
# Llama-3.1-8B-shaped synthetic model, launched eagerly (graph replay off, so every kernel is
# profiled under its own name), for sharq-nvfp4-24 and bf16. Binaries from scripts/pack_device.sh.
# CSV per mode in $OUT; the last decode step is the tail of each CSV.
# BATCH (default 1) sets the decode batch; NCU_ARGS replaces the default metric list (e.g.
# "--kernel-name regex:gemm_decode_shared --launch-count 3 --section WarpStateStats" for a
# kernel's stall reasons; the output is then ncu's text report). BENCH_ARGS adds sharq bench
# arguments (e.g. "--kv-cache f16").
set -uo pipefail
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
B=/tmp/sharq
if [ ! -x "$B/bin/sharq" ]; then mkdir -p "$B" && tar -xJf .device/pack/bin.tar.xz -C "$B"; fi
export LD_LIBRARY_PATH="$B/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu | head -n 1)
for mode in ${MODES:-sharq-nvfp4-24 bf16}; do
  # shellcheck disable=SC2086  # NCU_ARGS is a word list on purpose
  SHARQ_CUDA_GRAPHS=0 timeout 250 "$NCU" --clock-control none \
    ${NCU_ARGS:---metrics gpu__time_duration.sum --csv} \
    "$B/bin/sharq" bench --synthetic llama-3.1-8b --layers 2 --device cuda --modes "$mode" \
    --prefill "${PREFILL:-16}" --batch "${BATCH:-1}" --ctx 1024 --steps 4 --repeat 1 ${BENCH_ARGS:-} >"$OUT/ncu_$mode.csv" 2>"$OUT/ncu_$mode.err"
  echo "$mode rc=$?"
done
