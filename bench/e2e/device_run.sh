#!/usr/bin/env bash
# Runs on the device machine (docs/gpu_testing.md): the binaries are built on the dev box and
# carried packed by scripts/pack_device.sh, because the device image lacks the project's
# libraries and cannot download. Results and logs go to $OUT.
#   tests  GPU tests (kernels, engine ops, CUDA backend vs CPU) + compute-sanitizer
#   e2e    Llama-3.1-8B-shaped synthetic model: sharq bench (bf16, nvfp4, sharq-nvfp4-24) and the
#          transformers BF16 peer, same card, same run
#   model  the default real model (joined from its carried parts): perplexity CPU vs GPU per mode
#          (2k tokens; GPU also on 8k tokens, against a CPU run with OPENBLAS_CORETYPE=Haswell
#          that can be made on any x86 box, spot-checked here), greedy bf16 generation CPU vs
#          GPU, compute-sanitizer on a short generation
#   stash  keeps the model parts (.device/m1, m2, m3) and the text a call carries in /tmp for a
#          later call on the warm machine (`model` joins them)
#   ab     decode with grouped linears off, graph replay off, the GEMM's PDL off (A/B for e2e)
#   abgroup  only the first of those
#   abmerged  prefill 1 x 2048 (bf16, sharq-nvfp4-24, sharq-nvfp4): the merged operand (default)
#            vs the two paths (SHARQ_CUDA_PREFILL=paths), AB_ROUNDS alternating rounds
#   abfuse   decode with PDL off, the fused residual adds off, the fused SwiGLU off, the fused
#            RoPE + KV store off (ABFUSE_VARS picks a subset); abfusebase the same bench, all on
#   prefill  bench_gemm prefill rows (wgmma kernel, and decode pass + cuBLAS: the engine's path)
#   abprefill  e2e prefill with the wgmma kernel instead (A/B)
#   abws   prefill 1 x 2048, sharq-nvfp4-24: the one-launch 2:4 kernel (default) vs decode pass +
#          cuBLAS
#   ab32   batch-32 decode with the decode GEMM vs the prefill GEMM for 32-row products
#   abshared  batch 8/16/32 decode: the shared-activation decode GEMM (default above 8 rows) vs
#             the per-tile kernel (SHARQ_CUDA_DECODE_SHARED=0) and the wgmma form (=2)
#   fulltext  GPU perplexity over the whole text (after stash + model)
# SKIP_CPU_PPL=1 skips the 2k-token CPU perplexities in `model`; TAR_OUT=1 packs $OUT into one
# archive at the end.
#   kernels  bench_gemm decode rows (issue 5), bench_group (grouped q/k/v and gate/up products)
#   abm1     batch 1/8 decode with the M = 1 decode kernel sized per grid (default) / off / at two
#            / at three blocks an SM (and an
#            older tree's binary, .device/pack/sharq_base, when carried)
#   abenv    decode with environment switches, alternating (ABENV_VARS, ABENV_BATCH, ABENV_MODES;
#            AB_ROUNDS, AB_REPEAT as abbase), summarised against the first switch set
#   abl2     batch 1/8 decode: the L2 prefetch of the next product's weights (off by default) at
#            several budgets (ABL2_VARS: name:VAR=v,VAR=v ...)
#   b1ratio  batch 1/8 decode, bf16 and sharq-nvfp4-24 in one run (the issue-6 ratio)
#   layers   batch 1/8 decode at 2, 8 and 32 layers (the step's fixed and per-layer parts)
#   abattn   batch 1/8 decode: the o projection's tensor max published by the attention combine
#            pass (default) vs its own max kernel (SHARQ_CUDA_FUSE_ATTN_MAX=0)
#   skipprof batch-1 decode with each decoder op skipped in turn (SHARQ_CUDA_PROFILE_SKIP): each
#            op's cost inside the recorded step (SKIP_MODES, SKIP_OPS)
#   abbase   decode (AB_BATCH, AB_MODES), this tree vs .device/pack/sharq_base.xz (+ AB_VARIANTS),
#            AB_ROUNDS alternating rounds of AB_REPEAT timed repeats, summarised (ab_summary.py)
#   abprefillbase  prefill 1 x 2048 + batch-1 decode, this tree vs .device/pack/sharq_base.xz
#   abprepare  bench_prepare, this tree vs .device/pack/bench_prepare_base.xz
#   abattnprefill  prefill 1 x 2048 (bf16, nvfp4, sharq-nvfp4-24): the tensor-core attention on
#            FP16 halves (default), on TF32 halves (SHARQ_CUDA_ATTN_PREFILL=tf32) and the FP32
#            CUDA-core kernel (=fp32)
#   kv16     prefill 1 x 2048 and decode batch 1/8/32 (bf16, sharq-nvfp4-24): the float32 KV
#            cache (default) vs --kv-cache f16, alternating, same call (KV16_CTX, default 1024)
#   kvmodel  the default real model (after stash) with --kv-cache f16: perplexity CPU (2k tokens)
#            vs GPU (2k and 8k) in bf16, nvfp4, sharq-nvfp4-24; greedy bf16 text CPU vs GPU;
#            memcheck on a short f16-cache generation
#   trace    kernel timelines of the decode step (dev/cuda/kernel_trace.cpp through CUPTI; the pack
#            needs TRACE=1 scripts/pack_device.sh): TRACE_MODES (default sharq-nvfp4-24,bf16) at
#            TRACE_BATCH (default 1,8), one CSV each, summarised by dev/cuda/ktrace_summary.py
#            (more files than a call returns: run it with TAR_OUT=1)
#   probes   the dev probes (dev/cuda: weight loads alone; the M = 1 product on row-major vs tiled
#            weights and through a bulk-copy ring; L2 prefetch; phase chain; sparse wgmma, 2:4 GEMM)
set -uo pipefail
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PACK="$ROOT/.device/pack"
B=/tmp/sharq
if [ ! -x "$B/bin/sharq" ]; then
  mkdir -p "$B" && tar -xJf "$PACK/bin.tar.xz" -C "$B" || exit 1
