// safetensors reader: 8-byte header length, JSON header, raw little-endian tensor data; checked
// against the file size and dtype x shape. Not a writer (tools/fixture) and not HF config parsing.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace sharq::model {

struct SafetensorsTensor {
  std::string name;
  std::string dtype;            // "F32", "F16", "BF16" (others are rejected when read)
  std::vector<int64_t> shape;   // row-major
  uint64_t begin = 0, end = 0;  // byte range relative to the data section
  uint64_t n_elements = 0;
};

class SafetensorsFile {
 public:
  std::string source;
  uint64_t data_offset = 0;  // 8 + header length
  std::vector<SafetensorsTensor> tensors;

  const SafetensorsTensor* find(const std::string& name) const;
  // Row-major float32 copy of an F32/F16/BF16 tensor; other dtypes throw naming the tensor.
  std::vector<float> to_float(const SafetensorsTensor& t) const;

 private:
  friend SafetensorsFile parse_safetensors(std::span<const uint8_t>, const std::string&);
  friend SafetensorsFile open_safetensors(const std::string&);
  std::span<const uint8_t> bytes_;
  std::shared_ptr<const void> keep_alive_;
};

// Parses an image held by the caller (kept alive by the caller). `name` is for messages.
SafetensorsFile parse_safetensors(std::span<const uint8_t> bytes, const std::string& name);
// Memory-maps `path` and parses it.
SafetensorsFile open_safetensors(const std::string& path);

}  // namespace sharq::model
