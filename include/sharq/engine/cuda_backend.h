// The CUDA backend (Hopper, sm_90a) behind engine::Backend, and the device choice of the tools.
// Not the kernels themselves (sharq/cuda/kernels.h, sharq/cuda/engine_ops.h).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "sharq/engine/backend.h"

namespace sharq::engine {

// True when this build has the CUDA backend (SHARQ_CUDA); the kernels still need an sm_90a GPU.
bool cuda_backend_built();

// The CUDA backend on device `device_index`. Throws sharq::Error when the build has no CUDA
// backend or no usable GPU is present. Weights live on the GPU in their packed form: FP4 codes +
// UE4M3 scales for nvfp4 and the sharq-nvfp4 modes (the Hopper kernels), bf16 for bf16 (cuBLAS);
// every other mode runs the reference path (CPU quantizers, float32 weights on the GPU).
std::unique_ptr<Backend> make_cuda_backend(int device_index = 0);

// "cpu" or "cuda" (optionally "cuda:N"); threads applies to the CPU backend.
std::unique_ptr<Backend> make_backend(std::string_view device, int threads);

}  // namespace sharq::engine
