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
// Whether pdl_entry_release_first releases first (default; SHARQ_CUDA_EARLY_RELEASE=0: after the
// wait, as pdl_entry, for A/B timing).
bool early_release_enabled();

__device__ __forceinline__ void pdl_entry() {
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}

// pdl_entry with the dependents released before the wait, so that the next kernel launches (and
// runs its pre-wait part) one kernel earlier. Only for a kernel whose dependents read nothing
// before their own wait that this kernel or the one before it writes: RoPE + KV store (the
// attention after it loads only earlier steps' keys early) and the attention combine (the o
// projection's pass loads nothing early). `early` false: pdl_entry.
__device__ __forceinline__ void pdl_entry_release_first(bool early) {
  if (early) asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  asm volatile("griddepcontrol.wait;" ::: "memory");
  if (!early) asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
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
