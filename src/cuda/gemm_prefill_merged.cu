// The merged-operand prefill (docs/merged_operand.md): SharQ's two products are one product of
// A = X~_sp + R~ = hi + lo, and lo is zero outside a few columns (1-3% of K at 2048 tokens of the
// default model, except down_proj), so the product is one FP16 GEMM of K + K'' columns: the hi
// plane and lo compacted to its K' non-zero columns, against the decoded weight with the same
// columns gathered behind it. Against gemm_prefill_cublas_f32's two GEMMs of K this does
// K (1 + K''/K) multiply-adds instead of 2K, at the price of three small kernels and one host
// wait per activation for K' (cuBLAS takes K from the host); the wait is for an event recorded
// before the weight decode, so the GPU decodes while the host reads K' and queues the GEMM.
#include <cublas_v2.h>
#include <cuda_fp16.h>

#include <cub/block/block_scan.cuh>
#include <string>

#include "cublas_scope.cuh"
#include "sharq/cuda/kernels.h"
#include "sharq/error.h"

namespace sharq::cuda {
namespace {

// cols: K' (int32) in the first 16 bytes, then the column list (k int32), then one flag byte per
// column.
constexpr int64_t kListOffset = 16;
int64_t flags_offset(int64_t k) {
  return kListOffset + 4 * k;
}
__host__ __device__ constexpr int64_t padded_columns(int64_t count) {
  return (count + 15) / 16 * 16;
}

// One thread per 32-block whose flag is set: marks the columns where its lo is not zero.
__global__ void lo_column_flags_kernel(const __half* __restrict__ planes,
                                       const uint8_t* __restrict__ lo_flags, int64_t blocks,
                                       int64_t per_row, int64_t k, uint8_t* __restrict__ colflag) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= blocks || !lo_flags[b]) return;
  const int64_t row = b / per_row, kb = b - row * per_row;
  const auto* lo = reinterpret_cast<const uint4*>(planes + row * 2 * k + k + kb * 32);
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    const uint4 v = lo[q];
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      // Every thread that sees a column stores the same 1: no ordering needed.
      if ((w[i / 2] >> (16 * (i % 2))) & 0x7fffu) colflag[kb * 32 + q * 8 + i] = 1;
    }
  }
}

// One block: the flagged columns in increasing order, and their count, also written to the
// host (host_count: the device alias of pinned host memory, or null) so that the host can read K'
// after an event behind this kernel instead of after a copy on the stream.
constexpr int kScanThreads = 1024;
__global__ void __launch_bounds__(kScanThreads)
    lo_column_list_kernel(const uint8_t* __restrict__ colflag, int k, int32_t* __restrict__ count,
                          int32_t* __restrict__ list, int32_t* host_count) {
  using Scan = cub::BlockScan<int, kScanThreads>;
  __shared__ typename Scan::TempStorage tmp;
  const int per = (k + kScanThreads - 1) / kScanThreads;
  const int c0 = static_cast<int>(threadIdx.x) * per, c1 = min(k, c0 + per);
  int mine = 0;
  for (int c = c0; c < c1; ++c) mine += colflag[c];
  int at = 0, total = 0;
  Scan(tmp).ExclusiveSum(mine, at, total);
  for (int c = c0; c < c1; ++c) {
    if (colflag[c]) list[at++] = c;
  }
  if (threadIdx.x == 0) {
    *count = total;
    if (host_count) {
      *host_count = total;
      __threadfence_system();
    }
  }
}

// The row loops below keep kPerThread loads in flight per thread: one at a time, a row's
// thousands of gathered columns (down_proj's input on a random-weight model: 81% of K) were a
// chain of L2 round trips (compaction 107 us, gather 133 us at 2048 x 14336; session 33 trace).
constexpr int kPerThread = 8, kRowGroup = 64;  // threads per row

// One chunk of a row's slots (base + i * kRowGroup + tid, i < kPerThread): the listed columns'
// values of `src`, zero past K' (loaded before any is stored, so that the loads overlap), then
// stored to dst's slots up to K''.
struct ListedChunk {
  __half v[kPerThread];
  __device__ __forceinline__ void load(const __half* src, const int32_t* list, int kp, int base,
                                       int tid) {
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      const int j = base + i * kRowGroup + tid;
      v[i] = j < kp ? src[list[j]] : __float2half_rn(0.0f);
    }
  }
  __device__ __forceinline__ void store(__half* dst, int kpp, int base, int tid) const {
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      const int j = base + i * kRowGroup + tid;
      if (j < kpp) dst[j] = v[i];
    }
  }
};

