// GPU tests (CTest label gpu; run on the device machine only): weight packing and prepare
// bit-exact against the CPU reference, decode and prefill GEMMs against a float64 reference built
// from the same dequantized operands (SPEC 8: ||Y - Yref|| / ||Yref|| < 4e-3 for BF16 output, 1e-5
// for float32), with the output poisoned first and every element checked written. Fresh random
// inputs per run.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp4.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include "cuda_test_util.cuh"
#include "sharq/cuda/kernels.h"
#include "sharq/cuda/weight_layout.h"
#include "sharq/decompose.h"
#include "sharq/error.h"
#include "sharq/formats.h"
#include "sharq/merged_operand.h"
#include "sharq/synthetic.h"
#include "sharq/weights.h"

namespace sharq::cuda {
namespace {

template <typename T>
using DeviceBuffer = test_util::DeviceBuf<T>;

// Device NVFP4 storage for (rows x k) at group g.
struct DeviceNvfp4 {
  DeviceNvfp4(int64_t rows, int64_t k, int g)
      : codes(static_cast<size_t>(rows * k / 2)),
        scales(static_cast<size_t>(rows * k / g)),
        ts(1) {}
  Nvfp4View view() { return {codes.p, scales.p, ts.p}; }
  DeviceBuffer<uint8_t> codes, scales;
  DeviceBuffer<float> ts;
};

uint64_t fresh_seed() {
  return std::random_device{}();
}

TEST(CudaPackWeight, BitExactVsCpu) {
  for (int g : {16, 32}) {
    // n not a multiple of 16 (a short last tile), k % 128 == 64 (a half last window).
    for (auto [n, k] : {std::pair<int64_t, int64_t>{3, 64}, {17, 256}, {40, 192}, {128, 4096}}) {
      const auto w = synthetic_weight(n, k, fresh_seed());
      const PackedTensor ref =
          quantize(g == 32 ? Format::kNvfp4G32 : Format::kNvfp4G16, w.data(), n, k, "w");
      DeviceBuffer<float> dw(w.size());
      dw.upload(w.data());
      DeviceNvfp4 out(n, k, g);
      DeviceBuffer<uint32_t> scratch(1);
      pack_weight(dw.p, n, k, g, out.view(), scratch.p, nullptr);
      check(cudaDeviceSynchronize(), "sync");
      // The GPU keeps the weight tiled (weight_layout.h): the same bytes, placed elsewhere.
      const auto tiled_codes = out.codes.download(), tiled_scales = out.scales.download();
      std::vector<uint8_t> codes(tiled_codes.size()), scales(tiled_scales.size());
      weight_layout::from_tiled(tiled_codes.data(), tiled_scales.data(), n, k, g, codes.data(),
                                scales.data());
      EXPECT_EQ(codes, ref.codes) << "g" << g << " " << n << "x" << k;
      EXPECT_EQ(scales, ref.scales);
      EXPECT_EQ(out.ts.download()[0], ref.tensor_scale);
    }
  }
}

TEST(CudaPrepare, BitExactVsCpuEveryMode) {
  const std::pair<PrepareMode, Mode> modes[] = {
      {PrepareMode::kNvfp4, Mode::kNvfp4},
      {PrepareMode::kSharqNvfp4, Mode::kSharqNvfp4},
      {PrepareMode::kSharqNvfp4_24, Mode::kSharqNvfp4_24}};
  for (auto [pm, mode] : modes) {
    for (auto [rows, k] : {std::pair<int64_t, int64_t>{1, 64}, {3, 128}, {17, 1024}, {100, 4096}}) {
      auto x = synthetic_activation(rows, k, fresh_seed());
      x[0] = 0.0f;  // exact zeros and ties ride along with the outliers
      const ActivationQuant ref = quantize_activation(mode, x.data(), rows, k, "x");
      DeviceBuffer<float> dx(x.size()), dec(x.size());
      dx.upload(x.data());
      DeviceNvfp4 sp(rows, k, 32), rs(rows, k, 16);
      DeviceBuffer<uint32_t> scratch(1);
      prepare(pm, dx.p, rows, k, sp.view(), rs.view(), dec.p, scratch.p, nullptr);
      check(cudaDeviceSynchronize(), "sync");
      if (mode != Mode::kNvfp4) {
        EXPECT_EQ(sp.codes.download(), ref.sparse_q.codes)
            << mode_name(mode) << " " << rows << "x" << k;
        EXPECT_EQ(sp.scales.download(), ref.sparse_q.scales);
      }
      EXPECT_EQ(rs.codes.download(), ref.dense_q.codes) << mode_name(mode);
      EXPECT_EQ(rs.scales.download(), ref.dense_q.scales);
      EXPECT_EQ(rs.ts.download()[0], ref.tensor_scale);
      // decoded * s_t reconstructs the CPU's dequant (sparse + residual, each already in
      // original units) to a few float32 roundings of the two addends: relative to the addends,
      // not to the sum, which cancellation can make far smaller than either.
      const auto d = dec.download();
      for (size_t i = 0; i < d.size(); ++i) {
        const double addends = std::fabs(ref.residual.empty() ? ref.dequant[i] : ref.residual[i]) +
                               (ref.sparse.empty() ? 0.0 : std::fabs(ref.sparse[i]));
        ASSERT_NEAR(d[i] * ref.tensor_scale, ref.dequant[i], 1e-6 * addends + 1e-30) << i;
      }
    }
  }
}

// Round to nearest even; NaN stays NaN (the poison check sees unwritten elements).
uint16_t bf16_bits(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  if (std::isnan(v)) return 0x7FC0;
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

std::vector<float> bf16_to_float(const std::vector<uint16_t>& y) {
  std::vector<float> out(y.size());
  for (size_t i = 0; i < y.size(); ++i) {
    const uint32_t bits = static_cast<uint32_t>(y[i]) << 16;
    std::memcpy(&out[i], &bits, 4);
  }
  return out;
}

// Float64 reference from the dequantized operands, computed once per case.
std::vector<double> reference_f64(const std::vector<float>& xdq, const std::vector<float>& wdq,
                                  int64_t m, int64_t n, int64_t k) {
  std::vector<double> ref(static_cast<size_t>(m * n));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (int64_t c = 0; c < k; ++c) acc += static_cast<double>(xdq[i * k + c]) * wdq[j * k + c];
      ref[i * n + j] = acc;
    }
  }
  return ref;
}

double rel_err(const std::vector<double>& ref, const std::vector<float>& got, bool* all_written) {
  double num = 0, den = 0;
  *all_written = true;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (std::isnan(got[i])) *all_written = false;
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}

// Device state of one GEMM case: the launch callback runs prepare + GEMM into y.
struct GemmCaseBuffers {
  const float* x;         // (m, k) activation
  DeviceNvfp4* sparse;    // prepare's backbone (g32)
  DeviceNvfp4* residual;  // prepare's residual (g16); its tensor scale is s_x
  DeviceNvfp4* weight;    // packed weight (g of the mode)
  uint32_t* scratch;
  uint16_t* y;  // (m, n) bf16, poisoned with NaN before the launch
  float* y32;   // (m, n) float32, poisoned likewise; checked only when the case asks for it
};
using GemmLaunch = std::function<void(const GemmCaseBuffers&)>;

// Fresh random inputs with outlier channels; weight packed on the device; outputs poisoned,
// then checked fully written and within SPEC 8's tolerance (BF16 4e-3, float32 1e-5) of the
// float64 reference built from the CPU's dequantized operands. A weight group other than the
// mode's own (g16 under SharQ, g32 under nvfp4) takes its reference from the NVFP4 format itself.
void check_gemm_case(Mode mode, int g, int64_t m, int64_t n, int64_t k, const GemmLaunch& launch,
                     bool check_f32 = false) {
  const auto x = synthetic_activation(m, k, fresh_seed());
  const auto w = synthetic_weight(n, k, fresh_seed());
  const ActivationQuant aq = quantize_activation(mode, x.data(), m, k, "x");
  std::vector<float> wdq(w.size());
  if (g == (mode == Mode::kNvfp4 ? 16 : 32)) {
    dequantize_weight(quantize_weight(mode, w.data(), n, k, "w"), wdq.data());
  } else {
    dequantize(quantize(g == 32 ? Format::kNvfp4G32 : Format::kNvfp4G16, w.data(), n, k, "w"),
               wdq.data());
  }
  DeviceBuffer<float> dx(x.size()), dw(w.size());
  dx.upload(x.data());
  dw.upload(w.data());
  DeviceNvfp4 sp(m, k, 32), rs(m, k, 16), wq(n, k, g);
  DeviceBuffer<uint32_t> scratch(1);
  DeviceBuffer<uint16_t> y(static_cast<size_t>(m * n));
  DeviceBuffer<float> y32(check_f32 ? static_cast<size_t>(m * n) : 0);
  check(cudaMemset(y.p, 0xFF, y.n * 2), "poison");  // bf16 NaN
  check(cudaMemset(y32.p, 0xFF, y32.n * 4), "poison");
  pack_weight(dw.p, n, k, g, wq.view(), scratch.p, nullptr);
  launch({dx.p, &sp, &rs, &wq, scratch.p, y.p, y32.p});
  check(cudaDeviceSynchronize(), "sync");
  const std::vector<double> ref = reference_f64(aq.dequant, wdq, m, n, k);
  bool written = false;
  const double err = rel_err(ref, bf16_to_float(y.download()), &written);
  EXPECT_TRUE(written) << mode_name(mode) << " g" << g << " M=" << m << " N=" << n;
  EXPECT_LT(err, 4e-3) << mode_name(mode) << " g" << g << " M=" << m << " N=" << n << " K=" << k;
  if (!check_f32) return;
  const double err32 = rel_err(ref, y32.download(), &written);
  EXPECT_TRUE(written) << "f32 " << mode_name(mode) << " g" << g << " M=" << m << " N=" << n;
  EXPECT_LT(err32, 1e-5) << "f32 " << mode_name(mode) << " g" << g << " M=" << m << " N=" << n
                         << " K=" << k;
}

const std::tuple<Mode, PrepareMode, int> kGemmModes[] = {
    {Mode::kSharqNvfp4, PrepareMode::kSharqNvfp4, 32},
    {Mode::kSharqNvfp4_24, PrepareMode::kSharqNvfp4_24, 32},
    {Mode::kNvfp4, PrepareMode::kNvfp4, 16}};

TEST(CudaGemmDecode, MatchesFloat64ReferenceAndWritesEverything) {
  for (auto [mode, pm, g] : kGemmModes) {
    for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 64, 64},
                           {3, 100, 1088},
                           {17, 256, 4096},
                           {32, 96, 2048}}) {
      DeviceBuffer<float> dec(static_cast<size_t>(m * k));
      const PrepareMode prep = pm;
      const int group = g;
      const int64_t mm = m, nn = n, kk = k;
      check_gemm_case(mode, g, m, n, k, [&](const GemmCaseBuffers& b) {
        prepare(prep, b.x, mm, kk, b.sparse->view(), b.residual->view(), dec.p, b.scratch, nullptr);
        gemm_decode(dec.p, b.residual->ts.p, mm, b.weight->view(), group, nn, kk, b.y, nullptr);
      });
    }
  }
}

