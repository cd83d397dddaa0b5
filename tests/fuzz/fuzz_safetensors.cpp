// libFuzzer target: safetensors bytes -> parse_safetensors + to_float of every tensor.
// Anything but success or sharq::Error fails.
#include <cstddef>
#include <cstdint>

#include "sharq/error.h"
#include "sharq/model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto f = sharq::model::parse_safetensors({data, size}, "fuzz.safetensors");
    for (const auto& t : f.tensors) {
      try {
        f.to_float(t);
      } catch (const sharq::Error&) {
      }
    }
  } catch (const sharq::Error&) {
  }
  return 0;
}
