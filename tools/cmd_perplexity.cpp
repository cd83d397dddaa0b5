// `sharq perplexity`: tokenizes a text file once, then for each mode quantizes the decoder linears
// and scores non-overlapping windows of --ctx tokens; prints a table and optionally JSON. Progress
// (with ETA) goes to stderr. Not the eval tool's token metrics (KL, top-1): see sharq eval.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "commands.h"
#include "sharq/engine/cuda_backend.h"
#include "sharq/engine/perplexity.h"
#include "sharq/error.h"
#include "sharq/model/load.h"
#include "sharq/parallel.h"
#include "sharq/tokenizer/tokenizer.h"

namespace sharq::tools {
namespace {

struct PerplexityArgs {
  std::string model;
  std::string text;
  std::string modes = "bf16";
  int64_t ctx = 512;
  int64_t max_tokens = 0;
  std::string json;
  int threads = 0;
  std::string device = "cpu";
  std::string kv_cache = "f32";
};

struct ModeRow {
  std::string mode;
  engine::PerplexityResult r;
  double prepare_seconds = 0.0;
};

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot open text file '" + path + "'");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string clock_str(double s) {
  const long long t = static_cast<long long>(s + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld:%02lld", t / 60, t % 60);
  return buf;
}

// A bar redrawn in place on a terminal; one line per ~10% (and the last window) otherwise.
class Progress {
 public:
  explicit Progress(std::string mode) : mode_(std::move(mode)), tty_(isatty(STDERR_FILENO)) {}
  void operator()(const engine::PerplexityProgress& p) {
    const double rate = static_cast<double>(p.tokens_done) / std::max(p.seconds, 1e-9);
    const double eta = p.seconds / static_cast<double>(p.windows_done) *
                       static_cast<double>(p.windows_total - p.windows_done);
    if (tty_) {
      constexpr int kWidth = 30;
      const int fill = static_cast<int>(kWidth * p.windows_done / p.windows_total);
      std::fprintf(stderr, "\r%-16s [%s%s] %lld/%lld windows  %.0f tok/s  ETA %s ", mode_.c_str(),
                   std::string(static_cast<size_t>(fill), '#').c_str(),
                   std::string(static_cast<size_t>(kWidth - fill), '.').c_str(),
                   static_cast<long long>(p.windows_done), static_cast<long long>(p.windows_total),
                   rate, clock_str(eta).c_str());
      if (p.windows_done == p.windows_total) std::fprintf(stderr, "\n");
      return;
    }
    const int64_t decile = 10 * p.windows_done / p.windows_total;
    if (decile == last_decile_ && p.windows_done != p.windows_total) return;
    last_decile_ = decile;
    std::fprintf(stderr, "%s: %lld/%lld windows, %.0f tok/s, elapsed %s, ETA %s\n", mode_.c_str(),
                 static_cast<long long>(p.windows_done), static_cast<long long>(p.windows_total),
                 rate, clock_str(p.seconds).c_str(), clock_str(eta).c_str());
  }

 private:
  std::string mode_;
  bool tty_;
  int64_t last_decile_ = 0;
};

int run_perplexity(const PerplexityArgs& a) {
  // "f32" (unquantized reference) may appear in the list besides the modes and "all".
  std::vector<std::optional<Mode>> modes;
  for (size_t b = 0; b <= a.modes.size();) {
    const size_t e = std::min(a.modes.find(',', b), a.modes.size());
    const std::string item = a.modes.substr(b, e - b);
    if (item == "f32") {
      modes.emplace_back(std::nullopt);
    } else {
      for (Mode m : parse_mode_list(item)) modes.emplace_back(m);
    }
    b = e + 1;
  }
  const model::LoadedModel lm = model::load_model(a.model);
  const Tokenizer tok(lm.tokenizer);
  const std::vector<int32_t> tokens = tok.encode(read_file(a.text), tok.add_bos_default());
  auto backend = engine::make_backend(a.device, a.threads > 0 ? a.threads : default_threads());
  backend->set_kv_cache(parse_kv_cache(a.kv_cache));
  const engine::PerplexityOptions opt{a.ctx, a.max_tokens, 64};
  std::fprintf(
      stderr, "%s: %zu tokens, ctx %lld, backend %s, %d threads, kv cache %s, %zu mode(s)\n",
      a.text.c_str(), tokens.size(), static_cast<long long>(a.ctx),
      std::string(backend->name()).c_str(), backend->threads(), a.kv_cache.c_str(), modes.size());

  std::vector<ModeRow> rows;
  for (const std::optional<Mode>& mode : modes) {
    ModeRow row;
    const auto t0 = std::chrono::steady_clock::now();
    const engine::Model m =
        mode ? engine::Model(lm, *mode, *backend) : engine::Model::float32(lm, *backend);
    row.mode = m.mode_label();
    row.prepare_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    Progress progress(row.mode);
    row.r = engine::perplexity(m, tokens, opt, std::ref(progress));
    rows.push_back(row);
  }

  std::printf("%-16s %12s %10s %8s %10s %10s\n", "mode", "perplexity", "tokens", "windows",
              "quant_s", "eval_s");
  for (const ModeRow& r : rows) {
    std::printf("%-16s %12.4f %10lld %8lld %10.2f %10.2f\n", r.mode.c_str(), r.r.perplexity,
                static_cast<long long>(r.r.tokens_evaluated), static_cast<long long>(r.r.windows),
                r.prepare_seconds, r.r.seconds);
  }
  if (!a.json.empty()) {
    nlohmann::json j;
    j["model"] = a.model;
    j["text"] = a.text;
    j["ctx"] = a.ctx;
    j["tokens_in_text"] = tokens.size();
    j["threads"] = backend->threads();
    j["backend"] = std::string(backend->name());
    j["kv_cache"] = a.kv_cache;
    for (const ModeRow& r : rows) {
      j["results"].push_back({{"mode", r.mode},
                              {"perplexity", r.r.perplexity},
                              {"mean_nll", r.r.mean_nll},
                              {"tokens_evaluated", r.r.tokens_evaluated},
                              {"windows", r.r.windows},
                              {"quantize_seconds", r.prepare_seconds},
                              {"seconds", r.r.seconds}});
    }
    std::ofstream out(a.json);
    if (!out) throw Error("cannot write JSON output '" + a.json + "'");
    out << j.dump(2) << "\n";
  }
  return 0;
}

}  // namespace

Action register_perplexity(CLI::App& app) {
  auto args = std::make_shared<PerplexityArgs>();
  CLI::App* sub = app.add_subcommand("perplexity", "Perplexity of a text file per mode");
  sub->add_option("-m,--model", args->model, "GGUF file or Hugging Face folder")->required();
  sub->add_option("-f,--file", args->text, "Text file to score")->required();
  sub->add_option("--modes", args->modes,
                  "Comma-separated modes, 'all', and/or f32 (unquantized) (default bf16)");
  sub->add_option("--ctx", args->ctx, "Window length in tokens (default 512)")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  sub->add_option("--max-tokens", args->max_tokens, "Use at most N tokens of the text (0 = all)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--json", args->json, "Write the results as JSON to this file");
  sub->add_option("--threads", args->threads, "CPU threads (default: SHARQ_THREADS or all)");
  sub->add_option("--device", args->device, "cpu (default), cuda or cuda:N");
  add_kv_cache_option(sub, &args->kv_cache);
  return [args] { return run_perplexity(*args); };
}

}  // namespace sharq::tools
