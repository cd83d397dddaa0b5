// GPU tests of the fused prepare schedules (prepare_fused: two-kernel, two-kernel + PDL, single
// cooperative launch) and of prepare_rmsnorm: codes, scales and tensor scales bit-exact against
// the CPU reference (quantize_activation, after cpu::rms_norm for the fused norm), FP16 GEMM
// planes and float decodes bit-identical to the existing prepare(). Every output is poisoned
// first, and one scratch serves all calls (zeroed once), so a counter that is not reset
// between calls shows up as a wrong tensor scale.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "cuda_test_util.cuh"
#include "sharq/cpu/ops.h"
#include "sharq/cuda/engine_ops.h"
#include "sharq/cuda/kernels.h"
#include "sharq/decompose.h"
#include "sharq/error.h"
#include "sharq/formats.h"
#include "sharq/merged_operand.h"
#include "sharq/synthetic.h"

namespace sharq::cuda {
namespace {

template <typename T>
using Buf = test_util::DeviceBuf<T>;

// Every output prepare can write, for one (rows, k).
struct Outputs {
  Outputs(int64_t rows, int64_t k)
      : sp_codes(rows * k / 2),
        sp_scales(rows * k / 32),
        rs_codes(rows * k / 2),
        rs_scales(rows * k / 16),
        ts(2),
        f16(2 * rows * k),
        dec(rows * k),
        lo(rows * k / 32) {}
  void poison(int byte) {
    sp_codes.poison(byte);
    sp_scales.poison(byte);
    rs_codes.poison(byte);
    rs_scales.poison(byte);
    ts.poison(byte);
    f16.poison(byte);
    dec.poison(byte);
    lo.poison(byte);
  }
  Nvfp4View sparse() { return {sp_codes.p, sp_scales.p, ts.p}; }
  Nvfp4View residual() { return {rs_codes.p, rs_scales.p, ts.p + 1}; }
  Buf<uint8_t> sp_codes, sp_scales, rs_codes, rs_scales;
  Buf<float> ts;
  Buf<uint16_t> f16;
  Buf<float> dec;
  Buf<uint8_t> lo;  // the SharQ planes' lo flags
};

std::vector<uint32_t> bits(const std::vector<float>& v) {
  std::vector<uint32_t> b(v.size());
  std::memcpy(b.data(), v.data(), v.size() * 4);
  return b;
}

const std::pair<PrepareMode, Mode> kModes[] = {{PrepareMode::kNvfp4, Mode::kNvfp4},
                                               {PrepareMode::kSharqNvfp4, Mode::kSharqNvfp4},
                                               {PrepareMode::kSharqNvfp4_24, Mode::kSharqNvfp4_24}};

// Odd row counts; 2049 x 2048 is past the single launch's register-resident size (streaming).
// Decode-sized rows (<= 64 rows, k <= 8192) take prepare_rmsnorm's register-resident row kernel:
// one row (no atomics), several, and register depths 1, 4 and 8 (k 64..8192); up to 4 rows its
// single-kernel form under the PDL and auto schedules (1, 3 and 4 rows; 4 x 1088 a partial
// last slice).
const std::pair<int64_t, int64_t> kShapes[] = {{1, 64},      {3, 128},  {17, 1024}, {1, 4096},
                                               {4, 1088},    {5, 8192}, {1, 14336}, {100, 4096},
                                               {2049, 2048}, {2, 8192}};

// For the compute-sanitizer runs: SHARQ_TEST_SMALL=1 keeps shapes up to 2^17 elements plus the
// streaming shape in sharq-nvfp4-24; =2 only the shapes up to 2^17.
bool skip_shape(Mode mode, int64_t rows, int64_t k) {
  const char* e = std::getenv("SHARQ_TEST_SMALL");
  if (!e || (e[0] != '1' && e[0] != '2') || rows * k <= (1 << 17)) return false;
  return e[0] == '2' || !(rows == 2049 && mode == Mode::kSharqNvfp4_24);
}

const std::pair<PrepareSchedule, const char*> kSchedules[] = {
    {PrepareSchedule::kSingleLaunch, "single"},
    {PrepareSchedule::kTwoKernel, "two-kernel"},
    {PrepareSchedule::kTwoKernelPdl, "two-kernel-pdl"},
    {PrepareSchedule::kAuto, "auto"}};

// got (fused) vs CPU codes/scales/tensor scale and vs the existing prepare's planes/decodes.
void expect_same(Outputs& got, Outputs& base, const ActivationQuant& ref, Mode mode,
                 const std::string& what) {
  if (mode != Mode::kNvfp4) {
    EXPECT_EQ(got.sp_codes.download(), ref.sparse_q.codes) << what;
    EXPECT_EQ(got.sp_scales.download(), ref.sparse_q.scales) << what;
    EXPECT_EQ(got.ts.download()[0], ref.tensor_scale) << what;
  }
  EXPECT_EQ(got.rs_codes.download(), ref.dense_q.codes) << what;
  EXPECT_EQ(got.rs_scales.download(), ref.dense_q.scales) << what;
  EXPECT_EQ(got.ts.download()[1], ref.tensor_scale) << what;
  const size_t plane = got.dec.n;
  auto f = got.f16.download(), fb = base.f16.download();
  if (mode == Mode::kNvfp4) {  // one plane: the rest stays poisoned in both
    f.resize(plane);
    fb.resize(plane);
  }
  EXPECT_EQ(f, fb) << what << " gemm_f16";
  EXPECT_EQ(bits(got.dec.download()), bits(base.dec.download())) << what << " decoded";
  if (mode != Mode::kNvfp4) EXPECT_EQ(got.lo.download(), base.lo.download()) << what << " lo flags";
}

// The SharQ planes against the CPU (docs/merged_operand.md): plane 0 holds hi and plane 1 lo of
// merge_to_halves(backbone decode, residual decode) for every element (kMma order: element j of
// an 8-group at slot 2j, j < 4, or 2 (j - 4) + 1), and a block's flag is 1 exactly where one of
// its 32 lo is not zero. Returns how many flags are set.
int64_t expect_merged_planes(Outputs& got, const ActivationQuant& ref, int64_t rows, int64_t k,
                             const std::string& what) {
  const auto f = got.f16.download();
  const auto flags = got.lo.download();
  std::vector<float> sp(static_cast<size_t>(k)), rs(static_cast<size_t>(k));
  int64_t set = 0, bad = 0;
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_row_scaled(ref.sparse_q, r, sp.data());
    dequantize_row_scaled(ref.dense_q, r, rs.data());
    for (int64_t b = 0; b < k / 32; ++b) {
      bool any = false;
      for (int64_t e = 32 * b; e < 32 * b + 32; ++e) {
        const MergedHalves h = merge_to_halves(sp[e], rs[e]);
        const int64_t j = e % 8, slot = e - j + (j < 4 ? 2 * j : 2 * (j - 4) + 1);
        bad += f[r * k + slot] != h.hi || f[rows * k + r * k + slot] != h.lo;
        any |= h.lo != 0;
      }
      bad += flags[r * (k / 32) + b] != (any ? 1 : 0);
      set += any;
    }
  }
  EXPECT_EQ(bad, 0) << what << " merged planes or lo flags";
  return set;
}

std::string label(Mode mode, int64_t rows, int64_t k, const char* how) {
  return std::string(mode_name(mode)) + " " + std::to_string(rows) + "x" + std::to_string(k) + " " +
         how;
}

TEST(CudaPrepareFused, EveryScheduleBitExactVsCpuAndPrepare) {
  Buf<uint32_t> scratch(prepare_scratch_bytes(0) / 4);
  scratch.poison(0);  // once: the schedules leave it ready for the next call
  std::mt19937_64 seeds(std::random_device{}());
  int64_t flags_set = 0;
  for (auto [pm, mode] : kModes) {
    for (auto [rows, k] : kShapes) {
      if (skip_shape(mode, rows, k)) continue;
      auto x = synthetic_activation(rows, k, seeds(), 8, 300.0f);  // lo where outliers sit
      x[0] = 0.0f;
      const ActivationQuant ref = quantize_activation(mode, x.data(), rows, k, "x");
      Buf<float> dx(x.size());
      dx.upload(x);
      Outputs base(rows, k), got(rows, k);
      Buf<uint32_t> old_scratch(1);
      base.poison(0xCD);
      const bool sharq = mode != Mode::kNvfp4;
      prepare(pm, dx.p, rows, k, base.sparse(), base.residual(), base.dec.p, old_scratch.p, nullptr,
              base.f16.p, PlaneOrder::kMma, sharq ? base.lo.p : nullptr);
      check(cudaDeviceSynchronize(), "sync");
      if (sharq)
        flags_set += expect_merged_planes(base, ref, rows, k, label(mode, rows, k, "base"));
      for (auto [sched, name] : kSchedules) {
        got.poison(0xAB);
        prepare_fused(pm, dx.p, rows, k, got.sparse(), got.residual(), scratch.p, nullptr,
                      got.f16.p, got.dec.p, sched, nullptr, PlaneOrder::kMma,
                      sharq ? got.lo.p : nullptr);
        check(cudaDeviceSynchronize(), "sync");
        expect_same(got, base, ref, mode, label(mode, rows, k, name));
        if (!sharq) continue;
        // The merged prefill's kMmaRows planes: the same halves, each row's two side by side.
        got.poison(0xAB);
        prepare_fused(pm, dx.p, rows, k, got.sparse(), got.residual(), scratch.p, nullptr,
                      got.f16.p, got.dec.p, sched, nullptr, PlaneOrder::kMmaRows, got.lo.p);
        check(cudaDeviceSynchronize(), "sync");
        const auto side = got.f16.download(), apart = base.f16.download();
        int64_t moved = 0;
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t p = 0; p < 2; ++p)
            for (int64_t c = 0; c < k; ++c)
              moved += side[(r * 2 + p) * k + c] != apart[(p * rows + r) * k + c];
        EXPECT_EQ(moved, 0) << label(mode, rows, k, name) << " kMmaRows planes";
        EXPECT_EQ(got.lo.download(), base.lo.download()) << label(mode, rows, k, name);
      }
    }
  }
  EXPECT_GT(flags_set, 0) << "outliers of 300x leave some lo: the planes' check saw them";
  // Left as zeroed except the generation and the last published max.
  const auto s = scratch.download();
  EXPECT_EQ(s[0], 0u);
  EXPECT_EQ(s[2], 0u);
}

