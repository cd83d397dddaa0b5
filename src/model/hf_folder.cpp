// Hugging Face folder -> LoadedModel: config.json, model.safetensors or index + shards,
// tokenizer.json and tokenizer_config.json. Not the safetensors container parser (safetensors.cpp).
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <type_traits>

#include "json_numbers.h"
#include "sharq/error.h"
#include "sharq/model/load.h"
#include "sharq/model/safetensors.h"

namespace sharq::model {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string read_text(const fs::path& p, bool required) {
  std::ifstream in(p, std::ios::binary);
  if (!in) {
    if (required) throw Error(p.string() + ": cannot open");
    return "";
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

json parse_json(const std::string& text, const std::string& name) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw Error(name + ": bad JSON: " + e.what());
  }
}

// Typed field access with the file and key in the message; numbers through json_numbers.h.
template <typename T>
T get_or(const json& j, const char* key, T dflt, const std::string& name) {
  if (!j.contains(key) || j[key].is_null()) return dflt;
  const std::string what = name + ": key '" + key + "'";
  if constexpr (std::is_same_v<T, int64_t>) {
    return json_int64(j[key], what);
  } else if constexpr (std::is_same_v<T, float>) {
    return json_float(j[key], what);
  } else {
    try {
      return j[key].get<T>();
    } catch (const json::exception&) {
      throw Error(what + " has the wrong type");
    }
  }
}

int64_t get_int_req(const json& j, const char* key, const std::string& name) {
  if (!j.contains(key) || !j[key].is_number_integer()) {
    throw Error(name + ": missing or non-integer '" + key + "'");
  }
  return json_int64(j[key], name + ": key '" + key + "'");
}

}  // namespace

namespace {

ModelConfig parse_config_impl(const std::string& text, const std::string& name) {
  const json j = parse_json(text, name);
  if (!j.is_object()) throw Error(name + ": not a JSON object");
  ModelConfig c;
  std::string archname;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string()) {
    archname = j["architectures"][0].get<std::string>();
  }
  if (archname == "LlamaForCausalLM") {
    c.arch = "llama";
  } else if (archname == "Qwen2ForCausalLM") {
    c.arch = "qwen2";
  } else if (archname == "Qwen3ForCausalLM") {
    c.arch = "qwen3";
  } else {
    throw Error(name + ": unsupported architecture '" + archname +
                "' (supported: LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM = " +
                supported_architectures() + ")");
  }
  c.vocab_size = get_int_req(j, "vocab_size", name);
  c.hidden_size = get_int_req(j, "hidden_size", name);
  c.intermediate_size = get_int_req(j, "intermediate_size", name);
  c.num_layers = get_int_req(j, "num_hidden_layers", name);
  c.num_heads = get_int_req(j, "num_attention_heads", name);
  if (c.num_heads <= 0) throw Error(name + ": num_attention_heads must be positive");
  c.num_kv_heads = get_or<int64_t>(j, "num_key_value_heads", c.num_heads, name);
  c.head_dim = get_or<int64_t>(j, "head_dim", c.hidden_size / c.num_heads, name);
  c.max_position_embeddings = get_or<int64_t>(j, "max_position_embeddings", 0, name);
  c.rms_norm_eps = get_or<float>(j, "rms_norm_eps", 1e-6f, name);
  c.rope_theta = get_or<float>(j, "rope_theta", 10000.0f, name);
  c.tie_word_embeddings = get_or<bool>(j, "tie_word_embeddings", false, name);
  // Qwen2 always has q/k/v biases (its config has no attention_bias key).
  c.attention_bias = get_or<bool>(j, "attention_bias", c.arch == "qwen2", name);
  c.qk_norm = c.arch == "qwen3";
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    const json& r = j["rope_scaling"];
    if (!r.is_object()) throw Error(name + ": rope_scaling is not an object");
    std::string type = get_or<std::string>(r, "rope_type", "", name);
    if (type.empty()) type = get_or<std::string>(r, "type", "", name);
    if (type == "llama3") {
      c.rope_scaling.type = "llama3";
      c.rope_scaling.factor = get_or<float>(r, "factor", 8.0f, name);
      c.rope_scaling.low_freq_factor = get_or<float>(r, "low_freq_factor", 1.0f, name);
      c.rope_scaling.high_freq_factor = get_or<float>(r, "high_freq_factor", 4.0f, name);
      c.rope_scaling.original_max_position_embeddings =
          get_or<int64_t>(r, "original_max_position_embeddings", 8192, name);
      const RopeScaling& s = c.rope_scaling;
      if (!(s.factor >= 1.0f) || !(s.low_freq_factor > 0.0f) ||
          !(s.high_freq_factor > s.low_freq_factor) || s.original_max_position_embeddings <= 0) {
        throw Error(name +
                    ": llama3 rope_scaling needs factor >= 1, 0 < low < high and a "
                    "positive original_max_position_embeddings");
      }
    } else if (type != "default" && !type.empty()) {
      throw Error(name + ": rope_scaling type '" + type + "' is not supported (llama3)");
    }
  }
  return c;
}

}  // namespace

