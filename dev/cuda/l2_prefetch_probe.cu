// Decode ladder (dev only, built by scripts/pack_device.sh): does an L2 prefetch of a decode
// product's weights, issued while other work runs, make the product faster? The engine's
// next-product prefetch (src/cuda/next_product_prefetch.h) measured no batch-1 gain (session 9),
// so this isolates the mechanism. Per Llama-3.1-8B product at M = 1 (sharq-nvfp4-24, the
// library's decode GEMM, weights rotated beyond L2), each call is
//   [fork: prefetch on a side stream] + a one-block wait kernel of D us + the GEMM (joined),
// graph-captured, and the time of the wait alone is subtracted: what remains is the GEMM's time
// plus whatever the prefetch failed to hide. Prefetch variants:
//   none;
//   bulk B:  cuda::l2_prefetch_weights (cp.async.bulk.prefetch.L2) with a budget of B MiB;
//   touch B: the same byte ranges read by plain loads (a warp per 8 KB chunk, __ldcg: allocated in
//            L2 only), in case the bulk prefetch is dropped.
// Build: see decode_tiled_math_probe.cu (the same command with this file).
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <vector>

#include "../../bench/cuda/bench_common.cuh"
#include "sharq/cuda/l2_prefetch_plan.h"

namespace {

using sharq::cuda::check;
namespace lp = sharq::cuda::l2_prefetch;

__global__ void wait_kernel(int64_t ns) {
  uint64_t t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < static_cast<uint64_t>(ns));
}

struct TouchPlan {
  const uint8_t* codes[4];
  const uint8_t* scales[4];
  lp::PartPlan part[4];
  int count;
};

// A warp per code chunk (its strip's scales with chunk 0): every byte read once through L2.
__global__ void touch_kernel(const __grid_constant__ TouchPlan plan, uint32_t* sink) {
  int64_t j = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  uint32_t acc = 0;
  for (int i = 0; i < plan.count; ++i) {
    const lp::PartPlan& p = plan.part[i];
    if (j >= p.chunks()) {
      j -= p.chunks();
      continue;
    }
    const int64_t s = j / p.chunks_per_strip, c = j % p.chunks_per_strip;
    const lp::Range r = p.code_chunk(s, c);
#pragma unroll 4
    for (int64_t b = 16 * lane; b < r.bytes; b += 512) {
      const uint4 v = __ldcg(reinterpret_cast<const uint4*>(plan.codes[i] + r.offset + b));
      acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (c == 0) {
      const lp::Range q = p.scale_range(s);
      for (int64_t b = 16 * lane; b < q.bytes; b += 512) {
        const uint4 v = __ldcg(reinterpret_cast<const uint4*>(plan.scales[i] + q.offset + b));
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
      }
    }
    break;
  }
  if (acc == 0x9e3779b9u) *sink = acc;  // keeps the loads
}

}  // namespace

