// GGUF v2/v3 parser: a bounds-checked cursor over the mapped bytes; every count is capped by the
// bytes left so a hostile header can neither overrun the buffer nor make us allocate much.
// Not the mapping of GGUF names to canonical ones (gguf_model.cpp).
#include "sharq/model/gguf.h"

#include <bit>
#include <cstring>
#include <limits>
#include <set>

#include "mapped_file.h"
#include "sharq/error.h"
#include "sharq/model/ggml_quants.h"

namespace sharq::model {

namespace {

constexpr uint32_t kMaxDims = 4;   // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 3;  // nested arrays: real files use depth 1
constexpr uint64_t kMaxAlignment = 1u << 24;
// Metadata array elements per file. Real files hold a few hundred thousand (tokens, merges,
// token types); the cap keeps a hostile file from costing ~100 bytes of GgufValue per byte.
constexpr uint64_t kMaxArrayElements = uint64_t{1} << 22;

class Cursor {
 public:
  Cursor(std::span<const uint8_t> b, const std::string& name) : b_(b), name_(name) {}

  [[noreturn]] void fail(const std::string& what, uint64_t at) const {
    throw Error(name_ + ": GGUF: " + what + " (offset " + std::to_string(at) + ", file size " +
                std::to_string(b_.size()) + ")");
  }
  [[noreturn]] void fail(const std::string& what) const { fail(what, pos_); }

  uint64_t pos() const { return pos_; }
  uint64_t array_budget = kMaxArrayElements;
  uint64_t left() const { return b_.size() - pos_; }

  void need(uint64_t n, const char* what) const {
    if (n > left()) {
      fail(std::string("truncated while reading ") + what + ": need " + std::to_string(n) +
           " bytes, " + std::to_string(left()) + " left");
    }
  }
  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const char* what) {
    const uint64_t at = pos_;
    const uint64_t len = read<uint64_t>(what);
    if (len > left()) {
      fail(std::string(what) + ": string length " + std::to_string(len) + " exceeds the " +
               std::to_string(left()) + " bytes left",
           at);
    }
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), static_cast<size_t>(len));
    pos_ += len;
    return s;
  }

 private:
  std::span<const uint8_t> b_;
  const std::string& name_;
  uint64_t pos_ = 0;
};

// Fewest bytes a value of this type can occupy; caps array counts by the bytes left.
uint64_t min_value_bytes(GgufType t) {
  switch (t) {
    case GgufType::u8:
    case GgufType::i8:
    case GgufType::boolean:
      return 1;
    case GgufType::u16:
    case GgufType::i16:
      return 2;
    case GgufType::u32:
    case GgufType::i32:
    case GgufType::f32:
      return 4;
    case GgufType::u64:
    case GgufType::i64:
    case GgufType::f64:
    case GgufType::string:
      return 8;
    case GgufType::array:
      return 12;
  }
  return 1;
}

bool valid_type(uint32_t t) {
  return t <= 12;
}

void set_signed(GgufValue& v, int64_t x) {
  v.i = x;
  v.u = x >= 0 ? static_cast<uint64_t>(x) : 0;
}
void set_unsigned(GgufValue& v, uint64_t x) {
  v.u = x;
  v.i =
      x <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ? static_cast<int64_t>(x) : 0;
}

