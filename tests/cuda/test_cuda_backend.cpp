// The CUDA backend against the CPU reference backend on whole decoders (label gpu): the same tiny
// models in every mode family (Hopper FP4 kernels, cuBLAS bf16, the reference path), prefill
// (FP4 prefill GEMM, M > 32) and decode (decode GEMM), batched sessions, weight memory.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "sharq/engine/cuda_backend.h"
#include "sharq/engine/session.h"
#include "sharq/error.h"
#include "tiny_model.h"

namespace sharq {
namespace {

using engine::Model;
using engine::Session;

// Shapes the GPU kernels take (head_dim 64 or 128, K multiples of 64), one per architecture hook.
model::ModelConfig gpu_config(const std::string& arch) {
  model::ModelConfig c = test::tiny_config(arch);
  c.vocab_size = 300;
  c.hidden_size = 256;
  c.intermediate_size = 640;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = arch == "qwen3" ? 128 : 64;  // qwen3: head_dim != hidden / heads
  return c;
}

double rel_err(const std::vector<float>& a, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += (double(a[i]) - ref[i]) * (double(a[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

double argmax_agreement(const std::vector<float>& a, const std::vector<float>& b, int64_t v) {
  const int64_t rows = static_cast<int64_t>(a.size()) / v;
  int64_t same = 0;
  for (int64_t r = 0; r < rows; ++r) {
    same += engine::argmax(std::span(a.data() + r * v, v)) ==
            engine::argmax(std::span(b.data() + r * v, v));
  }
  return static_cast<double>(same) / static_cast<double>(rows);
}

std::vector<int32_t> ids(int64_t n, int64_t vocab, int seed) {
  std::vector<int32_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<int32_t>((i * 37 + seed * 11 + 5) % vocab);
  return out;
}

struct Case {
  const char* arch;
  const char* mode;
};

class CudaBackend : public ::testing::TestWithParam<Case> {
 protected:
  static engine::Backend& gpu() {
    static auto be = engine::make_cuda_backend(0);
    return *be;
  }
};

// Prefill 40 tokens (the prefill GEMM: the merged operand for the SharQ modes) then 3 decode steps
// (the decode GEMM): logits close to the CPU's (the GPU's LM head is bf16, its sums run in another
// order), same greedy tokens. kv: the CPU's KV cache format (the caller sets the GPU's).
void check_decoder_matches_cpu(engine::Backend& gpu, const Case& c, KvCache kv = KvCache::kF32) {
  const auto lm = test::tiny_model(gpu_config(c.arch), 11);
  auto cpu = engine::make_cpu_backend(2);
  cpu->set_kv_cache(kv);
  const Mode mode = mode_from_name(c.mode);
  const Model mc(lm, mode, *cpu), mg(lm, mode, gpu);
  Session sc(mc, 64), sg(mg, 64);
  const auto prompt = ids(40, lm.config.vocab_size, 1);
  const auto lc = sc.forward(prompt, true), lg = sg.forward(prompt, true);
  const double tol = mode == Mode::kBf16 ? 1e-2 : 3e-2;
  EXPECT_LT(rel_err(lg, lc), tol) << c.arch << " " << c.mode << " prefill";
  EXPECT_GE(argmax_agreement(lg, lc, lm.config.vocab_size), 0.9);
  for (int step = 0; step < 3; ++step) {
    const int32_t next[1] = {static_cast<int32_t>(17 + step)};
    const auto dc = sc.forward(next), dg = sg.forward(next);
    EXPECT_LT(rel_err(dg, dc), tol) << c.arch << " " << c.mode << " decode " << step;
  }
}

TEST_P(CudaBackend, DecoderMatchesCpu) {
  check_decoder_matches_cpu(gpu(), GetParam());
}

// check_decoder_matches_cpu on the llama and qwen3 sharq-nvfp4-24 decoders of a backend made
// under SHARQ_CUDA_PREFILL=prefill.
void check_sharq24_decoders_with_prefill(const char* prefill) {
  setenv("SHARQ_CUDA_PREFILL", prefill, 1);
  auto be = engine::make_cuda_backend(0);
  unsetenv("SHARQ_CUDA_PREFILL");
  for (const Case c : {Case{"llama", "sharq-nvfp4-24"}, Case{"qwen3", "sharq-nvfp4-24"}})
    check_decoder_matches_cpu(*be, c);
}

// Every sharq-nvfp4-24 prefill product on the one-launch 2:4 kernel (also the tiny model's few
// tiles, which the default sends to cuBLAS), its input's stage images written by the prepare,
// its residual adds (o, down) in the kernel's epilogue.
TEST(CudaBackendPrefillWs, DecoderMatchesCpu) {
  check_sharq24_decoders_with_prefill("ws");
}

// Prepares that write neither the FP16 planes nor the stage images: each prefill product (the
// cuBLAS path here) expands what it reads from the packed activation.
TEST(CudaBackendPrefillExpand, DecoderMatchesCpu) {
  check_sharq24_decoders_with_prefill("expand");
}

// The SharQ prefill without the merged operand (SHARQ_CUDA_PREFILL=paths, the default before
// session 33: one cuBLAS GEMM per path here, the tiny model's products being too small for the
// 2:4 kernel); the default (merged operand) runs in CudaBackend above.
TEST(CudaBackendPrefillPaths, DecoderMatchesCpu) {
  check_sharq24_decoders_with_prefill("paths");
  setenv("SHARQ_CUDA_PREFILL", "paths", 1);
  auto be = engine::make_cuda_backend(0);
  unsetenv("SHARQ_CUDA_PREFILL");
  check_decoder_matches_cpu(*be, Case{"llama", "sharq-nvfp4"});
}

// The FP16 KV cache (--kv-cache f16): the GPU stores halves (half the floats of storage), the CPU
// the same rounded values, so the decoders match as closely as with float32 caches: prefill,
// then launched, recorded and replayed decode steps.
TEST(CudaBackendKvF16, DecoderMatchesCpu) {
  auto be = engine::make_cuda_backend(0);
  be->set_kv_cache(KvCache::kF16);
  EXPECT_EQ(be->kv_cache_floats(1000), 500);
  {  // A session's caches take half the bytes of float32 ones.
    const auto lm = test::tiny_model(gpu_config("llama"), 11);
    const Model m(lm, Mode::kBf16, *be);
    const Session s16(m, 64);
    be->set_kv_cache(KvCache::kF32);
    const Session s32(m, 64);
    be->set_kv_cache(KvCache::kF16);
    EXPECT_EQ(2 * s16.kv_cache_bytes(), s32.kv_cache_bytes());
  }
  for (const Case c : {Case{"llama", "bf16"}, Case{"llama", "sharq-nvfp4-24"},
                       Case{"qwen3", "sharq-nvfp4"}, Case{"qwen2", "nvfp4"}}) {
    check_decoder_matches_cpu(*be, c, KvCache::kF16);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Modes, CudaBackend,
    ::testing::Values(Case{"llama", "bf16"}, Case{"llama", "nvfp4"}, Case{"llama", "sharq-nvfp4"},
                      Case{"llama", "sharq-nvfp4-24"}, Case{"qwen2", "sharq-nvfp4"},
                      Case{"qwen3", "sharq-nvfp4-24"}, Case{"qwen2", "bf16"},
                      Case{"llama", "mxfp4"}, Case{"llama", "nvfp4-w4a16"},
                      Case{"llama", "sharq-nvfp4-pt"}, Case{"qwen3", "dense+dense"}),
    [](const auto& p) {
      std::string s = std::string(p.param.arch) + "_" + p.param.mode;
      std::replace_if(
          s.begin(), s.end(), [](char ch) { return !std::isalnum(ch); }, '_');
      return s;
    });

TEST(CudaBackendSession, BatchedSequencesEqualSingleSessions) {
  const auto lm = test::tiny_model(gpu_config("llama"), 3);
  auto be = engine::make_cuda_backend(0);
  const Model m(lm, Mode::kNvfp4W4A16, *be);
  const int64_t v = lm.config.vocab_size;
  const auto a = ids(6, v, 1), b = ids(6, v, 2);
  std::vector<int32_t> both = a;
  both.insert(both.end(), b.begin(), b.end());
  Session pair(m, 16, 2), sa(m, 16), sb(m, 16);
  const auto lp = pair.forward(both);
  const auto la = sa.forward(a), lb = sb.forward(b);
  EXPECT_LT(rel_err(std::vector<float>(lp.begin(), lp.begin() + v), la), 1e-5);
  EXPECT_LT(rel_err(std::vector<float>(lp.begin() + v, lp.end()), lb), 1e-5);
  const int32_t next[2] = {7, 11};
  const auto dp = pair.forward(next);
  const auto da = sa.forward(std::span(next, 1)), db = sb.forward(std::span(next + 1, 1));
  EXPECT_LT(rel_err(std::vector<float>(dp.begin(), dp.begin() + v), da), 1e-5);
  EXPECT_LT(rel_err(std::vector<float>(dp.begin() + v, dp.end()), db), 1e-5);
}

// Batched decode steps of 9-32 rows take the wgmma decode kernel on planes the prepares write
// in its K order (cuda::decode_plane_order): against the CPU at 9, 17 and 32 rows, on widths with
// half windows (320 = 2.5 x 128, intermediate 704 = 5.5 x 128) in every FP4 mode.
TEST(CudaBackendSession, BatchedDecodeStepsMatchCpu) {
  model::ModelConfig cfg = gpu_config("llama");
  cfg.hidden_size = 320;
  cfg.num_heads = 5;
  cfg.num_kv_heads = 1;
  cfg.intermediate_size = 704;
  const auto lm = test::tiny_model(cfg, 9);
  auto cpu = engine::make_cpu_backend(2);
  auto gpu = engine::make_cuda_backend(0);
  const int64_t v = lm.config.vocab_size;
  for (const char* name : {"sharq-nvfp4-24", "sharq-nvfp4", "nvfp4"}) {
    const Mode mode = mode_from_name(name);
    const Model mc(lm, mode, *cpu), mg(lm, mode, *gpu);
    for (const int64_t batch : {9, 17, 32}) {
      Session sc(mc, 16, batch), sg(mg, 16, batch);
      const auto prompt = ids(3 * batch, v, static_cast<int>(batch));  // 3 tokens a sequence
      sc.forward(prompt);
      sg.forward(prompt);
      for (int step = 0; step < 2; ++step) {
        const auto next = ids(batch, v, 7 + step);
        const auto dc = sc.forward(next), dg = sg.forward(next);
        EXPECT_LT(rel_err(dg, dc), 3e-2) << name << " batch " << batch << " step " << step;
        EXPECT_GE(argmax_agreement(dg, dc, v), 0.9) << name << " batch " << batch;
      }
    }
  }
}

// matmul_group (one grouped launch for decode-sized inputs, one cuBLAS product for bf16 groups
// laid out by group_linears) gives what matmul gives each linear: decode rows 1, 5 and 24 (the
// wgmma kernel on its own plane order; outputs side by side or not), and 40 rows (the one-by-one
// fallback), biases included.
TEST(CudaBackendSession, GroupedLinearsEqualSeparateOnes) {
  auto be = engine::make_cuda_backend(0);
  const int64_t k = 256, ns[3] = {320, 64, 64};
  std::vector<std::vector<float>> w, bias;
  for (int i = 0; i < 3; ++i) {
    w.push_back(std::vector<float>(static_cast<size_t>(ns[i] * k)));
    bias.push_back(std::vector<float>(static_cast<size_t>(ns[i])));
    for (size_t j = 0; j < w[i].size(); ++j)
      w[i][j] = static_cast<float>(std::sin(0.37 * double(j) + i) * (j % 61 == 0 ? 9 : 1));
    for (size_t j = 0; j < bias[i].size(); ++j)
      bias[i][j] = 0.01f * static_cast<float>(j) - static_cast<float>(i);
  }
  for (const Mode mode : {Mode::kBf16, Mode::kSharqNvfp4_24, Mode::kSharqNvfp4, Mode::kNvfp4}) {
    std::vector<std::unique_ptr<engine::LinearWeights>> lin;
    // Names from a table: `"w" + std::to_string(i)` set off GCC 12's -Wrestrict false positive
    // (PR 105329) in this function.
    const char* const names[] = {"w0", "w1", "w2"};
    for (int i = 0; i < 3; ++i) {
      lin.push_back(be->prepare_linear(mode, w[i].data(), i == 1 ? bias[i].data() : nullptr, ns[i],
                                       k, names[i]));
    }
    be->group_linears(
        std::array<engine::LinearWeights*, 3>{lin[0].get(), lin[1].get(), lin[2].get()});
    const std::array<const engine::LinearWeights*, 3> group{lin[0].get(), lin[1].get(),
                                                            lin[2].get()};
    for (const int64_t t : {1, 5, 24, 40}) {
      std::vector<float> x(static_cast<size_t>(t * k));
      for (size_t j = 0; j < x.size(); ++j)
        x[j] = static_cast<float>(std::cos(0.11 * double(j)) * (j % 37 == 3 ? 20 : 1));
      float* dx = be->alloc(t * k);
      float* xq = be->alloc(be->quantized_activation_floats(t, k));
      be->to_backend(x.data(), dx, t * k);
      be->quantize_activation(mode, dx, t, k, xq, "x");
      const int64_t total = t * (ns[0] + ns[1] + ns[2]);
      float* sep = be->alloc(total);
      float* grp = be->alloc(total);
      std::array<float*, 3> ys_sep{}, ys_grp{};
      int64_t off = 0;
      for (int i = 0; i < 3; ++i) {
        ys_sep[i] = sep + off;
        ys_grp[i] = grp + off;
        off += t * ns[i];
        be->matmul(*lin[i], xq, t, ys_sep[i]);
      }
      be->matmul_group(group, xq, t, ys_grp);
      std::vector<float> a(static_cast<size_t>(total)), b(a.size());
      be->to_host(sep, a.data(), total);
      be->to_host(grp, b.data(), total);
      EXPECT_LT(rel_err(b, a), 1e-6) << mode_name(mode) << " t=" << t;
      for (float* p : {dx, xq, sep, grp}) be->release(p);
    }
  }
}

// matmul_add (the residual add fused into the product: FP4 decode GEMM epilogue, cuBLAS prefill
// path and bf16 with beta = 1) gives y + matmul: rows 1 and 5 (decode GEMM), 12 (its
// shared-activation kernel), 32 (the wgmma kernel) and 40 (prefill).
TEST(CudaBackendSession, FusedResidualAddEqualsProductThenAdd) {
  auto be = engine::make_cuda_backend(0);
  const int64_t k = 256, n = 192;
  std::vector<float> w(static_cast<size_t>(n * k));
  for (size_t j = 0; j < w.size(); ++j)
    w[j] = static_cast<float>(std::sin(0.29 * double(j)) * (j % 53 == 0 ? 7 : 1));
  for (const Mode mode : {Mode::kBf16, Mode::kSharqNvfp4_24, Mode::kNvfp4}) {
    const auto lin = be->prepare_linear(mode, w.data(), nullptr, n, k, "w");
    for (const int64_t t : {1, 5, 12, 32, 40}) {
      std::vector<float> x(static_cast<size_t>(t * k)), y0(static_cast<size_t>(t * n));
      for (size_t j = 0; j < x.size(); ++j)
        x[j] = static_cast<float>(std::cos(0.13 * double(j)) * (j % 41 == 2 ? 15 : 1));
      for (size_t j = 0; j < y0.size(); ++j) y0[j] = static_cast<float>(j % 17) - 8.0f;
      float* dx = be->alloc(t * k);
      float* xq = be->alloc(be->quantized_activation_floats(t, k));
      float* fused = be->alloc(t * n);
      float* sep = be->alloc(t * n);
      float* tmp = be->alloc(t * n);
      be->to_backend(x.data(), dx, t * k);
      be->to_backend(y0.data(), fused, t * n);
      be->to_backend(y0.data(), sep, t * n);
      be->quantize_activation(mode, dx, t, k, xq, "x");
      be->matmul_add(*lin, xq, t, fused, tmp);
      be->matmul(*lin, xq, t, tmp);
      be->add(sep, tmp, t * n);
      std::vector<float> a(y0.size()), b(y0.size());
      be->to_host(sep, a.data(), t * n);
      be->to_host(fused, b.data(), t * n);
      EXPECT_LT(rel_err(b, a), 1e-6) << mode_name(mode) << " t=" << t;
      for (float* p : {dx, xq, fused, sep, tmp}) be->release(p);
    }
  }
}

// Packed FP4 weights: codes (K/2 bytes a row) + UE4M3 scales, about 3.5x under bf16.
TEST(CudaBackendSession, Fp4WeightsStayPacked) {
  const auto lm = test::tiny_model(gpu_config("llama"), 5);
  auto be = engine::make_cuda_backend(0);
  const Model bf(lm, Mode::kBf16, *be), sq(lm, Mode::kSharqNvfp4_24, *be);
  const double ratio =
      static_cast<double>(bf.linear_weight_bytes()) / static_cast<double>(sq.linear_weight_bytes());
  EXPECT_GT(ratio, 3.5);
  EXPECT_LT(ratio, 4.0);
}

TEST(CudaBackendSession, BadTokenIdIsAnError) {
  const auto lm = test::tiny_model(gpu_config("llama"), 5);
  auto be = engine::make_cuda_backend(0);
  const Model m(lm, Mode::kSharqNvfp4, *be);
  Session s(m, 8);
  const int32_t bad[1] = {static_cast<int32_t>(lm.config.vocab_size)};
  EXPECT_THROW(s.forward(bad), Error);
}

// Runs `steps` greedy decode steps after a prompt on each session in turn (interleaved, so the
// backend switches between recorded steps) and returns every step's logits.
std::vector<std::vector<float>> decode_interleaved(std::vector<Session*> sessions, int steps,
                                                   int64_t vocab) {
  std::vector<std::vector<float>> out;
  std::vector<std::vector<float>> last;
  for (size_t i = 0; i < sessions.size(); ++i) {
    const auto prompt = ids(20 * sessions[i]->batch(), vocab, static_cast<int>(i) + 1);
    last.push_back(sessions[i]->forward(prompt));
  }
  for (int step = 0; step < steps; ++step) {
    for (size_t i = 0; i < sessions.size(); ++i) {
      const int64_t b = sessions[i]->batch();
      std::vector<int32_t> next(static_cast<size_t>(b));
      for (int64_t r = 0; r < b; ++r) {
        next[r] = engine::argmax(std::span(last[i].data() + r * vocab, vocab));
      }
      last[i] = sessions[i]->forward(next);
      out.push_back(last[i]);
    }
  }
  return out;
}

// Replayed decode steps (a CUDA graph recorded once per session, positions read on the device)
// give the same bits as launching every op: sessions of batch 1 and 2 and of two capacities
// interleaved on one backend (the larger capacity's attention workspace moves, so the first
// session's recording is dropped and recorded again), then a reset and a second prompt. Also
// with the recorded steps' L2 prefetches on their side branches (both off by default): the next
// product's weights (SHARQ_CUDA_L2_PREFETCH_MB, at a budget below the tiny model's products) and
// the layer's K/V rows (SHARQ_CUDA_KV_PREFETCH_MB).
TEST(CudaBackendSession, ReplayedDecodeStepsEqualLaunchedOnes) {
  const auto lm = test::tiny_model(gpu_config("llama"), 7);
  const int64_t v = lm.config.vocab_size;
  for (const char* mode : {"sharq-nvfp4-24", "nvfp4", "bf16"}) {
    std::vector<std::vector<std::vector<float>>> runs;
    for (const char* graphs : {"0", "1", "1+prefetch"}) {
      setenv("SHARQ_CUDA_GRAPHS", graphs[0] == '1' ? "1" : "0", 1);
      if (std::strcmp(graphs, "1+prefetch") == 0) {
        setenv("SHARQ_CUDA_L2_PREFETCH_MB", "0.01", 1);
        setenv("SHARQ_CUDA_KV_PREFETCH_MB", "16", 1);
      }
      auto be = engine::make_cuda_backend(0);
      unsetenv("SHARQ_CUDA_GRAPHS");
      unsetenv("SHARQ_CUDA_L2_PREFETCH_MB");
      unsetenv("SHARQ_CUDA_KV_PREFETCH_MB");
      const Model m(lm, mode_from_name(mode), *be);
      Session a(m, 80), b(m, 40, 2), c(m, 200);
      auto r = decode_interleaved({&a, &b}, 6, v);
      const auto rc = decode_interleaved({&c, &a}, 4, v);  // c moves the attention workspace
      r.insert(r.end(), rc.begin(), rc.end());
      a.reset();
      const auto ra = decode_interleaved({&a}, 4, v);
      r.insert(r.end(), ra.begin(), ra.end());
      runs.push_back(std::move(r));
      // Steps do replay: with graphs on, all but each session's first and second step of a key
      // (H200, session 29: 20 of the 28 steps in every mode).
      const bool records = graphs[0] == '1';
      const int64_t replayed = be->steps_replayed();
      EXPECT_TRUE(records ? replayed > 10 : replayed == 0)
          << mode << ", graphs " << graphs << ": " << replayed << " steps replayed";
    }
    for (size_t r = 1; r < runs.size(); ++r) {
      ASSERT_EQ(runs[0].size(), runs[r].size());
      for (size_t i = 0; i < runs[0].size(); ++i) {
        ASSERT_EQ(runs[0][i], runs[r][i]) << mode << " run " << r << " step " << i;
      }
    }
  }
}

// The o projection's tensor max published by the attention combine pass (its prepare then runs
// only the quantization pass) gives the same bits as the whole prepare
// (SHARQ_CUDA_FUSE_ATTN_MAX=0): batch 1 and 2 decode, recorded and launched steps, every FP4 mode.
TEST(CudaBackendSession, AttentionPublishedMaxEqualsWholePrepare) {
  const auto lm = test::tiny_model(gpu_config("llama"), 11);
  const int64_t v = lm.config.vocab_size;
  for (const char* mode : {"sharq-nvfp4-24", "sharq-nvfp4", "nvfp4"}) {
    for (const char* graphs : {"1", "0"}) {
      std::vector<std::vector<std::vector<float>>> runs;
      for (const char* fuse : {"1", "0"}) {
        setenv("SHARQ_CUDA_GRAPHS", graphs, 1);
        setenv("SHARQ_CUDA_FUSE_ATTN_MAX", fuse, 1);
        auto be = engine::make_cuda_backend(0);
        unsetenv("SHARQ_CUDA_GRAPHS");
        unsetenv("SHARQ_CUDA_FUSE_ATTN_MAX");
        const Model m(lm, mode_from_name(mode), *be);
        Session a(m, 120), b(m, 60, 2);
        runs.push_back(decode_interleaved({&a, &b}, 6, v));
      }
      ASSERT_EQ(runs[0].size(), runs[1].size());
      for (size_t i = 0; i < runs[0].size(); ++i) {
        ASSERT_EQ(runs[0][i], runs[1][i]) << mode << " graphs " << graphs << " step " << i;
      }
    }
  }
}

// A replayed step checks its ids like a launched one, and the session goes on afterwards.
TEST(CudaBackendSession, ReplayedStepChecksTokenIds) {
  const auto lm = test::tiny_model(gpu_config("llama"), 5);
  auto be = engine::make_cuda_backend(0);
  const Model m(lm, Mode::kSharqNvfp4_24, *be);
  Session s(m, 16);
  const auto prompt = ids(4, lm.config.vocab_size, 1);
  s.forward(prompt);
  for (int32_t id : {3, 4, 5}) s.forward(std::span(&id, 1));  // eager, recorded, replayed
  const int32_t bad[1] = {static_cast<int32_t>(lm.config.vocab_size)};
  EXPECT_THROW(s.forward(bad), Error);
  EXPECT_EQ(s.position(), 7);
  const int32_t good[1] = {6};
  EXPECT_NO_THROW(s.forward(good));
  EXPECT_EQ(s.position(), 8);
}

}  // namespace
}  // namespace sharq
