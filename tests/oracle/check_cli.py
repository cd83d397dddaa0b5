#!/usr/bin/env python3
"""CLI conformance test: runs `sharq quantize` on adversarial inputs for every mode (activation
and --weight) and compares the outputs bit for bit with the independent oracle spec_ref.py.
Not a unit test of the library; it only sees the CLI's files, exit codes and stderr.

Binary: env SHARQ_BIN (default /work/main/build/tools/sharq). Last line: "N passed, M failed".
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spec_ref as ref  # noqa: E402

F32 = np.float32
BIN = os.environ.get("SHARQ_BIN", "/work/main/build/tools/sharq")
PASS, FAIL = 0, 0
DISAGREE: list[str] = []


def hx(v) -> str:
    return "0x%08x" % int(np.asarray(v, np.float32).view(np.uint32))


def record(ok: bool, what: str, detail: str = ""):
    global PASS, FAIL
    if ok:
        PASS += 1
    else:
        FAIL += 1
        msg = f"FAIL {what}" + (f": {detail}" if detail else "")
        DISAGREE.append(msg)
        print(msg)


def run(args):
    return subprocess.run([BIN] + args, capture_output=True, text=True, timeout=120)


def compare(name, X, got, want, tag):
    if got.dtype != np.float32 or got.shape != want.shape:
        return f"{tag}: dtype/shape {got.dtype}{got.shape} != float32{want.shape}"
    zg = np.where(got == 0, np.uint32(0), got.view(np.uint32))
    zw = np.where(want == 0, np.uint32(0), want.view(np.uint32))
    bad = np.argwhere(zg != zw)
    if bad.size == 0:
        return None
    lines = [f"{tag}: {len(bad)} element(s) differ"]
    for r, c in bad[:4]:
        lines.append(f"  [{r},{c}] x={X[r, c]!r}({hx(X[r, c])}) want={want[r, c]!r}({hx(want[r, c])})"
                     f" got={got[r, c]!r}({hx(got[r, c])})")
    return "\n".join(lines)


def check_case(name, X, tmp):
    X = np.ascontiguousarray(X, dtype=np.float32)
    inp = os.path.join(tmp, "in.npy")
    np.save(inp, X)
    for mode in ref.ALL_MODES:
        for weight in (False, True):
            what = f"{name} mode={mode}{' --weight' if weight else ''}"
            prefix = os.path.join(tmp, "out")
            for suf in ("dequant", "sparse", "residual"):
                p = f"{prefix}.{suf}.npy"
                if os.path.exists(p):
                    os.remove(p)
            try:
                want = ref.quantize_weight(X, mode) if weight else ref.quantize_activation(X, mode)
                want_err = None
            except ref.SpecError as e:
                want, want_err = None, str(e)
            p = run(["quantize", "--mode", mode, "--input", inp, "--output-prefix", prefix]
                    + (["--weight"] if weight else []))
            if want_err is not None:
                record(p.returncode != 0, what, f"expected rejection ({want_err}), CLI exited 0")
                continue
            if p.returncode != 0:
                record(False, what, f"CLI failed rc={p.returncode}: {p.stderr.strip()[:200]}")
                continue
            errs = []
            for key in ("dequant", "sparse", "residual"):
                if key not in want:
                    continue
                try:
                    got = np.load(f"{prefix}.{key}.npy")
                except Exception as e:  # noqa: BLE001
                    errs.append(f"{key}: cannot read output ({e})")
                    continue
                d = compare(name, X, got, want[key], key)
                if d:
                    errs.append(d)
            record(not errs, what, "\n".join(errs))


def cases():
    rng = np.random.default_rng(12345)
    out = []
    # 1. LLM-like: outlier channels, massive tokens, exact zeros
    X = rng.standard_normal((32, 512)).astype(np.float32)
    X[:, rng.choice(512, 6, replace=False)] *= F32(60)
    X[3, 17] = F32(2400.0)
    X[5, :] = np.maximum(X[5, :], 0)
    X[7, 100:164] = 0
    out.append(("llm_outliers", X))
    # 2. exact ties with s_t = 1 (max 2688), E2M1 ties in blocks whose max is 6 -> S=1 / MX e=0
    T = np.zeros((8, 128), np.float32)
    vals = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, 6, -0.25, -0.75, -1.25, -1.75, -2.5, -3.5, -5, -6]
    T[0, :16] = vals
    T[0, 16:32] = vals[::-1]
    T[0, 32:64] = np.tile([6.5, 7.0, 7.99, -7.5], 8)            # MXFP4 values in (6,8)
    T[1, :16] = [6.375] + [1.0625 * 6] * 3 + [0.5] * 12         # UE4M3 scale tie m/6 = 1.0625
    T[1, 16:32] = [7.125] + [0.3] * 15                          # m/6 = 1.1875 tie -> 1.25
    T[1, 32:48] = 6 * 1.5 * 2.0 ** -9                           # scale tie in the subnormal range
    T[1, 48:64] = 1e-3                                          # clamp at 2^-9
    T[2, :] = 2688.0 * np.sign(rng.standard_normal(128))         # clamp at 448, tensor max
    T[3, :64] = np.tile([7.875, 1.0, 0.5, 0.3], 16)             # E6M2 tie 1.125 -> 1
    T[3, 64:128] = np.tile([9.625, 1.0, 0.5, 0.3], 16)          # E6M2 tie 1.375 -> 1.5
    T[4, :64] = 0.125 * np.arange(64) % 2.0                     # HiF4 S1P2 ties with Vmax 7 below
    T[4, 63] = 7.0
    T[4, 64:128] = np.tile([13.125, 0.375, 0.625, 0.875], 16)   # E6M2 tie 1.875 -> 2 (carry)
    # 5: HiF4 E1 boundaries (B=1 from Vmax=7): V8 exactly 4, just below 4, V16 exactly 2
    r5 = np.zeros(64, np.float32)
    r5[0] = 7.0
    r5[8:16] = [4.0, 1.0, 3.0, 0.5, 3.99, 2.0, 1.1, 0.9]
    r5[16:24] = [np.nextafter(F32(4), F32(0)), 1.0, 0, 0, 2.0, 1.0, 0, 0]
    r5[24:32] = [1.999999, 1.0, 0.3, 0.2, 1.5, 0.5, 0, 0]
    T[5, :64] = r5
    T[5, 64:128] = -r5
    # 6: mask ties: equal pair scores, equal magnitudes, +-0
    T[6, :32] = [1, -1, 1, 0, -1, 1, 0, 1, -2, 2, 2, -2, 0, -0., 0, -0., 3, 1, -3, 1, 0, -0., 0, 1,
                 0.5, 0.5, 0.5, 0.5, -0.5, -0.5, -0.5, -0.5]
    T[6, 32:64] = 0.0
    T[6, 64:128] = -0.0
    T[7, :] = 0                                                # all-zero row
    out.append(("exact_ties", T))
    # 3. FP8 ties: max exactly 448 -> s = 1
    P = np.zeros((2, 64), np.float32)
    P[0, :12] = [448, 1.0625, 1.1875, 2.0 ** -10, 1.5 * 2 ** -9, 2.5 * 2 ** -9, 300, -1.0625, 17, 18, 19, 0]
    P[1, :] = rng.standard_normal(64) * 10
    out.append(("fp8_ties", P))
    # 4. mask near-ties created by the tensor-scale multiply (distinct X, equal x')
    s_val = F32(3000.0)
    _, rs = ref.tensor_scale(np.array([[s_val]], np.float32), 2688.0)
    base = rng.uniform(1, 2, 4000).astype(np.float32)
    nxt = np.nextafter(base, F32(3))
    coll = base[(base * rs) == (nxt * rs)][:16]
    M = (rng.standard_normal((2, 64)) * 0.1).astype(np.float32)
    M[0, 0] = s_val
    for i, b in enumerate(coll[:7]):
        M[0, 8 * (i + 1) + 0] = b                       # pair 0 score b, pair 1 score nextafter(b)
        M[0, 8 * (i + 1) + 2] = np.nextafter(b, F32(3))
        M[0, 8 * (i + 1) + 4] = np.nextafter(b, F32(3))
        M[0, 8 * (i + 1) + 6] = b
        M[1, 4 * i + 0] = b
        M[1, 4 * i + 1] = np.nextafter(b, F32(3))
        M[1, 4 * i + 2] = np.nextafter(b, F32(3))
    out.append(("scaled_mask_ties", M))
    # 5. zeros
    out.append(("all_zero", np.zeros((4, 64), np.float32)))
    out.append(("all_neg_zero", np.full((2, 64), -0.0, np.float32)))
    # 6. tiny / huge magnitudes
    X = rng.standard_normal((4, 128)).astype(np.float32)
    X[1, :] *= F32(1e-30)
    X[2, ::3] = F32(1e-30)
    X[3, :64] = F32(1e-40)                              # subnormal inputs
    out.append(("tiny_with_normal", X))
    out.append(("tensor_1e-20", (rng.standard_normal((4, 128)) * 1e-20).astype(np.float32)))
    out.append(("tensor_1e-35_subnormal_scale", (rng.uniform(-1, 1, (2, 64)) * 1e-35).astype(np.float32)))
    out.append(("tensor_1e-36_rejected_nvfp4", (rng.uniform(-1, 1, (2, 64)) * 1e-36).astype(np.float32)))
    H = rng.standard_normal((4, 128)).astype(np.float32)
    H[0, :] *= F32(1e30)
    H[1, 5] = F32(3e38)
    H[2, 7] = F32(-3.3e38)
    out.append(("huge_3e38", H))
    out.append(("huge_flt_max", np.array([[np.finfo(np.float32).max] + [1.0] * 63], np.float32)))
    # 7. MXFP4 exponent edges: (6,8)*2^e, powers of two, e clamp at -127
    Mx = np.zeros((2, 128), np.float32)
    Mx[0, :32] = np.array([7.5, 6.0, 5.0, 3.0, 7.999, 4.0, 2.5, 0.25] * 4, np.float32) * F32(2.0 ** 10)
    Mx[0, 32:64] = np.array([4.0, 3.0, 6.5, 1.0] * 8, np.float32)
    Mx[0, 64:96] = np.array([1.5, 1.0, 0.75, 0.25] * 8, np.float32) * F32(2.0 ** -124)
    Mx[0, 96:128] = np.array([1.5, 1.0, 0.75, 0.25] * 8, np.float32) * F32(2.0 ** -126)
    Mx[1, :32] = np.array([1.5, 1.0, 0.75, 0.5] * 8, np.float32) * F32(2.0 ** -125)
    Mx[1, 32:64] = F32(1e-40)
    Mx[1, 64:96] = F32(2.0 ** 127) * F32(1.5)
    out.append(("mxfp4_exponent_edges", Mx))
    # 8. random medium tensor
    out.append(("random_64x1024", (rng.standard_normal((64, 1024)) *
                                   np.exp(rng.standard_normal(1024))).astype(np.float32)))
    return out


def check_large(tmp):
    """256 x 4096 LLM-like tensor, two modes, with --threads 1 and the default thread count."""
    rng = np.random.default_rng(7)
    X = (rng.standard_normal((256, 4096)) * np.where(rng.random(4096) < 0.005, 80, 1)).astype(np.float32)
    inp = os.path.join(tmp, "large.npy")
    np.save(inp, X)
    for mode in ("sharq-nvfp4", "sharq-hif4"):
        want = ref.quantize_activation(X, mode)
        for threads in (["--threads", "1"], []):
            prefix = os.path.join(tmp, "large_out")
            p = run(["quantize", "--mode", mode, "--input", inp, "--output-prefix", prefix] + threads)
            what = f"large_256x4096 mode={mode} {' '.join(threads) or 'default threads'}"
            if p.returncode != 0:
                record(False, what, p.stderr.strip()[:200])
                continue
            errs = [d for k in ("dequant", "sparse", "residual")
                    if (d := compare("large", X, np.load(f"{prefix}.{k}.npy"), want[k], k))]
            record(not errs, what, "\n".join(errs))


def check_bad_inputs(tmp):
    def bad(label, content_or_array, keywords, mode="sharq-nvfp4", need_numbers=()):
        path = os.path.join(tmp, "bad.npy")
        if isinstance(content_or_array, bytes):
            with open(path, "wb") as f:
                f.write(content_or_array)
        else:
            np.save(path, content_or_array)
        p = run(["quantize", "--mode", mode, "--input", path, "--output-prefix", os.path.join(tmp, "bad")])
        msg = p.stderr.strip()
        problems = []
        if p.returncode == 0:
            problems.append("exit status 0")
        if len(msg.splitlines()) != 1:
            problems.append(f"stderr has {len(msg.splitlines())} lines")
        low = msg.lower()
        if not any(k in low for k in keywords):
            problems.append(f"message lacks any of {keywords}")
        for n in need_numbers:
            if str(n) not in msg:
                problems.append(f"message lacks {n}")
        record(not problems, f"bad input: {label}", "; ".join(problems) + f" | stderr={msg[:200]!r}")

    X = np.ones((4, 128), np.float32)
    Xn = X.copy(); Xn[2, 37] = np.nan; Xn[3, 1] = np.inf
    bad("NaN at (2,37)", Xn, ["nan", "finite"], need_numbers=(2, 37))
    Xi = X.copy(); Xi[1, 70] = -np.inf
    for mode in ("nvfp4", "bf16", "nvfp4-w4a16", "sharq-hif4"):
        bad(f"-Inf at (1,70) mode={mode}", Xi, ["inf", "finite"], mode=mode, need_numbers=(1, 70))
    for k in (48, 100, 96):
        bad(f"K={k}", np.ones((2, k), np.float32), ["64", "multiple"], need_numbers=(k,))
    bad("unknown mode", X, ["mode", "bogus"], mode="bogus-fp3")
    buf_path = os.path.join(tmp, "ok.npy")
    np.save(buf_path, X)
    raw = open(buf_path, "rb").read()
    bad("truncated data", raw[:-100], ["trunc", "short", "size", "npy", "data", "malformed", "read"])
    bad("bad magic", b"GARBAGE" + raw[7:], ["npy", "magic", "malformed", "header", "format"])
    bad("garbage header", raw[:10] + b"{'descr': ?? }" + raw[24:], ["npy", "header", "malformed", "parse"])
    bad("float64", X.astype(np.float64), ["dtype", "float32", "f8", "float64"])
    bad("int32", X.astype(np.int32), ["dtype", "float32", "i4", "int"])
    bad("float16", X.astype(np.float16), ["dtype", "float32", "f2", "float16"])
    bad("missing file", b"", ["npy", "empty", "read", "trunc", "open", "header", "malformed"])


def main():
    if not os.path.exists(BIN):
        print(f"SHARQ_BIN {BIN} does not exist")
        print("0 passed, 1 failed")
        return 1
    if ref.self_test(verbose=False):
        record(False, "oracle self-test")
    with tempfile.TemporaryDirectory(prefix="sharq_cli_") as tmp:
        for name, X in cases():
            check_case(name, X, tmp)
        check_large(tmp)
        check_bad_inputs(tmp)
    print(f"\nsummary: {len(DISAGREE)} failing checks")
    print(f"{PASS} passed, {FAIL} failed")
    return 1 if FAIL else 0


if __name__ == "__main__":
    sys.exit(main())
