// A profiling knob of the CUDA backend, not a mode: SHARQ_CUDA_PROFILE_SKIP=<op>[,<op>...] makes
// the backend skip launching the named decoder ops, so `sharq bench` timed with and without an op
// gives that op's cost inside the real recorded step (docs/RESULTS.md, issue 6, session 10). The
// outputs are wrong while it is set (skipped ops leave their buffers as they were), so the
// backend warns on stderr. Plain C++: the parser has CPU tests.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "sharq/error.h"

namespace sharq::cuda::profile_skip {

enum Op : uint32_t {
  kNorm = 1u << 0,    // RMSNorm fused into the FP4 prepare (before q/k/v and before gate/up)
  kQkv = 1u << 1,     // the q/k/v product (one grouped launch)
  kRope = 1u << 2,    // RoPE of q and k + KV cache store
  kAttn = 1u << 3,    // attention (split keys + combine)
  kOPass = 1u << 4,   // the o projection's prepare pass after the combine
  kO = 1u << 5,       // the o product (+ residual add): residual linears with k <= n
  kGateUp = 1u << 6,  // the gate/up product (one grouped launch)
  kSwiglu = 1u << 7,  // SwiGLU fused into the down projection's prepare
  kDown = 1u << 8,    // the down product (+ residual add): residual linears with k > n
  kLmHead = 1u << 9,  // the LM head
};

inline constexpr std::pair<std::string_view, Op> kNames[] = {
    {"norm", kNorm},   {"qkv", kQkv},      {"rope", kRope},     {"attn", kAttn},
    {"opass", kOPass}, {"o", kO},          {"gateup", kGateUp}, {"swiglu", kSwiglu},
    {"down", kDown},   {"lmhead", kLmHead}};

// "a,b,c" -> mask; empty or null -> 0; an unknown name is an error listing the known ones.
inline uint32_t parse(const char* spec) {
  uint32_t mask = 0;
  std::string_view s = spec ? spec : "";
  while (!s.empty()) {
    const size_t comma = s.find(',');
    const std::string_view name = s.substr(0, comma);
    s = comma == std::string_view::npos ? std::string_view{} : s.substr(comma + 1);
    if (name.empty()) continue;
    bool found = false;
    for (const auto& [n, op] : kNames) {
      if (n == name) {
        mask |= op;
        found = true;
      }
    }
    if (!found) {
      std::string known;
      for (const auto& [n, op] : kNames) known += (known.empty() ? "" : ", ") + std::string(n);
      throw Error("SHARQ_CUDA_PROFILE_SKIP: unknown op '" + std::string(name) +
                  "' (known: " + known + ")");
    }
  }
  return mask;
}

}  // namespace sharq::cuda::profile_skip
