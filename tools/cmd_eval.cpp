// `sharq eval -m MODEL -f TEXT [--modes all|M1,...] [--ctx 512] [--max-tokens N] [--out DIR]`
// The accuracy study: perplexity, KL vs bf16, top-1 agreement and gap recovery per mode, plus
// per-layer errors; writes report.md, report.json and plots. Experiment variants via --variants.
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "commands.h"
#include "progress_bar.h"
#include "sharq/error.h"
#include "sharq/eval/eval_run.h"
#include "sharq/model/load.h"
#include "sharq/tokenizer/tokenizer.h"

namespace sharq::tools {
namespace {

struct EvalArgs {
  std::string model, text, out = "eval-report";
  std::string modes = "all";
  std::string variants;
  std::string variant_mode = "sharq-nvfp4";
  int64_t ctx = 512, max_tokens = 0, layer_tokens = 128;
  int threads = 0;
  std::string command;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot open text file '" + path + "'");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// "res-g32,per-token+fp8-decoded" -> two variants; '+' combines flags within one.
std::vector<Variant> parse_variants(const std::string& list) {
  std::vector<Variant> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    for (char& c : item) c = c == '+' ? ',' : c;
    out.push_back(Variant::parse(item));
  }
  return out;
}

std::string today() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", std::gmtime(&t));
  return buf;
}

int run_eval_cmd(const EvalArgs& a) {
  eval::EvalOptions opt;
  opt.modes = parse_mode_list(a.modes);
  opt.variants = parse_variants(a.variants);
  opt.variant_mode = mode_from_name(a.variant_mode);
  opt.ctx = a.ctx;
  opt.max_tokens = a.max_tokens;
  opt.layer_tokens = a.layer_tokens;
  opt.threads = a.threads;
  const model::LoadedModel lm = model::load_model(a.model);
  const Tokenizer tok(lm.tokenizer);
  const std::vector<int32_t> tokens = tok.encode(slurp(a.text), tok.add_bos_default());
  std::fprintf(stderr, "%s: %zu tokens, ctx %lld, %zu mode(s), %zu variant(s)\n", a.text.c_str(),
               tokens.size(), static_cast<long long>(a.ctx), opt.modes.size(), opt.variants.size());
  ProgressBar bar("steps");
  eval::EvalReport r = eval::run_eval(lm, tokens, opt, [&](const eval::EvalProgress& p) {
    bar.update(p.what, p.done, p.total, p.seconds);
  });
  r.model = a.model;
  r.text = a.text;
  r.command = a.command;
  r.date = today();
  eval::write_report(r, a.out);

  std::printf("%-28s %11s %10s %10s %8s %14s\n", "mode", "perplexity", "KL_mean", "KL_p99", "top1",
              "gap_recovered");
  for (const auto& m : r.modes) {
    char gap[32] = "-";
    if (m.has_gap) std::snprintf(gap, sizeof gap, "%.1f%%", 100.0 * m.gap_recovery);
    std::printf("%-28s %11.4f %10.5f %10.4f %7.2f%% %14s\n", m.mode.c_str(), m.perplexity,
                m.kl_mean, m.kl_p99, 100.0 * m.top1, gap);
  }
  std::printf("report: %s/report.md\n", a.out.c_str());
  return 0;
}

}  // namespace

Action register_eval(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  CLI::App* sub = app.add_subcommand("eval", "Accuracy study: modes vs bf16, per-layer errors");
  sub->add_option("-m,--model", args->model, "GGUF file or Hugging Face folder")->required();
  sub->add_option("-f,--file", args->text, "Text file to evaluate on")->required();
  sub->add_option("--modes", args->modes, "'all' (default) or comma-separated modes");
  sub->add_option("--ctx", args->ctx, "Window length in tokens (default 512)")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  sub->add_option("--max-tokens", args->max_tokens, "Use at most N tokens (0 = all)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--out", args->out, "Report folder (default eval-report)");
  sub->add_option("--variants", args->variants,
                  "Experiments on --variant-mode, comma-separated; '+' combines: res-g32, "
                  "per-token, energy-pairs, fp8-decoded");
  sub->add_option("--variant-mode", args->variant_mode, "Mode the variants modify (sharq-nvfp4)");
  sub->add_option("--layer-tokens", args->layer_tokens,
                  "Tokens of each layer input used for per-layer errors (0 = skip)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--threads", args->threads, "CPU threads (default: SHARQ_THREADS or all)");
  return [args] {
    args->command = "sharq eval";
    for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
             {"-m", args->model},
             {"-f", args->text},
             {"--modes", args->modes},
             {"--ctx", std::to_string(args->ctx)},
             {"--max-tokens", std::to_string(args->max_tokens)},
             {"--variants", args->variants},
             {"--layer-tokens", std::to_string(args->layer_tokens)},
             {"--out", args->out}}) {
      if (!v.empty()) args->command += " " + k + " " + v;
    }
    return run_eval_cmd(*args);
  };
}

}  // namespace sharq::tools
