#!/usr/bin/env python3
"""Summarises a kernel timeline from dev/cuda/kernel_trace.cpp (CSV) for the decode step.

The last N decode steps are taken (a step starts at its embedding kernel); in each, kernels are
ordered by start time. For each kernel: its span (end - start, which under programmatic dependent launch
includes time spent resident and waiting), and its *increment*: end minus the previous kernel's
end, the time it adds to the chain. Increments are summed per kernel name (over the step) and
averaged over the replays, so the table says where a step's time goes on the critical path.

With --prefill the passes summarised are the longest prefills instead (the passes whose kernels
run for at least 90% of the longest pass's: `sharq bench` also prefills each decode row's
context, a shorter pass, and a step's span can be long when it is recorded into a graph).

usage: ktrace_summary.py trace.csv [--steps N] [--layers L] [--prefill]
"""
import argparse
import collections
import csv
import re


def short(name):
    name = re.sub(r"\(.*", "", name)
    m = re.search(r"(\w+_kernel\w*|\w+Kernel\w*|gemv\w*|gemm\w*|sm90\w*|cutlass\w*)", name)
    s = m.group(1) if m else name[:60]
    if "ILi" in name:  # keep the first template argument: it separates the builds
        t = re.search(r"kernel(ILi\d+E)", name)
        if t:
            s += "<" + t.group(1)[3:-1] + ">"
    return s[:70]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--prefill", action="store_true")
    a = ap.parse_args()
    rows = []
    with open(a.csv) as f:
        for r in csv.DictReader(f):
            rows.append((int(r["start_ns"]), int(r["end_ns"]), int(r["graph"]), r["name"],
                         int(r["grid"]), int(r["block"])))
    rows.sort()
    # Steps: every forward pass starts with the embedding kernel; decode steps are the passes
    # whose products run on the decode GEMMs (no prefill kernel in them). (CUPTI leaves the
    # graph id of replayed kernels at 0 here, so replays are found by their first kernel.)
    passes = []
    for r in rows:
        if "embedding_kernel" in r[3] or not passes:
            passes.append([])
        passes[-1].append(r)
    if a.prefill:
        # The longest passes: `sharq bench` also prefills each decode row's context (shorter).
        work = [sum(r[1] - r[0] for r in p) for p in passes]
        big = [p for p, w in zip(passes, work) if len(p) > 50 and w > 0.9 * max(work)]
    else:
        big = [p for p in passes if len(p) > 50 and not any("prefill" in r[3] for r in p)]
    if not big:
        print("no prefill passes found" if a.prefill else "no decode steps found")
        return
    sel = big[-a.steps:]
    inc = collections.defaultdict(float)
    span = collections.defaultdict(float)
    count = collections.defaultdict(int)
    totals = []
    for rp in sel:
        rp = sorted(rp)
        t0 = rp[0][0]
        prev_end = t0
        for s, e, g, name, grid, block in rp:
            k = short(name)
            inc[k] += max(0, e - prev_end)
            span[k] += e - s
            count[k] += 1
            prev_end = max(prev_end, e)
        totals.append(prev_end - t0)
    n = len(sel)
    step_us = sum(totals) / n / 1000
    print(f"replays used: {n} (of {len(big)}), kernels per replay: {len(sel[-1])}, "
          f"step (first start to last end): {step_us:.1f} us")
    print(f"{'kernel':70s} {'per step':>8s} {'incr us/step':>12s} {'incr us each':>12s} "
          f"{'span us each':>12s} {'per layer incr':>14s}")
    for k in sorted(inc, key=lambda k: -inc[k]):
        c = count[k] / n
        print(f"{k:70s} {c:8.1f} {inc[k] / n / 1000:12.1f} {inc[k] / count[k] / 1000:12.2f} "
              f"{span[k] / count[k] / 1000:12.2f} {inc[k] / n / 1000 / a.layers:14.2f}")
    # One layer in the middle of the last replay, kernel by kernel.
    rp = sorted(sel[-1])
    per_layer = len(rp) // a.layers
    mid = (a.layers // 2) * per_layer
    print(f"\none layer of the last replay (kernels {mid}..{mid + per_layer + 1}), times in us "
          "from the first kernel's start:")
    t0 = rp[mid][0]
    prev_end = rp[mid - 1][1] if mid > 0 else t0
    for s, e, g, name, grid, block in rp[mid:mid + per_layer + 1]:
        print(f"  start {(s - t0) / 1000:8.2f}  end {(e - t0) / 1000:8.2f}  "
              f"incr {(e - prev_end) / 1000:6.2f}  grid {grid:5d}x{block:4d}  {short(name)}")
        prev_end = max(prev_end, e)


if __name__ == "__main__":
    main()
