// GGUF (v2/v3) container reader: header, metadata, tensor infos, data section; memory-mapped.
// Every count, size and offset is checked: hostile files give sharq::Error, never a crash.
// Not the name/metadata mapping to a LoadedModel (load.h) and not a writer (tools/fixture).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace sharq::model {

// Metadata value types (GGUF spec numbering).
enum class GgufType : uint32_t {
  u8 = 0,
  i8 = 1,
  u16 = 2,
  i16 = 3,
  u32 = 4,
  i32 = 5,
  f32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  u64 = 10,
  i64 = 11,
  f64 = 12,
};

// ggml tensor types (ggml numbering); only the ones we name are listed.
enum class GgmlType : uint32_t {
  f32 = 0,
  f16 = 1,
  q4_0 = 2,
  q4_1 = 3,
  q5_0 = 6,
  q5_1 = 7,
  q8_0 = 8,
  q8_1 = 9,
  q2_k = 10,
  q3_k = 11,
  q4_k = 12,
  q5_k = 13,
  q6_k = 14,
  q8_k = 15,
  bf16 = 30,
};

// Name of a ggml type ("Q4_K", "type 17" for unknown ones).
std::string ggml_type_name(uint32_t type);

// One metadata value. Scalars live in i/u/f/b, strings in s, arrays in items (elem = item type).
struct GgufValue {
  GgufType type = GgufType::u8;
  GgufType elem = GgufType::u8;  // arrays only
  int64_t i = 0;                 // signed integers (and unsigned ones that fit)
  uint64_t u = 0;                // unsigned integers (and non-negative signed ones)
  double f = 0.0;
  bool b = false;
  std::string s;
  std::vector<GgufValue> items;

  bool is_int() const;
  bool is_float() const;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> dims;  // ggml order: dims[0] is the fastest-varying (row length)
  uint32_t type = 0;           // GgmlType value (may be unsupported)
  uint64_t offset = 0;         // relative to the data section
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;  // 0 for types we cannot size (unknown types)
};

// A parsed GGUF file. The bytes stay owned (mmap or caller buffer) while this object lives.
class GgufFile {
 public:
  uint32_t version = 0;
  uint64_t alignment = 32;
  uint64_t data_offset = 0;  // absolute file offset of the data section
  std::map<std::string, GgufValue> metadata;
  std::vector<GgufTensorInfo> tensors;
  std::string source;  // file name for messages

  // Metadata accessors; throw sharq::Error naming the key when missing or of the wrong type.
  const GgufValue* find(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;  // accepts integer values too

  const GgufTensorInfo* find_tensor(const std::string& name) const;
  // The tensor's raw bytes inside the data section (bounds were checked at parse time).
  std::span<const uint8_t> tensor_bytes(const GgufTensorInfo& t) const;
  // Row-major float32 copy: shape = reversed dims. Throws on unsupported types.
  std::vector<float> dequantize(const GgufTensorInfo& t) const;

  std::span<const uint8_t> bytes() const { return bytes_; }

 private:
  friend GgufFile parse_gguf(std::span<const uint8_t>, const std::string&);
  friend GgufFile open_gguf(const std::string&);
  std::span<const uint8_t> bytes_;
  std::shared_ptr<const void> keep_alive_;  // the mapping, when opened from a path
};

// Parses a GGUF image held by the caller (the caller keeps `bytes` alive). `name` is for messages.
GgufFile parse_gguf(std::span<const uint8_t> bytes, const std::string& name);
// Memory-maps `path` and parses it; the mapping lives as long as the returned object.
GgufFile open_gguf(const std::string& path);

}  // namespace sharq::model
