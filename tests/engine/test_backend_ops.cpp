// Every op of every backend against plain double-precision loops (the test-backend-ops idea):
// embedding, RMSNorm, RoPE (and llama3 frequencies), KV store + causal GQA attention, SwiGLU,
// add, and the quantized linear of every mode. Backends: CPU (a CUDA backend joins the list).
// Not the decoder (test_decoder.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "sharq/cpu/ops.h"
#include "sharq/decompose.h"
#include "sharq/engine/backend.h"
#include "sharq/error.h"
#include "sharq/weights.h"

namespace sharq {
namespace {

std::vector<float> randn(int64_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = nd(rng);
  return v;
}

// Each backend under test, by name.
std::unique_ptr<engine::Backend> make_backend(const std::string& name) {
  if (name == "cpu") return engine::make_cpu_backend(2);
  if (name == "cpu-1thread") return engine::make_cpu_backend(1);
  throw Error("unknown backend " + name);
}

class BackendOps : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override { be = make_backend(GetParam()); }
  std::unique_ptr<engine::Backend> be;
};

// y (t, n) = x (t, k) . w (n, k)^T (+ bias) in double: the linears' reference.
std::vector<double> linear_ref(const std::vector<float>& x, const std::vector<float>& w,
                               const float* bias, int64_t t, int64_t n, int64_t k) {
  std::vector<double> ref(t * n);
  for (int64_t i = 0; i < t; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = bias ? bias[j] : 0.0;
      for (int64_t c = 0; c < k; ++c) acc += double(x[i * k + c]) * w[j * k + c];
      ref[i * n + j] = acc;
    }
  }
  return ref;
}

double rel_err(const std::vector<float>& a, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += (a[i] - ref[i]) * (a[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

TEST_P(BackendOps, EmbeddingCopiesRowsAndRejectsBadIds) {
  const auto table = randn(10 * 8, 1);
  const int32_t ids[3] = {3, 0, 9};
  std::vector<float> out(3 * 8);
  be->embedding(table.data(), 10, 8, ids, 3, out.data());
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 8; ++j) EXPECT_EQ(out[i * 8 + j], table[ids[i] * 8 + j]);
  }
  const int32_t bad[1] = {10};
  EXPECT_THROW(be->embedding(table.data(), 10, 8, bad, 1, out.data()), Error);
}

TEST_P(BackendOps, RmsNormMatchesDouble) {
  const int64_t rows = 7, d = 96;
  const auto x = randn(rows * d, 2, 3.0f), w = randn(d, 3);
  std::vector<float> out(x.size());
  be->rms_norm(x.data(), w.data(), rows, d, 1e-5f, out.data());
  std::vector<double> ref(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t j = 0; j < d; ++j) ss += double(x[r * d + j]) * x[r * d + j];
    const double inv = 1.0 / std::sqrt(ss / d + 1e-5);
    for (int64_t j = 0; j < d; ++j) ref[r * d + j] = x[r * d + j] * inv * w[j];
  }
  EXPECT_LT(rel_err(out, ref), 1e-6);
  be->rms_norm(x.data(), w.data(), rows, d, 1e-5f, const_cast<float*>(x.data()));  // alias
  EXPECT_EQ(x, out);
}

TEST(CpuOps, RopeInvFreqDefaultAndLlama3) {
  const auto f = cpu::rope_inv_freq(128, 500000.0f, {});
  for (int j = 0; j < 64; ++j) {
    EXPECT_NEAR(f[j], std::pow(500000.0, -2.0 * j / 128),
                1e-6 * std::pow(500000.0, -2.0 * j / 128));
  }
  const model::RopeScaling s{"llama3", 8.0f, 1.0f, 4.0f, 8192};
  const auto g = cpu::rope_inv_freq(128, 500000.0f, s);
  int high = 0, low = 0, mid = 0;
  for (int j = 0; j < 64; ++j) {
    const double wavelen = 2 * std::numbers::pi / f[j];
    double expect = f[j];
    if (wavelen < 8192.0 / 4.0) {
      ++high;
    } else if (wavelen > 8192.0) {
      expect = f[j] / 8.0;
      ++low;
    } else {
      const double sm = (8192.0 / wavelen - 1.0) / (4.0 - 1.0);
      expect = (1 - sm) * f[j] / 8.0 + sm * f[j];
      ++mid;
    }
    EXPECT_NEAR(g[j], expect, 1e-6 * expect) << j;
  }
  EXPECT_GT(high, 0);
  EXPECT_GT(low, 0);
  EXPECT_GT(mid, 0);
  EXPECT_THROW(cpu::rope_inv_freq(128, 1e4f, {"yarn", 2.0f, 1.0f, 4.0f, 8192}), Error);
  EXPECT_THROW(cpu::rope_inv_freq(7, 1e4f, {}), Error);
}