// v3 (tensor cores): both SharQ paths as separate FP16 planes; odd M, N not a multiple of 16 and
// K with a half window (1088 = 8.5 x 128) exercise every predicate. The wide N (thousands of
// 16-row tiles, short K) take the 2- and 4-warp blocks of large grids.
// Every case through the three kernels: from kMma planes the per-tile kernel and the shared-
// activation one for every M (testing::decode_gemm_shared_x 0 and 1), with one and with two 16-row
// tiles per warp (testing::decode_gemm_row_tiles); from planes prepared in the kWgmma order (rows
// padded to whole 128-wide windows: 1088 and 64 leave a half window) the wgmma kernel for every
// M; and each shared kernel once with its K split forced to 3 (uneven window shares; otherwise
// chosen per launch: 1, 2 and 8 occur below).
struct DecodeVariant {
  int row_tiles, shared_x, split_k;
  int warps = 0;  // testing::decode_gemm_warps: 0 chosen per launch, else forced
  PlaneOrder order = PlaneOrder::kMma;
};
class CudaGemmDecodeMmaRowTiles : public ::testing::TestWithParam<DecodeVariant> {
 protected:
  void SetUp() override {
    sharq::cuda::testing::decode_gemm_row_tiles(GetParam().row_tiles);
    sharq::cuda::testing::decode_gemm_shared_x(GetParam().shared_x);
    sharq::cuda::testing::decode_gemm_split_k(GetParam().split_k);
    sharq::cuda::testing::decode_gemm_warps(GetParam().warps);
  }
  void TearDown() override {
    sharq::cuda::testing::decode_gemm_row_tiles(0);
    sharq::cuda::testing::decode_gemm_shared_x(-1);
    sharq::cuda::testing::decode_gemm_split_k(0);
    sharq::cuda::testing::decode_gemm_warps(0);
  }
};
INSTANTIATE_TEST_SUITE_P(RowTiles, CudaGemmDecodeMmaRowTiles,
                         ::testing::Values(DecodeVariant{1, 0, 0}, DecodeVariant{2, 0, 0},
                                           DecodeVariant{1, 1, 0}, DecodeVariant{2, 1, 0},
                                           DecodeVariant{1, 1, 3}, DecodeVariant{1, 0, 0, 2},
                                           DecodeVariant{2, 0, 0, 4}, DecodeVariant{0, -1, 0},
                                           DecodeVariant{0, -1, 0, 0, PlaneOrder::kWgmma},
                                           DecodeVariant{0, -1, 3, 0, PlaneOrder::kWgmma}),
                         [](const ::testing::TestParamInfo<DecodeVariant>& i) {
                           if (i.param.order == PlaneOrder::kWgmma)
                             return std::string("wgmma_order") +
                                    (i.param.split_k ? "_k" + std::to_string(i.param.split_k) : "");
                           if (i.param.row_tiles == 0) return std::string("as_dispatched");
                           return std::string(i.param.shared_x ? "shared" : "per_tile") + "_rt" +
                                  std::to_string(i.param.row_tiles) +
                                  (i.param.split_k ? "_k" + std::to_string(i.param.split_k) : "") +
                                  (i.param.warps ? "_w" + std::to_string(i.param.warps) : "");
                         });

TEST_P(CudaGemmDecodeMmaRowTiles, MatchesFloat64ReferenceAndWritesEverything) {
  for (auto [mode, pm, g] : kGemmModes) {
    const int paths = mode == Mode::kNvfp4 ? 1 : 2;
    for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 64, 64},
                           {3, 100, 1088},
                           {8, 33, 4096},
                           {9, 256, 1024},
                           {17, 256, 4096},
                           {32, 96, 2048},
                           {1, 28680, 192},
                           {4, 14344, 320},
                           {12, 12000, 128},
                           {32, 20000, 64},
                           {2, 6152, 448},
                           {1, 4100, 14336},
                           {1, 4096, 1024},  // the M = 1 kernel's shapes (as dispatched)
                           {1, 272, 2048},
                           {6, 3000, 1600}}) {
      const PlaneOrder order = GetParam().order;
      DeviceBuffer<uint16_t> xh(static_cast<size_t>(paths * m * plane_row_halves(k, order)));
      // The SharQ planes' lo flags (kMma): the per-tile kernel skips plane 1 where they are clear.
      DeviceBuffer<uint8_t> lo_flags(static_cast<size_t>(m * k / 32));
      uint8_t* flags = paths == 2 && order == PlaneOrder::kMma ? lo_flags.p : nullptr;
      const PrepareMode prep = pm;
      const int group = g;
      const int64_t mm = m, nn = n, kk = k;
      check_gemm_case(mode, g, m, n, k, [&](const GemmCaseBuffers& b) {
        prepare(prep, b.x, mm, kk, b.sparse->view(), b.residual->view(), nullptr, b.scratch,
                nullptr, xh.p, order, flags);
        gemm_decode_mma(xh.p, paths, b.residual->ts.p, mm, b.weight->view(), group, nn, kk, b.y,
                        nullptr, order, flags);
      });
    }
  }
}

