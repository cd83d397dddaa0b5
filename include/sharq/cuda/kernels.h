// Host API of the Hopper (sm_90a) kernels: weight packing, SharQ prepare, decode-regime GEMMs.
// Device pointers in, device pointers out; every call is asynchronous on `stream`. Layouts match
// the CPU reference's PackedTensor (formats.h). Not the engine backend (that is issue 6).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace sharq::cuda {

// NVFP4 (g16 or g32) of a (rows x k) float32 matrix, planar like PackedTensor:
//   codes: rows * k/2 bytes (element 2i in the low nibble); scales: rows * k/g UE4M3 bytes;
//   tensor_scale: one float (max|X| / 2688, 1 for an all-zero matrix).
struct Nvfp4View {
  uint8_t* codes;
  uint8_t* scales;
  float* tensor_scale;
};

// Which activation rule prepare applies (SPEC 5).
enum class PrepareMode { kNvfp4, kSharqNvfp4, kSharqNvfp4_24 };

// The K order of the FP16 GEMM planes (prepare's gemm_f16 output, the decode GEMMs' input).
//   kMma: inside every 8-element group along K the order 0,4,1,5,2,6,3,7 (the pair order of the
//     GEMM's nibble decode); rows k halves apart. Every plane consumer reads it.
//   kWgmma: besides, inside every 128-wide K window the pairs permuted into the K-step order of
//     the wgmma decode kernel (gemm_decode_wgmma.cu), so that it copies whole 16-byte chunks
//     instead of gathering 4-byte pairs; rows plane_row_halves(k, kWgmma) (k rounded up to 128)
//     halves apart, zeros in the padding. Only gemm_decode_mma* read it (decode_plane_order says
//     when they want it), and only up to 2^31 halves a plane.
//   kMmaRows: kMma's K order with each row's two planes side by side, row r's plane p at
//     r * 2k + p * k (rows 2k halves apart; plane 1 starts k halves in): the merged prefill's
//     operand [hi | lo], whose lo is compacted in place to the columns where it is not zero
//     (merged_lo_columns). Written only with lo_flags; read only by gemm_prefill_merged_f32.
enum class PlaneOrder { kMma, kWgmma, kMmaRows };
constexpr int64_t plane_row_halves(int64_t k, PlaneOrder order) {
  return order == PlaneOrder::kWgmma ? (k + 127) / 128 * 128
                                     : (order == PlaneOrder::kMmaRows ? 2 * k : k);
}

// Scratch the prepare needs: one uint32 for the tensor max (device memory).
// x: (rows, k) float32, k % 64 == 0. Writes for the SharQ modes the backbone (NVFP4 g32, dense
// layout with zeros where dropped) into `sparse` and the residual (NVFP4 g16) into `residual`;
// for kNvfp4 only `residual` (NVFP4 g16 of x'). When `decoded` is not null it also writes the
// scaled-domain reconstruction X~_sp + R~ as float32 (rows, k) for gemm_decode (v1).
// When `gemm_f16` is not null it writes the exact FP16 decodes (E2M1 x UE4M3 needs <= 6
// significant bits and lies in [2^-10, 2688]) that gemm_decode_mma reads: shape (paths, rows, k)
// with paths = 2 (plane 0 backbone X~_sp, plane 1 residual R~) for the SharQ modes and 1 (R~)
// for kNvfp4, scaled domain, in the K order `order` (PlaneOrder; rows plane_row_halves apart).
// lo_flags (SharQ modes, with gemm_f16; kNvfp4 writes none): the two planes hold instead the
// merged operand
// (docs/merged_operand.md): plane 0 hi = RNE_fp16(X~_sp + R~), plane 1 lo = the exact rest (zero
// where the sum is an FP16 value), and lo_flags one byte per 32-element block, rows x k / 32
// row-major, 1 where that block's lo is not all zero (gemm_decode_mma skips plane 1 where they
// are clear). Every GEMM sums its two planes' products, so either form gives SPEC 7's
// X~_sp W~^T + R~ W~^T. The same parameter on every prepare below.
void prepare(PrepareMode mode, const float* x, int64_t rows, int64_t k, Nvfp4View sparse,
             Nvfp4View residual, float* decoded, uint32_t* absmax_scratch, cudaStream_t stream,
             uint16_t* gemm_f16 = nullptr, PlaneOrder order = PlaneOrder::kMma,
             uint8_t* lo_flags = nullptr);