// SwiGLU fused in front: the same bits as the engine's swiglu kernel then prepare_fused.
TEST(CudaPrepareFusedSwiglu, SameBitsAsSwigluThenPrepare) {
  Buf<uint32_t> scratch(prepare_scratch_bytes(0) / 4);
  scratch.poison(0);
  std::mt19937_64 seeds(std::random_device{}());
  for (auto [pm, mode] : kModes) {
    for (auto [rows, k] : kShapes) {
      if (skip_shape(mode, rows, k)) continue;
      const auto g = synthetic_activation(rows, k, seeds()),
                 u = synthetic_activation(rows, k, seeds());
      Buf<float> dg(g.size()), du(u.size()), h(g.size());
      dg.upload(g);
      du.upload(u);
      Outputs base(rows, k), got(rows, k);
      base.poison(0xCD);
      got.poison(0xCD);
      swiglu(dg.p, du.p, rows * k, h.p, nullptr);
      const bool sharq = mode != Mode::kNvfp4;
      prepare_fused(pm, h.p, rows, k, base.sparse(), base.residual(), scratch.p, nullptr,
                    base.f16.p, base.dec.p, PrepareSchedule::kAuto, nullptr, PlaneOrder::kMma,
                    sharq ? base.lo.p : nullptr);
      prepare_swiglu(pm, dg.p, du.p, rows, k, got.sparse(), got.residual(), scratch.p, nullptr,
                     got.f16.p, got.dec.p, nullptr, PlaneOrder::kMma, sharq ? got.lo.p : nullptr);
      check(cudaDeviceSynchronize(), "sync");
      const std::string what = label(mode, rows, k, "swiglu");
      EXPECT_EQ(got.sp_codes.download(), base.sp_codes.download()) << what;
      EXPECT_EQ(got.sp_scales.download(), base.sp_scales.download()) << what;
      EXPECT_EQ(got.rs_codes.download(), base.rs_codes.download()) << what;
      EXPECT_EQ(got.rs_scales.download(), base.rs_scales.download()) << what;
      EXPECT_EQ(bits(got.ts.download()), bits(base.ts.download())) << what;
      EXPECT_EQ(got.f16.download(), base.f16.download()) << what;
      EXPECT_EQ(bits(got.dec.download()), bits(base.dec.download())) << what;
      if (sharq) EXPECT_EQ(got.lo.download(), base.lo.download()) << what << " lo flags";
    }
  }
}

