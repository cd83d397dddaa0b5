#!/usr/bin/env python3
"""The external peer of `sharq bench`: Hugging Face transformers + torch, BF16, on the same
Llama-3.1-8B config with random weights, on the same card. Prefill latency of 1 x P tokens and
decode tokens/s at several batch sizes after a C-token context (greedy, logits of the last
position only, default dynamic KV cache). Prints a table and writes JSON. Runs on the device
machine (its python3 has torch and transformers); nothing is downloaded."""
import argparse
import json
import statistics
import time

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM


def llama31_8b_config(layers):
    kw = dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
              num_hidden_layers=layers, num_attention_heads=32, num_key_value_heads=8,
              head_dim=128, max_position_embeddings=131072, rms_norm_eps=1e-5,
              tie_word_embeddings=False, attention_bias=False, mlp_bias=False)
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    try:  # transformers >= 5 names them rope_parameters
        return LlamaConfig(**kw, rope_parameters={**scaling, "rope_theta": 500000.0})
    except TypeError:
        return LlamaConfig(**kw, rope_theta=500000.0, rope_scaling=scaling)


def timed(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prefill", type=int, default=2048)
    ap.add_argument("--batch", default="1,8,32")
    ap.add_argument("--ctx", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--json", default="")
    a = ap.parse_args()

    torch.manual_seed(0)
    cfg = llama31_8b_config(a.layers)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg)
    model.eval()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    gen = torch.Generator(device="cuda").manual_seed(1)
    vocab = cfg.vocab_size
    res = {"peer": f"transformers {transformers.__version__}, torch {torch.__version__}, bf16",
           "device": torch.cuda.get_device_name(0), "prefill_tokens": a.prefill, "ctx": a.ctx,
           "decode_steps": a.steps, "weight_bytes": weight_bytes, "decode": []}

    with torch.inference_mode():
        ids = torch.randint(0, vocab, (1, a.prefill), device="cuda", generator=gen)
        res["prefill_seconds"] = timed(lambda: model(ids, use_cache=True, logits_to_keep=1),
                                       a.repeat)
        print(f"hf prefill {a.prefill}: {res['prefill_seconds'] * 1e3:.2f} ms", flush=True)
        for b in [int(x) for x in a.batch.split(",")]:
            ctx = torch.randint(0, vocab, (b, a.ctx), device="cuda", generator=gen)

            def decode():
                out = model(ctx, use_cache=True, logits_to_keep=1)
                pkv = out.past_key_values
                nxt = out.logits[:, -1].argmax(-1, keepdim=True)
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(a.steps):
                    out = model(nxt, past_key_values=pkv, use_cache=True)
                    pkv = out.past_key_values
                    nxt = out.logits[:, -1].argmax(-1, keepdim=True)
                torch.cuda.synchronize()
                return time.perf_counter() - t0

            decode()  # warm-up
            secs = statistics.median(decode() for _ in range(a.repeat))
            tps = b * a.steps / secs
            res["decode"].append({"batch": b, "seconds": secs, "tokens_per_s": tps})
            print(f"hf decode batch {b} ctx {a.ctx}: {tps:.1f} tokens/s", flush=True)
    print(json.dumps(res, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