TEST_P(BackendOps, RopeMatchesRotateHalfInDouble) {
  const int64_t t = 5, heads = 3, hd = 16, pos0 = 11;
  auto x = randn(t * heads * hd, 4);
  const auto x0 = x;
  const auto f = cpu::rope_inv_freq(hd, 10000.0f, {});
  be->rope(x.data(), 1, t, pos0, heads, hd, f.data());
  std::vector<double> ref(x.size());
  for (int64_t i = 0; i < t; ++i) {
    for (int64_t h = 0; h < heads; ++h) {
      const float* a = x0.data() + (i * heads + h) * hd;
      double* o = ref.data() + (i * heads + h) * hd;
      for (int64_t j = 0; j < hd; ++j) {
        // q * cos + rotate_half(q) * sin, rotate_half(q) = (-q[half:], q[:half])
        const int64_t jj = j % (hd / 2);
        const double ang = double(pos0 + i) * f[jj];
        const double rot = j < hd / 2 ? -a[j + hd / 2] : a[j - hd / 2];
        o[j] = a[j] * std::cos(ang) + rot * std::sin(ang);
      }
    }
  }
  EXPECT_LT(rel_err(x, ref), 1e-6);
}

// Naive causal GQA attention in double over the full K/V history (T_all, kv_heads * hd).
std::vector<double> attention_ref(const std::vector<float>& q, const std::vector<float>& k,
                                  const std::vector<float>& v, int64_t t, int64_t pos0,
                                  int64_t heads, int64_t kvh, int64_t hd) {
  std::vector<double> out(static_cast<size_t>(t * heads * hd), 0.0);
  for (int64_t i = 0; i < t; ++i) {
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t g = h / (heads / kvh);
      const int64_t n = pos0 + i + 1;
      std::vector<double> s(static_cast<size_t>(n));
      double mx = -1e300;
      for (int64_t j = 0; j < n; ++j) {
        double dot = 0;
        for (int64_t c = 0; c < hd; ++c) {
          dot += double(q[(i * heads + h) * hd + c]) * k[(j * kvh + g) * hd + c];
        }
        s[j] = dot / std::sqrt(double(hd));
        mx = std::max(mx, s[j]);
      }
      double sum = 0;
      for (auto& e : s) sum += (e = std::exp(e - mx));
      for (int64_t j = 0; j < n; ++j) {
        for (int64_t c = 0; c < hd; ++c) {
          out[(i * heads + h) * hd + c] += s[j] / sum * v[(j * kvh + g) * hd + c];
        }
      }
    }
  }
  return out;
}

void check_attention(engine::Backend& be, int64_t t, int64_t pos0, int64_t heads, int64_t kvh,
                     int64_t hd, int64_t cap) {
  const int64_t all = pos0 + t;
  const auto q = randn(t * heads * hd, 5, 2.0f);
  const auto k = randn(all * kvh * hd, 6, 2.0f), v = randn(all * kvh * hd, 7);
  std::vector<float> kc(kvh * cap * hd, 1e30f), vc(kvh * cap * hd, 1e30f);  // unwritten = poison
  // History first (as an earlier prefill would), then the new rows.
  if (pos0 > 0) be.kv_store(k.data(), v.data(), 1, pos0, 0, kvh, hd, cap, kc.data(), vc.data());
  be.kv_store(k.data() + pos0 * kvh * hd, v.data() + pos0 * kvh * hd, 1, t, pos0, kvh, hd, cap,
              kc.data(), vc.data());
  std::vector<float> out(q.size());
  be.attention(q.data(), 1, t, pos0, heads, kvh, hd, cap, kc.data(), vc.data(), out.data());
  EXPECT_LT(rel_err(out, attention_ref(q, k, v, t, pos0, heads, kvh, hd)), 1e-5)
      << "t=" << t << " pos0=" << pos0;
}

TEST_P(BackendOps, AttentionMatchesDoublePrefillAndDecode) {
  check_attention(*be, 5, 0, 4, 2, 8, 16);      // prefill, GQA group 2
  check_attention(*be, 5, 3, 4, 2, 8, 16);      // prefill after history
  check_attention(*be, 1, 9, 6, 2, 16, 12);     // decode, group 3
  check_attention(*be, 300, 20, 2, 1, 8, 400);  // more queries than one block (256)
}