TEST(CudaPrepareFused, AllZeroTensorGivesUnitScaleAndZeroCodes) {
  Buf<uint32_t> scratch(prepare_scratch_bytes(0) / 4);
  scratch.poison(0);
  const int64_t rows = 5, k = 256;
  Buf<float> dx(rows * k);
  dx.poison(0);
  Outputs got(rows, k);
  got.poison(0xAB);
  prepare_fused(PrepareMode::kSharqNvfp4_24, dx.p, rows, k, got.sparse(), got.residual(), scratch.p,
                nullptr, got.f16.p, got.dec.p, PrepareSchedule::kSingleLaunch);
  check(cudaDeviceSynchronize(), "sync");
  EXPECT_EQ(got.ts.download(), (std::vector<float>{1.0f, 1.0f}));
  for (uint8_t c : got.rs_codes.download()) ASSERT_EQ(c, 0);
  for (uint8_t c : got.sp_codes.download()) ASSERT_EQ(c, 0);
}

// Weights of an RMSNorm: around 1, a few large and a few negative.
std::vector<float> norm_weight(int64_t k, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(1.0f, 0.2f);
  std::vector<float> w(k);
  for (int64_t i = 0; i < k; ++i) w[i] = nd(rng) * (i % 211 == 5 ? 8.0f : 1.0f);
  return w;
}

