#!/usr/bin/env python3
"""Conformance of `sharq quantize` against the independent NumPy oracle spec_ref.py (SPEC.md
sections 2-6), bit for bit, for every mode as activation and as weight, on adversarial inputs;
plus the CLI's bad-input errors. Not a unit test of the C++ internals.
Binary: $SHARQ_BIN (default build/tools/sharq). Last line: 'N passed, M failed'."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spec_ref as R  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("SHARQ_BIN", os.path.join(HERE, "..", "..", "build", "tools", "sharq"))
MODES = ("bf16 fp8 nvfp4-w4a16 nvfp4 mxfp4 hif4 sharq-nvfp4 sharq-nvfp4-24 sharq-mxfp4 "
         "sharq-hif4 sparse-only dense+dense sparse+sparse").split()


def inputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    f = np.float32
    out = {}
    x = rng.standard_normal((24, 512)).astype(f)
    for c in rng.choice(512, 6, replace=False):
        x[:, c] *= f(rng.uniform(10, 120))
    x[5] = 0
    out["llm_outliers"] = x
    # E2M1 ties at every scale (block max 6 -> S = 1 once s_t = 1 via the 2688 entry).
    t = np.tile(f([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, 6, -0.25, -0.75, -1.25, -1.75,
                   -2.5, -3.5, -5, -6]), (4, 8))
    t[0, 0] = 2688
    out["e2m1_ties"] = t
    # S1P2 / E6M2 ties for HiF4 (Vmax = 7 -> B = 1), MXFP4 values in (6, 8) * 2^e.
    h = np.tile(f([7, 0.125, 0.375, 0.625, 1.625, 3.9, 2.0, 0.3]), (4, 16))
    h[1] *= f(1.125 * 7)  # SF = Vmax/7 at an E6M2 tie
    h[2] *= f(1.375 * 7)
    out["hif4_mx_ties"] = h
    m = np.tile(f([1, 1, 1, 1, 2, 2, 2, 2, 3, 0, 0, 3, -3, 3, 0, 0]), (3, 8))
    m[1] = -0.0
    out["mask_ties"] = m
    out["all_zero"] = np.zeros((3, 64), f)
    out["tiny_in_normal"] = (rng.standard_normal((4, 128)) * np.where(rng.random((4, 128)) < 0.5, 1e-30, 1)).astype(f)
    out["tiny_tensor"] = (rng.standard_normal((4, 128)) * 1e-20).astype(f)
    hu = (rng.standard_normal((4, 128)) * 1e30).astype(f)
    hu[0, 0] = f(3e38)
    out["huge"] = hu
    # Block scales clamped at 2^-9 (tiny blocks next to a 2688 outlier) and at 448.
    c = (rng.standard_normal((2, 128)) * 1e-4).astype(f)
    c[0, 0] = 2688
    c[1, 64] = -2688
    out["scale_clamps"] = c
    out["random_wide"] = (rng.standard_normal((8, 256)) * np.exp2(rng.integers(-30, 30, (8, 256)))).astype(f)
    return out


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([BIN] + args, capture_output=True, text=True)


def main() -> int:
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    passed = failed = 0
    with tempfile.TemporaryDirectory() as d:
        def path(n):
            return os.path.join(d, n)

        for name, X in inputs(rng).items():
            np.save(path("in.npy"), X)
            for mode in MODES:
                for weight in (False, True):
                    what = f"{name} {mode} {'weight' if weight else 'activation'}"
                    p = run(["quantize", "--mode", mode, "--input", path("in.npy"), "--output-prefix",
                             path("o")] + (["--weight"] if weight else []))
                    try:
                        ref = R.quantize_weight(X, mode) if weight else R.quantize_activation(X, mode)
                    except R.SpecError as e:
                        ok = p.returncode != 0
                        print(("ok   " if ok else "FAIL ") + what + f": oracle rejects ({e}); cli rc {p.returncode}")
                        passed, failed = passed + ok, failed + (not ok)
                        continue
                    if p.returncode != 0:
                        print(f"FAIL {what}: cli rejected: {p.stderr.strip()}")
                        failed += 1
                        continue
                    ok = True
                    for key, want in ref.items():
                        got = np.load(path(f"o.{key}.npy"))
                        same = (got == want) | (np.isnan(got) & np.isnan(want))
                        if got.shape != want.shape or not same.all():
                            i = tuple(np.argwhere(~same)[0]) if got.shape == want.shape else ()
                            print(f"FAIL {what} {key}: {int((~same).sum())} differ, first {i}: "
                                  f"got {got[i]!r} want {want[i]!r}")
                            ok = False
                    passed, failed = passed + ok, failed + (not ok)

        # Bad inputs: non-zero exit, one line naming the problem.
        good = np.ones((2, 64), np.float32)
        nan = good.copy()
        nan[1, 7] = np.nan
        inf = good.copy()
        inf[0, 3] = -np.inf
        np.save(path("nan.npy"), nan)
        np.save(path("inf.npy"), inf)
        np.save(path("k100.npy"), np.ones((2, 100), np.float32))
        np.save(path("f64.npy"), good.astype(np.float64))
        np.save(path("good.npy"), good)
        np.save(path("rank3.npy"), np.ones((2, 2, 64), np.float32))
        with open(path("good.npy"), "rb") as fh:
            raw = fh.read()
        with open(path("trunc.npy"), "wb") as fh:
            fh.write(raw[: len(raw) - 10])
        with open(path("junk.npy"), "wb") as fh:
            fh.write(b"not a numpy file at all")
        cases = [("nan.npy", "nvfp4", ["row 1", "column 7"]), ("inf.npy", "sharq-nvfp4", ["row 0", "column 3"]),
                 ("k100.npy", "sharq-hif4", ["multiple of 64"]), ("f64.npy", "nvfp4", ["float32"]),
                 ("good.npy", "nvfp5", ["unknown mode"]), ("trunc.npy", "nvfp4", ["truncated"]),
                 ("junk.npy", "nvfp4", ["magic"]), ("rank3.npy", "nvfp4", ["2-D"]),
                 ("missing.npy", "nvfp4", ["cannot open"])]
        for f, mode, needles in cases:
            p = run(["quantize", "--mode", mode, "--input", path(f), "--output-prefix", path("bad")])
            err = p.stderr.strip()
            ok = p.returncode != 0 and len(err.splitlines()) == 1 and all(n in err for n in needles)
            print(("ok   " if ok else "FAIL ") + f"bad input {f} ({mode}): rc {p.returncode}: {err}")
            passed, failed = passed + ok, failed + (not ok)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
