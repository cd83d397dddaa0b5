// CPU float32 decoder ops behind the CPU backend: plain loops threaded over rows, attention
// through OpenBLAS GEMMs. Not quantized: the engine quantizes only the decoder linears.
#include "sharq/cpu/ops.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>

#include "sharq/error.h"
#include "sharq/parallel.h"

namespace sharq::cpu {
namespace {

// Below this many elements a fork-join costs more than the loop (thread start ~20 us).
constexpr int64_t kParallelMin = 1 << 15;

int threads_for(int64_t elements, int threads) {
  return elements < kParallelMin ? 1 : threads;
}

}  // namespace

void embedding(const float* table, int64_t vocab, int64_t d, const int32_t* ids, int64_t t,
               float* out) {
  for (int64_t i = 0; i < t; ++i) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      throw Error("embedding: token id " + std::to_string(ids[i]) + " at position " +
                  std::to_string(i) + " is outside the vocabulary [0, " + std::to_string(vocab) +
                  ")");
    }
    std::copy(table + ids[i] * d, table + (ids[i] + 1) * d, out + i * d);
  }
}

void rms_norm(const float* x, const float* w, int64_t rows, int64_t d, float eps, float* out,
              int threads) {
  parallel_for(rows, threads_for(rows * d, threads), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * d;
      float* o = out + r * d;
      double ss = 0.0;
      for (int64_t j = 0; j < d; ++j) ss += static_cast<double>(xr[j]) * xr[j];
      const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(d) + eps));
      for (int64_t j = 0; j < d; ++j) o[j] = xr[j] * inv * w[j];
    }
  });
}

std::vector<float> rope_inv_freq(int64_t head_dim, float theta, const model::RopeScaling& s) {
  if (head_dim <= 0 || head_dim % 2 != 0) {
    throw Error("rope: head_dim " + std::to_string(head_dim) + " must be positive and even");
  }
  const int64_t half = head_dim / 2;
  std::vector<float> f(static_cast<size_t>(half));
  for (int64_t j = 0; j < half; ++j) {
    // HF: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), all float32.
    const float e = static_cast<float>(2 * j) / static_cast<float>(head_dim);
    f[j] = 1.0f / std::pow(theta, e);
  }
  if (s.type.empty()) return f;
  if (s.type != "llama3") {
    throw Error("rope_scaling type '" + s.type + "' is not supported (only 'llama3')");
  }
  if (!(s.factor > 0.0f) || s.original_max_position_embeddings <= 0 ||
      s.high_freq_factor == s.low_freq_factor) {
    throw Error(
        "rope_scaling llama3: need factor > 0, original_max_position_embeddings > 0 and "
        "high_freq_factor != low_freq_factor");
  }
  const double old_len = static_cast<double>(s.original_max_position_embeddings);
  const double low_wavelen = old_len / s.low_freq_factor;
  const double high_wavelen = old_len / s.high_freq_factor;
  for (auto& v : f) {
    const double freq = v;
    const double wavelen = 2.0 * std::numbers::pi / freq;
    double out = freq;
    if (wavelen > low_wavelen) {
      out = freq / s.factor;
    } else if (wavelen >= high_wavelen) {
      const double smooth =
          (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      out = (1.0 - smooth) * freq / s.factor + smooth * freq;
    }
    v = static_cast<float>(out);
  }
  return f;
}

void rope(float* x, int64_t t, int64_t pos0, int64_t heads, int64_t head_dim, const float* inv_freq,
          int threads) {
  const int64_t half = head_dim / 2;
  parallel_for(t, threads_for(t * heads * head_dim, threads), [&](int64_t i0, int64_t i1) {
    std::vector<float> c(static_cast<size_t>(half)), s(static_cast<size_t>(half));
    for (int64_t i = i0; i < i1; ++i) {
      // HF forms the angle as a float32 product, then takes cos/sin.
      const float pos = static_cast<float>(pos0 + i);
      for (int64_t j = 0; j < half; ++j) {
        const float angle = pos * inv_freq[j];
        c[j] = static_cast<float>(std::cos(static_cast<double>(angle)));
        s[j] = static_cast<float>(std::sin(static_cast<double>(angle)));
      }
      for (int64_t h = 0; h < heads; ++h) {
        float* xh = x + (i * heads + h) * head_dim;
        for (int64_t j = 0; j < half; ++j) {
          const float a = xh[j];
          const float b = xh[j + half];
          xh[j] = a * c[j] - b * s[j];
          xh[j + half] = b * c[j] + a * s[j];
        }
      }
    }
  });
}

void kv_store(const float* k, const float* v, int64_t t, int64_t pos0, int64_t kv_heads,
              int64_t head_dim, int64_t capacity, float* k_cache, float* v_cache) {
  if (pos0 < 0 || pos0 + t > capacity) {
    throw Error("kv cache: positions " + std::to_string(pos0) + ".." + std::to_string(pos0 + t) +
                " exceed its capacity " + std::to_string(capacity));
  }
  for (int64_t i = 0; i < t; ++i) {
    for (int64_t g = 0; g < kv_heads; ++g) {
      const int64_t src = (i * kv_heads + g) * head_dim;
      const int64_t dst = (g * capacity + pos0 + i) * head_dim;
      std::copy(k + src, k + src + head_dim, k_cache + dst);
      std::copy(v + src, v + src + head_dim, v_cache + dst);
    }
  }
}

void attention(const float* q, int64_t t, int64_t pos0, int64_t heads, int64_t kv_heads,
               int64_t head_dim, int64_t capacity, const float* k_cache, const float* v_cache,
               float* out, int threads) {
  if (kv_heads <= 0 || heads % kv_heads != 0) {
    throw Error("attention: heads " + std::to_string(heads) + " is not a multiple of kv_heads " +
                std::to_string(kv_heads));
  }
  if (pos0 + t > capacity) {
    throw Error("attention: positions up to " + std::to_string(pos0 + t) +
                " exceed the kv cache capacity " + std::to_string(capacity));
  }
  const int64_t group = heads / kv_heads;
  const int64_t ld = heads * head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  // Query blocks bound the score buffer and skip keys the block cannot see (causal).
  constexpr int64_t kBlock = 256;
  const size_t score_size = static_cast<size_t>(std::min(t, kBlock) * (pos0 + t));
  // Heads in parallel, each with single-threaded BLAS calls (see set_blas_threads).
  const int64_t work = t * (pos0 + t) * heads * head_dim;
  parallel_for(heads, work < (int64_t{1} << 21) ? 1 : threads, [&](int64_t h0, int64_t h1) {
    std::vector<float> scores(score_size);
    for (int64_t h = h0; h < h1; ++h) {
      const float* kc = k_cache + (h / group) * capacity * head_dim;
      const float* vc = v_cache + (h / group) * capacity * head_dim;
      for (int64_t i0 = 0; i0 < t; i0 += kBlock) {
        const int64_t bt = std::min(kBlock, t - i0);
        const int64_t keys = pos0 + i0 + bt;
        // scores (bt, keys) = scale * q_h[i0:i0+bt] (bt, hd) . k_g[0:keys] (keys, hd)^T
        if (bt == 1) {  // decode: sgemv reads the cache once instead of packing it
          cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(keys),
                      static_cast<int>(head_dim), scale, kc, static_cast<int>(head_dim),
                      q + i0 * ld + h * head_dim, 1, 0.0f, scores.data(), 1);
        } else {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(bt),
                      static_cast<int>(keys), static_cast<int>(head_dim), scale,
                      q + i0 * ld + h * head_dim, static_cast<int>(ld), kc,
                      static_cast<int>(head_dim), 0.0f, scores.data(), static_cast<int>(keys));
        }
        for (int64_t r = 0; r < bt; ++r) {
          float* row = scores.data() + r * keys;
          const int64_t visible = pos0 + i0 + r + 1;
          float mx = row[0];
          for (int64_t j = 1; j < visible; ++j) mx = std::max(mx, row[j]);
          double sum = 0.0;
          for (int64_t j = 0; j < visible; ++j) {
            row[j] = std::exp(row[j] - mx);
            sum += row[j];
          }
          const float inv = static_cast<float>(1.0 / sum);
          for (int64_t j = 0; j < visible; ++j) row[j] *= inv;
          std::fill(row + visible, row + keys, 0.0f);
        }
        // out_h[i0:i0+bt] (bt, hd) = p (bt, keys) . v_g[0:keys] (keys, hd)
        if (bt == 1) {
          cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<int>(keys), static_cast<int>(head_dim),
                      1.0f, vc, static_cast<int>(head_dim), scores.data(), 1, 0.0f,
                      out + i0 * ld + h * head_dim, 1);
        } else {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(bt),
                      static_cast<int>(head_dim), static_cast<int>(keys), 1.0f, scores.data(),
                      static_cast<int>(keys), vc, static_cast<int>(head_dim), 0.0f,
                      out + i0 * ld + h * head_dim, static_cast<int>(ld));
        }
      }
    }
  });
}