fi
export LD_LIBRARY_PATH="$B/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$OUT/device.txt"
date -u | tee -a "$OUT/device.txt"

phase_tests() {
  echo "== gpu tests"
  if [ -x "$B/bin/sharq_cuda_tests" ]; then
    "$B/bin/sharq_cuda_tests" >"$OUT/gpu_kernel_tests.log" 2>&1
    echo "kernel tests rc=$?"; grep -E "PASSED|FAILED" "$OUT/gpu_kernel_tests.log" | head -20
  fi
  "$B/bin/sharq_cuda_backend_tests" >"$OUT/gpu_backend_tests.log" 2>&1
  echo "backend tests rc=$?"; grep -E "PASSED|FAILED|Failure|rel_err|Expected" "$OUT/gpu_backend_tests.log" | head -40
  echo "== memcheck (backend, small decoders)"
  timeout 240 compute-sanitizer --tool memcheck --error-exitcode 3 "$B/bin/sharq_cuda_backend_tests" \
    --gtest_filter='*llama_sharq_nvfp4_24*:*llama_bf16*:*Batched*' >"$OUT/memcheck_backend.log" 2>&1
  echo "memcheck rc=$?"; tail -n 3 "$OUT/memcheck_backend.log"
}

phase_smoke() {  # a 4-layer 8B-shaped model, quick: the bench path end to end
  "$B/bin/sharq" bench --synthetic llama-3.1-8b --layers 4 --device cuda \
    --modes bf16,nvfp4,sharq-nvfp4,sharq-nvfp4-24 --prefill 512 --batch 1,8 --ctx 256 --steps 8 \
    --repeat 2 2>&1 | grep -v "^bench:"
}

phase_prefill() {  # prefill-regime GEMM rows (issue 5): wgmma kernel and decode pass + cuBLAS
  if [ -x "$B/bin/bench_gemm" ]; then
    timeout 400 "$B/bin/bench_gemm" "$OUT/bench_gemm_prefill.csv" prefill >"$OUT/bench_gemm_prefill.log" 2>&1
    echo "bench_gemm prefill rc=$?"; sed -n '/^Prefill (gemm_prefill/,$p' "$OUT/bench_gemm_prefill.log"
  fi
}

phase_abprefill() {  # the A/B for phase e2e's prefill: the one-launch wgmma kernel instead of cuBLAS
  SHARQ_CUDA_PREFILL=wgmma "$B/bin/sharq" bench --synthetic llama-3.1-8b --device cuda \
    --modes nvfp4,sharq-nvfp4-24 --prefill 2048 --batch 1 --ctx 1024 --steps 4 --repeat 3 \
    --json "$OUT/sharq_bench_wgmma_prefill.json" 2>&1 | grep -v "^bench:" | tail -n 4
}

phase_abws() {  # prefill 1 x 2048: sharq-nvfp4-24 on the one-launch 2:4 kernel (default) vs decode
  # pass + cuBLAS (SHARQ_CUDA_PREFILL=cublas), bf16 alongside, same call
  for v in ws:X=1 cublas:SHARQ_CUDA_PREFILL=cublas; do
    echo "== prefill ${v%%:*}"
    env "${v#*:}" "$B/bin/sharq" bench --synthetic llama-3.1-8b --device cuda \
      --modes bf16,sharq-nvfp4-24 --prefill 2048 --batch 1 --ctx 1024 --steps 4 --repeat 3 \
      --json "$OUT/sharq_bench_prefill_${v%%:*}.json" 2>&1 | grep -v "^bench:" | tail -n 4
  done
}