// How prepare_fused / prepare_rmsnorm order the tensor max and the decomposition (measured in
// bench_prepare; kAuto: two kernels with PDL up to 2^20 elements, plain two kernels above).
//   kTwoKernel: max kernel whose last block publishes s_t, then the pass (no memset launch).
//   kTwoKernelPdl: the same with programmatic dependent launch: the pass starts loading x while
//     the max kernel runs.
//   kSingleLaunch: one cooperative kernel, a grid barrier between the max and the pass; up to
//     ~264 x 256 x 32 elements each thread keeps its block in registers (x read once).
enum class PrepareSchedule { kAuto, kTwoKernel, kTwoKernelPdl, kSingleLaunch };

// Scratch (device memory) of prepare_fused and prepare_rmsnorm: zero it once when allocated
// (cudaMemset); every call leaves it ready for the next. One stream at a time per scratch.
// prepare_fused uses the first 148 bytes (counters, the tensor max, up to 32 producer blocks'
// maxima); prepare_rmsnorm also one float per row.
constexpr size_t prepare_scratch_bytes(int64_t rows) {
  return 4 * (5 + 32) + 4 * static_cast<size_t>(rows);
}

// prepare() without the memset launch: same outputs, bit for bit (codes, scales, tensor scales,
// gemm_f16 planes, decoded), in one or two launches (`schedule`). scratch:
// prepare_scratch_bytes(0) bytes, zeroed once.
// ws_images (sharq-nvfp4-24, two-kernel schedules): also the 2:4 prefill kernel's stage images
// (prefill_ws_act_bytes(rows, k), 16-byte aligned), the same bytes as prefill_ws_images makes
// from the packed outputs; the same parameter on prepare_pass, prepare_swiglu, prepare_rmsnorm.
// order: the planes' K order (PlaneOrder), as on prepare(); the same on every prepare below.
void prepare_fused(PrepareMode mode, const float* x, int64_t rows, int64_t k, Nvfp4View sparse,
                   Nvfp4View residual, uint32_t* scratch, cudaStream_t stream,
                   uint16_t* gemm_f16 = nullptr, float* decoded = nullptr,
                   PrepareSchedule schedule = PrepareSchedule::kAuto, uint8_t* ws_images = nullptr,
                   PlaneOrder order = PlaneOrder::kMma, uint8_t* lo_flags = nullptr);

// Where a producer kernel publishes the tensor max of the activation it writes, so that the
// prepare after it runs only its pass (prepare_pass): that prepare's scratch
// (prepare_scratch_bytes, zeroed once, left zeroed) and its tensor-scale outputs (ts_sparse null
// for nvfp4). attention() takes one.
struct TensorMaxSink {
  uint32_t* scratch;
  float* ts_sparse;
  float* ts_residual;
};
// prepare_fused's second kernel alone, for an x whose tensor max a producer published into
// `scratch` (TensorMaxSink): the same codes, scales and planes as prepare_fused. Launched as the
// producer's programmatic dependent, it reads x only after the producer completes.
void prepare_pass(PrepareMode mode, const float* x, int64_t rows, int64_t k, Nvfp4View sparse,
                  Nvfp4View residual, uint32_t* scratch, cudaStream_t stream, uint16_t* gemm_f16,
                  uint8_t* ws_images = nullptr, PlaneOrder order = PlaneOrder::kMma,
                  uint8_t* lo_flags = nullptr);

// h = silu(gate) * up (rows, k), computed as the engine's swiglu kernel does, then
// prepare_fused(mode, h, ...) in two kernels (h is never stored): the same bits as swiglu then
// prepare_fused. scratch: prepare_scratch_bytes(0), zeroed once.
void prepare_swiglu(PrepareMode mode, const float* gate, const float* up, int64_t rows, int64_t k,
                    Nvfp4View sparse, Nvfp4View residual, uint32_t* scratch, cudaStream_t stream,
                    uint16_t* gemm_f16 = nullptr, float* decoded = nullptr,
                    uint8_t* ws_images = nullptr, PlaneOrder order = PlaneOrder::kMma,
                    uint8_t* lo_flags = nullptr);

