// Prefill ladder, rung 3 (dev only, built by scripts/pack_device.sh): the SharQ prefill product in
// one launch, warp-specialised, the FP4 weight decoded once per tile and fed to every path.
//   C (M, N) = 2^14 * [ A_sp (M, K; 2:4, FP16) . W~^T  +  sum_p R_p (M, K; FP16) . W~^T ]
// W~ = E2M1 code x UE4M3 scale x 2^-14 (exact in FP16), read from the engine's tiled weight layout
// (include/sharq/cuda/weight_layout.h) as it is stored on the GPU.
// - One producer warpgroup (88 registers after setmaxnreg). Its thread 0 moves each K step's
//   activation stage images (the dense paths' 128 x 64 FP16 tiles, 128-byte swizzled; the
//   backbone's kept values, 128 x 32 FP16 with 16-byte chunk c of row r at c ^ ((r >> 1) & 3);
//   its metadata in the register layout) with bulk copies into an mbarrier ring, as a prepare
//   would write them. All 128 threads decode the step's FP4 weight tile (two rows each; codes
//   loaded two steps ahead into registers) into the stage's 256 x 64 FP16 tile, natural K order
//   (the 2:4 groups must stay whole), 128-byte swizzled, and arrive on the stage.
// - Two consumer warpgroups (208 registers; at 168 ptxas serialises the sparse wgmmas), 64 rows
//   each of the 128 x 256 tile: per K step two m64n256k32 sparse MMAs (A = backbone from
//   registers, ldmatrix) and four m64n256k16 dense MMAs per dense path (both operands in shared
//   memory), all into one accumulator; one step's MMAs kept in flight; a stage goes back to the
//   producer when the MMAs reading it have completed. BF16 or FP32 out, scaled by 2^14.
// Variants (Cfg): SP (backbone on sparse MMA), DP (dense paths: 1 = residual or dense NVFP4,
// 2 = backbone + residual as sharq-nvfp4's 4:8 pairs need), PERSIST (one CTA an SM walking the
// tiles), CD (the consumers decode instead of the producer), ABL (timing ablations: bit 0 no
// decode, bit 1 the decode's stores without its arithmetic, bit 2 its arithmetic without stores).
// Measured on H100 (docs/RESULTS.md, issue 5, session 12): correct everywhere; at M = 2048 the
// 2:4 SharQ product runs at 1.87-2.01x cuBLAS BF16 and dense NVFP4 at 1.53-1.75x, bound by shared
// memory (l1tex 85-89% busy with the decode, 55-68% without; ALU 26-32%).
// Checked against cuBLAS on [A_sp | R_1 | R_2] . [W~ | W~ | W~]^T (every element within 1e-6 of
// its sum of |terms|, scaled by K / 4096 past 4096 terms); timed against cuBLAS BF16 (BF16 out).
// `--profile` launches six variants once on 2048 x 6144 x 4096 for ncu
// (dev/cuda/profile_prefill_ws.sh); `--profile-shapes` the engine's configuration once at o's and
// at gate/up's shape; `--sustain` times both cuBLAS BF16 and that kernel at gate/up's shape under
// sustained load.
// Build: nvcc -std=c++20 -O3 -gencode=arch=compute_90a,code=sm_90a -Iinclude
//        dev/cuda/sharq_prefill_ws_probe.cu -lcublas -o sharq_prefill_ws_probe
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "../../src/cuda/gemm_prefill_ws.cuh"
#include "gemm_probe_host.cuh"
#include "sharq/cuda/weight_layout.h"

namespace {

using sharq::dev::check;
using sharq::dev::compare_with_cublas;
using sharq::dev::time_us;
using sharq::dev::upload;
using namespace sharq::cuda::prefill_ws;
namespace wl = sharq::cuda::weight_layout;

int g_sms = 0;

template <class C, typename OutT = float>
void launch(const Params& p) {
  auto kernel = sharq_prefill_ws_kernel<C, OutT>;
  static bool configured = false;
  if (!configured) {
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmem),
          "smem attribute");
    configured = true;
  }
  if (static_cast<int64_t>(p.n) * p.k / 2 >= (int64_t{1} << 31) || p.k % kBK || p.n % 2) {
    std::fprintf(stderr, "unsupported shape n %d k %d\n", p.n, p.k);
    std::exit(1);
  }
  const int tiles = ((p.m + kBM - 1) / kBM) * ((p.n + kBN - 1) / kBN);
  kernel<<<C::PERSIST ? std::min(tiles, g_sms) : tiles, C::kThreads, C::kSmem>>>(p);
}