GgufValue read_value(Cursor& c, GgufType type, const std::string& key, int depth) {
  GgufValue v;
  v.type = type;
  switch (type) {
    case GgufType::u8:
      set_unsigned(v, c.read<uint8_t>(key.c_str()));
      break;
    case GgufType::i8:
      set_signed(v, c.read<int8_t>(key.c_str()));
      break;
    case GgufType::u16:
      set_unsigned(v, c.read<uint16_t>(key.c_str()));
      break;
    case GgufType::i16:
      set_signed(v, c.read<int16_t>(key.c_str()));
      break;
    case GgufType::u32:
      set_unsigned(v, c.read<uint32_t>(key.c_str()));
      break;
    case GgufType::i32:
      set_signed(v, c.read<int32_t>(key.c_str()));
      break;
    case GgufType::u64:
      set_unsigned(v, c.read<uint64_t>(key.c_str()));
      break;
    case GgufType::i64:
      set_signed(v, c.read<int64_t>(key.c_str()));
      break;
    case GgufType::f32:
      v.f = c.read<float>(key.c_str());
      break;
    case GgufType::f64:
      v.f = c.read<double>(key.c_str());
      break;
    case GgufType::boolean: {
      const uint64_t at = c.pos();
      const uint8_t b = c.read<uint8_t>(key.c_str());
      if (b > 1) c.fail("key '" + key + "': bool value " + std::to_string(b), at);
      v.b = b != 0;
      break;
    }
    case GgufType::string:
      v.s = c.read_string(key.c_str());
      break;
    case GgufType::array: {
      const uint64_t at = c.pos();
      if (depth >= kMaxArrayDepth) c.fail("key '" + key + "': arrays nested too deeply", at);
      const uint32_t et = c.read<uint32_t>(key.c_str());
      if (!valid_type(et)) {
        c.fail("key '" + key + "': unknown array element type " + std::to_string(et), at);
      }
      v.elem = static_cast<GgufType>(et);
      const uint64_t n = c.read<uint64_t>(key.c_str());
      if (n > c.left() / min_value_bytes(v.elem)) {
        c.fail("key '" + key + "': array count " + std::to_string(n) + " cannot fit in the " +
                   std::to_string(c.left()) + " bytes left",
               at);
      }
      if (n > c.array_budget) {
        c.fail("key '" + key + "': more than " + std::to_string(kMaxArrayElements) +
                   " metadata array elements in the file",
               at);
      }
      c.array_budget -= n;
      v.items.reserve(static_cast<size_t>(n));
      for (uint64_t i = 0; i < n; ++i) v.items.push_back(read_value(c, v.elem, key, depth + 1));
      break;
    }
  }
  return v;
}

uint64_t align_up(uint64_t x, uint64_t a, const Cursor& c) {
  const uint64_t r = x % a;
  if (r == 0) return x;
  if (x > std::numeric_limits<uint64_t>::max() - (a - r)) c.fail("offset overflow while aligning");
  return x + (a - r);
}

}  // namespace

bool GgufValue::is_int() const {
  switch (type) {
    case GgufType::u8:
    case GgufType::i8:
    case GgufType::u16:
    case GgufType::i16:
    case GgufType::u32:
    case GgufType::i32:
    case GgufType::u64:
    case GgufType::i64:
      return true;
    default:
      return false;
  }
}

bool GgufValue::is_float() const {
  return type == GgufType::f32 || type == GgufType::f64;
}

