// The session's side of decode-step replay (Backend::begin_step / end_step / abort_step), on the
// CPU: a probe backend runs every op on the CPU backend and scripts the replay answers the way
// the CUDA backend gives them (a key's first step runs, its second is recorded, later ones are
// replayed; an unrecordable step drops the key). Checks which keys, positions and ids the session
// passes, that replayed steps skip the ops and that a failed recording reruns them as plain ops
// with the same results. The CUDA side is tests/cuda/test_cuda_backend.cpp.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string_view>
#include <vector>

#include "sharq/engine/session.h"
#include "sharq/error.h"
#include "tiny_model.h"

namespace sharq {
namespace {

using engine::Backend;
using engine::LinearWeights;

class ReplayProbe final : public Backend {
 public:
  struct Call {
    uint64_t key;
    int64_t rows, pos;
    int32_t id0;
  };

  std::string_view name() const override { return "replay-probe"; }
  int threads() const override { return cpu_->threads(); }

  Step begin_step(uint64_t key, Mode, bool, const int32_t* ids, int64_t rows,
                  int64_t pos) override {
    calls.push_back({key, rows, pos, ids[0]});
    const int seen = seen_[key]++;
    if (seen == 0) return Step::kRun;
    if (seen == 1) {
      recording_ = true;
      return Step::kRecording;
    }
    return Step::kReplayed;
  }
  bool end_step() override {
    recording_ = false;
    ++ends;
    if (!record_ok) seen_.clear();  // as the CUDA backend drops an unrecordable step
    return record_ok;
  }
  void abort_step() override {
    recording_ = false;
    ++aborts;
    seen_.clear();
  }

  std::unique_ptr<LinearWeights> prepare_linear(Mode mode, const float* w, const float* bias,
                                                int64_t n, int64_t k,
                                                std::string_view name) override {
    return cpu_->prepare_linear(mode, w, bias, n, k, name);
  }
  std::unique_ptr<LinearWeights> prepare_lm_head(const float* w, int64_t n, int64_t k) override {
    return cpu_->prepare_lm_head(w, n, k);
  }
  void quantize_activation(Mode mode, const float* x, int64_t t, int64_t k, float* xq,
                           std::string_view name) override {
    cpu_->quantize_activation(mode, x, t, k, xq, name);
  }
  void matmul(const LinearWeights& w, const float* xq, int64_t t, float* y) override {
    cpu_->matmul(w, xq, t, y);
  }
  void embedding(const float* table, int64_t vocab, int64_t d, const int32_t* ids, int64_t t,
                 float* out) override {
    ++embeddings;
    if (recording_ && throw_while_recording) throw Error("probe: op failed while recording");
    cpu_->embedding(table, vocab, d, ids, t, out);
  }
  void rms_norm(const float* x, const float* w, int64_t rows, int64_t d, float eps,
                float* out) override {
    cpu_->rms_norm(x, w, rows, d, eps, out);
  }
  void rope(float* x, int64_t batch, int64_t t, int64_t pos0, int64_t heads, int64_t head_dim,
            const float* inv_freq) override {
    cpu_->rope(x, batch, t, pos0, heads, head_dim, inv_freq);
  }
  void kv_store(const float* k, const float* v, int64_t batch, int64_t t, int64_t pos0,
                int64_t kv_heads, int64_t head_dim, int64_t capacity, float* k_cache,
                float* v_cache) override {
    cpu_->kv_store(k, v, batch, t, pos0, kv_heads, head_dim, capacity, k_cache, v_cache);
  }
  void attention(const float* q, int64_t batch, int64_t t, int64_t pos0, int64_t heads,
                 int64_t kv_heads, int64_t head_dim, int64_t capacity, const float* k_cache,
                 const float* v_cache, float* out) override {
    cpu_->attention(q, batch, t, pos0, heads, kv_heads, head_dim, capacity, k_cache, v_cache, out);
  }
  void swiglu(const float* gate, const float* up, int64_t n, float* out) override {
    cpu_->swiglu(gate, up, n, out);
  }
  void add(float* x, const float* y, int64_t n) override { cpu_->add(x, y, n); }

