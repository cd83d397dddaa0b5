// Activation quantization per mode, including the SharQ decomposition of SPEC section 5:
// tensor scale -> N:M backbone -> quantized backbone -> residual vs the *quantized* backbone ->
// quantized residual. Scalar reference, threaded over rows. Not the GEMM (cpu/linear.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sharq/formats.h"
#include "sharq/modes.h"

namespace sharq {

// Experiments beyond the paper (issue 4). All off = SPEC.md behaviour. See docs/variants.md.
struct Variant {
  bool residual_g32 = false;     // NVFP4 residual at g32 instead of g16
  bool per_token_scale = false;  // NVFP4 tensor scale per row (token) instead of per tensor
  bool energy_pairs = false;     // 4:8p pair score x0^2 + x1^2 instead of max(|x0|, |x1|)
  bool fp8_decoded = false;      // every decoded q*S rounded to E4M3 after a 2^-3 shift
  bool any() const { return residual_g32 || per_token_scale || energy_pairs || fp8_decoded; }
  // "" or e.g. "+res-g32+per-token" (appended to a mode name in reports).
  std::string suffix() const;
  // Parses a comma list of res-g32, per-token, energy-pairs, fp8-decoded ("" = none).
  static Variant parse(std::string_view list);
};

// Rounds decoded scaled-domain values to what an FP8 (E4M3) Hopper path would multiply:
// E4M3(v * 2^-3) * 2^3. The shift keeps NVFP4's largest q*S (6 * 448 = 2688) in range.
void round_decoded_to_fp8(float* v, int64_t n);

// Everything one activation tensor X (rows x cols, row-major float32) becomes under a mode.
struct ActivationQuant {
  Mode mode = Mode::kBf16;
  int64_t rows = 0;
  int64_t cols = 0;
  float tensor_scale = 1.0f;   // s_t (1 where the family has none)
  std::vector<float> dequant;  // (rows, cols) reconstruction in original units
  // Decomposition modes only (SPEC 5 step 6), original units; dequant = sparse + residual:
  std::vector<float> sparse;    // X^_sp
  std::vector<float> residual;  // R^ (all zero for sparse-only)
  std::vector<uint8_t> keep;    // backbone mask flags, 1 = kept (rows, cols)
  // Packed codes and scales (dense layout); sparse_q only for decomposition modes, dense_q is
  // the residual (decomposition) or the whole activation (single-format modes).
  PackedTensor sparse_q;
  PackedTensor dense_q;
};

// Quantizes X under `mode`, keeping every component. Validates K % 64 and finiteness, naming
// `tensor_name` in errors.
ActivationQuant quantize_activation(Mode mode, const float* x, int64_t rows, int64_t cols,
                                    std::string_view tensor_name, int threads = 1,
                                    const Variant& variant = {});

// The engine's hot path: writes only the reconstruction (equal, bit for bit, to
// quantize_activation(...).dequant). out may not alias x.
void fake_quantize_activation(Mode mode, const float* x, int64_t rows, int64_t cols, float* out,
                              std::string_view tensor_name, int threads = 1,
                              const Variant& variant = {});

}  // namespace sharq