int main() {
  namespace sb = sharq::bench;
  namespace sc = sharq::cuda;
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "props");
  cudaStream_t s, side;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream");
  check(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking), "stream");
  cudaEvent_t fork, join;
  check(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming), "event");
  check(cudaEventCreateWithFlags(&join, cudaEventDisableTiming), "event");
  uint32_t* sink = static_cast<uint32_t*>(sb::dmalloc(4));
  std::printf("%s, M = 1, sharq-nvfp4-24; GEMM us = (wait + GEMM) - wait, graph-timed\n",
              prop.name);
  std::printf(
      "| product (K x N) | MB | wait us | GEMM alone | after wait, none | bulk 12 | bulk 24 "
      "| bulk 40 | touch 24 | touch 40 |\n|---|---|---|---|---|---|---|---|---|---|\n");
  struct Product {
    const char* name;
    int64_t k;
    std::vector<int64_t> ns;
  };
  const Product products[] = {{"qkv", 4096, {4096, 1024, 1024}},
                              {"o", 4096, {4096}},
                              {"gate/up", 4096, {14336, 14336}},
                              {"down", 14336, {4096}}};
  for (const Product& pr : products) {
    const int64_t k = pr.k;
    size_t bytes = 0;
    int64_t n_sum = 0;
    for (int64_t n : pr.ns) {
      bytes += size_t(n) * k / 2 + size_t(n) * k / 32;
      n_sum += n;
    }
    const int rot = sb::rotation_copies(prop, bytes);
    uint32_t* scratch = static_cast<uint32_t*>(sb::dmalloc(64));
    std::vector<std::vector<sc::Nvfp4View>> w(rot);
    std::vector<float*> ys;
    for (int64_t n : pr.ns) ys.push_back(static_cast<float*>(sb::dmalloc(size_t(n) * 4)));
    for (size_t p = 0; p < pr.ns.size(); ++p) {
      const int64_t n = pr.ns[p];
      float* wf = static_cast<float*>(sb::dmalloc(size_t(n) * k * 4));
      sb::fill_random(wf, size_t(n) * k, 5 + p, 8.0f);
      for (int r = 0; r < rot; ++r) {
        w[r].push_back({static_cast<uint8_t*>(sb::dmalloc(size_t(n) * k / 2)),
                        static_cast<uint8_t*>(sb::dmalloc(size_t(n) * k / 32)),
                        static_cast<float*>(sb::dmalloc(4))});
        sc::pack_weight(wf, n, k, 32, w[r].back(), scratch, nullptr);
      }
      check(cudaDeviceSynchronize(), "pack");
      cudaFree(wf);
    }
    // The activation: prepare()'s planes of a random row.
    const sb::PreparedRow act(k, scratch);
    uint16_t* xh = act.planes;
    check(cudaDeviceSynchronize(), "setup");

    auto parts_of = [&](int r) {
      std::vector<sc::L2PrefetchPart> v;
      for (size_t p = 0; p < pr.ns.size(); ++p) v.push_back({w[r][p], pr.ns[p], k, 32});
      return v;
    };
    auto gemm = [&](int r) {
      std::vector<sc::DecodeGemmPart> gp;
      for (size_t p = 0; p < pr.ns.size(); ++p) gp.push_back({w[r][p], pr.ns[p], ys[p]});
      sc::gemm_decode_mma_group_f32(xh, 2, act.scale(), 1, gp.data(), static_cast<int>(gp.size()),
                                    32, k, s);
    };
    // kind: 0 none, 1 bulk, 2 touch; mib: budget.
    auto chain = [&](int kind, int64_t mib, int64_t wait_ns, bool with_gemm) {
      return [&, kind, mib, wait_ns, with_gemm](int i) {
        const int r = i % rot;
        if (kind != 0) {
          check(cudaEventRecord(fork, s), "fork");
          check(cudaStreamWaitEvent(side, fork), "fork");
          const auto parts = parts_of(r);
          if (kind == 1) {
            sc::l2_prefetch_weights(parts.data(), static_cast<int>(parts.size()), mib << 20, side);
          } else {
            TouchPlan tp{};
            tp.count = static_cast<int>(parts.size());
            int64_t total = 0, chunks = 0;
            for (const auto& q : parts) total += lp::part_bytes(q.n, q.k, q.group);
            for (int p = 0; p < tp.count; ++p) {
              tp.codes[p] = parts[p].w.codes;
              tp.scales[p] = parts[p].w.scales;
              tp.part[p] = lp::plan_part(parts[p].n, k, 32, total, mib << 20);
              chunks += tp.part[p].chunks();
            }
            touch_kernel<<<static_cast<unsigned>((chunks * 32 + 255) / 256), 256, 0, side>>>(tp,
                                                                                             sink);
          }
          check(cudaEventRecord(join, side), "join");
        }
        wait_kernel<<<1, 32, 0, s>>>(wait_ns);
        if (kind != 0) check(cudaStreamWaitEvent(s, join), "join");
        if (with_gemm) gemm(r);
      };
    };
    const double alone = sb::median_graph_us(s, [&](int i) { gemm(i % rot); });
    for (int64_t wait_us : {10, 25}) {
      const int64_t ns = wait_us * 1000;
      const double t_wait = sb::median_graph_us(s, chain(0, 0, ns, false));
      auto net = [&](int kind, int64_t mib) {
        return sb::median_graph_us(s, chain(kind, mib, ns, true)) - t_wait;
      };
      std::printf(
          "| %s (%lld x %lld) | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | "
          "%.1f |\n",
          pr.name, (long long)k, (long long)n_sum, bytes / 1e6, t_wait, alone, net(0, 0),
          net(1, 12), net(1, 24), net(1, 40), net(2, 24), net(2, 40));
      std::fflush(stdout);
    }
    for (auto& v : w) {
      for (auto& q : v) {
        cudaFree(q.codes);
        cudaFree(q.scales);
        cudaFree(q.tensor_scale);
      }
    }
    for (void* p : {(void*)scratch}) cudaFree(p);
    for (float* y : ys) cudaFree(y);
  }
  return 0;
}
