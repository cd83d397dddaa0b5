"""Independent NumPy reference of /work/shared/SPEC.md sections 2-6 (codecs, block formats,
masks, SharQ decomposition, weight rules), written from the spec text only, as a test oracle.
It is NOT the project's implementation and shares no code with src/ or include/.

All arithmetic is IEEE float32 (np.float32 arrays, RNE, NumPy never fuses multiply-add).
Power-of-two scalings use np.ldexp, which is exact except on underflow, where it rounds once
exactly as a float32 multiply by the same power of two would.

Run `python3 spec_ref.py` for the self-test (cross-checks E2M1/E4M3/bfloat16 against ml_dtypes).
"""
from __future__ import annotations

import sys

import numpy as np

F32 = np.float32
ONE = F32(1.0)


class SpecError(ValueError):
    """The input is rejected by the contract (or by a documented project reading of it)."""


def _f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def floor_log2(a: np.ndarray) -> np.ndarray:
    """floor(log2(a)) for finite float32 a > 0 (subnormals included), exact, as int32."""
    _, e = np.frexp(_f32(a))
    return e.astype(np.int32) - 1


def _round_minifloat(a: np.ndarray, mbits: int, emin: int) -> np.ndarray:
    """RNE of float32 magnitudes a >= 0 onto a binary grid with `mbits` mantissa bits whose
    smallest normal exponent is emin (below it: subnormal spacing 2^(emin-mbits)).
    No saturation here. Exact: the scaled value fits in 24 bits, np.rint is RNE."""
    a = _f32(a)
    safe = np.where(a > 0, a, ONE)
    e = np.maximum(floor_log2(safe), np.int32(emin))
    scaled = np.ldexp(a, (mbits - e).astype(np.int32))
    return np.ldexp(np.rint(scaled), (e - mbits).astype(np.int32)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Section 2: element and scale codecs
# ---------------------------------------------------------------------------------------------
E2M1_VALUES = _f32([0, 0.5, 1, 1.5, 2, 3, 4, 6])


def e2m1_encode(v: np.ndarray) -> np.ndarray:
    """float32 -> E2M1 code (uint8, 0..15, bit 3 = sign). RNE with ties to even mantissa,
    saturating at 6. Thresholds: 0.25->0, 0.75->1, 1.25->1, 1.75->2, 2.5->2, 3.5->4, 5->4."""
    v = _f32(v)
    a = np.abs(v)
    idx = ((a > 0.25).astype(np.uint8) + (a >= 0.75) + (a > 1.25) + (a >= 1.75)
           + (a > 2.5) + (a >= 3.5) + (a > 5.0)).astype(np.uint8)
    return (idx | (np.signbit(v).astype(np.uint8) << 3)).astype(np.uint8)


def e2m1_decode(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.uint8)
    mag = E2M1_VALUES[q & 7]
    return np.where(q & 8, -mag, mag).astype(np.float32)


def e2m1_encode_generic(v: np.ndarray) -> np.ndarray:
    """Second, structurally different E2M1 rounding (minifloat RNE), used in the self-test."""
    v = _f32(v)
    a = np.minimum(np.abs(v), F32(6))
    r = _round_minifloat(a, 1, 0)
    return np.where(np.signbit(v), -r, r).astype(np.float32)


E4M3_MAX = F32(448.0)


def e4m3_round(v: np.ndarray) -> np.ndarray:
    """float32 -> nearest E4M3 (e4m3fn) value as float32, RNE, saturating to +-448, sign kept."""
    v = _f32(v)
    a = np.minimum(np.abs(v), E4M3_MAX)  # anything > 448 saturates; values <= 448 round in-range
    r = _round_minifloat(a, 3, -6)
    return np.where(np.signbit(v), -r, r).astype(np.float32)


def e4m3_encode(v: np.ndarray) -> np.ndarray:
    """float32 -> E4M3 byte (s.eeee.mmm, bias 7), RNE, saturating."""
    r = e4m3_round(v)
    a = np.abs(r)
    safe = np.where(a > 0, a, ONE)
    e = floor_log2(safe)
    normal = a >= F32(2.0 ** -6)
    exp_field = np.where(normal, e + 7, 0).astype(np.int32)
    mant = np.where(normal, np.ldexp(a, (3 - e).astype(np.int32)) - 8, np.ldexp(a, 9))
    mant = np.where(a > 0, mant, 0).astype(np.int32)
    code = (exp_field << 3) | mant
    return (code | (np.signbit(r).astype(np.int32) << 7)).astype(np.uint8)


def e4m3_decode(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, dtype=np.uint8).astype(np.int32)
    s, e, m = (b >> 7) & 1, (b >> 3) & 15, b & 7
    mag = np.where(e == 0, np.ldexp(_f32(m), np.full_like(m, -9)),
                   np.ldexp(_f32(m + 8), (e - 10).astype(np.int32))).astype(np.float32)
    mag = np.where((e == 15) & (m == 7), F32(np.nan), mag)
    return np.where(s == 1, -mag, mag).astype(np.float32)


def ue4m3_encode(v: np.ndarray) -> np.ndarray:
    """Unsigned E4M3 (sign bit 0) for non-negative block scales."""
    return e4m3_encode(np.abs(_f32(v)))


def ue4m3_decode(b: np.ndarray) -> np.ndarray:
    return e4m3_decode(np.asarray(b, dtype=np.uint8) & 0x7F)


def e8m0_encode(e: np.ndarray) -> np.ndarray:
    """Integer exponent e in [-127, 127] -> E8M0 byte e + 127."""
    e = np.asarray(e, dtype=np.int32)
    if np.any((e < -127) | (e > 127)):
        raise SpecError("E8M0 exponent out of range")
    return (e + 127).astype(np.uint8)


def e8m0_decode(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, dtype=np.uint8).astype(np.int32)
    v = np.ldexp(np.ones(b.shape, np.float32), (b - 127).astype(np.int32)).astype(np.float32)
    return np.where(b == 255, F32(np.nan), v).astype(np.float32)


E6M2_MIN = F32(2.0 ** -48)
E6M2_MAX = F32(1.5 * 2.0 ** 15)


def e6m2_round(v: np.ndarray) -> np.ndarray:
    """Positive float32 -> E6M2 value: RNE on the 2-bit mantissa (carry into the exponent),
    then clamp to [2^-48, 1.5*2^15] (no zero, no subnormals). For inputs below 2^-48 or above
    the max, rounding-then-clamping equals clamping-then-rounding, so the order is moot."""
    a = np.abs(_f32(v))
    r = _round_minifloat(a, 2, -1000)  # no subnormal range: every exponent is normal
    return np.clip(r, E6M2_MIN, E6M2_MAX).astype(np.float32)


def e6m2_encode(v: np.ndarray) -> np.ndarray:
    r = e6m2_round(v)
    e = floor_log2(r)
    m = (np.ldexp(r, (2 - e).astype(np.int32)) - 4).astype(np.int32)
    return (((e + 48) << 2) | m).astype(np.uint8)


def e6m2_decode(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, dtype=np.uint8).astype(np.int32)
    e, m = (b >> 2) - 48, b & 3
    v = np.ldexp(_f32(4 + m), (e - 2).astype(np.int32)).astype(np.float32)
    return np.where(b == 255, F32(np.nan), v).astype(np.float32)


def s1p2_encode(v: np.ndarray) -> np.ndarray:
    """float32 -> S1P2 code (bit 3 sign, 3-bit magnitude m, value m*0.25), RNE ties to even m,
    saturating to 1.75."""
    v = _f32(v)
    a = np.minimum(np.abs(v), F32(2.0))  # anything >= 1.875 ends at 7 after saturation anyway
    m = np.minimum(np.rint(a * F32(4)), F32(7)).astype(np.uint8)
    return (m | (np.signbit(v).astype(np.uint8) << 3)).astype(np.uint8)


def s1p2_decode(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.uint8)
    mag = (q & 7).astype(np.float32) * F32(0.25)
    return np.where(q & 8, -mag, mag).astype(np.float32)


def bf16_round(v: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 (RNE, overflow to inf as IEEE) -> float32. Project choice (bf16 mode)."""
    u = _f32(v).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    return r.view(np.float32)


# ---------------------------------------------------------------------------------------------
# Section 3: block formats
# ---------------------------------------------------------------------------------------------
def check_input(X: np.ndarray, name: str = "X") -> np.ndarray:
    X = np.asarray(X)
    if X.dtype != np.float32 or X.ndim != 2:
        raise SpecError(f"{name}: need a 2-D float32 array")
    if X.shape[1] % 64 != 0:
        raise SpecError(f"{name}: K={X.shape[1]} is not a multiple of 64 (shape {X.shape})")
    bad = np.argwhere(~np.isfinite(X))
    if bad.size:
        r, c = bad[0]
        raise SpecError(f"{name}: non-finite value at row {r}, column {c}")
    return X


def tensor_scale(X: np.ndarray, denom: float) -> tuple[np.float32, np.float32]:
    """(s, rcp(s)) with s = max|X| / denom, s = 1 when the max is 0. Project reading: a
    finite nonzero max whose rcp(s) overflows float32 is rejected (SpecError)."""
    a = F32(np.max(np.abs(X))) if X.size else F32(0)
    if a == 0:
        return ONE, ONE
    s = F32(a / F32(denom))
    with np.errstate(over="ignore", divide="ignore"):
        rs = F32(ONE / s)
    if not np.isfinite(rs):
        raise SpecError(f"tensor max {float(a):g} too small: rcp of the tensor scale overflows")
    return s, rs


def _blocks(x: np.ndarray, g: int) -> np.ndarray:
    rows, k = x.shape
    return x.reshape(rows, k // g, g)


def nvfp4_blocks(xs: np.ndarray, g: int) -> dict:
    """Section 3 NVFP4 steps 2-3 on an already scaled x' (rows x K): returns codes, UE4M3
    scale bytes, decoded S, and the dequantized value in the scaled domain E2M1^-1(q)*S."""
    b = _blocks(_f32(xs), g)
    m = np.max(np.abs(b), axis=2)
    sb = ue4m3_encode(np.clip(m / F32(6), F32(2.0 ** -9), F32(448)))
    S = ue4m3_decode(sb)
    r = (ONE / S).astype(np.float32)
    q = e2m1_encode(b * r[..., None])
    deq = (e2m1_decode(q) * S[..., None]).astype(np.float32)
    return {"codes": q.reshape(xs.shape), "scale_bytes": sb, "S": S,
            "deq_scaled": deq.reshape(xs.shape)}


def nvfp4_quantize(X: np.ndarray, g: int = 16) -> dict:
    """Full tensor-scaled NVFP4: dequant = (E2M1^-1(q) * S) * s_t (left to right)."""
    X = _f32(X)
    s_t, rs = tensor_scale(X, 2688.0)
    xs = (X * rs).astype(np.float32)
    out = nvfp4_blocks(xs, g)
    out.update(s_t=s_t, x_scaled=xs, dequant=(out["deq_scaled"] * s_t).astype(np.float32))
    return out


def mxfp4_quantize(X: np.ndarray) -> dict:
    b = _blocks(_f32(X), 32)
    m = np.max(np.abs(b), axis=2)
    e = np.where(m > 0, floor_log2(np.where(m > 0, m, ONE)) - 2, -127)
    e = np.clip(e, -127, 127).astype(np.int32)
    eb = e8m0_encode(e)
    inv = np.ldexp(np.ones(e.shape, np.float32), -e)        # 2^-e, exact in float32
    q = e2m1_encode(b * inv[..., None])
    scale = e8m0_decode(eb)                                 # 2^e, exact (may be subnormal)
    deq = (e2m1_decode(q) * scale[..., None]).astype(np.float32)
    return {"codes": q.reshape(X.shape), "scale_bytes": eb, "dequant": deq.reshape(X.shape)}


def hif4_quantize(X: np.ndarray) -> dict:
    X = _f32(X)
    rows, k = X.shape
    b = X.reshape(rows, k // 64, 64)
    a = np.abs(b)
    V16 = a.reshape(rows, k // 64, 16, 4).max(axis=3)
    V8 = np.maximum(V16[..., 0::2], V16[..., 1::2])
    Vmax = V8.max(axis=2)
    SF = np.where(Vmax > 0, (Vmax / F32(7)).astype(np.float32), E6M2_MIN).astype(np.float32)
    bb = e6m2_encode(SF)
    B = e6m2_decode(bb)
    REC = (ONE / B).astype(np.float32)
    E8 = ((V8 * REC[..., None]) >= F32(4)).astype(np.int32)                    # (rows, nb, 8)
    E8_for16 = np.repeat(E8, 2, axis=2)                                        # (rows, nb, 16)
    E16 = (np.ldexp((V16 * REC[..., None]).astype(np.float32), -E8_for16) >= F32(2)).astype(np.int32)
    E8k = np.repeat(E8, 8, axis=2)
    E16k = np.repeat(E16, 4, axis=2)
    t = (b * REC[..., None]).astype(np.float32)
    t = np.ldexp(t, -E8k).astype(np.float32)
    t = np.ldexp(t, -E16k).astype(np.float32)
    q = s1p2_encode(t)
    deq = (s1p2_decode(q) * B[..., None]).astype(np.float32)
    deq = np.ldexp(deq, E8k + E16k).astype(np.float32)
    return {"codes": q.reshape(X.shape), "scale_bytes": bb, "E1_8": E8, "E1_16": E16,
            "dequant": deq.reshape(X.shape)}


def fp8_quantize(X: np.ndarray) -> dict:
    X = _f32(X)
    s, rs = tensor_scale(X, 448.0)
    q = e4m3_encode((X * rs).astype(np.float32))
    return {"codes": q, "s": s, "dequant": (e4m3_decode(q) * s).astype(np.float32)}


# ---------------------------------------------------------------------------------------------
# Section 4: masks
# ---------------------------------------------------------------------------------------------
def _keep_top2(scores: np.ndarray) -> np.ndarray:
    """scores (..., n): keep the 2 highest; ties -> lower index wins. Returns bool mask."""
    n = scores.shape[-1]
    si = scores[..., :, None]   # candidate i
    sj = scores[..., None, :]   # competitor j
    idx = np.arange(n)
    beats = (sj > si) | ((sj == si) & (idx[None, :] < idx[:, None]))
    rank = beats.sum(axis=-1)
    return rank < 2


def mask_4of8_pairs(xs: np.ndarray) -> np.ndarray:
    xs = _f32(xs)
    rows, k = xs.shape
    a = np.abs(xs).reshape(rows, k // 8, 4, 2)
    score = a.max(axis=3)
    keep = _keep_top2(score)                          # (rows, k/8, 4)
    return np.repeat(keep, 2, axis=2).reshape(rows, k)


def mask_2of4(xs: np.ndarray) -> np.ndarray:
    xs = _f32(xs)
    rows, k = xs.shape
    a = np.abs(xs).reshape(rows, k // 4, 4)
    return _keep_top2(a).reshape(rows, k)


def apply_mask(xs: np.ndarray, keep: np.ndarray) -> np.ndarray:
    return np.where(keep, xs, F32(0)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Sections 5-6: modes
# ---------------------------------------------------------------------------------------------
DECOMP_MODES = ("sharq-nvfp4", "sharq-nvfp4-24", "sharq-mxfp4", "sharq-hif4",
                "sparse-only", "dense+dense", "sparse+sparse", "sharq-nvfp4-pt")
ALL_MODES = ("bf16", "fp8", "nvfp4-w4a16", "nvfp4", "mxfp4", "hif4") + DECOMP_MODES


def _sub(a, b):
    return (_f32(a) - _f32(b)).astype(np.float32)


def quantize_activation(X: np.ndarray, mode: str) -> dict:
    """Returns {'dequant': ...} and, for decomposition modes, 'sparse' and 'residual'
    (original units, float32). Raises SpecError on rejected input."""
    X = check_input(X)
    if mode == "bf16":
        return {"dequant": bf16_round(X)}
    if mode == "nvfp4-w4a16":
        return {"dequant": X.copy()}
    if mode == "fp8":
        return {"dequant": fp8_quantize(X)["dequant"]}
    if mode == "nvfp4":
        return {"dequant": nvfp4_quantize(X, 16)["dequant"]}
    if mode == "mxfp4":
        return {"dequant": mxfp4_quantize(X)["dequant"]}
    if mode == "hif4":
        return {"dequant": hif4_quantize(X)["dequant"]}
    if mode not in DECOMP_MODES:
        raise SpecError(f"unknown mode {mode}")
    if mode == "sharq-nvfp4-pt":
        # docs/variants.md "per-token": sharq-nvfp4 with the tensor scale of each row (token).
        rows = [quantize_activation(X[r:r + 1], "sharq-nvfp4") for r in range(X.shape[0])]
        return {key: np.concatenate([q[key] for q in rows], axis=0).astype(np.float32)
                for key in ("sparse", "residual", "dequant")}

    if mode in ("sharq-mxfp4", "sharq-hif4"):
        fmt = mxfp4_quantize if mode == "sharq-mxfp4" else hif4_quantize
        xs, s_t = X, ONE
        sp = fmt(apply_mask(xs, mask_2of4(xs)))["dequant"]
        R = _sub(xs, sp)
        rq = fmt(R)["dequant"]
    else:
        s_t, rs = tensor_scale(X, 2688.0)
        xs = (X * rs).astype(np.float32)
        if mode == "dense+dense":
            sp = nvfp4_blocks(xs, 16)["deq_scaled"]
        else:
            keep = mask_2of4(xs) if mode == "sharq-nvfp4-24" else mask_4of8_pairs(xs)
            sp = nvfp4_blocks(apply_mask(xs, keep), 32)["deq_scaled"]
        R = _sub(xs, sp)
        if mode == "sparse-only":
            rq = np.zeros_like(R)
        elif mode == "sparse+sparse":
            rq = nvfp4_blocks(apply_mask(R, mask_4of8_pairs(R)), 32)["deq_scaled"]
        else:
            rq = nvfp4_blocks(R, 16)["deq_scaled"]
    sparse = (sp * s_t).astype(np.float32)
    resid = (rq * s_t).astype(np.float32)
    return {"sparse": sparse, "residual": resid, "dequant": (sparse + resid).astype(np.float32)}


def quantize_weight(W: np.ndarray, mode: str) -> dict:
    W = check_input(W)
    if mode == "bf16":
        d = bf16_round(W)
    elif mode == "fp8":
        d = fp8_quantize(W)["dequant"]
    elif mode in ("nvfp4", "nvfp4-w4a16"):
        d = nvfp4_quantize(W, 16)["dequant"]
    elif mode in ("sharq-nvfp4", "sharq-nvfp4-24", "sparse-only", "dense+dense", "sparse+sparse",
                  "sharq-nvfp4-pt"):
        d = nvfp4_quantize(W, 32)["dequant"]
    elif mode in ("mxfp4", "sharq-mxfp4"):
        d = mxfp4_quantize(W)["dequant"]
    elif mode in ("hif4", "sharq-hif4"):
        d = hif4_quantize(W)["dequant"]
    else:
        raise SpecError(f"unknown mode {mode}")
    return {"dequant": d}


def g16_view_of_g32(scale_bytes_g32: np.ndarray) -> np.ndarray:
    """Section 6: the dense path's g16 view repeats each g32 scale twice."""
    return np.repeat(scale_bytes_g32, 2, axis=-1)


# ---------------------------------------------------------------------------------------------
# Self-test
# ---------------------------------------------------------------------------------------------
def _bits_equal(a, b) -> bool:
    a, b = _f32(a), _f32(b)
    za = np.where(a == 0, np.uint32(0), a.view(np.uint32))
    zb = np.where(b == 0, np.uint32(0), b.view(np.uint32))
    return a.shape == b.shape and bool(np.all(za == zb))


def self_test(verbose: bool = True) -> int:
    fails = 0

    def ok(cond, what):
        nonlocal fails
        if not cond:
            fails += 1
            print("SELF-TEST FAIL:", what)

    # E2M1 table from the spec
    ties = _f32([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, 7, 1e30, -0.25, -5.0001, 5.0001])
    want = _f32([0, 1, 1, 2, 2, 4, 4, 6, 6, 0, -6, 6])
    ok(_bits_equal(e2m1_decode(e2m1_encode(ties)), want), "E2M1 tie table")
    rng = np.random.default_rng(1)
    # all float32 in [0, 8) at fine spacing + random bit patterns of finite floats
    grid = np.concatenate([np.arange(0, 8, 2.0 ** -10, dtype=np.float32),
                           rng.standard_normal(200000).astype(np.float32) * 3])
    grid = np.concatenate([grid, -grid])
    ok(_bits_equal(e2m1_decode(e2m1_encode(grid)), e2m1_encode_generic(grid)), "E2M1 two ways")
    ok(np.all(e2m1_decode(np.arange(16)) == _f32([0, .5, 1, 1.5, 2, 3, 4, 6, -0., -.5, -1, -1.5, -2, -3, -4, -6])),
       "E2M1 decode")
    # E4M3 decode table vs encode round-trip
    codes = np.array([c for c in range(256) if (c & 0x7F) != 0x7F], dtype=np.uint8)
    vals = e4m3_decode(codes)
    ok(np.array_equal(e4m3_encode(vals), codes), "E4M3 encode(decode(c)) == c")
    ok(e4m3_decode(np.uint8(0x7E)) == 448 and e4m3_decode(np.uint8(0x01)) == 2.0 ** -9, "E4M3 range")
    ok(_bits_equal(e4m3_round(_f32([1.0625, 1.1875, 2.0 ** -10, 1.5 * 2 ** -9, 464, 1e38, -500])),
                   _f32([1, 1.25, 0, 2 ** -8, 448, 448, -448])), "E4M3 ties/saturation")
    # E6M2
    ok(_bits_equal(e6m2_round(_f32([1.125, 1.375, 1.875, 1e-20, 1e20, 49152, 57344])),
                   _f32([1, 1.5, 2, 2 ** -48, 49152, 49152, 49152])), "E6M2 ties/clamp")
    c6 = np.arange(255, dtype=np.uint8)
    ok(np.array_equal(e6m2_encode(e6m2_decode(c6)), c6), "E6M2 round-trip")
    # S1P2
    ok(_bits_equal(s1p2_decode(s1p2_encode(_f32([0.125, 0.375, 0.625, 0.875, 1.125, 1.375, 1.625, 1.875, 5, -0.375]))),
                   _f32([0, 0.5, 0.5, 1, 1, 1.5, 1.5, 1.75, 1.75, -0.5])), "S1P2 ties")
    # E8M0
    ok(_bits_equal(e8m0_decode(e8m0_encode(np.array([-127, 0, 127]))), _f32([2.0 ** -127, 1, 2.0 ** 127])), "E8M0")
    # masks
    ok(np.array_equal(mask_4of8_pairs(_f32([[1, -1, 1, 0, -1, 1, 0, 1]])), [[1, 1, 1, 1, 0, 0, 0, 0]]), "4:8p ties")
    ok(np.array_equal(mask_4of8_pairs(_f32([[0, 1, 0, 3, 2, 0, 0, 3]])), [[0, 0, 1, 1, 0, 0, 1, 1]]), "4:8p order")
    ok(np.array_equal(mask_2of4(_f32([[-2, 2, 2, -2, 0, -0., 1, 0]])), [[1, 1, 0, 0, 1, 0, 1, 0]]), "2:4 ties")

    try:
        import ml_dtypes
    except ImportError:
        print("SELF-TEST: ml_dtypes not installed; E2M1/E4M3 cross-check skipped")
        ml_dtypes = None
    if ml_dtypes is not None:
        g8 = np.concatenate([grid, np.arange(0, 6.5, 2.0 ** -12, dtype=np.float32)])
        g8 = g8[np.abs(g8) <= 6.0]   # ml_dtypes' float4 overflow behaviour is not the contract
        ref = g8.astype(ml_dtypes.float4_e2m1fn).astype(np.float32)
        ok(_bits_equal(e2m1_decode(e2m1_encode(g8)), ref), "E2M1 vs ml_dtypes")
        # E4M3: every float32 on a dense grid of each binade in range (< 464, beyond that
        # ml_dtypes gives NaN where the contract saturates)
        xs = [np.arange(0, 2.0 ** -6, 2.0 ** -14, dtype=np.float32)]
        for e in range(-6, 9):
            xs.append((np.arange(1, 2, 2.0 ** -12, dtype=np.float32) * F32(2.0 ** e)).astype(np.float32))
        x8 = np.concatenate(xs + [rng.standard_normal(100000).astype(np.float32) * 50])
        x8 = x8[np.abs(x8) < 464]
        x8 = np.concatenate([x8, -x8])
        ref = x8.astype(ml_dtypes.float8_e4m3fn)
        ok(_bits_equal(e4m3_round(x8), ref.astype(np.float32)), "E4M3 values vs ml_dtypes")
        ok(np.array_equal(e4m3_encode(x8[x8 != 0]), ref[x8 != 0].view(np.uint8)), "E4M3 bytes vs ml_dtypes")
        xb = rng.standard_normal(100000).astype(np.float32) * F32(1e3)
        xb = np.concatenate([xb, _f32([3.3e38, 3.39e38, 1e-40, 1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8])])
        ok(_bits_equal(bf16_round(xb), xb.astype(ml_dtypes.bfloat16).astype(np.float32)), "bf16 vs ml_dtypes")

    # speed: 256 x 4096 through every mode
    import time
    X = (rng.standard_normal((256, 4096)) * np.where(rng.random(4096) < 0.01, 50, 1)).astype(np.float32)
    t0 = time.time()
    for mode in ALL_MODES:
        quantize_activation(X, mode)
        quantize_weight(X, mode)
    dt = time.time() - t0
    if verbose:
        print(f"self-test: all {len(ALL_MODES)} modes x (activation, weight) on 256x4096 in {dt:.1f} s")
    # structural checks of the decomposition
    for mode in DECOMP_MODES:
        o = quantize_activation(X, mode)
        ok(_bits_equal(o["dequant"], (o["sparse"] + o["residual"]).astype(np.float32)), f"{mode} sum")
    print("self-test:", "OK" if fails == 0 else f"{fails} FAILED")
    return fails


if __name__ == "__main__":
    sys.exit(1 if self_test() else 0)
