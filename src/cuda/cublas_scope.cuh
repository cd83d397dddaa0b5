// RAII for the cuBLAS handle's pointer mode: device scalars for the prefill GEMMs (alpha = s_x
// s_w stays on the device, no synchronisation), back to host scalars however the calls end.
#pragma once

#include <cublas_v2.h>

#include "sharq/cuda/kernels.h"

namespace sharq::cuda {

struct DevicePointerMode {
  explicit DevicePointerMode(cublasHandle_t h) : h(h) {
    check_blas(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_DEVICE), "cublasSetPointerMode");
  }
  ~DevicePointerMode() { cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST); }
  DevicePointerMode(const DevicePointerMode&) = delete;
  DevicePointerMode& operator=(const DevicePointerMode&) = delete;
  cublasHandle_t h;
};

}  // namespace sharq::cuda
