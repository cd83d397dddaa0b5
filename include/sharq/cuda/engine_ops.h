// Host API of the CUDA backend's non-GEMM decoder ops (sm_90a): embedding, RMSNorm, RoPE, KV
// cache, attention, SwiGLU, adds, bf16 rounding. Same semantics as sharq::cpu (cpu/ops.h), float32,
// device pointers in and out, every call asynchronous on `stream`. Not the FP4 GEMMs (kernels.h).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "sharq/cuda/kernels.h"
#include "sharq/kv_cache.h"

namespace sharq::cuda {

// table: (vocab, d); ids: (t) device int32, already checked to lie in [0, vocab); out: (t, d).
void embedding(const float* table, int64_t vocab, int64_t d, const int32_t* ids, int64_t t,
               float* out, cudaStream_t stream);

// x, out: (rows, d); w: (d). out = x * float(1 / sqrt(mean_double(x^2) + eps)) * w, as the CPU.
// out may alias x.
void rms_norm(const float* x, const float* w, int64_t rows, int64_t d, float eps, float* out,
              cudaStream_t stream);

// x: (batch * t, heads * head_dim), row b * t + i at position pos0 + i, rotated in place (HF
// rotate_half pairs (j, j + head_dim / 2)); inv_freq: (head_dim / 2) device floats
// (cpu::rope_inv_freq). Angle = float(pos) * inv_freq[j] in float32, cos/sin in double, as the CPU.
// pos_dev, when given, is a device int64 read by the kernel in place of pos0: a recorded decode
// step (CUDA graph) replays with a new position (the same holds for kv_store and attention).
void rope(float* x, int64_t batch, int64_t t, int64_t pos0, int64_t heads, int64_t head_dim,
          const float* inv_freq, cudaStream_t stream, const int64_t* pos_dev = nullptr);

// k, v: (batch * t, kv_heads * head_dim) -> k_cache, v_cache: (batch, kv_heads, capacity,
// head_dim) at rows pos0 .. pos0 + t - 1 of each sequence. Throws sharq::Error when
// pos0 + t > capacity (the caller keeps *pos_dev + t <= capacity).
// kv: the caches' format. KvCache::kF16: the caches are __half arrays of that shape behind the
// float pointers (half the bytes), each value rounded to nearest even (the same holds for
// rope_kv_store and attention).
void kv_store(const float* k, const float* v, int64_t batch, int64_t t, int64_t pos0,
              int64_t kv_heads, int64_t head_dim, int64_t capacity, float* k_cache, float* v_cache,
              cudaStream_t stream, const int64_t* pos_dev = nullptr, KvCache kv = KvCache::kF32);

// rope(q, heads), rope(k, kv_heads), then kv_store(k, v) in one launch, with the same results
// (q and k rotated in place, the caches written).
void rope_kv_store(float* q, float* k, const float* v, int64_t batch, int64_t t, int64_t pos0,
                   int64_t heads, int64_t kv_heads, int64_t head_dim, const float* inv_freq,
                   int64_t capacity, float* k_cache, float* v_cache, cudaStream_t stream,
                   const int64_t* pos_dev = nullptr, KvCache kv = KvCache::kF32);

// Device bytes of scratch that attention() needs for these shapes at any pos0 with
// pos0 + t <= capacity (0 when it needs none). Depends on the device's SM count.
size_t attention_workspace_bytes(int64_t batch, int64_t t, int64_t heads, int64_t kv_heads,
                                 int64_t head_dim, int64_t capacity);

namespace testing {
// Which prefill attention (t >= 8) runs, for A/B and the tests: the tensor-core kernel with its
// products on FP16 halves of power-of-two-scaled operands (default), the same kernel on TF32
// halves (SHARQ_CUDA_ATTN_PREFILL=tf32), or the FP32 CUDA-core flash kernel
// (SHARQ_CUDA_ATTN_PREFILL=fp32). The variable sets the start value.
enum class PrefillKernel { kF16x3, kTf32x3, kFp32Cores };
void attention_prefill_kernel(PrefillKernel k);
}  // namespace testing

// Causal GQA attention over the caches, float32-grade throughout (online softmax; decode on FP32
// CUDA cores, prefill on tensor cores: every product as three products of the operands' high and
// low FP16 halves, float32-grade; the operands scaled by powers of two into FP16's range).
// q, out: (batch * t, heads * head_dim); row b * t + i (position pos0 + i) attends to cache rows
// 0 .. pos0 + i of sequence b; head h reads kv head h / (heads / kv_heads); scores scaled by
// 1 / sqrt(head_dim). k_cache, v_cache: (batch, kv_heads, capacity, head_dim).
// t < 8 runs a split-key (flash-decoding) kernel plus a combine pass that uses `workspace`
// (attention_workspace_bytes, may be null when that is 0); larger t a tiled flash kernel. The
// decode kernel's key ranges follow the capacity, not the position, so a step gives the same
// bits whether its position comes from pos0 or from pos_dev.
// kv = KvCache::kF16: the caches hold halves (kv_store); decode and prefill take them into
// tensor-core products as they are (q and the softmax weights split into FP16 hi + lo, q scaled by
// a power of two: float32-grade). SHARQ_CUDA_ATTN_PREFILL=fp32|tf32 reads only a float32 cache
// (sharq::Error).
// head_dim must be 64 or 128 (sharq::Error otherwise). out must not alias q.
// sink: where the combine pass also publishes the tensor max of out for an FP4 prepare (then
// prepare_pass quantizes out); returns whether it did (only the split-key kernel's combine pass
// publishes: false for one key range or t >= 8, and the caller runs the whole prepare).
bool attention(const float* q, int64_t batch, int64_t t, int64_t pos0, int64_t heads,
               int64_t kv_heads, int64_t head_dim, int64_t capacity, const float* k_cache,
               const float* v_cache, float* out, void* workspace, size_t workspace_bytes,
               cudaStream_t stream, const int64_t* pos_dev = nullptr,
               const TensorMaxSink* sink = nullptr, KvCache kv = KvCache::kF32);

// table[p * half + j] = (cos, sin) of p * inv_freq[j] for positions p < positions, j < half, with
// the RoPE kernels' arithmetic (angle in float32, cos and sin in double, rounded to float).
void rope_cos_sin_table(const float* inv_freq, int64_t half, int64_t positions, float2* table,
                        cudaStream_t stream);

// rope_kv_store(q, k, v, ...) then attention(q, ...) for one decode step (t = 1) over float32
// caches, in the attention's own launches: the split-key kernel rotates q and the step's new key
// in registers (cos and sin taken before its dependency wait) and its block holding the new
// position uses k and v from registers and stores them into the caches. out, the caches and the
// published max (sink) equal those of the two calls bit for bit; q and k are read, not rotated in
// place. cos_sin: rope_cos_sin_table's (cos, sin) for every position below capacity (the kernel
// reads the step's row before its dependency wait instead of computing sincos in double in every
// block). Returns whether it ran (false, nothing launched: t != 1, an FP16 cache, head_dim other
// than 64 or 128); *published as attention()'s result.
bool rope_attention_decode(const float* q, const float* k, const float* v, int64_t batch,
                           int64_t pos0, int64_t heads, int64_t kv_heads, int64_t head_dim,
                           const float2* cos_sin, int64_t capacity, float* k_cache, float* v_cache,
                           float* out, void* workspace, size_t workspace_bytes, cudaStream_t stream,
                           const int64_t* pos_dev, const TensorMaxSink* sink, KvCache kv,
                           bool* published);

// out = gate / (1 + exp(-gate)) * up, (n). out may alias gate or up.
void swiglu(const float* gate, const float* up, int64_t n, float* out, cudaStream_t stream);

// x += y, (n).
void add(float* x, const float* y, int64_t n, cudaStream_t stream);

// y: (rows, n) += bias: (n) on every row.
void add_bias(float* y, const float* bias, int64_t rows, int64_t n, cudaStream_t stream);

// out_bf16[i] = the bfloat16 bits of sharq::bf16_round(x[i]) (RNE by integer add, bit for bit
// with codecs.h, including its handling of NaN, Inf and overflow), (n).
void round_to_bf16(const float* x, int64_t n, uint16_t* out_bf16, cudaStream_t stream);

// out[i] = the float32 whose high half is in[i] (exact), (n).
void bf16_to_f32(const uint16_t* in, int64_t n, float* out, cudaStream_t stream);

}  // namespace sharq::cuda