phase_abmerged() {  # prefill 1 x 2048: SharQ on the merged operand (default: one GEMM of hi and
  # the compacted lo) vs the two paths (SHARQ_CUDA_PREFILL=paths: the 2:4 kernel for
  # sharq-nvfp4-24, one cuBLAS GEMM per path for sharq-nvfp4), bf16 alongside, alternating rounds
  # (AB_ROUNDS, default 2), same call
  local r v
  for r in $(seq 1 "${AB_ROUNDS:-2}"); do
    for v in merged:X=1 paths:SHARQ_CUDA_PREFILL=paths; do
      echo "== prefill ${v%%:*} round $r"
      env "${v#*:}" "$B/bin/sharq" bench --synthetic llama-3.1-8b --device cuda \
        --modes bf16,sharq-nvfp4-24,sharq-nvfp4 --prefill 2048 --batch 1 --ctx 1024 --steps 4 \
        --repeat 3 --json "$OUT/sharq_bench_prefill_${v%%:*}_r$r.json" 2>&1 | grep -v "^bench:" |
        tail -n 5
    done
  done
}

phase_abgroup() {  # the A/B for phase e2e, same card: grouped linears (q/k/v, gate/up) off
  SHARQ_CUDA_GROUP=0 "$B/bin/sharq" bench --synthetic llama-3.1-8b --device cuda \
    --modes bf16,sharq-nvfp4-24 --prefill 128 --batch 1,8 --ctx 1024 --steps 16 --repeat 2 \
    --json "$OUT/sharq_bench_nogroup.json" 2>&1 | grep -v "^bench:" | tail -n 6
}

phase_abfusebase() {  # the abfuse bench with everything on (the reference for a quick A/B)
  "$B/bin/sharq" bench --synthetic llama-3.1-8b --device cuda \
    --modes bf16,sharq-nvfp4-24 --prefill 128 --batch 1,8 --ctx 1024 --steps 16 --repeat 2 \
    --json "$OUT/sharq_bench_abbase.json" 2>&1 | grep -v "^bench:" | tail -n 3
}

phase_abfuse() {  # the A/B for phase e2e, same card: PDL off (every kernel), fused residual adds off
  for v in ${ABFUSE_VARS:-SHARQ_CUDA_PDL SHARQ_CUDA_FUSE_ADD SHARQ_CUDA_FUSE_SWIGLU SHARQ_CUDA_FUSE_ROPE}; do
    echo "-- $v=0"
    env $v=0 "$B/bin/sharq" bench --synthetic llama-3.1-8b --device cuda \
      --modes bf16,sharq-nvfp4-24 --prefill 128 --batch 1,8 --ctx 1024 --steps 16 --repeat 2 \
      --json "$OUT/sharq_bench_no_$v.json" 2>&1 | grep -v "^bench:" | tail -n 3
  done
}

phase_ab() {  # the A/B for phase e2e, same card: grouped linears off, graph replay off, PDL off
  phase_abgroup
  SHARQ_CUDA_GRAPHS=0 "$B/bin/sharq" bench --synthetic llama-3.1-8b --device cuda \
    --modes bf16,sharq-nvfp4-24 --prefill 128 --batch 1,8 --ctx 1024 --steps 16 --repeat 2 \
    --json "$OUT/sharq_bench_nographs.json" 2>&1 | grep -v "^bench:" | tail -n 6
  SHARQ_CUDA_PDL=0 "$B/bin/sharq" bench --synthetic llama-3.1-8b --device cuda \
    --modes sharq-nvfp4-24 --prefill 128 --batch 1 --ctx 1024 --steps 16 --repeat 2 \
    --json "$OUT/sharq_bench_nopdl.json" 2>&1 | grep -v "^bench:" | tail -n 3
}

phase_fulltext() {  # the whole text (95k tokens) on the GPU, for the CPU references made elsewhere
  join_model || return
  "$B/bin/sharq" perplexity -m /tmp/sharq_stash/model.gguf -f /tmp/sharq_stash/devil.txt \
    --modes "${FULL_MODES:-sharq-nvfp4,sharq-nvfp4-24,nvfp4,bf16}" --ctx 512 --device cuda \
    --json "$OUT/ppl_cuda_full.json" 2>/dev/null
}

