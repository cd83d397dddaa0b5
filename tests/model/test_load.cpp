// Loader tests on the tiny fixture models: both formats load to the ground truth (configs, tensors
// after the q/k un-permutation, tokenizers), and corrupt variants give sharq::Error, never a crash.
// Not a test of real checkpoints (test_default_model.cpp).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "sharq/error.h"
#include "sharq/model/gguf.h"
#include "sharq/model/load.h"
#include "sharq/tokenizer/tokenizer.h"
#include "tiny_models.h"

namespace fs = std::filesystem;
using namespace sharq;
using namespace sharq::model;
using sharq::fixture::TinyKind;

namespace {

fs::path temp_dir(const std::string& tag) {
  fs::path p = fs::temp_directory_path() / ("sharq_test_" + tag + "_" + std::to_string(::getpid()));
  fs::create_directories(p);
  return p;
}

void expect_same_model(const LoadedModel& a, const LoadedModel& b) {
  const ModelConfig &x = a.config, &y = b.config;
  EXPECT_EQ(x.arch, y.arch);
  EXPECT_EQ(x.vocab_size, y.vocab_size);
  EXPECT_EQ(x.hidden_size, y.hidden_size);
  EXPECT_EQ(x.intermediate_size, y.intermediate_size);
  EXPECT_EQ(x.num_layers, y.num_layers);
  EXPECT_EQ(x.num_heads, y.num_heads);
  EXPECT_EQ(x.num_kv_heads, y.num_kv_heads);
  EXPECT_EQ(x.head_dim, y.head_dim);
  EXPECT_EQ(x.max_position_embeddings, y.max_position_embeddings);
  EXPECT_FLOAT_EQ(x.rms_norm_eps, y.rms_norm_eps);
  EXPECT_FLOAT_EQ(x.rope_theta, y.rope_theta);
  EXPECT_EQ(x.rope_scaling.type, y.rope_scaling.type);
  EXPECT_NEAR(x.rope_scaling.factor, y.rope_scaling.factor, 1e-4);
  EXPECT_NEAR(x.rope_scaling.low_freq_factor, y.rope_scaling.low_freq_factor, 1e-3);
  EXPECT_NEAR(x.rope_scaling.high_freq_factor, y.rope_scaling.high_freq_factor, 1e-3);
  EXPECT_EQ(x.rope_scaling.original_max_position_embeddings,
            y.rope_scaling.original_max_position_embeddings);
  EXPECT_EQ(x.tie_word_embeddings, y.tie_word_embeddings);
  EXPECT_EQ(x.attention_bias, y.attention_bias);
  EXPECT_EQ(x.qk_norm, y.qk_norm);

  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [name, t] : a.tensors) {
    auto it = b.tensors.find(name);
    ASSERT_NE(it, b.tensors.end()) << name;
    EXPECT_EQ(t.shape, it->second.shape) << name;
    ASSERT_EQ(t.data.size(), it->second.data.size()) << name;
    // The fixture's values are exact in every stored type: equality, not closeness.
    size_t bad = 0;
    for (size_t i = 0; i < t.data.size(); ++i) bad += t.data[i] != it->second.data[i];
    EXPECT_EQ(bad, 0u) << name;
  }

  const TokenizerData &p = a.tokenizer, &q = b.tokenizer;
  EXPECT_EQ(p.pre_tokenizer, q.pre_tokenizer);
  EXPECT_EQ(p.vocab, q.vocab);
  EXPECT_EQ(p.merges, q.merges);
  EXPECT_EQ(p.special_ids, q.special_ids);
  EXPECT_EQ(p.bos_id, q.bos_id);
  EXPECT_EQ(p.eos_id, q.eos_id);
  EXPECT_EQ(p.add_bos, q.add_bos);
  EXPECT_EQ(p.ignore_merges, q.ignore_merges);
  EXPECT_EQ(p.normalizer, q.normalizer);
  EXPECT_EQ(p.chat_template, q.chat_template);
}

// Loading must succeed or throw sharq::Error; anything else (other exceptions, crashes) fails.
template <typename F>
bool loads_or_errors(F&& f, std::string* msg = nullptr) {
  try {
    f();
    return true;
  } catch (const sharq::Error& e) {
    if (msg) *msg = e.what();
    return false;
  }
}

class LoadTest : public ::testing::TestWithParam<TinyKind> {};

}  // namespace