// One block of kRowGroup threads per row, in place: lo's K' listed columns to its first K' slots,
// zeros to K''. A chunk of kRowGroup * kPerThread slots reads all of its sources before any
// thread writes (barrier), and a slot's source is at or after it, so a chunk only overwrites
// positions that no later chunk reads.
__global__ void __launch_bounds__(kRowGroup)
    compact_lo_kernel(__half* __restrict__ planes, int64_t k, const int32_t* __restrict__ count,
                      const int32_t* __restrict__ list) {
  const int kp = *count, kpp = static_cast<int>(padded_columns(kp)),
            tid = static_cast<int>(threadIdx.x);
  __half* lo = planes + static_cast<int64_t>(blockIdx.x) * 2 * k + k;
  for (int base = 0; base < kpp; base += kRowGroup * kPerThread) {
    ListedChunk c;
    c.load(lo, list, kp, base, tid);
    __syncthreads();
    c.store(lo, kpp, base, tid);
    __syncthreads();
  }
}

// kRowGroup threads per weight row (four rows a block): the listed columns of the decoded row (its
// first k halves) copied behind it (from half k on), zeros to K''.
constexpr int kGatherThreads = 256;
__global__ void __launch_bounds__(kGatherThreads)
    gather_weight_columns_kernel(__half* __restrict__ w, int64_t n, int64_t k,
                                 const int32_t* __restrict__ count,
                                 const int32_t* __restrict__ list) {
  const int64_t row =
      static_cast<int64_t>(blockIdx.x) * (kGatherThreads / kRowGroup) + threadIdx.x / kRowGroup;
  if (row >= n) return;
  const int kp = *count, kpp = static_cast<int>(padded_columns(kp)),
            tid = static_cast<int>(threadIdx.x % kRowGroup);
  __half* r = w + row * 2 * k;
  for (int base = 0; base < kpp; base += kRowGroup * kPerThread) {
    ListedChunk c;
    c.load(r, list, kp, base, tid);
    c.store(r + k, kpp, base, tid);
  }
}

void check_shape(const char* who, int64_t m, int64_t n, int64_t k) {
  if (m < 1 || n < 1 || k <= 0 || k % 64 != 0)
    throw Error(std::string("cuda::") + who + ": bad shape M x N x K = " + std::to_string(m) +
                " x " + shape_str(n, k));
  // cuBLAS's ints: the operands' rows are 2k apart, the output n.
  if (m > 0x7fffffff || n > 0x7fffffff || 2 * k > 0x7fffffff)
    throw Error(std::string("cuda::") + who + ": shape " + std::to_string(m) + " x " +
                shape_str(n, k) + " is outside cuBLAS's int range");
}

}  // namespace

size_t merged_columns_bytes(int64_t k) {
  return static_cast<size_t>((flags_offset(k) + k + 15) / 16 * 16);
}

void merged_lo_columns(uint16_t* planes_rows, const uint8_t* lo_flags, int64_t m, int64_t k,
                       const MergedColumns& columns, cudaStream_t stream) {
  check_shape("merged_lo_columns", m, 1, k);
  void* cols = columns.cols;
  if (!planes_rows || !lo_flags || !cols)
    throw Error("cuda::merged_lo_columns: planes, lo_flags and cols are all needed");
  if ((reinterpret_cast<uintptr_t>(planes_rows) & 15) || (reinterpret_cast<uintptr_t>(cols) & 15))
    throw Error("cuda::merged_lo_columns: planes and cols must be 16-byte aligned");
  auto* base = static_cast<uint8_t*>(cols);
  auto* count = reinterpret_cast<int32_t*>(base);
  auto* list = reinterpret_cast<int32_t*>(base + kListOffset);
  uint8_t* colflag = base + flags_offset(k);
  auto* p = reinterpret_cast<__half*>(planes_rows);
  int32_t* host_count = nullptr;  // the pinned int's device alias (the same pointer under UVA)
  if (columns.kprime_host) {
    if (!columns.copied) throw Error("cuda::merged_lo_columns: kprime_host goes with an event");
    check(cudaHostGetDevicePointer(reinterpret_cast<void**>(&host_count), columns.kprime_host, 0),
          "merged_lo_columns: kprime_host must be pinned (cudaMallocHost)");
  }
  check(cudaMemsetAsync(colflag, 0, static_cast<size_t>(k), stream), "merged_lo_columns memset");
  const int64_t blocks = m * (k / 32);
  lo_column_flags_kernel<<<static_cast<unsigned>((blocks + 255) / 256), 256, 0, stream>>>(
      p, lo_flags, blocks, k / 32, k, colflag);
  check(cudaGetLastError(), "lo_column_flags_kernel");
  lo_column_list_kernel<<<1, kScanThreads, 0, stream>>>(colflag, static_cast<int>(k), count, list,
                                                        host_count);
  check(cudaGetLastError(), "lo_column_list_kernel");
  if (host_count) check(cudaEventRecord(columns.copied, stream), "record K' copied");
  compact_lo_kernel<<<static_cast<unsigned>(m), kRowGroup, 0, stream>>>(p, k, count, list);
  check(cudaGetLastError(), "compact_lo_kernel");
}