GgufFile parse_gguf(std::span<const uint8_t> bytes, const std::string& name) {
  GgufFile f;
  f.source = name;
  f.bytes_ = bytes;
  Cursor c(bytes, name);

  const uint32_t magic = c.read<uint32_t>("magic");
  if (magic != 0x46554747u) c.fail("bad magic (not a GGUF file)", 0);
  f.version = c.read<uint32_t>("version");
  if (f.version != 2 && f.version != 3) {
    c.fail("unsupported version " + std::to_string(f.version) +
               (f.version > 0xffff ? " (big-endian file?)" : " (supported: 2, 3)"),
           4);
  }
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  // A key-value pair takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor info at least
  // 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset).
  if (n_kv > c.left() / 13) {
    c.fail("metadata count " + std::to_string(n_kv) + " cannot fit in the file", 16);
  }
  if (n_tensors > c.left() / 24) {
    c.fail("tensor count " + std::to_string(n_tensors) + " cannot fit in the file", 8);
  }

  for (uint64_t k = 0; k < n_kv; ++k) {
    const uint64_t at = c.pos();
    std::string key = c.read_string("metadata key");
    const uint32_t t = c.read<uint32_t>("metadata type");
    if (!valid_type(t)) c.fail("key '" + key + "': unknown value type " + std::to_string(t), at);
    GgufValue v = read_value(c, static_cast<GgufType>(t), key, 0);
    if (!f.metadata.emplace(key, std::move(v)).second) c.fail("duplicate key '" + key + "'", at);
  }

  if (const GgufValue* a = f.find("general.alignment")) {
    if (!a->is_int() || a->u == 0 || a->u > kMaxAlignment || !std::has_single_bit(a->u)) {
      c.fail("general.alignment must be a power of two <= " + std::to_string(kMaxAlignment));
    }
    f.alignment = a->u;
  }

  std::set<std::string> names;
  f.tensors.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    const uint64_t at = c.pos();
    GgufTensorInfo t;
    t.name = c.read_string("tensor name");
    const std::string who = "tensor '" + t.name + "'";
    const uint32_t nd = c.read<uint32_t>("n_dims");
    if (nd == 0 || nd > kMaxDims) c.fail(who + ": n_dims " + std::to_string(nd), at);
    uint64_t n = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      const uint64_t dim = c.read<uint64_t>("tensor dim");
      if (dim == 0 || dim > (uint64_t{1} << 40) || n > (uint64_t{1} << 48) / dim) {
        c.fail(who + ": dimension " + std::to_string(d) + " = " + std::to_string(dim) +
                   " is zero or too large",
               at);
      }
      n *= dim;
      t.dims.push_back(dim);
    }
    t.n_elements = n;
    t.type = c.read<uint32_t>("tensor type");
    t.offset = c.read<uint64_t>("tensor offset");
    if (const GgmlTypeTraits* tr = ggml_traits(t.type)) {
      if (t.dims[0] % tr->block_size != 0) {
        c.fail(who + ": row length " + std::to_string(t.dims[0]) + " is not a multiple of the " +
                   tr->name + " block size " + std::to_string(tr->block_size),
               at);
      }
      t.n_bytes = n / tr->block_size * tr->block_bytes;
    }
    if (t.offset % f.alignment != 0) {
      c.fail(who + ": data offset " + std::to_string(t.offset) + " is not aligned to " +
                 std::to_string(f.alignment),
             at);
    }
    if (!names.insert(t.name).second) c.fail("duplicate " + who, at);
    f.tensors.push_back(std::move(t));
  }

  f.data_offset = align_up(c.pos(), f.alignment, c);
  if (f.data_offset > bytes.size()) {
    if (!f.tensors.empty()) {
      c.fail("data section starts at " + std::to_string(f.data_offset) + ", past the end");
    }
    f.data_offset = bytes.size();
  }
  const uint64_t data_size = bytes.size() - f.data_offset;
  for (const auto& t : f.tensors) {
    if (t.offset > data_size || t.n_bytes > data_size - t.offset) {
      c.fail("tensor '" + t.name + "': data [" + std::to_string(t.offset) + ", +" +
                 std::to_string(t.n_bytes) + ") relative to the data section at " +
                 std::to_string(f.data_offset) + " runs past the end",
             f.data_offset);
    }
  }
  return f;
}

GgufFile open_gguf(const std::string& path) {
  auto mf = std::make_shared<MappedFile>(path);
  GgufFile f = parse_gguf(mf->bytes(), path);
  f.keep_alive_ = mf;
  return f;
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = metadata.find(key);
  return it == metadata.end() ? nullptr : &it->second;
}

std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) throw Error(source + ": GGUF: missing metadata key '" + key + "'");
  if (v->type != GgufType::string) throw Error(source + ": GGUF: key '" + key + "' not a string");
  return v->s;
}

int64_t GgufFile::get_int(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) throw Error(source + ": GGUF: missing metadata key '" + key + "'");
  if (!v->is_int()) throw Error(source + ": GGUF: key '" + key + "' is not an integer");
  if (v->u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    throw Error(source + ": GGUF: key '" + key + "' value out of range");
  }
  return v->i;
}

double GgufFile::get_float(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) throw Error(source + ": GGUF: missing metadata key '" + key + "'");
  if (v->is_float()) return v->f;
  if (v->is_int()) return static_cast<double>(v->i);
  throw Error(source + ": GGUF: key '" + key + "' is not a number");
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  for (const auto& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

std::span<const uint8_t> GgufFile::tensor_bytes(const GgufTensorInfo& t) const {
  return bytes_.subspan(static_cast<size_t>(data_offset + t.offset),
                        static_cast<size_t>(t.n_bytes));
}

std::vector<float> GgufFile::dequantize(const GgufTensorInfo& t) const {
  if (!ggml_traits(t.type)) {
    throw Error(source + ": GGUF: tensor '" + t.name + "' has unsupported type " +
                ggml_type_name(t.type) + " (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, " +
                "Q5_K, Q6_K)");
  }
  std::vector<float> out(static_cast<size_t>(t.n_elements));
  try {
    ggml_dequantize(t.type, tensor_bytes(t), out.data(), t.n_elements);
  } catch (const Error& e) {
    throw Error(source + ": GGUF: tensor '" + t.name + "': " + e.what());
  }
  return out;
}

}  // namespace sharq::model