TEST_P(LoadTest, GgufMatchesTruth) {
  const LoadedModel truth = fixture::make_tiny_model(GetParam());
  const auto bytes = fixture::gguf_bytes(truth);
  const fs::path dir = temp_dir("gguf");
  const std::string path = (dir / "m.gguf").string();
  fixture::write_file(path, bytes);
  const LoadedModel m = load_model(path);
  expect_same_model(truth, m);
  EXPECT_EQ(m.source, path);
  fs::remove_all(dir);
}

TEST_P(LoadTest, HfFolderMatchesTruth) {
  const LoadedModel truth = fixture::make_tiny_model(GetParam());
  const fs::path dir = temp_dir("hf");
  fixture::write_hf_folder(truth, dir.string());
  expect_same_model(truth, load_model(dir.string()));
  fs::remove_all(dir);
}

TEST_P(LoadTest, ShardedHfFolder) {
  const LoadedModel truth = fixture::make_tiny_model(GetParam());
  const fs::path dir = temp_dir("shard");
  fixture::write_hf_folder(truth, dir.string());
  fs::remove(dir / "model.safetensors");
  // Two shards: even- and odd-numbered tensors.
  LoadedModel s0 = truth, s1 = truth;
  s0.tensors.clear();
  s1.tensors.clear();
  nlohmann::json idx;
  int k = 0;
  for (const auto& [name, t] : truth.tensors) {
    (k % 2 ? s1 : s0).tensors[name] = t;
    idx["weight_map"][name] =
        k % 2 ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors";
    ++k;
  }
  fixture::write_file((dir / "model-00001-of-00002.safetensors").string(),
                      fixture::safetensors_bytes(s0));
  fixture::write_file((dir / "model-00002-of-00002.safetensors").string(),
                      fixture::safetensors_bytes(s1));
  fixture::write_file((dir / "model.safetensors.index.json").string(), idx.dump());
  expect_same_model(truth, load_model(dir.string()));

  idx["weight_map"]["model.norm.weight"] = "../evil.safetensors";
  fixture::write_file((dir / "model.safetensors.index.json").string(), idx.dump());
  EXPECT_THROW(load_model(dir.string()), sharq::Error);
  fs::remove_all(dir);
}

TEST_P(LoadTest, TokenizersAgreeAcrossFormats) {
#ifndef SHARQ_TEST_HAVE_PCRE2
  GTEST_SKIP() << "built without PCRE2";
#endif
  const LoadedModel truth = fixture::make_tiny_model(GetParam());
  const LoadedModel g = load_gguf_bytes(fixture::gguf_bytes(truth), "mem.gguf");
  const fs::path dir = temp_dir("tok");
  fixture::write_hf_folder(truth, dir.string());
  const LoadedModel h = load_model(dir.string());
  const Tokenizer tg(g.tokenizer), th(h.tokenizer);
  const std::string text =
      "<|im_start|>The theory of 1234567 things, there!\n\n  int main() { return 0; } café 日本";
  const bool bos = tg.add_bos_default();
  EXPECT_EQ(bos, th.add_bos_default());
  EXPECT_EQ(tg.encode(text, bos), th.encode(text, bos));
  EXPECT_EQ(tg.decode(tg.encode(text, false)), text);
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Tiny, LoadTest,
                         ::testing::Values(TinyKind::llama3, TinyKind::qwen2, TinyKind::qwen3),
                         [](const auto& info) {
                           return info.param == TinyKind::llama3  ? "llama3"
                                  : info.param == TinyKind::qwen2 ? "qwen2"
                                                                  : "qwen3";
                         });

TEST(LoadCorrupt, GgufTruncatedAnywhere) {
  const LoadedModel truth = fixture::make_tiny_model(TinyKind::llama3);
  const auto bytes = fixture::gguf_bytes(truth);
  const GgufFile full = parse_gguf(bytes, "full");
  uint64_t data_end = 0;
  for (const auto& t : full.tensors) {
    data_end = std::max(data_end, full.data_offset + t.offset + t.n_bytes);
  }
  // Every cut in the header, then a stride through the data.
  for (uint64_t cut = 0; cut < data_end; cut += (cut < full.data_offset ? 1 : 97)) {
    std::vector<uint8_t> b(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(cut));
    std::string msg;
    ASSERT_FALSE(loads_or_errors([&] { load_gguf_bytes(b, "cut.gguf"); }, &msg)) << cut;
    ASSERT_NE(msg.find("cut.gguf"), std::string::npos) << msg;
  }
}

