// `sharq bench`: end-to-end speed and weight memory per mode on one backend: prefill latency of
// one sequence, decode tokens/s at several batch sizes after contexts of --ctx tokens, and the
// bytes the backend holds for the weights. A real model (-m) or a synthetic one of a real shape
// (--synthetic, random weights: speed only). Table on stdout, progress on stderr, optional JSON.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "commands.h"
#include "sharq/engine/cuda_backend.h"
#include "sharq/engine/session.h"
#include "sharq/error.h"
#include "sharq/model/load.h"
#include "sharq/model/synthetic_model.h"
#include "sharq/parallel.h"

namespace sharq::tools {
namespace {

struct BenchArgs {
  std::string model;
  std::string synthetic;
  int64_t layers = 0;
  std::string modes = "bf16,nvfp4,sharq-nvfp4-24";
  std::string device = "cpu";
  int64_t prefill = 512;
  std::string batches = "1";
  std::string ctxs = "512";
  int64_t steps = 16;
  int repeat = 3;
  std::string json;
  int threads = 0;
  std::string kv_cache = "f32";
};

struct DecodeRow {
  int64_t batch = 0;
  int64_t ctx = 0;
  double seconds = 0.0;  // median over repeats of `steps` decode steps
  double tokens_per_s = 0.0;
  int64_t kv_cache_bytes = 0;  // the session's K and V caches (every layer)
  int64_t steps_replayed = 0;  // of the timed and warm-up steps, those run from a recording
};

struct ModeRow {
  std::string mode;
  int64_t linear_bytes = 0, lm_head_bytes = 0, embed_bytes = 0;
  double prepare_seconds = 0.0;
  double prefill_seconds = 0.0;  // median
  std::vector<DecodeRow> decode;
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::vector<int64_t> parse_int_list(const std::string& s, const char* what) {
  std::vector<int64_t> out;
  size_t b = 0;
  while (b <= s.size()) {
    const size_t e = std::min(s.find(',', b), s.size());
    const std::string item = s.substr(b, e - b);
    if (item.empty() || item.find_first_not_of("0123456789") != std::string::npos ||
        item.size() > 6 || std::stoll(item) <= 0) {
      throw Error(std::string("bad ") + what + " list '" + s + "' (positive integers, commas)");
    }
    out.push_back(std::stoll(item));
    b = e + 1;
  }
  return out;
}

std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab));
  return ids;
}

ModeRow bench_mode(const model::LoadedModel& lm, Mode mode, engine::Backend& be, const BenchArgs& a,
                   const std::vector<int64_t>& batches, const std::vector<int64_t>& ctxs) {
  ModeRow row;
  row.mode = std::string(mode_name(mode));
  double t0 = now_s();
  const engine::Model m(lm, mode, be);
  be.synchronize();
  row.prepare_seconds = now_s() - t0;
  const auto& c = m.config();
  row.linear_bytes = m.linear_weight_bytes();
  row.lm_head_bytes = m.lm_head_bytes();
  row.embed_bytes = c.vocab_size * c.hidden_size * static_cast<int64_t>(sizeof(float));
  std::fprintf(stderr, "%s: weights ready in %.1f s\n", row.mode.c_str(), row.prepare_seconds);

  {  // Prefill: one sequence of --prefill tokens; the first run warms up.
    engine::Session s(m, a.prefill);
    const auto ids = random_ids(a.prefill, c.vocab_size, 1);
    std::vector<double> times;
    for (int r = 0; r <= a.repeat; ++r) {
      s.reset();
      t0 = now_s();
      s.forward_hidden(ids);
      be.synchronize();
      if (r > 0) times.push_back(now_s() - t0);
    }
    row.prefill_seconds = median(times);
    std::fprintf(stderr, "%s: prefill %lld tokens %.2f ms\n", row.mode.c_str(),
                 static_cast<long long>(a.prefill), row.prefill_seconds * 1e3);
  }
  for (int64_t ctx : ctxs) {
    for (int64_t b : batches) {  // Decode: fill the context once, then time decode steps.
      engine::Session s(m, ctx + (a.repeat + 1) * a.steps, b);
      s.forward_hidden(random_ids(b * ctx, c.vocab_size, 2));
      be.synchronize();
      std::vector<double> times;
      const int64_t replayed0 = be.steps_replayed();
      for (int r = 0; r <= a.repeat; ++r) {
        const auto ids = random_ids(b * a.steps, c.vocab_size, 3 + static_cast<uint64_t>(r));
        t0 = now_s();
        for (int64_t i = 0; i < a.steps; ++i) {
          std::vector<int32_t> step(static_cast<size_t>(b));
          for (int64_t j = 0; j < b; ++j) {
            step[static_cast<size_t>(j)] = ids[static_cast<size_t>(j * a.steps + i)];
          }
          s.forward_view(step);  // logits of every sequence reach the host, as in generation
        }
        if (r > 0) times.push_back(now_s() - t0);
      }
      DecodeRow d{b, ctx, median(times), 0.0, s.kv_cache_bytes(), be.steps_replayed() - replayed0};
      d.tokens_per_s = static_cast<double>(b * a.steps) / d.seconds;
      std::fprintf(stderr,
                   "%s: decode batch %lld at ctx %lld: %.1f tokens/s, kv cache %.1f MiB, %lld of "
                   "%lld steps replayed\n",
                   row.mode.c_str(), static_cast<long long>(b), static_cast<long long>(ctx),
                   d.tokens_per_s, static_cast<double>(d.kv_cache_bytes) / (1024.0 * 1024.0),
                   static_cast<long long>(d.steps_replayed),
                   static_cast<long long>((a.repeat + 1) * a.steps));
      row.decode.push_back(d);
    }
  }
  return row;
}

