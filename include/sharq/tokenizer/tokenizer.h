// Byte-level BPE tokenizer (GPT-2 / Llama-3 / Qwen2 pre-tokenizers) built from TokenizerData.
// Token ids must equal Hugging Face `tokenizers`. Not a SentencePiece tokenizer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sharq/model/loaded_model.h"

namespace sharq {

class Tokenizer {
 public:
  // Throws sharq::Error on inconsistent data (unknown pre-tokenizer, merge of unknown tokens...).
  explicit Tokenizer(const model::TokenizerData& data);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // Special tokens in the text are matched verbatim; BOS is prepended when add_bos.
  std::vector<int32_t> encode(std::string_view text, bool add_bos) const;
  // Concatenated UTF-8 bytes of the tokens (may end inside a multi-byte character).
  std::string decode(const std::vector<int32_t>& ids) const;
  std::string token_bytes(int32_t id) const;
  int32_t bos_id() const;
  int32_t eos_id() const;
  bool add_bos_default() const;
  int64_t vocab_size() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sharq
