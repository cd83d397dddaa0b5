// Activation quantization / SharQ decomposition throughput per mode on a 2048 x 4096
// LLM-like activation (outlier channels), 1 thread and all cores. Elements/s = items/s.
// Run: build/bench/bench_decompose [--benchmark_filter=sharq-nvfp4/]
#include <benchmark/benchmark.h>

#include <string>
#include <thread>
#include <vector>

#include "sharq/decompose.h"
#include "sharq/modes.h"
#include "sharq/synthetic.h"

namespace {

constexpr int64_t kRows = 2048, kCols = 4096;

const std::vector<float>& input() {
  static const std::vector<float> x = sharq::synthetic_activation(kRows, kCols, 2024);
  return x;
}

void bm_fake_quantize(benchmark::State& state, sharq::Mode mode) {
  const int threads = static_cast<int>(state.range(0));
  const auto& x = input();
  std::vector<float> out(x.size());
  for (auto _ : state) {
    sharq::fake_quantize_activation(mode, x.data(), kRows, kCols, out.data(), "bench.x", threads);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kRows * kCols);
}

void bm_full_decomposition(benchmark::State& state, sharq::Mode mode) {
  const int threads = static_cast<int>(state.range(0));
  const auto& x = input();
  for (auto _ : state) {
    auto q = sharq::quantize_activation(mode, x.data(), kRows, kCols, "bench.x", threads);
    benchmark::DoNotOptimize(q.dequant.data());
  }
  state.SetItemsProcessed(state.iterations() * kRows * kCols);
}

const int kRegistered = [] {
  const int cores = std::max(1u, std::thread::hardware_concurrency());
  for (sharq::Mode m : sharq::all_modes()) {
    const std::string name(sharq::mode_name(m));
    auto* b = benchmark::RegisterBenchmark(("fake_quantize/" + name).c_str(), bm_fake_quantize, m);
    b->Arg(1)->UseRealTime()->Unit(benchmark::kMillisecond);
    if (cores > 1) b->Arg(cores);
  }
  for (sharq::Mode m : {sharq::Mode::kSharqNvfp4, sharq::Mode::kSharqNvfp4_24}) {
    const std::string name(sharq::mode_name(m));
    auto* b =
        benchmark::RegisterBenchmark(("decompose_full/" + name).c_str(), bm_full_decomposition, m);
    b->Arg(1)->UseRealTime()->Unit(benchmark::kMillisecond);
    if (cores > 1) b->Arg(cores);
  }
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