int run_bench(const BenchArgs& a) {
  if (a.model.empty() == a.synthetic.empty()) {
    throw Error("bench: give exactly one of -m/--model and --synthetic");
  }
  const std::vector<int64_t> batches = parse_int_list(a.batches, "--batch");
  const std::vector<int64_t> ctxs = parse_int_list(a.ctxs, "--ctx");
  const std::vector<Mode> modes = parse_mode_list(a.modes);
  const int threads = a.threads > 0 ? a.threads : default_threads();
  auto backend = engine::make_backend(a.device, threads);
  backend->set_kv_cache(parse_kv_cache(a.kv_cache));
  std::fprintf(stderr, "bench: backend %s, kv cache %s\n", std::string(backend->name()).c_str(),
               a.kv_cache.c_str());
  const double t0 = now_s();
  const model::LoadedModel lm = a.synthetic.empty()
                                    ? model::load_model(a.model)
                                    : model::synthetic_model(a.synthetic, 42, threads, a.layers);
  std::fprintf(stderr, "bench: model %s loaded in %.1f s\n", lm.source.c_str(), now_s() - t0);

  std::vector<ModeRow> rows;
  for (Mode mode : modes) rows.push_back(bench_mode(lm, mode, *backend, a, batches, ctxs));

  const double mib = 1024.0 * 1024.0;
  std::printf(
      "backend %s, model %s, kv cache %s, prefill %lld tokens, decode %lld steps after ctx %s\n",
      std::string(backend->name()).c_str(), lm.source.c_str(), a.kv_cache.c_str(),
      static_cast<long long>(a.prefill), static_cast<long long>(a.steps), a.ctxs.c_str());
  std::printf("%-16s %12s %12s %12s %12s", "mode", "linears_MiB", "lm_head_MiB", "prefill_ms",
              "prefill_t/s");
  for (int64_t ctx : ctxs) {
    for (int64_t b : batches) {
      const std::string col =
          "dec_b" + std::to_string(b) + (ctxs.size() > 1 ? "_c" + std::to_string(ctx) : "");
      std::printf(" %12s", col.c_str());
    }
  }
  std::printf("\n");
  for (const ModeRow& r : rows) {
    std::printf("%-16s %12.1f %12.1f %12.2f %12.1f", r.mode.c_str(),
                static_cast<double>(r.linear_bytes) / mib,
                static_cast<double>(r.lm_head_bytes) / mib, r.prefill_seconds * 1e3,
                static_cast<double>(a.prefill) / r.prefill_seconds);
    for (const DecodeRow& d : r.decode) std::printf(" %12.1f", d.tokens_per_s);
    std::printf("\n");
  }
  if (!a.json.empty()) {
    nlohmann::json j;
    j["backend"] = std::string(backend->name());
    j["kv_cache"] = a.kv_cache;
    j["model"] = lm.source;
    j["prefill_tokens"] = a.prefill;
    j["ctx"] = ctxs;
    j["decode_steps"] = a.steps;
    j["repeat"] = a.repeat;
    for (const ModeRow& r : rows) {
      nlohmann::json m{
          {"mode", r.mode},
          {"linear_weight_bytes", r.linear_bytes},
          {"lm_head_bytes", r.lm_head_bytes},
          {"embedding_bytes", r.embed_bytes},
          {"prepare_seconds", r.prepare_seconds},
          {"prefill_seconds", r.prefill_seconds},
          {"prefill_tokens_per_s", static_cast<double>(a.prefill) / r.prefill_seconds}};
      for (const DecodeRow& d : r.decode) {
        m["decode"].push_back({{"batch", d.batch},
                               {"ctx", d.ctx},
                               {"seconds", d.seconds},
                               {"tokens_per_s", d.tokens_per_s},
                               {"kv_cache_bytes", d.kv_cache_bytes},
                               {"steps_replayed", d.steps_replayed}});
      }
      j["results"].push_back(m);
    }
    std::ofstream out(a.json);
    if (!out) throw Error("cannot write JSON output '" + a.json + "'");
    out << j.dump(2) << "\n";
  }
  return 0;
}

}  // namespace

Action register_bench(CLI::App& app) {
  auto args = std::make_shared<BenchArgs>();
  CLI::App* sub = app.add_subcommand("bench", "Prefill latency, decode tokens/s, weight memory");
  sub->add_option("-m,--model", args->model, "GGUF file or Hugging Face folder");
  std::string presets;
  for (const auto& p : model::synthetic_presets()) presets += (presets.empty() ? "" : ", ") + p;
  sub->add_option("--synthetic", args->synthetic,
                  "Random weights in a real model's shape instead of -m (" + presets + ")");
  sub->add_option("--layers", args->layers, "Override the synthetic model's layer count")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--modes", args->modes,
                  "Comma-separated modes or 'all' (default bf16,nvfp4,sharq-nvfp4-24)");
  sub->add_option("--device", args->device, "cpu (default), cuda or cuda:N");
  add_kv_cache_option(sub, &args->kv_cache);
  sub->add_option("--prefill", args->prefill, "Prefill length in tokens (default 512)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  sub->add_option("--batch", args->batches, "Decode batch sizes, comma-separated (default 1)");
  sub->add_option("--ctx", args->ctxs,
                  "Contexts before the timed decode steps, comma-separated (default 512)");
  sub->add_option("--steps", args->steps, "Timed decode steps per repeat (default 16)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 16));
  sub->add_option("--repeat", args->repeat, "Timed repeats after one warm-up; median (default 3)")
      ->check(CLI::Range(1, 1000));
  sub->add_option("--json", args->json, "Write the results as JSON to this file");
  sub->add_option("--threads", args->threads, "CPU threads (default: SHARQ_THREADS or all)");
  return [args] { return run_bench(*args); };
}

}  // namespace sharq::tools
