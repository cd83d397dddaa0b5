#!/usr/bin/env python3
# Compares sharq's float32 logits with Hugging Face transformers' on the same model folder and
# token ids (issue 3 acceptance; runs on the device machine, which has torch + transformers).
# Not a unit test of sharq internals: an end-to-end peer check. Usage:
#   compare_logits.py --model DIR --ours LOGITS.npy --tokens 1,2,3 [--tol 1e-4]
# LOGITS.npy is (T, V) float32 from `sharq logits`. Error = max|ours - ref| / max|ref| per model.
import argparse
import sys

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--ours", required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    ids = [int(t) for t in a.tokens.split(",")]
    model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].double().numpy()
    ours = np.load(a.ours).astype(np.float64)
    if ours.shape != ref.shape:
        print(f"FAIL {a.model}: shape ours {ours.shape} vs transformers {ref.shape}")
        return 1
    err = np.abs(ours - ref).max() / np.abs(ref).max()
    ok = err < a.tol
    print(f"{'PASS' if ok else 'FAIL'} {a.model}: max relative error {err:.3e} (tol {a.tol:g}),"
          f" argmax agreement {np.mean(ours.argmax(-1) == ref.argmax(-1)):.3f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
