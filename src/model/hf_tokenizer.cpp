// tokenizer.json (+ tokenizer_config.json) -> TokenizerData: BPE vocab, merges, added tokens, the
// pre-tokenizer recognised by its exact regex. Not the tokenizer itself (src/tokenizer).
#include <nlohmann/json.hpp>

#include "json_numbers.h"
#include "sharq/error.h"
#include "sharq/model/load.h"

namespace sharq::model {

using nlohmann::json;

// The Split regexes of Llama-3 and Qwen2 tokenizer.json files, verbatim.
const char* llama3_split_regex() {
  return R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
}
const char* qwen2_split_regex() {
  return R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
}

namespace {

const char* const kLlama3Regex = llama3_split_regex();
const char* const kQwen2Regex = qwen2_split_regex();

std::string detect_pre(const json& pre, const std::string& name) {
  std::vector<json> parts;
  if (pre.is_object() && pre.value("type", "") == "Sequence" && pre.contains("pretokenizers") &&
      pre["pretokenizers"].is_array()) {
    for (const auto& p : pre["pretokenizers"]) parts.push_back(p);
  } else if (pre.is_object()) {
    parts.push_back(pre);
  }
  std::string regex;
  bool byte_level_regex = false, byte_level = false, digits = false;
  for (const json& p : parts) {
    if (!p.is_object()) throw Error(name + ": pre_tokenizer entry is not an object");
    const std::string type = p.value("type", "");
    if (type == "Split") {
      if (!p.contains("pattern") || !p["pattern"].is_object() || !p["pattern"].contains("Regex") ||
          !p["pattern"]["Regex"].is_string()) {
        throw Error(name + ": Split pre-tokenizer without a Regex pattern");
      }
      regex = p["pattern"]["Regex"].get<std::string>();
    } else if (type == "ByteLevel") {
      byte_level = true;
      const json& ur = p.contains("use_regex") ? p["use_regex"] : json(true);
      byte_level_regex = ur.is_boolean() ? ur.get<bool>() : true;
      if (p.contains("add_prefix_space") && p["add_prefix_space"].is_boolean() &&
          p["add_prefix_space"].get<bool>()) {
        throw Error(name + ": ByteLevel add_prefix_space=true is not supported");
      }
    } else if (type == "Digits") {
      digits = p.contains("individual_digits") && p["individual_digits"].is_boolean() &&
               p["individual_digits"].get<bool>();
      if (!digits) throw Error(name + ": Digits pre-tokenizer without individual_digits");
    } else {
      throw Error(name + ": pre-tokenizer type '" + type + "' is not supported");
    }
  }
  if (!byte_level) throw Error(name + ": not a byte-level BPE tokenizer (no ByteLevel)");
  if (!regex.empty()) {
    if (byte_level_regex || digits) throw Error(name + ": Split combined with a regex ByteLevel");
    if (regex == kLlama3Regex) return "llama3";
    if (regex == kQwen2Regex) return "qwen2";
    throw Error(name + ": unsupported pre-tokenizer regex '" + regex + "' (known: Llama-3, Qwen2)");
  }
  if (!byte_level_regex) throw Error(name + ": ByteLevel without regex and no Split");
  return digits ? "smollm" : "gpt2";
}

// A token given as "text" or {"content": "text", ...} (tokenizer_config.json); "" if absent.
std::string token_text(const json& j, const char* key) {
  if (!j.contains(key)) return "";
  const json& v = j[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return v["content"].get<std::string>();
  }
  return "";
}

}  // namespace

namespace {

TokenizerData parse_impl(const std::string& tokenizer_json,
                         const std::string& tokenizer_config_json, const std::string& name,
                         int32_t config_bos, int32_t config_eos) {
  json j;
  try {
    j = json::parse(tokenizer_json);
  } catch (const json::exception& e) {
    throw Error(name + ": bad JSON: " + e.what());
  }
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) {
    throw Error(name + ": no 'model' object");
  }
  const json& model = j["model"];
  if (model.value("type", "BPE") != "BPE") {
    throw Error(name + ": model type '" + model.value("type", "") + "' is not BPE");
  }
  if (model.contains("byte_fallback") && model["byte_fallback"].is_boolean() &&
      model["byte_fallback"].get<bool>()) {
    throw Error(name + ": byte_fallback BPE (SentencePiece-style) is not supported");
  }
  TokenizerData t;
  // NFC (Qwen2) is applied by the tokenizer when built with utf8proc (docs/model_loading.md).
  // Other normalizers would change ids, so they are refused.
  if (j.contains("normalizer") && !j["normalizer"].is_null()) {
    const std::string nt = j["normalizer"].is_object() ? j["normalizer"].value("type", "") : "";
    if (nt != "NFC") throw Error(name + ": normalizer '" + nt + "' is not supported (none, NFC)");
    t.normalizer = nt;
  }
  if (!j.contains("pre_tokenizer") || j["pre_tokenizer"].is_null()) {
    throw Error(name + ": no pre_tokenizer");
  }
  t.pre_tokenizer = detect_pre(j["pre_tokenizer"], name);
  t.ignore_merges = model.contains("ignore_merges") && model["ignore_merges"].is_boolean() &&
                    model["ignore_merges"].get<bool>();

