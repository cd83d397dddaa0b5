#!/usr/bin/env bash
# Device machine: ncu counters of the rung 3 prefill kernel's variants (sharq_prefill_ws_probe
# --profile: 2:4 SharQ and dense NVFP4 at 2048 x 6144 x 4096, each with its decode, without it,
# and with the decode's stores only), then their stall reasons per issued instruction.
# PROBE names the binary (default: the packed one, else ./sharq_prefill_ws_probe); MODE=shapes
# profiles the engine's configuration at o's and gate/up's shapes instead (--profile-shapes).
set -uo pipefail
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu | head -n 1)
P="${PROBE:-/tmp/sharq/bin/sharq_prefill_ws_probe}"
[ -x "$P" ] || P=./sharq_prefill_ws_probe
M="gpu__time_duration.sum,sm__throughput.avg.pct_of_peak_sustained_elapsed"
M+=",smsp__issue_active.avg.pct_of_peak_sustained_active"
M+=",sm__inst_executed_pipe_alu.avg.pct_of_peak_sustained_active"
M+=",sm__inst_executed_pipe_fma.avg.pct_of_peak_sustained_active"
M+=",sm__inst_executed_pipe_fmaheavy.avg.pct_of_peak_sustained_active"
M+=",l1tex__data_pipe_lsu_wavefronts_mem_shared.avg.pct_of_peak_sustained_elapsed"
M+=",l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum"
M+=",l1tex__throughput.avg.pct_of_peak_sustained_active"
M+=",lts__throughput.avg.pct_of_peak_sustained_elapsed,dram__throughput.avg.pct_of_peak_sustained_elapsed"
M+=",lts__t_sector_hit_rate.pct,sm__cycles_elapsed.avg.per_second,dram__bytes_read.sum"
M+=",sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active"
A="--profile"; [ "${MODE:-}" = shapes ] && A="--profile-shapes"
short() { sed -e 's/.*sharq_prefill_ws_kernel<<unnamed>::Cfg</Cfg</' -e 's/(<unnamed>::Params).*//' \
  -e 's/smsp__average_warps_issue_stalled_//' -e 's/_per_issue_active.ratio//' | cut -c1-110; }
timeout 200 "$NCU" --clock-control none --metrics "$M" "$P" "$A" 2>&1 |
  grep -E "sharq_prefill_ws_kernel|gpu__|sm__|smsp__|l1tex__|lts__|dram__|rror" | short
echo "---- stall reasons per issued instruction (>= 0.05)"
timeout 200 "$NCU" --clock-control none \
  --metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active.ratio" "$P" "$A" 2>&1 |
  grep -E "sharq_prefill_ws_kernel|stalled|rror" | short | awk '/Cfg</ || $NF + 0 >= 0.05'
