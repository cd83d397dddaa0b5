// The engine's sharq-nvfp4-24 prefill product (M > 32): one launch of the warp-specialised GEMM
// (gemm_prefill_ws.cuh, Cfg<1, 1, 0>) on the activation's stage images (prefill_ws_images,
// activation_expand.cu): the 2:4 backbone on sparse wgmma and the residual on dense wgmma, both
// fed by one FP4 weight tile decoded once, one FP32 accumulator, one output write.
#include <string>

#include "device_info.cuh"
#include "gemm_prefill_ws.cuh"
#include "sharq/cuda/kernels.h"
#include "sharq/error.h"

namespace sharq::cuda {
namespace {

using prefill_ws::image_count;
using prefill_ws::kBK;
using prefill_ws::kE;
using prefill_ws::kR;
using prefill_ws::kS;
using prefill_ws::m_tiles;

// CTAs of the GEMM: 128 x 256 output tiles.
int64_t output_tiles(int64_t m, int64_t n) {
  return m_tiles(m) * ((n + prefill_ws::kBN - 1) / prefill_ws::kBN);
}

void check_shape(const char* who, int64_t m, int64_t k) {
  if (m < 1 || m > (int64_t{1} << 24) || k <= 0 || k % kBK != 0 || k > (int64_t{1} << 24))
    throw Error(std::string("cuda::") + who + ": bad shape M x K = " + shape_str(m, k));
}

}  // namespace

bool prefill_ws_fills_device(int64_t m, int64_t n) {
  return 3 * output_tiles(m, n) >= 2 * static_cast<int64_t>(sm_count());
}

size_t prefill_ws_act_bytes(int64_t m, int64_t k) {
  check_shape("prefill_ws_act_bytes", m, k);
  return static_cast<size_t>(image_count(m, k)) * (kR + kS + kE);
}

void gemm_prefill_ws_f32(const uint8_t* images, const float* x_tensor_scale, int64_t m,
                         const Nvfp4View& w, int64_t n, int64_t k, float* y, cudaStream_t stream,
                         bool accumulate) {
  check_shape("gemm_prefill_ws_f32", m, k);
  if (n <= 0 || n % 2 != 0 || n * k / 2 >= (int64_t{1} << 31))
    throw Error("cuda::gemm_prefill_ws_f32: bad shape N x K = " + shape_str(n, k) +
                " (N even, N K / 2 < 2^31)");
  if ((reinterpret_cast<uintptr_t>(images) & 15) || (reinterpret_cast<uintptr_t>(w.codes) & 15) ||
      (reinterpret_cast<uintptr_t>(w.scales) & 1) || (reinterpret_cast<uintptr_t>(y) & 7))
    throw Error(
        "cuda::gemm_prefill_ws_f32: misaligned operand (images, codes: 16 bytes; scales: 2; y: 8)");
  using C = prefill_ws::Cfg<1, 1, 0>;
  auto kernel = prefill_ws::sharq_prefill_ws_kernel<C, float>;
  opt_in_smem<prefill_ws::sharq_prefill_ws_kernel<C, float>, C::kSmem>("gemm_prefill_ws smem");
  const int64_t imgs = image_count(m, k);
  prefill_ws::Params p{w.codes,
                       w.scales,
                       images,
                       images + imgs * kR,
                       images + imgs * (kR + kS),
                       y,
                       static_cast<int>(m),
                       static_cast<int>(n),
                       static_cast<int>(k),
                       1,
                       x_tensor_scale,
                       w.tensor_scale,
                       accumulate ? 1 : 0};
  const int64_t tiles = output_tiles(m, n);
  if (tiles > (int64_t{1} << 31) - 1) throw Error("cuda::gemm_prefill_ws_f32: too many tiles");
  kernel<<<static_cast<unsigned>(tiles), C::kThreads, C::kSmem, stream>>>(p);
  check(cudaGetLastError(), "gemm_prefill_ws_f32");
}

}  // namespace sharq::cuda
