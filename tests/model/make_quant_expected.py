#!/usr/bin/env python3
# Writes tests/model/data/ggml_quants_expected.json: random ggml blocks (hex) and their float32
# dequantization by gguf-py (pip install gguf), an oracle independent of our C++ code.
# Not run by the tests; rerun only to regenerate the fixture.
import json, os, sys
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

rng = np.random.default_rng(1234)
out = []
# (type, bytes per block, offsets of fp16 scale fields to keep finite)
specs = [(T.Q8_0, 34, [0]), (T.Q4_0, 18, [0]), (T.Q4_1, 20, [0, 2]), (T.Q4_K, 144, [0, 2]),
         (T.Q5_K, 176, [0, 2]), (T.Q6_K, 210, [208])]
for t, nb, scale_at in specs:
    blocks = 2
    raw = bytearray(rng.integers(0, 256, size=nb * blocks, dtype=np.uint8).tobytes())
    for b in range(blocks):
        for off in scale_at:
            h = np.float16(rng.uniform(-0.05, 0.05)).view(np.uint16)
            raw[b * nb + off: b * nb + off + 2] = int(h).to_bytes(2, "little")
    vals = dequantize(np.frombuffer(bytes(raw), dtype=np.uint8), t).astype(np.float32).ravel()
    out.append({"type": int(t), "name": t.name, "hex": raw.hex(),
                "expected": [float(v) for v in vals]})
for t, dt in [(T.F16, np.float16), (T.BF16, None)]:
    if dt is not None:
        x = rng.normal(size=64).astype(np.float16)
        raw = x.tobytes()
        vals = x.astype(np.float32)
    else:
        u = rng.integers(0, 0x7f80, size=64, dtype=np.uint16) | (rng.integers(0, 2, size=64, dtype=np.uint16) << 15)
        raw = u.astype("<u2").tobytes()
        vals = (u.astype(np.uint32) << 16).view(np.float32)
    out.append({"type": int(t), "name": t.name, "hex": raw.hex(),
                "expected": [float(v) for v in vals]})
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "ggml_quants_expected.json")
with open(path, "w") as f:
    json.dump(out, f)
print(path, sum(len(o["expected"]) for o in out), "values")
