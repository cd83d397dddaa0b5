// `sharq logits -m MODEL --tokens 1,2,3 [--mode f32|MODE] -o OUT.npy`: the (T, V) float32 logits
// of one prefill over the given token ids, for tests/hf/compare_logits.py. Not a tokenizer front
// end: ids go in as they are (no BOS added).
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "sharq/engine/session.h"
#include "sharq/error.h"
#include "sharq/model/load.h"
#include "sharq/npy.h"
#include "sharq/parallel.h"

namespace sharq::tools {
namespace {

struct LogitsArgs {
  std::string model;
  std::string tokens;
  std::string mode = "f32";
  std::string out;
  int threads = 0;
};

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  for (size_t b = 0; b < s.size();) {
    const size_t e = std::min(s.find(',', b), s.size());
    try {
      ids.push_back(static_cast<int32_t>(std::stol(s.substr(b, e - b))));
    } catch (const std::exception&) {
      throw Error("--tokens: '" + s.substr(b, e - b) + "' is not a token id");
    }
    b = e + 1;
  }
  if (ids.empty()) throw Error("--tokens: no token ids");
  return ids;
}

int run_logits(const LogitsArgs& a) {
  const std::vector<int32_t> ids = parse_ids(a.tokens);
  const model::LoadedModel lm = model::load_model(a.model);
  auto backend = engine::make_cpu_backend(a.threads > 0 ? a.threads : default_threads());
  const engine::Model m = a.mode == "f32" ? engine::Model::float32(lm, *backend)
                                          : engine::Model(lm, mode_from_name(a.mode), *backend);
  engine::Session s(m, static_cast<int64_t>(ids.size()));
  const std::vector<float> logits = s.forward(ids, true);
  write_npy_f32(a.out, logits.data(), static_cast<int64_t>(ids.size()), lm.config.vocab_size);
  return 0;
}

}  // namespace

Action register_logits(CLI::App& app) {
  auto args = std::make_shared<LogitsArgs>();
  CLI::App* sub = app.add_subcommand("logits", "Write the (T, V) logits of token ids as .npy");
  sub->add_option("-m,--model", args->model, "GGUF file or Hugging Face folder")->required();
  sub->add_option("--tokens", args->tokens, "Comma-separated token ids")->required();
  sub->add_option("--mode", args->mode, "f32 (unquantized, default) or a mode name");
  sub->add_option("-o,--out", args->out, "Output .npy file")->required();
  sub->add_option("--threads", args->threads, "CPU threads (default: SHARQ_THREADS or all)");
  return [args] { return run_logits(*args); };
}

}  // namespace sharq::tools