  constexpr int64_t kMaxId = int64_t{1} << 24;
  auto place = [&](int64_t id, const std::string& s) {
    if (id < 0 || id >= kMaxId) throw Error(name + ": token id " + std::to_string(id) + " range");
    if (static_cast<int64_t>(t.vocab.size()) <= id) t.vocab.resize(static_cast<size_t>(id + 1));
    std::string& slot = t.vocab[static_cast<size_t>(id)];
    if (!slot.empty() && slot != s) {
      throw Error(name + ": id " + std::to_string(id) + " is both '" + slot + "' and '" + s + "'");
    }
    slot = s;
  };
  if (!model.contains("vocab") || !model["vocab"].is_object()) {
    throw Error(name + ": model.vocab is not an object");
  }
  for (const auto& [tok, id] : model["vocab"].items()) {
    if (!id.is_number_integer()) throw Error(name + ": vocab['" + tok + "'] is not an integer");
    place(json_int64(id, name + ": vocab['" + tok + "']"), tok);
  }
  if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
    for (const json& a : j["added_tokens"]) {
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
          !a.contains("content") || !a["content"].is_string() ||
          a["content"].get<std::string>().empty()) {
        throw Error(name + ": malformed added_tokens entry");
      }
      const int64_t id = json_int64(a["id"], name + ": added_tokens id");
      place(id, a["content"].get<std::string>());
      t.special_ids.push_back(static_cast<int32_t>(id));
    }
  }
  if (model.contains("merges") && model["merges"].is_array()) {
    for (const json& mj : model["merges"]) {
      if (mj.is_string()) {
        const std::string m = mj.get<std::string>();
        const size_t sp = m.find(' ');
        if (sp == std::string::npos || sp == 0 || sp + 1 == m.size()) {
          throw Error(name + ": malformed merge '" + m + "'");
        }
        t.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
      } else if (mj.is_array() && mj.size() == 2 && mj[0].is_string() && mj[1].is_string()) {
        t.merges.emplace_back(mj[0].get<std::string>(), mj[1].get<std::string>());
      } else {
        throw Error(name + ": malformed merge entry");
      }
    }
  }

  auto lookup = [&](const std::string& s) -> int32_t {
    if (s.empty()) return -1;
    for (size_t i = 0; i < t.vocab.size(); ++i) {
      if (t.vocab[i] == s) return static_cast<int32_t>(i);
    }
    throw Error(name + ": token '" + s + "' named in tokenizer_config.json is not in the vocab");
  };
  t.bos_id = config_bos;
  t.eos_id = config_eos;
  // A TemplateProcessing post-processor that starts with a special token adds BOS (Llama-3).
  if (j.contains("post_processor") && j["post_processor"].is_object()) {
    std::vector<json> pps;
    const json& pp = j["post_processor"];
    if (pp.value("type", "") == "Sequence" && pp.contains("processors") &&
        pp["processors"].is_array()) {
      for (const auto& p : pp["processors"]) pps.push_back(p);
    } else {
      pps.push_back(pp);
    }
    for (const json& p : pps) {
      if (!p.is_object() || p.value("type", "") != "TemplateProcessing") continue;
      if (p.contains("single") && p["single"].is_array() && !p["single"].empty()) {
        const json& first = p["single"][0];
        if (first.is_object() && first.contains("SpecialToken") &&
            first["SpecialToken"].is_object() && first["SpecialToken"].contains("id") &&
            first["SpecialToken"]["id"].is_string()) {
          t.add_bos = true;
          t.bos_id = lookup(first["SpecialToken"]["id"].get<std::string>());
        }
      }
    }
  }
  if (!tokenizer_config_json.empty()) {
    json c;
    try {
      c = json::parse(tokenizer_config_json);
    } catch (const json::exception& e) {
      throw Error(name + ": tokenizer_config.json: bad JSON: " + e.what());
    }
    if (c.is_object()) {
      if (const std::string b = token_text(c, "bos_token"); !b.empty()) t.bos_id = lookup(b);
      if (const std::string e = token_text(c, "eos_token"); !e.empty()) t.eos_id = lookup(e);
      if (c.contains("add_bos_token") && c["add_bos_token"].is_boolean()) {
        t.add_bos = c["add_bos_token"].get<bool>();
      }
      if (c.contains("chat_template")) {
        const json& ct = c["chat_template"];
        if (ct.is_string()) {
          t.chat_template = ct.get<std::string>();
        } else if (ct.is_array()) {
          for (const json& e : ct) {
            if (e.is_object() && e.value("name", "") == "default" && e.contains("template") &&
                e["template"].is_string()) {
              t.chat_template = e["template"].get<std::string>();
            }
          }
        }
      }
    }
  }
  const int64_t n = static_cast<int64_t>(t.vocab.size());
  if (t.bos_id < 0 || t.bos_id >= n) t.bos_id = -1;
  if (t.eos_id < 0 || t.eos_id >= n) t.eos_id = -1;
  if (t.add_bos && t.bos_id < 0) throw Error(name + ": add_bos without a BOS token");
  return t;
}

}  // namespace

TokenizerData parse_tokenizer_json(const std::string& tokenizer_json,
                                   const std::string& tokenizer_config_json,
                                   const std::string& name, int32_t config_bos,
                                   int32_t config_eos) {
  // Unexpected JSON types surface as nlohmann exceptions: report them as ours, with the file.
  try {
    return parse_impl(tokenizer_json, tokenizer_config_json, name, config_bos, config_eos);
  } catch (const json::exception& e) {
    throw Error(name + ": unexpected JSON structure: " + e.what());
  }
}

}  // namespace sharq::model