TEST_P(BackendOps, KvStoreRejectsOverflow) {
  std::vector<float> k(2 * 8), kc(8 * 4);
  EXPECT_THROW(be->kv_store(k.data(), k.data(), 1, 2, 3, 1, 8, 4, kc.data(), kc.data()), Error);
}

TEST_P(BackendOps, SwigluAndAdd) {
  const auto g = randn(1000, 8, 3.0f), u = randn(1000, 9);
  std::vector<float> out(1000), sum = g;
  be->swiglu(g.data(), u.data(), 1000, out.data());
  be->add(sum.data(), u.data(), 1000);
  std::vector<double> ref(1000);
  for (int i = 0; i < 1000; ++i) {
    ref[i] = g[i] / (1.0 + std::exp(-double(g[i]))) * u[i];
    EXPECT_EQ(sum[i], g[i] + u[i]);
  }
  EXPECT_LT(rel_err(out, ref), 1e-6);
}

// The backend's linear = fake-quantized activation times the dequantized weight, per mode.
TEST_P(BackendOps, LinearEveryModeMatchesDoubleOnQuantizedOperands) {
  const int64_t t = 9, k = 128, n = 48;
  auto x = randn(t * k, 10);
  x[5] = 40.0f;  // an outlier, so the tensor scale matters
  const auto w = randn(n * k, 11, 0.1f), bias = randn(n, 12);
  for (Mode m : all_modes()) {
    const auto lw = be->prepare_linear(m, w.data(), bias.data(), n, k, "test.w");
    std::vector<float> y(t * n), scratch(t * k);
    be->linear(*lw, x.data(), t, y.data(), scratch.data());
    std::vector<float> xq(t * k), wq(n * k);
    fake_quantize_activation(m, x.data(), t, k, xq.data(), "test.x");
    dequantize_weight(quantize_weight(m, w.data(), n, k, "test.w"), wq.data());
    EXPECT_LT(rel_err(y, linear_ref(xq, wq, bias.data(), t, n, k)), 1e-5) << mode_name(m);
  }
}

// The composite ops the decoder calls (a backend may fuse them) give what their parts give:
// matmul_group = matmul per linear, matmul_add = matmul then add, linear_add = linear then add,
// swiglu_quantize = swiglu then quantize_activation (with group_linears called first).
TEST_P(BackendOps, CompositeOpsEqualTheirParts) {
  const int64_t t = 5, k = 128, n0 = 48, n1 = 16;
  const auto x = randn(t * k, 20), w0 = randn(n0 * k, 21, 0.1f), w1 = randn(n1 * k, 22, 0.1f);
  const auto bias = randn(n1, 23), y0 = randn(t * n0, 24), up = randn(t * k, 25);
  for (Mode m : {Mode::kBf16, Mode::kNvfp4, Mode::kSharqNvfp4_24}) {
    auto l0 = be->prepare_linear(m, w0.data(), nullptr, n0, k, "test.w0");
    auto l1 = be->prepare_linear(m, w1.data(), bias.data(), n1, k, "test.w1");
    be->group_linears(std::array<engine::LinearWeights*, 2>{l0.get(), l1.get()});
    std::vector<float> xq(static_cast<size_t>(be->quantized_activation_floats(t, k)));
    be->quantize_activation(m, x.data(), t, k, xq.data(), "test.x");
    std::vector<float> a0(t * n0), a1(t * n1), b0(t * n0), b1(t * n1);
    be->matmul(*l0, xq.data(), t, a0.data());
    be->matmul(*l1, xq.data(), t, a1.data());
    be->matmul_group(std::array<const engine::LinearWeights*, 2>{l0.get(), l1.get()}, xq.data(), t,
                     std::array<float*, 2>{b0.data(), b1.data()});
    EXPECT_EQ(a0, b0) << mode_name(m);
    EXPECT_EQ(a1, b1) << mode_name(m);
    std::vector<float> acc = y0, tmp(t * n0), sep = y0, scratch(t * k);
    be->matmul_add(*l0, xq.data(), t, acc.data(), tmp.data());
    for (size_t i = 0; i < sep.size(); ++i) sep[i] += a0[i];
    EXPECT_EQ(acc, sep) << mode_name(m);
    acc = y0;
    be->linear_add(*l0, x.data(), t, acc.data(), tmp.data(), scratch.data());
    EXPECT_EQ(acc, sep) << mode_name(m);
    std::vector<float> h(t * k), h2(t * k), q1(xq.size()), q2(xq.size());
    be->swiglu_quantize(m, x.data(), up.data(), t, k, h.data(), q1.data(), "test.down");
    be->swiglu(x.data(), up.data(), t * k, h2.data());
    be->quantize_activation(m, h2.data(), t, k, q2.data(), "test.down");
    EXPECT_EQ(q1, q2) << mode_name(m);
  }
}