void linear_f32_split(const float* x, const float* w, const float* bias, float* y, int64_t m,
                      int64_t n, int64_t k, int threads) {
  // Fixed blocks of 128 output columns, one single-threaded BLAS call each, whatever the thread
  // count: OpenBLAS's result for a column depends on the shape of the call that computed it, so
  // a fixed split keeps results identical for every --threads.
  constexpr int64_t kCols = 128;
  const int64_t blocks = (n + kCols - 1) / kCols;
  // Below ~512K multiply-adds a thread start (~30 us) costs more than it saves; a decode GEMV
  // above that is memory-bound, and two threads stream the weight faster than one.
  const int t = m * n * k < (int64_t{1} << 19) ? 1 : threads;
  parallel_for(blocks, t, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t j0 = b * kCols, j1 = std::min(n, j0 + kCols), nb = j1 - j0;
      float beta = 0.0f;
      if (bias) {
        for (int64_t i = 0; i < m; ++i) std::copy(bias + j0, bias + j1, y + i * n + j0);
        beta = 1.0f;
      }
      if (m == 1) {
        // sgemm packs all of W before a one-row product; sgemv streams it once (decode).
        cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(nb), static_cast<int>(k), 1.0f,
                    w + j0 * k, static_cast<int>(k), x, 1, beta, y + j0, 1);
        continue;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m),
                  static_cast<int>(nb), static_cast<int>(k), 1.0f, x, static_cast<int>(k),
                  w + j0 * k, static_cast<int>(k), beta, y + j0, static_cast<int>(n));
    }
  });
}

void swiglu(const float* gate, const float* up, int64_t n, float* out, int threads) {
  parallel_for(n, threads_for(n, threads), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const float g = gate[i];
      out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
  });
}

void add(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void set_blas_threads(int threads) {
  openblas_set_num_threads(threads);
}

}  // namespace sharq::cpu
