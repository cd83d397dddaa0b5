// The chat-template basics for `sharq generate --chat`: one user turn in ChatML (Qwen, SmolLM) or
// Llama-3 header format, and the tokens that end an assistant turn. Not a Jinja interpreter:
// system prompts, tools and multi-turn histories of the model's own template are not applied.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sharq/model/loaded_model.h"

namespace sharq::engine {

enum class ChatFormat { kChatML, kLlama3 };

// From the raw template text when it names its markers, else from the special tokens in the
// vocabulary. Throws sharq::Error when neither format applies.
ChatFormat detect_chat_format(const model::TokenizerData& tok);
const char* chat_format_name(ChatFormat f);

// The prompt as text with special tokens spelled out, ending where the assistant's reply starts:
//   ChatML: "<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
//   Llama3: "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{prompt}<|eot_id|>"
//           "<|start_header_id|>assistant<|end_header_id|>\n\n"
// Encode it with BOS only for ChatML models that add one (Llama3 text carries its own).
std::string apply_chat_template(ChatFormat f, std::string_view prompt);
bool chat_template_has_bos(ChatFormat f);

// eos plus the end-of-turn token of the format (<|im_end|>, <|eot_id|>) when in the vocabulary.
std::vector<int32_t> chat_stop_ids(const model::TokenizerData& tok, ChatFormat f);

// Id of a token string in the vocabulary, or -1.
int32_t find_token(const model::TokenizerData& tok, std::string_view text);

}  // namespace sharq::engine