TEST(CudaPrepareFusedRmsNorm, BitExactVsCpuRmsNormThenQuantize) {
  std::mt19937_64 seeds(std::random_device{}());
  for (bool sequential : {false, true}) {
    testing::force_sequential_rms(sequential);
    for (auto [pm, mode] : kModes) {
      for (auto [rows, k] : kShapes) {
        if (skip_shape(mode, rows, k)) continue;
        if (sequential && rows * k > (1 << 20)) continue;  // one thread per row: slow
        // The residual stream: outlier channels, an all-zero row, a tiny row.
        auto x = synthetic_activation(rows, k, seeds(), 8, 60.0f);
        if (rows >= 3) {
          std::fill(x.begin() + k, x.begin() + 2 * k, 0.0f);
          for (int64_t j = 0; j < k; ++j) x[2 * k + j] *= 1e-3f;
        }
        const auto w = norm_weight(k, seeds());
        const float eps = mode == Mode::kNvfp4 ? 1e-6f : 1e-5f;
        std::vector<float> h(x.size());
        cpu::rms_norm(x.data(), w.data(), rows, k, eps, h.data(), 1);
        const ActivationQuant ref = quantize_activation(mode, h.data(), rows, k, "h");
        Buf<float> dx(x.size()), dw(w.size()), dh(h.size()), normed(h.size());
        dx.upload(x);
        dw.upload(w);
        dh.upload(h);
        Buf<uint32_t> scratch(prepare_scratch_bytes(rows) / 4), old_scratch(1);
        scratch.poison(0);
        Outputs base(rows, k), got(rows, k);
        base.poison(0xCD);
        const bool sharq = mode != Mode::kNvfp4;
        prepare(pm, dh.p, rows, k, base.sparse(), base.residual(), base.dec.p, old_scratch.p,
                nullptr, base.f16.p, PlaneOrder::kMma, sharq ? base.lo.p : nullptr);
        for (auto [sched, name] : kSchedules) {  // each call runs on the scratch as left
          got.poison(0xAB);
          normed.poison(0xAB);
          prepare_rmsnorm(pm, dx.p, dw.p, eps, rows, k, got.sparse(), got.residual(), scratch.p,
                          nullptr, got.f16.p, normed.p, got.dec.p, sched, nullptr, PlaneOrder::kMma,
                          sharq ? got.lo.p : nullptr);
          check(cudaDeviceSynchronize(), "sync");
          const std::string what =
              label(mode, rows, k, sequential ? "rmsnorm sequential" : "rmsnorm") + " " + name;
          EXPECT_EQ(bits(normed.download()), bits(h)) << what;
          expect_same(got, base, ref, mode, what);
        }
      }
    }
  }
  testing::force_sequential_rms(false);
}