// The lo skip (docs/merged_operand.md): with the prepare's lo flags, the per-tile kernel (M <= 8,
// packed and unpacked paths, one and two row tiles) gives the same outputs as without them (it
// skips only zeros), on activations with heavy outliers whose flags are neither all set nor all
// clear.
TEST_P(CudaGemmDecodeMmaRowTiles, LoSkipGivesTheSameOutputs) {
  if (GetParam().order != PlaneOrder::kMma) GTEST_SKIP() << "lo flags go with kMma planes";
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{2, 300, 4096},
                         {4, 1000, 1088},
                         {5, 96, 14336},
                         {8, 2048, 4096}}) {
    auto x = synthetic_activation(m, k, fresh_seed(), 8, 300.0f);
    // Outliers that leave lo for sure (a backbone of 6 x 352 = 2112 beside a residual of about
    // -21, whose sum is odd past 2048, where FP16 steps by 2), in the first window of each row.
    for (int64_t r = 0; r < m; ++r) {
      x[static_cast<size_t>(r * k + 5)] = 1e4f;
      x[static_cast<size_t>(r * k + 37)] = 7777.0f;
    }
    const auto w = synthetic_weight(n, k, fresh_seed());
    DeviceBuffer<float> dx(x.size()), dw(w.size());
    dx.upload(x.data());
    dw.upload(w.data());
    DeviceNvfp4 sp(m, k, 32), rs(m, k, 16), wq(n, k, 32);
    DeviceBuffer<uint32_t> scratch(1);
    pack_weight(dw.p, n, k, 32, wq.view(), scratch.p, nullptr);
    DeviceBuffer<uint16_t> xh(static_cast<size_t>(2 * m * k));
    DeviceBuffer<uint8_t> flags(static_cast<size_t>(m * k / 32));
    prepare(PrepareMode::kSharqNvfp4_24, dx.p, m, k, sp.view(), rs.view(), nullptr, scratch.p,
            nullptr, xh.p, PlaneOrder::kMma, flags.p);
    DeviceBuffer<float> with(static_cast<size_t>(m * n)), without(static_cast<size_t>(m * n));
    with.poison(0xFF);
    without.poison(0xFF);
    gemm_decode_mma_f32(xh.p, 2, rs.ts.p, m, wq.view(), 32, n, k, without.p, nullptr);
    gemm_decode_mma_f32(xh.p, 2, rs.ts.p, m, wq.view(), 32, n, k, with.p, nullptr, PlaneOrder::kMma,
                        flags.p);
    check(cudaDeviceSynchronize(), "sync");
    const auto f = flags.download();
    const auto set = std::count(f.begin(), f.end(), uint8_t{1});
    EXPECT_GT(set, 0) << "M=" << m << " K=" << k;
    EXPECT_LT(set, static_cast<std::ptrdiff_t>(f.size())) << "M=" << m << " K=" << k;
    const auto a = with.download(), b = without.download();
    size_t bad = 0;
    for (size_t i = 0; i < a.size(); ++i) bad += !(a[i] == b[i]);  // NaN (unwritten) counts
    EXPECT_EQ(bad, 0u) << "M=" << m << " N=" << n << " K=" << k;
  }
}

// Grouped decode GEMM: the packed weight's rows cut into parts (tile-aligned and not), each part
// with its own output and its own tensor scale (the shared one times 2^i, undone exactly before
// the check), as the engine's q/k/v and gate/up groups run. Float32 output, so the bf16 check
// reads the float32 result rounded.
TEST_P(CudaGemmDecodeMmaRowTiles, GroupOfPartsMatchesReference) {
  const std::pair<int64_t, std::vector<int64_t>> cases[] = {{1, {512, 128, 128}},
                                                            {3, {100, 33, 200}},
                                                            {4, {1000, 1000}},
                                                            {17, {64, 40, 8, 16}},
                                                            {32, {300, 260}}};
  for (auto [mode_, pm_, g_] : kGemmModes) {
    // plain copies: a C++17 lambda cannot capture structured bindings
    const Mode mode = mode_;
    const PrepareMode pm = pm_;
    const int g = g_;
    const int paths = mode == Mode::kNvfp4 ? 1 : 2;
    for (const auto& c : cases) {
      const int64_t m = c.first;
      const std::vector<int64_t>& sizes = c.second;
      int64_t n = 0;
      for (int64_t s : sizes) n += s;
      const int64_t k = m == 17 ? 1088 : 256;
      const PlaneOrder order = GetParam().order;
      DeviceBuffer<uint16_t> xh(static_cast<size_t>(paths * m * plane_row_halves(k, order)));
      check_gemm_case(
          mode, g, m, n, k,
          [&](const GemmCaseBuffers& b) {
            prepare(pm, b.x, m, k, b.sparse->view(), b.residual->view(), nullptr, b.scratch,
                    nullptr, xh.p, order);
            const float ts = b.weight->ts.download()[0];
            std::vector<float> part_ts;
            std::vector<std::unique_ptr<DeviceBuffer<float>>> ys;
            for (size_t i = 0; i < sizes.size(); ++i) {
              part_ts.push_back(std::ldexp(ts, static_cast<int>(i)));
              ys.push_back(
                  std::make_unique<DeviceBuffer<float>>(static_cast<size_t>(m * sizes[i])));
              check(cudaMemset(ys.back()->p, 0xFF, ys.back()->n * 4), "poison");
            }
            DeviceBuffer<float> dts(part_ts.size());
            dts.upload(part_ts.data());
            // Each part its own tiled matrix (weight_layout.h: a cut off the middle of a 16-row
            // tile is not one), holding the whole packed weight's rows [r0, r0 + size).
            const auto tc = b.weight->codes.download(), ts8 = b.weight->scales.download();
            std::vector<uint8_t> codes(tc.size()), scales(ts8.size());
            weight_layout::from_tiled(tc.data(), ts8.data(), n, k, g, codes.data(), scales.data());
            std::vector<std::unique_ptr<DeviceNvfp4>> pw;
            std::vector<DecodeGemmPart> parts;
            int64_t r0 = 0;
            for (size_t i = 0; i < sizes.size(); ++i) {
              pw.push_back(std::make_unique<DeviceNvfp4>(sizes[i], k, g));
              std::vector<uint8_t> pc(pw.back()->codes.n), ps(pw.back()->scales.n);
              weight_layout::to_tiled(codes.data() + r0 * k / 2, scales.data() + r0 * k / g,
                                      sizes[i], k, g, pc.data(), ps.data());
              pw.back()->codes.upload(pc.data());
              pw.back()->scales.upload(ps.data());
              const Nvfp4View v{pw.back()->codes.p, pw.back()->scales.p, dts.p + i};
              parts.push_back({v, sizes[i], ys[i]->p});
              r0 += sizes[i];
            }
            gemm_decode_mma_group_f32(xh.p, paths, b.residual->ts.p, m, parts.data(),
                                      static_cast<int>(parts.size()), g, k, nullptr, false, order);
            // accumulate (the fused residual add): y + the same product is exactly 2y.
            std::vector<std::vector<float>> once;
            for (const auto& y : ys) once.push_back(y->download());
            gemm_decode_mma_group_f32(xh.p, paths, b.residual->ts.p, m, parts.data(),
                                      static_cast<int>(parts.size()), g, k, nullptr, true, order);
            for (size_t i = 0; i < sizes.size(); ++i) {
              const auto twice = ys[i]->download();
              size_t bad = 0;
              for (size_t j = 0; j < twice.size(); ++j) bad += twice[j] != 2.0f * once[i][j];
              EXPECT_EQ(bad, 0u) << "accumulate, part " << i << " M=" << m;
              check(
                  cudaMemcpy(ys[i]->p, once[i].data(), once[i].size() * 4, cudaMemcpyHostToDevice),
                  "restore");
            }
            std::vector<float> y32(static_cast<size_t>(m * n));
            std::vector<uint16_t> y16(y32.size());
            int64_t c0 = 0;
            for (size_t i = 0; i < sizes.size(); ++i) {
              const auto part = ys[i]->download();
              for (int64_t r = 0; r < m; ++r) {
                for (int64_t c = 0; c < sizes[i]; ++c) {
                  const float v = std::ldexp(part[r * sizes[i] + c], -static_cast<int>(i));
                  y32[r * n + c0 + c] = v;
                  y16[r * n + c0 + c] = bf16_bits(v);
                }
              }
              c0 += sizes[i];
            }
            check(cudaMemcpy(b.y32, y32.data(), y32.size() * 4, cudaMemcpyHostToDevice), "h2d");
            check(cudaMemcpy(b.y, y16.data(), y16.size() * 2, cudaMemcpyHostToDevice), "h2d");
          },
          true);
    }
  }
}

