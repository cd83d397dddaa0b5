// libFuzzer target for the tokenizer side. The first byte picks a mode: 0-3 encode (and decode)
// the rest as text with the tiny fixture vocab under each pre-tokenizer (llama3, qwen2, gpt2,
// smollm); 4 parses it as tokenizer.json and, if accepted, builds a Tokenizer and encodes;
// 5 parses it as config.json. Anything but success or sharq::Error fails.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "sharq/error.h"
#include "sharq/model/load.h"
#include "sharq/tokenizer/tokenizer.h"
#include "tiny_models.h"

namespace {

const sharq::Tokenizer& tokenizer(int mode) {
  static const auto make = [](const char* pre) {
    auto d = sharq::fixture::make_tiny_model(sharq::fixture::TinyKind::llama3).tokenizer;
    d.pre_tokenizer = pre;
    return new sharq::Tokenizer(d);  // lives for the process: no leak report at exit
  };
  static const sharq::Tokenizer* t[4] = {make("llama3"), make("qwen2"), make("gpt2"),
                                         make("smollm")};
  return *t[mode];
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int mode = data[0] % 6;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    if (mode < 4) {
      const sharq::Tokenizer& t = tokenizer(mode);
      const auto ids = t.encode(text, true);
      // Byte-level BPE is lossless: decode must give the text back (after the BOS).
      const std::string back = t.decode(std::vector<int32_t>(ids.begin() + 1, ids.end()));
      if (back != text) std::abort();
    } else if (mode == 4) {
      const auto d = sharq::model::parse_tokenizer_json(text, "", "fuzz.json");
      const sharq::Tokenizer t(d);
      t.decode(t.encode("Hello, world! 123 <|x|> \xe6\x97\xa5", false));
    } else {
      sharq::model::parse_hf_config(text, "fuzz.json");
    }
  } catch (const sharq::Error&) {
  }
  return 0;
}
