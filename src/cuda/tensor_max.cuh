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
constexpr int kSlotCount = 4;   // blocks that left their max in a slot this call (0: kMaxFinal)
constexpr int kSlots = 5;       // kMaxSlots words: block b's max |x| (float bits) in word b
constexpr int kMaxSlots = 32;   // a warp's lanes: the pass reads them in one round trip
constexpr int kRowInv = kSlots + kMaxSlots;  // prepare_rmsnorm: one float per row, rcp(rms)

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

// This call's tensor max (float bits) left for later readers, its scale s_t written to both
// tensor-scale outputs (ts_sparse may be null: nvfp4 has no backbone). One thread calls it.
__device__ __forceinline__ void store_tensor_scales(uint32_t* scratch, uint32_t bits,
                                                    float* ts_sparse, float* ts_residual) {
  scratch[kMaxFinal] = bits;
  const float st = scale_of_max_bits(bits);
  *ts_residual = st;
  if (ts_sparse) *ts_sparse = st;
}

// Two-kernel schedules, end of kernel 1 (and the producers that publish the max of what they
// write): thread 0 leaves its block's max (`block_max_v`) for the pass kernel after it, which
// reduces them (load_published, reduce_published) and writes the tensor scales. Up to kMaxSlots
// (32) blocks each store theirs in a slot, block 0 the count: plain stores, so no atomic round
// trips sit on the decode chain's critical path (the attention combine's publish cost ~3 us of a
// batch-1 layer's timeline with them, session 27). A larger grid takes the atomic path (1024 slots
// read by every pass warp made the prefill 8-15% slower, session 27): the last block to finish
// publishes (scratch and both tensor-scale outputs) and resets the accumulator and the counter,
// so no memset launch precedes the next call.
__device__ void publish_tensor_max(uint32_t* scratch, float block_max_v, float* ts_sparse,
                                   float* ts_residual) {
  if (threadIdx.x != 0) return;
  const uint32_t bits = __float_as_uint(block_max_v);
  if (gridDim.x <= kMaxSlots) {
    scratch[kSlots + blockIdx.x] = bits;
    if (blockIdx.x == 0) scratch[kSlotCount] = gridDim.x;
    return;
  }
  if (blockIdx.x == 0) scratch[kSlotCount] = 0u;
  atomicMax(scratch + kMaxAcc, bits);
  AtomicU32 arrive(scratch[kArrive]);
  if (arrive.fetch_add(1u, ::cuda::memory_order_acq_rel) == gridDim.x - 1) {
    AtomicU32 acc(scratch[kMaxAcc]);
    const uint32_t a = acc.load(::cuda::memory_order_relaxed);
    acc.store(0u, ::cuda::memory_order_relaxed);
    arrive.store(0u, ::cuda::memory_order_relaxed);
    store_tensor_scales(scratch, a, ts_sparse, ts_residual);
  }
}

// The published tensor max in two steps, so that the pass's own post-wait loads (the row's
// rcp(rms)) go out in the same L2 round trip (session 27: reducing first serialized the two and
// made every pass ~0.7 us longer): load_published, a lane's loads (the count, the final word and
// a slot); then reduce_published, in every lane of a whole warp (all 32 lanes): the slots' max
// when the producer used them, else kMaxFinal. Slots past the count may hold an earlier call's
// values and are not used. Non-negative floats order as their bits. One warp a block calls them
// (pass_kernel): every warp reading these words made them an L2 hot spot (session 28).
struct PublishedMax {
  uint32_t count, fin, slot;
};
__device__ __forceinline__ PublishedMax load_published(const uint32_t* scratch) {
  static_assert(kMaxSlots == 32, "a slot a lane");
  return {__ldcg(scratch + kSlotCount), __ldcg(scratch + kMaxFinal),
          __ldcg(scratch + kSlots + (threadIdx.x & 31u))};
}
__device__ __forceinline__ uint32_t reduce_published(const PublishedMax& p) {
  uint32_t m = (threadIdx.x & 31u) < p.count ? p.slot : 0u;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) m = max(m, __shfl_xor_sync(0xffffffffu, m, o));
  return p.count == 0u ? p.fin : m;
}

}  // namespace
}  // namespace sharq::cuda
