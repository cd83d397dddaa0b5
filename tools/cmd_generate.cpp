// `sharq generate`: load a model, quantize its decoder linears under one mode, prefill the
// (optionally chat-wrapped) prompt and stream sampled tokens to stdout; speeds go to stderr.
// Not an interactive chat loop: one user turn per run.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "sharq/engine/chat.h"
#include "sharq/engine/cuda_backend.h"
#include "sharq/engine/session.h"
#include "sharq/model/load.h"
#include "sharq/parallel.h"
#include "sharq/tokenizer/tokenizer.h"

namespace sharq::tools {
namespace {

struct GenerateArgs {
  std::string model;
  std::string mode = "bf16";
  std::string prompt;
  int64_t n = 128;
  float temp = 0.0f;
  float top_p = 1.0f;
  uint64_t seed = 0;
  bool chat = false;
  int threads = 0;
  std::string device = "cpu";
  std::string kv_cache = "f32";
};

// Bytes of `s` up to the last complete UTF-8 character (tokens may end inside one).
size_t complete_utf8_prefix(const std::string& s) {
  size_t i = s.size();
  int back = 0;
  while (i > 0 && back < 4) {
    const auto b = static_cast<unsigned char>(s[i - 1]);
    --i;
    ++back;
    if ((b & 0xC0) != 0x80) {
      const int len = b < 0x80           ? 1
                      : (b >> 5) == 0x6  ? 2
                      : (b >> 4) == 0xE  ? 3
                      : (b >> 3) == 0x1E ? 4
                                         : 1;
      return back >= len ? s.size() : i;
    }
  }
  return s.size();
}

int run_generate(const GenerateArgs& a) {
  const bool f32 = a.mode == "f32";
  const Mode mode = f32 ? Mode::kBf16 : mode_from_name(a.mode);
  const model::LoadedModel lm = model::load_model(a.model);
  const Tokenizer tok(lm.tokenizer);
  auto backend = engine::make_backend(a.device, a.threads > 0 ? a.threads : default_threads());
  backend->set_kv_cache(parse_kv_cache(a.kv_cache));
  const engine::Model m =
      f32 ? engine::Model::float32(lm, *backend) : engine::Model(lm, mode, *backend);

  std::string text = a.prompt;
  bool add_bos = tok.add_bos_default();
  std::vector<int32_t> stop;
  if (a.chat) {
    const engine::ChatFormat f = engine::detect_chat_format(lm.tokenizer);
    text = engine::apply_chat_template(f, a.prompt);
    if (engine::chat_template_has_bos(f)) add_bos = false;
    stop = engine::chat_stop_ids(lm.tokenizer, f);
  } else if (tok.eos_id() >= 0) {
    stop.push_back(tok.eos_id());
  }
  const std::vector<int32_t> prompt = tok.encode(text, add_bos);
  engine::Session s(m, static_cast<int64_t>(prompt.size()) + a.n);

  std::string pending;
  const engine::SamplingParams params{a.temp, a.top_p, a.seed};
  const engine::GenerateStats st = engine::generate(s, prompt, a.n, params, stop, [&](int32_t id) {
    pending += tok.token_bytes(id);
    const size_t cut = complete_utf8_prefix(pending);
    std::fwrite(pending.data(), 1, cut, stdout);
    std::fflush(stdout);
    pending.erase(0, cut);
    return true;
  });
  std::fwrite(pending.data(), 1, pending.size(), stdout);
  std::printf("\n");
  std::fflush(stdout);
  std::fprintf(stderr, "mode %s, backend %s, %d threads\n", a.mode.c_str(),
               std::string(backend->name()).c_str(), backend->threads());
  std::fprintf(stderr, "prefill: %lld tokens in %.3f s (%.1f tokens/s)\n",
               static_cast<long long>(st.prompt_tokens), st.prefill_seconds,
               static_cast<double>(st.prompt_tokens) / std::max(st.prefill_seconds, 1e-9));
  std::fprintf(stderr, "decode:  %lld tokens in %.3f s (%.1f tokens/s)%s\n",
               static_cast<long long>(st.decode_steps), st.decode_seconds,
               static_cast<double>(st.decode_steps) / std::max(st.decode_seconds, 1e-9),
               st.stopped ? ", stopped at end of turn" : "");
  return 0;
}

}  // namespace

Action register_generate(CLI::App& app) {
  auto args = std::make_shared<GenerateArgs>();
  CLI::App* sub = app.add_subcommand("generate", "Generate text from a prompt under one mode");
  sub->add_option("-m,--model", args->model, "GGUF file or Hugging Face folder")->required();
  sub->add_option("--mode", args->mode,
                  "Mode of the decoder linears (default bf16; f32 = unquantized)");
  sub->add_option("-p,--prompt", args->prompt, "Prompt text")->required();
  sub->add_option("-n", args->n, "Tokens to generate (default 128)")->check(CLI::NonNegativeNumber);
  sub->add_option("--temp", args->temp, "Sampling temperature; 0 = greedy (default)");
  sub->add_option("--top-p", args->top_p, "Nucleus sampling mass in (0, 1] (default 1)");
  sub->add_option("--seed", args->seed, "Sampling RNG seed (default 0)");
  sub->add_flag("--chat", args->chat, "Wrap the prompt as one user turn (ChatML or Llama-3)");
  sub->add_option("--threads", args->threads, "CPU threads (default: SHARQ_THREADS or all)");
  sub->add_option("--device", args->device, "cpu (default), cuda or cuda:N");
  add_kv_cache_option(sub, &args->kv_cache);
  return [args] { return run_generate(*args); };
}

}  // namespace sharq::tools
