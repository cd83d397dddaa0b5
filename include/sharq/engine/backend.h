// The Backend interface: the handful of ops the decoder needs (DESIGN "Backends share one
// interface"). Every float pointer an op takes lives in the backend's own memory (host memory for
// the CPU, device memory for CUDA): alloc/to_backend/to_host/resident move data in and out, and
// Buffer owns an allocation. Not the decoder itself (engine/model.h), not a graph or scheduler.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "sharq/kv_cache.h"
#include "sharq/modes.h"

namespace sharq::engine {

// A linear layer's weights as one backend keeps them, quantized once by the mode's weight rule.
// Each backend derives its own storage (the CPU keeps the exact dequantized float32 values).
struct LinearWeights {
  virtual ~LinearWeights() = default;
  std::string name;  // tensor name, for errors
  Mode mode = Mode::kBf16;
  int64_t n = 0;  // out_features
  int64_t k = 0;  // in_features
  bool has_bias = false;
  bool quantized = true;  // false: float32 reference weights, activations used as they are
  int64_t bytes = 0;      // memory the backend holds for these weights (bias included)
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  virtual int threads() const = 0;

  // Memory. The defaults are host memory (the CPU backend); a device backend overrides all five.
  virtual float* alloc(int64_t n);  // n floats, uninitialised
  virtual void release(float* p);
  // n floats of host memory that to_host fills fastest (page-locked on a device backend: a copy
  // into it is one DMA, not staged through the driver), uninitialised.
  virtual float* alloc_host(int64_t n);
  virtual void release_host(float* p);
  virtual void to_backend(const float* host, float* dst, int64_t n);
  virtual void to_host(const float* src, float* host, int64_t n);
  // A tensor that stays for the backend's life (embedding table, norm weights, RoPE frequencies):
  // the host copy is used in place where the backend computes on the host, else copied once and
  // owned by the backend. `host` must outlive the backend in the first case.
  virtual const float* resident(const float* host, int64_t n);
  // Waits for queued work (a no-op where every op is synchronous); timings call it.
  virtual void synchronize() {}
  // The KV cache's element format (sharq/kv_cache.h) for sessions created after the call; a
  // Session keeps the format it was created under and refuses to run after a change. The caches
  // a session passes to kv_store / rope_kv_store / attention hold kv_cache_floats(elements)
  // floats of storage each (a backend storing halves packs two in a float's bytes).
  virtual void set_kv_cache(KvCache format) { kv_cache_ = format; }
  virtual KvCache kv_cache() const { return kv_cache_; }
  virtual int64_t kv_cache_floats(int64_t elements) const { return elements; }
  // Replay: a decode step repeats the same ops on the same buffers; only its token ids and its
  // position change. A device backend may record a step once (a CUDA graph whose ops read the ids
  // and the position from device memory) and replay it for later steps instead of launching
  // every op. `key` names the step's buffers (a Session takes a new key whenever one of its
  // buffers moves). begin_step returns
  //   kReplayed:  it ran the step recorded under `key` with these ids (checked) at `pos`; the
  //               caller skips the ops;
  //   kRecording: the ops that follow are only recorded; end_step runs them (false: they
  //               could not be recorded and did not run), abort_step drops them (an op threw);
  //               either way the caller then runs them as plain ops;
  //   kRun:       the ops simply run (the CPU; a mode whose ops need the host; a key's first
  //               step, which sizes every workspace).
  enum class Step { kRun, kRecording, kReplayed };
  virtual Step begin_step(uint64_t key, Mode mode, bool quantized, const int32_t* ids, int64_t rows,
                          int64_t pos) {
    (void)key, (void)mode, (void)quantized, (void)ids, (void)rows, (void)pos;
    return Step::kRun;
  }
  virtual bool end_step() { return false; }
  virtual void abort_step() {}
  // Decode steps run from a recording so far (end_step's first run included): 0 where nothing
  // records. `sharq bench` reports it; the replay tests check it moves.
  virtual int64_t steps_replayed() const { return 0; }
  // Floats of the `xq` buffer that quantize_activation fills for a (t, k) activation. The CPU
  // stores the dequantized values (t * k); a device backend may keep its packed form there.
  virtual int64_t quantized_activation_floats(int64_t t, int64_t k) const { return t * k; }

