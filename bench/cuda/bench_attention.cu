// Decode attention (device machine): Llama-3.1-8B's attention (32 heads, 8 kv heads, head_dim
// 128) at batch 1, 8 and 32 over a 1024-token context, the way the engine's decode step runs it:
// one call per layer over that layer's own caches (32 layers, so the caches do not sit in L2),
// captured as a CUDA graph of programmatic dependent launches, with the o projection's tensor max
// published (TensorMaxSink). Prints per-layer time and the K/V bytes read per second, and those as
// a share of the device copy rate (read + write). Usage: bench_attention [ctx]
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

void fill(float* p, size_t n, uint32_t seed) {
  fill_kernel<<<1024, 256>>>(p, n, seed);
  check(cudaGetLastError(), "fill");
}

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
  std::printf("| batch | us a layer | K/V GB/s | %% of copy |\n|---|---|---|---|\n");
  for (const int64_t batch : {1, 8, 32}) {
    const size_t cache = static_cast<size_t>(batch * kKvHeads * cap * kHeadDim);
    const size_t qn = static_cast<size_t>(batch * kHeads * kHeadDim);
    std::vector<float*> kc(kLayers), vc(kLayers);
    for (int l = 0; l < kLayers; ++l) {
      kc[l] = static_cast<float*>(dmalloc(cache * 4));
      vc[l] = static_cast<float*>(dmalloc(cache * 4));
      fill(kc[l], cache, 2 * l + 1);
      fill(vc[l], cache, 2 * l + 2);
    }
    float* q = static_cast<float*>(dmalloc(qn * 4));
    float* out = static_cast<float*>(dmalloc(qn * 4));
    fill(q, qn, 999);
    const size_t scratch_bytes = sc::prepare_scratch_bytes(batch);
    void* scratch = dmalloc(scratch_bytes);
    check(cudaMemset(scratch, 0, scratch_bytes), "zero scratch");
    float* ts = static_cast<float*>(dmalloc(8));
    const size_t ws_bytes =
        sc::attention_workspace_bytes(batch, 1, kHeads, kKvHeads, kHeadDim, cap);
    void* ws = dmalloc(std::max<size_t>(ws_bytes, 16));
    const sc::TensorMaxSink sink{static_cast<uint32_t*>(scratch), ts, ts + 1};
    check(cudaDeviceSynchronize(), "fill");
    const double kv_bytes = 2.0 * batch * kKvHeads * static_cast<double>(ctx) * kHeadDim * 4;
    const double us = median_graph_us(
        s,
        [&](int l) {
          sc::attention(q, batch, 1, ctx - 1, kHeads, kKvHeads, kHeadDim, cap, kc[l], vc[l], out,
                        ws_bytes ? ws : nullptr, ws_bytes, s, nullptr, &sink);
        },
        kLayers, 15);
    std::printf("| %ld | %.2f | %.0f | %.0f |\n", static_cast<long>(batch), us,
                kv_bytes / us * 1e-3, 100.0 * kv_bytes / us * 1e-3 / bw);
    for (int l = 0; l < kLayers; ++l) {
      cudaFree(kc[l]);
      cudaFree(vc[l]);
    }
    for (void* p :
         {static_cast<void*>(q), static_cast<void*>(out), ws, scratch, static_cast<void*>(ts)}) {
      cudaFree(p);
    }
  }
  return 0;
}