float e2m1_value(uint32_t c) {
  static const float mag[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  return (c & 8 ? -1.0f : 1.0f) * mag[c & 7];
}
float ue4m3_value(uint32_t c) {
  const uint32_t e = (c >> 3) & 0xF, m = c & 7;
  return e == 0 ? m * 0x1p-9f : std::ldexp(1.0f + m / 8.0f, static_cast<int>(e) - 7);
}

// A random problem: the weight in the tiled layout and decoded (W~ 2^14, row-major), the
// activation stage images, and their dense expansion [A_sp | R_1 .. R_DP] (m, (1 + DP) k).
struct Problem {
  int m, n, k, dp;
  std::vector<uint8_t> codes, scales, rimg, simg, eimg;
  std::vector<__half> a_cat, w_cat;
};

Problem make_problem(int m, int n, int k, int dp, uint32_t seed) {
  const int pairs[6][2] = {{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}};
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  const int nk = k / kBK, mt = (m + kBM - 1) / kBM, kc = (1 + dp) * k;
  Problem p{m, n, k, dp};
  std::vector<uint8_t> codes(static_cast<size_t>(n) * k / 2),
      scales(static_cast<size_t>(n) * k / 32);
  for (auto& b : codes) b = static_cast<uint8_t>(rng());
  for (auto& b : scales) b = static_cast<uint8_t>(0x20 + rng() % 0x40);  // 2^-3 .. 2^4
  p.codes.resize(codes.size());
  p.scales.resize(scales.size());
  wl::to_tiled(codes.data(), scales.data(), n, k, 32, p.codes.data(), p.scales.data());
  p.w_cat.resize(static_cast<size_t>(n) * kc);
  for (int r = 0; r < n; ++r) {
    for (int kk = 0; kk < k; ++kk) {
      const size_t e = static_cast<size_t>(r) * k + kk;
      const float v =
          e2m1_value((codes[e / 2] >> (4 * (kk & 1))) & 0xF) * ue4m3_value(scales[e / 32]);
      for (int part = 0; part <= dp; ++part)
        p.w_cat[static_cast<size_t>(r) * kc + part * k + kk] = __float2half(v);
    }
  }
  p.a_cat.assign(static_cast<size_t>(m) * kc, __float2half(0.0f));
  p.rimg.assign(static_cast<size_t>(mt) * nk * dp * kR, 0);
  p.simg.assign(static_cast<size_t>(mt) * nk * kS, 0);
  p.eimg.assign(static_cast<size_t>(mt) * nk * kE, 0);
  for (int r = 0; r < m; ++r) {
    const int tile = r / kBM, rr = r % kBM;
    for (int kk = 0; kk < k; ++kk) {  // dense paths
      const int ks = kk / kBK, c = (kk % kBK) / 8, e = kk % 8;
      for (int path = 0; path < dp; ++path) {
        const __half v = __float2half(u(rng));
        p.a_cat[static_cast<size_t>(r) * kc + (1 + path) * k + kk] = v;
        uint8_t* img = p.rimg.data() + ((static_cast<size_t>(tile) * nk + ks) * dp + path) * kR;
        std::memcpy(img + rr * 128 + ((c ^ (rr & 7)) << 4) + 2 * e, &v, 2);
      }
    }
    for (int q = 0; q < k / 4; ++q) {  // backbone 4-chunks
      const int* pr = pairs[rng() % 6];
      const int ks = q / 16, ql = q % 16;  // K step, 4-chunk within it
      uint8_t* img = p.simg.data() + (static_cast<size_t>(tile) * nk + ks) * kS;
      for (int j = 0; j < 2; ++j) {
        const __half v = __float2half(u(rng));
        const int h = 2 * ql + j, c = h / 8;  // kept half, its 16-byte chunk
        std::memcpy(img + rr * 64 + ((c ^ ((rr >> 1) & 3)) << 4) + 2 * (h % 8), &v, 2);
        p.a_cat[static_cast<size_t>(r) * kc + 4 * q + pr[j]] = v;
      }
      uint32_t* e =
          reinterpret_cast<uint32_t*>(p.eimg.data() + (static_cast<size_t>(tile) * nk + ks) * kE);
      const int rb = rr / 16, r16 = rr % 16, g = r16 % 8, j32 = ql / 8, half = (ql % 8) / 4;
      e[rb * 32 + j32 * 16 + g * 2 + half] |= static_cast<uint32_t>(pr[0] | (pr[1] << 2))
                                              << (4 * (ql % 4) + (r16 >= 8 ? 16 : 0));
    }
  }
  return p;
}

struct Device {
  uint8_t *codes, *scales, *rimg, *simg, *eimg;
  explicit Device(const Problem& p)
      : codes(upload(p.codes)),
        scales(upload(p.scales)),
        rimg(upload(p.rimg)),
        simg(upload(p.simg)),
        eimg(upload(p.eimg)) {}
  ~Device() { cudaFree(codes), cudaFree(scales), cudaFree(rimg), cudaFree(simg), cudaFree(eimg); }
  Params params(const Problem& p, float* c) const {
    return Params{codes, scales, rimg, simg, eimg, c, p.m, p.n, p.k, p.dp, nullptr, nullptr, 0};
  }
};

// A problem on the device with a BF16 output, its launch parameters ready (the profile modes).
struct Bf16Run {
  Bf16Run(int m, int n, int k) : pr(make_problem(m, n, k, 2, 9)), dev(pr) {
    check(cudaMalloc(&c, static_cast<size_t>(m) * n * 2), "malloc");
    prm = dev.params(pr, nullptr);
    prm.c = c;
  }
  ~Bf16Run() { cudaFree(c); }
  Bf16Run(const Bf16Run&) = delete;
  Bf16Run& operator=(const Bf16Run&) = delete;
  Problem pr;
  Device dev;
  __nv_bfloat16* c = nullptr;
  Params prm{};
};

template <class C>
bool check_variant(cublasHandle_t h, const Problem& pr, const Device& dev, const char* name) {
  std::printf("  %-34s ", name);
  // The blocks of the expansion this variant does not read (the backbone without SP, dense
  // paths from DP on) must not count: zero them.
  std::vector<__half> a = pr.a_cat;
  const int kc = (1 + pr.dp) * pr.k;
  for (int r = 0; r < pr.m; ++r)
    for (int kk = 0; kk < kc; ++kk)
      if ((kk < pr.k && !C::SP) || kk >= (1 + C::DP) * pr.k)
        a[static_cast<size_t>(r) * kc + kk] = __float2half(0.0f);
  return compare_with_cublas(
      h, a, pr.w_cat, pr.m, pr.n, kc, [&](float* c) { launch<C>(dev.params(pr, c)); }, false);
}

bool check_all(cublasHandle_t h, const Problem& p, const Device& dev) {
  int bad = 0;
  bad += !check_variant<Cfg<1, 2, 0>>(h, p, dev, "sparse + 2 dense");
  bad += !check_variant<Cfg<1, 1, 0>>(h, p, dev, "sparse + 1 dense");
  bad += !check_variant<Cfg<0, 1, 0>>(h, p, dev, "1 dense");
  bad += !check_variant<Cfg<0, 2, 0>>(h, p, dev, "2 dense");
  bad += !check_variant<Cfg<1, 2, 1>>(h, p, dev, "sparse + 2 dense, persistent");
  bad += !check_variant<Cfg<1, 1, 1>>(h, p, dev, "sparse + 1 dense, persistent");
  bad += !check_variant<Cfg<0, 1, 1>>(h, p, dev, "1 dense, persistent");
  bad += !check_variant<Cfg<0, 2, 1>>(h, p, dev, "2 dense, persistent");
  bad += !check_variant<Cfg<1, 2, 0, 0, 1>>(h, p, dev, "sparse + 2 dense, consumer decode");
  bad += !check_variant<Cfg<1, 1, 0, 0, 1>>(h, p, dev, "sparse + 1 dense, consumer decode");
  bad += !check_variant<Cfg<0, 1, 0, 0, 1>>(h, p, dev, "1 dense, consumer decode");
  bad += !check_variant<Cfg<0, 2, 0, 0, 1>>(h, p, dev, "2 dense, consumer decode");
  return bad == 0;
}

// Times our variants (BF16 out) against cuBLAS BF16 (BF16 out) at m x n x k.
void time_shape(cublasHandle_t h, int m, int n, int k) {
  const Problem p1 = make_problem(m, n, k, 2, 7 + n + k);
  const Device dev(p1);
  std::vector<__half> wh(static_cast<size_t>(n) * k), ah(static_cast<size_t>(m) * k);
  for (int r = 0; r < n; ++r)
    std::memcpy(&wh[static_cast<size_t>(r) * k], &p1.w_cat[static_cast<size_t>(r) * 3 * k],
                2 * static_cast<size_t>(k));
  for (int r = 0; r < m; ++r)
    std::memcpy(&ah[static_cast<size_t>(r) * k], &p1.a_cat[static_cast<size_t>(r) * 3 * k],
                2 * static_cast<size_t>(k));
  __half *dw = upload(wh), *da = upload(ah);  // the bit patterns serve as BF16 operands
  __nv_bfloat16* cb;
  check(cudaMalloc(&cb, static_cast<size_t>(m) * n * 2), "malloc");
  const float one = 1.0f, zero = 0.0f;
  const double bf16 = time_us([&] {
    sharq::dev::check(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, dw, CUDA_R_16BF, k,
                                   da, CUDA_R_16BF, k, &zero, cb, CUDA_R_16BF, n,
                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                      "bf16 gemm");
  });
  Params prm = dev.params(p1, nullptr);
  prm.c = cb;
  std::printf("TIME M %d K %5d N %5d: cuBLAS BF16 %7.1f us (%3.0f TF/s)\n", m, k, n, bf16,
              2.0 * m * n * static_cast<double>(k) / bf16 * 1e-6);
  auto row = [&](const char* name, auto run) {
    const double us = time_us(run);
    std::printf("  %-40s %7.1f us  %.2fx cuBLAS BF16\n", name, us, us / bf16);
  };
  using bf = __nv_bfloat16;
  row("sharq-24 sp+1", [&] { launch<Cfg<1, 1, 0>, bf>(prm); });
  row("sharq-24 sp+1 persistent", [&] { launch<Cfg<1, 1, 1>, bf>(prm); });
  row("sharq-24 sp+1 consumer decode", [&] { launch<Cfg<1, 1, 0, 0, 1>, bf>(prm); });
  row("sharq-24 sp+1 no decode", [&] { launch<Cfg<1, 1, 0, 1>, bf>(prm); });
  row("sharq-24 sp+1 decode stores only", [&] { launch<Cfg<1, 1, 0, 2>, bf>(prm); });
  row("sharq-24 sp+1 decode arithmetic only", [&] { launch<Cfg<1, 1, 0, 4>, bf>(prm); });
  row("nvfp4 1 dense", [&] { launch<Cfg<0, 1, 0>, bf>(prm); });
  row("nvfp4 1 dense consumer decode", [&] { launch<Cfg<0, 1, 0, 0, 1>, bf>(prm); });
  row("nvfp4 1 dense no decode", [&] { launch<Cfg<0, 1, 0, 1>, bf>(prm); });
  row("nvfp4 1 dense decode stores only", [&] { launch<Cfg<0, 1, 0, 2>, bf>(prm); });
  row("nvfp4 1 dense decode arithmetic only", [&] { launch<Cfg<0, 1, 0, 4>, bf>(prm); });
  row("nvfp4 1 dense consumer decode, no decode", [&] { launch<Cfg<0, 1, 0, 1, 1>, bf>(prm); });
  row("sharq-48 2 dense", [&] { launch<Cfg<0, 2, 0>, bf>(prm); });
  row("sharq-48 2 dense consumer decode", [&] { launch<Cfg<0, 2, 0, 0, 1>, bf>(prm); });
  check(cudaDeviceSynchronize(), "timing");
  cudaFree(cb), cudaFree(dw), cudaFree(da);
}

}  // namespace

