#!/usr/bin/env bash
# Packs what a device-machine call needs into .device/ (git-ignored; see docs/gpu_testing.md):
# .device/pack/bin.tar.xz (sharq, the GPU test binaries, the dev probes, the shared libraries the
# device image lacks), the default text, and the default model split in three parts (.device/m1,
# .device/m2, .device/m3) because one call carries at most 64 MiB. Needs a CUDA build in
# build-cuda.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${1:-$ROOT/build-cuda}"
D="$ROOT/.device"
grep -qx '/.device/' "$ROOT/.git/info/exclude" 2>/dev/null || echo '/.device/' >>"$ROOT/.git/info/exclude"
# The decode products must issue their weight prefetch before their dependency wait; ptxas once
# moved it below (session 27), which only the SASS shows. CHECK_SASS=0 skips the check.
mkdir -p "$D"
if [ "${CHECK_SASS:-1}" != 0 ]; then
  if ! "$ROOT/dev/cuda/check_prewait_loads.sh" "$BUILD" >"$D/prewait_loads.txt" 2>&1; then
    if grep -q ' BAD ' "$D/prewait_loads.txt"; then
      grep ' BAD ' "$D/prewait_loads.txt" >&2
      echo "pack_device.sh: a decode GEMM loads nothing before griddepcontrol.wait (above)" >&2
      exit 1
    fi
    echo "pack_device.sh: the SASS check did not run (tools?): $D/prewait_loads.txt" >&2
  fi
fi
rm -rf "$D/pack" "$D/stage" && mkdir -p "$D/pack" "$D/stage/bin" "$D/stage/lib"
for b in ${BINS:-tools/sharq tests/cuda/sharq_cuda_tests tests/cuda/sharq_cuda_backend_tests bench/cuda/bench_gemm bench/cuda/bench_group}; do
  if [ -f "$BUILD/$b" ]; then strip -o "$D/stage/bin/$(basename "$b")" "$BUILD/$b"; else echo "pack_device.sh: $BUILD/$b not built, skipped" >&2; fi
done
# The dev probes (dev/cuda, not CMake targets), built against the CUDA build's library
# with the library's -fmad=false; PROBES=0 skips them, PROBE_NAMES="a b" builds only those.
if [ "${PROBES:-1}" != 0 ] && [ -f "$BUILD/src/cuda/libsharq_cuda.a" ]; then
  for p in ${PROBE_NAMES:-decode_layout_probe decode_tiled_math_probe l2_prefetch_probe phase_chain_probe sparse_wgmma_probe sparse_gemm_probe sparse_gemm_tma_probe sharq_prefill_ws_probe prefill_overlap_probe}; do
    nvcc -std=c++20 -O3 -fmad=false -gencode=arch=compute_90a,code=sm_90a -I"$ROOT/include" \
      "$ROOT/dev/cuda/$p.cu" "$BUILD/src/cuda/libsharq_cuda.a" "$BUILD/src/libsharq_core.a" \
      -lcublas -lcuda -o "$D/stage/bin/$p" && strip "$D/stage/bin/$p" || echo "pack_device.sh: $p not built" >&2
  done
fi
for l in libopenblas.so.0 libpcre2-8.so.0 libutf8proc.so.2 libgfortran.so.5 libquadmath.so.0; do
  cp -L "$(ldconfig -p | awk -v l="$l" '$1 == l && /x86-64/ {print $NF; exit}')" "$D/stage/lib/$l"
done
tar -cJf "$D/pack/bin.tar.xz" -C "$D/stage" bin lib
# TRACE=1: the CUPTI kernel-timeline library and the toolkit's CUPTI (device_run.sh trace).
if [ "${TRACE:-0}" = 1 ]; then
  CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
  g++ -shared -fPIC -O2 -Wall "$ROOT/dev/cuda/kernel_trace.cpp" -I"$CUDA_HOME/include" \
    -L"$CUDA_HOME/lib" -L"$CUDA_HOME/lib64" -lcupti -o "$D/pack/libktrace.so"
  cp -L "$(find -L "$CUDA_HOME/lib" "$CUDA_HOME/lib64" -name 'libcupti.so.13' 2>/dev/null | head -1)" \
    "$D/pack/libcupti.so.13"
fi
rm -rf "$D/stage"
cp "$("$ROOT/scripts/fetch_text.sh")" "$D/pack/"
GGUF="$("$ROOT/scripts/fetch_model.sh")"
# Thirds (33 MB each for the default model): one beside the pack and the tree (8-9 MB each) stays
# well under the 64 MiB a call carries; halves (49 MB) no longer did once the tree grew.
rm -rf "$D/m1" "$D/m2" "$D/m3" && mkdir -p "$D/m1" "$D/m2" "$D/m3"
third=$(( ($(stat -c %s "$GGUF") + 2) / 3 ))
split -b "$third" -d -a 1 "$GGUF" "$D/m1/part"
mv "$D/m1/part1" "$D/m2/part1"
mv "$D/m1/part2" "$D/m3/part2"
du -sh "$D/pack" "$D/m1" "$D/m2" "$D/m3"
