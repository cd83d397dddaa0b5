// A side branch of the CUDA backend's main stream for work nothing on the main stream waits for
// (L2 prefetches): fork() records where the branch leaves the main stream and returns the side
// stream to launch on; join() brings it back (a recorded step must join every branch before its
// capture ends). The stream and events are created on first use.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "sharq/cuda/kernels.h"

namespace sharq::engine {

// A side-branch prefetch's budget in bytes: the environment variable `var` in MiB (fractions
// allowed, clamped to [0, 1024]; 0 turns it off), else default_mib.
inline int64_t prefetch_budget(const char* var, double default_mib) {
  const char* e = std::getenv(var);
  const double mib = e ? std::strtod(e, nullptr) : default_mib;
  return static_cast<int64_t>(std::clamp(mib, 0.0, 1024.0) * (1 << 20));
}

class SideBranch {
 public:
  explicit SideBranch(cudaStream_t main) : main_(main) {}
  ~SideBranch() {
    if (side_) {
      cudaStreamSynchronize(side_);
      cudaEventDestroy(join_);
      cudaEventDestroy(fork_);
      cudaStreamDestroy(side_);
    }
  }
  SideBranch(const SideBranch&) = delete;
  SideBranch& operator=(const SideBranch&) = delete;

  // The side stream, ordered after everything launched on the main stream so far.
  cudaStream_t fork() {
    if (!side_) {
      cuda::check(cudaStreamCreateWithFlags(&side_, cudaStreamNonBlocking), "cudaStreamCreate");
      cuda::check(cudaEventCreateWithFlags(&fork_, cudaEventDisableTiming), "cudaEventCreate");
      cuda::check(cudaEventCreateWithFlags(&join_, cudaEventDisableTiming), "cudaEventCreate");
    }
    cuda::check(cudaEventRecord(fork_, main_), "record side fork");
    cuda::check(cudaStreamWaitEvent(side_, fork_), "side fork");
    pending_ = true;
    return side_;
  }
  // The side branch back into the main stream (before a recording ends).
  void join() {
    if (!pending_) return;
    pending_ = false;
    cuda::check(cudaEventRecord(join_, side_), "record side join");
    cuda::check(cudaStreamWaitEvent(main_, join_), "side join");
  }
  // A recording was abandoned: its side branch went with it.
  void drop_pending() { pending_ = false; }

 private:
  cudaStream_t main_ = nullptr, side_ = nullptr;
  cudaEvent_t fork_ = nullptr, join_ = nullptr;
  bool pending_ = false;
};

}  // namespace sharq::engine
