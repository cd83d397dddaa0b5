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

}  // namespace sharq::cuda
