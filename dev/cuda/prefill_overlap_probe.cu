// Dense NVFP4 prefill with the weight decode beside the GEMM (dev only, built by
// scripts/pack_device.sh). Written in session 16, run in session 17 (H100): the green-context
// partitions measured 10-140% slower than the serial product and two streams gained only on
// gate/up (7%), so the library keeps the serial product (docs/RESULTS.md, issue 5, session 17).
//
// The dense NVFP4 product in BF16 out (`gemm_prefill_cublas_bf16`) is a decode pass over the
// whole weight followed by the BF16 baseline's own cuBLAS GEMM, 1.10-1.19x cuBLAS BF16 at
// M = 2048 (docs/RESULTS.md, issue 5, session 16). The decode is bound by memory and the GEMM by
// the tensor cores, so they could run at once if they did not compete for SMs.
// This probe splits the weight into C chunks of output rows and gives the decode of chunk c + 1 a
// few SMs of its own while chunk c's GEMM runs on the rest:
// - SM partitions come from green contexts (driver API): `S` SMs for the decode, the rest for
//   the GEMM, which cuBLAS is told with cublasSetSmCountTarget.
// - Chunk 0's decode runs alone on the large partition (it has nothing to hide under). The last
//   chunk's GEMM runs on the caller's stream, on every SM.
// - Chunks are cut at multiples of 256 rows, which keeps them tiled matrices and whole GEMM tiles.
// A control runs the same chunks on two ordinary streams (the decode's at high priority).
//
// Reported per shape at M = 2048: cuBLAS BF16; the library's serial product; each variant's time;
// and each variant's largest relative difference from the serial output (cuBLAS may pick another
// kernel for a chunk, so a BF16 ulp or two, about 1e-2, is expected; more is a bug).
// Build (scripts/pack_device.sh does it): nvcc -std=c++20 -O3 -fmad=false
//   -gencode=arch=compute_90a,code=sm_90a -Iinclude dev/cuda/prefill_overlap_probe.cu
//   build-cuda/src/cuda/libsharq_cuda.a build-cuda/src/libsharq_core.a -lcublas -lcuda
#include <cublas_v2.h>
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "../../bench/cuda/bench_common.cuh"
#include "sharq/cuda/kernels.h"