// Prefill GEMM: both output types from one launch pair; M around and across the 128-token
// tile (1, 3, 17, 100, 128, 300, 2049), N mostly not a multiple of the 256-row tile, K from one
// 64-step to 64 of them, and an odd step count (1088). Every mode with its own weight group,
// then the other group per path count (2 paths on g16, 1 path on g32).
void check_prefill(Mode mode, PrepareMode pm, int g, int64_t m, int64_t n, int64_t k) {
  const int paths = mode == Mode::kNvfp4 ? 1 : 2;
  DeviceBuffer<uint16_t> xh(static_cast<size_t>(paths * m * k));
  check_gemm_case(
      mode, g, m, n, k,
      [&](const GemmCaseBuffers& b) {
        prepare(pm, b.x, m, k, b.sparse->view(), b.residual->view(), nullptr, b.scratch, nullptr,
                xh.p);
        gemm_prefill(xh.p, paths, b.residual->ts.p, m, b.weight->view(), g, n, k, b.y, nullptr);
        gemm_prefill_f32(xh.p, paths, b.residual->ts.p, m, b.weight->view(), g, n, k, b.y32,
                         nullptr);
      },
      true);
}

const std::tuple<int64_t, int64_t, int64_t> kPrefillShapes[] = {
    {1, 64, 64},      {3, 200, 192},    {17, 136, 1024}, {100, 392, 640},
    {128, 256, 4096}, {300, 520, 1088}, {2049, 264, 512}};

// The M = 1 kernel (two paths, g32, K % 128 == 0, N % 16 == 0), built for three and for two
// blocks an SM and chosen per grid (testing::decode_gemm_m1).
class CudaGemmDecodeM1 : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { sharq::cuda::testing::decode_gemm_m1(GetParam()); }
  void TearDown() override { sharq::cuda::testing::decode_gemm_m1(1); }
};
INSTANTIATE_TEST_SUITE_P(Build, CudaGemmDecodeM1, ::testing::Values(3, 2, 1));

// Each build (its scales applied after the products, per-group columns): both SharQ modes, bf16 and
// float32 out, against the float64 reference; the shapes are the engine's o and down products and
// one tile of one window.
TEST_P(CudaGemmDecodeM1, MatchesFloat64Reference) {
  for (auto [mode, pm] : {std::pair{Mode::kSharqNvfp4_24, PrepareMode::kSharqNvfp4_24},
                          std::pair{Mode::kSharqNvfp4, PrepareMode::kSharqNvfp4}}) {
    for (auto [n, k] : {std::pair<int64_t, int64_t>{4096, 4096}, {1040, 14336}, {48, 128}}) {
      DeviceBuffer<uint16_t> xh(static_cast<size_t>(2 * k));
      const PrepareMode prep = pm;
      const int64_t nn = n, kk = k;
      check_gemm_case(
          mode, 32, 1, n, k,
          [&](const GemmCaseBuffers& b) {
            prepare(prep, b.x, 1, kk, b.sparse->view(), b.residual->view(), nullptr, b.scratch,
                    nullptr, xh.p);
            gemm_decode_mma(xh.p, 2, b.residual->ts.p, 1, b.weight->view(), 32, nn, kk, b.y,
                            nullptr);
            gemm_decode_mma_f32(xh.p, 2, b.residual->ts.p, 1, b.weight->view(), 32, nn, kk, b.y32,
                                nullptr);
          },
          true);
    }
  }
}

// The L2 prefetch of a product's weights (l2_prefetch_plan.h; its byte ranges are checked on the
// CPU): it runs on odd shapes (short last strip, 64-wide last window, several parts, g16 and
// g32) under every budget, faults nowhere (memcheck runs this test too) and writes nothing.
TEST(CudaL2Prefetch, RunsOnEveryShapeAndWritesNothing) {
  for (int g : {16, 32}) {
    const std::pair<int64_t, int64_t> shapes[] = {{17, 192}, {4096, 4160}, {40, 64}};
    std::vector<std::unique_ptr<DeviceBuffer<uint8_t>>> codes, scales;
    std::vector<std::vector<uint8_t>> before;
    L2PrefetchPart parts[3];
    int64_t total = 0;
    for (int i = 0; i < 3; ++i) {
      const auto [n, k] = shapes[i];
      codes.push_back(std::make_unique<DeviceBuffer<uint8_t>>(static_cast<size_t>(n * k / 2)));
      scales.push_back(std::make_unique<DeviceBuffer<uint8_t>>(static_cast<size_t>(n * k / g)));
      std::vector<uint8_t> h(static_cast<size_t>(n * k / 2));
      for (size_t j = 0; j < h.size(); ++j) h[j] = static_cast<uint8_t>(j * 131 + i);
      codes.back()->upload(h.data());
      before.push_back(std::move(h));
      scales.back()->poison(0x5A);
      parts[i] = {{codes.back()->p, scales.back()->p, nullptr}, n, k, g};
      total += n * k / 2 + n * k / g;
    }
    for (int64_t budget : {int64_t{0}, int64_t{1}, total / 3, total, 4 * total}) {
      l2_prefetch_weights(parts, 3, budget, nullptr);
      check(cudaDeviceSynchronize(), "prefetch");
    }
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(codes[i]->download(), before[i]) << "part " << i;
      for (uint8_t v : scales[i]->download()) ASSERT_EQ(v, 0x5A) << "part " << i;
    }
  }
  L2PrefetchPart bad{{nullptr, nullptr, nullptr}, 16, 100, 32};
  EXPECT_THROW(l2_prefetch_weights(&bad, 1, 1 << 20, nullptr), Error);
}

// The L2 prefetch of a layer's K/V rows: every budget (none, less than a row a region, part of
// the rows, all), the position from the host or the device (also past the capacity: clamped),
// float32 and FP16 rows; faults nowhere (memcheck runs this test too) and writes nothing.
TEST(CudaL2Prefetch, KvRowsRunEverywhereAndWriteNothing) {
  const int64_t regions = 3, capacity = 70;
  for (int64_t row_bytes : {int64_t{512}, int64_t{128}, int64_t{16}}) {
    const size_t n = static_cast<size_t>(regions * capacity * row_bytes);
    DeviceBuffer<uint8_t> kc(n), vc(n);
    kc.poison(0x3C);
    vc.poison(0xC3);
    DeviceBuffer<int64_t> pos_dev(1);
    for (int64_t pos : {int64_t{0}, int64_t{1}, int64_t{69}, int64_t{70}, int64_t{500}}) {
      pos_dev.upload(&pos);
      const int64_t all = 2 * regions * capacity * row_bytes;
      for (int64_t budget : {int64_t{0}, row_bytes, all / 3, all, 4 * all}) {
        l2_prefetch_kv(kc.p, vc.p, regions, capacity, row_bytes, pos, nullptr, budget, nullptr);
        l2_prefetch_kv(kc.p, vc.p, regions, capacity, row_bytes, 0, pos_dev.p, budget, nullptr);
        check(cudaDeviceSynchronize(), "kv prefetch");
      }
    }
    for (uint8_t v : kc.download()) ASSERT_EQ(v, 0x3C);
    for (uint8_t v : vc.download()) ASSERT_EQ(v, 0xC3);
  }
  DeviceBuffer<uint8_t> b(1024);
  EXPECT_THROW(l2_prefetch_kv(b.p, b.p, 1, 2, 24, 1, nullptr, 1 << 20, nullptr), Error);
  EXPECT_THROW(l2_prefetch_kv(b.p + 4, b.p, 1, 2, 32, 1, nullptr, 1 << 20, nullptr), Error);
}

