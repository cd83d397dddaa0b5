#!/usr/bin/env bash
# One device-machine call: GPU tests, compute-sanitizer (memcheck, racecheck), then the GEMM
# benchmark (cuBLAS BF16, cuBLASLt FP8, our decode and prefill GEMMs, prepare, whole linear,
# copy bandwidth), the cuSPARSELt baseline and the prepare schedules; logs and CSV go to $OUT.
# Not a build script: the binaries are built on the dev box (build-cuda, see
# docs/cuda_kernels.md) and carried in .device/, because the device image lacks the project's
# Debian dependencies (gtest).
set -uo pipefail
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem \
  --format=csv | tee "$OUT/device.txt"
date -u | tee -a "$OUT/device.txt"
echo "== gpu tests"
.device/sharq_cuda_tests 2>&1 | tee "$OUT/gpu_tests.log" | grep -E "OK|FAIL|PASSED|Failure|error" | head -n 40
echo "== compute-sanitizer memcheck"
timeout 200 compute-sanitizer --tool memcheck --error-exitcode 3 .device/sharq_cuda_tests \
  --gtest_filter='CudaPackWeight*:CudaPrepare*:CudaErrors*:CudaGemmDecodeMma*' >"$OUT/memcheck.log" 2>&1
echo "memcheck rc=$?"; tail -n 3 "$OUT/memcheck.log"
echo "== compute-sanitizer racecheck"
timeout 120 compute-sanitizer --tool racecheck --error-exitcode 3 .device/sharq_cuda_tests \
  --gtest_filter='CudaGemmDecodeMma*' >"$OUT/racecheck.log" 2>&1
echo "racecheck rc=$?"; tail -n 3 "$OUT/racecheck.log"
echo "== bench"
timeout 240 .device/bench_gemm "$OUT/bench_gemm.csv" 2>&1 | tee "$OUT/bench.log"
# The cuSPARSELt baseline and the prepare schedules, same card, same call (binaries carried
# when built; libcusparseLt comes from the device image's Python environment).
SPLT="$(dirname "$(find /opt /usr -name 'libcusparseLt.so.0' 2>/dev/null | head -n 1)" 2>/dev/null)"
if [ -x .device/bench_sparselt ] && [ -n "$SPLT" ]; then
  echo "== bench_sparselt"
  LD_LIBRARY_PATH="$SPLT:$LD_LIBRARY_PATH" timeout 240 .device/bench_sparselt \
    "$OUT/bench_sparselt.csv" 2>&1 | tee "$OUT/bench_sparselt.log" | tail -n 40
fi
if [ -x .device/bench_prepare ]; then
  echo "== bench_prepare"
  timeout 120 .device/bench_prepare "$OUT/bench_prepare.csv" 2>&1 | tail -n 30
fi
