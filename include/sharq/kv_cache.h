// The KV cache's element format, one choice per backend (engine::Backend::set_kv_cache) and the
// tools' --kv-cache flag. Not the cache itself (engine::Session owns it).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "sharq/error.h"

namespace sharq {

// kF32: float32, the reference; kF16: IEEE binary16, each K and V value rounded to nearest even
// as it is stored (the CUDA backend stores halves, half the bytes; the CPU backend keeps float32
// storage holding the rounded values, so both compute from the same cached values).
enum class KvCache : uint8_t { kF32, kF16 };

inline std::string_view kv_cache_name(KvCache c) {
  return c == KvCache::kF16 ? "f16" : "f32";
}

// "f32" or "f16"; anything else throws sharq::Error naming the value.
inline KvCache parse_kv_cache(std::string_view s) {
  if (s == "f32") return KvCache::kF32;
  if (s == "f16") return KvCache::kF16;
  throw Error("--kv-cache: '" + std::string(s) + "' is not f32 or f16");
}

}  // namespace sharq