TEST(CudaGemmPrefill, MatchesFloat64ReferenceAndWritesEverything) {
  for (auto [mode, pm, g] : kGemmModes) {
    for (auto [m, n, k] : kPrefillShapes) check_prefill(mode, pm, g, m, n, k);
  }
}

// The float32 output y32 (m, n) rounded into the case's bf16 output y, for check_gemm_case's
// bf16 check of an f32-only product.
void round_f32_output(const float* y32, uint16_t* y, int64_t m, int64_t n) {
  check(cudaDeviceSynchronize(), "sync");
  std::vector<float> h(static_cast<size_t>(m * n));
  check(cudaMemcpy(h.data(), y32, h.size() * 4, cudaMemcpyDeviceToHost), "d2h");
  std::vector<uint16_t> h16(h.size());
  for (size_t i = 0; i < h.size(); ++i) h16[i] = bf16_bits(h[i]);
  check(cudaMemcpy(y, h16.data(), h16.size() * 2, cudaMemcpyHostToDevice), "h2d");
}

// Prefill through cuBLAS (weight decode pass + one FP16 GEMM per path): the same shapes and
// modes, float32 output at SPEC 8's float32 tolerance (the bf16 check reads it rounded).
TEST(CudaGemmPrefillCublas, MatchesFloat64ReferenceAndWritesEverything) {
  cublasHandle_t blas = nullptr;
  ASSERT_EQ(cublasCreate(&blas), CUBLAS_STATUS_SUCCESS);
  for (auto [mode_, pm_, g_] : kGemmModes) {
    const Mode mode = mode_;
    const PrepareMode pm = pm_;
    const int g = g_;
    const int paths = mode == Mode::kNvfp4 ? 1 : 2;
    for (auto [m_, n_, k_] : kPrefillShapes) {
      const int64_t m = m_, n = n_, k = k_;
      DeviceBuffer<uint16_t> xh(static_cast<size_t>(paths * m * k));
      DeviceBuffer<uint8_t> ws(prefill_cublas_scratch_bytes(n, k));
      check_gemm_case(
          mode, g, m, n, k,
          [&](const GemmCaseBuffers& b) {
            prepare(pm, b.x, m, k, b.sparse->view(), b.residual->view(), nullptr, b.scratch,
                    nullptr, xh.p);
            gemm_prefill_cublas_f32(blas, xh.p, paths, b.residual->ts.p, m, b.weight->view(), g, n,
                                    k, b.y32, ws.p, nullptr);
            round_f32_output(b.y32, b.y, m, n);
          },
          true);
    }
  }
  cublasDestroy(blas);
}

// The merged prefill (prepare writing kMmaRows planes and lo flags, merged_lo_columns,
// gemm_prefill_merged_f32) for the SharQ modes: the same shapes, float32 output at SPEC 8's
// float32 tolerance; then y += the same product through the stored K' (2y, within 1e-6: the
// epilogue may fuse the add).
TEST(CudaGemmPrefillMerged, MatchesFloat64ReferenceAndWritesEverything) {
  cublasHandle_t blas = nullptr;
  ASSERT_EQ(cublasCreate(&blas), CUBLAS_STATUS_SUCCESS);
  int32_t* kprime_host = nullptr;
  cudaEvent_t copied = nullptr;
  check(cudaMallocHost(&kprime_host, sizeof(int32_t)), "cudaMallocHost");
  check(cudaEventCreateWithFlags(&copied, cudaEventDisableTiming), "cudaEventCreate");
  for (auto [mode_, pm_, g_] : kGemmModes) {
    if (mode_ == Mode::kNvfp4) continue;
    const Mode mode = mode_;
    const PrepareMode pm = pm_;
    const int g = g_;
    for (auto [m_, n_, k_] : kPrefillShapes) {
      const int64_t m = m_, n = n_, k = k_;
      DeviceBuffer<uint16_t> xh(static_cast<size_t>(2 * m * k));
      DeviceBuffer<uint8_t> flags(static_cast<size_t>(m * k / 32)), cols(merged_columns_bytes(k)),
          ws(prefill_merged_scratch_bytes(n, k));
      // K' through the pinned copy and its event (the engine's way) under sharq-nvfp4, through a
      // wait for the stream under sharq-nvfp4-24.
      MergedColumns columns{cols.p};
      if (mode == Mode::kSharqNvfp4) {
        columns.kprime_host = kprime_host;
        columns.copied = copied;
      }
      std::vector<float> once;
      check_gemm_case(
          mode, g, m, n, k,
          [&](const GemmCaseBuffers& b) {
            prepare(pm, b.x, m, k, b.sparse->view(), b.residual->view(), nullptr, b.scratch,
                    nullptr, xh.p, PlaneOrder::kMmaRows, flags.p);
            merged_lo_columns(xh.p, flags.p, m, k, columns, nullptr);
            int64_t kprime = -1;
            gemm_prefill_merged_f32(blas, xh.p, columns, &kprime, b.residual->ts.p, m,
                                    b.weight->view(), g, n, k, b.y32, ws.p, nullptr);
            EXPECT_GE(kprime, 0);
            EXPECT_LE(kprime, k);
            round_f32_output(b.y32, b.y, m, n);
            once.resize(static_cast<size_t>(m * n));
            check(cudaMemcpy(once.data(), b.y32, once.size() * 4, cudaMemcpyDeviceToHost), "d2h");
            DeviceBuffer<float> y2(once.size());
            y2.upload(once.data());
            gemm_prefill_merged_f32(blas, xh.p, columns, &kprime, b.residual->ts.p, m,
                                    b.weight->view(), g, n, k, y2.p, ws.p, nullptr, true);
            const auto twice = y2.download();
            double num = 0, den = 0;
            for (size_t i = 0; i < once.size(); ++i) {
              num += (double(twice[i]) - 2.0 * once[i]) * (double(twice[i]) - 2.0 * once[i]);
              den += 4.0 * double(once[i]) * once[i];
            }
            EXPECT_LT(std::sqrt(num / den), 1e-6) << "accumulate M=" << m << " N=" << n;
          },
          true);
    }
  }
  cudaFreeHost(kprime_host);
  cudaEventDestroy(copied);
  cublasDestroy(blas);
}

