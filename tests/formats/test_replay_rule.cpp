// The CUDA backend's replay decision (include/sharq/cuda/replay_rule.h): a key runs eagerly once,
// is recorded at its second step, replays after that, and starts over when its graph's
// workspaces move or its rows change. The session-29 bug (no key ever recorded) fails here.
#include <gtest/gtest.h>

#include "sharq/cuda/replay_rule.h"

namespace sharq::cuda::replay_rule {
namespace {

// A backend's view of one key over a sequence of steps: what it decides, and the entry after.
struct Key {
  bool known = false;
  Entry entry;
  uint64_t gen = 0;  // the backend's workspace generation

  Action step(int64_t rows, bool moves_workspace = false) {
    const Decision d = decide(known ? &entry : nullptr, rows, gen);
    if (d.action == Action::kRunEagerly) {
      known = true;
      entry = Entry{false, rows, 0};
      if (moves_workspace) ++gen;  // the eager step sizes the workspaces
    } else if (d.action == Action::kRecord) {
      const uint64_t begin = gen;
      if (moves_workspace) ++gen;
      if (keep_recording(begin, gen)) {
        entry.recorded = true;
        entry.gen = gen;
      } else {
        known = false;  // discarded: runs eagerly, the next step starts over
      }
    }
    return d.action;
  }
};

TEST(ReplayRule, FirstStepRunsSecondRecordsThenReplays) {
  Key k;
  EXPECT_EQ(k.step(1, /*moves_workspace=*/true), Action::kRunEagerly);
  EXPECT_EQ(k.step(1), Action::kRecord);  // although the first step moved a workspace
  for (int i = 0; i < 5; ++i) EXPECT_EQ(k.step(1), Action::kReplay);
}

TEST(ReplayRule, RecordedGraphDroppedWhenAWorkspaceMoves) {
  Key k;
  k.step(2, true);
  k.step(2);
  ASSERT_EQ(k.step(2), Action::kReplay);
  ++k.gen;  // another session grew a workspace this graph names
  const Decision d = decide(&k.entry, 2, k.gen);
  EXPECT_EQ(d.action, Action::kRunEagerly);
  EXPECT_TRUE(d.drop);
  EXPECT_EQ(k.step(2), Action::kRunEagerly);
  EXPECT_EQ(k.step(2), Action::kRecord);
  EXPECT_EQ(k.step(2), Action::kReplay);
}

TEST(ReplayRule, UnrecordedKeyIgnoresWorkspaceMoves) {
  const Entry seen{false, 4, 0};
  const Decision d = decide(&seen, 4, 7);
  EXPECT_EQ(d.action, Action::kRecord);
  EXPECT_FALSE(d.drop);
}

TEST(ReplayRule, RowsChangeStartsOver) {
  const Entry recorded{true, 1, 3};
  const Decision d = decide(&recorded, 8, 3);
  EXPECT_EQ(d.action, Action::kRunEagerly);
  EXPECT_TRUE(d.drop);
  const Entry seen{false, 1, 0};
  EXPECT_TRUE(decide(&seen, 8, 0).drop);
}

TEST(ReplayRule, RecordingDuringAWorkspaceMoveIsDiscarded) {
  EXPECT_TRUE(keep_recording(5, 5));
  EXPECT_FALSE(keep_recording(5, 6));
  Key k;
  k.step(1, true);
  EXPECT_EQ(k.step(1, /*moves_workspace=*/true), Action::kRecord);  // discarded
  EXPECT_EQ(k.step(1), Action::kRunEagerly);
  EXPECT_EQ(k.step(1), Action::kRecord);
  EXPECT_EQ(k.step(1), Action::kReplay);
}

TEST(ReplayRule, FirstSightRunsEagerly) {
  const Decision d = decide(nullptr, 1, 0);
  EXPECT_EQ(d.action, Action::kRunEagerly);
  EXPECT_FALSE(d.drop);
}

}  // namespace
}  // namespace sharq::cuda::replay_rule
