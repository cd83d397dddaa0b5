// Helpers shared by the GPU tests (test_cuda_kernels, test_prepare_fused, test_engine_ops):
// a device buffer that owns its allocation and copies to and from the host.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <vector>

#include "sharq/cuda/kernels.h"

namespace sharq::cuda::test_util {

// n elements of T on the device (at least one allocated), freed on destruction.
template <typename T>
struct DeviceBuf {
  explicit DeviceBuf(size_t n) : n(n) {
    check(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)), "malloc");
  }
  explicit DeviceBuf(const std::vector<T>& h) : DeviceBuf(h.size()) { upload(h); }
  ~DeviceBuf() { cudaFree(p); }
  DeviceBuf(const DeviceBuf&) = delete;
  DeviceBuf& operator=(const DeviceBuf&) = delete;
  void upload(const T* h) { check(cudaMemcpy(p, h, n * sizeof(T), cudaMemcpyHostToDevice), "h2d"); }
  void upload(const std::vector<T>& h) { upload(h.data()); }
  void poison(int byte) { check(cudaMemset(p, byte, n * sizeof(T)), "poison"); }
  std::vector<T> download() const {
    std::vector<T> h(n);
    check(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), "d2h");
    return h;
  }
  T* p = nullptr;
  size_t n;
};

}  // namespace sharq::cuda::test_util