TEST_P(BackendOps, LinearRejectsKNotMultipleOf64) {
  const auto w = randn(4 * 48, 1);
  EXPECT_THROW(be->prepare_linear(Mode::kNvfp4, w.data(), nullptr, 4, 48, "bad.w"), Error);
}

// Large enough to take the threaded paths (column split, parallel heads) of the CPU backend.
TEST_P(BackendOps, LargeLinearAndLmHeadMatchDouble) {
  const int64_t t = 64, k = 256, n = 640;
  const auto x = randn(t * k, 13), w = randn(n * k, 14, 0.05f), bias = randn(n, 15);
  std::vector<float> y(t * n);
  be->matmul(*be->prepare_linear_f32(w.data(), bias.data(), n, k, "big.w"), x.data(), t, y.data());
  EXPECT_LT(rel_err(y, linear_ref(x, w, bias.data(), t, n, k)), 1e-5);
  be->matmul(*be->prepare_lm_head(w.data(), n, k), x.data(), t, y.data());  // no bias
  EXPECT_LT(rel_err(y, linear_ref(x, w, nullptr, t, n, k)), 1e-5);
  check_attention(*be, 200, 100, 8, 2, 64, 300);
}

// The CPU backend splits products into fixed column blocks, so --threads never changes a result.
TEST(CpuBackend, ResultsDoNotDependOnThreadCount) {
  auto one = engine::make_cpu_backend(1), two = engine::make_cpu_backend(2);
  const int64_t t = 96, k = 320, n = 1000;
  const auto x = randn(t * k, 16), w = randn(n * k, 17, 0.05f);
  std::vector<float> y1(t * n), y2(t * n);
  const auto w1 = one->prepare_linear_f32(w.data(), nullptr, n, k, "w");
  const auto w2 = two->prepare_linear_f32(w.data(), nullptr, n, k, "w");
  one->matmul(*w1, x.data(), t, y1.data());
  two->matmul(*w2, x.data(), t, y2.data());
  EXPECT_EQ(y1, y2);
  one->matmul(*w1, x.data(), 1, y1.data());  // the decode GEMV path
  two->matmul(*w2, x.data(), 1, y2.data());
  EXPECT_TRUE(std::equal(y1.begin(), y1.begin() + n, y2.begin()));
}

// SHARQ_CPU_KV_ROUND (an accuracy study): the rows a kv_store writes hold their values rounded to
// bf16 or FP16 (hand-derived: 1/3 is 0x3EAB in bf16, 0x3555 in FP16; 70000 overflows FP16); the
// cache's other rows are untouched; any other value is refused.
TEST(CpuBackend, KvRoundStudyRoundsTheStoredRows) {
  const int64_t kvh = 1, hd = 4, cap = 3;
  const std::vector<float> k = {1.0f / 3.0f, 70000.0f, -2.5f, 1e-30f};
  const std::vector<float> v = {0.1f, -0.1f, 3.0f, 65504.0f};
  struct Want {
    const char* round;
    std::vector<float> k, v;
  };
  for (const Want& w : std::vector<Want>{
           {"bf16",
            {0.333984375f, 70144.0f, -2.5f, 9.98402083e-31f},
            {0.10009765625f, -0.10009765625f, 3.0f, 65536.0f}},
           {"f16",
            {0.333251953125f, INFINITY, -2.5f, 0.0f},
            {0.0999755859375f, -0.0999755859375f, 3.0f, 65504.0f}},
       }) {
    ASSERT_EQ(setenv("SHARQ_CPU_KV_ROUND", w.round, 1), 0);
    auto be = engine::make_cpu_backend(1);
    std::vector<float> kc(cap * hd, 7.0f), vc(cap * hd, 7.0f);
    be->kv_store(k.data(), v.data(), 1, 1, 1, kvh, hd, cap, kc.data(), vc.data());
    for (int64_t e = 0; e < hd; ++e) {
      EXPECT_EQ(kc[hd + e], w.k[e]) << w.round << " k[" << e << "]";
      EXPECT_EQ(vc[hd + e], w.v[e]) << w.round << " v[" << e << "]";
      EXPECT_EQ(kc[e], 7.0f);
      EXPECT_EQ(vc[2 * hd + e], 7.0f);
    }
  }
  ASSERT_EQ(setenv("SHARQ_CPU_KV_ROUND", "fp8", 1), 0);
  EXPECT_THROW(engine::make_cpu_backend(1), Error);
  ASSERT_EQ(unsetenv("SHARQ_CPU_KV_ROUND"), 0);
}

