#!/usr/bin/env bash
# CLI test of `sharq inspect|generate|perplexity|logits` on the tiny llama3 fixture (GGUF and HF
# folder).
# Checks that the commands run, agree across formats and are deterministic; not an accuracy test.
set -euo pipefail
: "${SHARQ_BIN:?}" "${SHARQ_FIXTURES_BIN:?}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$SHARQ_FIXTURES_BIN" "$tmp" > /dev/null
gguf="$tmp/tiny-llama3.gguf"
hf="$tmp/tiny-llama3"

"$SHARQ_BIN" inspect -m "$gguf" > "$tmp/inspect.txt"
grep -q "architecture  llama" "$tmp/inspect.txt"
grep -q "model.layers.0.self_attn.q_proj.weight" "$tmp/inspect.txt"

# Greedy generation: deterministic, and the same from both file formats.
a="$("$SHARQ_BIN" generate -m "$gguf" -p "hello world" -n 8 --mode sharq-nvfp4 2> "$tmp/gen.err")"
b="$("$SHARQ_BIN" generate -m "$hf" -p "hello world" -n 8 --mode sharq-nvfp4 2> /dev/null)"
[ "$a" == "$b" ] || { echo "gguf and hf outputs differ: '$a' vs '$b'"; exit 1; }
grep -q "prefill:" "$tmp/gen.err"
grep -q "decode:" "$tmp/gen.err"
s1="$("$SHARQ_BIN" generate -m "$gguf" -p "hi" -n 8 --temp 0.8 --top-p 0.9 --seed 3 2> /dev/null)"
s2="$("$SHARQ_BIN" generate -m "$gguf" -p "hi" -n 8 --temp 0.8 --top-p 0.9 --seed 3 2> /dev/null)"
[ "$s1" == "$s2" ] || { echo "seeded sampling is not deterministic"; exit 1; }

for i in $(seq 40); do echo "the quick brown fox jumps over the lazy dog $i times."; done > "$tmp/text.txt"
"$SHARQ_BIN" perplexity -m "$gguf" -f "$tmp/text.txt" --modes bf16,sharq-nvfp4 --ctx 32 \
  --max-tokens 200 --json "$tmp/ppl.json" > "$tmp/ppl.txt" 2> "$tmp/ppl.err"
grep -q "sharq-nvfp4" "$tmp/ppl.txt"
python3 - "$tmp/ppl.json" <<'PY'
import json, math, sys
j = json.load(open(sys.argv[1]))
r = j["results"]
assert [x["mode"] for x in r] == ["bf16", "sharq-nvfp4"], r
for x in r:
    assert x["windows"] == 6 and x["tokens_evaluated"] == 6 * 31, x
    assert math.isfinite(x["perplexity"]) and x["perplexity"] > 1, x
PY
"$SHARQ_BIN" perplexity -m "$gguf" -f "$tmp/text.txt" --modes f32,nvfp4 --ctx 32 \
  --max-tokens 64 > "$tmp/ppl2.txt" 2> /dev/null
grep -q "^f32 " "$tmp/ppl2.txt"
# --kv-cache f16: the JSON names the format; the perplexity is finite and close to f32's.
"$SHARQ_BIN" perplexity -m "$gguf" -f "$tmp/text.txt" --modes bf16 --ctx 32 --max-tokens 200 \
  --kv-cache f16 --json "$tmp/ppl16.json" > /dev/null 2> /dev/null
python3 - "$tmp/ppl.json" "$tmp/ppl16.json" <<'PY'
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert a["kv_cache"] == "f32" and b["kv_cache"] == "f16", (a["kv_cache"], b["kv_cache"])
pa, pb = a["results"][0]["perplexity"], b["results"][0]["perplexity"]
assert abs(pb / pa - 1) < 0.01, (pa, pb)
PY
g16="$("$SHARQ_BIN" generate -m "$gguf" -p "hello" -n 4 --kv-cache f16 2> /dev/null)"
[ -n "$g16" ] || { echo "generate --kv-cache f16 printed nothing"; exit 1; }

# f32 logits: the same from GGUF and HF folder (the fixture's weights are exact in both).
"$SHARQ_BIN" logits -m "$gguf" --tokens 1,5,9,33 -o "$tmp/a.npy"
"$SHARQ_BIN" logits -m "$hf" --tokens 1,5,9,33 -o "$tmp/b.npy"
python3 - "$tmp/a.npy" "$tmp/b.npy" <<'PY'
import sys
import numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
assert a.shape == b.shape and a.shape[0] == 4, (a.shape, b.shape)
assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max(), np.abs(a - b).max()
PY
# bench: a synthetic model on the CPU; table + JSON with every mode, batch and a weight size.
"$SHARQ_BIN" bench --synthetic llama-tiny --modes bf16,sharq-nvfp4 --prefill 16 --batch 1,2 \
  --ctx 8,24 --steps 2 --repeat 1 --json "$tmp/bench.json" > "$tmp/bench.txt" 2> /dev/null
grep -q "^sharq-nvfp4 " "$tmp/bench.txt"
python3 - "$tmp/bench.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
r = j["results"]
assert [x["mode"] for x in r] == ["bf16", "sharq-nvfp4"], r
for x in r:
    assert x["prefill_seconds"] > 0 and x["linear_weight_bytes"] > 0, x
    assert [(d["batch"], d["ctx"]) for d in x["decode"]] == [(1, 8), (2, 8), (1, 24), (2, 24)], x
    assert all(d["tokens_per_s"] > 0 for d in x["decode"]), x
    # The CPU records nothing: every decode step ran as plain ops.
    assert all(d["steps_replayed"] == 0 for d in x["decode"]), x
    # The caches' bytes: 2 x layers x batch x kv_heads x (ctx + 2 x steps) x head_dim x 4 on the
    # CPU (float32 storage); the ratio between rows is exact whatever the fixture's shape.
    kv = {(d["batch"], d["ctx"]): d["kv_cache_bytes"] for d in x["decode"]}
    assert kv[(2, 8)] == 2 * kv[(1, 8)] and kv[(1, 24)] * 12 == kv[(1, 8)] * 28, kv
PY
# Bad requests fail with one clear line.
expect_error() {  # expected message fragment, then the command
  local want="$1"; shift
  if "$@" > /dev/null 2> "$tmp/err.txt"; then echo "expected failure: $*"; exit 1; fi
  grep -q "$want" "$tmp/err.txt" || { echo "missing '$want' in: $(cat "$tmp/err.txt")"; exit 1; }
}
expect_error "unknown synthetic model" "$SHARQ_BIN" bench --synthetic nope
expect_error "exactly one of" "$SHARQ_BIN" bench
expect_error "bad --batch" "$SHARQ_BIN" bench --synthetic llama-tiny --batch 1,x
expect_error "bad --ctx" "$SHARQ_BIN" bench --synthetic llama-tiny --ctx 0
expect_error "unknown device" "$SHARQ_BIN" generate -m "$gguf" -p hi -n 1 --device tpu
expect_error "kv-cache" "$SHARQ_BIN" generate -m "$gguf" -p hi -n 1 --kv-cache bf16
# No GPU here: the CUDA device is refused with a reason (no device, or a build without CUDA).
expect_error "cuda\|CUDA" "$SHARQ_BIN" generate -m "$gguf" -p hi -n 1 --device cuda
echo "engine CLI ok"
