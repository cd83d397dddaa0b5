// What the CUDA backend does with a decode step under its replay key (Backend::begin_step): run
// it as plain launches (a key's first step, which sizes every workspace), record it (the second),
// or replay the recorded graph. Plain C++ so the rule has CPU tests
// (tests/formats/test_replay_rule.cpp); src/cuda/cuda_backend.cpp acts on it.
//
// Workspaces grow by moving, and every move bumps the backend's workspace generation. A recorded
// graph names the workspaces of its generation, so it is dropped once the generation moves on.
// An unrecorded key names nothing: its own first step moved workspaces, and that must not stop its
// second from being recorded (until session 29 it did, and no step was ever recorded).
#pragma once

#include <cstdint>

namespace sharq::cuda::replay_rule {

// What the backend holds for a key it has seen.
struct Entry {
  bool recorded = false;  // a graph exists
  int64_t rows = 0;       // the rows of the steps it saw
  uint64_t gen = 0;       // the workspace generation the graph was recorded in
};

enum class Action { kRunEagerly, kRecord, kReplay };

struct Decision {
  Action action;
  bool drop;  // the entry is dropped first (a new one is made when running eagerly)
};

// entry: null on the key's first sight.
constexpr Decision decide(const Entry* entry, int64_t rows, uint64_t gen_now) {
  const bool stale = entry && (entry->rows != rows || (entry->recorded && entry->gen != gen_now));
  if (!entry || stale) return {Action::kRunEagerly, stale};
  return {entry->recorded ? Action::kReplay : Action::kRecord, false};
}

// A recording is kept only if no workspace moved while it was made (its earlier nodes would name
// the old block).
constexpr bool keep_recording(uint64_t gen_at_begin, uint64_t gen_at_end) {
  return gen_at_begin == gen_at_end;
}

}  // namespace sharq::cuda::replay_rule