// RMSNorm fused in front of prepare: h = (x * inv_rms) * norm_w with
// inv_rms = float(1 / sqrt(sum_j x_j^2 / k + eps)) summed in double exactly as the CPU
// reference (cpu::rms_norm: h is bit-identical), then prepare_fused(mode, h, ...), in one
// cooperative launch or two kernels (`schedule`, as prepare_fused; h is never stored unless
// normed_out, (rows, k) float32, is given). scratch: prepare_scratch_bytes(rows), zeroed once.
void prepare_rmsnorm(PrepareMode mode, const float* x, const float* norm_w, float eps, int64_t rows,
                     int64_t k, Nvfp4View sparse, Nvfp4View residual, uint32_t* scratch,
                     cudaStream_t stream, uint16_t* gemm_f16 = nullptr, float* normed_out = nullptr,
                     float* decoded = nullptr, PrepareSchedule schedule = PrepareSchedule::kAuto,
                     uint8_t* ws_images = nullptr, PlaneOrder order = PlaneOrder::kMma,
                     uint8_t* lo_flags = nullptr);

namespace testing {
// Makes prepare_rmsnorm take its sequential-sum fallback on every row (tests only).
void force_sequential_rms(bool on);
// Programmatic dependent launch of gemm_decode_mma and of the decode step's other kernels
// (default on; SHARQ_CUDA_PDL=0 starts it off): off for A/B timing.
void decode_gemm_pdl(bool on);
// 16-row weight tiles per warp of gemm_decode_mma for M <= 8: 0 chosen per launch (default), 1 or
// 2 forced (SHARQ_CUDA_DECODE_RT sets the start value). Two share each activation slice between
// twice the weight rows (faster where the grid still fills the GPU).
void decode_gemm_row_tiles(int rt);
// gemm_decode_mma's kernel: -1 (default) chosen per launch (the shared-activation kernel, whose
// warps on different weight tiles read each activation window from shared memory, for M > 8 on
// the products where it measured faster), 0 never, 1 for every M, 2 its wgmma form (each
// warpgroup's 64 weight rows one asynchronous product, the weight in registers) for every M:
// decode_plane_order then answers kWgmma at every M, and that kernel runs where the planes are
// in that order (SHARQ_CUDA_DECODE_SHARED=0|1|2 sets the start value).
void decode_gemm_shared_x(int mode);
// Warps per block of the per-tile decode kernel (they split K): 0 (default) chosen per launch,
// else 2, 4 or 8 forced.
void decode_gemm_warps(int warps);
// The M = 1 SharQ decode kernel: 1 (default) built for two or three blocks an SM by grid size, 3
// always three, 2 always two, 0 off (the general kernel). SHARQ_CUDA_DECODE_M1 sets the start
// value.
void decode_gemm_m1(int mode);
// K split across a cluster's blocks in the shared-activation kernel: 0 (default) chosen per
// launch, else forced (at most 8 and the K windows).
void decode_gemm_split_k(int split_k);
// What decode_plane_order answers: -1 (default) per M, 0 always kMma, 1 always kWgmma
// (SHARQ_CUDA_DECODE_WGMMA=0|1 sets the start value).
void decode_gemm_wgmma_order(int mode);
}  // namespace testing

// Weight packing (SPEC 6): W (n, k) float32 -> NVFP4 with group g (32 for SharQ, 16 for nvfp4).
// The codes and scales are PackedTensor's bytes in the GPU weight layout (16-row x 128-K tiles,
// weight_layout.h), which every weight-reading kernel below expects; weight_layout::from_tiled
// gives the row-major bytes back.
void pack_weight(const float* w, int64_t n, int64_t k, int group, Nvfp4View out,
                 uint32_t* absmax_scratch, cudaStream_t stream);

// Decode-regime GEMM (M <= 32): Y (m, n) bf16 = s_x * s_w * X~ (m, k) . W~ (n, k)^T, where X~ is
// prepare()'s scaled-domain reconstruction (both SharQ paths, or the NVFP4 activation) and W~
// the NVFP4 g32 (SharQ) or g16 (nvfp4) weight decoded once per element in the kernel.
// x_tensor_scale: device float (prepare's residual.tensor_scale).
void gemm_decode(const float* x_decoded, const float* x_tensor_scale, int64_t m, const Nvfp4View& w,
                 int w_group, int64_t n, int64_t k, uint16_t* y_bf16, cudaStream_t stream);