TEST(LoadCorrupt, GgufBadFields) {
  const LoadedModel truth = fixture::make_tiny_model(TinyKind::qwen2);
  fixture::GgufLayout lay;
  const auto good = fixture::gguf_bytes(truth, &lay);
  auto patch32 = [&](uint64_t at, uint32_t v) {
    auto b = good;
    std::memcpy(b.data() + at, &v, 4);
    return b;
  };
  auto patch64 = [&](uint64_t at, uint64_t v) {
    auto b = good;
    std::memcpy(b.data() + at, &v, 8);
    return b;
  };
  auto expect_error = [&](const std::vector<uint8_t>& b, const std::string& needle) {
    std::string msg;
    EXPECT_FALSE(loads_or_errors([&] { load_gguf_bytes(b, "bad.gguf"); }, &msg)) << needle;
    EXPECT_NE(msg.find(needle), std::string::npos) << "message: " << msg;
  };
  expect_error(patch32(0, 0x12345678u), "bad magic");
  expect_error(patch32(4, 1), "unsupported version");
  expect_error(patch32(4, 0x03000000u), "big-endian");
  expect_error(patch64(8, ~uint64_t{0}), "tensor count");
  expect_error(patch64(8, 1u << 20), "tensor count");
  expect_error(patch64(16, uint64_t{1} << 40), "metadata count");
  expect_error(patch64(24, uint64_t{1} << 62), "string length");  // first key's length
  expect_error(patch32(lay.n_dims_at, 5), "n_dims");
  expect_error(patch32(lay.n_dims_at, 0xffffffffu), "n_dims");
  expect_error(patch64(lay.dims_at, uint64_t{1} << 63), "too large");
  expect_error(patch64(lay.dims_at, 0), "zero");
  expect_error(patch64(lay.dims_at + 8, uint64_t{1} << 40), "past the end");
  expect_error(patch64(lay.offset_at, uint64_t{1} << 60), "past the end");
  expect_error(patch64(lay.offset_at, good.size() - lay.data_offset), "past the end");
  expect_error(patch64(lay.offset_at, 3), "aligned");
  expect_error(patch32(lay.type_at, 17), "unsupported type");  // an IQ type
  expect_error(patch32(lay.type_at, 6), "Q5_0");
}

TEST(LoadCorrupt, GgufRandomMutations) {
  const LoadedModel truth = fixture::make_tiny_model(TinyKind::llama3);
  fixture::GgufLayout lay;
  const auto good = fixture::gguf_bytes(truth, &lay);
  std::mt19937_64 rng(7);
  int ok = 0;
  for (int iter = 0; iter < 300; ++iter) {
    auto b = good;
    const int n = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < n; ++k) {
      // Mostly the header, where the structure lives.
      const uint64_t at = rng() % (rng() % 4 ? lay.data_offset : b.size());
      b[at] = static_cast<uint8_t>(rng());
    }
    ok += loads_or_errors([&] { load_gguf_bytes(b, "mut.gguf"); });
  }
  RecordProperty("loaded_despite_mutation", ok);
}