// Without normed_out and decoded: the planes alone, the path the engine takes.
TEST(CudaPrepareFusedRmsNorm, OptionalOutputsMayBeNull) {
  const int64_t rows = 17, k = 4096;
  auto x = synthetic_activation(rows, k, std::random_device{}());
  const auto w = norm_weight(k, 3);
  std::vector<float> h(x.size());
  cpu::rms_norm(x.data(), w.data(), rows, k, 1e-5f, h.data(), 1);
  const ActivationQuant ref = quantize_activation(Mode::kSharqNvfp4_24, h.data(), rows, k, "h");
  Buf<float> dx(x.size()), dw(w.size());
  dx.upload(x);
  dw.upload(w);
  Buf<uint32_t> scratch(prepare_scratch_bytes(rows) / 4);
  scratch.poison(0);
  Outputs got(rows, k);
  for (auto [sched, name] : kSchedules) {
    got.poison(0xAB);
    prepare_rmsnorm(PrepareMode::kSharqNvfp4_24, dx.p, dw.p, 1e-5f, rows, k, got.sparse(),
                    got.residual(), scratch.p, nullptr, got.f16.p, nullptr, nullptr, sched);
    check(cudaDeviceSynchronize(), "sync");
    EXPECT_EQ(got.sp_codes.download(), ref.sparse_q.codes) << name;
    EXPECT_EQ(got.rs_codes.download(), ref.dense_q.codes) << name;
    EXPECT_EQ(got.rs_scales.download(), ref.dense_q.scales) << name;
    EXPECT_EQ(got.ts.download()[1], ref.tensor_scale) << name;
    for (uint32_t b : bits(got.dec.download())) ASSERT_EQ(b, 0xABABABABu) << name;  // untouched
  }
}

// The kWgmma planes (kernels.h PlaneOrder) are the kMma planes permuted inside every 128-wide K
// window, derived here from the wgmma kernel's K-step order (gemm_decode_wgmma.cu): element K' of
// a window, K' = 32 t + 8 u + 2 q + e (t the 32-block, u the 8-group, q the pair, e its element),
// lies at slot 32 u + 16 (q / 2) + 8 (q % 2) + 2 t + e; rows padded to whole windows with zeros.
std::vector<uint16_t> permute_to_wgmma(const std::vector<uint16_t>& mma, int64_t planes,
                                       int64_t rows, int64_t k) {
  const int64_t ld = plane_row_halves(k, PlaneOrder::kWgmma);
  std::vector<uint16_t> out(static_cast<size_t>(planes * rows * ld), 0);
  for (int64_t r = 0; r < planes * rows; ++r) {
    for (int64_t kk = 0; kk < k; ++kk) {
      const int64_t c = kk % 128, t = c / 32, u = c % 32 / 8, q = c % 8 / 2, e = c % 2;
      const int64_t slot = 32 * u + 16 * (q / 2) + 8 * (q % 2) + 2 * t + e;
      out[static_cast<size_t>(r * ld + kk / 128 * 128 + slot)] =
          mma[static_cast<size_t>(r * k + kk)];
    }
  }
  return out;
}