// merged_lo_columns against the CPU (docs/merged_operand.md): K' = the kMma slots where any row's
// lo of merge_to_halves(backbone decode, residual decode) is not zero, listed in increasing order;
// each row's hi untouched, its lo compacted to those slots and zero up to K' rounded up to 16.
// Outlier-heavy inputs, so that lo exists; the cases together must find some.
TEST(CudaMergedLoColumns, MatchTheCpuSplit) {
  int64_t found = 0;
  for (auto [pm, mode] : {std::pair{PrepareMode::kSharqNvfp4, Mode::kSharqNvfp4},
                          std::pair{PrepareMode::kSharqNvfp4_24, Mode::kSharqNvfp4_24}}) {
    for (auto [m, k] :
         {std::pair<int64_t, int64_t>{3, 192}, {100, 640}, {300, 4096}, {2049, 512}}) {
      const auto x = synthetic_activation(m, k, fresh_seed(), 8, 300.0f);
      const ActivationQuant ref = quantize_activation(mode, x.data(), m, k, "x");
      DeviceBuffer<float> dx(x.size());
      dx.upload(x.data());
      DeviceNvfp4 sp(m, k, 32), rs(m, k, 16);
      DeviceBuffer<uint32_t> scratch(1);
      DeviceBuffer<uint16_t> xh(static_cast<size_t>(2 * m * k));
      DeviceBuffer<uint8_t> flags(static_cast<size_t>(m * k / 32)), cols(merged_columns_bytes(k));
      xh.poison(0xCD);
      prepare(pm, dx.p, m, k, sp.view(), rs.view(), nullptr, scratch.p, nullptr, xh.p,
              PlaneOrder::kMmaRows, flags.p);
      merged_lo_columns(xh.p, flags.p, m, k, MergedColumns{cols.p}, nullptr);
      check(cudaDeviceSynchronize(), "sync");
      const auto got = xh.download();
      const auto c = cols.download();
      int32_t kprime;
      std::memcpy(&kprime, c.data(), 4);
      // The CPU's split in kMma slots: element j of an 8-group at slot 2j (j < 4) or 2(j-4)+1.
      std::vector<uint16_t> hi(static_cast<size_t>(m * k)), lo(hi.size());
      std::vector<char> any(static_cast<size_t>(k), 0);
      std::vector<float> dsp(static_cast<size_t>(k)), drs(dsp.size());
      for (int64_t r = 0; r < m; ++r) {
        dequantize_row_scaled(ref.sparse_q, r, dsp.data());
        dequantize_row_scaled(ref.dense_q, r, drs.data());
        for (int64_t e = 0; e < k; ++e) {
          const MergedHalves h = merge_to_halves(dsp[e], drs[e]);
          const int64_t j = e % 8, slot = e - j + (j < 4 ? 2 * j : 2 * (j - 4) + 1);
          hi[r * k + slot] = h.hi;
          lo[r * k + slot] = h.lo;
          any[slot] |= h.lo != 0;
        }
      }
      std::vector<int32_t> list;
      for (int64_t s = 0; s < k; ++s)
        if (any[s]) list.push_back(static_cast<int32_t>(s));
      const std::string what = std::string(mode_name(mode)) + " " + shape_str(m, k);
      ASSERT_EQ(kprime, static_cast<int32_t>(list.size())) << what;
      std::vector<int32_t> got_list(list.size());
      std::memcpy(got_list.data(), c.data() + 16, list.size() * 4);
      EXPECT_EQ(got_list, list) << what;
      const int64_t kpp = (kprime + 15) / 16 * 16;
      int64_t bad = 0;
      for (int64_t r = 0; r < m; ++r) {
        const uint16_t* row = got.data() + r * 2 * k;
        for (int64_t s = 0; s < k; ++s) bad += row[s] != hi[r * k + s];
        for (int64_t j = 0; j < kpp; ++j)
          bad += row[k + j] != (j < kprime ? lo[r * k + list[static_cast<size_t>(j)]] : 0);
      }
      EXPECT_EQ(bad, 0) << what;
      found += kprime;
    }
  }
  EXPECT_GT(found, 0) << "no lo anywhere: the inputs no longer exercise the compaction";
}

// Dense NVFP4 in BF16 out (BF16 planes expanded from prepare's packed output, BF16 weight decode,
// cuBLAS BF16): the same shapes at SPEC 8's bf16 tolerance, every output written; the g32
// payload too (the weight group is the decode's only difference).
TEST(CudaGemmPrefillCublasBf16, MatchesFloat64ReferenceAndWritesEverything) {
  cublasHandle_t blas = nullptr;
  ASSERT_EQ(cublasCreate(&blas), CUBLAS_STATUS_SUCCESS);
  for (int g_ : {16, 32}) {
    for (auto [m_, n_, k_] : kPrefillShapes) {
      const int64_t m = m_, n = n_, k = k_;
      const int g = g_;
      DeviceBuffer<uint16_t> xb(static_cast<size_t>(m * k));
      DeviceBuffer<uint8_t> ws(prefill_cublas_scratch_bytes(n, k));
      check_gemm_case(Mode::kNvfp4, g, m, n, k, [&](const GemmCaseBuffers& b) {
        prepare(PrepareMode::kNvfp4, b.x, m, k, b.sparse->view(), b.residual->view(), nullptr,
                b.scratch, nullptr, nullptr);
        xb.poison(0xFF);
        expand_activation_planes_bf16(PrepareMode::kNvfp4, b.sparse->view(), b.residual->view(), m,
                                      k, xb.p, nullptr);
        gemm_prefill_cublas_bf16(blas, xb.p, b.residual->ts.p, m, b.weight->view(), g, n, k, b.y,
                                 ws.p, nullptr);
      });
    }
  }
  cublasDestroy(blas);
}

// The 2:4 prefill (sharq-nvfp4-24, prepare without planes, prefill_ws_images +
// gemm_prefill_ws_f32): the same shapes, float32 output at SPEC 8's float32 tolerance, then the
// residual add (y += the same product is exactly 2y).
TEST(CudaGemmPrefillWs, MatchesFloat64ReferenceAndWritesEverything) {
  for (auto [m_, n_, k_] : kPrefillShapes) {
    const int64_t m = m_, n = n_, k = k_;
    DeviceBuffer<uint8_t> images(prefill_ws_act_bytes(m, k));
    std::vector<float> first;
    check_gemm_case(
        Mode::kSharqNvfp4_24, 32, m, n, k,
        [&](const GemmCaseBuffers& b) {
          prepare(PrepareMode::kSharqNvfp4_24, b.x, m, k, b.sparse->view(), b.residual->view(),
                  nullptr, b.scratch, nullptr, nullptr);
          images.poison(0xFF);  // the expansion writes every byte the GEMM reads
          prefill_ws_images(b.sparse->view(), b.residual->view(), m, k, images.p, nullptr);
          gemm_prefill_ws_f32(images.p, b.residual->ts.p, m, b.weight->view(), n, k, b.y32,
                              nullptr);
          check(cudaDeviceSynchronize(), "sync");
          first.resize(static_cast<size_t>(m * n));
          check(cudaMemcpy(first.data(), b.y32, first.size() * 4, cudaMemcpyDeviceToHost), "d2h");
          std::vector<uint16_t> y16(first.size());
          for (size_t i = 0; i < first.size(); ++i) y16[i] = bf16_bits(first[i]);
          check(cudaMemcpy(b.y, y16.data(), y16.size() * 2, cudaMemcpyHostToDevice), "h2d");
          gemm_prefill_ws_f32(images.p, b.residual->ts.p, m, b.weight->view(), n, k, b.y32, nullptr,
                              true);
          check(cudaDeviceSynchronize(), "sync");
          std::vector<float> twice(first.size());
          check(cudaMemcpy(twice.data(), b.y32, twice.size() * 4, cudaMemcpyDeviceToHost), "d2h");
          size_t bad = 0;
          for (size_t i = 0; i < first.size(); ++i) bad += twice[i] != 2.0f * first[i];
          EXPECT_EQ(bad, 0u) << "accumulate, M=" << m << " N=" << n << " K=" << k;
          check(cudaMemcpy(b.y32, first.data(), first.size() * 4, cudaMemcpyHostToDevice), "h2d");
        },
        true);
  }
}

// A fresh synthetic activation (m, k) on the device and room for prepare's packed outputs.
struct PrepareCase {
  PrepareCase(int64_t m, int64_t k) : x(static_cast<size_t>(m * k)), sp(m, k, 32), rs(m, k, 16) {
    const auto h = synthetic_activation(m, k, fresh_seed());
    x.upload(h.data());
  }
  DeviceBuffer<float> x;
  DeviceNvfp4 sp, rs;
};