  std::vector<Call> calls;
  int ends = 0, aborts = 0, embeddings = 0;
  bool record_ok = true, throw_while_recording = false;

 private:
  std::unique_ptr<Backend> cpu_ = engine::make_cpu_backend(1);
  std::map<uint64_t, int> seen_;
  bool recording_ = false;
};

const int32_t kPrompt[4] = {3, 1, 4, 1};

TEST(SessionReplay, KeysPositionsAndIds) {
  const auto lm = test::tiny_model(test::tiny_config("llama"));
  ReplayProbe be;
  const engine::Model m(lm, Mode::kBf16, be);
  engine::Session s(m, 64);
  s.forward(kPrompt);  // a prefill never asks
  EXPECT_TRUE(be.calls.empty());
  for (int32_t id : {5, 9, 2, 6}) s.forward(std::span(&id, 1));
  ASSERT_EQ(be.calls.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(be.calls[i].key, be.calls[0].key);  // no buffer moved
    EXPECT_EQ(be.calls[i].pos, 4 + static_cast<int64_t>(i));
    EXPECT_EQ(be.calls[i].rows, 1);
  }
  EXPECT_EQ(be.calls[1].id0, 9);
  EXPECT_EQ(be.calls[3].id0, 6);
  // prefill + the run step + the recorded step; the two replayed steps skip the ops.
  EXPECT_EQ(be.embeddings, 3);
  EXPECT_EQ(be.ends, 1);
  EXPECT_EQ(s.position(), 8);

  engine::Session other(m, 64);  // another session never shares a key
  other.forward(kPrompt);
  const int32_t id = 7;
  other.forward(std::span(&id, 1));
  EXPECT_NE(be.calls.back().key, be.calls[0].key);

  s.reset();  // a longer prefill moves the buffers: the next decode step has a new key
  std::vector<int32_t> longer(40, 2);
  s.forward(longer);
  s.forward(std::span(&id, 1));
  EXPECT_NE(be.calls.back().key, be.calls[0].key);
  EXPECT_EQ(be.calls.back().pos, 40);
}

// A step that could not be recorded (end_step false) or whose recording threw runs again as
// plain ops: the logits equal a session that never recorded.
TEST(SessionReplay, FailedRecordingRunsThePlainOps) {
  const auto lm = test::tiny_model(test::tiny_config("qwen2"));
  auto cpu = engine::make_cpu_backend(1);
  const engine::Model plain_model(lm, Mode::kSharqNvfp4, *cpu);
  engine::Session plain(plain_model, 32);
  plain.forward(kPrompt);
  std::vector<std::vector<float>> want;
  for (int32_t id : {5, 9, 2}) want.push_back(plain.forward(std::span(&id, 1)));

  for (const bool throws : {false, true}) {
    ReplayProbe be;
    be.record_ok = false;
    be.throw_while_recording = throws;
    const engine::Model m(lm, Mode::kSharqNvfp4, be);
    engine::Session s(m, 32);
    s.forward(kPrompt);
    std::vector<std::vector<float>> got;
    for (int32_t id : {5, 9, 2}) got.push_back(s.forward(std::span(&id, 1)));
    EXPECT_EQ(got, want) << (throws ? "recording threw" : "not recordable");
    EXPECT_EQ(be.aborts, throws ? 1 : 0);
    EXPECT_EQ(be.ends, throws ? 0 : 1);
    // prefill, run, recorded (or thrown) + rerun, then run again (the key was dropped).
    EXPECT_EQ(be.embeddings, 5);
    EXPECT_EQ(s.position(), 7);
  }
}

}  // namespace
}  // namespace sharq
