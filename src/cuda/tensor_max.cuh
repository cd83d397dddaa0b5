// The tensor max of a prepare, reduced across a grid without a memset launch (prepare.cu's fused
// schedules, and producers that publish the max of what they write so that the prepare after
// them runs only its pass: attention.cu's combine kernel). Device code shared by those files.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cuda/atomic>

namespace sharq::cuda {
namespace {

// Scratch words; the caller zeroes them once and every call leaves them zeroed again (except
// the generation and the last result), so no memset launch is needed per call.
constexpr int kArrive = 0;      // blocks arrived at the grid barrier / finished the max pass
constexpr int kGeneration = 1;  // grid-barrier generation (bumped once per single-launch call)
constexpr int kMaxAcc = 2;      // running max |x| as float bits
constexpr int kMaxFinal = 3;    // this call's max |x| (float bits), read after the barrier
constexpr int kRowInv = 4;      // prepare_rmsnorm: one float per row, rcp(rms) of that row

using AtomicU32 = ::cuda::atomic_ref<uint32_t, ::cuda::thread_scope_device>;

// op-reduction over the block (warp shuffles, then the warps' results through `sm`, at least
// 32 entries), valid in thread 0. Leaves `sm` reusable.
template <typename T, typename Op>
__device__ T block_reduce(T v, T* sm, T identity, Op op) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  if ((threadIdx.x & 31) == 0) sm[threadIdx.x / 32] = v;
  __syncthreads();
  T t = identity;
  if (threadIdx.x < 32) {
    t = threadIdx.x < blockDim.x / 32 ? sm[threadIdx.x] : identity;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) t = op(t, __shfl_xor_sync(0xffffffffu, t, o));
  }
  __syncthreads();
  return t;
}

// Max over the block; valid in thread 0. Leaves `sm` reusable.
__device__ float block_max(float v, float* sm) {
  return block_reduce(v, sm, 0.0f, [](float a, float b) { return fmaxf(a, b); });
}

__device__ __forceinline__ float scale_of_max_bits(uint32_t bits) {
  const float a = __uint_as_float(bits);
  return a == 0.0f ? 1.0f : __fdiv_rn(a, 2688.0f);
}

// Two-kernel schedules, end of kernel 1: thread 0 adds its block's max (`block_max_v`); the
// last block to finish publishes it (scratch and both tensor-scale outputs) and resets the
// accumulator and the counter, so no memset launch precedes the next call. A one-block grid
// (batch-1 RMSNorm statistics, small tensors) publishes its max directly.
__device__ void publish_tensor_max(uint32_t* scratch, float block_max_v, float* ts_sparse,
                                   float* ts_residual) {
  if (threadIdx.x != 0) return;
  if (gridDim.x == 1) {  // the block max is the tensor max: published without the atomics
    const uint32_t bits = __float_as_uint(block_max_v);
    scratch[kMaxFinal] = bits;
    const float st = scale_of_max_bits(bits);
    *ts_residual = st;
    if (ts_sparse) *ts_sparse = st;
    return;
  }
  atomicMax(scratch + kMaxAcc, __float_as_uint(block_max_v));
  AtomicU32 arrive(scratch[kArrive]);
  if (arrive.fetch_add(1u, ::cuda::memory_order_acq_rel) == gridDim.x - 1) {
    AtomicU32 acc(scratch[kMaxAcc]);
    const uint32_t a = acc.load(::cuda::memory_order_relaxed);
    acc.store(0u, ::cuda::memory_order_relaxed);
    arrive.store(0u, ::cuda::memory_order_relaxed);
    scratch[kMaxFinal] = a;
    const float st = scale_of_max_bits(a);
    *ts_residual = st;
    if (ts_sparse) *ts_sparse = st;
  }
}

}  // namespace
}  // namespace sharq::cuda
