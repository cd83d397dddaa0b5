#!/usr/bin/env python3
"""Per-opcode summary of ncu's SASS source page for one kernel launch.

Input: the CSV of `ncu -i REPORT --page source --print-source sass --csv --launch-skip N
--launch-count 1`. Prints the launch's stall samples by reason, then per opcode the warp-level
instructions executed, their share and the top stall reasons on them, and the shared-memory
wavefronts (all, and those of the cp.async / LDGSTS copies) against ncu's ideal counts.
Usage: ncu_source_summary.py SRC.csv [TOP_OPCODES]
"""
import csv
import sys
from collections import defaultdict


def num(s):
    try:
        return float(s.replace(",", "")) if s else 0.0
    except ValueError:
        return 0.0


def main():
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    name = rows[0][1] if rows and len(rows[0]) > 1 else "?"
    head_i = next(i for i, r in enumerate(rows) if r and r[0] == "Address")
    head = rows[head_i]
    col = {h: i for i, h in enumerate(head)}
    stall_cols = [h for h in head if h.startswith("stall_") and "(Not Issued)" not in h]
    by_op = defaultdict(lambda: defaultdict(float))
    totals = defaultdict(float)
    wav = defaultdict(float)
    for r in rows[head_i + 1:]:
        if r and r[0] == "Kernel Name":  # ncu may print the launch's listing again: first only
            break
        if len(r) < len(head):
            continue
        src = r[col["Source"]].strip()
        op = src.split()[0] if src else "?"
        if op.startswith("@"):
            op = src.split()[1] if len(src.split()) > 1 else op
        op = op.split(".")[0]
        ex = num(r[col["Instructions Executed"]])
        by_op[op]["exec"] += ex
        for s in stall_cols:
            v = num(r[col[s]])
            by_op[op][s] += v
            totals[s] += v
        w, wi = num(r[col["L1 Wavefronts Shared"]]), num(r[col["L1 Wavefronts Shared Ideal"]])
        wav["all"] += w
        wav["all_ideal"] += wi
        if op in ("LDGSTS",):
            wav["copy"] += w
            wav["copy_ideal"] += wi
    all_exec = sum(v["exec"] for v in by_op.values())
    all_stall = sum(totals.values()) or 1.0
    print(f"== {name}")
    reasons = sorted(totals.items(), key=lambda kv: -kv[1])
    print("stall samples by reason (all instructions): " + ", ".join(
        f"{k[6:]} {100 * v / all_stall:.0f}%" for k, v in reasons[:10] if v > 0))
    for op, d in sorted(by_op.items(), key=lambda kv: -kv[1]["exec"])[:top]:
        st = sorted(((k[6:], v) for k, v in d.items() if k.startswith("stall_")), key=lambda kv: -kv[1])
        print(f"{op:10s} {int(d['exec']):10d} {100 * d['exec'] / max(all_exec, 1):5.1f}%  " +
              ", ".join(f"{k} {int(v)}" for k, v in st[:4] if v > 0))
    print(f"instructions executed {int(all_exec)}; shared wavefronts {int(wav['all'])} (ideal "
          f"{int(wav['all_ideal'])}); of them the cp.async copies {int(wav['copy'])} (ideal "
          f"{int(wav['copy_ideal'])})")


if __name__ == "__main__":
    main()
