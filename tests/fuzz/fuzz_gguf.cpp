// libFuzzer target: GGUF bytes -> load_gguf_bytes (parse, dequantize, name mapping, tokenizer).
// Anything but success or sharq::Error (a crash, another exception, a sanitizer report) fails.
#include <cstddef>
#include <cstdint>

#include "sharq/error.h"
#include "sharq/model/load.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    sharq::model::load_gguf_bytes({data, size}, "fuzz.gguf");
  } catch (const sharq::Error&) {
  }
  return 0;
}
