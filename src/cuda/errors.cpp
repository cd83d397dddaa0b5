// CUDA runtime and cuBLAS status checks (declared in kernels.h): a failure becomes a
// sharq::Error that names the call.
#include <string>

#include "sharq/cuda/kernels.h"
#include "sharq/error.h"

namespace sharq::cuda {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw Error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(e));
}

void check_blas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    throw Error(std::string("cuBLAS: ") + what + " failed (status " +
                std::to_string(static_cast<int>(s)) + ")");
  }
}

}  // namespace sharq::cuda