// The stage images expanded from prepare's packed outputs hold exactly prepare's planes: expanded
// on the host (kept values placed by their metadata, the residual unswizzled) they give back
// every backbone and residual element (0,4,1,5,2,6,3,7 order undone); the last tile's padding
// rows are zeros with the pair (0, 1).
TEST(CudaPrefillWsImages, ImagesExpandToThePlanes) {
  for (auto [m, k] : {std::pair<int64_t, int64_t>{200, 192}, {17, 1088}, {256, 4096}}) {
    PrepareCase c(m, k);
    DeviceBuffer<uint32_t> scratch(1);
    DeviceBuffer<uint16_t> xh(static_cast<size_t>(2 * m * k));
    DeviceBuffer<uint8_t> images(prefill_ws_act_bytes(m, k));
    images.poison(0xA5);
    prepare(PrepareMode::kSharqNvfp4_24, c.x.p, m, k, c.sp.view(), c.rs.view(), nullptr, scratch.p,
            nullptr, xh.p);
    prefill_ws_images(c.sp.view(), c.rs.view(), m, k, images.p, nullptr);
    check(cudaDeviceSynchronize(), "sync");
    const auto planes = xh.download();
    const auto img = images.download();
    const int64_t tiles = (m + 127) / 128, nk = k / 64, mpad = tiles * 128;
    const uint8_t* rimg = img.data();
    const uint8_t* simg = rimg + tiles * nk * 16384;
    const uint8_t* eimg = simg + tiles * nk * 8192;
    auto half_at = [](const uint8_t* p) {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return h;
    };
    size_t bad = 0;
    for (int64_t r = 0; r < mpad; ++r) {
      const int64_t rr = r % 128;
      for (int64_t e = 0; e < k; ++e) {
        const int64_t img_i = (r / 128) * nk + e / 64, kk = e % 64;
        const uint16_t res =
            half_at(rimg + img_i * 16384 + rr * 128 + (((kk / 8) ^ (rr & 7)) << 4) + 2 * (kk % 8));
        // Backbone: 4-chunk q of the step, its metadata nibble and kept values.
        const int64_t q = kk / 4;
        uint32_t word;
        std::memcpy(
            &word,
            eimg + img_i * 1024 + 4 * ((rr / 16) * 32 + (q / 8) * 16 + (rr % 8) * 2 + (q % 8) / 4),
            4);
        const uint32_t nib = (word >> (4 * (q % 4) + (rr % 16 >= 8 ? 16 : 0))) & 15;
        const int64_t i0 = nib & 3, i1 = nib >> 2;
        uint16_t bb = 0;
        for (int j = 0; j < 2; ++j) {
          if ((j == 0 ? i0 : i1) != kk % 4) continue;
          const int64_t h = 2 * q + j;
          bb = half_at(simg + img_i * 8192 + rr * 64 + (((h / 8) ^ ((rr >> 1) & 3)) << 4) +
                       2 * (h % 8));
        }
        if (r >= m) {
          bad += res != 0 || bb != 0 || nib != 4;
          continue;
        }
        // prepare's planes hold element j of an 8-group at slot 2j (j < 4) or 2(j - 4) + 1.
        const int64_t j = e % 8, slot = (e & ~int64_t{7}) + (j < 4 ? 2 * j : 2 * (j - 4) + 1);
        const uint16_t want_b = planes[static_cast<size_t>(r * k + slot)];
        const uint16_t want_r = planes[static_cast<size_t>(m * k + r * k + slot)];
        const bool b_ok = bb == want_b || ((bb & 0x7FFF) == 0 && (want_b & 0x7FFF) == 0);
        bad += res != want_r || !b_ok || i0 >= i1;
      }
    }
    EXPECT_EQ(bad, 0u) << "M=" << m << " K=" << k;
  }
}

// The stage images the prepare passes write themselves (prepare_fused, prepare_rmsnorm) equal the
// ones expanded from their packed outputs, byte for byte, padding rows included (the images test
// above ties those to the planes).
TEST(CudaPrefillWsImages, PrepareWritesTheExpandedBytes) {
  for (auto [m, k] : {std::pair<int64_t, int64_t>{200, 192}, {17, 1088}, {256, 4096}}) {
    PrepareCase c(m, k);
    std::vector<float> norm_w(static_cast<size_t>(k));
    for (int64_t i = 0; i < k; ++i) norm_w[static_cast<size_t>(i)] = 0.5f + 0.01f * (i % 97);
    DeviceBuffer<float> dw(norm_w.size());
    dw.upload(norm_w.data());
    DeviceBuffer<uint32_t> scratch(prepare_scratch_bytes(m) / 4);
    check(cudaMemset(scratch.p, 0, prepare_scratch_bytes(m)), "memset");
    const size_t bytes = prefill_ws_act_bytes(m, k);
    DeviceBuffer<uint8_t> written(bytes), expanded(bytes);
    for (int which = 0; which < 2; ++which) {
      written.poison(0xA5);
      expanded.poison(0x5A);
      if (which == 0) {
        prepare_fused(PrepareMode::kSharqNvfp4_24, c.x.p, m, k, c.sp.view(), c.rs.view(), scratch.p,
                      nullptr, nullptr, nullptr, PrepareSchedule::kAuto, written.p);
      } else {
        prepare_rmsnorm(PrepareMode::kSharqNvfp4_24, c.x.p, dw.p, 1e-5f, m, k, c.sp.view(),
                        c.rs.view(), scratch.p, nullptr, nullptr, nullptr, nullptr,
                        PrepareSchedule::kAuto, written.p);
      }
      prefill_ws_images(c.sp.view(), c.rs.view(), m, k, expanded.p, nullptr);
      check(cudaDeviceSynchronize(), "sync");
      const auto a = written.download(), b = expanded.download();
      size_t bad = 0;
      for (size_t i = 0; i < a.size(); ++i) bad += a[i] != b[i];
      EXPECT_EQ(bad, 0u) << (which ? "prepare_rmsnorm" : "prepare_fused") << " M=" << m
                         << " K=" << k;
    }
  }
}

// The planes expanded from prepare's packed outputs equal the planes prepare writes, bit for bit,
// in every mode (nvfp4: one plane); shapes with odd rows and a 64-wide K tail.
TEST(CudaExpandActivationPlanes, BitExactVsPrepare) {
  for (PrepareMode pm :
       {PrepareMode::kNvfp4, PrepareMode::kSharqNvfp4, PrepareMode::kSharqNvfp4_24}) {
    const int paths = pm == PrepareMode::kNvfp4 ? 1 : 2;
    for (auto [m, k] : {std::pair<int64_t, int64_t>{1, 64}, {17, 1088}, {100, 4096}}) {
      PrepareCase c(m, k);
      DeviceBuffer<uint32_t> scratch(1);
      DeviceBuffer<uint16_t> want(static_cast<size_t>(paths * m * k)),
          got(static_cast<size_t>(paths * m * k));
      got.poison(0xA5);
      prepare(pm, c.x.p, m, k, c.sp.view(), c.rs.view(), nullptr, scratch.p, nullptr, want.p);
      expand_activation_planes(pm, c.sp.view(), c.rs.view(), m, k, got.p, nullptr);
      DeviceBuffer<uint16_t> got_bf16(want.n);
      got_bf16.poison(0xA5);
      expand_activation_planes_bf16(pm, c.sp.view(), c.rs.view(), m, k, got_bf16.p, nullptr);
      check(cudaDeviceSynchronize(), "sync");
      const auto a = want.download(), b = got.download(), h = got_bf16.download();
      size_t bad = 0, bad_bf16 = 0;
      for (size_t i = 0; i < a.size(); ++i) {
        bad += a[i] != b[i];
        // The BF16 planes hold the same values: FP16 -> float -> BF16 is exact for them.
        __half_raw hr;
        hr.x = a[i];
        const __nv_bfloat16 want_bf16 = __float2bfloat16(__half2float(__half(hr)));
        uint16_t bits;
        std::memcpy(&bits, &want_bf16, 2);
        bad_bf16 += bits != h[i];
      }
      EXPECT_EQ(bad, 0u) << "mode " << static_cast<int>(pm) << " M=" << m << " K=" << k;
      EXPECT_EQ(bad_bf16, 0u) << "bf16, mode " << static_cast<int>(pm) << " M=" << m << " K=" << k;
    }
  }
}