// Decode-regime GEMM v3 (M <= 32) on FP16 tensor cores: Y (m, n) bf16 = s_x * s_w *
// sum over paths of X~_p (m, k) . W~ (n, k)^T. x_gemm_f16 is prepare()'s gemm_f16 output with
// `paths` planes (2: SharQ backbone + residual, 1: NVFP4); each FP4 weight element is read and
// decoded once and multiplied into both paths, which share one FP32 accumulator per output.
// Launched as a programmatic dependent of the kernel before it (the prepare): its blocks stream
// their first weight windows while that kernel finishes, and read x only after it completes.
// lo_flags (two paths, kMma planes; null: none): the prepare's (prepare lo_flags) for these
// planes; the per-tile kernel (M <= 8) then skips plane 1's loads in the blocks whose flag is
// clear and, above 4 rows, its MMAs in the windows where every flag is (plane 1 is zero there,
// so the product is the same up to the order of the float sums).
void gemm_decode_mma(const uint16_t* x_gemm_f16, int paths, const float* x_tensor_scale, int64_t m,
                     const Nvfp4View& w, int w_group, int64_t n, int64_t k, uint16_t* y_bf16,
                     cudaStream_t stream, PlaneOrder order = PlaneOrder::kMma,
                     const uint8_t* lo_flags = nullptr);
// The same with float32 output (the engine's residual stream is float32).
void gemm_decode_mma_f32(const uint16_t* x_gemm_f16, int paths, const float* x_tensor_scale,
                         int64_t m, const Nvfp4View& w, int w_group, int64_t n, int64_t k, float* y,
                         cudaStream_t stream, PlaneOrder order = PlaneOrder::kMma,
                         const uint8_t* lo_flags = nullptr);
// The planes' K order the decode GEMM runs fastest from at m rows: kWgmma above 8 rows (the
// wgmma kernel with whole-chunk window copies), else kMma (testing::decode_gemm_wgmma_order).
// Every gemm_decode_mma* entry point takes planes in either order (`order`; kWgmma always runs
// the wgmma kernel).
PlaneOrder decode_plane_order(int64_t m);
// Several products of one input in one launch (q, k and v; gate and up): part i writes
// y_i (m, n_i) float32 = s_x * s_w_i * X~ . W~_i^T, exactly as gemm_decode_mma_f32 would (the
// split of K over a tile's warps follows the launch's total rows, so sums may round in another
// order). At most 4 parts, one weight group and one K for all.
struct DecodeGemmPart {
  Nvfp4View w;
  int64_t n;
  void* y;  // float32 (m, n) for the _f32 entry point, bf16 for gemm_decode_mma
};
// accumulate: y_i += the product (the decoder's residual add, one float add as a separate
// kernel would do it).
void gemm_decode_mma_group_f32(const uint16_t* x_gemm_f16, int paths, const float* x_tensor_scale,
                               int64_t m, const DecodeGemmPart* parts, int count, int w_group,
                               int64_t k, cudaStream_t stream, bool accumulate = false,
                               PlaneOrder order = PlaneOrder::kMma,
                               const uint8_t* lo_flags = nullptr);

// Prefetch into L2 the leading part of a product's FP4 weights (l2_prefetch_plan.h), at most
// about `budget_bytes` of codes and scales in all: the same leading fraction of every 16-row
// strip of every part. Issued on a side branch of the decode step while the small kernels before
// that product run; a hint only (no output, nothing to wait for). Weights in the tiled layout
// (weight_layout.h) as pack_weight writes them; K % 64 == 0; g16 or g32.
constexpr int kMaxPrefetchParts = 4;
struct L2PrefetchPart {
  Nvfp4View w;
  int64_t n, k;
  int group;
};
void l2_prefetch_weights(const L2PrefetchPart* parts, int count, int64_t budget_bytes,
                         cudaStream_t stream);

// Prefetch into L2 the KV cache rows a decode step's attention will read: rows [0, pos) of each
// of `regions` (batch x kv heads) regions of both caches (`capacity` rows of `row_bytes` each, a
// multiple of 16), at most budget_bytes in all (the same leading rows of every region). pos is
// *pos_dev when given (a recorded step's position), else pos0. A hint: issued on a side branch
// while the kernels before the attention run, so the attention reads earlier steps' K/V from L2.
void l2_prefetch_kv(const void* k_cache, const void* v_cache, int64_t regions, int64_t capacity,
                    int64_t row_bytes, int64_t pos0, const int64_t* pos_dev, int64_t budget_bytes,
                    cudaStream_t stream);

// Prefill-regime GEMM, any M >= 1 (built for M >= 33): Y (m, n) = s_x * s_w * sum over paths of
// X~_p (m, k) . W~ (n, k)^T in one launch; inputs as for gemm_decode_mma (prepare()'s gemm_f16
// planes, NVFP4 g32 or g16 weight). Each FP4 weight tile is decoded once into shared memory and
// used by every path; FP32 accumulation. K % 64 == 0; x_gemm_f16 and w.codes 16-byte aligned,
// w.scales 4-byte aligned.
void gemm_prefill(const uint16_t* x_gemm_f16, int paths, const float* x_tensor_scale, int64_t m,
                  const Nvfp4View& w, int w_group, int64_t n, int64_t k, uint16_t* y_bf16,
                  cudaStream_t stream);