// Every prepare writes the kWgmma planes as its kMma planes permuted, with the same codes,
// scales and tensor scales: prepare, prepare_fused in each schedule, prepare_pass after it,
// prepare_swiglu and prepare_rmsnorm; decode-sized shapes, K with half windows (64, 1088, 192).
TEST(CudaPrepareWgmmaOrder, PlanesAreTheMmaPlanesPermuted) {
  const std::pair<int64_t, int64_t> shapes[] = {{1, 64},    {3, 128},   {24, 1088}, {9, 192},
                                                {17, 1024}, {32, 4096}, {5, 14336}};
  std::mt19937_64 seeds(std::random_device{}());
  using Producer = std::function<void(uint16_t*, PlaneOrder, Outputs&)>;
  for (auto [pm_, mode] : kModes) {
    const PrepareMode pm = pm_;  // plain copies for the lambdas below
    const int64_t paths = mode == Mode::kNvfp4 ? 1 : 2;
    for (auto [rows_, k_] : shapes) {
      const int64_t rows = rows_, k = k_;
      const auto x = synthetic_activation(rows, k, seeds()),
                 x2 = synthetic_activation(rows, k, seeds());
      const auto w = norm_weight(k, seeds());
      Buf<float> dx(x.size()), dx2(x2.size()), dw(w.size());
      dx.upload(x);
      dx2.upload(x2);
      dw.upload(w);
      Buf<uint32_t> scratch(prepare_scratch_bytes(rows) / 4), old_scratch(1);
      scratch.poison(0);
      std::vector<std::pair<std::string, Producer>> producers = {
          {"prepare",
           [&](uint16_t* f16, PlaneOrder o, Outputs& out) {
             prepare(pm, dx.p, rows, k, out.sparse(), out.residual(), out.dec.p, old_scratch.p,
                     nullptr, f16, o);
           }},
          {"prepare_pass",
           [&](uint16_t* f16, PlaneOrder o, Outputs& out) {  // on the max prepare_fused left
             prepare_fused(pm, dx.p, rows, k, out.sparse(), out.residual(), scratch.p, nullptr);
             prepare_pass(pm, dx.p, rows, k, out.sparse(), out.residual(), scratch.p, nullptr, f16,
                          nullptr, o);
           }},
          {"prepare_swiglu",
           [&](uint16_t* f16, PlaneOrder o, Outputs& out) {
             prepare_swiglu(pm, dx.p, dx2.p, rows, k, out.sparse(), out.residual(), scratch.p,
                            nullptr, f16, out.dec.p, nullptr, o);
           }},
          {"prepare_rmsnorm", [&](uint16_t* f16, PlaneOrder o, Outputs& out) {
             prepare_rmsnorm(pm, dx.p, dw.p, 1e-5f, rows, k, out.sparse(), out.residual(),
                             scratch.p, nullptr, f16, nullptr, out.dec.p, PrepareSchedule::kAuto,
                             nullptr, o);
           }}};
      for (const auto& [sched_, name] : kSchedules) {
        const PrepareSchedule sched = sched_;
        producers.emplace_back(std::string("prepare_fused ") + name,
                               [&, sched](uint16_t* f16, PlaneOrder o, Outputs& out) {
                                 prepare_fused(pm, dx.p, rows, k, out.sparse(), out.residual(),
                                               scratch.p, nullptr, f16, out.dec.p, sched, nullptr,
                                               o);
                               });
      }
      for (const auto& [name, produce] : producers) {
        const std::string what = label(mode, rows, k, name.c_str());
        Outputs base(rows, k), got(rows, k);
        Buf<uint16_t> wg(static_cast<size_t>(2 * rows * plane_row_halves(k, PlaneOrder::kWgmma)));
        base.poison(0xAB);  // the same bytes where neither writes (nvfp4's backbone)
        got.poison(0xAB);
        wg.poison(0xAB);
        produce(base.f16.p, PlaneOrder::kMma, base);
        produce(wg.p, PlaneOrder::kWgmma, got);
        check(cudaDeviceSynchronize(), "sync");
        EXPECT_EQ(got.sp_codes.download(), base.sp_codes.download()) << what;
        EXPECT_EQ(got.rs_codes.download(), base.rs_codes.download()) << what;
        EXPECT_EQ(got.rs_scales.download(), base.rs_scales.download()) << what;
        EXPECT_EQ(bits(got.ts.download()), bits(base.ts.download())) << what;
        auto mma = base.f16.download();
        mma.resize(static_cast<size_t>(paths * rows * k));
        auto wgd = wg.download();
        const auto want = permute_to_wgmma(mma, paths, rows, k);
        wgd.resize(want.size());
        EXPECT_EQ(wgd, want) << what << " kWgmma planes";
      }
    }
  }
}

TEST(CudaPrepareFusedErrors, BadShapesAreErrors) {
  Nvfp4View v{nullptr, nullptr, nullptr};
  EXPECT_THROW(prepare_fused(PrepareMode::kNvfp4, nullptr, 1, 100, v, v, nullptr, nullptr), Error);
  EXPECT_THROW(
      prepare_rmsnorm(PrepareMode::kNvfp4, nullptr, nullptr, 1e-5f, 2, 96, v, v, nullptr, nullptr),
      Error);
  // lo flags describe the merged planes: none to describe without gemm_f16.
  uint8_t flag = 0;
  EXPECT_THROW(
      prepare_fused(PrepareMode::kSharqNvfp4_24, nullptr, 1, 64, v, v, nullptr, nullptr, nullptr,
                    nullptr, PrepareSchedule::kAuto, nullptr, PlaneOrder::kMma, &flag),
      Error);
}

}  // namespace
}  // namespace sharq::cuda
