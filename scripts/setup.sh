#!/usr/bin/env bash
# Installs what sharq needs to build and test, from Debian packages and PyPI, skipping what is
# already there. Safe to run repeatedly. Does not build anything (see build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

debs=(cmake ninja-build g++ pkg-config python3 python3-pip
      libgtest-dev libgmock-dev libbenchmark-dev libopenblas-dev
      nlohmann-json3-dev libcli11-dev libpcre2-dev libutf8proc-dev
      clang libclang-rt-14-dev gnuplot-nox unzip)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! python3 -c "import numpy, ml_dtypes" >/dev/null 2>&1; then
  echo "setup: installing Python test requirements"
  python3 -m pip install -q -r scripts/requirements-test.txt ||
    python3 -m pip install -q --break-system-packages -r scripts/requirements-test.txt
fi
# cuSPARSELt (headers + libcusparseLt.so) for bench_sparselt, the 2:4 baseline; optional.
python3 -m pip install -q nvidia-cusparselt-cu13 2>/dev/null ||
  python3 -m pip install -q --break-system-packages nvidia-cusparselt-cu13 || true
