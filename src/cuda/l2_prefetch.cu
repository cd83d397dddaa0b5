// L2 prefetch of the next decode product's weights (l2_prefetch_plan.h says which bytes and why).
// One thread per code chunk issues one cp.async.bulk.prefetch.L2 and is done: the copy engine
// fetches asynchronously, so the kernel's blocks leave their SMs within microseconds and the
// fetch proceeds while the decode step's small kernels run.
#include <algorithm>
#include <cstdint>
#include <string>

#include "sharq/cuda/kernels.h"
#include "sharq/cuda/l2_prefetch_plan.h"
#include "sharq/error.h"

namespace sharq::cuda {
namespace {

constexpr int kThreads = 128;

struct Plan {
  const uint8_t* codes[kMaxPrefetchParts];
  const uint8_t* scales[kMaxPrefetchParts];
  l2_prefetch::PartPlan part[kMaxPrefetchParts];
  int count;
};

__device__ __forceinline__ void prefetch_l2(const uint8_t* base, l2_prefetch::Range r) {
  if (r.bytes <= 0) return;
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(base + r.offset),
               "r"(static_cast<uint32_t>(r.bytes))
               : "memory");
}

__global__ void __launch_bounds__(kThreads) l2_prefetch_kernel(const __grid_constant__ Plan plan) {
  int64_t j = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x;
  for (int i = 0; i < plan.count; ++i) {
    const l2_prefetch::PartPlan& p = plan.part[i];
    const int64_t chunks = p.chunks();
    if (j >= chunks) {
      j -= chunks;
      continue;
    }
    const int64_t s = j / p.chunks_per_strip, c = j % p.chunks_per_strip;
    prefetch_l2(plan.codes[i], p.code_chunk(s, c));
    if (c == 0) prefetch_l2(plan.scales[i], p.scale_range(s));
    return;
  }
}

// l2_prefetch_kv: thread (cache, region, chunk) prefetches its chunk of the region's leading rows;
// the row count is read on the device (a recorded step's position moves between replays).
constexpr int64_t kKvChunkBytes = int64_t{32} << 10;

__global__ void __launch_bounds__(kThreads)
    l2_prefetch_kv_kernel(const uint8_t* kc, const uint8_t* vc, int64_t regions,
                          int64_t region_bytes, int64_t row_bytes, int64_t pos0,
                          const int64_t* pos_dev, int64_t max_rows, int64_t chunks) {
  const int64_t j = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x;
  if (j >= 2 * regions * chunks) return;
  const int64_t pos = pos_dev ? *pos_dev : pos0;
  const int64_t bytes = (pos < max_rows ? pos : max_rows) * row_bytes;
  const int64_t c = j % chunks, r = (j / chunks) % regions;
  const uint8_t* base = (j / (chunks * regions) == 0 ? kc : vc) + r * region_bytes;
  const int64_t off = c * kKvChunkBytes;
  if (off >= bytes) return;
  const int64_t n = bytes - off < kKvChunkBytes ? bytes - off : kKvChunkBytes;
  prefetch_l2(base, l2_prefetch::Range{off, n});
}

}  // namespace

void l2_prefetch_kv(const void* k_cache, const void* v_cache, int64_t regions, int64_t capacity,
                    int64_t row_bytes, int64_t pos0, const int64_t* pos_dev, int64_t budget_bytes,
                    cudaStream_t stream) {
  if (regions < 0 || capacity < 0 || row_bytes <= 0 || row_bytes % 16 != 0 ||
      ((reinterpret_cast<uintptr_t>(k_cache) | reinterpret_cast<uintptr_t>(v_cache)) & 15))
    throw Error("cuda::l2_prefetch_kv: " + std::to_string(regions) + " regions of " +
                std::to_string(capacity) + " rows of " + std::to_string(row_bytes) +
                " bytes (rows a multiple of 16 bytes, caches 16-byte aligned)");
  if (regions == 0 || capacity == 0 || budget_bytes <= 0) return;
  // Leading rows of each region that fit the budget over both caches; the chunks cover them.
  const int64_t max_rows = std::min(capacity, budget_bytes / (2 * regions * row_bytes));
  if (max_rows == 0) return;
  const int64_t chunks = (max_rows * row_bytes + kKvChunkBytes - 1) / kKvChunkBytes;
  const auto grid = static_cast<unsigned>((2 * regions * chunks + kThreads - 1) / kThreads);
  l2_prefetch_kv_kernel<<<grid, kThreads, 0, stream>>>(
      static_cast<const uint8_t*>(k_cache), static_cast<const uint8_t*>(v_cache), regions,
      capacity * row_bytes, row_bytes, pos0, pos_dev, max_rows, chunks);
  check(cudaGetLastError(), "l2_prefetch_kv_kernel");
}

void l2_prefetch_weights(const L2PrefetchPart* parts, int count, int64_t budget_bytes,
                         cudaStream_t stream) {
  if (count < 0 || count > kMaxPrefetchParts)
    throw Error("cuda::l2_prefetch_weights: " + std::to_string(count) + " parts (at most " +
                std::to_string(kMaxPrefetchParts) + ")");
  int64_t total = 0;
  for (int i = 0; i < count; ++i) {
    const L2PrefetchPart& q = parts[i];
    if (q.n < 0 || q.k <= 0 || q.k % 64 != 0 || (q.group != 16 && q.group != 32))
      throw Error("cuda::l2_prefetch_weights: part " + std::to_string(i) + " is " +
                  std::to_string(q.n) + " x " + std::to_string(q.k) + " g" +
                  std::to_string(q.group) + " (K a positive multiple of 64, g16 or g32)");
    if ((reinterpret_cast<uintptr_t>(q.w.codes) | reinterpret_cast<uintptr_t>(q.w.scales)) & 15)
      throw Error("cuda::l2_prefetch_weights: part " + std::to_string(i) +
                  " codes and scales must be 16-byte aligned");
    total += l2_prefetch::part_bytes(q.n, q.k, q.group);
  }
  Plan plan{};
  plan.count = count;
  int64_t chunks = 0;
  for (int i = 0; i < count; ++i) {
    const L2PrefetchPart& q = parts[i];
    plan.codes[i] = q.w.codes;
    plan.scales[i] = q.w.scales;
    plan.part[i] = l2_prefetch::plan_part(q.n, q.k, q.group, total, budget_bytes);
    chunks += plan.part[i].chunks();
  }
  if (chunks == 0) return;
  const auto grid = static_cast<unsigned>((chunks + kThreads - 1) / kThreads);
  l2_prefetch_kernel<<<grid, kThreads, 0, stream>>>(plan);
  check(cudaGetLastError(), "l2_prefetch_kernel");
}

}  // namespace sharq::cuda