// The prefill's weight decode pass against CUDA's own host conversions (an oracle independent of
// codecs.h): out[row][8q + i] is E2M1 x UE4M3 x 2^-14 of element 8q + (0,4,1,5,2,6,3,7)[i], from
// the CPU's row-major codes. Shapes: a short last tile, a 64-wide last window, more rows than one
// grid's 65535 (the row loop).
// decode_weight_bf16: the same elements in BF16 without the 2^-14. Rows k + 64 halves apart on
// the 17-row shape (the merged prefill's strided decode): the gaps stay unwritten.
TEST(CudaDecodeWeight, BitExactVsCudaHostConversions) {
  constexpr int kOrder[8] = {0, 4, 1, 5, 2, 6, 3, 7};
  for (auto [g, bf16] : {std::pair<int, bool>{16, false}, {32, false}, {16, true}, {32, true}}) {
    for (auto [n, k] : {std::pair<int64_t, int64_t>{17, 192}, {40, 4096}, {65536 + 37, 64}}) {
      const auto w = synthetic_weight(n, k, fresh_seed());
      const PackedTensor ref =
          quantize(g == 32 ? Format::kNvfp4G32 : Format::kNvfp4G16, w.data(), n, k, "w");
      DeviceBuffer<float> dw(w.size()), sx(1), scalars(3);
      dw.upload(w.data());
      const float two = 2.0f;
      sx.upload(&two);
      DeviceNvfp4 wq(n, k, g);
      DeviceBuffer<uint32_t> scratch(1);
      const int64_t ld = n == 17 ? k + 64 : k;
      DeviceBuffer<uint16_t> out(static_cast<size_t>(n * ld));
      check(cudaMemset(out.p, 0xFF, out.n * 2), "poison");
      pack_weight(dw.p, n, k, g, wq.view(), scratch.p, nullptr);
      (bf16 ? decode_weight_bf16 : decode_weight_f16)(wq.view(), g, n, k, out.p, sx.p, scalars.p,
                                                      nullptr, ld == k ? 0 : ld);
      check(cudaDeviceSynchronize(), "sync");
      const auto got = out.download();
      for (int64_t r = 0; r < n; ++r) {
        for (int64_t c = 0; c < k; ++c) {
          const int64_t e = (c & ~int64_t{7}) + kOrder[c & 7];  // element in row order
          const uint8_t byte = ref.codes[static_cast<size_t>((r * k + e) / 2)];
          const auto code = static_cast<__nv_fp4_storage_t>(e % 2 ? byte >> 4 : byte & 15);
          const float v = __half2float(__half(__nv_cvt_fp4_to_halfraw(code, __NV_E2M1)));
          const float s = __half2float(__half(__nv_cvt_fp8_to_halfraw(
              ref.scales[static_cast<size_t>((r * k + e) / g)], __NV_E4M3)));
          uint16_t bits;
          if (bf16) {
            const __nv_bfloat16 want = __float2bfloat16(v * s);
            std::memcpy(&bits, &want, 2);
          } else {
            const __half want = __float2half(v * s * 0x1p-14f);
            std::memcpy(&bits, &want, 2);
          }
          ASSERT_EQ(got[static_cast<size_t>(r * ld + c)], bits)
              << "g" << g << (bf16 ? " bf16 " : " f16 ") << n << "x" << k << " row " << r << " col "
              << c;
        }
        for (int64_t c = k; c < ld; ++c) ASSERT_EQ(got[static_cast<size_t>(r * ld + c)], 0xFFFF);
      }
      const auto sc = scalars.download();
      EXPECT_EQ(sc[0], two * ref.tensor_scale * (bf16 ? 1.0f : 16384.0f));
      EXPECT_EQ(sc[1], 0.0f);
      EXPECT_EQ(sc[2], 1.0f);
    }
  }
}

TEST(CudaGemmPrefill, OtherWeightGroup) {
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{3, 200, 192}, {300, 520, 1088}}) {
    check_prefill(Mode::kSharqNvfp4_24, PrepareMode::kSharqNvfp4_24, 16, m, n, k);
    check_prefill(Mode::kNvfp4, PrepareMode::kNvfp4, 32, m, n, k);
  }
}

// Small shapes only, for the sanitizers.
TEST(CudaGemmPrefillSmall, MatchesFloat64Reference) {
  for (auto [mode, pm, g] : kGemmModes) {
    for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{3, 200, 192}, {130, 72, 128}})
      check_prefill(mode, pm, g, m, n, k);
  }
}

TEST(CudaErrors, BadShapesAreErrors) {
  Nvfp4View v{nullptr, nullptr, nullptr};
  EXPECT_THROW(prepare(PrepareMode::kNvfp4, nullptr, 1, 100, v, v, nullptr, nullptr, nullptr),
               Error);
  EXPECT_THROW(gemm_decode(nullptr, nullptr, 33, v, 32, 64, 64, nullptr, nullptr), Error);
  EXPECT_THROW(gemm_decode_mma(nullptr, 2, nullptr, 33, v, 32, 64, 64, nullptr, nullptr), Error);
  EXPECT_THROW(gemm_decode_mma(nullptr, 3, nullptr, 1, v, 32, 64, 64, nullptr, nullptr), Error);
  EXPECT_THROW(gemm_prefill(nullptr, 2, nullptr, 0, v, 32, 64, 64, nullptr, nullptr), Error);
  EXPECT_THROW(gemm_prefill(nullptr, 2, nullptr, 64, v, 32, 64, 96, nullptr, nullptr), Error);
  EXPECT_THROW(gemm_prefill(nullptr, 3, nullptr, 64, v, 32, 64, 64, nullptr, nullptr), Error);
  EXPECT_THROW(gemm_prefill_f32(nullptr, 1, nullptr, 64, v, 8, 64, 64, nullptr, nullptr), Error);
  EXPECT_THROW(prefill_ws_act_bytes(64, 96), Error);
  EXPECT_THROW(gemm_prefill_ws_f32(nullptr, nullptr, 0, v, 64, 64, nullptr, nullptr), Error);
  EXPECT_THROW(gemm_prefill_ws_f32(nullptr, nullptr, 64, v, 63, 64, nullptr, nullptr), Error);
  alignas(16) uint8_t host_bytes[32];  // never written: each call throws before launching
  EXPECT_THROW(prepare_fused(PrepareMode::kNvfp4, nullptr, 4, 64, v, v, nullptr, nullptr, nullptr,
                             nullptr, PrepareSchedule::kAuto, host_bytes),
               Error);  // images are sharq-nvfp4-24's
  EXPECT_THROW(prepare_fused(PrepareMode::kSharqNvfp4_24, nullptr, 4, 64, v, v, nullptr, nullptr,
                             nullptr, nullptr, PrepareSchedule::kSingleLaunch, host_bytes),
               Error);
  EXPECT_THROW(prepare_pass(PrepareMode::kSharqNvfp4_24, nullptr, 4, 64, v, v, nullptr, nullptr,
                            nullptr, host_bytes + 1),
               Error);                                                     // misaligned
  EXPECT_THROW(prefill_ws_images(v, v, 64, 96, nullptr, nullptr), Error);  // K % 64
  EXPECT_THROW(prefill_ws_images(v, v, 64, 64, nullptr, nullptr), Error);  // no codes
  EXPECT_THROW(expand_activation_planes(PrepareMode::kNvfp4, v, v, 0, 64, nullptr, nullptr), Error);
  EXPECT_THROW(expand_activation_planes(PrepareMode::kSharqNvfp4, v, v, 4, 64, nullptr, nullptr),
               Error);
  // Planes too large for the wgmma K order's 32-bit offsets: the prepare's store (2^31 halves a
  // plane) and the decode GEMM's reads (2^32 halves in all).
  uint16_t* planes = reinterpret_cast<uint16_t*>(host_bytes);
  EXPECT_THROW(prepare(PrepareMode::kSharqNvfp4, nullptr, (1 << 14) + 1, 1 << 17, v, v, nullptr,
                       nullptr, nullptr, planes, PlaneOrder::kWgmma),
               Error);
  EXPECT_THROW(gemm_decode_mma(planes, 2, nullptr, 32, v, 32, 64, int64_t{1} << 27, nullptr,
                               nullptr, PlaneOrder::kWgmma),
               Error);
  // lo flags go with two paths' kMma planes only.
  const uint8_t flag = 0;
  EXPECT_THROW(gemm_decode_mma(planes, 1, nullptr, 8, v, 16, 64, 64, nullptr, nullptr,
                               PlaneOrder::kMma, &flag),
               Error);
  EXPECT_THROW(gemm_decode_mma(planes, 2, nullptr, 8, v, 32, 64, 64, nullptr, nullptr,
                               PlaneOrder::kWgmma, &flag),
               Error);
}

}  // namespace
}  // namespace sharq::cuda
