#!/usr/bin/env bash
# Fetches the human-written evaluation text into data/ (git-ignored) and prints its path:
# Ambrose Bierce's "The Devil's Dictionary" (1911, public domain) from Debian's dict-devil.
# Idempotent; needs apt-get (for `apt-get download`), dpkg-deb and gunzip. Not a corpus builder.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DATA="${SHARQ_DATA_DIR:-$ROOT/data}"
TEXT="$DATA/devil.txt"
PKG=dict-devil

if [ ! -s "$TEXT" ]; then
  mkdir -p "$DATA"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download "$PKG" >/dev/null 2>&1) || {
    apt-get update >/dev/null 2>&1 || true
    (cd "$tmp" && apt-get download "$PKG" >&2)
  }
  dpkg-deb -x "$tmp"/${PKG}_*.deb "$tmp/x"
  cp "$tmp/x/usr/share/doc/$PKG/copyright" "$DATA/devil.copyright"
  # .dict.dz is dictzip, a gzip-compatible format.
  gunzip -c "$tmp/x/usr/share/dictd/devil.dict.dz" > "$TEXT.part"
  mv "$TEXT.part" "$TEXT"
fi
echo "$TEXT"