// The same with float32 output.
void gemm_prefill_f32(const uint16_t* x_gemm_f16, int paths, const float* x_tensor_scale, int64_t m,
                      const Nvfp4View& w, int w_group, int64_t n, int64_t k, float* y_f32,
                      cudaStream_t stream);

// Prefill through cuBLAS (the engine's choice for M > 32, measured in bench_gemm): the FP4
// weight decoded once per call into FP16 scratch (exact, the planes' K order), then one cuBLAS
// FP16 GEMM per path (FP32 accumulation), the second accumulating into y (beta = 1):
// y (m, n) float32 = s_x * s_w * sum over paths of X~_p . W~^T. `scratch`:
// prefill_cublas_scratch_bytes(n, k), 16-byte aligned. Sets `blas` to `stream`; leaves its
// pointer mode on host.
size_t prefill_cublas_scratch_bytes(int64_t n, int64_t k);
// accumulate: y += the product (beta = 1 from the first path on).
void gemm_prefill_cublas_f32(cublasHandle_t blas, const uint16_t* x_gemm_f16, int paths,
                             const float* x_tensor_scale, int64_t m, const Nvfp4View& w,
                             int w_group, int64_t n, int64_t k, float* y, void* scratch,
                             cudaStream_t stream, bool accumulate = false);
// Dense NVFP4 in the output type (one path, nvfp4): y (m, n) BF16 = RN(s_x * s_w *
// X~ . W~^T), the weight decoded into BF16 scratch (prefill_cublas_scratch_bytes(n, k)) and one
// cuBLAS BF16 GEMM with FP32 accumulation, the same call as the BF16 baseline. cuBLAS has no
// FP16-input, BF16-output GEMM, so the activation comes as BF16 planes
// (expand_activation_planes_bf16; E2M1 x UE4M3 is exact in BF16 as in FP16). Sets `blas` to
// `stream`; leaves its pointer mode on host.
// Merged-operand prefill (docs/merged_operand.md), SharQ modes: both paths share s_x and W~, so
// the product is s_x * s_w * A . W~^T with A = X~_sp + R~ = hi + lo (prepare with lo_flags and
// kMmaRows planes), and lo is zero outside a few columns. merged_lo_columns finds the columns
// (plane-1 positions, kMma order) where any row's lo is not zero, from the planes and their flags,
// and compacts each row's lo in place to those K' columns, then zeros up to K'' (K' rounded up to
// 16): row r's [hi | lo] becomes the operand [hi | lo_c] of K + K'' columns. Asynchronous; run
// once per prepared activation.
// Where it leaves the columns: `cols` (device, merged_columns_bytes(k), 16-byte aligned: the list
// and K' for the activation's products) and, when kprime_host is set, K' written into that pinned
// host int (cudaMallocHost: mapped, the kernel writes it directly) with `copied` recorded behind
// that write, so that the product waits for that event only, not for the work queued after it.
struct MergedColumns {
  void* cols = nullptr;
  int32_t* kprime_host = nullptr;
  cudaEvent_t copied = nullptr;
};
size_t merged_columns_bytes(int64_t k);
void merged_lo_columns(uint16_t* planes_rows, const uint8_t* lo_flags, int64_t m, int64_t k,
                       const MergedColumns& columns, cudaStream_t stream);
// y (m, n) float32 = s_x * s_w * [hi | lo_c] . [W~ | W~_c]^T: the FP4 weight decoded once into
// FP16 scratch (rows 2k halves apart) and its K' columns gathered behind it, then one cuBLAS FP16
// GEMM of K + K'' (FP32 accumulation), the same product as gemm_prefill_cublas_f32's two paths
// (up to the order of the float sums) in one GEMM of K (1 + K''/K) instead of two of K.
// *kprime: K' when >= 0; else read once the weight decode is queued (cuBLAS takes K from the
// host): from columns.kprime_host after `copied` (the decode runs meanwhile), or without those
// from `cols` after a wait for the whole stream; stored for the activation's next products.
// `scratch`: prefill_merged_scratch_bytes(n, k), 16-byte aligned. accumulate: y += the product.
size_t prefill_merged_scratch_bytes(int64_t n, int64_t k);
void gemm_prefill_merged_f32(cublasHandle_t blas, const uint16_t* planes_rows,
                             const MergedColumns& columns, int64_t* kprime,
                             const float* x_tensor_scale, int64_t m, const Nvfp4View& w,
                             int w_group, int64_t n, int64_t k, float* y, void* scratch,
                             cudaStream_t stream, bool accumulate = false);