  // W: (N, K) row-major float32; bias: (N) or null. Quantizes W once under `mode`.
  virtual std::unique_ptr<LinearWeights> prepare_linear(Mode mode, const float* w,
                                                        const float* bias, int64_t n, int64_t k,
                                                        std::string_view name) = 0;
  // The same, unquantized (float32 reference runs, peer checks against transformers). The
  // default throws: a backend opts in.
  virtual std::unique_ptr<LinearWeights> prepare_linear_f32(const float* w, const float* bias,
                                                            int64_t n, int64_t k,
                                                            std::string_view name);
  // x, xq: (T, K). The mode's activation rule over the whole (T, K) matrix (one tensor scale per
  // call, SPEC 5): every linear that shares one input shares one quantized copy. The decoder
  // names the inputs "model.layers.L.self_attn.qkv.input", "model.layers.L.mlp.gate_up.input",
  // and the o_proj / down_proj weight names for theirs (eval's capture relies on these names).
  virtual void quantize_activation(Mode mode, const float* x, int64_t t, int64_t k, float* xq,
                                   std::string_view name) = 0;
  // xq: (T, K) already quantized; y: (T, N) = xq . W^T (+ bias), float32 accumulation.
  virtual void matmul(const LinearWeights& w, const float* xq, int64_t t, float* y) = 0;
  // Linears that read one input (q, k, v; gate, up): ys[i] (T, N_i) = xq . W_i^T (+ bias_i), as
  // matmul gives each. A backend may run the group as one product (fewer, fuller launches).
  virtual void matmul_group(std::span<const LinearWeights* const> ws, const float* xq, int64_t t,
                            std::span<float* const> ys) {
    for (size_t i = 0; i < ws.size(); ++i) matmul(*ws[i], xq, t, ys[i]);
  }
  // y (T, N) += xq . W^T (+ bias): a linear whose output goes straight into the residual stream
  // (o_proj, down_proj). tmp: (T, N) scratch for a backend that does the add separately.
  virtual void matmul_add(const LinearWeights& w, const float* xq, int64_t t, float* y,
                          float* tmp) {
    matmul(w, xq, t, tmp);
    add(y, tmp, t * w.n);
  }
  // Called once with each group of freshly prepared linears that matmul_group will receive
  // together (same K, same mode): a backend may lay their weights out side by side.
  virtual void group_linears(std::span<LinearWeights* const> ws) { (void)ws; }
  // The LM head (V, D), never quantized by a mode: the backend's own float product (the CPU
  // keeps float32 and reads `w` in place, so `w` must outlive the result there). matmul runs it.
  virtual std::unique_ptr<LinearWeights> prepare_lm_head(const float* w, int64_t n, int64_t k) = 0;

