// run_eval: bf16 reference logits once, then every mode and variant over the same windows;
// per-layer statistics from the inputs recorded during the reference's first window.
#include "sharq/eval/eval_run.h"

#include <algorithm>
#include <chrono>

#include "sharq/engine/backend.h"
#include "sharq/engine/model.h"
#include "sharq/engine/session.h"
#include "sharq/error.h"
#include "sharq/eval/eval_backend.h"
#include "sharq/eval/layer_stats.h"
#include "sharq/eval/metrics.h"
#include "sharq/parallel.h"

namespace sharq::eval {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Finds the captured input whose name starts with prefix and contains `part`.
const CapturedInput* find_capture(const Captures& c, const std::string& prefix,
                                  const std::string& part) {
  for (const auto& [name, in] : c) {
    if (name.rfind(prefix, 0) == 0 && name.find(part) != std::string::npos) return &in;
  }
  return nullptr;
}

}  // namespace

EvalReport run_eval(const model::LoadedModel& m, std::span<const int32_t> tokens,
                    const EvalOptions& opt,
                    const std::function<void(const EvalProgress&)>& progress) {
  const int64_t usable =
      opt.max_tokens > 0 ? std::min<int64_t>(opt.max_tokens, static_cast<int64_t>(tokens.size()))
                         : static_cast<int64_t>(tokens.size());
  if (opt.ctx < 2) throw Error("eval: --ctx must be at least 2");
  const int64_t windows = usable / opt.ctx;
  if (windows == 0) {
    throw Error("eval: the text has " + std::to_string(usable) +
                " usable tokens, fewer than one window of --ctx " + std::to_string(opt.ctx));
  }
  const int threads = opt.threads > 0 ? opt.threads : default_threads();
  const int64_t vocab = m.config.vocab_size;
  const auto t_start = Clock::now();

  std::vector<Mode> modes;
  for (Mode md : opt.modes) {
    if (md != Mode::kBf16) modes.push_back(md);
  }
  const int64_t runs = 1 + static_cast<int64_t>(modes.size() + opt.variants.size());
  const int64_t total = runs * windows + (opt.layer_tokens > 0 ? m.config.num_layers : 0);
  int64_t done = 0;
  auto report_progress = [&](const std::string& what) {
    if (progress) progress({what, done, total, since(t_start)});
  };

  EvalReport report;
  report.ctx = opt.ctx;
  report.tokens = windows * (opt.ctx - 1);
  auto backend = engine::make_cpu_backend(threads);

  // The reference: bf16, recording layer inputs in its first window.
  Captures captures;
  std::vector<std::vector<float>> ref_logits(static_cast<size_t>(windows));
  {
    const auto t0 = Clock::now();
    EvalBackend be(*backend, Variant{}, opt.layer_tokens > 0 ? &captures : nullptr,
                   opt.layer_tokens);
    const engine::Model model(m, Mode::kBf16, be);
    engine::Session s(model, opt.ctx);
    TokenStats st;
    for (int64_t w = 0; w < windows; ++w) {
      s.reset();
      ref_logits[w] = s.forward(tokens.subspan(w * opt.ctx, opt.ctx), true);
      be.stop_capture();
      for (int64_t i = 0; i + 1 < opt.ctx; ++i) {
        const float* row = ref_logits[w].data() + i * vocab;
        st.add(row, row, vocab, tokens[w * opt.ctx + i + 1]);
      }
      ++done;
      report_progress("bf16");
    }
    report.modes.push_back({"bf16", st.perplexity(), st.tokens, st.kl_mean(), st.kl_p99(),
                            st.top1_agreement(), 0.0, false, "", since(t0)});
  }

  auto evaluate = [&](Mode mode, const Variant& variant) {
    const std::string name = std::string(mode_name(mode)) + variant.suffix();
    const auto t0 = Clock::now();
    EvalBackend be(*backend, variant, nullptr, 0);
    const engine::Model model(m, mode, be);
    engine::Session s(model, opt.ctx);
    TokenStats st;
    for (int64_t w = 0; w < windows; ++w) {
      s.reset();
      const std::vector<float> logits = s.forward(tokens.subspan(w * opt.ctx, opt.ctx), true);
      for (int64_t i = 0; i + 1 < opt.ctx; ++i) {
        st.add(logits.data() + i * vocab, ref_logits[w].data() + i * vocab, vocab,
               tokens[w * opt.ctx + i + 1]);
      }
      ++done;
      report_progress(name);
    }
    report.modes.push_back({name, st.perplexity(), st.tokens, st.kl_mean(), st.kl_p99(),
                            st.top1_agreement(), 0.0, false, "", since(t0)});
  };
  for (Mode md : modes) evaluate(md, Variant{});
  for (const Variant& v : opt.variants) evaluate(opt.variant_mode, v);
  compute_gap_recovery(report);

  if (opt.layer_tokens > 0) {
    std::vector<Mode> layer_modes(modes.size() + 1, Mode::kBf16);
    std::copy(modes.begin(), modes.end(), layer_modes.begin() + 1);
    for (int64_t l = 0; l < m.config.num_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      const struct {
        const char* input_part;
        const char* weight;
      } linears[] = {{"qkv.input", "self_attn.q_proj"},  {"qkv.input", "self_attn.k_proj"},
                     {"qkv.input", "self_attn.v_proj"},  {"o_proj", "self_attn.o_proj"},
                     {"gate_up.input", "mlp.gate_proj"}, {"gate_up.input", "mlp.up_proj"},
                     {"down_proj", "mlp.down_proj"}};
      for (const auto& lin : linears) {
        const CapturedInput* in = find_capture(captures, p, lin.input_part);
        const auto wt = m.tensors.find(p + lin.weight + ".weight");
        if (!in || wt == m.tensors.end()) {
          throw Error(std::string("eval: no recorded input or weight for ") + p + lin.weight);
        }
        const int64_t n = wt->second.shape.at(0);
        report.layers.push_back(layer_stats(p + lin.weight, in->x.data(), in->rows, in->k,
                                            wt->second.data.data(), n, layer_modes, threads));
      }
      ++done;
      report_progress("layers");
    }
  }
  return report;
}

}  // namespace sharq::eval
