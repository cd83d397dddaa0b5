// .npy reader/writer: magic, version, little-endian header length, a Python-dict header with
// 'descr', 'fortran_order' and 'shape', then raw data. Everything is validated.
#include "sharq/npy.h"

#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <string_view>

#include "sharq/error.h"

namespace sharq {
namespace {

[[noreturn]] void fail(const std::string& name, const std::string& what) {
  throw Error("npy file '" + name + "': " + what);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

// Returns the raw text of the value for 'key' in the header dict (up to the matching delimiter).
std::string_view dict_value(std::string_view header, std::string_view key,
                            const std::string& name) {
  std::string quoted1(1, '\'');
  quoted1.append(key).push_back('\'');
  std::string quoted2(1, '"');
  quoted2.append(key).push_back('"');
  size_t pos = header.find(quoted1);
  size_t klen = quoted1.size();
  if (pos == std::string_view::npos) {
    pos = header.find(quoted2);
    klen = quoted2.size();
  }
  if (pos == std::string_view::npos) fail(name, "header has no '" + std::string(key) + "' entry");
  size_t p = pos + klen;
  while (p < header.size() && header[p] == ' ') ++p;
  if (p >= header.size() || header[p] != ':')
    fail(name, "malformed header near '" + std::string(key) + "'");
  ++p;
  while (p < header.size() && header[p] == ' ') ++p;
  if (p >= header.size()) fail(name, "malformed header: no value for '" + std::string(key) + "'");
  size_t end;
  if (header[p] == '(') {
    end = header.find(')', p);
    if (end == std::string_view::npos) fail(name, "malformed header: unterminated shape tuple");
    return header.substr(p, end - p + 1);
  }
  if (header[p] == '\'' || header[p] == '"') {
    end = header.find(header[p], p + 1);
    if (end == std::string_view::npos) fail(name, "malformed header: unterminated string");
    return header.substr(p, end - p + 1);
  }
  end = header.find_first_of(",}", p);
  if (end == std::string_view::npos) fail(name, "malformed header: unterminated value");
  return trim(header.substr(p, end - p));
}

std::vector<int64_t> parse_shape(std::string_view tuple, const std::string& name) {
  std::vector<int64_t> dims;
  std::string_view body = tuple.substr(1, tuple.size() - 2);
  while (true) {
    body = trim(body);
    if (body.empty()) break;
    size_t comma = body.find(',');
    std::string_view item = trim(body.substr(0, comma));
    if (item.empty()) fail(name, "malformed shape " + std::string(tuple));
    int64_t v = 0;
    for (char ch : item) {
      if (ch == 'L') break;  // Python 2 long suffix
      if (ch < '0' || ch > '9') fail(name, "malformed shape " + std::string(tuple));
      if (v > (std::numeric_limits<int64_t>::max() - 9) / 10)
        fail(name, "shape dimension overflows");
      v = v * 10 + (ch - '0');
    }
    dims.push_back(v);
    if (comma == std::string_view::npos) break;
    body = body.substr(comma + 1);
  }
  return dims;
}

}  // namespace

NpyMatrix parse_npy_f32(const uint8_t* bytes, size_t size, const std::string& name) {
  static const uint8_t kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (size < 10 || std::memcmp(bytes, kMagic, 6) != 0) fail(name, "not a .npy file (bad magic)");
  const uint8_t major = bytes[6];
  size_t header_len, offset;
  if (major == 1) {
    header_len = static_cast<size_t>(bytes[8]) | (static_cast<size_t>(bytes[9]) << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) fail(name, "truncated header");
    header_len = static_cast<size_t>(bytes[8]) | (static_cast<size_t>(bytes[9]) << 8) |
                 (static_cast<size_t>(bytes[10]) << 16) | (static_cast<size_t>(bytes[11]) << 24);
    offset = 12;
  } else {
    fail(name, "unsupported format version " + std::to_string(major));
  }
  if (header_len > size - offset)
    fail(name, "truncated header (needs " + std::to_string(header_len) + " bytes)");
  const std::string_view header(reinterpret_cast<const char*>(bytes + offset), header_len);
  const std::string_view descr = dict_value(header, "descr", name);
  if (descr != "'<f4'" && descr != "\"<f4\"") {
    fail(name, "dtype " + std::string(descr) +
                   " is not float32 ('<f4'); convert with .astype(np.float32)");
  }
  const std::string_view order = dict_value(header, "fortran_order", name);
  if (order != "False") fail(name, "Fortran-order arrays are not supported (need C order)");
  const std::string_view shape_text = dict_value(header, "shape", name);
  const std::vector<int64_t> dims = parse_shape(shape_text, name);
  if (dims.size() != 2) fail(name, "shape " + std::string(shape_text) + " is not 2-D (rows x K)");
  const int64_t rows = dims[0], cols = dims[1];
  if (cols != 0 && rows > std::numeric_limits<int64_t>::max() / 4 / cols)
    fail(name, "shape " + std::string(shape_text) + " overflows");
  const size_t data_off = offset + header_len;
  const uint64_t need = static_cast<uint64_t>(rows) * static_cast<uint64_t>(cols) * 4u;
  const uint64_t have = size - data_off;
  if (have < need) {
    fail(name, "truncated data: shape " + std::string(shape_text) + " needs " +
                   std::to_string(need) + " bytes at offset " + std::to_string(data_off) +
                   ", file has " + std::to_string(have));
  }
  if (have > need)
    fail(name, std::to_string(have - need) + " unexpected trailing bytes after the data");
  NpyMatrix m;
  m.rows = rows;
  m.cols = cols;
  m.data.resize(static_cast<size_t>(rows * cols));
  if (need) std::memcpy(m.data.data(), bytes + data_off, static_cast<size_t>(need));
  return m;
}

NpyMatrix read_npy_f32(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open npy file '" + path + "'");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  if (in.bad()) throw Error("error reading npy file '" + path + "'");
  return parse_npy_f32(bytes.data(), bytes.size(), path);
}

void write_npy_f32(const std::string& path, const float* data, int64_t rows, int64_t cols) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
                       std::to_string(rows) + ", " + std::to_string(cols) + "), }";
  // Pad so that magic(6) + version(2) + len(2) + header + '\n' is a multiple of 64.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::ofstream out(path, std::ios::binary);
  if (!out) throw Error("cannot create npy file '" + path + "'");
  const char magic[8] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0};
  out.write(magic, 8);
  const uint16_t len = static_cast<uint16_t>(header.size());
  const char len_bytes[2] = {static_cast<char>(len & 0xFF), static_cast<char>(len >> 8)};
  out.write(len_bytes, 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(rows * cols * 4));
  if (!out) throw Error("error writing npy file '" + path + "'");
}

}  // namespace sharq