  // table: (V, D) resident; ids: (T) host ints, each in [0, V) (checked); out: (T, D).
  virtual void embedding(const float* table, int64_t vocab, int64_t d, const int32_t* ids,
                         int64_t t, float* out) = 0;
  // x, out: (rows, D); w: (D). out = x / sqrt(mean(x^2) + eps) * w. out may alias x.
  virtual void rms_norm(const float* x, const float* w, int64_t rows, int64_t d, float eps,
                        float* out) = 0;
  // The next three take `batch` sequences in lockstep: row b * T + i of x, k, v, q and out is
  // sequence b's token at position pos0 + i, and each sequence has its own cache slice.
  // x: (batch * T, heads * head_dim); rotates in place with HF's rotate_half pairing
  // (j, j + head_dim/2). inv_freq: (head_dim / 2), resident.
  virtual void rope(float* x, int64_t batch, int64_t t, int64_t pos0, int64_t heads,
                    int64_t head_dim, const float* inv_freq) = 0;
  // k, v: (batch * T, kv_heads * head_dim) for positions pos0..pos0+T-1, copied into the caches
  // k_cache, v_cache: (batch, kv_heads, capacity, head_dim).
  virtual void kv_store(const float* k, const float* v, int64_t batch, int64_t t, int64_t pos0,
                        int64_t kv_heads, int64_t head_dim, int64_t capacity, float* k_cache,
                        float* v_cache) = 0;
  // rope(q, heads), rope(k, kv_heads), then kv_store(k, v): one call a backend may fuse.
  virtual void rope_kv_store(float* q, float* k, const float* v, int64_t batch, int64_t t,
                             int64_t pos0, int64_t heads, int64_t kv_heads, int64_t head_dim,
                             const float* inv_freq, int64_t capacity, float* k_cache,
                             float* v_cache) {
    rope(q, batch, t, pos0, heads, head_dim, inv_freq);
    rope(k, batch, t, pos0, kv_heads, head_dim, inv_freq);
    kv_store(k, v, batch, t, pos0, kv_heads, head_dim, capacity, k_cache, v_cache);
  }
  // Causal GQA attention. q: (batch * T, heads * head_dim); sequence b's caches hold positions
  // 0..pos0+T-1; out like q. Head h reads kv head h / (heads/kv_heads). Scores are scaled by
  // 1/sqrt(head_dim).
  virtual void attention(const float* q, int64_t batch, int64_t t, int64_t pos0, int64_t heads,
                         int64_t kv_heads, int64_t head_dim, int64_t capacity, const float* k_cache,
                         const float* v_cache, float* out) = 0;
  // gate, up, out: (n). out = silu(gate) * up. out may alias gate or up.
  virtual void swiglu(const float* gate, const float* up, int64_t n, float* out) = 0;
  // x += y, (n).
  virtual void add(float* x, const float* y, int64_t n) = 0;

  // h = rms_norm(x) * w (rows, D), then the mode's activation rule on h into xq, as
  // rms_norm + quantize_activation do. A backend that fuses the two may leave h unwritten (the
  // decoder reads only xq after it; h is scratch).
  virtual void rms_norm_quantize(Mode mode, const float* x, const float* w, int64_t rows, int64_t d,
                                 float eps, float* h, float* xq, std::string_view name) {
    rms_norm(x, w, rows, d, eps, h);
    quantize_activation(mode, h, rows, d, xq, name);
  }

  // y (T, N) += Q_act(X) . W^T (+ bias): quantize then matmul_add. tmp: (T, N).
  void linear_add(const LinearWeights& w, const float* x, int64_t t, float* y, float* tmp,
                  float* scratch) {
    if (!w.quantized) return matmul_add(w, x, t, y, tmp);
    quantize_activation(w.mode, x, t, w.k, scratch, w.name);
    matmul_add(w, scratch, t, y, tmp);
  }
  // out = silu(gate) * up (rows, k), then the mode's activation rule on it into xq, as swiglu +
  // quantize_activation do. A backend that fuses the two may leave out unwritten.
  virtual void swiglu_quantize(Mode mode, const float* gate, const float* up, int64_t rows,
                               int64_t k, float* out, float* xq, std::string_view name) {
    swiglu(gate, up, rows * k, out);
    quantize_activation(mode, out, rows, k, xq, name);
  }

  // attention into out (batch * t, heads * head_dim), then the mode's activation rule on out
  // into xq (the o projection's input), as attention + quantize_activation do. A backend that
  // fuses the two still writes out.
  virtual void attention_quantize(Mode mode, const float* q, int64_t batch, int64_t t, int64_t pos0,
                                  int64_t heads, int64_t kv_heads, int64_t head_dim,
                                  int64_t capacity, const float* k_cache, const float* v_cache,
                                  float* out, float* xq, std::string_view name) {
    attention(q, batch, t, pos0, heads, kv_heads, head_dim, capacity, k_cache, v_cache, out);
    quantize_activation(mode, out, batch * t, heads * head_dim, xq, name);
  }

