// Programmatic dependent launch (PDL) for the decode step's chain of kernels: each kernel is
// launched as a programmatic dependent of the one before it, so its blocks are scheduled while
// that kernel runs and start the moment it completes, instead of after a launch's latency.
// Every kernel launched this way starts with pdl_entry(): it waits for the kernel before it to
// complete (its writes visible) before touching memory, and only then lets its own dependents
// launch, so a dependent's pre-wait loads (the prepare pass, the decode GEMM's weights) never
// see a buffer that an earlier kernel is still writing. SHARQ_CUDA_PDL=0 turns it off.
#pragma once

#include <cuda_runtime.h>

#include "sharq/cuda/kernels.h"

namespace sharq::cuda {

bool pdl_enabled();

__device__ __forceinline__ void pdl_entry() {
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}

template <typename... KArgs, typename... Args>
void launch_pdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                const char* what, Args... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr = {};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = &attr;
  cfg.numAttrs = pdl_enabled() ? 1 : 0;
  check(cudaLaunchKernelEx(&cfg, kernel, static_cast<KArgs>(args)...), what);
}

}  // namespace sharq::cuda
