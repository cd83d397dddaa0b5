// The decoder on tiny in-memory llama / qwen2 / qwen3 models: against a whole-model double
// reference, prefill == token-by-token decode (KV cache), deterministic generation, uniform-logit
// perplexity, every mode end to end, and shape errors. Not the ops (test_backend_ops.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "sharq/cpu/ops.h"
#include "sharq/engine/chat.h"
#include "sharq/engine/model.h"
#include "sharq/engine/perplexity.h"
#include "sharq/engine/session.h"
#include "sharq/error.h"
#include "sharq/weights.h"
#include "tiny_model.h"

namespace sharq {
namespace {

using engine::Model;
using engine::Session;

const std::vector<int32_t> kTokens = {1, 5, 17, 42, 3, 96, 0, 64, 33, 8, 12, 77};

// Whole forward in double from the LoadedModel, for nvfp4-w4a16 (activations unquantized, so
// only the weights need the mode's rule) or, with f32, nothing quantized. Returns logits (T, V).
std::vector<double> reference_logits(const model::LoadedModel& m, const std::vector<int32_t>& ids,
                                     bool f32 = false) {
  const auto& c = m.config;
  const int64_t t = ids.size(), d = c.hidden_size, hd = c.head_dim, H = c.num_heads;
  const int64_t KV = c.num_kv_heads, in = c.intermediate_size, V = c.vocab_size;
  auto T = [&](const std::string& n) -> const std::vector<float>& { return m.tensors.at(n).data; };
  auto deq = [&](const std::string& n) {
    const auto& ft = m.tensors.at(n);
    if (f32) return ft.data;
    std::vector<float> out(ft.data.size());
    dequantize_weight(
        quantize_weight(Mode::kNvfp4W4A16, ft.data.data(), ft.shape[0], ft.shape[1], n),
        out.data());
    return out;
  };
  auto lin = [&](const std::vector<double>& x, const std::vector<float>& w, int64_t n, int64_t k,
                 const std::vector<float>* b) {
    std::vector<double> y(t * n);
    for (int64_t i = 0; i < t; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double a = b ? (*b)[j] : 0.0;
        for (int64_t q = 0; q < k; ++q) a += x[i * k + q] * w[j * k + q];
        y[i * n + j] = a;
      }
    return y;
  };
  auto norm = [&](std::vector<double>& x, const std::vector<float>& w, int64_t k) {
    for (size_t r = 0; r < x.size() / k; ++r) {
      double ss = 0;
      for (int64_t j = 0; j < k; ++j) ss += x[r * k + j] * x[r * k + j];
      const double inv = 1.0 / std::sqrt(ss / k + c.rms_norm_eps);
      for (int64_t j = 0; j < k; ++j) x[r * k + j] *= inv * w[j];
    }
  };
  const auto f = cpu::rope_inv_freq(hd, c.rope_theta, c.rope_scaling);
  auto rope = [&](std::vector<double>& x, int64_t heads) {
    for (int64_t i = 0; i < t; ++i)
      for (int64_t h = 0; h < heads; ++h) {
        double* a = x.data() + (i * heads + h) * hd;
        for (int64_t j = 0; j < hd / 2; ++j) {
          const double ang = double(float(i) * f[j]);
          const double p = a[j], q = a[j + hd / 2];
          a[j] = p * std::cos(ang) - q * std::sin(ang);
          a[j + hd / 2] = q * std::cos(ang) + p * std::sin(ang);
        }
      }
  };
  std::vector<double> x(t * d);
  for (int64_t i = 0; i < t; ++i)
    for (int64_t j = 0; j < d; ++j) x[i * d + j] = T("model.embed_tokens.weight")[ids[i] * d + j];
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    auto h = x;
    norm(h, T(p + "input_layernorm.weight"), d);
    auto bias = [&](const char* n) {
      return c.attention_bias ? &T(p + "self_attn." + n + "_proj.bias") : nullptr;
    };
    auto q = lin(h, deq(p + "self_attn.q_proj.weight"), H * hd, d, bias("q"));
    auto k = lin(h, deq(p + "self_attn.k_proj.weight"), KV * hd, d, bias("k"));
    auto v = lin(h, deq(p + "self_attn.v_proj.weight"), KV * hd, d, bias("v"));
    if (c.qk_norm) {
      norm(q, T(p + "self_attn.q_norm.weight"), hd);
      norm(k, T(p + "self_attn.k_norm.weight"), hd);
    }
    rope(q, H);
    rope(k, KV);
    std::vector<double> a(t * H * hd, 0.0);
    for (int64_t i = 0; i < t; ++i)
      for (int64_t hh = 0; hh < H; ++hh) {
        const int64_t g = hh / (H / KV);
        std::vector<double> s(i + 1);
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j <= i; ++j) {
          double dot = 0;
          for (int64_t e = 0; e < hd; ++e)
            dot += q[(i * H + hh) * hd + e] * k[(j * KV + g) * hd + e];
          mx = std::max(mx, s[j] = dot / std::sqrt(double(hd)));
        }
        for (auto& e : s) sum += (e = std::exp(e - mx));
        for (int64_t j = 0; j <= i; ++j)
          for (int64_t e = 0; e < hd; ++e)
            a[(i * H + hh) * hd + e] += s[j] / sum * v[(j * KV + g) * hd + e];
      }
    auto o = lin(a, deq(p + "self_attn.o_proj.weight"), d, H * hd, nullptr);
    for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
    h = x;
    norm(h, T(p + "post_attention_layernorm.weight"), d);
    auto g = lin(h, deq(p + "mlp.gate_proj.weight"), in, d, nullptr);
    auto u = lin(h, deq(p + "mlp.up_proj.weight"), in, d, nullptr);
    for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
    auto dn = lin(g, deq(p + "mlp.down_proj.weight"), d, in, nullptr);
    for (size_t i = 0; i < x.size(); ++i) x[i] += dn[i];
  }
  norm(x, T("model.norm.weight"), d);
  const bool tied = c.tie_word_embeddings || !m.tensors.count("lm_head.weight");
  std::vector<float> head = T(tied ? "model.embed_tokens.weight" : "lm_head.weight");
  return lin(x, head, V, d, nullptr);
}

