// The CUDA Backend (DESIGN "Hopper path"): every buffer in device memory on one stream.
// Weights stay packed: FP4 codes + UE4M3 scales for nvfp4 and the sharq-nvfp4 modes, which run
// prepare + the two-path FP4 GEMMs; bf16 weights through cuBLAS for bf16 and the LM head. The other
// modes run a reference path: the CPU quantizers (exact SPEC) and float32 weights on the GPU.
// Not the kernels (kernels.h, engine_ops.h) and not the decoder (engine/session.cpp).
#include "sharq/engine/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "next_product_prefetch.h"
#include "sharq/codecs.h"
#include "sharq/cuda/engine_ops.h"
#include "sharq/cuda/kernels.h"
#include "sharq/cuda/profile_skip.h"
#include "sharq/cuda/replay_rule.h"
#include "sharq/decompose.h"
#include "sharq/env_switch.h"
#include "sharq/error.h"
#include "sharq/parallel.h"
#include "sharq/weights.h"
#include "side_branch.h"

namespace sharq::engine {
namespace {

using cuda::check;
using cuda::check_blas;

// One cudaMalloc'd block, freed on destruction.
class DeviceMem {
 public:
  DeviceMem() = default;
  explicit DeviceMem(size_t bytes) { grow(bytes); }
  DeviceMem(DeviceMem&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
  DeviceMem& operator=(DeviceMem&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  DeviceMem(const DeviceMem&) = delete;
  DeviceMem& operator=(const DeviceMem&) = delete;
  ~DeviceMem() {
    if (p_) cudaFree(p_);
  }
  bool grow(size_t bytes) {  // true when the block moved
    if (bytes <= n_) return false;
    if (p_) check(cudaFree(p_), "cudaFree");
    p_ = nullptr;
    n_ = 0;
    check(cudaMalloc(&p_, std::max<size_t>(bytes, 16)), "cudaMalloc");
    n_ = bytes;
    return true;
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(p_);
  }
  size_t bytes() const { return n_; }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

// How a linear's product runs on the GPU.
enum class Path {
  kFp4,     // prepare + FP4 GEMM (nvfp4, sharq-nvfp4, sharq-nvfp4-24)
  kBf16,    // bf16 weights, cuBLAS; the activation arrives as bf16 in xq (bf16 mode)
  kLmHead,  // bf16 weights, cuBLAS; the float32 input is rounded to bf16 here
  kF32,     // float32 weights, cuBLAS SGEMM (reference modes and the float32 model)
};

// An FP4 prepare's outputs and which expansions of them exist (CudaBackend::fp4_out).
struct PreparedAct {
  float* xq = nullptr;  // where prepare wrote (or skipped) the planes
  int64_t t = 0, k = 0;
  cuda::PrepareMode mode = cuda::PrepareMode::kNvfp4;
  cuda::Nvfp4View sparse{}, residual{};
  bool planes = false;                              // xq holds the FP16 GEMM planes
  cuda::PlaneOrder order = cuda::PlaneOrder::kMma;  // their K order
  bool images = false;                              // prefill_act_ holds the 2:4 stage images
  const uint8_t* lo_flags = nullptr;  // the planes' lo flags, where the prepare wrote them
  // kMmaRows planes (the merged prefill): whether lo is compacted (merged_lo_columns, once for
  // the products sharing the activation) and K', once read back (-1 before).
  bool columns = false;
  int64_t kprime = -1;
};

struct CudaLinear final : LinearWeights {
  ~CudaLinear() override {
    if (prefetch) prefetch->forget(this);
  }
  Path path = Path::kF32;
  DeviceMem w;     // bf16 / f32 weights, or the FP4 codes, then scales, then the tensor scale
  DeviceMem bias;  // (N) float32, or empty
  // bf16 weights of a group (group_linears) live side by side in one block: w is then empty and
  // `data` points into `shared`.
  std::shared_ptr<DeviceMem> shared;
  const void* data = nullptr;  // the bf16 / f32 weights wherever they live
  cuda::Nvfp4View fp4{};
  int group = 0;          // FP4 scale group (32 SharQ, 16 nvfp4)
  int paths = 1;          // activation paths the FP4 GEMM multiplies (2 for SharQ)
  bool sparse24 = false;  // sharq-nvfp4-24: the prefill runs its backbone on 2:4 sparse wgmma
  std::shared_ptr<NextProductPrefetch> prefetch;  // FP4: told when the weights go
};

// How the Hopper kernels run a mode natively (the SPEC 5 rules they implement bit for bit).
struct Fp4Rule {
  cuda::PrepareMode prepare;
  int paths;  // 2 for SharQ (backbone + residual)
  int group;  // weight scale group
};
// The FP4 rule of `m` for a K-long input, or none (another mode, or K not a multiple of 64).
// Weights and activations both decide with it, so a linear's two halves always agree.
std::optional<Fp4Rule> fp4_rule(Mode m, int64_t k) {
  if (k % 64 != 0) return std::nullopt;
  switch (m) {
    case Mode::kNvfp4:
      return Fp4Rule{cuda::PrepareMode::kNvfp4, 1, 16};
    case Mode::kSharqNvfp4:
      return Fp4Rule{cuda::PrepareMode::kSharqNvfp4, 2, 32};
    case Mode::kSharqNvfp4_24:
      return Fp4Rule{cuda::PrepareMode::kSharqNvfp4_24, 2, 32};
    default:
      return std::nullopt;
  }
}

// A recorded decode step (Backend::begin_step) and its inputs: the position (int64) then the
// ids (int32), in pinned memory and in device memory (the graph's first node copies them).
struct StepGraph {
  StepGraph(uint64_t k, int64_t r) : key(k), rows(r), dev(bytes()) {
    check(cudaMallocHost(reinterpret_cast<void**>(&host), bytes()), "cudaMallocHost");
    check(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreate");
  }
  ~StepGraph() {
    if (exec) cudaGraphExecDestroy(exec);
    cudaEventDestroy(done);
    cudaFreeHost(host);
  }
  StepGraph(const StepGraph&) = delete;
  StepGraph& operator=(const StepGraph&) = delete;
  size_t bytes() const { return sizeof(int64_t) + static_cast<size_t>(rows) * sizeof(int32_t); }
  const int64_t* pos_dev() const { return dev.as<int64_t>(); }
  const int32_t* ids_dev() const { return reinterpret_cast<const int32_t*>(dev.as<int64_t>() + 1); }

  uint64_t key;
  int64_t rows;
  int64_t vocab = 0;           // the embedding's, for checking replayed ids
  uint64_t workspace_gen = 0;  // CudaBackend::workspace_gen_ when recorded
  DeviceMem dev;
  uint8_t* host = nullptr;
  cudaEvent_t done = nullptr;  // the last launch finished (its inputs were read)
  cudaGraphExec_t exec = nullptr;
};

// Rows per FP4 GEMM call up to which the decode kernel runs (the prefill kernel above);
// SHARQ_CUDA_DECODE_ROWS (1..32) overrides it for A/B timing.
int64_t decode_rows() {
  static const int64_t rows = [] {
    const char* e = std::getenv("SHARQ_CUDA_DECODE_ROWS");
    const long v = e ? std::strtol(e, nullptr, 10) : 0;
    return v >= 1 && v <= 32 ? static_cast<int64_t>(v) : int64_t{32};
  }();
  return rows;
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
      throw Error("cuda backend: no CUDA device is available");
    }
    if (device < 0 || device >= count) {
      throw Error("cuda backend: device " + std::to_string(device) + " does not exist (" +
                  std::to_string(count) + " present)");
    }
    check(cudaSetDevice(device), "cudaSetDevice");
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    if (prop.major != 9) {
      throw Error(std::string("cuda backend: ") + prop.name + " is sm_" +
                  std::to_string(prop.major * 10 + prop.minor) +
                  "; the kernels are built for Hopper (sm_90a)");
    }
    name_ = std::string("cuda (") + prop.name + ")";
    graphs_ = switched_on("SHARQ_CUDA_GRAPHS");
    group_launch_ = switched_on("SHARQ_CUDA_GROUP");
    fuse_add_ = switched_on("SHARQ_CUDA_FUSE_ADD");
    fuse_swiglu_ = switched_on("SHARQ_CUDA_FUSE_SWIGLU");
    lo_skip_ = switched_on("SHARQ_CUDA_LO_SKIP");
    fuse_rope_ = switched_on("SHARQ_CUDA_FUSE_ROPE");
    rope_attn_ = switched_on("SHARQ_CUDA_ROPE_ATTN");
    fuse_attn_max_ = switched_on("SHARQ_CUDA_FUSE_ATTN_MAX");
    kv_prefetch_bytes_ = prefetch_budget("SHARQ_CUDA_KV_PREFETCH_MB", kKvPrefetchMiB);
    const char* env = std::getenv("SHARQ_CUDA_PREFILL");
    prefill_cublas_ = !(env && std::string(env) == "wgmma");
    prefill_ws_ = prefill_cublas_ && !(env && std::string(env) == "cublas");
    prefill_ws_always_ = env && std::string(env) == "ws";
    prefill_images_always_ = env && std::string(env) == "expand";
    prefill_merged_ = !env || std::string(env) == "merged";
    merged_stats_ = std::getenv("SHARQ_CUDA_MERGED_STATS") != nullptr;
    env = std::getenv("SHARQ_CUDA_PROFILE_SKIP");
    skip_ = cuda::profile_skip::parse(env);
    if (skip_) {
      std::fprintf(stderr,
                   "cuda backend: SHARQ_CUDA_PROFILE_SKIP=%s: those ops are not run, so every "
                   "output is wrong; for timing only\n",
                   env);
    }
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    check(cudaEventCreateWithFlags(&ids_copied_, cudaEventDisableTiming), "cudaEventCreate");
    prefetch_ = std::make_shared<NextProductPrefetch>(stream_);
    kv_side_ = std::make_unique<SideBranch>(stream_);
    check_blas(cublasCreate(&blas_), "cublasCreate");
    check_blas(cublasSetStream(blas_, stream_), "cublasSetStream");
    blas_ws_.grow(kBlasWorkspace);
    check_blas(cublasSetWorkspace(blas_, blas_ws_.as<void>(), blas_ws_.bytes()),
               "cublasSetWorkspace");
    absmax_.grow(64);
  }
  ~CudaBackend() override {
    steps_.clear();
    if (pinned_ids_) cudaFreeHost(pinned_ids_);
    if (ids_copied_) cudaEventDestroy(ids_copied_);
    if (kprime_host_) cudaFreeHost(kprime_host_);
    if (kprime_copied_) cudaEventDestroy(kprime_copied_);
    resident_.clear();
    cublasDestroy(blas_);
    cudaStreamDestroy(stream_);
  }

  std::string_view name() const override { return name_; }
  int threads() const override { return default_threads(); }

  float* alloc(int64_t n) override {
    return alloc_floats(
        n, "", [](void** p, size_t b) { return cudaMalloc(p, b); }, "cudaMalloc");
  }
  void release(float* p) override { cudaFree(p); }
  // Page-locked: to_host into it is one DMA (a pageable destination is staged by the driver).
  float* alloc_host(int64_t n) override {
    return alloc_floats(
        n, "host ", [](void** p, size_t b) { return cudaMallocHost(p, b); }, "cudaMallocHost");
  }
  void release_host(float* p) override { cudaFreeHost(p); }
  void to_backend(const float* host, float* dst, int64_t n) override {
    check(cudaMemcpyAsync(dst, host, static_cast<size_t>(n) * sizeof(float), cudaMemcpyHostToDevice,
                          stream_),
          "copy to device");
    synchronize();  // the host buffer may change as soon as we return
  }
  void to_host(const float* src, float* host, int64_t n) override {
    check(cudaMemcpyAsync(host, src, static_cast<size_t>(n) * sizeof(float), cudaMemcpyDeviceToHost,
                          stream_),
          "copy to host");
    synchronize();
  }
  const float* resident(const float* host, int64_t n) override {
    DeviceMem m(static_cast<size_t>(n) * sizeof(float));
    to_backend(host, m.as<float>(), n);
    resident_.push_back(std::move(m));
    return resident_.back().as<float>();
  }
  void synchronize() override { check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

  // Decode steps are recorded once per key and replayed (SHARQ_CUDA_GRAPHS=0 turns it off): the
  // graph's first node copies the step's position and ids from pinned memory, and rope, kv_store,
  // attention and the embedding read them on the device. A key's first step runs eagerly (it sizes
  // the workspaces), its second is recorded. A graph is dropped when a workspace it uses moves.
  // Modes with a host-side reference path never record.
  Step begin_step(uint64_t key, Mode mode, bool quantized, const int32_t* ids, int64_t rows,
                  int64_t pos) override {
    // Every linear of a model is prepared before its first forward, so host_path_modes_ already
    // names every mode with a host step.
    if (!graphs_ || !quantized || host_path_modes_.count(mode)) return Step::kRun;
    // include/sharq/cuda/replay_rule.h: first sight runs, the second step records, then replay.
    StepGraph* g = find_step(key);
    const cuda::replay_rule::Entry seen{g && g->exec, g ? g->rows : 0, g ? g->workspace_gen : 0};
    const cuda::replay_rule::Decision d =
        cuda::replay_rule::decide(g ? &seen : nullptr, rows, workspace_gen_);
    if (d.drop) drop_step(g);
    if (d.action == cuda::replay_rule::Action::kRunEagerly) {
      steps_.push_back(std::make_unique<StepGraph>(key, rows));
      if (steps_.size() > kMaxSteps) steps_.erase(steps_.begin());
      return Step::kRun;
    }
    if (d.action == cuda::replay_rule::Action::kReplay) {
      check_ids(ids, rows, g->vocab);
      stage(*g, ids, pos);
      launch(*g);
      ++replayed_;
      return Step::kReplayed;
    }
    stage(*g, ids, pos);
    check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed), "begin capture");
    rec_ = g;
    g->workspace_gen = workspace_gen_;
    check(cudaMemcpyAsync(g->dev.as<void>(), g->host, g->bytes(), cudaMemcpyHostToDevice, stream_),
          "copy step inputs");
    return Step::kRecording;
  }
  bool end_step() override {
    StepGraph* g = rec_;
    rec_ = nullptr;
    prefetch_->join();
    kv_side_->join();
    cudaGraph_t graph = nullptr;
    const cudaError_t ended = cudaStreamEndCapture(stream_, &graph);
    cudaError_t e = cuda::replay_rule::keep_recording(g->workspace_gen, workspace_gen_)
                        ? ended
                        : cudaErrorStreamCaptureInvalidated;
    if (ended == cudaSuccess && e == cudaSuccess) {
      e = cudaGraphInstantiate(&g->exec, graph, 0);
    }
    if (graph) cudaGraphDestroy(graph);
    if (e != cudaSuccess) {  // not recordable: the caller runs the ops
      (void)cudaGetLastError();
      g->exec = nullptr;
      drop_step(g);
      return false;
    }
    launch(*g);
    ++replayed_;
    return true;
  }
  int64_t steps_replayed() const override { return replayed_; }
  void abort_step() override {
    StepGraph* g = rec_;
    rec_ = nullptr;
    prefetch_->drop_pending();
    kv_side_->drop_pending();
    cudaGraph_t graph = nullptr;
    if (cudaStreamEndCapture(stream_, &graph) == cudaSuccess && graph) cudaGraphDestroy(graph);
    (void)cudaGetLastError();
    if (g) drop_step(g);
  }

  // FP4 modes keep their GEMM operands in xq: the FP16 planes (paths * t * k halves, or in the
  // wgmma K order paths * t * k' with k' = k rounded up to 128; both <= t * k' floats), then the
  // activation tensor scale at float offset t * k' (act_scale).
  // An FP16 cache: two halves in each float of storage.
  int64_t kv_cache_floats(int64_t elements) const override {
    return kv_cache() == KvCache::kF16 ? (elements + 1) / 2 : elements;
  }
  int64_t quantized_activation_floats(int64_t t, int64_t k) const override {
    return t * padded_k(k) + 32;
  }

  std::unique_ptr<LinearWeights> prepare_linear(Mode mode, const float* w, const float* bias,
                                                int64_t n, int64_t k,
                                                std::string_view name) override {
    auto out = base(name, n, k, bias);
    out->mode = mode;
    if (const auto rule = fp4_rule(mode, k)) {
      const int group = rule->group;
      out->path = Path::kFp4;
      out->paths = rule->paths;
      out->group = group;
      out->sparse24 = rule->prepare == cuda::PrepareMode::kSharqNvfp4_24;
      // One block: codes (N, K/2), scales (N, K/group), then the tensor scale 4-aligned.
      const size_t codes = static_cast<size_t>(n * k / 2);
      const size_t scales = static_cast<size_t>(n * k / group);
      const size_t ts = (codes + scales + 3) / 4 * 4;
      out->w.grow(ts + sizeof(float));
      uint8_t* base8 = out->w.as<uint8_t>();
      out->fp4 = {base8, base8 + codes, reinterpret_cast<float*>(base8 + ts)};
      out->prefetch = prefetch_;
      DeviceMem wf(static_cast<size_t>(n * k) * sizeof(float));
      to_backend(w, wf.as<float>(), n * k);
      cuda::pack_weight(wf.as<float>(), n, k, group, out->fp4, absmax_.as<uint32_t>(), stream_);
      synchronize();
    } else if (mode_traits(mode).weight_bf16) {
      out->path = Path::kBf16;
      // quantize_activation runs only the bf16 rounding on the GPU; any other rule goes by host.
      if (mode_traits(mode).act != ActRule::kBf16Round) host_path_modes_.insert(mode);
      upload_bf16(*out, w, n * k);
    } else {  // the reference path: the CPU's exact dequantized weights, float32 on the GPU
      out->path = Path::kF32;
      host_path_modes_.insert(mode);
      const QuantizedWeight qw = quantize_weight(mode, w, n, k, name, default_threads());
      std::vector<float> deq(static_cast<size_t>(n * k));
      dequantize_weight(qw, deq.data(), default_threads());
      upload_f32(*out, deq.data(), n * k);
    }
    out->bytes = static_cast<int64_t>(out->w.bytes() + out->bias.bytes());
    return out;
  }

  std::unique_ptr<LinearWeights> prepare_linear_f32(const float* w, const float* bias, int64_t n,
                                                    int64_t k, std::string_view name) override {
    auto out = base(name, n, k, bias);
    out->quantized = false;
    out->path = Path::kF32;
    upload_f32(*out, w, n * k);
    out->bytes = static_cast<int64_t>(out->w.bytes() + out->bias.bytes());
    return out;
  }

  // bf16 weights, input rounded to bf16 in matmul: half the bytes of float32, and the LM head is
  // the largest single read of a decode step.
  std::unique_ptr<LinearWeights> prepare_lm_head(const float* w, int64_t n, int64_t k) override {
    auto out = base("lm_head.weight", n, k, nullptr);
    out->quantized = false;
    out->path = Path::kLmHead;
    upload_bf16(*out, w, n * k);
    out->bytes = static_cast<int64_t>(out->w.bytes());
    return out;
  }

  void quantize_activation(Mode mode, const float* x, int64_t t, int64_t k, float* xq,
                           std::string_view name) override {
    const ModeTraits& mt = mode_traits(mode);
    if (const auto rule = fp4_rule(mode, k)) {
      const Fp4Out o = fp4_out(t, k, xq, rule->prepare);
      cuda::prepare_fused(rule->prepare, x, t, k, o.sparse, o.residual, scratch(t), stream_,
                          o.planes, nullptr, cuda::PrepareSchedule::kAuto, o.images, o.order,
                          o.lo_flags);
    } else if (mt.act == ActRule::kBf16Round) {
      cuda::round_to_bf16(x, t * k, reinterpret_cast<uint16_t*>(xq), stream_);
    } else if (mt.act == ActRule::kIdentity) {
      check(cudaMemcpyAsync(xq, x, static_cast<size_t>(t * k) * sizeof(float),
                            cudaMemcpyDeviceToDevice, stream_),
            "copy activation");
    } else {  // the reference path: the CPU's exact quantizer, through host memory
      host_a_.resize(static_cast<size_t>(t * k));
      host_b_.resize(static_cast<size_t>(t * k));
      to_host(x, host_a_.data(), t * k);
      fake_quantize_activation(mode, host_a_.data(), t, k, host_b_.data(), name, default_threads());
      to_backend(host_b_.data(), xq, t * k);
    }
  }

  // RMSNorm fused into the FP4 prepare (h stays unwritten: the decoder reads only xq).
  void rms_norm_quantize(Mode mode, const float* x, const float* w, int64_t rows, int64_t d,
                         float eps, float* h, float* xq, std::string_view name) override {
    if (skipped(cuda::profile_skip::kNorm)) return;
    const auto rule = fp4_rule(mode, d);
    if (!rule) return Backend::rms_norm_quantize(mode, x, w, rows, d, eps, h, xq, name);
    const Fp4Out o = fp4_out(rows, d, xq, rule->prepare);
    cuda::prepare_rmsnorm(rule->prepare, x, w, eps, rows, d, o.sparse, o.residual, scratch(rows),
                          stream_, o.planes, nullptr, nullptr, cuda::PrepareSchedule::kAuto,
                          o.images, o.order, o.lo_flags);
  }

  // SwiGLU fused into the FP4 prepare of down_proj's input (out stays unwritten).
  void swiglu_quantize(Mode mode, const float* gate, const float* up, int64_t rows, int64_t k,
                       float* out, float* xq, std::string_view name) override {
    if (skipped(cuda::profile_skip::kSwiglu)) return;
    const auto rule = fp4_rule(mode, k);
    if (!rule || !fuse_swiglu_)
      return Backend::swiglu_quantize(mode, gate, up, rows, k, out, xq, name);
    const Fp4Out o = fp4_out(rows, k, xq, rule->prepare);
    cuda::prepare_swiglu(rule->prepare, gate, up, rows, k, o.sparse, o.residual, scratch(rows),
                         stream_, o.planes, nullptr, o.images, o.order, o.lo_flags);
  }

  void matmul(const LinearWeights& lw, const float* xq, int64_t t, float* y) override {
    const auto& w = static_cast<const CudaLinear&>(lw);
    switch (w.path) {
      case Path::kFp4:
        fp4_product(w, xq, t, y, false);
        break;
      case Path::kBf16:
        gemm(w, xq, CUDA_R_16BF, t, y);
        break;
      case Path::kLmHead: {
        if (skipped(cuda::profile_skip::kLmHead)) return;
        x16_.grow(static_cast<size_t>(t * w.k) * 2);  // the LM head's: not in recorded steps
        cuda::round_to_bf16(xq, t * w.k, x16_.as<uint16_t>(), stream_);
        gemm(w, x16_.as<void>(), CUDA_R_16BF, t, y);
        break;
      }
      case Path::kF32:
        gemm(w, xq, CUDA_R_32F, t, y);
        break;
    }
    if (w.has_bias) cuda::add_bias(y, w.bias.as<float>(), t, w.n, stream_);
  }

  // The residual add in the product's epilogue where the product allows it: the FP4 decode GEMM
  // and the cuBLAS prefill path add into y, cuBLAS bf16 takes beta = 1. A biased linear (the
  // CPU adds the bias before the residual) and the other paths: product, then add.
  void matmul_add(const LinearWeights& lw, const float* xq, int64_t t, float* y,
                  float* tmp) override {
    const auto& w = static_cast<const CudaLinear&>(lw);
    if (skipped(w.k > w.n ? cuda::profile_skip::kDown : cuda::profile_skip::kO)) return;
    if (!fuse_add_ || w.has_bias) return Backend::matmul_add(lw, xq, t, y, tmp);
    // (prefill_ws_ implies prefill_cublas_: both of those prefill paths add into y.)
    if (w.path == Path::kFp4 && (t <= decode_rows() || prefill_cublas_))
      return fp4_product(w, xq, t, y, true);
    if (w.path == Path::kBf16) return gemm(w.data, w.n, w.k, xq, CUDA_R_16BF, t, y, 1.0f);
    Backend::matmul_add(lw, xq, t, y, tmp);
  }

  // bf16 groups move into one block, rows side by side in group order, so that a decode step's
  // group is one cuBLAS product (FP4 groups need no move: the grouped decode GEMM takes each
  // weight where it is).
  void group_linears(std::span<LinearWeights* const> ws) override {
    if (ws.size() < 2) return;
    size_t total = 0;
    for (LinearWeights* lw : ws) {
      const auto& w = static_cast<const CudaLinear&>(*lw);
      if (w.path != Path::kBf16 || w.k != ws[0]->k || w.shared) return;
      total += static_cast<size_t>(w.n * w.k) * 2;
    }
    auto block = std::make_shared<DeviceMem>(total);
    size_t off = 0;
    for (LinearWeights* lw : ws) {
      const auto& w = static_cast<const CudaLinear&>(*lw);
      const size_t bytes = static_cast<size_t>(w.n * w.k) * 2;
      check(cudaMemcpyAsync(block->as<uint8_t>() + off, w.data, bytes, cudaMemcpyDeviceToDevice,
                            stream_),
            "group weights");
      off += bytes;
    }
    synchronize();  // every copy done before the old buffers go
    off = 0;
    for (LinearWeights* lw : ws) {
      auto& w = static_cast<CudaLinear&>(*lw);
      w.w = DeviceMem();
      w.shared = block;
      w.data = block->as<uint8_t>() + off;
      off += static_cast<size_t>(w.n * w.k) * 2;
    }
  }

  // Decode-sized groups as one launch: FP4 through the grouped decode GEMM, bf16 (laid out by
  // group_linears) through one cuBLAS product split into the outputs. Anything else: one by one.
  void matmul_group(std::span<const LinearWeights* const> ws, const float* xq, int64_t t,
                    std::span<float* const> ys) override {
    if (skipped(ws.size() == 3 ? cuda::profile_skip::kQkv : cuda::profile_skip::kGateUp)) return;
    if (!group_launch_ || ws.size() < 2 || ws.size() > 4 || t > decode_rows())
      return Backend::matmul_group(ws, xq, t, ys);
    const auto& w0 = static_cast<const CudaLinear&>(*ws[0]);
    bool fp4 = w0.path == Path::kFp4, bf16 = w0.path == Path::kBf16 && w0.shared;
    int64_t n_sum = 0;
    for (size_t i = 0; i < ws.size(); ++i) {
      const auto& w = static_cast<const CudaLinear&>(*ws[i]);
      fp4 =
          fp4 && w.path == Path::kFp4 && w.k == w0.k && w.paths == w0.paths && w.group == w0.group;
      // side by side in this order in one block
      bf16 = bf16 && w.path == Path::kBf16 && w.shared == w0.shared &&
             w.data == static_cast<const uint8_t*>(w0.data) + n_sum * w0.k * 2;
      n_sum += w.n;
    }
    // Where one launch measured faster (bench_group, H100): FP4 groups at every decode size
    // (gate/up at M = 8, 16: 40.1 vs 42.2 and 54.8 vs 68.9 us per linear, session 6); bf16
    // q/k/v-sized groups at every size and a gate/up-sized one (2 x 14336 rows) only at one row
    // (no split copies); past that it lost 3-5% to one launch per linear.
    const bool small_group = n_sum <= 8192;
    bf16 = bf16 && (small_group || t == 1);
    if (fp4) {
      std::array<cuda::DecodeGemmPart, 4> parts{};
      for (size_t i = 0; i < ws.size(); ++i) {
        const auto& w = static_cast<const CudaLinear&>(*ws[i]);
        parts[i] = {w.fp4, w.n, ys[i]};
      }
      // (the planes' order as prepared; a profiling run that skipped the prepare reads kMma)
      const bool prepared_here = act_.xq == xq;
      cuda::gemm_decode_mma_group_f32(reinterpret_cast<const uint16_t*>(xq), w0.paths,
                                      act_scale(xq, t, w0.k), t, parts.data(),
                                      static_cast<int>(ws.size()), w0.group, w0.k, stream_, false,
                                      prepared_here ? act_.order : cuda::PlaneOrder::kMma,
                                      prepared_here ? act_.lo_flags : nullptr);
      decode_product_launched(ws);
    } else if (bf16) {
      // One row: the outputs are the product's row if they lie side by side (the Session's do).
      bool adjacent = t == 1;
      for (size_t i = 1; i < ws.size(); ++i)
        adjacent = adjacent && ys[i] == ys[i - 1] + ws[i - 1]->n;
      float* y = ys[0];
      if (!adjacent) {
        grow(group_y_, static_cast<size_t>(t * n_sum) * sizeof(float));
        y = group_y_.as<float>();
      }
      gemm(w0.data, n_sum, w0.k, xq, CUDA_R_16BF, t, y);
      int64_t off = 0;
      for (size_t i = 0; i < ws.size() && !adjacent; ++i) {
        const size_t row = static_cast<size_t>(ws[i]->n) * sizeof(float);
        check(cudaMemcpy2DAsync(ys[i], row, y + off, static_cast<size_t>(n_sum) * sizeof(float),
                                row, static_cast<size_t>(t), cudaMemcpyDeviceToDevice, stream_),
              "split group output");
        off += ws[i]->n;
      }
    } else {
      return Backend::matmul_group(ws, xq, t, ys);
    }
    for (size_t i = 0; i < ws.size(); ++i) {
      const auto& w = static_cast<const CudaLinear&>(*ws[i]);
      if (w.has_bias) cuda::add_bias(ys[i], w.bias.as<float>(), t, w.n, stream_);
    }
  }

  void embedding(const float* table, int64_t vocab, int64_t d, const int32_t* ids, int64_t t,
                 float* out) override {
    check_ids(ids, t, vocab);
    if (rec_) {  // the recorded step reads its ids from the step inputs
      rec_->vocab = vocab;
      cuda::embedding(table, vocab, d, rec_->ids_dev(), t, out, stream_);
      return;
    }
    // Through pinned memory, so the copy is asynchronous: the host must not overwrite the
    // staging buffer while the previous copy may still read it.
    check(cudaEventSynchronize(ids_copied_), "wait for the ids copy");
    if (t > pinned_n_) {
      if (pinned_ids_) check(cudaFreeHost(pinned_ids_), "cudaFreeHost");
      pinned_ids_ = nullptr;
      pinned_n_ = 0;
      check(cudaMallocHost(reinterpret_cast<void**>(&pinned_ids_),
                           static_cast<size_t>(t) * sizeof(int32_t)),
            "cudaMallocHost");
      pinned_n_ = t;
    }
    std::copy(ids, ids + t, pinned_ids_);
    ids_.grow(static_cast<size_t>(t) * sizeof(int32_t));  // not used by recorded steps
    check(cudaMemcpyAsync(ids_.as<int32_t>(), pinned_ids_, static_cast<size_t>(t) * sizeof(int32_t),
                          cudaMemcpyHostToDevice, stream_),
          "copy ids");
    check(cudaEventRecord(ids_copied_, stream_), "record the ids copy");
    cuda::embedding(table, vocab, d, ids_.as<int32_t>(), t, out, stream_);
  }
  void rms_norm(const float* x, const float* w, int64_t rows, int64_t d, float eps,
                float* out) override {
    cuda::rms_norm(x, w, rows, d, eps, out, stream_);
  }
  void rope(float* x, int64_t batch, int64_t t, int64_t pos0, int64_t heads, int64_t head_dim,
            const float* inv_freq) override {
    cuda::rope(x, batch, t, pos0, heads, head_dim, inv_freq, stream_, pos_dev());
  }
  void kv_store(const float* k, const float* v, int64_t batch, int64_t t, int64_t pos0,
                int64_t kv_heads, int64_t head_dim, int64_t capacity, float* k_cache,
                float* v_cache) override {
    cuda::kv_store(k, v, batch, t, pos0, kv_heads, head_dim, capacity, k_cache, v_cache, stream_,
                   pos_dev(), kv_cache());
  }
  void rope_kv_store(float* q, float* k, const float* v, int64_t batch, int64_t t, int64_t pos0,
                     int64_t heads, int64_t kv_heads, int64_t head_dim, const float* inv_freq,
                     int64_t capacity, float* k_cache, float* v_cache) override {
    if (skipped(cuda::profile_skip::kRope)) return;
    if (!fuse_rope_) {
      return Backend::rope_kv_store(q, k, v, batch, t, pos0, heads, kv_heads, head_dim, inv_freq,
                                    capacity, k_cache, v_cache);
    }
    cuda::rope_kv_store(q, k, v, batch, t, pos0, heads, kv_heads, head_dim, inv_freq, capacity,
                        k_cache, v_cache, stream_, pos_dev(), kv_cache());
  }
  void attention(const float* q, int64_t batch, int64_t t, int64_t pos0, int64_t heads,
                 int64_t kv_heads, int64_t head_dim, int64_t capacity, const float* k_cache,
                 const float* v_cache, float* out) override {
    if (skipped(cuda::profile_skip::kAttn)) return;
    launch_attention(q, batch, t, pos0, heads, kv_heads, head_dim, capacity, k_cache, v_cache, out,
                     nullptr);
  }
  // The combine pass of split-key decode attention publishes the tensor max of its output, so
  // the o projection's prepare runs only its pass (one kernel less per layer); anything else:
  // attention, then the whole prepare.
  void attention_quantize(Mode mode, const float* q, int64_t batch, int64_t t, int64_t pos0,
                          int64_t heads, int64_t kv_heads, int64_t head_dim, int64_t capacity,
                          const float* k_cache, const float* v_cache, float* out, float* xq,
                          std::string_view name) override {
    const int64_t rows = batch * t, k = heads * head_dim;
    const auto rule = fp4_rule(mode, k);
    if (!rule || !fuse_attn_max_) {
      return Backend::attention_quantize(mode, q, batch, t, pos0, heads, kv_heads, head_dim,
                                         capacity, k_cache, v_cache, out, xq, name);
    }
    attend_quantize(mode, *rule, rows, k, out, xq, name, [&](const cuda::TensorMaxSink* sink) {
      return skipped(cuda::profile_skip::kAttn) ||
             launch_attention(q, batch, t, pos0, heads, kv_heads, head_dim, capacity, k_cache,
                              v_cache, out, sink);
    });
  }
  // Recorded decode steps (t = 1): earlier steps' K/V rows of the layer into L2 on a side branch
  // while the RMSNorm + prepare and the q/k/v product run (HBM is idle in the first), at most
  // SHARQ_CUDA_KV_PREFETCH_MB (default 0: off).
  void prefetch_kv(const float* k_cache, const float* v_cache, int64_t batch, int64_t t,
                   int64_t pos0, int64_t kv_heads, int64_t head_dim, int64_t capacity) override {
    if (!rec_ || t != 1 || kv_prefetch_bytes_ <= 0 || skipped(cuda::profile_skip::kAttn)) return;
    const int64_t elem = kv_cache() == KvCache::kF16 ? 2 : 4;
    cuda::l2_prefetch_kv(k_cache, v_cache, batch * kv_heads, capacity, head_dim * elem, pos0,
                         pos_dev(), kv_prefetch_bytes_, kv_side_->fork());
  }
  // A decode step (t = 1) over a float32 cache: RoPE and the KV store inside the attention
  // kernel (cuda::rope_attention_decode; one kernel fewer a layer). SHARQ_CUDA_ROPE_ATTN=0: the
  // separate calls (A/B).
  void rope_attention(Mode mode, float* q, float* k, const float* v, int64_t batch, int64_t t,
                      int64_t pos0, int64_t heads, int64_t kv_heads, int64_t head_dim,
                      const float* inv_freq, int64_t capacity, float* k_cache, float* v_cache,
                      float* out, float* xq, std::string_view name) override {
    const int64_t rows = batch * t, dim = heads * head_dim;
    const auto rule = xq ? fp4_rule(mode, dim) : std::nullopt;
    const bool fusable = rope_attn_ && fuse_rope_ && t == 1 && kv_cache() == KvCache::kF32 &&
                         (head_dim == 64 || head_dim == 128) &&
                         !skipped(cuda::profile_skip::kRope) &&
                         !skipped(cuda::profile_skip::kAttn) && (!xq || (rule && fuse_attn_max_));
    if (!fusable) {
      return Backend::rope_attention(mode, q, k, v, batch, t, pos0, heads, kv_heads, head_dim,
                                     inv_freq, capacity, k_cache, v_cache, out, xq, name);
    }
    const size_t ws = attention_workspace(batch, 1, heads, kv_heads, head_dim, capacity);
    const auto attend = [&](const cuda::TensorMaxSink* sink) {
      bool published = false;
      if (!cuda::rope_attention_decode(q, k, v, batch, pos0, heads, kv_heads, head_dim,
                                       rope_table(inv_freq, head_dim / 2, capacity), capacity,
                                       k_cache, v_cache, out, ws ? attn_ws_.as<void>() : nullptr,
                                       ws, stream_, pos_dev(), sink, KvCache::kF32, &published))
        throw Error("cuda backend: rope_attention_decode refused a float32 cache, head_dim " +
                    std::to_string(head_dim));
      return published;
    };
    if (!xq) {
      attend(nullptr);
      return;
    }
    attend_quantize(mode, *rule, rows, dim, out, xq, name, attend);
  }
  void swiglu(const float* gate, const float* up, int64_t n, float* out) override {
    cuda::swiglu(gate, up, n, out, stream_);
  }
  void add(float* x, const float* y, int64_t n) override { cuda::add(x, y, n, stream_); }

 private:
  static constexpr size_t kMaxSteps = 8;  // recorded keys kept
  static constexpr size_t kBlasWorkspace = size_t{32} << 20;

  // The (cos, sin) table of rope_attention for these frequencies (resident, so the pointer names
  // them) and at least `positions` positions; rebuilt when either changes (the recorded steps
  // that read the old one are dropped).
  const float2* rope_table(const float* inv_freq, int64_t half, int64_t positions) {
    if (inv_freq != rope_freq_ || half != rope_half_ || positions > rope_positions_) {
      rope_cs_.grow(static_cast<size_t>(half * positions) * sizeof(float2));
      ++workspace_gen_;
      cuda::rope_cos_sin_table(inv_freq, half, positions, rope_cs_.as<float2>(), stream_);
      rope_freq_ = inv_freq;
      rope_half_ = half;
      rope_positions_ = positions;
    }
    return rope_cs_.as<float2>();
  }
  // n floats (at least one) from `allocate` (cudaMalloc or cudaMallocHost).
  template <typename Allocate>
  static float* alloc_floats(int64_t n, const char* kind, Allocate allocate, const char* what) {
    if (n < 0) throw Error(std::string("cuda backend: negative ") + kind + "allocation");
    void* p = nullptr;
    check(allocate(&p, static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(float)), what);
    return static_cast<float*>(p);
  }
  // Grows a workspace; a move invalidates the recorded steps that use it.
  void grow(DeviceMem& m, size_t bytes) {
    if (m.grow(bytes)) ++workspace_gen_;
  }
  const int64_t* pos_dev() const { return rec_ ? rec_->pos_dev() : nullptr; }
  StepGraph* find_step(uint64_t key) {
    for (auto& g : steps_) {
      if (g->key == key) return g.get();
    }
    return nullptr;
  }
  void drop_step(StepGraph* g) {
    std::erase_if(steps_, [g](const auto& p) { return p.get() == g; });
  }
  // Runs a recorded step on the stream; `done` marks when its inputs have been read.
  void launch(StepGraph& g) {
    check(cudaGraphLaunch(g.exec, stream_), "launch decode graph");
    check(cudaEventRecord(g.done, stream_), "record decode graph");
  }
  // The step inputs into the pinned block, once the previous launch has copied them out.
  void stage(StepGraph& g, const int32_t* ids, int64_t pos) {
    check(cudaEventSynchronize(g.done), "wait for the previous step");
    std::memcpy(g.host, &pos, sizeof(pos));
    std::memcpy(g.host + sizeof(int64_t), ids, static_cast<size_t>(g.rows) * sizeof(int32_t));
  }
  static void check_ids(const int32_t* ids, int64_t t, int64_t vocab) {
    for (int64_t i = 0; i < t; ++i) {
      if (ids[i] < 0 || ids[i] >= vocab) {
        throw Error("embedding: token id " + std::to_string(ids[i]) + " at position " +
                    std::to_string(i) + " is outside the vocabulary [0, " + std::to_string(vocab) +
                    ")");
      }
    }
  }

  // prepare's outputs for a (t, k) activation: the tensor scale in xq (after t * k floats,
  // quantized_activation_floats), the packed codes and scales of both paths in packed_, and the
  // FP16 GEMM planes in xq's first t * k floats, except for a sharq-nvfp4-24 prefill that takes
  // the 2:4 kernel: its prepare writes the kernel's stage images into prefill_act_ instead, and a
  // product that wants the other form after all expands it from the packed outputs (fp4_planes,
  // fp4_images). The kernels store 16 bytes at a time: regions are 256-aligned.
  // lo_flags: the SharQ planes' lo flags (kernels.h prepare: the planes then hold the merged
  // operand), after the packed outputs in packed_, where a decode product skips lo; else null.
  struct Fp4Out {
    cuda::Nvfp4View sparse, residual;
    uint16_t* planes;
    uint8_t* images;
    cuda::PlaneOrder order;
    uint8_t* lo_flags;
  };
  static int64_t padded_k(int64_t k) { return cuda::plane_row_halves(k, cuda::PlaneOrder::kWgmma); }
  static const float* act_scale(const float* xq, int64_t t, int64_t k) {
    return xq + t * padded_k(k);
  }
  Fp4Out fp4_out(int64_t t, int64_t k, float* xq, cuda::PrepareMode mode) {
    auto up = [](size_t b) { return (b + 255) / 256 * 256; };
    const size_t n = static_cast<size_t>(t * k), codes = up(n / 2), scales = up(n / 16);
    grow(packed_, 2 * (codes + scales) + up(n / 32));
    uint8_t* p = packed_.as<uint8_t>();
    float* ts = xq + t * padded_k(k);
    // Whether the products will want the images: their N is not known here, K stands in for it
    // (q, o, gate/up have N >= K; a wrong guess costs one expansion, not a wrong product).
    // The merged prefill: SharQ products past the decode rows, outside a graph capture (it
    // reads K' back from the device).
    const bool merged =
        prefill_merged_ && mode != cuda::PrepareMode::kNvfp4 && t > decode_rows() && !capturing();
    const bool ws = !merged && mode == cuda::PrepareMode::kSharqNvfp4_24 &&
                    on_ws_kernel(t, k, prefill_ws_always_ || prefill_images_always_);
    // SHARQ_CUDA_PREFILL=expand (tests): neither, so that the products expand what they need.
    const bool images = ws && !prefill_images_always_;
    if (images) grow(prefill_act_, cuda::prefill_ws_act_bytes(t, k));
    // The decode GEMM's planes in the K order it runs fastest from (a prefill product's planes
    // stay in kMma, which every other consumer reads).
    const cuda::PlaneOrder order =
        merged ? cuda::PlaneOrder::kMmaRows
               : (!ws && t <= decode_rows() ? cuda::decode_plane_order(t) : cuda::PlaneOrder::kMma);
    // The merged planes and their lo flags where a product skips lo: the per-tile decode GEMM's
    // two-MMA rows, 5..8 (gemm_decode_mma.cu kLoSkip; session 32 measured batch 8 +7% with them,
    // and batch 4, where one MMA serves both paths, slower).
    uint8_t* lo_flags = merged || (lo_skip_ && !ws && mode != cuda::PrepareMode::kNvfp4 &&
                                   order == cuda::PlaneOrder::kMma && t > 4 && t <= 8)
                            ? p + 2 * (codes + scales)
                            : nullptr;
    act_ = PreparedAct{xq,
                       t,
                       k,
                       mode,
                       {p, p + codes, ts},
                       {p + codes + scales, p + 2 * codes + scales, ts},
                       !ws,
                       order,
                       images,
                       lo_flags};
    return {act_.sparse,
            act_.residual,
            ws ? nullptr : reinterpret_cast<uint16_t*>(xq),
            images ? prefill_act_.as<uint8_t>() : nullptr,
            order,
            lo_flags};
  }
  // Whether a sharq-nvfp4-24 product of t rows and N = n takes the 2:4 prefill kernel (always:
  // at any size past the decode rows); fp4_out asks it of K before the products are known.
  bool on_ws_kernel(int64_t t, int64_t n, bool always) const {
    return prefill_ws_ && t > decode_rows() && (always || cuda::prefill_ws_fills_device(t, n));
  }
  // The last FP4 prepare's activation, as the products of xq need it: its FP16 planes (written by
  // prepare or expanded here from the packed outputs) or its 2:4 stage images (expanded into
  // prefill_act_ once for the products sharing them: q/k/v, gate/up).
  const PreparedAct& prepared(const float* xq, int64_t t, int64_t k, const char* what) const {
    if (act_.xq != xq || act_.t != t || act_.k != k)
      throw Error(std::string("cuda backend: ") + what + " of a " + shape_str(t, k) +
                  " activation that is not the last FP4 prepare's (" + shape_str(act_.t, act_.k) +
                  ")");
    return act_;
  }
  const uint16_t* fp4_planes(const float* xq, int64_t t, int64_t k) {
    const PreparedAct& a = prepared(xq, t, k, "FP16 planes");
    if (!a.planes) {  // expanded in kMma (a prefill's products, or the tests' expand path)
      cuda::expand_activation_planes(a.mode, a.sparse, a.residual, t, k,
                                     reinterpret_cast<uint16_t*>(a.xq), stream_);
      act_.planes = true;
      act_.order = cuda::PlaneOrder::kMma;
      act_.lo_flags = nullptr;  // the expansion writes none
    }
    return reinterpret_cast<const uint16_t*>(xq);
  }
  const uint8_t* fp4_images(const float* xq, int64_t t, int64_t k) {
    const PreparedAct& a = prepared(xq, t, k, "2:4 stage images");
    if (!a.images) {
      grow(prefill_act_, cuda::prefill_ws_act_bytes(t, k));
      cuda::prefill_ws_images(a.sparse, a.residual, t, k, prefill_act_.as<uint8_t>(), stream_);
      act_.images = true;
    }
    return prefill_act_.as<uint8_t>();
  }
  // The fused prepares' scratch: zeroed when (re)allocated, left zeroed by every call.
  uint32_t* scratch(int64_t rows) {
    const size_t need = cuda::prepare_scratch_bytes(rows);
    if (need > scratch_.bytes()) {
      grow(scratch_, need);
      check(cudaMemsetAsync(scratch_.as<void>(), 0, scratch_.bytes(), stream_), "memset");
    }
    return scratch_.as<uint32_t>();
  }

  std::unique_ptr<CudaLinear> base(std::string_view name, int64_t n, int64_t k, const float* bias) {
    auto out = std::make_unique<CudaLinear>();
    out->name = std::string(name);
    out->n = n;
    out->k = k;
    out->has_bias = bias != nullptr;
    if (bias) {
      out->bias.grow(static_cast<size_t>(n) * sizeof(float));
      to_backend(bias, out->bias.as<float>(), n);
    }
    return out;
  }
  void upload_f32(CudaLinear& out, const float* w, int64_t n) {
    out.w.grow(static_cast<size_t>(n) * sizeof(float));
    to_backend(w, out.w.as<float>(), n);
    out.data = out.w.as<void>();
  }
  // Rounded on the host by the same function the CPU backend's bf16 rule uses.
  void upload_bf16(CudaLinear& out, const float* w, int64_t n) {
    std::vector<uint16_t> h(static_cast<size_t>(n));
    parallel_for(n, default_threads(), [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const float r = bf16_round(w[i]);
        uint32_t bits;
        std::memcpy(&bits, &r, 4);
        h[static_cast<size_t>(i)] = static_cast<uint16_t>(bits >> 16);
      }
    });
    out.w.grow(static_cast<size_t>(n) * 2);
    check(cudaMemcpyAsync(out.w.as<uint16_t>(), h.data(), static_cast<size_t>(n) * 2,
                          cudaMemcpyHostToDevice, stream_),
          "copy weight");
    synchronize();
    out.data = out.w.as<void>();
  }
  // The FP4 product of a prepared activation (xq: the planes, then s_x): the decode GEMM up to
  // decode_rows() rows, else (sharq-nvfp4-24) the warp-specialised 2:4 kernel or the weight
  // decode + cuBLAS (or the one-launch wgmma kernel, which cannot accumulate: matmul_add does not
  // send it here). accumulate: y += the product.
  void fp4_product(const CudaLinear& w, const float* xq, int64_t t, float* y, bool accumulate) {
    const float* sx = act_scale(xq, t, w.k);
    if (act_.xq == xq && act_.t == t && act_.k == w.k && act_.order == cuda::PlaneOrder::kMmaRows)
      return merged_product(w, sx, t, y, accumulate);
    const bool ws = w.sparse24 && on_ws_kernel(t, w.n, prefill_ws_always_);
    const uint16_t* planes = ws ? nullptr : fp4_planes(xq, t, w.k);
    if (t <= decode_rows()) {
      const cuda::DecodeGemmPart part{w.fp4, w.n, y};
      cuda::gemm_decode_mma_group_f32(planes, w.paths, sx, t, &part, 1, w.group, w.k, stream_,
                                      accumulate, act_.order, act_.lo_flags);
      const LinearWeights* one = &w;
      decode_product_launched({&one, 1});
    } else if (ws) {  // the one-launch 2:4 + dense product
      cuda::gemm_prefill_ws_f32(fp4_images(xq, t, w.k), sx, t, w.fp4, w.n, w.k, y, stream_,
                                accumulate);
    } else if (prefill_cublas_) {
      grow(prefill_scratch_, cuda::prefill_cublas_scratch_bytes(w.n, w.k));
      cuda::gemm_prefill_cublas_f32(blas_, planes, w.paths, sx, t, w.fp4, w.group, w.n, w.k, y,
                                    prefill_scratch_.as<void>(), stream_, accumulate);
    } else {
      cuda::gemm_prefill_f32(planes, w.paths, sx, t, w.fp4, w.group, w.n, w.k, y, stream_);
    }
  }
  // The merged prefill's product (kernels.h gemm_prefill_merged_f32): lo compacted at the
  // activation's first product, K' read back there (the host waits for the event behind the
  // kernel that writes it, while the GPU decodes the weight), the weight decoded with its K'
  // columns gathered, one cuBLAS GEMM.
  void merged_product(const CudaLinear& w, const float* sx, int64_t t, float* y, bool accumulate) {
    auto* planes = reinterpret_cast<uint16_t*>(act_.xq);
    if (!kprime_host_) {
      check(cudaMallocHost(&kprime_host_, sizeof(int32_t)), "cudaMallocHost");
      check(cudaEventCreateWithFlags(&kprime_copied_, cudaEventDisableTiming), "cudaEventCreate");
    }
    if (!act_.columns) {
      grow(merged_cols_, cuda::merged_columns_bytes(w.k));
      cuda::merged_lo_columns(planes, act_.lo_flags, t, w.k, merged_columns(), stream_);
      act_.columns = true;
      act_.kprime = -1;
    }
    grow(prefill_scratch_, cuda::prefill_merged_scratch_bytes(w.n, w.k));
    const bool first = act_.kprime < 0;
    cuda::gemm_prefill_merged_f32(blas_, planes, merged_columns(), &act_.kprime, sx, t, w.fp4,
                                  w.group, w.n, w.k, y, prefill_scratch_.as<void>(), stream_,
                                  accumulate);
    if (first && merged_stats_) {
      std::fprintf(stderr,
                   "cuda backend: merged prefill %s: %lld x %lld, K' = %lld (%.2f%% of K)\n",
                   w.name.c_str(), static_cast<long long>(t), static_cast<long long>(w.k),
                   static_cast<long long>(act_.kprime),
                   100.0 * static_cast<double>(act_.kprime) / static_cast<double>(w.k));
    }
  }
  cuda::MergedColumns merged_columns() const {
    return {merged_cols_.as<void>(), kprime_host_, kprime_copied_};
  }
  bool capturing() const {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    check(cudaStreamIsCapturing(stream_, &status), "cudaStreamIsCapturing");
    return status != cudaStreamCaptureStatusNone;
  }
  // The attention workspace of this shape, grown in attn_ws_; its size.
  size_t attention_workspace(int64_t batch, int64_t t, int64_t heads, int64_t kv_heads,
                             int64_t head_dim, int64_t capacity) {
    const size_t ws =
        cuda::attention_workspace_bytes(batch, t, heads, kv_heads, head_dim, capacity);
    grow(attn_ws_, ws);
    return ws;
  }
  // Runs `attend(sink)` (an attention into `out` that returns whether it published the max of
  // out into sink), then the o projection's activation rule into xq: only the quantization pass
  // where the max was published, else the whole prepare.
  template <typename Attend>
  void attend_quantize(Mode mode, const Fp4Rule& rule, int64_t rows, int64_t k, float* out,
                       float* xq, std::string_view name, const Attend& attend) {
    const Fp4Out o = fp4_out(rows, k, xq, rule.prepare);
    uint32_t* sc = scratch(rows);
    const cuda::TensorMaxSink sink{
        sc, rule.prepare == cuda::PrepareMode::kNvfp4 ? nullptr : o.sparse.tensor_scale,
        o.residual.tensor_scale};
    if (attend(&sink)) {
      if (skipped(cuda::profile_skip::kOPass)) return;
      cuda::prepare_pass(rule.prepare, out, rows, k, o.sparse, o.residual, sc, stream_, o.planes,
                         o.images, o.order, o.lo_flags);
    } else {
      quantize_activation(mode, out, rows, k, xq, name);
    }
  }
  // cuda::attention with the workspace grown to fit; returns whether it published the tensor
  // max of out into `sink`.
  bool launch_attention(const float* q, int64_t batch, int64_t t, int64_t pos0, int64_t heads,
                        int64_t kv_heads, int64_t head_dim, int64_t capacity, const float* k_cache,
                        const float* v_cache, float* out, const cuda::TensorMaxSink* sink) {
    const size_t ws = attention_workspace(batch, t, heads, kv_heads, head_dim, capacity);
    return cuda::attention(q, batch, t, pos0, heads, kv_heads, head_dim, capacity, k_cache, v_cache,
                           out, ws ? attn_ws_.as<void>() : nullptr, ws, stream_, pos_dev(), sink,
                           kv_cache());
  }
  // Tells the next-product prefetch that the FP4 decode product of `ws` was just launched.
  void decode_product_launched(std::span<const LinearWeights* const> ws) {
    if (!prefetch_->enabled()) return;
    std::vector<const void*> owners;
    std::vector<cuda::L2PrefetchPart> parts;
    for (const LinearWeights* lw : ws) {
      const auto& w = static_cast<const CudaLinear&>(*lw);
      owners.push_back(&w);
      parts.push_back({w.fp4, w.n, w.k, w.group});
    }
    prefetch_->launched(owners[0], owners, parts, rec_ != nullptr);
  }
  // y (t, N) = x (t, K) . W (N, K)^T in float32 accumulation: column-major, y^T = W . x^T.
  void gemm(const CudaLinear& w, const void* x, cudaDataType_t type, int64_t t, float* y) {
    gemm(w.data, w.n, w.k, x, type, t, y);
  }
  // beta = 1: y += the product.
  void gemm(const void* w, int64_t n_, int64_t k_, const void* x, cudaDataType_t type, int64_t t,
            float* y, float beta = 0.0f) {
    const float one = 1.0f;
    const auto n = static_cast<int>(n_), k = static_cast<int>(k_), m = static_cast<int>(t);
    check_blas(cublasGemmEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, w, type, k, x, type, k,
                            &beta, y, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx");
  }

  std::string name_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  std::vector<DeviceMem> resident_;
  DeviceMem absmax_, scratch_, packed_, ids_, attn_ws_, x16_, group_y_, prefill_scratch_,
      prefill_act_, merged_cols_;
  std::vector<float> host_a_, host_b_;
  int32_t* pinned_ids_ = nullptr;
  cudaEvent_t ids_copied_ = nullptr;  // the last ids copy out of pinned_ids_
  int64_t pinned_n_ = 0;
  DeviceMem blas_ws_;         // cuBLAS's workspace, fixed so a recorded step can use it
  bool graphs_ = true;        // SHARQ_CUDA_GRAPHS=0 turns decode-step replay off
  bool group_launch_ = true;  // SHARQ_CUDA_GROUP=0: grouped linears one launch each (A/B)
  // FP4 products of more than decode_rows() rows: SharQ on the merged operand (prefill_merged_),
  // nvfp4 on weight decode + cuBLAS FP16 (default). Any other SHARQ_CUDA_PREFILL value turns the
  // merged operand off: =paths sends sharq-nvfp4-24 to the warp-specialised 2:4 kernel where its
  // tiles fill the device and the rest to weight decode + one cuBLAS GEMM per path (session 32's
  // default), =cublas sharq-nvfp4-24 to cuBLAS too, =ws to the 2:4 kernel at any size, =wgmma
  // every mode to the one-launch dense kernel (A/B).
  bool prefill_cublas_ = true;
  bool prefill_ws_ = true;
  bool prefill_ws_always_ = false;  // SHARQ_CUDA_PREFILL=ws: also products of few tiles (tests)
  // SHARQ_CUDA_PREFILL=expand: sharq-nvfp4-24 prefill prepares write neither the FP16 planes nor
  // the stage images, at any size; each product expands what it reads from the packed outputs
  // (tests)
  bool prefill_images_always_ = false;
  // SharQ prefill products as one GEMM of the merged operand (merged_product; default, also
  // SHARQ_CUDA_PREFILL=merged). Measured (session 33, H200, prefill 1 x 2048, same call):
  // sharq-nvfp4-24 99.5 vs 108.5 ms for =paths, sharq-nvfp4 93.8 vs 125.6 ms; 92.9 and 88.6 ms
  // once the column step was made faster (bf16 77.5).
  bool prefill_merged_ = true;
  bool merged_stats_ = false;       // SHARQ_CUDA_MERGED_STATS: K' of each activation to stderr
  int32_t* kprime_host_ = nullptr;  // pinned: K' of the last merged_lo_columns
  cudaEvent_t kprime_copied_ = nullptr;
  PreparedAct act_;          // the last FP4 prepare (fp4_out)
  bool fuse_add_ = true;     // SHARQ_CUDA_FUSE_ADD=0: residual adds as separate kernels (A/B)
  bool fuse_swiglu_ = true;  // SHARQ_CUDA_FUSE_SWIGLU=0: SwiGLU as its own kernel (A/B)
  // SHARQ_CUDA_LO_SKIP=0: no lo flags, so the decode products read all of the SharQ planes' lo
  // (A/B; docs/merged_operand.md)
  bool lo_skip_ = true;
  bool fuse_rope_ = true;  // SHARQ_CUDA_FUSE_ROPE=0: RoPE q, RoPE k, KV store as three kernels
  bool rope_attn_ = true;  // SHARQ_CUDA_ROPE_ATTN=0: RoPE + KV store outside decode attention
  std::unique_ptr<SideBranch> kv_side_;  // prefetch_kv's branch
  // Off by default: session 30 (H200, one call, two alternating runs) measured batch 1 415.3 /
  // 419.1 tok/s with 16 MiB and 416.6 / 421.2 without, batch 8 1752 / 1752 and 1758 / 1766; the
  // prefetch kernel shares the q/k/v product's HBM and SMs, which the attention's own pre-wait
  // fetch of its first keys already covers. SHARQ_CUDA_KV_PREFETCH_MB=16 for A/B.
  static constexpr double kKvPrefetchMiB = 0;
  int64_t kv_prefetch_bytes_ = 0;  // SHARQ_CUDA_KV_PREFETCH_MB (kKvPrefetchMiB)
  DeviceMem rope_cs_;              // rope_table()
  const float* rope_freq_ = nullptr;
  int64_t rope_half_ = 0, rope_positions_ = 0;
  // SHARQ_CUDA_FUSE_ATTN_MAX=0: the o projection's prepare computes its own tensor max (A/B)
  bool fuse_attn_max_ = true;
  uint32_t skip_ = 0;  // SHARQ_CUDA_PROFILE_SKIP: ops not run (profiling only)
  bool skipped(cuda::profile_skip::Op op) const { return (skip_ & op) != 0; }
  std::shared_ptr<NextProductPrefetch> prefetch_;  // the next product's weights into L2
  std::vector<std::unique_ptr<StepGraph>> steps_;  // the most recent keys, oldest first
  StepGraph* rec_ = nullptr;                       // the step being recorded
  int64_t replayed_ = 0;                           // steps_replayed()
  uint64_t workspace_gen_ = 0;                     // bumped whenever a workspace below moves
  std::set<Mode> host_path_modes_;  // modes whose linears take the host reference path
};

}  // namespace

bool cuda_backend_built() {
  return true;
}

std::unique_ptr<Backend> make_cuda_backend(int device_index) {
  return std::make_unique<CudaBackend>(device_index);
}

}  // namespace sharq::engine
