// cp.async (global -> shared, bypassing registers) wrappers shared by the kernels that stage
// tiles in shared memory (gemm_prefill.cu, gemm_decode_shared.cu, gemm_decode_wgmma.cu).
#pragma once

#include <cstdint>

namespace sharq::cuda {

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// src_bytes < size zero-fills the rest: rows past M or N read as zeros (contribute nothing).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes)
               : "memory");
}
// 4 bytes through L1 (.ca): the gathers whose neighbours the next copies read (gemm_prefill's
// scale words, gemm_decode_wgmma's activation pairs).
__device__ __forceinline__ void cp_async4(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

}  // namespace sharq::cuda
