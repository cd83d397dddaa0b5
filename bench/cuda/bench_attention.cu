// Decode attention (device machine): Llama-3.1-8B's attention (32 heads, 8 kv heads, head_dim
// 128) at batch 1, 8 and 32 over a 1024-token context, the way the engine's decode step runs it:
// one call per layer over that layer's own caches (32 layers, so the caches do not sit in L2),
// captured as a CUDA graph of programmatic dependent launches, with the o projection's tensor max
// published (TensorMaxSink). Prints per-layer time and the K/V bytes read per second, and those as
// a share of the device copy rate (read + write), for the float32 and the FP16 KV cache; then the
// 2048-token prefill attention of one sequence (one layer at a time, same graph) for both.
// Usage: bench_attention [ctx]
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "bench_common.cuh"
#include "sharq/cuda/engine_ops.h"
#include "sharq/cuda/kernels.h"

using sharq::bench::dmalloc;
using sharq::bench::median_graph_us;
using sharq::cuda::check;

namespace {

__global__ void fill_kernel(float* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n;
       i += size_t{gridDim.x} * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    p[i] = (static_cast<float>(h & 0xFFFFu) - 32768.0f) / 16384.0f;  // [-2, 2)
  }
}

__global__ void to_half_kernel(const float* in, size_t n, __half* out) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n;
       i += size_t{gridDim.x} * blockDim.x) {
    out[i] = __float2half_rn(in[i]);
  }
}

void fill(float* p, size_t n, uint32_t seed) {
  fill_kernel<<<1024, 256>>>(p, n, seed);
  check(cudaGetLastError(), "fill");
}

// n cache elements of `kv`'s format (the float pointer the engine passes), filled like fill().
float* cache_alloc(size_t n, sharq::KvCache kv, uint32_t seed) {
  float* p = static_cast<float*>(dmalloc(n * 4));
  fill(p, n, seed);
  if (kv == sharq::KvCache::kF32) return p;
  float* h = static_cast<float*>(dmalloc(n * 2));
  to_half_kernel<<<1024, 256>>>(p, n, reinterpret_cast<__half*>(h));
  check(cudaDeviceSynchronize(), "to half");
  cudaFree(p);
  return h;
}

// Each layer's own K and V caches of `elems` elements in `kv`'s format, q and out (qn floats).
struct LayerBuffers {
  std::vector<float*> k, v;
  float* q;
  float* out;
  LayerBuffers(int64_t layers, size_t elems, size_t qn, sharq::KvCache kv)
      : k(static_cast<size_t>(layers)), v(static_cast<size_t>(layers)) {
    for (size_t l = 0; l < k.size(); ++l) {
      k[l] = cache_alloc(elems, kv, static_cast<uint32_t>(2 * l + 1));
      v[l] = cache_alloc(elems, kv, static_cast<uint32_t>(2 * l + 2));
    }
    q = static_cast<float*>(dmalloc(qn * 4));
    out = static_cast<float*>(dmalloc(qn * 4));
    fill(q, qn, 999);
  }
  LayerBuffers(const LayerBuffers&) = delete;
  LayerBuffers& operator=(const LayerBuffers&) = delete;
  ~LayerBuffers() {
    for (size_t l = 0; l < k.size(); ++l) {
      cudaFree(k[l]);
      cudaFree(v[l]);
    }
    cudaFree(q);
    cudaFree(out);
  }
};

}  // namespace