  // A hint before a layer's attention block: its attention will read rows [0, pos0) of these
  // caches (batch x kv_heads regions of `capacity` rows). A backend may fetch them into a cache
  // meanwhile; the default does nothing.
  virtual void prefetch_kv(const float* k_cache, const float* v_cache, int64_t batch, int64_t t,
                           int64_t pos0, int64_t kv_heads, int64_t head_dim, int64_t capacity) {
    (void)k_cache, (void)v_cache, (void)batch, (void)t, (void)pos0, (void)kv_heads, (void)head_dim,
        (void)capacity;
  }

  // rope_kv_store, then attention_quantize into out and xq (mode: the o projection's) when xq is
  // not null, else attention into out: one call a backend may fuse (q and k may then be left
  // unrotated; the decoder reads neither afterwards).
  virtual void rope_attention(Mode mode, float* q, float* k, const float* v, int64_t batch,
                              int64_t t, int64_t pos0, int64_t heads, int64_t kv_heads,
                              int64_t head_dim, const float* inv_freq, int64_t capacity,
                              float* k_cache, float* v_cache, float* out, float* xq,
                              std::string_view name) {
    rope_kv_store(q, k, v, batch, t, pos0, heads, kv_heads, head_dim, inv_freq, capacity, k_cache,
                  v_cache);
    if (xq) {
      attention_quantize(mode, q, batch, t, pos0, heads, kv_heads, head_dim, capacity, k_cache,
                         v_cache, out, xq, name);
    } else {
      attention(q, batch, t, pos0, heads, kv_heads, head_dim, capacity, k_cache, v_cache, out);
    }
  }

  // Y (T, N) = Q_act(X (T, K)) . W^T (+ bias): quantize then matmul. scratch: (T, K).
  void linear(const LinearWeights& w, const float* x, int64_t t, float* y, float* scratch) {
    if (!w.quantized) return matmul(w, x, t, y);
    quantize_activation(w.mode, x, t, w.k, scratch, w.name);
    matmul(w, scratch, t, y);
  }

 private:
  KvCache kv_cache_ = KvCache::kF32;
};

// One allocation in a backend's memory (move-only), or with kHost in the host memory it copies
// to fastest (Backend::alloc_host). grow() keeps at least n floats (contents are not kept) and
// says whether the allocation moved.
template <bool kHost>
class BasicBuffer {
 public:
  BasicBuffer() = default;
  BasicBuffer(Backend& be, int64_t n) { grow(be, n); }
  BasicBuffer(BasicBuffer&& o) noexcept : be_(o.be_), p_(o.p_), n_(o.n_) {
    o.p_ = nullptr;
    o.n_ = 0;
  }
  BasicBuffer& operator=(BasicBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      be_ = o.be_, p_ = o.p_, n_ = o.n_;
      o.p_ = nullptr, o.n_ = 0;
    }
    return *this;
  }
  BasicBuffer(const BasicBuffer&) = delete;
  BasicBuffer& operator=(const BasicBuffer&) = delete;
  ~BasicBuffer() { reset(); }
  bool grow(Backend& be, int64_t n) {
    if (n <= n_ && be_ == &be) return false;
    reset();
    be_ = &be;
    p_ = kHost ? be.alloc_host(n) : be.alloc(n);
    n_ = n;
    return true;
  }
  void reset() {
    if (p_) kHost ? be_->release_host(p_) : be_->release(p_);
    p_ = nullptr;
    n_ = 0;
  }
  float* data() const { return p_; }
  int64_t size() const { return n_; }

 private:
  Backend* be_ = nullptr;
  float* p_ = nullptr;
  int64_t n_ = 0;
};
using Buffer = BasicBuffer<false>;
using HostBuffer = BasicBuffer<true>;

// The float32 CPU reference backend (src/cpu/backend.cpp); threads <= 0 means default_threads().
// It sets OpenBLAS to one thread process-wide and splits products over its own threads (no BLAS
// worker left spinning between calls); SHARQ_BLAS_SPLIT=0 keeps OpenBLAS threading instead.
std::unique_ptr<Backend> make_cpu_backend(int threads = 0);

}  // namespace sharq::engine