namespace {

using sharq::bench::dmalloc;
using sharq::bench::fill_random;
using sharq::cuda::check;
using sharq::cuda::check_blas;
using sharq::cuda::Nvfp4View;

void cu_check(CUresult r, const char* what) {
  if (r == CUDA_SUCCESS) return;
  const char* s = nullptr;
  cuGetErrorString(r, &s);
  throw std::runtime_error(std::string(what) + ": " + (s ? s : "unknown driver error"));
}

// Two green contexts: `small` SMs for the decode, the rest of the device for the GEMM.
struct Partition {
  cudaStream_t small = nullptr, big = nullptr;
  unsigned small_sms = 0, big_sms = 0;
};

Partition make_partition(unsigned want_small) {
  cu_check(cuInit(0), "cuInit");
  CUdevice dev;
  cu_check(cuDeviceGet(&dev, 0), "cuDeviceGet");
  CUdevResource all, small, rest;
  cu_check(cuDeviceGetDevResource(dev, &all, CU_DEV_RESOURCE_TYPE_SM), "cuDeviceGetDevResource");
  unsigned groups = 1;
  cu_check(cuDevSmResourceSplitByCount(&small, &groups, &all, &rest, 0, want_small),
           "cuDevSmResourceSplitByCount");
  CUdevResourceDesc ds, dr;
  cu_check(cuDevResourceGenerateDesc(&ds, &small, 1), "cuDevResourceGenerateDesc");
  cu_check(cuDevResourceGenerateDesc(&dr, &rest, 1), "cuDevResourceGenerateDesc");
  CUgreenCtx gs, gr;
  cu_check(cuGreenCtxCreate(&gs, ds, dev, CU_GREEN_CTX_DEFAULT_STREAM), "cuGreenCtxCreate");
  cu_check(cuGreenCtxCreate(&gr, dr, dev, CU_GREEN_CTX_DEFAULT_STREAM), "cuGreenCtxCreate");
  CUstream s, r;
  cu_check(cuGreenCtxStreamCreate(&s, gs, CU_STREAM_NON_BLOCKING, 0), "cuGreenCtxStreamCreate");
  cu_check(cuGreenCtxStreamCreate(&r, gr, CU_STREAM_NON_BLOCKING, 0), "cuGreenCtxStreamCreate");
  Partition p;
  p.small = s;
  p.big = r;
  p.small_sms = small.sm.smCount;
  p.big_sms = rest.sm.smCount;
  return p;
}

struct Operands {
  const uint16_t* x;  // (m, k) BF16 planes
  const float* sx;
  int64_t m, n, k;
  uint16_t* wdec;  // (n, k) BF16 scratch
  float* scalars;  // 4 a chunk
  uint16_t* y;     // (m, n) BF16
};

// Rows [r[c], r[c + 1]) of the weight: multiples of 256, the last ending at n.
std::vector<int64_t> chunk_rows(int64_t n, int chunks) {
  std::vector<int64_t> r(chunks + 1);
  for (int c = 0; c < chunks; ++c) r[c] = (n * c / chunks) / 256 * 256;
  r[chunks] = n;
  return r;
}

Nvfp4View rows_of(const Nvfp4View& w, int64_t r0, int64_t k) {
  return {w.codes + r0 * k / 2, w.scales + r0 * k / 16, w.tensor_scale};  // g16, tiled
}

void gemm_chunk(cublasHandle_t blas, cudaStream_t s, int sms, const Operands& o, int64_t r0,
                int64_t r1, int c) {
  check_blas(cublasSetStream(blas, s), "cublasSetStream");
  check_blas(cublasSetSmCountTarget(blas, sms), "cublasSetSmCountTarget");
  const float* sc = o.scalars + 4 * c;
  check_blas(
      cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, int(r1 - r0), int(o.m), int(o.k), sc,
                   o.wdec + r0 * o.k, CUDA_R_16BF, int(o.k), o.x, CUDA_R_16BF, int(o.k), sc + 1,
                   o.y + r0, CUDA_R_16BF, int(o.n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
      "cublasGemmEx");
}

// The chunked product. decode_s: the stream of chunks 1.. decodes; gemm_s / gemm_sms: the stream
// and SM target of every GEMM but the last (the last runs on `main`, every SM). ev: chunks + 2.
void chunked(cublasHandle_t blas, cudaStream_t main, cudaStream_t decode_s, cudaStream_t gemm_s,
             int gemm_sms, const Operands& o, const Nvfp4View& w, int chunks,
             std::vector<cudaEvent_t>& ev) {
  const auto r = chunk_rows(o.n, chunks);
  cudaEvent_t start = ev[chunks], gemms_done = ev[chunks + 1];
  check(cudaEventRecord(start, main), "record");
  check(cudaStreamWaitEvent(decode_s, start), "wait");
  check(cudaStreamWaitEvent(gemm_s, start), "wait");
  for (int c = 0; c < chunks; ++c) {
    cudaStream_t s = c == 0 ? gemm_s : decode_s;
    sharq::cuda::decode_weight_bf16(rows_of(w, r[c], o.k), 16, r[c + 1] - r[c], o.k,
                                    o.wdec + r[c] * o.k, o.sx, o.scalars + 4 * c, s);
    check(cudaEventRecord(ev[c], s), "record");
  }
  check_blas(cublasSetPointerMode(blas, CUBLAS_POINTER_MODE_DEVICE), "pointer mode");
  for (int c = 0; c + 1 < chunks; ++c) {
    check(cudaStreamWaitEvent(gemm_s, ev[c]), "wait");
    gemm_chunk(blas, gemm_s, gemm_sms, o, r[c], r[c + 1], c);
  }
  check(cudaEventRecord(gemms_done, gemm_s), "record");
  check(cudaStreamWaitEvent(main, gemms_done), "wait");
  check(cudaStreamWaitEvent(main, ev[chunks - 1]), "wait");
  gemm_chunk(blas, main, 0, o, r[chunks - 1], r[chunks], chunks - 1);
  check_blas(cublasSetPointerMode(blas, CUBLAS_POINTER_MODE_HOST), "pointer mode");
  check_blas(cublasSetSmCountTarget(blas, 0), "cublasSetSmCountTarget");
}

std::vector<uint16_t> download(const uint16_t* d, size_t n) {
  std::vector<uint16_t> h(n);
  check(cudaMemcpy(h.data(), d, n * 2, cudaMemcpyDeviceToHost), "d2h");
  return h;
}

float bf16_value(uint16_t b) {
  const uint32_t u = uint32_t{b} << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

double max_rel_diff(const std::vector<uint16_t>& a, const std::vector<uint16_t>& b) {
  double scale = 0.0, worst = 0.0;
  for (uint16_t v : b) scale = std::max(scale, double(std::fabs(bf16_value(v))));
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(double(bf16_value(a[i])) - double(bf16_value(b[i])));
    worst = std::isnan(d) ? INFINITY : std::max(worst, d);
  }
  return scale > 0 ? worst / scale : worst;
}

void run_shape(cublasHandle_t blas, const std::vector<Partition>& parts, cudaStream_t main,
               cudaStream_t hi_prio, int64_t k, int64_t n, int64_t m) {
  constexpr int kInner = 5, kReps = 7;
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "event");
  check(cudaEventCreate(&b), "event");
  std::vector<cudaEvent_t> ev(8);
  for (auto& e : ev) check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "event");
  // Weights: enough packed copies that a rotation exceeds L2; the BF16 baseline's own copy.
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "props");
  const size_t wn = size_t(n) * k;
  const int rot = sharq::bench::rotation_copies(prop, wn / 2);
  auto* wf = static_cast<float*>(dmalloc(wn * 4));
  fill_random(wf, wn, 7, 1.0f);
  auto* scratch = static_cast<uint32_t*>(dmalloc(4));
  std::vector<Nvfp4View> w(rot);
  for (auto& v : w) {
    v = {static_cast<uint8_t*>(dmalloc(wn / 2)), static_cast<uint8_t*>(dmalloc(wn / 16)),
         static_cast<float*>(dmalloc(4))};
    sharq::cuda::pack_weight(wf, n, k, 16, v, scratch, nullptr);
  }
  // The activation: prepare (nvfp4), then its BF16 planes.
  auto* x = static_cast<float*>(dmalloc(size_t(m) * k * 4));
  fill_random(x, size_t(m) * k, 11, 50.0f);
  Nvfp4View sp{static_cast<uint8_t*>(dmalloc(m * k / 2)),
               static_cast<uint8_t*>(dmalloc(m * k / 32)), static_cast<float*>(dmalloc(4))};
  Nvfp4View rs{static_cast<uint8_t*>(dmalloc(m * k / 2)),
               static_cast<uint8_t*>(dmalloc(m * k / 16)), static_cast<float*>(dmalloc(4))};
  sharq::cuda::prepare(sharq::cuda::PrepareMode::kNvfp4, x, m, k, sp, rs, nullptr, scratch,
                       nullptr);
  auto* xb = static_cast<uint16_t*>(dmalloc(size_t(m) * k * 2));
  sharq::cuda::expand_activation_planes_bf16(sharq::cuda::PrepareMode::kNvfp4, sp, rs, m, k, xb,
                                             nullptr);
  auto* ws = dmalloc(sharq::cuda::prefill_cublas_scratch_bytes(n, k) + 4096);
  Operands o{xb,
             rs.tensor_scale,
             m,
             n,
             k,
             static_cast<uint16_t*>(ws),
             reinterpret_cast<float*>(static_cast<uint8_t*>(ws) + wn * 2 + 256),
             static_cast<uint16_t*>(dmalloc(size_t(m) * n * 2))};
  check(cudaDeviceSynchronize(), "setup");

  auto time = [&](const std::function<void(int)>& fn) {
    return sharq::bench::median_calls_us(main, a, b, fn, kInner, kReps);
  };
  // cuBLAS BF16 on the BF16 weight decoded once (the baseline's call and operands).
  sharq::cuda::decode_weight_bf16(w[0], 16, n, k, o.wdec, o.sx, o.scalars, main);
  const float one = 1.0f, zero = 0.0f;
  const double t_bf16 = time([&](int) {
    check_blas(cublasSetStream(blas, main), "stream");
    check_blas(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(m), int(k), &one, o.wdec,
                            CUDA_R_16BF, int(k), xb, CUDA_R_16BF, int(k), &zero, o.y, CUDA_R_16BF,
                            int(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx");
  });
  const double t_serial = time([&](int i) {
    sharq::cuda::gemm_prefill_cublas_bf16(blas, xb, o.sx, m, w[i % rot], 16, n, k, o.y, ws, main);
  });
  check(cudaStreamSynchronize(main), "sync");
  const auto want = download(o.y, size_t(m) * n);
  std::printf("| %lld | %lld | %lld | cuBLAS BF16 %.1f | serial %.1f (%.2fx) |", (long long)k,
              (long long)n, (long long)m, t_bf16, t_serial, t_serial / t_bf16);
  auto variant = [&](const char* name, cudaStream_t dec, cudaStream_t gemm, int sms, int chunks) {
    check(cudaMemsetAsync(o.y, 0xFF, size_t(m) * n * 2, main), "poison");
    try {
      chunked(blas, main, dec, gemm, sms, o, w[0], chunks, ev);
      check(cudaStreamSynchronize(main), "sync");
      const double diff = max_rel_diff(download(o.y, size_t(m) * n), want);
      const double t =
          time([&](int i) { chunked(blas, main, dec, gemm, sms, o, w[i % rot], chunks, ev); });
      std::printf(" %s C=%d: %.1f (%.2fx, diff %.1e) |", name, chunks, t, t / t_bf16, diff);
    } catch (const std::exception& e) {
      std::printf(" %s C=%d: failed (%s) |", name, chunks, e.what());
      cudaGetLastError();
      check_blas(cublasSetPointerMode(blas, CUBLAS_POINTER_MODE_HOST), "pointer mode");
      check_blas(cublasSetSmCountTarget(blas, 0), "sm target");
    }
    std::fflush(stdout);
  };
  for (int chunks : {2, 4}) {
    if (n / chunks < 1024) continue;  // chunks below ~1 wave of GEMM tiles at M = 2048
    variant("two streams", hi_prio, main, 0, chunks);
    for (const Partition& p : parts) {
      char name[64];
      std::snprintf(name, sizeof name, "decode on %u SMs, GEMM on %u", p.small_sms, p.big_sms);
      variant(name, p.small, p.big, int(p.big_sms), chunks);
    }
  }
  std::printf("\n");
  std::fflush(stdout);
  for (auto& v : w) {
    cudaFree(v.codes);
    cudaFree(v.scales);
    cudaFree(v.tensor_scale);
  }
  for (void* p : {(void*)wf, (void*)scratch, (void*)x, (void*)sp.codes, (void*)sp.scales,
                  (void*)sp.tensor_scale, (void*)rs.codes, (void*)rs.scales, (void*)rs.tensor_scale,
                  (void*)xb, ws, (void*)o.y})
    cudaFree(p);
  for (auto& e : ev) cudaEventDestroy(e);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
}

}  // namespace

