#!/usr/bin/env python3
"""Summarises an alternating A/B of `sharq bench --json` runs (device_run.sh abbase / abenv).

Files are named <phase>_<variant>_<round>.json. For every mode and batch it prints each variant's
decode tokens/s: the median over its rounds, the range, and the median's change against the
reference variant (`base` when present, else the first one named): one line a variant, so that
a difference can be read against the spread of the same binary's own rounds.
"""
import argparse
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

NAME = re.compile(r"^(?P<phase>[a-z0-9]+)_(?P<variant>.+)_(?P<round>\d+)\.json$")


def load(paths):
    runs = defaultdict(dict)  # (mode, batch, ctx) -> variant -> [tok/s per round]
    order = []
    for p in sorted(paths, key=lambda p: p.name):
        m = NAME.match(p.name)
        if not m:
            print(f"ab_summary: skipped {p} (not <phase>_<variant>_<round>.json)", file=sys.stderr)
            continue
        variant = m.group("variant")
        if variant not in order:
            order.append(variant)
        try:
            doc = json.loads(p.read_text())
            for row in doc["results"]:
                for d in row["decode"]:
                    key = (row["mode"], d["batch"], d["ctx"])
                    runs[key].setdefault(variant, []).append(float(d["tokens_per_s"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"ab_summary: {p}: unreadable bench JSON ({e})", file=sys.stderr)
    return runs, order


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path, help="<phase>_<variant>_<round>.json files")
    ap.add_argument("--reference", help="variant the changes are against (default: base, else the first)")
    a = ap.parse_args()
    runs, order = load(a.files)
    if not runs:
        print("ab_summary: no decode rows found", file=sys.stderr)
        return 1
    ref = a.reference or ("base" if "base" in order else order[0])
    # "base" first, "new" second, the switches after them in the order first seen
    rank = {}
    for v in ["base", "new"] + order:
        rank.setdefault(v, len(rank))
    width = max(len(v) for v in order)
    print(f"{'mode':<16} {'batch':>5} {'ctx':>5}  {'variant':<{width}}  {'median':>8}  {'range':>17}  vs {ref}")
    for key in sorted(runs):
        mode, batch, ctx = key
        ref_med = statistics.median(runs[key][ref]) if ref in runs[key] else None
        for v in sorted(runs[key], key=lambda v: rank[v]):
            xs = runs[key][v]
            med = statistics.median(xs)
            delta = f"{100.0 * (med / ref_med - 1.0):+6.2f}%" if ref_med and v != ref else ""
            rng = f"{min(xs):8.1f}-{max(xs):.1f}"
            print(f"{mode:<16} {batch:>5} {ctx:>5}  {v:<{width}}  {med:8.1f}  {rng:>17}  {delta}"
                  f"  ({len(xs)} rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
