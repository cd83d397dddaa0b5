// Numbers read from hostile JSON (config.json, tokenizer.json): nlohmann's get<int64_t>() casts a
// float or an out-of-range unsigned value without a check (undefined for 1e30, a wrapped value
// for 2^64 - 1), and get<float>() narrows a double past FLT_MAX. These accept a number only when
// the target type holds it exactly (integers) or in range (floats), and otherwise throw
// sharq::Error naming the file and the key.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include "sharq/error.h"

namespace sharq::model {

// An integer: a JSON integer within int64, or a float with an integral value within int64
// (some configs write 128.0).
inline int64_t json_int64(const nlohmann::json& v, const std::string& what) {
  if (v.is_number_unsigned()) {
    const auto u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      throw Error(what + " = " + std::to_string(u) + " is out of range");
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    // 2^63 is exact in a double; every integral double below it in magnitude fits int64.
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 0x1p63)
      return static_cast<int64_t>(d);
  }
  throw Error(what + " is not an integer in range");
}

// A float32: any JSON number that is finite and within float's range.
inline float json_float(const nlohmann::json& v, const std::string& what) {
  if (v.is_number()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && std::fabs(d) <= std::numeric_limits<float>::max())
      return static_cast<float>(d);
  }
  throw Error(what + " is not a finite float32 number");
}

}  // namespace sharq::model