ModelConfig parse_hf_config(const std::string& text, const std::string& name) {
  try {
    return parse_config_impl(text, name);
  } catch (const json::exception& e) {
    throw Error(name + ": unexpected JSON structure: " + e.what());
  }
}

namespace {

LoadedModel load_hf_impl(const std::string& dir) {
  const fs::path d(dir);
  LoadedModel m;
  m.source = dir;
  const std::string cfg_name = (d / "config.json").string();
  const std::string cfg_text = read_text(d / "config.json", true);
  m.config = parse_hf_config(cfg_text, cfg_name);
  const json cfg = parse_json(cfg_text, cfg_name);

  // The set of safetensors files: one, or the shards an index names.
  std::vector<std::string> files;
  if (fs::exists(d / "model.safetensors")) {
    files.push_back("model.safetensors");
  } else if (fs::exists(d / "model.safetensors.index.json")) {
    const std::string iname = (d / "model.safetensors.index.json").string();
    const json idx = parse_json(read_text(iname, true), iname);
    if (!idx.is_object() || !idx.contains("weight_map") || !idx["weight_map"].is_object()) {
      throw Error(iname + ": no weight_map object");
    }
    std::set<std::string> shards;
    for (const auto& [tname, file] : idx["weight_map"].items()) {
      if (!file.is_string()) throw Error(iname + ": weight_map['" + tname + "'] not a string");
      const std::string fn = file.get<std::string>();
      // Shards must sit in the folder: a hostile index must not point elsewhere.
      if (fn.empty() || fn.find('/') != std::string::npos || fn == "." || fn == "..") {
        throw Error(iname + ": shard name '" + fn + "' is not a plain file name");
      }
      shards.insert(fn);
    }
    files.assign(shards.begin(), shards.end());
  } else {
    throw Error(dir + ": no model.safetensors or model.safetensors.index.json");
  }

  for (const std::string& fn : files) {
    const SafetensorsFile sf = open_safetensors((d / fn).string());
    for (const auto& t : sf.tensors) {
      if (t.name == "lm_head.weight" && m.config.tie_word_embeddings) continue;  // a tied copy
      if (m.tensors.count(t.name)) throw Error(sf.source + ": tensor '" + t.name + "' repeated");
      FloatTensor ft;
      ft.shape = t.shape;
      ft.data = sf.to_float(t);
      m.tensors.emplace(t.name, std::move(ft));
    }
  }

  const fs::path tj = d / "tokenizer.json";
  if (fs::exists(tj)) {
    // config.json's ids are the fallback; eos_token_id may be a list (first one wins).
    auto first_id = [&](const char* key) -> int32_t {
      if (!cfg.contains(key)) return -1;
      const json& v = cfg[key].is_array() && !cfg[key].empty() ? cfg[key][0] : cfg[key];
      if (!v.is_number_integer()) return -1;
      const int64_t id = json_int64(v, "config.json: " + std::string(key));
      if (id < -1 || id > std::numeric_limits<int32_t>::max())
        throw Error("config.json: " + std::string(key) + " = " + std::to_string(id) +
                    " is out of range");
      return static_cast<int32_t>(id);
    };
    const int32_t cb = first_id("bos_token_id");
    const int32_t ce = first_id("eos_token_id");
    m.tokenizer = parse_tokenizer_json(
        read_text(tj, true), read_text(d / "tokenizer_config.json", false), tj.string(), cb, ce);
  }
  check_model(m);
  return m;
}

}  // namespace

LoadedModel load_hf_folder(const std::string& dir) {
  try {
    return load_hf_impl(dir);
  } catch (const json::exception& e) {
    throw Error(dir + ": unexpected JSON structure: " + e.what());
  } catch (const fs::filesystem_error& e) {
    throw Error(dir + ": " + e.what());
  }
}

LoadedModel load_model(const std::string& path) {
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) throw Error(path + ": no such file or folder");
  if (fs::is_directory(st)) return load_hf_folder(path);
  return load_gguf(path);
}

}  // namespace sharq::model
