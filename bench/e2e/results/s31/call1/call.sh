#!/usr/bin/env bash
# Session 31 call 1: dev/cuda/m1_stage_x.patch applied (M = 1 product's activation staged in smem; epilogue operands off the tail): decode GEMM + backend tests, abbase b1/8 vs HEAD 1dd767c (+ STAGE=0), b1 timeline.
cd "$(dirname "$0")/../.."
F="$OUT"; S=$(date +%s)
B=/tmp/sharq; rm -rf $B; mkdir -p $B && tar -xJf .device/pack/bin.tar.xz -C $B
export LD_LIBRARY_PATH="$B/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
{
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u
echo "== tests"
timeout 150 $B/bin/sharq_cuda_tests --gtest_filter='*CudaGemmDecode*' 2>&1 | grep -E '^\[  (FAILED|PASSED) |FAILED|Failure|Expected|^\[==========\]' | tail -n 12
timeout 120 $B/bin/sharq_cuda_backend_tests 2>&1 | grep -E 'FAILED|PASSED|Failure|^\[==========\]' | tail -n 12
echo "[$(( $(date +%s) - S ))s]"
export OUT=/tmp/o1/ab; mkdir -p $OUT
AB_BATCH=1,8 AB_MODES=nvfp4,sharq-nvfp4-24 AB_VARIANTS="SHARQ_CUDA_DECODE_M1_STAGE=0" bash bench/e2e/device_run.sh abbase 2>&1 | grep -v '^$'
echo "[$(( $(date +%s) - S ))s]"
export OUT=/tmp/o1/trace; mkdir -p $OUT
TRACE_MODES=sharq-nvfp4-24 TRACE_BATCH=1 bash bench/e2e/device_run.sh trace 2>&1 | grep -v '^$'
echo "[$(( $(date +%s) - S ))s]"
} > $F/main.log 2>&1
(cd /tmp/o1 && tar -czf $F/results.tgz .)
