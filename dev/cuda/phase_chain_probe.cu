// Decode ladder (dev only, built by scripts/pack_device.sh): what does one dependent step of the
// batch-1 decode chain cost as a kernel boundary, and what would it cost as a grid barrier inside
// one persistent kernel? The batch-1 step is ~15 dependent kernels a layer whose own work is small
// (docs/RESULTS.md, issue 6, session 9); a persistent decode kernel is worth building only if a
// barrier is much cheaper than a boundary under programmatic dependent launch (PDL).
//
// A phase is a small op with a global dependency, shaped like the decode chain's: every element
// of a 4096-vector is read (through L2), rescaled by the previous phase's published max and
// written, and the block maxima are combined with atomicMax into the next phase's max. Each
// variant runs 20 phases per timed call (graph-captured, like the engine's recorded step):
//   chain:        one kernel per phase, stream order;
//   chain PDL:    one kernel per phase, each a programmatic dependent of the one before it
//                 (the library's launch_pdl; SHARQ_CUDA_PDL=0 would turn it into the chain);
//   persistent:   one kernel, the 40 phases separated by a grid barrier (all blocks resident);
// plus "empty" variants without the phase's work (boundary or barrier alone). Reported: us per
// phase, for grids of 16, 132 and 264 blocks of 256 threads.
// Build: nvcc -std=c++20 -O3 -gencode=arch=compute_90a,code=sm_90a -Iinclude
//        dev/cuda/phase_chain_probe.cu build-cuda/src/cuda/libsharq_cuda.a
//        build-cuda/src/libsharq_core.a -lcublas -o phase_chain_probe
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <vector>

#include "../../bench/cuda/bench_common.cuh"
#include "../../src/cuda/launch.cuh"

namespace {

using sharq::bench::dmalloc;
using sharq::bench::median_graph_us;
using sharq::cuda::check;

constexpr int kThreads = 256, kPhases = 40, kN = 4096;

__device__ __forceinline__ uint32_t ld_acquire(const uint32_t* p) {
  uint32_t v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ void st_release(uint32_t* p, uint32_t v) {
  asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

// Sense by generation: read the generation, arrive; the last block resets the count and bumps the
// generation, the others spin until it moves. Every block must be resident.
__device__ void grid_barrier(uint32_t* count, uint32_t* gen, uint32_t blocks) {
  __syncthreads();
  if (threadIdx.x == 0) {
    const uint32_t g = ld_acquire(gen);
    __threadfence();
    if (atomicAdd(count, 1u) == blocks - 1) {
      *count = 0;
      st_release(gen, g + 1);
    } else {
      while (ld_acquire(gen) == g) {
      }
    }
  }
  __syncthreads();
}

__device__ float block_max(float m) {
  __shared__ float sm[kThreads / 32];
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  if ((threadIdx.x & 31) == 0) sm[threadIdx.x >> 5] = m;
  __syncthreads();
  m = threadIdx.x < kThreads / 32 ? sm[threadIdx.x] : 0.0f;
  if (threadIdx.x < 32)
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  __syncthreads();
  return m;
}

// The phase's work: vout = vin / max_in + 1 over this block's share, max |vout| into max_out.
__device__ void phase(const float* vin, float* vout, const uint32_t* max_in, uint32_t* max_out) {
  const float inv = 1.0f / __uint_as_float(ld_acquire(max_in));
  float m = 0.0f;
  for (int i = blockIdx.x * kThreads + threadIdx.x; i < kN; i += gridDim.x * kThreads) {
    const float v = __ldcg(vin + i) * inv + 1.0f;
    __stcg(vout + i, v);
    m = fmaxf(m, fabsf(v));
  }
  m = block_max(m);
  if (threadIdx.x == 0 && m > 0.0f) atomicMax(max_out, __float_as_uint(m));
}

template <bool PDL, bool WORK>
__global__ void __launch_bounds__(kThreads) phase_kernel(float* v, uint32_t* maxes, int i) {
  if (PDL) {
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  }
  if (WORK) phase(v + (i & 1) * kN, v + ((i + 1) & 1) * kN, maxes + i, maxes + i + 1);
}

template <bool WORK>
__global__ void __launch_bounds__(kThreads)
    persistent_kernel(float* v, uint32_t* maxes, uint32_t* bar) {
  for (int i = 0; i < kPhases; ++i) {
    if (WORK) phase(v + (i & 1) * kN, v + ((i + 1) & 1) * kN, maxes + i, maxes + i + 1);
    grid_barrier(bar, bar + 1, gridDim.x);
  }
}

__global__ void init_kernel(float* v, uint32_t* maxes) {
  for (int i = threadIdx.x; i < 2 * kN; i += blockDim.x) v[i] = 1.0f + (i % 7);
  for (int i = threadIdx.x; i <= kPhases; i += blockDim.x) maxes[i] = __float_as_uint(1.0f);
}

}  // namespace

int main() {
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "props");
  cudaStream_t s;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream");
  auto* v = static_cast<float*>(dmalloc(2 * kN * 4));
  auto* maxes = static_cast<uint32_t*>(dmalloc((kPhases + 1) * 4));
  auto* bar = static_cast<uint32_t*>(dmalloc(8));
  check(cudaMemset(bar, 0, 8), "bar");
  init_kernel<<<1, 256>>>(v, maxes);
  check(cudaDeviceSynchronize(), "init");
  std::printf(
      "%s, %d SMs: us per dependent phase (4096-vector rescale + max), %d phases a call\n\n",
      prop.name, prop.multiProcessorCount, kPhases);
  std::printf(
      "| blocks | chain | chain PDL | persistent | chain PDL, empty | persistent, empty |\n"
      "|---|---|---|---|---|---|\n");
  for (int blocks : {16, 132, 264}) {
    auto chain = [&](auto kernel, bool pdl) {
      return median_graph_us(
          s,
          [&](int i) {
            if (pdl) {
              sharq::cuda::launch_pdl(kernel, dim3(blocks), dim3(kThreads), 0, s, "phase", v, maxes,
                                      i);
            } else {
              kernel<<<blocks, kThreads, 0, s>>>(v, maxes, i);
            }
          },
          kPhases);
    };
    auto persistent = [&](auto kernel) {
      return median_graph_us(
                 s, [&](int) { kernel<<<blocks, kThreads, 0, s>>>(v, maxes, bar); }, 1, 15) /
             kPhases;
    };
    const double t_chain = chain(phase_kernel<false, true>, false);
    const double t_pdl = chain(phase_kernel<true, true>, true);
    const double t_pers = persistent(persistent_kernel<true>);
    const double t_pdl_empty = chain(phase_kernel<true, false>, true);
    const double t_pers_empty = persistent(persistent_kernel<false>);
    std::printf("| %d | %.2f | %.2f | %.2f | %.2f | %.2f |\n", blocks, t_chain, t_pdl, t_pers,
                t_pdl_empty, t_pers_empty);
  }
  check(cudaDeviceSynchronize(), "end");
  return 0;
}
