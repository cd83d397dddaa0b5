// GPU tests (CTest label gpu) of the CUDA backend's decoder ops (cuda/engine_ops.h) against the
// CPU ops (cpu/ops.h) on fresh random inputs: exact where the arithmetic is the same, relative
// 1e-5 for the reductions, 1e-4 absolute for attention. Outputs are poisoned with NaN first.
// CudaOpsTiming prints attention times for Llama-3.1-8B shapes (no assertion on speed).
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <thread>
#include <tuple>
#include <vector>

#include "cuda_test_util.cuh"
#include "sharq/cpu/ops.h"
#include "sharq/cuda/engine_ops.h"
#include "sharq/cuda/kernels.h"
#include "sharq/decompose.h"
#include "sharq/error.h"

namespace sharq::cuda {
namespace {

// The shared device buffer; download() waits for the device first, poison() writes 0xFF bytes.
template <typename T>
struct Buf : test_util::DeviceBuf<T> {
  using test_util::DeviceBuf<T>::DeviceBuf;
  std::vector<T> download() const {
    check(cudaDeviceSynchronize(), "sync");
    return test_util::DeviceBuf<T>::download();
  }
  void poison() { test_util::DeviceBuf<T>::poison(0xFF); }  // NaN for floats
};

std::mt19937_64& rng() {
  static std::mt19937_64 g{std::random_device{}()};
  return g;
}

std::vector<float> randn(size_t n, float sigma = 1.0f) {
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng());
  return v;
}

// This file builds as C++17 (CMake's CUDA standard), so no std::bit_cast and no codecs.h.
uint32_t bits_of(float x) {
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

// codecs.h bf16_round, transliterated for the non-finite patterns the library's bf16 activation
// rule (which rejects them) cannot be asked about; finite values go through the library itself.
uint16_t bf16_round_bits(float x) {
  uint32_t bits = bits_of(x);
  bits += 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

int cpu_threads() {
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

// Counts elements with |a - b| > atol + rtol * |b| (or a non-finite a); records the worst.
struct Diff {
  int64_t bad = 0;
  double max_abs = 0.0, max_rel = 0.0;
};
Diff compare(const std::vector<float>& got, const std::vector<float>& want, double rtol,
             double atol) {
  Diff d;
  for (size_t i = 0; i < want.size(); ++i) {
    const double a = got[i], b = want[i];
    const double e = std::fabs(a - b);
    if (!std::isfinite(a) || e > atol + rtol * std::fabs(b)) ++d.bad;
    d.max_abs = std::max(d.max_abs, e);
    if (b != 0.0) d.max_rel = std::max(d.max_rel, e / std::fabs(b));
  }
  return d;
}

int64_t count_bit_diffs(const std::vector<float>& a, const std::vector<float>& b) {
  int64_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    n += bits_of(a[i]) != bits_of(b[i]);
  }
  return n;
}

// An FP16 cache's oracle: CUDA's host conversion (round to nearest even), bits and values.
std::vector<uint16_t> to_half_bits(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = __half_as_ushort(__float2half_rn(v[i]));
  return out;
}
std::vector<float> round_to_half(const std::vector<float>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = __half2float(__float2half_rn(v[i]));
  return out;
}
int64_t count_diffs(const std::vector<uint16_t>& a, const std::vector<uint16_t>& b) {
  int64_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += a[i] != b[i];
  return n;
}

TEST(CudaOpsElementwise, Embedding) {
  for (int64_t d : {96, 7}) {
    const int64_t vocab = 1000, t = 53;
    const auto table = randn(static_cast<size_t>(vocab * d));
    std::vector<int32_t> ids(t);
    std::uniform_int_distribution<int32_t> u(0, static_cast<int32_t>(vocab - 1));
    for (auto& id : ids) id = u(rng());
    ids[0] = 0, ids[1] = static_cast<int32_t>(vocab - 1);
    std::vector<float> want(static_cast<size_t>(t * d));
    cpu::embedding(table.data(), vocab, d, ids.data(), t, want.data());
    Buf<float> dt(table), out(want.size());
    Buf<int32_t> di(ids);
    out.poison();
    embedding(dt.p, vocab, d, di.p, t, out.p, nullptr);
    EXPECT_EQ(count_bit_diffs(out.download(), want), 0) << "d " << d;
  }
}

TEST(CudaOpsElementwise, RmsNorm) {
  for (int64_t d : {64, 1000, 4096}) {
    const int64_t rows = 37;
    auto x = randn(static_cast<size_t>(rows * d), 3.0f);
    for (int64_t j = 0; j < d; j += 97) x[j] = 200.0f;  // outliers in row 0
    const auto w = randn(static_cast<size_t>(d));
    const float eps = 1e-5f;
    std::vector<float> want(x.size());
    cpu::rms_norm(x.data(), w.data(), rows, d, eps, want.data(), 1);
    Buf<float> dx(x), dw(w), out(x.size());
    out.poison();
    rms_norm(dx.p, dw.p, rows, d, eps, out.p, nullptr);
    const Diff e = compare(out.download(), want, 1e-5, 0.0);
    EXPECT_EQ(e.bad, 0) << "d " << d << " max rel " << e.max_rel;
    rms_norm(dx.p, dw.p, rows, d, eps, dx.p, nullptr);  // in place
    const Diff e2 = compare(dx.download(), want, 1e-5, 0.0);
    EXPECT_EQ(e2.bad, 0) << "in place, d " << d << " max rel " << e2.max_rel;
  }
}

TEST(CudaOpsElementwise, Rope) {
  model::RopeScaling llama3{"llama3", 8.0f, 1.0f, 4.0f, 8192};
  for (int64_t hd : {64, 128}) {
    for (const auto& sc : {model::RopeScaling{}, llama3}) {
      for (int64_t pos0 : {0, 1000, 8000}) {
        const int64_t batch = 3, t = 5, heads = 4;
        const auto inv = cpu::rope_inv_freq(hd, 500000.0f, sc);
        const auto x = randn(static_cast<size_t>(batch * t * heads * hd));
        std::vector<float> want = x;
        for (int64_t b = 0; b < batch; ++b) {
          cpu::rope(want.data() + b * t * heads * hd, t, pos0, heads, hd, inv.data(), 1);
        }
        Buf<float> dx(x), dinv(inv);
        rope(dx.p, batch, t, pos0, heads, hd, dinv.p, nullptr);
        const auto got = dx.download();
        const Diff e = compare(got, want, 1e-6, 1e-7);
        EXPECT_EQ(count_bit_diffs(got, want), 0) << "hd " << hd << " pos0 " << pos0 << " scaling '"
                                                 << sc.type << "' max abs " << e.max_abs;
        EXPECT_EQ(e.bad, 0);
      }
    }
  }
}

// The fused decode attention's (cos, sin) table: the CPU's rope angles and roundings, bit for bit
// (RoPE'd unit pairs (1, 0) and (0, 1) give cos and sin).
TEST(CudaOpsElementwise, RopeCosSinTable) {
  model::RopeScaling llama3{"llama3", 8.0f, 1.0f, 4.0f, 8192};
  for (int64_t hd : {64, 128}) {
    for (const auto& sc : {model::RopeScaling{}, llama3}) {
      const int64_t half = hd / 2, positions = 9000;
      const auto inv = cpu::rope_inv_freq(hd, 500000.0f, sc);
      Buf<float> dinv(inv);
      Buf<float2> dcs(static_cast<size_t>(positions * half));
      dcs.poison();
      rope_cos_sin_table(dinv.p, half, positions, dcs.p, nullptr);
      const std::vector<float2> got = dcs.download();
      int64_t bad = 0;
      for (int64_t p = 0; p < positions; p += p < 16 ? 1 : 97) {
        std::vector<float> unit(static_cast<size_t>(hd), 0.0f);  // one head: x_j = 1
        for (int64_t j = 0; j < half; ++j) unit[static_cast<size_t>(j)] = 1.0f;
        cpu::rope(unit.data(), 1, p, 1, hd, inv.data(), 1);  // (cos, sin) in (j, j + half)
        for (int64_t j = 0; j < half; ++j) {
          const float2 g = got[static_cast<size_t>(p * half + j)];
          bad += std::memcmp(&g.x, &unit[static_cast<size_t>(j)], 4) != 0 ||
                 std::memcmp(&g.y, &unit[static_cast<size_t>(j + half)], 4) != 0;
        }
      }
      EXPECT_EQ(bad, 0) << "hd " << hd << " scaling '" << sc.type << "'";
    }
  }
  Buf<float2> one(1);
  EXPECT_THROW(rope_cos_sin_table(nullptr, 0, 4, one.p, nullptr), Error);
}

TEST(CudaOpsElementwise, KvStore) {
  for (int64_t hd : {128, 6}) {
    const int64_t batch = 2, t = 7, pos0 = 5, kvh = 3, cap = 20;
    const auto k = randn(static_cast<size_t>(batch * t * kvh * hd));
    const auto v = randn(k.size());
    const auto kc0 = randn(static_cast<size_t>(batch * kvh * cap * hd));
    const auto vc0 = randn(kc0.size());
    auto kw = kc0, vw = vc0;
    for (int64_t b = 0; b < batch; ++b) {
      cpu::kv_store(k.data() + b * t * kvh * hd, v.data() + b * t * kvh * hd, t, pos0, kvh, hd, cap,
                    kw.data() + b * kvh * cap * hd, vw.data() + b * kvh * cap * hd);
    }
    Buf<float> dk(k), dv(v), dkc(kc0), dvc(vc0);
    kv_store(dk.p, dv.p, batch, t, pos0, kvh, hd, cap, dkc.p, dvc.p, nullptr);
    EXPECT_EQ(count_bit_diffs(dkc.download(), kw), 0) << "hd " << hd;
    EXPECT_EQ(count_bit_diffs(dvc.download(), vw), 0) << "hd " << hd;
    EXPECT_THROW(kv_store(dk.p, dv.p, batch, t, 14, kvh, hd, cap, dkc.p, dvc.p, nullptr), Error);
  }
}

// The FP16 cache: each stored value is CUDA's host float -> half conversion of the CPU's float32
// cache value, every other cache element untouched; hd 128 takes the 4-wide kernel, hd 6 and an
// unaligned input the element-wise one.
TEST(CudaOpsElementwise, KvStoreF16) {
  for (int64_t hd : {128, 6, 4}) {
    const int64_t batch = 2, t = 7, pos0 = 5, kvh = 3, cap = 20;
    const bool unaligned = hd == 4;  // inputs one float past a 16-byte boundary
    const auto k = randn(static_cast<size_t>(batch * t * kvh * hd + 1), 300.0f);
    const auto v = randn(k.size(), 1e-3f);
    const auto kc0 = randn(static_cast<size_t>(batch * kvh * cap * hd));
    const auto vc0 = randn(kc0.size());
    auto kw = kc0, vw = vc0;
    const int64_t off = unaligned ? 1 : 0;
    for (int64_t b = 0; b < batch; ++b) {
      cpu::kv_store(k.data() + off + b * t * kvh * hd, v.data() + off + b * t * kvh * hd, t, pos0,
                    kvh, hd, cap, kw.data() + b * kvh * cap * hd, vw.data() + b * kvh * cap * hd);
    }
    Buf<float> dk(k), dv(v);
    Buf<uint16_t> dkc(to_half_bits(kc0)), dvc(to_half_bits(vc0));
    auto* kcp = reinterpret_cast<float*>(dkc.p);
    auto* vcp = reinterpret_cast<float*>(dvc.p);
    kv_store(dk.p + off, dv.p + off, batch, t, pos0, kvh, hd, cap, kcp, vcp, nullptr, nullptr,
             KvCache::kF16);
    EXPECT_EQ(count_diffs(dkc.download(), to_half_bits(kw)), 0) << "hd " << hd;
    EXPECT_EQ(count_diffs(dvc.download(), to_half_bits(vw)), 0) << "hd " << hd;
    EXPECT_THROW(
        kv_store(dk.p, dv.p, batch, t, 14, kvh, hd, cap, kcp, vcp, nullptr, nullptr, KvCache::kF16),
        Error);
  }
}

// RoPE on q and k plus the KV store in one launch: the same bits as the CPU's three ops (q, k
// rotated in place; both caches), and the same capacity check.
TEST(CudaOpsElementwise, RopeKvStoreFused) {
  for (int64_t hd : {64, 128}) {
    const int64_t batch = 2, t = 3, pos0 = 5, heads = 4, kvh = 2, cap = 12;
    const auto inv = cpu::rope_inv_freq(hd, 500000.0f, model::RopeScaling{});
    const auto q = randn(static_cast<size_t>(batch * t * heads * hd));
    const auto k = randn(static_cast<size_t>(batch * t * kvh * hd)), v = randn(k.size());
    const auto kc0 = randn(static_cast<size_t>(batch * kvh * cap * hd)), vc0 = randn(kc0.size());
    auto qw = q, kw = k, kcw = kc0, vcw = vc0;
    for (int64_t b = 0; b < batch; ++b) {
      cpu::rope(qw.data() + b * t * heads * hd, t, pos0, heads, hd, inv.data(), 1);
      cpu::rope(kw.data() + b * t * kvh * hd, t, pos0, kvh, hd, inv.data(), 1);
      cpu::kv_store(kw.data() + b * t * kvh * hd, v.data() + b * t * kvh * hd, t, pos0, kvh, hd,
                    cap, kcw.data() + b * kvh * cap * hd, vcw.data() + b * kvh * cap * hd);
    }
    Buf<float> dq(q), dk(k), dv(v), dkc(kc0), dvc(vc0), dinv(inv);
    rope_kv_store(dq.p, dk.p, dv.p, batch, t, pos0, heads, kvh, hd, dinv.p, cap, dkc.p, dvc.p,
                  nullptr);
    EXPECT_EQ(count_bit_diffs(dq.download(), qw), 0) << "hd " << hd;
    EXPECT_EQ(count_bit_diffs(dk.download(), kw), 0) << "hd " << hd;
    EXPECT_EQ(count_bit_diffs(dkc.download(), kcw), 0) << "hd " << hd;
    EXPECT_EQ(count_bit_diffs(dvc.download(), vcw), 0) << "hd " << hd;
    EXPECT_THROW(rope_kv_store(dq.p, dk.p, dv.p, batch, t, 10, heads, kvh, hd, dinv.p, cap, dkc.p,
                               dvc.p, nullptr),
                 Error);
    // Into FP16 caches: q and k as above, the caches the float32 ones rounded (host oracle).
    Buf<float> hq(q), hk(k);
    Buf<uint16_t> hkc(to_half_bits(kc0)), hvc(to_half_bits(vc0));
    rope_kv_store(hq.p, hk.p, dv.p, batch, t, pos0, heads, kvh, hd, dinv.p, cap,
                  reinterpret_cast<float*>(hkc.p), reinterpret_cast<float*>(hvc.p), nullptr,
                  nullptr, KvCache::kF16);
    EXPECT_EQ(count_bit_diffs(hq.download(), qw), 0) << "hd " << hd;
    EXPECT_EQ(count_bit_diffs(hk.download(), kw), 0) << "hd " << hd;
    EXPECT_EQ(count_diffs(hkc.download(), to_half_bits(kcw)), 0) << "hd " << hd;
    EXPECT_EQ(count_diffs(hvc.download(), to_half_bits(vcw)), 0) << "hd " << hd;
  }
}

TEST(CudaOpsElementwise, SwigluAddBias) {
  const int64_t n = 100003;
  const auto gate = randn(static_cast<size_t>(n), 4.0f);
  const auto up = randn(static_cast<size_t>(n));
  std::vector<float> want(gate.size());
  cpu::swiglu(gate.data(), up.data(), n, want.data(), 1);
  Buf<float> dg(gate), du(up), out(gate.size());
  out.poison();
  swiglu(dg.p, du.p, n, out.p, nullptr);
  const Diff e = compare(out.download(), want, 1e-5, 1e-30);
  EXPECT_EQ(e.bad, 0) << "max rel " << e.max_rel;
  swiglu(dg.p, du.p, n, dg.p, nullptr);  // in place over gate
  EXPECT_EQ(compare(dg.download(), want, 1e-5, 1e-30).bad, 0);

  auto x = randn(static_cast<size_t>(n));
  const auto y = randn(static_cast<size_t>(n));
  Buf<float> dx(x), dy(y);
  add(dx.p, dy.p, n, nullptr);
  cpu::add(x.data(), y.data(), n);
  EXPECT_EQ(count_bit_diffs(dx.download(), x), 0);

  const int64_t rows = 9, cols = 1001;
  auto ym = randn(static_cast<size_t>(rows * cols));
  const auto bias = randn(static_cast<size_t>(cols));
  Buf<float> dym(ym), dbias(bias);
  add_bias(dym.p, dbias.p, rows, cols, nullptr);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < cols; ++j) ym[r * cols + j] += bias[j];
  }
  EXPECT_EQ(count_bit_diffs(dym.download(), ym), 0);
}

TEST(CudaOpsElementwise, Bf16BitExact) {
  std::vector<uint32_t> bits = {0x00000000u, 0x80000000u, 0x7F800000u, 0xFF800000u, 0x7FC00000u,
                                0xFFC00000u, 0x7F800001u, 0x7F807FFFu, 0x7F808000u, 0x7FFFFFFFu,
                                0xFFFFFFFFu, 0xFF800001u, 0x7F7FFFFFu, 0x7F7F7FFFu, 0x7F7F8000u,
                                0xFF7FFFFFu, 0x00000001u, 0x00007FFFu, 0x00008000u, 0x00018000u,
                                0x0000FFFFu, 0x807FFFFFu, 0x3F808000u, 0x3F818000u, 0x3F80FFFFu};
  std::uniform_int_distribution<uint32_t> u;
  for (int i = 0; i < (1 << 20); ++i) bits.push_back(u(rng()));
  for (uint32_t i = 0; i < 65536; ++i) bits.push_back((i << 16) | 0x8000u);  // every tie
  std::vector<float> x(bits.size());
  std::memcpy(x.data(), bits.data(), bits.size() * sizeof(float));
  Buf<float> dx(x);
  Buf<uint16_t> out(x.size());
  round_to_bf16(dx.p, static_cast<int64_t>(x.size()), out.p, nullptr);
  const auto got = out.download();
  // Oracle for finite values: the bf16 mode's activation rule (bf16_round), in rows of 64.
  std::vector<float> finite;
  for (float v : x) {
    if (std::isfinite(v)) finite.push_back(v);
  }
  finite.resize(finite.size() / 64 * 64);
  std::vector<float> rounded(finite.size());
  fake_quantize_activation(Mode::kBf16, finite.data(), static_cast<int64_t>(finite.size() / 64), 64,
                           rounded.data(), "bf16 oracle");
  size_t fi = 0;
  int64_t bad = 0, checked_lib = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    uint16_t want = bf16_round_bits(x[i]);
    if (std::isfinite(x[i]) && fi < finite.size()) {
      const uint16_t lib = static_cast<uint16_t>(bits_of(rounded[fi++]) >> 16);
      EXPECT_EQ(lib, want) << "transliteration disagrees with the library at " << i;
      want = lib;
      ++checked_lib;
    }
    if (got[i] != want && bad++ < 5) {
      ADD_FAILURE() << std::hex << "x bits 0x" << bits[i] << ": got 0x" << got[i] << " want 0x"
                    << want;
    }
  }
  EXPECT_GT(checked_lib, 1000000);
  EXPECT_EQ(bad, 0);

