#!/usr/bin/env python3
# Writes tests/model/data/smollm2_expected.json: config and per-tensor checks (a row, sum, sum of
# squares) of the default model, dequantized by gguf-py and un-permuted with numpy (an oracle
# independent of our C++). Not run by the tests. Usage: make_default_expected.py MODEL.gguf
import json, os, sys
import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

r = GGUFReader(sys.argv[1])
f = lambda k: r.fields[k].contents()
n_head, n_kv = f("llama.attention.head_count"), f("llama.attention.head_count_kv")


def unpermute(w, heads):
    # Inverse of convert_hf_to_gguf's permute: reshape(heads, 2, D/2, cols).swapaxes(1, 2).
    rows = w.shape[0]
    return w.reshape(heads, rows // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


checks = {"token_embd.weight": ("model.embed_tokens.weight", None),
          "blk.0.attn_q.weight": ("model.layers.0.self_attn.q_proj.weight", n_head),
          "blk.0.attn_k.weight": ("model.layers.0.self_attn.k_proj.weight", n_kv),
          "blk.7.attn_v.weight": ("model.layers.7.self_attn.v_proj.weight", None),
          "blk.29.ffn_down.weight": ("model.layers.29.mlp.down_proj.weight", None),
          "output_norm.weight": ("model.norm.weight", None)}
out = {"config": {"arch": f("general.architecture"), "hidden_size": f("llama.embedding_length"),
                  "intermediate_size": f("llama.feed_forward_length"),
                  "num_layers": f("llama.block_count"), "num_heads": n_head, "num_kv_heads": n_kv,
                  "vocab_size": int(f("llama.vocab_size")),
                  "max_position_embeddings": f("llama.context_length"),
                  "rope_theta": f("llama.rope.freq_base"),
                  "rms_norm_eps": f("llama.attention.layer_norm_rms_epsilon")},
       "tensors": []}
for t in r.tensors:
    if t.name not in checks:
        continue
    hf, heads = checks[t.name]
    shape = [int(d) for d in reversed(t.shape.tolist())]
    w = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
    if heads:
        w = unpermute(w, heads)
    row = w[3] if w.ndim == 2 else w
    out["tensors"].append({"name": hf, "gguf_type": t.tensor_type.name, "shape": shape,
                           "row3_head": [float(x) for x in row[:8]],
                           "sum": float(w.astype(np.float64).sum()),
                           "sumsq": float((w.astype(np.float64) ** 2).sum())})
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "smollm2_expected.json")
json.dump(out, open(path, "w"), indent=1)
print(path)