phase_ab32() {  # batch 32: the decode kernel (default) vs the prefill kernel for 32-row GEMMs
  for rows in 32 16; do
    SHARQ_CUDA_DECODE_ROWS=$rows "$B/bin/sharq" bench --synthetic llama-3.1-8b --device cuda \
      --modes nvfp4,sharq-nvfp4-24 --prefill 128 --batch 32 --ctx 1024 --steps 16 --repeat 2 \
      2>&1 | grep -v "^bench:" | tail -n 3
  done
}

phase_abshared() {  # batched decode: shared-activation decode GEMM (default) vs the per-tile one
  # (0) and its wgmma form (2); ABSHARED_VARS picks and orders them
  for v in ${ABSHARED_VARS:-default 0 2}; do
    echo "-- SHARQ_CUDA_DECODE_SHARED=$v"
    SHARQ_CUDA_DECODE_SHARED=$v "$B/bin/sharq" bench --synthetic llama-3.1-8b --device cuda \
      --modes bf16,nvfp4,sharq-nvfp4-24 --prefill 128 --batch 8,16,32 --ctx 1024 --steps 16 \
      --repeat 2 --json "$OUT/sharq_bench_shared_$v.json" 2>&1 | grep -v "^bench:" | tail -n 4
  done
}

phase_probes() {  # PROBE_LIST picks some
  for p in ${PROBE_LIST:-decode_layout_probe decode_tiled_math_probe l2_prefetch_probe phase_chain_probe sparse_wgmma_probe sparse_gemm_probe sparse_gemm_tma_probe sharq_prefill_ws_probe prefill_overlap_probe}; do
    if [ -x "$B/bin/$p" ]; then
      echo "== $p"; timeout 200 "$B/bin/$p" 2>&1 | tee "$OUT/$p.log"
    fi
  done
}

phase_abm1() {  # batch 1/8 decode: the M = 1 kernel (default: sized by grid) vs off, 2 / 3 blocks an SM;
  # with .device/pack/sharq_base (an older tree's sharq, stripped) also that binary, same call
  local s=(default:X=1 m1_off:SHARQ_CUDA_DECODE_M1=0 m1_minb2:SHARQ_CUDA_DECODE_M1=2
    m1_minb3:SHARQ_CUDA_DECODE_M1=3)
  [ -x "$PACK/sharq_base" ] && s=(base:X=1 "${s[@]}" base:X=1)
  for v in "${s[@]}"; do
    local name=${v%%:*} bin="$B/bin/sharq"
    [ "$name" = base ] && bin="$PACK/sharq_base"
    echo "-- $name (${v#*:})"
    env "${v#*:}" "$bin" bench --synthetic llama-3.1-8b --device cuda --modes sharq-nvfp4-24 \
      --prefill 128 --batch 1,8 --ctx 1024 --steps 32 --repeat 3 \
      --json "$OUT/abm1_${name}_$RANDOM.json" 2>&1 | grep -v "^bench:" | tail -n 1
  done
}

