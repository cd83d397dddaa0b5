// NumPy .npy reading and writing for 2-D float32 matrices (format versions 1.0, 2.0, 3.0).
// Files are hostile input: every header field and size is checked. Not a general array library.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sharq {

struct NpyMatrix {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<float> data;  // (rows, cols) row-major
};

// Throws sharq::Error naming the file and the problem (bad magic, truncated header or data,
// dtype other than little-endian float32, Fortran order, not 2-D, sizes that overflow).
NpyMatrix read_npy_f32(const std::string& path);
// Parses an in-memory .npy image (the fuzzers' and tests' entry point); `name` is for errors.
NpyMatrix parse_npy_f32(const uint8_t* bytes, size_t size, const std::string& name);
// Writes a C-order float32 .npy (version 1.0). Throws sharq::Error on I/O failure.
void write_npy_f32(const std::string& path, const float* data, int64_t rows, int64_t cols);

}  // namespace sharq