int main() {
  try {
    check(cudaFree(nullptr), "init");  // the primary context, before the driver API calls
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, 0), "props");
    std::printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
    std::vector<Partition> parts;
    for (unsigned s : {8u, 16u}) {
      try {
        parts.push_back(make_partition(s));
      } catch (const std::exception& e) {
        std::printf("partition of %u SMs: %s\n", s, e.what());
      }
    }
    cublasHandle_t blas;
    check_blas(cublasCreate(&blas), "cublasCreate");
    void* blas_ws = dmalloc(32 << 20);
    check_blas(cublasSetWorkspace(blas, blas_ws, 32 << 20), "workspace");
    cudaStream_t main_s, hi;
    int lo_prio = 0, hi_prio = 0;
    check(cudaDeviceGetStreamPriorityRange(&lo_prio, &hi_prio), "priorities");
    check(cudaStreamCreateWithFlags(&main_s, cudaStreamNonBlocking), "stream");
    check(cudaStreamCreateWithPriority(&hi, cudaStreamNonBlocking, hi_prio), "stream");
    std::printf(
        "\nDense NVFP4, BF16 out, M = 2048 (us; x cuBLAS BF16; diff: largest |chunked - "
        "serial| over the output's largest |value|)\n\n");
    for (auto [k, n] :
         {std::pair<int64_t, int64_t>{4096, 6144}, {4096, 4096}, {4096, 28672}, {14336, 4096}})
      run_shape(blas, parts, main_s, hi, k, n, 2048);
    cublasDestroy(blas);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "prefill_overlap_probe: %s\n", e.what());
    return 1;
  }
}
