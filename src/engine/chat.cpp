// ChatML and Llama-3 single-turn prompt wrapping and stop tokens. Not a template engine.
#include "sharq/engine/chat.h"

#include <algorithm>

#include "sharq/error.h"

namespace sharq::engine {

int32_t find_token(const model::TokenizerData& tok, std::string_view text) {
  auto it = std::find(tok.vocab.begin(), tok.vocab.end(), text);
  return it == tok.vocab.end() ? -1 : static_cast<int32_t>(it - tok.vocab.begin());
}

ChatFormat detect_chat_format(const model::TokenizerData& tok) {
  const std::string& t = tok.chat_template;
  if (t.find("<|start_header_id|>") != std::string::npos) return ChatFormat::kLlama3;
  if (t.find("<|im_start|>") != std::string::npos) return ChatFormat::kChatML;
  if (find_token(tok, "<|im_start|>") >= 0) return ChatFormat::kChatML;
  if (find_token(tok, "<|start_header_id|>") >= 0) return ChatFormat::kLlama3;
  throw Error(
      "--chat: the model has neither ChatML (<|im_start|>) nor Llama-3 "
      "(<|start_header_id|>) chat tokens");
}

const char* chat_format_name(ChatFormat f) {
  return f == ChatFormat::kChatML ? "chatml" : "llama3";
}

std::string apply_chat_template(ChatFormat f, std::string_view prompt) {
  if (f == ChatFormat::kChatML) {
    return "<|im_start|>user\n" + std::string(prompt) + "<|im_end|>\n<|im_start|>assistant\n";
  }
  return "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n" + std::string(prompt) +
         "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
}

bool chat_template_has_bos(ChatFormat f) {
  return f == ChatFormat::kLlama3;
}

std::vector<int32_t> chat_stop_ids(const model::TokenizerData& tok, ChatFormat f) {
  std::vector<int32_t> ids;
  if (tok.eos_id >= 0) ids.push_back(tok.eos_id);
  const int32_t end = find_token(tok, f == ChatFormat::kChatML ? "<|im_end|>" : "<|eot_id|>");
  if (end >= 0 && end != tok.eos_id) ids.push_back(end);
  return ids;
}

}  // namespace sharq::engine
