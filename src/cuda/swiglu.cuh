// silu(g) * u, the one expression every SwiGLU on the GPU evaluates (engine_ops' swiglu_kernel and
// the SwiGLU prepare's source), so that both give the same bits under the library's flags.
#pragma once

namespace sharq::cuda {

__device__ __forceinline__ float swiglu1(float g, float u) {
  return g / (1.0f + expf(-g)) * u;
}

}  // namespace sharq::cuda