phase_abl2() {  # batch 1/8 decode: the L2 prefetch of the next product's weights (off by default)
  # at several budgets; ABL2_VARS picks a subset (name:VAR=v,VAR=v ...)
  local s=(${ABL2_VARS:-default:X=1 l2_16:SHARQ_CUDA_L2_PREFETCH_MB=16
    l2_24:SHARQ_CUDA_L2_PREFETCH_MB=24 l2_40:SHARQ_CUDA_L2_PREFETCH_MB=40 default2:X=1})
  for v in "${s[@]}"; do
    local name=${v%%:*} vars=${v#*:}
    echo "-- $name ($vars)"
    timeout 150 env ${vars//,/ } "$B/bin/sharq" bench --synthetic llama-3.1-8b --device cuda \
      --modes sharq-nvfp4-24 --prefill 128 --batch 1,8 --ctx 1024 --steps 32 --repeat 3 \
      --json "$OUT/abl2_${name}.json" 2>&1 | grep -v "^bench:" | tail -n 1
  done
}

phase_abenv() {  # decode with environment switches (ABENV_VARS: name:VAR=v,VAR=v ...), two
  # alternating rounds, same call; ABENV_BATCH (default 8,16,32) and ABENV_MODES pick the rows
  local s=(${ABENV_VARS:-default:X=1 old:SHARQ_CUDA_DECODE_SPLIT_OLD=1})
  for r in $(seq 1 "${AB_ROUNDS:-2}"); do
    for v in "${s[@]}"; do
      local name=${v%%:*} vars=${v#*:}
      echo "-- $name ($vars) run $r"
      timeout 150 env ${vars//,/ } "$B/bin/sharq" bench --synthetic llama-3.1-8b --device cuda \
        --modes "${ABENV_MODES:-sharq-nvfp4-24}" --prefill 16 --batch "${ABENV_BATCH:-8,16,32}" \
        --ctx 1024 --steps 16 --repeat "${AB_REPEAT:-2}" --json "$OUT/abenv_${name}_$r.json" 2>&1 |
        grep -v "^bench:" | tail -n 1
    done
  done
  python3 "$ROOT/bench/e2e/ab_summary.py" --reference "${s[0]%%:*}" "$OUT"/abenv_*.json
}

phase_skipprof() {  # batch-1 decode with each decoder op skipped in turn (SHARQ_CUDA_PROFILE_SKIP,
  # outputs wrong, timing only): the op's cost inside the recorded step; SKIP_MODES, SKIP_OPS pick
  for mode in ${SKIP_MODES:-sharq-nvfp4-24}; do
    for op in ${SKIP_OPS:-none norm qkv rope attn opass o gateup swiglu down lmhead none}; do
      local v=""; [ "$op" != none ] && v="SHARQ_CUDA_PROFILE_SKIP=$op"
      echo "-- $mode skip $op"
      timeout 100 env $v "$B/bin/sharq" bench --synthetic llama-3.1-8b --device cuda \
        --modes "$mode" --prefill 16 --batch 1 --ctx 1024 --steps 32 --repeat 5 \
        --json "$OUT/skip_${mode}_${op}.json" 2>&1 | grep -v "^bench:" | tail -n 1
    done
  done
}

unpack_base() {  # .device/pack/<name>.xz (an older tree's binary, stripped, xz) -> $B/bin/<name>
  [ -f "$PACK/$1.xz" ] || { echo "no $PACK/$1.xz"; return 1; }
  [ -x "$B/bin/$1" ] || { xz -dc "$PACK/$1.xz" >"$B/bin/$1" && chmod +x "$B/bin/$1"; }
}

phase_abbase() {  # decode (AB_BATCH, default 1; AB_MODES): this tree against an older tree's sharq
  # (.device/pack/sharq_base.xz, stripped and xz-compressed), alternating, same call
  unpack_base sharq_base || return
  # AB_VARIANTS: also this tree with each VAR=value (e.g. a switch turned off), in the same rotation;
  # AB_ROUNDS rotations (default 2), AB_REPEAT timed repeats a run (default 3); ab_summary.py then
  # prints each variant's median, range and change against base
  for r in $(seq 1 "${AB_ROUNDS:-2}"); do
    for v in base new ${AB_VARIANTS:-}; do
      local bin=sharq env_set=X=1  # X=1: a no-op assignment, so `env` runs the plain tree
      [ "$v" = base ] && bin=sharq_base
      [ "$v" != base ] && [ "$v" != new ] && env_set="$v"
      echo "-- $v run $r"
      timeout 150 env "$env_set" "$B/bin/$bin" bench --synthetic llama-3.1-8b --device cuda \
        --modes "${AB_MODES:-bf16,sharq-nvfp4-24}" --prefill 16 --batch "${AB_BATCH:-1}" --ctx 1024 --steps 32 --repeat "${AB_REPEAT:-3}" \
        --json "$OUT/abbase_${v//[^A-Za-z0-9_]/_}_$r.json" 2>&1 | grep -v "^bench:" | tail -n 3
    done
  done
  python3 "$ROOT/bench/e2e/ab_summary.py" "$OUT"/abbase_*.json
}

phase_kv16() {  # the float32 KV cache vs --kv-cache f16, alternating, same call
  for r in 1 2; do
    for kv in f32 f16; do
      echo "-- kv cache $kv run $r"
      timeout 200 "$B/bin/sharq" bench --synthetic llama-3.1-8b --device cuda --kv-cache "$kv" \
        --modes bf16,sharq-nvfp4-24 --prefill 2048 --batch 1,8,32 --ctx "${KV16_CTX:-1024}" \
        --steps 16 --repeat 3 --json "$OUT/kv16_${kv}_$r.json" 2>&1 | grep -v "^bench:" | tail -n 3
    done
  done
}

phase_abprefillbase() {  # prefill 1 x 2048 and batch-1 decode (bf16, sharq-nvfp4-24): this tree
  # against an older tree's sharq (.device/pack/sharq_base.xz), alternating, same call
  unpack_base sharq_base || return
  for r in 1 2; do
    for v in base new; do
      local bin=sharq; [ "$v" = base ] && bin=sharq_base
      echo "-- $v run $r"
      timeout 150 "$B/bin/$bin" bench --synthetic llama-3.1-8b --device cuda \
        --modes bf16,sharq-nvfp4-24 --prefill 2048 --batch 1 --ctx 1024 --steps 4 --repeat 3 \
        --json "$OUT/abprefill_${v}_$r.json" 2>&1 | grep -v "^bench:" | tail -n 3
    done
  done
}

phase_abattnprefill() {  # prefill 1 x 2048: tensor-core attention on FP16 halves (default), on
  # TF32 halves, FP32 cores, alternating, same call (AB_ATTN picks the variants)
  for r in 1 2; do
    for v in ${AB_ATTN:-f16 tf32 fp32}; do
      echo "-- attention $v run $r"
      SHARQ_CUDA_ATTN_PREFILL=$v timeout 150 "$B/bin/sharq" bench --synthetic llama-3.1-8b \
        --device cuda --modes bf16,nvfp4,sharq-nvfp4-24 --prefill 2048 --batch 1 --ctx 1024 \
        --steps 4 --repeat 3 --json "$OUT/abattnprefill_${v}_$r.json" 2>&1 | grep -v "^bench:" |
        tail -n 4
    done
  done
}

phase_abprepare() {  # bench_prepare (every schedule, rows 1-2048): this tree, an older tree's
  # (.device/pack/bench_prepare_base.xz), this tree again
  unpack_base bench_prepare_base || return
  for v in new base new2; do
    local bin=bench_prepare; [ "$v" = base ] && bin=bench_prepare_base
    echo "-- bench_prepare $v"
    timeout 200 "$B/bin/$bin" "$OUT/bench_prepare_$v.csv" >"$OUT/bench_prepare_$v.log" 2>&1
    echo "rc=$?"; grep "^|" "$OUT/bench_prepare_$v.log" | head -40
  done
}

phase_abattn() {  # batch 1/8 decode: the attention-published o-prepare max (default) vs the whole
  # prepare (SHARQ_CUDA_FUSE_ATTN_MAX=0), alternating, sharq-nvfp4-24 and nvfp4
  for v in fused:X=1 separate:SHARQ_CUDA_FUSE_ATTN_MAX=0 fused2:X=1 separate2:SHARQ_CUDA_FUSE_ATTN_MAX=0; do
    local name=${v%%:*}
    echo "-- $name (${v#*:})"
    timeout 200 env "${v#*:}" "$B/bin/sharq" bench --synthetic llama-3.1-8b --device cuda \
      --modes sharq-nvfp4-24,nvfp4 --prefill 128 --batch 1,8 --ctx 1024 --steps 32 --repeat 3 \
      --json "$OUT/abattn_${name}.json" 2>&1 | grep -v "^bench:" | tail -n 2
  done
}

phase_layers() {  # decode step time vs layer count (2, 8, 32): its fixed part (embedding, final norm,
  # LM head, logits to the host, the host loop) and its per-layer part, bf16 and sharq-nvfp4-24
  for l in 2 8 32; do
    echo "-- layers $l"
    timeout 200 "$B/bin/sharq" bench --synthetic llama-3.1-8b --layers $l --device cuda \
      --modes bf16,sharq-nvfp4-24 --prefill 128 --batch 1,8 --ctx 1024 --steps 32 --repeat 3 \
      --json "$OUT/layers_$l.json" 2>&1 | grep -v "^bench:" | tail -n 2
  done
}

phase_b1ratio() {  # batch 1 and 8: bf16 and sharq-nvfp4-24 (defaults), same run
  timeout 300 "$B/bin/sharq" bench --synthetic llama-3.1-8b --device cuda --modes bf16,sharq-nvfp4-24 \
    --prefill 128 --batch 1,8 --ctx 1024 --steps 32 --repeat 3 --json "$OUT/b1ratio.json" 2>&1 |
    grep -v "^bench:" | tail -n 4
}

phase_gemmtests() {  # the decode GEMM tests alone (every kernel variant)
  "$B/bin/sharq_cuda_tests" --gtest_filter='*GemmDecode*' >"$OUT/gpu_gemm_decode_tests.log" 2>&1
  echo "decode GEMM tests rc=$?"; grep -E "PASSED|FAILED|Failure|rel|Expected|Which is" "$OUT/gpu_gemm_decode_tests.log" | head -40
}

phase_kernels() {  # decode-regime GEMM/linear table (issue 5), graph-timed columns included
  if [ -x "$B/bin/bench_gemm" ]; then
    timeout 300 "$B/bin/bench_gemm" "$OUT/bench_gemm_decode.csv" decode >"$OUT/bench_gemm_decode.log" 2>&1
    echo "bench_gemm rc=$?"; sed -n "/as the engine issues it/,/^Prefill (gemm_prefill/p" "$OUT/bench_gemm_decode.log"
  fi
  if [ -x "$B/bin/bench_group" ]; then
    timeout 200 "$B/bin/bench_group" "$OUT/bench_group.csv" >"$OUT/bench_group.log" 2>&1
    echo "bench_group rc=$?"; cat "$OUT/bench_group.log"
  fi
}

phase_e2e() {
  echo "== sharq bench, Llama-3.1-8B shape (random weights)"
  "$B/bin/sharq" bench --synthetic llama-3.1-8b --device cuda --modes bf16,nvfp4,sharq-nvfp4-24 \
    --prefill 2048 --batch 1,8,32 --ctx 1024 --steps 16 --repeat 3 --json "$OUT/sharq_bench.json" \
    2>&1 | tee "$OUT/sharq_bench.log" | grep -v "^bench:"
  echo "== transformers peer"
  PYTHONUNBUFFERED=1 python3 "$ROOT/bench/e2e/hf_peer.py" --prefill 2048 --batch 1,8,32 --ctx 1024 \
    --steps 16 --repeat 3 --json "$OUT/hf_peer.json" 2>&1 | grep -v '^ ' | tee "$OUT/hf_peer.log" | tail -n 8
}

# A call replaces every carried folder, so the model parts carried earlier and the text wait in
# /tmp (kept while the machine stays warm) for the call that carries the last part.
phase_kvmodel() {
  join_model || return
  local M=/tmp/sharq_stash/model.gguf T=/tmp/sharq_stash/devil.txt modes=bf16,nvfp4,sharq-nvfp4-24
  echo "== perplexity, --kv-cache f16: cpu 2k, cuda 2k, cuda 8k"
  "$B/bin/sharq" perplexity -m "$M" -f "$T" --modes "$modes" --ctx 512 --max-tokens 2048 \
    --kv-cache f16 --json "$OUT/ppl16_cpu.json" 2>/dev/null
  "$B/bin/sharq" perplexity -m "$M" -f "$T" --modes "$modes" --ctx 512 --max-tokens 2048 \
    --kv-cache f16 --device cuda --json "$OUT/ppl16_cuda.json" 2>/dev/null
  "$B/bin/sharq" perplexity -m "$M" -f "$T" --modes "$modes" --ctx 512 --max-tokens 8192 \
    --kv-cache f16 --device cuda --json "$OUT/ppl16_cuda_8k.json" 2>/dev/null
  echo "== greedy generation, bf16, --kv-cache f16, cpu vs cuda (64 tokens)"
  local P="The Devil's Dictionary defines a cynic as"
  "$B/bin/sharq" generate -m "$M" -p "$P" -n 64 --mode bf16 --kv-cache f16 >"$OUT/gen16_cpu.txt" 2>/dev/null
  "$B/bin/sharq" generate -m "$M" -p "$P" -n 64 --mode bf16 --kv-cache f16 --device cuda \
    >"$OUT/gen16_cuda.txt" 2>/dev/null
  if [ -s "$OUT/gen16_cpu.txt" ] && cmp -s "$OUT/gen16_cpu.txt" "$OUT/gen16_cuda.txt"; then
    echo "generation: identical"
  else
    echo "generation: DIFFERS (or failed)"; cat "$OUT/gen16_cpu.txt"
  fi
  cat "$OUT/gen16_cuda.txt"
  timeout 200 compute-sanitizer --tool memcheck --error-exitcode 3 "$B/bin/sharq" generate -m "$M" \
    -p "$P" -n 8 --mode sharq-nvfp4-24 --kv-cache f16 --device cuda >"$OUT/memcheck_gen16.log" 2>&1
  echo "memcheck generate sharq-nvfp4-24 f16 rc=$?"; tail -n 2 "$OUT/memcheck_gen16.log"
}

phase_stash() {  # the model parts (and the text) this call carries, kept for a later call
  mkdir -p /tmp/sharq_stash
  local f
  for f in "$ROOT"/.device/m*/part* "$PACK/devil.txt"; do
    [ -f "$f" ] && cp "$f" /tmp/sharq_stash/
  done
  ls -la /tmp/sharq_stash
}

join_model() {  # the default model from its three parts: stashed by earlier calls or carried now
  local M=/tmp/sharq_stash/model.gguf
  if [ ! -f "$M" ]; then
    phase_stash >/dev/null
    local i
    for i in 0 1 2; do
      [ -f /tmp/sharq_stash/part$i ] || { echo "join_model: model part $i missing (stash it first)"; return 1; }
    done
    cat /tmp/sharq_stash/part0 /tmp/sharq_stash/part1 /tmp/sharq_stash/part2 >"$M"
  fi
  sha256sum "$M" | tee -a "$OUT/device.txt"
}

phase_model() {
  join_model || return
  local M=/tmp/sharq_stash/model.gguf
  local T=/tmp/sharq_stash/devil.txt
  local modes=bf16,nvfp4,sharq-nvfp4,sharq-nvfp4-24,sharq-nvfp4-pt,sharq-mxfp4,sharq-hif4
  if [ "${SKIP_CPU_PPL:-0}" != 1 ]; then
    echo "== perplexity cpu"
    "$B/bin/sharq" perplexity -m "$M" -f "$T" --modes "$modes" --ctx 512 --max-tokens 2048 \
      --json "$OUT/ppl_cpu.json" 2>/dev/null
  fi
  echo "== perplexity cuda"
  "$B/bin/sharq" perplexity -m "$M" -f "$T" --modes "$modes" --ctx 512 --max-tokens 2048 \
    --device cuda --json "$OUT/ppl_cuda.json" 2>/dev/null
  echo "== perplexity cuda, 8k tokens"
  "$B/bin/sharq" perplexity -m "$M" -f "$T" --modes "$modes" --ctx 512 --max-tokens 8192 \
    --device cuda --json "$OUT/ppl_cuda_8k.json" 2>/dev/null
  echo "== perplexity cpu, OpenBLAS Haswell kernels (same bits on any x86 box?)"
  OPENBLAS_CORETYPE=Haswell "$B/bin/sharq" perplexity -m "$M" -f "$T" --modes sharq-nvfp4,nvfp4 \
    --ctx 512 --max-tokens 1024 --json "$OUT/ppl_cpu_haswell_1k.json" 2>/dev/null
  echo "== greedy generation, bf16, cpu vs cuda (64 tokens)"
  local P="The Devil's Dictionary defines a cynic as"
  "$B/bin/sharq" generate -m "$M" -p "$P" -n 64 --mode bf16 >"$OUT/gen_cpu.txt" 2>"$OUT/gen_cpu.err"
  "$B/bin/sharq" generate -m "$M" -p "$P" -n 64 --mode bf16 --device cuda >"$OUT/gen_cuda.txt" 2>"$OUT/gen_cuda.err"
  if [ -s "$OUT/gen_cpu.txt" ] && cmp -s "$OUT/gen_cpu.txt" "$OUT/gen_cuda.txt"; then
    echo "generation: identical"
  else
    echo "generation: DIFFERS (or failed)"; cat "$OUT/gen_cpu.err" "$OUT/gen_cpu.txt"
  fi
  cat "$OUT/gen_cuda.txt"; tail -n 2 "$OUT/gen_cuda.err"
  "$B/bin/sharq" generate -m "$M" -p "$P" -n 64 --mode sharq-nvfp4-24 --device cuda 2>&1 | tail -n 3
  echo "== memcheck on a short generation (sharq-nvfp4-24 and bf16)"
  for mode in sharq-nvfp4-24 bf16; do
    timeout 200 compute-sanitizer --tool memcheck --error-exitcode 3 "$B/bin/sharq" generate -m "$M" \
      -p "$P" -n 8 --mode $mode --device cuda >"$OUT/memcheck_gen_$mode.log" 2>&1
    echo "memcheck generate $mode rc=$?"; tail -n 2 "$OUT/memcheck_gen_$mode.log"
  done
}

phase_trace() {  # kernel timelines (TRACE_MODES x TRACE_BATCH), batch-b decode at ctx 1024
  [ -f "$PACK/libktrace.so" ] || { echo "no $PACK/libktrace.so (TRACE=1 scripts/pack_device.sh)"; return 1; }
  cp "$PACK/libcupti.so.13" "$B/lib/" 2>/dev/null
  local mode b
  for mode in ${TRACE_MODES//,/ }; do
    for b in ${TRACE_BATCH//,/ }; do
      echo "== trace $mode batch $b"
      KTRACE_OUT="$OUT/ktrace_${mode}_b$b.csv" LD_PRELOAD="$PACK/libktrace.so" timeout 150 \
        "$B/bin/sharq" bench --synthetic llama-3.1-8b --device cuda --modes "$mode" --prefill 16 \
        --batch "$b" --ctx 1024 --steps 8 --repeat 1 2>&1 | grep -E "^$mode |kernel_trace"
      python3 "$ROOT/dev/cuda/ktrace_summary.py" "$OUT/ktrace_${mode}_b$b.csv" --steps 6 \
        >"$OUT/ktrace_${mode}_b$b.txt" 2>&1 && head -n 14 "$OUT/ktrace_${mode}_b$b.txt"
      xz -f "$OUT/ktrace_${mode}_b$b.csv"
    done
  done
}
TRACE_MODES="${TRACE_MODES:-sharq-nvfp4-24,bf16}" TRACE_BATCH="${TRACE_BATCH:-1,8}"

for p in "$@"; do "phase_$p"; done
# The device tool brings back a handful of files per call: everything goes back as one archive.
if [ "${TAR_OUT:-0}" = 1 ]; then
  (cd "$OUT" && tar -czf /tmp/results.tgz . && rm -rf ./* && mv /tmp/results.tgz .)
fi
