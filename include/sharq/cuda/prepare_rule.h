// Which kernels a decode-sized RMSNorm prepare (cuda::prepare_rmsnorm) runs, and with how many
// registers of the row a thread. Plain C++ so the rule has CPU tests
// (tests/formats/test_prepare_rule.cpp); src/cuda/prepare.cu launches what it says.
//
// - The one-kernel form (rmsnorm_pass_self_kernel, session 28): up to 4 rows; the block of 256
//   threads splits into one thread group a row (1, 2 or 4 groups), each thread holding its share
//   of the row's float4s in registers, at most 16. Instantiated for 4, 8 and 16 (a 4096-wide row
//   alone: 4, 80 registers; 16 for every row took 224 and measured 2% slower at batch 1, H200).
// - Otherwise the statistics kernel a row a block (rmsnorm_publish_row_kernel): up to 64 rows,
//   at most 8 float4 a thread, instantiated for 1, 2, 4 and 8; else the grid-stride kernel.
#pragma once

#include <cstdint>

namespace sharq::cuda::prepare_rule {

inline constexpr int kThreads = 256;     // the prepare kernels' block
inline constexpr int kSelfMaxRows = 4;   // the one-kernel form's rows
inline constexpr int kSelfMaxPer = 16;   // its float4 registers a thread
inline constexpr int kRowsMaxRows = 64;  // the row statistics kernel's rows
inline constexpr int kRowsMaxPer = 8;    // its float4 registers a thread

// The one-kernel form's thread groups (one a row) for `rows` <= kSelfMaxRows.
constexpr int self_groups(int64_t rows) {
  return rows <= 1 ? 1 : rows <= 2 ? 2 : 4;
}

// The smallest instantiated depth (of `depths`) holding `per` float4, or 0 past the last.
constexpr int depth_for(int64_t per, const int* depths, int n) {
  for (int i = 0; i < n; ++i)
    if (per <= depths[i]) return depths[i];
  return 0;
}

// The one-kernel form's registers a thread (4, 8 or 16) for rows x k, or 0 where it does not
// apply (more rows, or a row too wide for its group's registers).
constexpr int self_depth(int64_t rows, int64_t k) {
  if (rows < 1 || rows > kSelfMaxRows) return 0;
  const int64_t size = kThreads / self_groups(rows);
  constexpr int depths[] = {4, 8, kSelfMaxPer};
  return depth_for((k / 4 + size - 1) / size, depths, 3);
}

// The row statistics kernel's registers a thread (1, 2, 4 or 8), or 0 where it does not apply.
constexpr int rows_depth(int64_t rows, int64_t k) {
  if (rows < 1 || rows > kRowsMaxRows) return 0;
  constexpr int depths[] = {1, 2, 4, kRowsMaxPer};
  return depth_for((k / 4 + kThreads - 1) / kThreads, depths, 4);
}

}  // namespace sharq::cuda::prepare_rule
