// Decode GEMM ladder (dev only, not built by CMake): does the FP4 weight layout cap the decode
// GEMM's bandwidth? Streams the same bytes as gemm_decode_mma at M = 1 (16-row tiles, windows of
// 128 K per warp, a ring of 3 windows, each lane 16 bytes of codes and one scale byte per row)
// with no math, in two layouts: row-major (today: a row gives a 64-byte piece per window, 16 rows
// K/2 bytes apart) and tiled (a tile's window stored as one 1 KB run of codes and one 64-byte run
// of scales, so each warp load is 512 contiguous bytes). Prints GB/s next to a device copy.
// Build, after the library:
//   nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -Iinclude
//   dev/cuda/decode_layout_probe.cu
//     build-cuda/src/cuda/libsharq_cuda.a build-cuda/src/libsharq_core.a -o decode_layout_probe
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <vector>

#include "../../bench/cuda/bench_common.cuh"

namespace {

using sharq::cuda::check;

struct Slot {
  uint4 q0, q1;
  uint32_t s0, s1;
};

template <bool TILED>
__device__ __forceinline__ void load(Slot& sl, const uint8_t* __restrict__ codes,
                                     const uint8_t* __restrict__ scales, int64_t tile, int64_t k,
                                     int64_t nwin, int64_t w, int g, int t) {
  if (w >= nwin) return;
  if (TILED) {
    const uint8_t* c = codes + (tile * nwin + w) * 1024 + g * 64 + t * 16;
    const uint8_t* s = scales + (tile * nwin + w) * 64 + g * 4 + t;
    sl.q0 = __ldg(reinterpret_cast<const uint4*>(c));
    sl.q1 = __ldg(reinterpret_cast<const uint4*>(c + 512));
    sl.s0 = __ldg(s);
    sl.s1 = __ldg(s + 32);
  } else {
    const int64_t kk = w * 128 + 32 * t, r0 = tile * 16 + g, r1 = r0 + 8;
    sl.q0 = __ldg(reinterpret_cast<const uint4*>(codes + (r0 * k + kk) / 2));
    sl.q1 = __ldg(reinterpret_cast<const uint4*>(codes + (r1 * k + kk) / 2));
    sl.s0 = __ldg(scales + (r0 * k + kk) / 32);
    sl.s1 = __ldg(scales + (r1 * k + kk) / 32);
  }
}

template <bool TILED, int WARPS>
__global__ void __launch_bounds__(WARPS * 32)
    stream_kernel(const uint8_t* __restrict__ codes, const uint8_t* __restrict__ scales, int64_t k,
                  uint32_t* out) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int64_t tile = blockIdx.x, nwin = k / 128;
  uint32_t acc = 0;
  Slot a, b, c;
  auto use = [&](Slot& sl, int64_t w) {
    if (w >= nwin) return;
    acc ^= sl.q0.x ^ sl.q0.y ^ sl.q0.z ^ sl.q0.w ^ sl.q1.x ^ sl.q1.y ^ sl.q1.z ^ sl.q1.w ^ sl.s0 ^
           sl.s1;
    load<TILED>(sl, codes, scales, tile, k, nwin, w + 3 * WARPS, g, t);
  };
  load<TILED>(a, codes, scales, tile, k, nwin, warp, g, t);
  load<TILED>(b, codes, scales, tile, k, nwin, warp + WARPS, g, t);
  load<TILED>(c, codes, scales, tile, k, nwin, warp + 2 * WARPS, g, t);
  for (int64_t w = warp; w < nwin; w += 3 * WARPS) {
    use(a, w);
    use(b, w + WARPS);
    use(c, w + 2 * WARPS);
  }
  out[blockIdx.x * blockDim.x + threadIdx.x] = acc;
}

}  // namespace

int main() {
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "props");
  cudaStream_t s;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream");
  std::printf(
      "%s\n| K | N | MB | copy GB/s (read+write) | row-major GB/s | tiled GB/s "
      "|\n|---|---|---|---|---|---|\n",
      prop.name);
  const std::pair<int64_t, int64_t> shapes[] = {
      {4096, 6144}, {4096, 4096}, {4096, 28672}, {14336, 4096}};
  for (const auto& shape : shapes) {
    const int64_t k = shape.first, n = shape.second;
    const size_t cb = size_t(n) * k / 2, sb = size_t(n) * k / 32;
    const int rot = sharq::bench::rotation_copies(prop, cb + sb);
    std::vector<uint8_t*> c(rot), sc(rot);
    for (int r = 0; r < rot; ++r) {
      c[r] = static_cast<uint8_t*>(sharq::bench::dmalloc(cb));
      sc[r] = static_cast<uint8_t*>(sharq::bench::dmalloc(sb));
      check(cudaMemset(c[r], r + 1, cb), "memset");
      check(cudaMemset(sc[r], 0x38, sb), "memset");
    }
    uint8_t* dst = static_cast<uint8_t*>(sharq::bench::dmalloc(cb));
    uint32_t* out = static_cast<uint32_t*>(sharq::bench::dmalloc(size_t(n / 16) * 256 * 4));
    const unsigned grid = static_cast<unsigned>(n / 16);
    auto run = [&](auto kernel, int threads) {
      return sharq::bench::median_graph_us(
          s, [&](int i) { kernel<<<grid, threads, 0, s>>>(c[i % rot], sc[i % rot], k, out); });
    };
    const bool short_grid = n <= 16 * 2 * 132;  // gemm_decode_mma's 8-warp rule
    const double t_row =
        short_grid ? run(stream_kernel<false, 8>, 256) : run(stream_kernel<false, 4>, 128);
    const double t_til =
        short_grid ? run(stream_kernel<true, 8>, 256) : run(stream_kernel<true, 4>, 128);
    const double t_cp = sharq::bench::median_graph_us(s, [&](int i) {
      check(cudaMemcpyAsync(dst, c[i % rot], cb, cudaMemcpyDeviceToDevice, s), "copy");
    });
    const double mb = double(cb + sb) / 1e6;
    std::printf("| %lld | %lld | %.1f | %.0f | %.0f (%.1f us) | %.0f (%.1f us) |\n", (long long)k,
                (long long)n, mb, 2.0 * double(cb) / t_cp / 1e3, mb / t_row * 1e3, t_row,
                mb / t_til * 1e3, t_til);
    for (int r = 0; r < rot; ++r) {
      cudaFree(c[r]);
      cudaFree(sc[r]);
    }
    cudaFree(dst);
    cudaFree(out);
  }
  return 0;
}
