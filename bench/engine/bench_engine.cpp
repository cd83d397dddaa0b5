// CPU engine prefill throughput (tokens/s) per mode on a model-sized synthetic decoder with
// random weights (SmolLM2-135M shapes by default), via Google Benchmark. Not an accuracy check.
// Config from the environment: SHARQ_BENCH_MODEL=smollm-135m|smollm-360m|qwen2.5-0.5b.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../../tests/engine/tiny_model.h"
#include "sharq/engine/perplexity.h"
#include "sharq/engine/session.h"

namespace sharq {
namespace {

model::ModelConfig bench_config() {
  const char* env = std::getenv("SHARQ_BENCH_MODEL");
  const std::string name = env ? env : "smollm-135m";
  model::ModelConfig c = test::tiny_config("llama");
  c.rope_scaling = {};
  c.rope_theta = 100000.0f;
  c.vocab_size = 49152;
  c.tie_word_embeddings = true;
  if (name == "smollm-360m") {
    c.hidden_size = 960, c.intermediate_size = 2560, c.num_layers = 32;
    c.num_heads = 15, c.num_kv_heads = 5, c.head_dim = 64;
  } else if (name == "qwen2.5-0.5b") {
    c = test::tiny_config("qwen2");
    c.vocab_size = 151936, c.hidden_size = 896, c.intermediate_size = 4864, c.num_layers = 24;
    c.num_heads = 14, c.num_kv_heads = 2, c.head_dim = 64, c.tie_word_embeddings = true;
  } else {
    c.hidden_size = 576, c.intermediate_size = 1536, c.num_layers = 30;
    c.num_heads = 9, c.num_kv_heads = 3, c.head_dim = 64;
  }
  return c;
}

const model::LoadedModel& bench_model() {
  static const model::LoadedModel m = test::tiny_model(bench_config(), 1);
  return m;
}

// Prefill of T tokens from an empty cache, as one perplexity window does (LM head included for
// every row, as perplexity needs it).
void BM_Prefill(benchmark::State& state, Mode mode) {
  const int64_t t = state.range(0);
  auto be = engine::make_cpu_backend(0);
  const engine::Model m(bench_model(), mode, *be);
  std::vector<int32_t> toks(static_cast<size_t>(t));
  for (int64_t i = 0; i < t; ++i) toks[i] = static_cast<int32_t>((i * 7919) % 49152);
  for (auto _ : state) {
    const auto r = engine::perplexity(m, toks, {t, 0, 64});
    benchmark::DoNotOptimize(r.perplexity);
  }
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(t * state.iterations()), benchmark::Counter::kIsRate);
}

// Decode: one token after a 128-token prompt.
void BM_Decode(benchmark::State& state, Mode mode) {
  auto be = engine::make_cpu_backend(0);
  const engine::Model m(bench_model(), mode, *be);
  std::vector<int32_t> prompt(128, 5);
  engine::Session s(m, 4096);
  s.forward(prompt);
  const int32_t next[1] = {7};
  for (auto _ : state) {
    if (s.position() >= s.capacity()) s.reset();
    benchmark::DoNotOptimize(s.forward(next));
  }
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

int register_all() {
  for (Mode mode : all_modes()) {
    const std::string n(mode_name(mode));
    benchmark::RegisterBenchmark(("prefill/" + n).c_str(), BM_Prefill, mode)
        ->Arg(512)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  for (Mode mode : {Mode::kBf16, Mode::kSharqNvfp4}) {
    benchmark::RegisterBenchmark(("decode/" + std::string(mode_name(mode))).c_str(), BM_Decode,
                                 mode)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  return 0;
}
const int registered = register_all();

}  // namespace
}  // namespace sharq

BENCHMARK_MAIN();