size_t prefill_merged_scratch_bytes(int64_t n, int64_t k) {
  return static_cast<size_t>(n * 2 * k) * 2 + 256;
}

void gemm_prefill_merged_f32(cublasHandle_t blas, const uint16_t* planes_rows,
                             const MergedColumns& columns, int64_t* kprime,
                             const float* x_tensor_scale, int64_t m, const Nvfp4View& w,
                             int w_group, int64_t n, int64_t k, float* y, void* scratch,
                             cudaStream_t stream, bool accumulate) {
  check_shape("gemm_prefill_merged_f32", m, n, k);
  const void* cols = columns.cols;
  if (!planes_rows || !cols || !kprime || !scratch)
    throw Error("cuda::gemm_prefill_merged_f32: planes, cols, kprime and scratch are all needed");
  auto* wdec = static_cast<uint16_t*>(scratch);
  auto* scalars = reinterpret_cast<float*>(static_cast<uint8_t*>(scratch) + n * 2 * k * 2);
  decode_weight_f16(w, w_group, n, k, wdec, x_tensor_scale, scalars, stream, 2 * k);
  const auto* base = static_cast<const uint8_t*>(cols);
  const auto* count = reinterpret_cast<const int32_t*>(base);
  const auto* list = reinterpret_cast<const int32_t*>(base + kListOffset);
  const int64_t rows_per_block = kGatherThreads / kRowGroup;
  gather_weight_columns_kernel<<<static_cast<unsigned>((n + rows_per_block - 1) / rows_per_block),
                                 kGatherThreads, 0, stream>>>(reinterpret_cast<__half*>(wdec), n, k,
                                                              count, list);
  check(cudaGetLastError(), "gather_weight_columns_kernel");
  if (*kprime < 0) {
    int32_t c = -1;
    if (columns.kprime_host && columns.copied) {  // the decode and gather run meanwhile
      check(cudaEventSynchronize(columns.copied), "wait for K'");
      c = *columns.kprime_host;
    } else {
      check(cudaMemcpyAsync(&c, count, 4, cudaMemcpyDeviceToHost, stream), "read K'");
      check(cudaStreamSynchronize(stream), "read K'");
    }
    if (c < 0 || c > k)
      throw Error("cuda::gemm_prefill_merged_f32: column count " + std::to_string(c) +
                  " outside 0.." + std::to_string(k) + " (merged_lo_columns not run?)");
    *kprime = c;
  }
  const int64_t kk = k + padded_columns(*kprime);
  check_blas(cublasSetStream(blas, stream), "cublasSetStream");
  const DevicePointerMode mode(blas);
  const auto N = static_cast<int>(n), M = static_cast<int>(m), K = static_cast<int>(kk),
             ld = static_cast<int>(2 * k);
  // y^T (n, m) column-major = [W~ | W~_c] (n, kk) . [hi | lo_c]^T: y is (m, n) row-major.
  check_blas(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, scalars, wdec, CUDA_R_16F, ld,
                          planes_rows, CUDA_R_16F, ld, scalars + (accumulate ? 2 : 1), y,
                          CUDA_R_32F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
             "cublasGemmEx");
}

}  // namespace sharq::cuda