  std::vector<uint16_t> all(65536);
  for (uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  Buf<uint16_t> din(all);
  Buf<float> dout(all.size());
  bf16_to_f32(din.p, static_cast<int64_t>(all.size()), dout.p, nullptr);
  const auto f = dout.download();
  int64_t bad2 = 0;
  for (uint32_t i = 0; i < 65536; ++i) bad2 += bits_of(f[i]) != (i << 16);
  EXPECT_EQ(bad2, 0);
}

struct AttnCase {
  int64_t batch, t, pos0, heads, kv_heads, hd, cap;
  float q_sigma = 1.0f;  // larger = peakier softmax
};

// Runs the CUDA attention on (q, kc, vc) and the CPU one per sequence and compares them: at most
// 1e-4 apart, or 1e-4 of the values' largest magnitude with `relative`.
// kv = KvCache::kF16: the GPU reads FP16 caches holding kc and vc rounded to nearest even, the
// CPU the same rounded values in float32.
void check_attention_on(const AttnCase& c, const std::vector<float>& q,
                        const std::vector<float>& kc_in, const std::vector<float>& vc_in,
                        bool relative = false, KvCache kv = KvCache::kF32) {
  const bool f16 = kv == KvCache::kF16;
  const std::vector<float> kc = f16 ? round_to_half(kc_in) : kc_in;
  const std::vector<float> vc = f16 ? round_to_half(vc_in) : vc_in;
  const int64_t ld = c.heads * c.hd;
  std::vector<float> want(q.size());
  cpu::set_blas_threads(1);
  for (int64_t b = 0; b < c.batch; ++b) {
    const int64_t co = b * c.kv_heads * c.cap * c.hd;
    cpu::attention(q.data() + b * c.t * ld, c.t, c.pos0, c.heads, c.kv_heads, c.hd, c.cap,
                   kc.data() + co, vc.data() + co, want.data() + b * c.t * ld, cpu_threads());
  }
  Buf<float> dq(q), dk(kc), dv(vc), out(q.size());
  Buf<uint16_t> hk(f16 ? to_half_bits(kc) : std::vector<uint16_t>(1)),
      hv(f16 ? to_half_bits(vc) : std::vector<uint16_t>(1));
  const float* kp = f16 ? reinterpret_cast<const float*>(hk.p) : dk.p;
  const float* vp = f16 ? reinterpret_cast<const float*>(hv.p) : dv.p;
  const size_t ws_bytes = attention_workspace_bytes(c.batch, c.t, c.heads, c.kv_heads, c.hd, c.cap);
  Buf<char> ws(ws_bytes);
  out.poison();
  attention(dq.p, c.batch, c.t, c.pos0, c.heads, c.kv_heads, c.hd, c.cap, kp, vp, out.p,
            ws_bytes ? ws.p : nullptr, ws_bytes, nullptr, nullptr, nullptr, kv);
  double v_max = 0.0;
  for (float v : vc) v_max = std::max(v_max, static_cast<double>(std::fabs(v)));
  const Diff e = compare(out.download(), want, 0.0, 1e-4 * (relative ? v_max : 1.0));
  EXPECT_EQ(e.bad, 0) << "batch " << c.batch << " t " << c.t << " pos0 " << c.pos0 << " heads "
                      << c.heads << "/" << c.kv_heads << " hd " << c.hd << " max abs " << e.max_abs;
  std::printf("attention%s b%ld t%ld pos0 %ld h%ld/%ld hd%ld: max abs err %.2e (ws %zu B)\n",
              f16 ? " (f16 cache)" : "", static_cast<long>(c.batch), static_cast<long>(c.t),
              static_cast<long>(c.pos0), static_cast<long>(c.heads), static_cast<long>(c.kv_heads),
              static_cast<long>(c.hd), e.max_abs, ws_bytes);
}

void check_attention(const AttnCase& c, KvCache kv = KvCache::kF32) {
  const auto q = randn(static_cast<size_t>(c.batch * c.t * c.heads * c.hd), c.q_sigma);
  const auto kc = randn(static_cast<size_t>(c.batch * c.kv_heads * c.cap * c.hd));
  check_attention_on(c, q, kc, randn(kc.size()), false, kv);
}

const std::vector<AttnCase>& decode_cases() {
  static const std::vector<AttnCase> cases{
      {1, 1, 0, 4, 2, 128, 16},
      {2, 1, 100, 8, 2, 128, 200},
      {1, 1, 8191, 32, 8, 128, 8192},
      {3, 1, 5000, 8, 8, 64, 8192, 3.0f},
      {32, 1, 1023, 32, 8, 128, 1024},
      {1, 1, 500, 16, 1, 64, 600},  // group 16: two blocks per kv head
      {1, 1, 300, 14, 2, 64, 400},  // group 7
      {2, 1, 77, 9, 3, 64, 100},    // group 3
      {2, 3, 50, 6, 2, 64, 60},     // small t through the decode kernel
      {2, 7, 0, 8, 4, 128, 7},
      {4, 1, 40, 32, 8, 128, 2048, 4.0f},  // workspace sized for the capacity
  };
  return cases;
}

TEST(CudaOpsAttention, Decode) {
  for (const AttnCase& c : decode_cases()) check_attention(c);
}

// The decode kernel over FP16 caches: the CPU's attention over the same rounded values.
TEST(CudaOpsAttention, DecodeF16Cache) {
  for (const AttnCase& c : decode_cases()) check_attention(c, KvCache::kF16);
}

// The prefill kernels: the tensor-core one on FP16 halves (default), the same in its TF32 form
// only, and the FP32 CUDA-core one.
using testing::PrefillKernel;
class CudaOpsAttentionPrefill : public ::testing::TestWithParam<PrefillKernel> {
 protected:
  void SetUp() override { testing::attention_prefill_kernel(GetParam()); }
  void TearDown() override { testing::attention_prefill_kernel(PrefillKernel::kF16x3); }
};
INSTANTIATE_TEST_SUITE_P(Kernel, CudaOpsAttentionPrefill,
                         ::testing::Values(PrefillKernel::kF16x3, PrefillKernel::kTf32x3,
                                           PrefillKernel::kFp32Cores),
                         [](const ::testing::TestParamInfo<PrefillKernel>& i) {
                           return i.param == PrefillKernel::kF16x3    ? std::string("F16x3")
                                  : i.param == PrefillKernel::kTf32x3 ? std::string("Tf32x3")
                                                                      : std::string("Fp32Cores");
                         });

const std::vector<AttnCase>& prefill_cases() {
  static const std::vector<AttnCase> cases{
      {2, 100, 0, 8, 2, 128, 100},
      {1, 300, 37, 6, 3, 64, 400, 3.0f},
      {2, 64, 64, 4, 4, 128, 128},
      {1, 8, 0, 2, 1, 64, 8},
      {1, 200, 1000, 4, 1, 128, 1200, 4.0f},
      {1, 1000, 0, 8, 2, 128, 1000},
      {1, 2048, 0, 32, 8, 128, 2048},
      {1, 130, 0, 4, 2, 64, 130, 6.0f},  // a peaky softmax, a 2-row last tile
      {3, 65, 900, 2, 1, 128, 1000},
  };
  return cases;
}

TEST_P(CudaOpsAttentionPrefill, MatchesCpu) {
  for (const AttnCase& c : prefill_cases()) check_attention(c);
}

// The prefill over FP16 caches: the tensor-core kernel takes K and V as cached (two products
// each), q split and scaled as before; the CPU reads the same rounded values. q far outside
// FP16's range both ways still matches to 1e-4 of the values. The A/B kernels that read only
// float32 caches refuse.
TEST(CudaOpsAttention, PrefillF16Cache) {
  for (const AttnCase& c : prefill_cases()) check_attention(c, KvCache::kF16);
  const AttnCase c{2, 200, 30, 4, 2, 128, 230};
  const auto q = randn(static_cast<size_t>(c.batch * c.t * c.heads * c.hd));
  const auto kc = randn(static_cast<size_t>(c.batch * c.kv_heads * c.cap * c.hd), 30.0f);
  const auto vc = randn(kc.size(), 1e-2f);
  for (float sq : {1e-7f, 1e6f}) {
    auto qs = q;
    for (float& x : qs) x *= sq;
    check_attention_on(c, qs, kc, vc, true, KvCache::kF16);
  }
  Buf<float> b(1 << 20);
  for (PrefillKernel k : {PrefillKernel::kTf32x3, PrefillKernel::kFp32Cores}) {
    testing::attention_prefill_kernel(k);
    EXPECT_THROW(attention(b.p, 1, 16, 0, 2, 1, 64, 16, b.p, b.p, b.p, b.p, 1 << 20, nullptr,
                           nullptr, nullptr, KvCache::kF16),
                 Error);
  }
  testing::attention_prefill_kernel(PrefillKernel::kF16x3);
}

// FP16's range in the default prefill (FP16 halves of power-of-two-scaled operands): inputs far
// outside it, both ways, match the CPU to 1e-4 of their own magnitude. Unscaled, the first cases
// would overflow FP16 (infinities, NaN outputs) and the tiny ones flush to zero.
TEST_P(CudaOpsAttentionPrefill, ScalesOutsideFp16Range) {
  const AttnCase c{2, 200, 30, 4, 2, 128, 230};
  auto scaled = [](std::vector<float> v, float s) {
    for (float& x : v) x *= s;
    return v;
  };
  const auto q = randn(static_cast<size_t>(c.batch * c.t * c.heads * c.hd));
  const auto kc = randn(static_cast<size_t>(c.batch * c.kv_heads * c.cap * c.hd));
  const auto vc = randn(kc.size());
  for (const auto& [sq, sk, sv] : std::vector<std::tuple<float, float, float>>{
           {1e-6f, 1e6f, 1e6f},      // k and v past 65504, q small: moderate scores
           {1e5f, 1e-5f, 1e-12f},    // q past 65504, v tiny (FP16 subnormal or zero)
           {1e-12f, 1e-12f, 3e-9f},  // everything tiny: a uniform softmax
           {3e-3f, 2e2f, 1.0f},      // a peaky softmax from moderate inputs
       }) {
    check_attention_on(c, scaled(q, sq), scaled(kc, sk), scaled(vc, sv), true);
  }
  // One outlier beyond FP16 in a cache of ordinary values: the rest keep their precision (they
  // lie within 2^-17 of the scaled maximum).
  auto v1 = vc;
  v1[static_cast<size_t>(20 * c.hd + 100)] = 2e5f;
  check_attention_on(c, q, kc, v1, true);
}

// rope_attention_decode (RoPE and the KV store inside the decode attention kernel) against
// rope_kv_store then attention: the same output, caches and published tensor max, bit for bit;
// q, k and v left as they were. Every t = 1 decode case, with and without the published max.
TEST(CudaOpsAttention, RopeFusedDecodeEqualsRopeKvStoreThenAttention) {
  for (const AttnCase& c : decode_cases()) {
    if (c.t != 1) continue;
    const auto inv = cpu::rope_inv_freq(c.hd, 500000.0f, model::RopeScaling{});
    const auto q = randn(static_cast<size_t>(c.batch * c.heads * c.hd), c.q_sigma);
    const auto k = randn(static_cast<size_t>(c.batch * c.kv_heads * c.hd)), v = randn(k.size());
    const auto kc0 = randn(static_cast<size_t>(c.batch * c.kv_heads * c.cap * c.hd));
    const auto vc0 = randn(kc0.size());
    const size_t ws_bytes = attention_workspace_bytes(c.batch, 1, c.heads, c.kv_heads, c.hd, c.cap);
    const std::vector<uint32_t> zero_scratch(prepare_scratch_bytes(c.batch) / 4, 0u);
    Buf<float> dinv(inv);
    Buf<float2> dcs(static_cast<size_t>(c.cap * c.hd / 2));
    rope_cos_sin_table(dinv.p, c.hd / 2, c.cap, dcs.p, nullptr);
    for (bool publish : {false, true}) {
      const std::string what = "batch " + std::to_string(c.batch) + " pos0 " +
                               std::to_string(c.pos0) + " heads " + std::to_string(c.heads) + "/" +
                               std::to_string(c.kv_heads) + " hd " + std::to_string(c.hd) +
                               (publish ? " publishing" : "");
      // Two calls.
      Buf<float> aq(q), ak(k), av(v), akc(kc0), avc(vc0), aout(q.size()), ats(2);
      Buf<uint32_t> asc(zero_scratch);
      Buf<char> aws(ws_bytes ? ws_bytes : 1);
      aout.poison();
      rope_kv_store(aq.p, ak.p, av.p, c.batch, 1, c.pos0, c.heads, c.kv_heads, c.hd, dinv.p, c.cap,
                    akc.p, avc.p, nullptr);
      const TensorMaxSink asink{asc.p, ats.p, ats.p + 1};
      const bool apub =
          attention(aq.p, c.batch, 1, c.pos0, c.heads, c.kv_heads, c.hd, c.cap, akc.p, avc.p,
                    aout.p, aws.p, ws_bytes, nullptr, nullptr, publish ? &asink : nullptr);
      // One.
      Buf<float> bq(q), bk(k), bv(v), bkc(kc0), bvc(vc0), bout(q.size()), bts(2);
      Buf<uint32_t> bsc(zero_scratch);
      Buf<char> bws(ws_bytes ? ws_bytes : 1);
      bout.poison();
      const TensorMaxSink bsink{bsc.p, bts.p, bts.p + 1};
      bool bpub = !apub;
      ASSERT_TRUE(rope_attention_decode(bq.p, bk.p, bv.p, c.batch, c.pos0, c.heads, c.kv_heads,
                                        c.hd, dcs.p, c.cap, bkc.p, bvc.p, bout.p, bws.p, ws_bytes,
                                        nullptr, nullptr, publish ? &bsink : nullptr, KvCache::kF32,
                                        &bpub))
          << what;
      EXPECT_EQ(bpub, apub) << what;
      EXPECT_EQ(count_bit_diffs(bout.download(), aout.download()), 0) << what;
      EXPECT_EQ(count_bit_diffs(bkc.download(), akc.download()), 0) << what;
      EXPECT_EQ(count_bit_diffs(bvc.download(), avc.download()), 0) << what;
      EXPECT_EQ(count_bit_diffs(bq.download(), q), 0) << what;
      EXPECT_EQ(count_bit_diffs(bk.download(), k), 0) << what;
      if (publish) {
        EXPECT_EQ(bsc.download(), asc.download()) << what;
        EXPECT_EQ(count_bit_diffs(bts.download(), ats.download()), 0) << what;
      }
    }
  }
  // Not for FP16 caches: nothing runs.
  Buf<float> b(1 << 16);
  bool pub = true;
  EXPECT_FALSE(rope_attention_decode(b.p, b.p, b.p, 1, 0, 2, 1, 64,
                                     reinterpret_cast<const float2*>(b.p), 8, b.p, b.p, b.p,
                                     nullptr, 0, nullptr, nullptr, nullptr, KvCache::kF16, &pub));
}

TEST(CudaOpsAttention, RejectsUnsupported) {
  Buf<float> b(1 << 16);
  EXPECT_THROW(attention(b.p, 1, 1, 0, 2, 1, 96, 8, b.p, b.p, b.p, nullptr, 0, nullptr), Error);
  EXPECT_THROW(attention(b.p, 1, 1, 0, 3, 2, 64, 8, b.p, b.p, b.p, nullptr, 0, nullptr), Error);
  EXPECT_THROW(attention(b.p, 1, 4, 6, 2, 1, 64, 8, b.p, b.p, b.p, nullptr, 0, nullptr), Error);
  // A decode that needs a workspace refuses to run without one.
  EXPECT_THROW(attention(b.p, 1, 1, 63, 2, 1, 64, 64, b.p, b.p, b.p, nullptr, 0, nullptr), Error);
}

// Llama-3.1-8B attention shapes (32 heads, 8 kv heads, head_dim 128): decode at 1024 context for
// batch 1, 8, 32 and a 2048-token prefill (both prefill kernels). Prints the mean time over 20
// runs.
TEST(CudaOpsTiming, Attention) {
  const int64_t heads = 32, kvh = 8, hd = 128;
  struct Shape {
    int64_t batch, t, pos0, cap;
  };
  cudaEvent_t e0, e1;
  check(cudaEventCreate(&e0), "event");
  check(cudaEventCreate(&e1), "event");
  for (const Shape& s : std::vector<Shape>{{1, 1, 1023, 1024},
                                           {8, 1, 1023, 1024},
                                           {32, 1, 1023, 1024},
                                           {1, 2048, 0, 2048},
                                           {4, 512, 0, 512}}) {
    const auto q = randn(static_cast<size_t>(s.batch * s.t * heads * hd));
    const auto kc = randn(static_cast<size_t>(s.batch * kvh * s.cap * hd));
    Buf<float> dq(q), dk(kc), dv(kc), out(q.size());
    const size_t ws_bytes = attention_workspace_bytes(s.batch, s.t, heads, kvh, hd, s.cap);
    Buf<char> ws(ws_bytes);
    auto once = [&] {
      attention(dq.p, s.batch, s.t, s.pos0, heads, kvh, hd, s.cap, dk.p, dv.p, out.p,
                ws_bytes ? ws.p : nullptr, ws_bytes, nullptr);
    };
    // Prefill: the default (FP16 halves), TF32 halves, the FP32 CUDA-core kernel, the default
    // again.
    const std::vector<PrefillKernel> kernels =
        s.t == 1 ? std::vector<PrefillKernel>{PrefillKernel::kF16x3}
                 : std::vector<PrefillKernel>{PrefillKernel::kF16x3, PrefillKernel::kTf32x3,
                                              PrefillKernel::kFp32Cores, PrefillKernel::kF16x3};
    for (const PrefillKernel kernel : kernels) {
      testing::attention_prefill_kernel(kernel);
      for (int i = 0; i < 3; ++i) once();
      constexpr int kReps = 20;
      check(cudaEventRecord(e0), "record");
      for (int i = 0; i < kReps; ++i) once();
      check(cudaEventRecord(e1), "record");
      check(cudaEventSynchronize(e1), "sync");
      float ms = 0.0f;
      check(cudaEventElapsedTime(&ms, e0, e1), "elapsed");
      const double us = 1e3 * ms / kReps;
      const double ctx = static_cast<double>(s.pos0 + s.t);
      if (s.t == 1) {
        const double bytes = 2.0 * s.batch * kvh * ctx * hd * 4;
        std::printf("TIMING decode batch %ld ctx %.0f: %.1f us, KV read %.0f GB/s\n",
                    static_cast<long>(s.batch), ctx, us, bytes / us * 1e-3);
      } else {
        const double flops = 4.0 * heads * hd * (static_cast<double>(s.t) * (s.t + 1) / 2);
        std::printf("TIMING prefill (%s) batch %ld t %ld: %.1f us, %.1f TFLOP/s (causal)\n",
                    kernel == PrefillKernel::kF16x3    ? "3xFP16 tensor cores"
                    : kernel == PrefillKernel::kTf32x3 ? "3xTF32 tensor cores"
                                                       : "FP32 cores",
                    static_cast<long>(s.batch), static_cast<long>(s.t), us,
                    flops / us * 1e-6 * s.batch);
      }
    }
    testing::attention_prefill_kernel(PrefillKernel::kF16x3);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
}

}  // namespace
}  // namespace sharq::cuda
