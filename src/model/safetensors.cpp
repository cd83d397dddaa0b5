// safetensors parsing: header size capped and checked, every tensor's byte range checked against
// the data section and against dtype size x element count. Not the HF folder logic (hf_folder.cpp).
#include "sharq/model/safetensors.h"

#include <cstring>
#include <nlohmann/json.hpp>

#include "mapped_file.h"
#include "sharq/error.h"
#include "sharq/model/ggml_quants.h"

namespace sharq::model {

namespace {

constexpr uint64_t kMaxHeader = uint64_t{100} << 20;  // the reference implementation's cap

uint64_t dtype_bytes(const std::string& d) {
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  return 0;
}

}  // namespace

namespace {

SafetensorsFile parse_impl(std::span<const uint8_t> bytes, const std::string& name) {
  auto fail = [&](const std::string& what) -> Error {
    return Error(name + ": safetensors: " + what + " (file size " + std::to_string(bytes.size()) +
                 ")");
  };
  SafetensorsFile f;
  f.source = name;
  if (bytes.size() < 8) throw fail("truncated: no 8-byte header length");
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  if (n > kMaxHeader || n > bytes.size() - 8) {
    throw fail("header length " + std::to_string(n) + " exceeds the file or the 100 MiB cap");
  }
  f.data_offset = 8 + n;
  const uint64_t data_size = bytes.size() - f.data_offset;
  nlohmann::json h;
  try {
    h = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + static_cast<ptrdiff_t>(8 + n));
  } catch (const nlohmann::json::exception& e) {
    throw fail(std::string("bad header JSON: ") + e.what());
  }
  if (!h.is_object()) throw fail("header is not a JSON object");
  for (const auto& [key, v] : h.items()) {
    if (key == "__metadata__") continue;
    const std::string who = "tensor '" + key + "'";
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
        !v.contains("data_offsets")) {
      throw fail(who + ": needs dtype, shape and data_offsets");
    }
    const auto& jd = v["dtype"];
    const auto& js = v["shape"];
    const auto& jo = v["data_offsets"];
    if (!jd.is_string() || !js.is_array() || !jo.is_array() || jo.size() != 2 ||
        !jo[0].is_number_unsigned() || !jo[1].is_number_unsigned()) {
      throw fail(who + ": malformed dtype/shape/data_offsets");
    }
    SafetensorsTensor t;
    t.name = key;
    t.dtype = jd.get<std::string>();
    const uint64_t eb = dtype_bytes(t.dtype);
    if (eb == 0) throw fail(who + ": unknown dtype '" + t.dtype + "'");
    if (js.size() > 8) throw fail(who + ": " + std::to_string(js.size()) + " dimensions");
    uint64_t count = 1;
    for (const auto& d : js) {
      if (!d.is_number_unsigned())
        throw fail(who + ": shape entries must be non-negative integers");
      const uint64_t dim = d.get<uint64_t>();
      if (dim != 0 && count > (uint64_t{1} << 48) / dim) throw fail(who + ": shape too large");
      count *= dim;
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    t.n_elements = count;
    t.begin = jo[0].get<uint64_t>();
    t.end = jo[1].get<uint64_t>();
    if (t.begin > t.end || t.end > data_size) {
      throw fail(who + ": data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                 ") outside the " + std::to_string(data_size) + "-byte data section at " +
                 std::to_string(f.data_offset));
    }
    if (t.end - t.begin != count * eb) {
      throw fail(who + ": " + std::to_string(t.end - t.begin) + " bytes at offset " +
                 std::to_string(f.data_offset + t.begin) + " but dtype " + t.dtype + " x " +
                 std::to_string(count) + " elements needs " + std::to_string(count * eb));
    }
    f.tensors.push_back(std::move(t));
  }
  return f;
}

}  // namespace

SafetensorsFile parse_safetensors(std::span<const uint8_t> bytes, const std::string& name) {
  try {
    SafetensorsFile f = parse_impl(bytes, name);
    f.bytes_ = bytes;
    return f;
  } catch (const nlohmann::json::exception& e) {
    throw Error(name + ": safetensors: unexpected header structure: " + e.what());
  }
}

SafetensorsFile open_safetensors(const std::string& path) {
  auto mf = std::make_shared<MappedFile>(path);
  SafetensorsFile f = parse_safetensors(mf->bytes(), path);
  f.keep_alive_ = mf;
  return f;
}

const SafetensorsTensor* SafetensorsFile::find(const std::string& n) const {
  for (const auto& t : tensors) {
    if (t.name == n) return &t;
  }
  return nullptr;
}

std::vector<float> SafetensorsFile::to_float(const SafetensorsTensor& t) const {
  uint32_t type;
  if (t.dtype == "F32") {
    type = 0;
  } else if (t.dtype == "F16") {
    type = 1;
  } else if (t.dtype == "BF16") {
    type = 30;
  } else {
    throw Error(source + ": safetensors: tensor '" + t.name + "' has dtype " + t.dtype +
                " (supported: F32, F16, BF16)");
  }
  std::vector<float> out(static_cast<size_t>(t.n_elements));
  const auto src = bytes_.subspan(static_cast<size_t>(data_offset + t.begin),
                                  static_cast<size_t>(t.end - t.begin));
  ggml_dequantize(type, src, out.data(), t.n_elements);
  return out;
}

}  // namespace sharq::model