void gemm_prefill_cublas_bf16(cublasHandle_t blas, const uint16_t* x_bf16,
                              const float* x_tensor_scale, int64_t m, const Nvfp4View& w,
                              int w_group, int64_t n, int64_t k, uint16_t* y_bf16, void* scratch,
                              cudaStream_t stream);
// The FP16 GEMM planes prepare writes into gemm_f16 without lo_flags (backbone then residual;
// nvfp4: one plane), bit for bit, from its packed outputs `sparse` (ignored for nvfp4) and
// `residual` (m, k; codes 4-byte aligned). For products that need the planes after a prepare
// that skipped them.
void expand_activation_planes(PrepareMode mode, const Nvfp4View& sparse, const Nvfp4View& residual,
                              int64_t m, int64_t k, uint16_t* planes, cudaStream_t stream);
// The same planes with BF16 elements (the same values, exactly).
void expand_activation_planes_bf16(PrepareMode mode, const Nvfp4View& sparse,
                                   const Nvfp4View& residual, int64_t m, int64_t k,
                                   uint16_t* planes, cudaStream_t stream);
// Prefill for sharq-nvfp4-24 in one warp-specialised launch (any M; the engine's path for
// M > 32): prefill_ws_images expands prepare(kSharqNvfp4_24)'s packed backbone and residual
// (m, k; at most two non-zeros in each backbone 4-chunk, the 2:4 mask) into the GEMM's stage
// images (`images`: prefill_ws_act_bytes(m, k), 16-byte aligned): per 128-row tile and 64-wide K
// step, the residual as a 128-byte-swizzled FP16 tile, the 2:4 backbone compressed to its two
// kept values per 4-chunk, and their metadata in the sparse MMA's register layout. Then
// gemm_prefill_ws_f32: y (m, n) float32 = s_x * s_w * (X~_sp + R~) . W~^T for a g32 weight, the
// backbone on 2:4 sparse wgmma and the residual on dense wgmma, fed by one decode of each FP4
// weight tile. N even, N K / 2 < 2^31. accumulate: y += the product.
size_t prefill_ws_act_bytes(int64_t m, int64_t k);
// Whether an (m, n) product has the tiles (128 x 256, one CTA an SM) to fill at least two thirds
// of the device: below that the kernel has no split-K and decode pass + cuBLAS is faster
// (bench_gemm prefill, H100: M = 128 and 512 at N = 4096).
bool prefill_ws_fills_device(int64_t m, int64_t n);
void prefill_ws_images(const Nvfp4View& sparse, const Nvfp4View& residual, int64_t m, int64_t k,
                       uint8_t* images, cudaStream_t stream);
void gemm_prefill_ws_f32(const uint8_t* images, const float* x_tensor_scale, int64_t m,
                         const Nvfp4View& w, int64_t n, int64_t k, float* y, cudaStream_t stream,
                         bool accumulate = false);

// The decode pass alone: out (n, k) FP16 = E2M1 x UE4M3 x 2^-14 in the planes' K order, and
// scalars[0..2] = {s_x * s_w * 2^14, 0, 1} (the GEMMs' alpha and betas). out_ld: halves between
// out's rows (0: k; else a multiple of 8 >= k).
void decode_weight_f16(const Nvfp4View& w, int w_group, int64_t n, int64_t k, uint16_t* out,
                       const float* x_tensor_scale, float* scalars, cudaStream_t stream,
                       int64_t out_ld = 0);
// The same in BF16 without the 2^-14 (E2M1 x UE4M3 itself); scalars = {s_x * s_w, 0, 1}.
void decode_weight_bf16(const Nvfp4View& w, int w_group, int64_t n, int64_t k, uint16_t* out,
                        const float* x_tensor_scale, float* scalars, cudaStream_t stream,
                        int64_t out_ld = 0);

// Throws sharq::Error with the CUDA error string when `e` is not cudaSuccess.
void check(cudaError_t e, const char* what);
// The same for a cuBLAS status.
void check_blas(cublasStatus_t s, const char* what);

}  // namespace sharq::cuda