int main(int argc, char** argv) {
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "device");
  g_sms = prop.multiProcessorCount;
  std::printf("sharq_prefill_ws_probe on %s; stages: sp+1 %d, 1 dense %d, 2 dense %d\n", prop.name,
              Cfg<1, 1, 0>::kStages, Cfg<0, 1, 0>::kStages, Cfg<0, 2, 0>::kStages);
  cublasHandle_t h;
  check(cublasCreate(&h), "cublasCreate");
  if (argc > 1 && std::strcmp(argv[1], "--profile") == 0) {  // one launch of each, for ncu
    const Bf16Run run(2048, 6144, 4096);
    const Params& prm = run.prm;
    using bf = __nv_bfloat16;
    launch<Cfg<1, 1, 0>, bf>(prm);
    launch<Cfg<1, 1, 0, 1>, bf>(prm);
    launch<Cfg<1, 1, 0, 2>, bf>(prm);
    launch<Cfg<0, 1, 0>, bf>(prm);
    launch<Cfg<0, 1, 0, 1>, bf>(prm);
    launch<Cfg<0, 1, 0, 2>, bf>(prm);
    check(cudaDeviceSynchronize(), "profile");
    std::printf("profile launches done\n");
    return 0;
  }
  if (argc > 1 && std::strcmp(argv[1], "--profile-shapes") == 0) {  // the engine's kernel, for ncu
    // One launch at o's shape (2048 x 4096 x 4096) and one at gate/up's (2048 x 28672 x 4096):
    // gate/up times 2.07x cuBLAS BF16 where o times 1.74x (issue 5, session 14).
    for (const int n : {4096, 28672}) {
      const Bf16Run run(2048, n, 4096);
      launch<Cfg<1, 1, 0>, __nv_bfloat16>(run.prm);
      check(cudaDeviceSynchronize(), "profile");
    }
    std::printf("profile launches done\n");
    return 0;
  }
  if (argc > 1 && std::strcmp(argv[1], "--sustain") == 0) {  // times under sustained load
    // gate/up's shape (2048 x 28672 x 4096): cuBLAS BF16 and the engine's kernel, each after 3 s
    // idle, 400 launches back to back timed in batches of 20 (us a launch): how much a heating
    // card slows each (run with nvidia-smi sampling clocks.sm and power.draw beside it).
    const int m = 2048, n = 28672, k = 4096;
    const Bf16Run run(m, n, k);
    const Problem& pr = run.pr;
    __half *dw = upload(pr.w_cat), *da = upload(pr.a_cat);  // bit patterns as BF16 operands
    __nv_bfloat16* cb = run.c;
    const Params& prm = run.prm;
    const float one = 1.0f, zero = 0.0f;
    const int kc = 3 * k;  // a_cat / w_cat rows hold [backbone | residual | residual] of K each
    auto cublas = [&] {
      sharq::dev::check(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, dw, CUDA_R_16BF,
                                     kc, da, CUDA_R_16BF, kc, &zero, cb, CUDA_R_16BF, n,
                                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                        "bf16 gemm");
    };
    auto ours = [&] { launch<Cfg<1, 1, 0>, __nv_bfloat16>(prm); };
    cudaEvent_t a, b;
    check(cudaEventCreate(&a), "event");
    check(cudaEventCreate(&b), "event");
    for (int which = 0; which < 2; ++which) {
      check(cudaDeviceSynchronize(), "sync");
      std::this_thread::sleep_for(std::chrono::seconds(3));
      std::printf("SUSTAIN %s (t = %lld ms):", which ? "sharq-24 one launch" : "cuBLAS BF16",
                  static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                             std::chrono::system_clock::now().time_since_epoch())
                                             .count() %
                                         100000));
      for (int batch = 0; batch < 20; ++batch) {
        check(cudaEventRecord(a), "record");
        for (int i = 0; i < 20; ++i) which ? ours() : cublas();
        check(cudaEventRecord(b), "record");
        check(cudaEventSynchronize(b), "sync");
        float ms = 0;
        check(cudaEventElapsedTime(&ms, a, b), "elapsed");
        std::printf(" %.0f", ms * 1000.0f / 20);
      }
      std::printf("\n");
    }
    cudaFree(dw), cudaFree(da);
    return 0;
  }
  int failures = 0;
  const int checks[][3] = {{128, 256, 64}, {200, 300, 448}, {17, 512, 4096}, {2049, 1024, 1024}};
  for (const auto& s : checks) {
    const Problem p = make_problem(s[0], s[1], s[2], 2, 11 + s[0]);
    const Device dev(p);
    std::printf("CHECK M %d N %d K %d\n", s[0], s[1], s[2]);
    failures += !check_all(h, p, dev);
  }
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  if (failures == 0 && !quick) {
    const int shapes[][2] = {{4096, 6144}, {4096, 4096}, {4096, 28672}, {14336, 4096}};
    for (const int m : {2048, 8192})
      for (const auto& s : shapes) time_shape(h, m, s[1], s[0]);
  }
  cublasDestroy(h);
  std::printf("%s\n", failures == 0 ? "ALL PASS" : "FAILURES");
  return failures == 0 ? 0 : 1;
}