TEST(LoadCorrupt, HfFolderVariants) {
  const LoadedModel truth = fixture::make_tiny_model(TinyKind::llama3);
  const fs::path dir = temp_dir("hfbad");
  auto fresh = [&] {
    fs::remove_all(dir);
    fixture::write_hf_folder(truth, dir.string());
  };
  auto expect_error = [&](const std::string& needle) {
    std::string msg;
    EXPECT_FALSE(loads_or_errors([&] { load_model(dir.string()); }, &msg)) << needle;
    EXPECT_NE(msg.find(needle), std::string::npos) << "message: " << msg;
  };
  const auto st = fixture::safetensors_bytes(truth);
  uint64_t hn;
  std::memcpy(&hn, st.data(), 8);
  const nlohmann::json header = nlohmann::json::parse(st.begin() + 8, st.begin() + 8 + hn);
  const std::vector<uint8_t> data(st.begin() + 8 + static_cast<ptrdiff_t>(hn), st.end());
  auto write_st = [&](const nlohmann::json& h, const std::vector<uint8_t>& d) {
    const std::string hs = h.dump();
    const uint64_t n = hs.size();
    std::string b(8, '\0');
    std::memcpy(b.data(), &n, 8);
    b += hs;
    b.append(d.begin(), d.end());
    fixture::write_file((dir / "model.safetensors").string(), b);
  };

  fresh();
  fixture::write_file((dir / "config.json").string(), "{\"architectures\": [\"Llama");
  expect_error("bad JSON");

  fresh();
  auto cfg = nlohmann::json::parse(fixture::config_json(truth));
  cfg["architectures"] = {"MistralForCausalLM"};
  fixture::write_file((dir / "config.json").string(), cfg.dump());
  expect_error("llama, qwen2, qwen3");

  fresh();
  cfg = nlohmann::json::parse(fixture::config_json(truth));
  cfg["num_hidden_layers"] = 3;
  fixture::write_file((dir / "config.json").string(), cfg.dump());
  expect_error("missing tensor 'model.layers.2.");

  fresh();
  cfg["num_hidden_layers"] = "two";
  fixture::write_file((dir / "config.json").string(), cfg.dump());
  expect_error("num_hidden_layers");

  const std::string first = header.begin().key() == "__metadata__" ? std::next(header.begin()).key()
                                                                   : header.begin().key();
  fresh();
  auto h = header;
  h[first]["dtype"] = "Q9_9";
  write_st(h, data);
  expect_error("unknown dtype");

  fresh();
  h = header;
  h[first]["dtype"] = "I32";
  write_st(h, data);
  expect_error(first);

  fresh();
  h = header;
  h[first]["data_offsets"] = {0, uint64_t{1} << 40};
  write_st(h, data);
  expect_error("outside");

  fresh();
  h = header;
  h[first]["shape"] = {3, 3};
  write_st(h, data);
  expect_error("needs");

  fresh();
  h = header;
  h[first]["shape"] = {-1, 64};
  write_st(h, data);
  expect_error("non-negative");

  fresh();
  h = header;
  h[first]["shape"] = {uint64_t{1} << 40, uint64_t{1} << 40};
  write_st(h, data);
  expect_error("too large");

  fresh();
  {
    std::vector<uint8_t> b(8);
    const uint64_t n = uint64_t{1} << 60;
    std::memcpy(b.data(), &n, 8);
    fixture::write_file((dir / "model.safetensors").string(), b);
  }
  expect_error("header length");

  fresh();
  fixture::write_file((dir / "model.safetensors").string(), std::string("{}"));
  expect_error("truncated");

  // Truncations of the safetensors file at a stride.
  for (size_t cut = 0; cut < st.size(); cut += 211) {
    fresh();
    fixture::write_file((dir / "model.safetensors").string(),
                        std::vector<uint8_t>(st.begin(), st.begin() + static_cast<ptrdiff_t>(cut)));
    EXPECT_FALSE(loads_or_errors([&] { load_model(dir.string()); })) << cut;
  }

  fresh();
  fixture::write_file((dir / "tokenizer.json").string(), "{\"model\": {\"type\": \"Unigram\"}}");
  expect_error("not BPE");

  fresh();
  fs::remove(dir / "model.safetensors");
  expect_error("no model.safetensors");

  fs::remove_all(dir);
  EXPECT_THROW(load_model(dir.string()), sharq::Error);
}

TEST(LoadCorrupt, UnsupportedGgufArchitecture) {
  LoadedModel truth = fixture::make_tiny_model(TinyKind::qwen2);
  auto b = fixture::gguf_bytes(truth);
  // "qwen2" appears first as general.architecture's value; make it "qwen9".
  const std::string needle = "qwen2";
  auto it = std::search(b.begin(), b.end(), needle.begin(), needle.end());
  ASSERT_NE(it, b.end());
  *(it + 4) = '9';
  std::string msg;
  EXPECT_FALSE(loads_or_errors([&] { load_gguf_bytes(b, "arch.gguf"); }, &msg));
  EXPECT_NE(msg.find("llama, qwen2, qwen3"), std::string::npos) << msg;
}

TEST(Permute, RoundTrip) {
  std::vector<float> x(8 * 3);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i);
  const auto p = permute_qk_rows(x, 8, 3, 2);
  // Head 0 (rows 0-3): HF rows 0,1 (first half) and 2,3 (second half) interleave -> 0,2,1,3.
  EXPECT_EQ(p[1 * 3], x[2 * 3]);
  EXPECT_EQ(p[2 * 3], x[1 * 3]);
  EXPECT_EQ(unpermute_qk_rows(p, 8, 3, 2), x);
  EXPECT_THROW(unpermute_qk_rows(x, 8, 3, 3), sharq::Error);
}