int main(int argc, char** argv) {
  namespace sc = sharq::cuda;
  const int64_t ctx = argc > 1 ? std::atoll(argv[1]) : 1024;
  constexpr int64_t kHeads = 32, kKvHeads = 8, kHeadDim = 128, kLayers = 32;
  const int64_t cap = ctx + 64;  // the engine's bench: ctx + (repeat + 1) x steps
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "props");
  const double bw = sharq::bench::copy_bandwidth_gbs(s);
  std::printf("device: %s, %d SMs; copy %.0f GB/s (read+write); ctx %ld\n", prop.name,
              prop.multiProcessorCount, bw, static_cast<long>(ctx));
  std::printf("| cache | batch | us a layer | K/V GB/s | %% of copy |\n|---|---|---|---|---|\n");
  for (const sharq::KvCache kv : {sharq::KvCache::kF32, sharq::KvCache::kF16}) {
    const double elem = kv == sharq::KvCache::kF16 ? 2.0 : 4.0;
    for (const int64_t batch : {1, 8, 32}) {
      const LayerBuffers lb(kLayers, static_cast<size_t>(batch * kKvHeads * cap * kHeadDim),
                            static_cast<size_t>(batch * kHeads * kHeadDim), kv);
      const size_t scratch_bytes = sc::prepare_scratch_bytes(batch);
      void* scratch = dmalloc(scratch_bytes);
      check(cudaMemset(scratch, 0, scratch_bytes), "zero scratch");
      float* ts = static_cast<float*>(dmalloc(8));
      const size_t ws_bytes =
          sc::attention_workspace_bytes(batch, 1, kHeads, kKvHeads, kHeadDim, cap);
      void* ws = dmalloc(std::max<size_t>(ws_bytes, 16));
      const sc::TensorMaxSink sink{static_cast<uint32_t*>(scratch), ts, ts + 1};
      check(cudaDeviceSynchronize(), "fill");
      const double kv_bytes = 2.0 * batch * kKvHeads * static_cast<double>(ctx) * kHeadDim * elem;
      const double us = median_graph_us(
          s,
          [&](int l) {
            sc::attention(lb.q, batch, 1, ctx - 1, kHeads, kKvHeads, kHeadDim, cap, lb.k[l],
                          lb.v[l], lb.out, ws_bytes ? ws : nullptr, ws_bytes, s, nullptr, &sink,
                          kv);
          },
          kLayers, 15);
      std::printf("| %s | %ld | %.2f | %.0f | %.0f |\n", sharq::kv_cache_name(kv).data(),
                  static_cast<long>(batch), us, kv_bytes / us * 1e-3,
                  100.0 * kv_bytes / us * 1e-3 / bw);
      for (void* p : {ws, scratch, static_cast<void*>(ts)}) cudaFree(p);
    }
  }
  // Prefill: one sequence of 2048 tokens, 4 layers' caches in turn.
  constexpr int64_t kT = 2048, kPrefillLayers = 4;
  std::printf("\n| cache | prefill 1 x %ld, us a layer |\n|---|---|\n", static_cast<long>(kT));
  for (const sharq::KvCache kv : {sharq::KvCache::kF32, sharq::KvCache::kF16}) {
    const LayerBuffers lb(kPrefillLayers, static_cast<size_t>(kKvHeads * kT * kHeadDim),
                          static_cast<size_t>(kT * kHeads * kHeadDim), kv);
    const size_t ws_bytes = sc::attention_workspace_bytes(1, kT, kHeads, kKvHeads, kHeadDim, kT);
    void* ws = dmalloc(std::max<size_t>(ws_bytes, 16));
    // Once outside the capture: the kernel's shared-memory opt-in is a host call.
    sc::attention(lb.q, 1, kT, 0, kHeads, kKvHeads, kHeadDim, kT, lb.k[0], lb.v[0], lb.out, ws,
                  ws_bytes, s, nullptr, nullptr, kv);
    check(cudaDeviceSynchronize(), "fill");
    const double us = median_graph_us(
        s,
        [&](int l) {
          sc::attention(lb.q, 1, kT, 0, kHeads, kKvHeads, kHeadDim, kT, lb.k[l], lb.v[l], lb.out,
                        ws, ws_bytes, s, nullptr, nullptr, kv);
        },
        kPrefillLayers, 7);
    std::printf("| %s | %.1f |\n", sharq::kv_cache_name(kv).data(), us);
    cudaFree(ws);
  }
  return 0;
}
