// The current device's fixed properties that launch geometry depends on, queried once.
#pragma once

#include <cuda_runtime.h>

#include "sharq/cuda/kernels.h"

namespace sharq::cuda {

// Streaming multiprocessors of the device current at the first call (one device per process).
inline int sm_count() {
  static const int n = [] {
    int dev = 0, c = 0;
    check(cudaGetDevice(&dev), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&c, cudaDevAttrMultiProcessorCount, dev), "sm count");
    return c;
  }();
  return n;
}

// Blocks of `Kernel` launched with `Threads` threads (no dynamic shared memory) resident on the
// whole device at once: one wave of a grid.
template <auto Kernel, int Threads>
int resident_blocks() {
  static const int n = [] {
    int per_sm = 0;
    check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, Kernel, Threads, 0), "occupancy");
    return sm_count() * per_sm;
  }();
  return n;
}

// Opts `Kernel` into `Bytes` of dynamic shared memory, once per process (the attribute belongs
// to the function, so every launch after the first needs nothing).
template <auto Kernel, size_t Bytes>
void opt_in_smem(const char* what) {
  static const bool done = [what] {
    check(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(Bytes)),
          what);
    return true;
  }();
  (void)done;
}

}  // namespace sharq::cuda