TEST(LoadCorrupt, GgufArrayBudget) {
  // A 5M-element u8 array: within the file, but past the per-file element cap.
  std::vector<uint8_t> b;
  auto put = [&](const void* p, size_t n) {
    b.insert(b.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
  };
  const uint32_t magic = 0x46554747u, version = 3, arr = 9, u8 = 0;
  const uint64_t n_tensors = 0, n_kv = 1, key_len = 1, count = 5u << 20;
  put(&magic, 4);
  put(&version, 4);
  put(&n_tensors, 8);
  put(&n_kv, 8);
  put(&key_len, 8);
  b.push_back('x');
  put(&arr, 4);
  put(&u8, 4);
  put(&count, 8);
  b.resize(b.size() + count, 1);
  std::string msg;
  EXPECT_FALSE(loads_or_errors([&] { parse_gguf(b, "arr.gguf"); }, &msg));
  EXPECT_NE(msg.find("array elements"), std::string::npos) << msg;
}

// Numbers no target type holds (found by fuzz_tokenizer: a 60-digit head_dim, which JSON parses
// as a double and nlohmann then cast to int64 unchecked) are errors naming the key; an integral
// float is accepted as the integer it is.
TEST(LoadCorrupt, JsonNumbersOutOfRange) {
  auto config = [](const std::string& extra) {
    return R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 8, "hidden_size": 8,
               "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, )" +
           extra + "}";
  };
  for (const char* bad :
       {R"("head_dim": 326666666666666666666666666666666666666666666666666666666)",
        R"("head_dim": 1e30)", R"("head_dim": -1e300)", R"("head_dim": 4.5)",
        R"("head_dim": 18446744073709551615)", R"("max_position_embeddings": 9223372036854775808)",
        R"("rms_norm_eps": 1e300)", R"("rope_theta": -1e39)"}) {
    std::string msg;
    EXPECT_FALSE(loads_or_errors([&] { parse_hf_config(config(bad), "c.json"); }, &msg)) << bad;
    EXPECT_NE(msg.find("c.json: key '"), std::string::npos) << msg;
  }
  EXPECT_EQ(parse_hf_config(config(R"("head_dim": 4.0)"), "c.json").head_dim, 4);
  EXPECT_EQ(parse_hf_config(config(R"("rope_theta": 500000)"), "c.json").rope_theta, 500000.0f);
  for (const char* id : {"18446744073709551615", "9223372036854775807", "-3"}) {
    const std::string tj = std::string(R"({"model": {"type": "BPE", "vocab": {"a": )") + id +
                           R"(}}, "pre_tokenizer": {"type": "ByteLevel"}})";
    EXPECT_THROW(parse_tokenizer_json(tj, "", "t.json"), sharq::Error) << id;
  }
}

TEST(LoadCorrupt, JsonOfTheWrongTypes) {
  // Wrong JSON types must come back as sharq::Error, not nlohmann exceptions.
  for (const char* tj : {R"({"model": {"type": 5}})", R"({"model": {"vocab": []}})",
                         R"({"model": {"vocab": {}}, "pre_tokenizer": {"type": 7}})", "[1, 2]",
                         R"({"model": {"vocab": {"a": 0}, "merges": [1]},
                             "pre_tokenizer": {"type": "ByteLevel"}})"}) {
    EXPECT_THROW(parse_tokenizer_json(tj, "", "t.json"), sharq::Error) << tj;
  }
  for (const char* cj : {R"({"architectures": "LlamaForCausalLM"})",
                         R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 1.5})",
                         R"({"architectures": ["Qwen2ForCausalLM"], "vocab_size": 8,
                             "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1,
                             "num_attention_heads": 2, "rope_scaling": {"rope_type": 3}})"}) {
    EXPECT_THROW(parse_hf_config(cj, "c.json"), sharq::Error) << cj;
  }
  EXPECT_THROW(parse_tokenizer_json(
                   R"({"model": {"vocab": {"a": 0}}, "pre_tokenizer": {"type": "ByteLevel"}})",
                   R"({"bos_token": "zz"})", "t.json"),
               sharq::Error);
}