double max_abs_diff(const float* a, const float* b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::abs(double(a[i]) - b[i]));
  return m;
}

class Decoder : public ::testing::TestWithParam<const char*> {};

double rel_err(const std::vector<float>& a, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += (a[i] - ref[i]) * (a[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}

TEST_P(Decoder, MatchesDoubleReference) {
  const auto lm = test::tiny_model(test::tiny_config(GetParam()));
  auto be = engine::make_cpu_backend(2);
  const Model m(lm, Mode::kNvfp4W4A16, *be);
  Session s(m, 32);
  EXPECT_LT(rel_err(s.forward(kTokens, true), reference_logits(lm, kTokens)), 1e-5);
}

TEST_P(Decoder, Float32MatchesDoubleReferenceAndDecode) {
  const auto lm = test::tiny_model(test::tiny_config(GetParam()));
  auto be = engine::make_cpu_backend(2);
  const Model m = Model::float32(lm, *be);
  EXPECT_FALSE(m.quantized());
  EXPECT_EQ(m.mode_label(), "f32");
  Session s(m, 32), step(m, 32);
  const auto all = s.forward(kTokens, true);
  EXPECT_LT(rel_err(all, reference_logits(lm, kTokens, true)), 1e-5);
  const int64_t v = lm.config.vocab_size;
  for (size_t i = 0; i < kTokens.size(); ++i) {
    const auto one = step.forward(std::span(kTokens).subspan(i, 1));
    EXPECT_LT(max_abs_diff(one.data(), all.data() + i * v, v), 1e-4) << "token " << i;
  }
}

TEST_P(Decoder, PrefillEqualsTokenByTokenDecode) {
  const auto lm = test::tiny_model(test::tiny_config(GetParam()));
  auto be = engine::make_cpu_backend(2);
  // w4a16 leaves activations unquantized, so batch and single-token calls see the same operands.
  const Model m(lm, Mode::kNvfp4W4A16, *be);
  const int64_t v = lm.config.vocab_size, t = kTokens.size();
  Session batch(m, 32), step(m, 32);
  const auto all = batch.forward(kTokens, true);
  for (int64_t i = 0; i < t; ++i) {
    const auto one = step.forward(std::span(kTokens).subspan(i, 1));
    EXPECT_LT(max_abs_diff(one.data(), all.data() + i * v, v), 1e-4) << "token " << i;
  }
  // Split prefill: 5 tokens, then the rest in one call.
  Session split(m, 32);
  split.forward(std::span(kTokens).subspan(0, 5));
  const auto rest = split.forward(std::span(kTokens).subspan(5), true);
  EXPECT_LT(max_abs_diff(rest.data(), all.data() + 5 * v, (t - 5) * v), 1e-4);
  EXPECT_EQ(split.position(), t);
  EXPECT_THROW(split.forward(std::vector<int32_t>(32, 1)), Error);  // over capacity
}

// Sequences of a batch are independent: a batch-2 session gives each sequence's own logits,
// in prefill and in decode (w4a16: the activation is not quantized, so batching changes nothing).
TEST_P(Decoder, BatchedSequencesEqualSingleSessions) {
  const auto lm = test::tiny_model(test::tiny_config(GetParam()));
  auto be = engine::make_cpu_backend(2);
  const Model m(lm, Mode::kNvfp4W4A16, *be);
  const int64_t v = lm.config.vocab_size;
  const std::vector<int32_t> a(kTokens.begin(), kTokens.begin() + 6);
  const std::vector<int32_t> b(kTokens.begin() + 3, kTokens.begin() + 9);
  std::vector<int32_t> both = a;
  both.insert(both.end(), b.begin(), b.end());
  Session pair(m, 16, 2), sa(m, 16), sb(m, 16);
  const auto lp = pair.forward(both);
  EXPECT_LT(max_abs_diff(lp.data(), sa.forward(a).data(), v), 1e-4);
  EXPECT_LT(max_abs_diff(lp.data() + v, sb.forward(b).data(), v), 1e-4);
  const int32_t next[2] = {7, 11};
  const auto dp = pair.forward(next);
  EXPECT_LT(max_abs_diff(dp.data(), sa.forward(std::span(next, 1)).data(), v), 1e-4);
  EXPECT_LT(max_abs_diff(dp.data() + v, sb.forward(std::span(next + 1, 1)).data(), v), 1e-4);
  EXPECT_THROW(pair.forward(std::span(next, 1)), Error);  // not a multiple of the batch
}

// forward_view gives forward's logits in the session's own reused host buffer: batch 2, prefill
// and decode, each against a twin session running forward.
TEST_P(Decoder, ForwardViewEqualsForward) {
  const auto lm = test::tiny_model(test::tiny_config(GetParam()));
  auto be = engine::make_cpu_backend(2);
  const Model m(lm, Mode::kSharqNvfp4_24, *be);
  Session viewed(m, 16, 2), copied(m, 16, 2);
  const std::vector<int32_t> prompt(kTokens.begin(), kTokens.begin() + 10);
  const std::span<const float> first = viewed.forward_view(prompt);
  EXPECT_EQ(std::vector<float>(first.begin(), first.end()), copied.forward(prompt));
  for (int32_t id : {3, 9, 4}) {
    const int32_t next[2] = {id, id + 1};
    const std::span<const float> got = viewed.forward_view(next);
    EXPECT_EQ(got.data(), first.data());  // the same buffer, reused
    ASSERT_EQ(got.size(), static_cast<size_t>(2 * lm.config.vocab_size));
    EXPECT_EQ(std::vector<float>(got.begin(), got.end()), copied.forward(next));
  }
  EXPECT_THROW(viewed.forward_view(std::span(kTokens).subspan(0, 1)), Error);  // not 2 sequences
}

TEST_P(Decoder, GenerationIsDeterministic) {
  const auto lm = test::tiny_model(test::tiny_config(GetParam()));
  auto be = engine::make_cpu_backend(2);
  const Model m(lm, Mode::kSharqNvfp4, *be);
  auto run = [&](engine::SamplingParams p) {
    Session s(m, 64);
    std::vector<int32_t> out;
    const auto st = engine::generate(s, std::span(kTokens).subspan(0, 4), 20, p, {},
                                     [&](int32_t id) { return out.push_back(id), true; });
    EXPECT_EQ(st.generated_tokens, 20);
    EXPECT_EQ(st.decode_steps, 19);
    return out;
  };
  EXPECT_EQ(run({}), run({}));
  const engine::SamplingParams hot{1.0f, 0.9f, 1234};
  EXPECT_EQ(run(hot), run(hot));
  // Tied tiny llama is sharply peaked: a high temperature makes the seeds matter.
  EXPECT_NE(run({20.0f, 1.0f, 1}), run({20.0f, 1.0f, 2}));
  EXPECT_EQ(run({1.0f, 1e-6f, 5}), run({}));  // a nucleus of one token is greedy
}

TEST_P(Decoder, EveryModeRunsEndToEnd) {
  const auto lm = test::tiny_model(test::tiny_config(GetParam()));
  auto be = engine::make_cpu_backend(2);
  std::vector<int32_t> toks;
  for (int i = 0; i < 40; ++i) toks.push_back((i * 37 + 11) % 97);
  for (Mode mode : all_modes()) {
    const Model m(lm, mode, *be);
    int calls = 0;
    const auto r = engine::perplexity(m, toks, {16, 0, 5}, [&](const auto&) { ++calls; });
    EXPECT_EQ(r.windows, 2) << mode_name(mode);
    EXPECT_EQ(calls, 2);
    EXPECT_EQ(r.tokens_evaluated, 30);
    EXPECT_TRUE(std::isfinite(r.perplexity) && r.perplexity > 1.0) << mode_name(mode);
  }
}

INSTANTIATE_TEST_SUITE_P(Archs, Decoder, ::testing::Values("llama", "qwen2", "qwen3"));

// The FP16 KV cache on the CPU: logits close to the float32 cache's (each cached value moves by
// at most 2^-11 of itself), greedy decoding runs, and a session refuses to run once the backend's
// format changed under it (its caches are in the old one); a new session runs.
TEST_P(Decoder, F16KvCacheIsCloseAndFixedPerSession) {
  const auto lm = test::tiny_model(test::tiny_config(GetParam()));
  auto be = engine::make_cpu_backend(2);
  const Model m(lm, Mode::kNvfp4W4A16, *be);
  Session s32(m, 32);
  const auto l32 = s32.forward(kTokens, true);
  be->set_kv_cache(KvCache::kF16);
  Session s16(m, 32);
  EXPECT_EQ(s16.kv_cache(), KvCache::kF16);
  // The CPU keeps float32 storage either way: 2 caches x layers x kv_heads x 32 x head_dim floats.
  const auto& c = lm.config;
  EXPECT_EQ(s32.kv_cache_bytes(), 2 * c.num_layers * c.num_kv_heads * 32 * c.head_dim * 4);
  EXPECT_EQ(s16.kv_cache_bytes(), s32.kv_cache_bytes());
  const auto l16 = s16.forward(kTokens, true);
  const double e = rel_err(l16, std::vector<double>(l32.begin(), l32.end()));
  EXPECT_GT(e, 0.0);  // the rounding is there
  EXPECT_LT(e, 1e-2);
  EXPECT_THROW(s32.forward(std::span(kTokens).subspan(0, 1)), Error);
  be->set_kv_cache(KvCache::kF32);
  EXPECT_THROW(s16.forward(std::span(kTokens).subspan(0, 1)), Error);
  EXPECT_NO_THROW(s32.forward(std::span(kTokens).subspan(0, 1)));
}

TEST(Perplexity, UniformLogitsGiveVocabSize) {
  auto cfg = test::tiny_config("qwen2");
  auto lm = test::tiny_model(cfg);
  for (auto& x : lm.tensors.at("lm_head.weight").data) x = 0.0f;
  auto be = engine::make_cpu_backend(1);
  const Model m(lm, Mode::kSharqNvfp4, *be);
  std::vector<int32_t> toks(50);
  for (int i = 0; i < 50; ++i) toks[i] = i % 97;
  const auto r = engine::perplexity(m, toks, {24, 0, 7});
  EXPECT_EQ(r.windows, 2);
  EXPECT_EQ(r.tokens_evaluated, 46);
  EXPECT_NEAR(r.perplexity, 97.0, 97.0 * 1e-9);
  EXPECT_THROW(engine::perplexity(m, toks, {51, 0, 7}), Error);
  EXPECT_EQ(engine::perplexity(m, toks, {10, 25, 7}).windows, 2);  // max_tokens
}

TEST(Model, ShapeAndArchErrorsNameTheTensor) {
  auto lm = test::tiny_model(test::tiny_config("qwen3"));
  auto be = engine::make_cpu_backend(1);
  lm.tensors.erase("model.layers.1.self_attn.k_norm.weight");
  try {
    Model m(lm, Mode::kBf16, *be);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.1.self_attn.k_norm.weight"),
              std::string::npos);
  }
  auto lm2 = test::tiny_model(test::tiny_config("llama"));
  lm2.tensors.at("model.layers.0.mlp.up_proj.weight").shape = {64, 128};
  EXPECT_THROW(Model(lm2, Mode::kBf16, *be), Error);
  lm2.config.arch = "gpt2";
  EXPECT_THROW(Model(lm2, Mode::kBf16, *be), Error);
}

TEST(Chat, TemplatesAndStopTokens) {
  model::TokenizerData tok;
  tok.vocab = {"a", "<|im_start|>", "<|im_end|>", "<|endoftext|>"};
  tok.eos_id = 3;
  EXPECT_EQ(engine::detect_chat_format(tok), engine::ChatFormat::kChatML);
  EXPECT_EQ(engine::apply_chat_template(engine::ChatFormat::kChatML, "hi"),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(engine::chat_stop_ids(tok, engine::ChatFormat::kChatML), (std::vector<int32_t>{3, 2}));
  tok.chat_template = "{{ '<|start_header_id|>' }}";
  EXPECT_EQ(engine::detect_chat_format(tok), engine::ChatFormat::kLlama3);
  model::TokenizerData none;
  none.vocab = {"a"};
  EXPECT_THROW(engine::detect_chat_format(none), Error);
}

}  // namespace
}  // namespace sharq
