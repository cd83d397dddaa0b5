// The CUDA backend's L2 prefetch of the next decode product's weights (cuda::l2_prefetch_weights,
// l2_prefetch_plan.h). Between two FP4 products a decode step runs a chain of small kernels that
// leave HBM mostly idle; a prefetch issued right after one product, on a side branch of the
// recorded step, moves the leading part of the next product's weights into L2 meanwhile.
//
// The order of products is learned from the steps themselves (a step's products always run in
// the same order, and a key's first step runs eagerly before its graph is recorded): each decode
// product launch notes which product followed the previous one. Only recorded steps prefetch,
// because their side branch is joined before the recording ends; a wrong guess costs bandwidth,
// never a result (a prefetch writes nothing). Weights that go away are forgotten, so no prefetch
// ever names freed memory.
//
// Off by default: on an H100 (session 9, docs/RESULTS.md) batch-1 and batch-8 decode measured the
// same with and without it (budgets 16-40 MiB, bulk prefetch or plain loads), although each
// product alone runs 8-15% faster from L2 (dev/cuda/l2_prefetch_probe.cu): the products are
// bound by their own fixed costs, not by HBM, and the programmatic-dependent launch already
// requests most of a small product's bytes before the kernel ahead of it ends.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "sharq/cuda/kernels.h"
#include "side_branch.h"

namespace sharq::engine {

class NextProductPrefetch {
 public:
  // Budget per prefetch: SHARQ_CUDA_L2_PREFETCH_MB (MiB, fractions allowed; 0, the default,
  // turns it off).
  static constexpr int64_t kDefaultMiB = 0;

  explicit NextProductPrefetch(cudaStream_t main)
      : side_(main), budget_(prefetch_budget("SHARQ_CUDA_L2_PREFETCH_MB", kDefaultMiB)) {}
  NextProductPrefetch(const NextProductPrefetch&) = delete;
  NextProductPrefetch& operator=(const NextProductPrefetch&) = delete;

  bool enabled() const { return budget_ > 0; }

  // A decode product was just launched on the main stream: `key` names it (its first linear),
  // `owners` are the linears whose weights `parts` are. While recording, the weights of the
  // product that followed it last time are prefetched on the side branch.
  void launched(const void* key, const std::vector<const void*>& owners,
                const std::vector<cuda::L2PrefetchPart>& parts, bool recording) {
    if (!enabled()) return;
    if (last_ && last_ != key) next_[last_] = {owners, parts};
    last_ = key;
    if (!recording) return;
    const auto it = next_.find(key);
    if (it == next_.end()) return;
    cuda::l2_prefetch_weights(it->second.parts.data(), static_cast<int>(it->second.parts.size()),
                              budget_, side_.fork());
  }

  // The side branch back into the main stream (before a recording ends).
  void join() { side_.join(); }
  // A recording was abandoned: its side branch went with it.
  void drop_pending() { side_.drop_pending(); }

  // A linear's weights are being freed: no entry may name them any more.
  void forget(const void* owner) {
    if (last_ == owner) last_ = nullptr;
    std::erase_if(next_, [owner](const auto& kv) {
      return kv.first == owner || std::find(kv.second.owners.begin(), kv.second.owners.end(),
                                            owner) != kv.second.owners.end();
    });
  }

 private:
  struct Next {
    std::vector<const void*> owners;
    std::vector<cuda::L2PrefetchPart> parts;
  };
  SideBranch side_;
  int64_t budget_ = 0;
  const void* last_ = nullptr;
  std::unordered_map<const void*, Next> next_;
};

}  // namespace sharq::engine