// The FP16 KV cache (set_kv_cache): the CPU keeps float32 storage (kv_cache_floats unchanged)
// holding each stored value rounded to FP16, nearest even (hand-derived: 1/3 -> 0x3555 =
// 0.333251953125, 0.1 -> 0x2E66 = 0.0999755859375; 70000 overflows to infinity; 1e-30 underflows
// to 0; 65504 is FP16's largest). The rows before and after are untouched.
TEST(CpuBackend, F16KvCacheRoundsTheStoredRows) {
  auto be = engine::make_cpu_backend(1);
  EXPECT_EQ(be->kv_cache(), KvCache::kF32);
  be->set_kv_cache(KvCache::kF16);
  EXPECT_EQ(be->kv_cache(), KvCache::kF16);
  EXPECT_EQ(be->kv_cache_floats(1001), 1001);
  const int64_t kvh = 1, hd = 4, cap = 3;
  const std::vector<float> k = {1.0f / 3.0f, 70000.0f, -2.5f, 1e-30f};
  const std::vector<float> v = {0.1f, -0.1f, 3.0f, 65504.0f};
  const std::vector<float> wk = {0.333251953125f, INFINITY, -2.5f, 0.0f};
  const std::vector<float> wv = {0.0999755859375f, -0.0999755859375f, 3.0f, 65504.0f};
  std::vector<float> kc(cap * hd, 7.0f), vc(cap * hd, 7.0f);
  be->kv_store(k.data(), v.data(), 1, 1, 1, kvh, hd, cap, kc.data(), vc.data());
  for (int64_t e = 0; e < hd; ++e) {
    EXPECT_EQ(kc[hd + e], wk[e]) << "k[" << e << "]";
    EXPECT_EQ(vc[hd + e], wv[e]) << "v[" << e << "]";
    EXPECT_EQ(kc[e], 7.0f);
    EXPECT_EQ(vc[2 * hd + e], 7.0f);
  }
}

TEST(KvCacheFormat, ParseAndNames) {
  EXPECT_EQ(parse_kv_cache("f32"), KvCache::kF32);
  EXPECT_EQ(parse_kv_cache("f16"), KvCache::kF16);
  EXPECT_EQ(kv_cache_name(KvCache::kF16), "f16");
  EXPECT_EQ(kv_cache_name(KvCache::kF32), "f32");
  for (const char* bad : {"bf16", "", "F16", "f16 "}) {
    try {
      parse_kv_cache(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("'" + std::string(bad) + "'"), std::string::npos)
          << e.what();
    }
  }
}

// Backend memory on the CPU: host allocations, copies in and out, resident tensors read in
// place, and Buffer's grow/move/release.
TEST(CpuBackend, MemoryAndBuffers) {
  auto be = engine::make_cpu_backend(1);
  const std::vector<float> host = {1.0f, -2.0f, 3.5f};
  EXPECT_EQ(be->resident(host.data(), 3), host.data());
  engine::Buffer a(*be, 3);
  ASSERT_NE(a.data(), nullptr);
  EXPECT_EQ(a.size(), 3);
  be->to_backend(host.data(), a.data(), 3);
  std::vector<float> back(3);
  be->to_host(a.data(), back.data(), 3);
  EXPECT_EQ(back, host);
  float* p = a.data();
  EXPECT_FALSE(a.grow(*be, 2));  // already large enough: same allocation
  EXPECT_EQ(a.data(), p);
  engine::Buffer b = std::move(a);
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(a.size(), 0);
  EXPECT_TRUE(b.grow(*be, 100));
  EXPECT_EQ(b.size(), 100);
  b.reset();
  EXPECT_EQ(b.data(), nullptr);
  EXPECT_THROW(be->alloc(-1), Error);
  const int32_t ids[1] = {0};  // the CPU records nothing: every step runs
  EXPECT_EQ(be->begin_step(1, Mode::kBf16, true, ids, 1, 0), engine::Backend::Step::kRun);
}

INSTANTIATE_TEST_SUITE_P(Backends, BackendOps, ::testing::Values("cpu", "cpu-1thread"));

}  // namespace
}  // namespace sharq
