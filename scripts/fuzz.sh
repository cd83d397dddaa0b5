#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) into build-fuzz and runs each for
# FUZZ_SECONDS (default 60) from a seed corpus made by the fixture writer; fails on any crash,
# leak, timeout or sanitizer report. Not part of ctest (run it by hand or in CI).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
SECONDS_EACH="${FUZZ_SECONDS:-60}"
JOBS="${FUZZ_BUILD_JOBS:-1}"
CXX="${FUZZ_CXX:-clang++}"
command -v "$CXX" >/dev/null || { echo "fuzz.sh: $CXX not found (apt-get install clang)" >&2; exit 1; }

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1"
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSHARQ_CUDA=OFF -DSHARQ_BENCH=OFF -DSHARQ_FUZZ=ON \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link $SAN" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
ninja -C "$BUILD" -j"$JOBS" fuzz_gguf fuzz_safetensors fuzz_tokenizer sharq_make_fixtures

# Seeds: the tiny fixtures in both formats, their JSON files, and a few texts for the tokenizer.
SEEDS="$BUILD/fuzz-seeds"
rm -rf "$SEEDS"
mkdir -p "$SEEDS"/{gguf,safetensors,tokenizer} "$BUILD/fuzz-fixtures"
"$BUILD/tools/fixture/sharq_make_fixtures" "$BUILD/fuzz-fixtures" >/dev/null
for m in tiny-llama3 tiny-qwen2 tiny-qwen3; do
  cp "$BUILD/fuzz-fixtures/$m.gguf" "$SEEDS/gguf/"
  cp "$BUILD/fuzz-fixtures/$m/model.safetensors" "$SEEDS/safetensors/$m.safetensors"
  { printf '\x04'; cat "$BUILD/fuzz-fixtures/$m/tokenizer.json"; } > "$SEEDS/tokenizer/$m.tok"
  { printf '\x05'; cat "$BUILD/fuzz-fixtures/$m/config.json"; } > "$SEEDS/tokenizer/$m.cfg"
done
i=0
for text in "Hello world! It's 2024." "def f(x):\n    return x**2  # sq" "日本語 café 👋🌍 -42e-3" \
            "<|begin_of_text|>a<|end_of_text|>   \n\n\t x"; do
  for mode in 0 1 2 3; do
    printf "\\x0$mode$text" > "$SEEDS/tokenizer/text$i-$mode"
  done
  i=$((i + 1))
done

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
status=0
for t in gguf safetensors tokenizer; do
  corpus="$BUILD/fuzz-corpus/$t"
  mkdir -p "$corpus" "$BUILD/fuzz-artifacts/$t"
  echo "== fuzz_$t: ${SECONDS_EACH}s" >&2
  if ! "$BUILD/tests/fuzz/fuzz_$t" "$corpus" "$SEEDS/$t" -max_total_time="$SECONDS_EACH" \
      -timeout=10 -rss_limit_mb=2048 -max_len=400000 -print_final_stats=1 \
      -artifact_prefix="$BUILD/fuzz-artifacts/$t/" 2> "$BUILD/fuzz-$t.log"; then
    echo "fuzz_$t FAILED: see $BUILD/fuzz-$t.log and $BUILD/fuzz-artifacts/$t/" >&2
    tail -40 "$BUILD/fuzz-$t.log" >&2
    status=1
  else
    grep -E "stat::number_of_executed_units|cov:" "$BUILD/fuzz-$t.log" | tail -2 >&2
  fi
done
exit $status
