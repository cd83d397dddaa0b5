// SPEC 5 decomposition and the single-format activation rules, one row at a time.
// Both public entry points run the same row kernel, so the hot path cannot drift from the
// component-keeping one.
#include "sharq/decompose.h"

#include <algorithm>
#include <string>

#include "sharq/codecs.h"
#include "sharq/error.h"
#include "sharq/masks.h"
#include "sharq/parallel.h"
#include "sharq/tensor_checks.h"

namespace sharq {
namespace {

// Where one row's results go; null pointers are not written.
struct RowSinks {
  float* dequant = nullptr;
  float* sparse = nullptr;
  float* residual = nullptr;
  uint8_t* keep = nullptr;
  uint8_t* sp_codes = nullptr;
  uint8_t* sp_scales = nullptr;
  uint8_t* dn_codes = nullptr;
  uint8_t* dn_scales = nullptr;
};

// Per-thread scratch for one row of k values.
struct RowScratch {
  explicit RowScratch(int64_t k)
      : xs(k), xsp(k), deq_sp(k), r(k), r_masked(k), deq_r(k), codes(k), scales(k) {}
  std::vector<float> xs, xsp, deq_sp, r, r_masked, deq_r;
  std::vector<uint8_t> codes, scales;  // sinks for packed outputs nobody asked for
};

// Which float32 tensor scale the mode uses: NVFP4 and FP8 families have one.
const FormatTraits* scaled_family(const ModeTraits& m) {
  if (m.act == ActRule::kSingle) return &format_traits(m.act_format);
  if (m.act == ActRule::kDecompose) return &format_traits(m.sparse_format);
  return nullptr;
}

void decompose_row(const ModeTraits& m, const Variant& v, const float* x, int64_t k, float st,
                   float inv, bool scaled, RowScratch& s, const RowSinks& out) {
  float* xs = s.xs.data();
  if (scaled) {
    for (int64_t c = 0; c < k; ++c) xs[c] = x[c] * inv;
  } else {
    std::copy(x, x + k, xs);
  }
  uint8_t* sp_codes = out.sp_codes ? out.sp_codes : s.codes.data();
  uint8_t* sp_scales = out.sp_scales ? out.sp_scales : s.scales.data();
  uint8_t* dn_codes = out.dn_codes ? out.dn_codes : s.codes.data();
  uint8_t* dn_scales = out.dn_scales ? out.dn_scales : s.scales.data();
  float* deq_sp = s.deq_sp.data();
  float* deq_r = s.deq_r.data();

  if (m.act == ActRule::kSingle) {
    format_traits(m.act_format).quantize_row(xs, k, dn_codes, dn_scales, deq_r);
    if (v.fp8_decoded) round_decoded_to_fp8(deq_r, k);
    for (int64_t c = 0; c < k; ++c) out.dequant[c] = deq_r[c] * st;
    return;
  }

  // Steps 2-3: backbone X_sp = P(x') (.) x', quantized with F_sp.
  apply_mask_row(m.mask, xs, k, s.xsp.data(), out.keep);
  format_traits(m.sparse_format).quantize_row(s.xsp.data(), k, sp_codes, sp_scales, deq_sp);
  if (m.residual_used) {
    // Step 4: R = x' - X~_sp against the quantized backbone; step 5: R~ in the same domain.
    float* r = s.r.data();
    for (int64_t c = 0; c < k; ++c) r[c] = xs[c] - deq_sp[c];
    if (m.residual_mask != MaskPattern::kNone) {
      apply_mask_row(m.residual_mask, r, k, s.r_masked.data(), nullptr);
      r = s.r_masked.data();
    }
    format_traits(m.dense_format).quantize_row(r, k, dn_codes, dn_scales, deq_r);
  } else {
    std::fill(deq_r, deq_r + k, 0.0f);
  }
  if (v.fp8_decoded) {
    round_decoded_to_fp8(deq_sp, k);
    round_decoded_to_fp8(deq_r, k);
  }
  // Step 6: back to original units; the reconstruction is the float32 sum of the two.
  for (int64_t c = 0; c < k; ++c) {
    const float sp = deq_sp[c] * st;
    const float rs = deq_r[c] * st;
    if (out.sparse) out.sparse[c] = sp;
    if (out.residual) out.residual[c] = rs;
    out.dequant[c] = sp + rs;
  }
}

// The mode table row with a variant's format and mask changes applied (NVFP4 family only).
ModeTraits apply_variant(ModeTraits m, const Variant& v) {
  if (v.residual_g32 && m.act == ActRule::kDecompose && m.dense_format == Format::kNvfp4G16) {
    m.dense_format = Format::kNvfp4G32;
  }
  if (v.energy_pairs && m.mask == MaskPattern::k4of8Pairs) m.mask = MaskPattern::k4of8PairsEnergy;
  m.per_token_scale = m.per_token_scale || v.per_token_scale;
  return m;
}

void init_packed(PackedTensor& p, Format f, int64_t rows, int64_t cols, float st) {
  const FormatTraits& t = format_traits(f);
  p.format = f;
  p.rows = rows;
  p.cols = cols;
  p.tensor_scale = t.tensor_scaled ? st : 1.0f;
  p.codes.assign(static_cast<size_t>(rows * cols * t.code_bits / 8), 0);
  p.scales.assign(static_cast<size_t>(t.block ? rows * (cols / t.block) * t.scale_bytes : 0), 0);
}

// Runs the mode over all rows. `full` keeps every component in `q`; otherwise only `out`.
void run_mode(Mode mode, const Variant& v, const float* x, int64_t rows, int64_t cols, float* out,
              ActivationQuant* full, std::string_view tensor_name, int threads) {
  check_k_multiple_of_64(rows, cols, tensor_name);
  check_finite(x, rows, cols, tensor_name);
  const ModeTraits m = apply_variant(mode_traits(mode), v);
  const int64_t n = rows * cols;

  if (m.act == ActRule::kBf16Round || m.act == ActRule::kIdentity) {
    const bool round = m.act == ActRule::kBf16Round;
    parallel_for(rows, threads, [&](int64_t r0, int64_t r1) {
      for (int64_t i = r0 * cols; i < r1 * cols; ++i) out[i] = round ? bf16_round(x[i]) : x[i];
    });
    return;
  }

  const FormatTraits* fam = scaled_family(m);
  const bool scaled = fam && fam->tensor_scaled;
  const bool per_token = scaled && m.per_token_scale;
  const float st = scaled && !per_token
                       ? tensor_scale_for(absmax(x, n, threads), fam->tensor_scale_div, tensor_name)
                       : 1.0f;

  const bool decomp = m.act == ActRule::kDecompose;
  const FormatTraits& dn = format_traits(decomp ? m.dense_format : m.act_format);
  if (full) {
    full->tensor_scale = st;
    if (decomp) {
      full->sparse.assign(static_cast<size_t>(n), 0.0f);
      full->residual.assign(static_cast<size_t>(n), 0.0f);
      full->keep.assign(static_cast<size_t>(n), 0);
      init_packed(full->sparse_q, m.sparse_format, rows, cols, st);
    }
    init_packed(full->dense_q, dn.format, rows, cols, st);
  }
  const FormatTraits& sp = format_traits(m.sparse_format);
  const int64_t sp_code_row = cols * sp.code_bits / 8;
  const int64_t sp_scale_row = sp.block ? cols / sp.block * sp.scale_bytes : 0;
  const int64_t dn_code_row = cols * dn.code_bits / 8;
  const int64_t dn_scale_row = dn.block ? cols / dn.block * dn.scale_bytes : 0;

  parallel_for(rows, threads, [&](int64_t r0, int64_t r1) {
    RowScratch scratch(cols);
    for (int64_t r = r0; r < r1; ++r) {
      RowSinks sinks;
      sinks.dequant = out + r * cols;
      if (full) {
        if (decomp) {
          sinks.sparse = full->sparse.data() + r * cols;
          sinks.residual = full->residual.data() + r * cols;
          sinks.keep = full->keep.data() + r * cols;
          sinks.sp_codes = full->sparse_q.codes.data() + r * sp_code_row;
          sinks.sp_scales = full->sparse_q.scales.data() + r * sp_scale_row;
        }
        sinks.dn_codes = full->dense_q.codes.data() + r * dn_code_row;
        sinks.dn_scales = full->dense_q.scales.data() + r * dn_scale_row;
      }
      float row_st = st;
      if (per_token) {
        const std::string row_name = std::string(tensor_name) + " row " + std::to_string(r);
        row_st = tensor_scale_for(absmax(x + r * cols, cols, 1), fam->tensor_scale_div, row_name);
      }
      decompose_row(m, v, x + r * cols, cols, row_st, rcp(row_st), scaled, scratch, sinks);
    }
  });
}

}  // namespace

std::string Variant::suffix() const {
  std::string s;
  if (residual_g32) s += "+res-g32";
  if (per_token_scale) s += "+per-token";
  if (energy_pairs) s += "+energy-pairs";
  if (fp8_decoded) s += "+fp8-decoded";
  return s;
}

Variant Variant::parse(std::string_view list) {
  Variant v;
  size_t start = 0;
  while (start < list.size()) {
    const size_t comma = std::min(list.find(',', start), list.size());
    const std::string_view item = list.substr(start, comma - start);
    if (item == "res-g32") {
      v.residual_g32 = true;
    } else if (item == "per-token") {
      v.per_token_scale = true;
    } else if (item == "energy-pairs") {
      v.energy_pairs = true;
    } else if (item == "fp8-decoded") {
      v.fp8_decoded = true;
    } else {
      throw Error("unknown experiment variant '" + std::string(item) +
                  "' (known: res-g32, per-token, energy-pairs, fp8-decoded)");
    }
    start = comma + 1;
  }
  return v;
}

void round_decoded_to_fp8(float* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) v[i] = e4m3_decode(e4m3_encode(v[i] * 0.125f)) * 8.0f;
}

ActivationQuant quantize_activation(Mode mode, const float* x, int64_t rows, int64_t cols,
                                    std::string_view tensor_name, int threads,
                                    const Variant& variant) {
  ActivationQuant q;
  q.mode = mode;
  q.rows = rows;
  q.cols = cols;
  q.dequant.assign(static_cast<size_t>(std::max<int64_t>(rows * cols, 0)), 0.0f);
  run_mode(mode, variant, x, rows, cols, q.dequant.data(), &q, tensor_name, threads);
  return q;
}

void fake_quantize_activation(Mode mode, const float* x, int64_t rows, int64_t cols, float* out,
                              std::string_view tensor_name, int threads, const Variant& variant) {
  run_mode(mode, variant, x, rows, cols, out, nullptr, tensor_name, threads);
}

}  // namespace sharq
