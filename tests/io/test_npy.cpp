// .npy reader on valid files (v1, v2 headers) and on hostile ones: every truncation point,
// wrong dtype, Fortran order, wrong rank, bad magic, trailing bytes, overflowing shapes.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "sharq/error.h"
#include "sharq/npy.h"

namespace sharq {
namespace {

std::vector<uint8_t> make_npy(const std::string& dict, size_t data_bytes, int major = 1) {
  std::string header = dict;
  const size_t pre = major == 1 ? 10 : 12;
  header.append((64 - (pre + header.size() + 1) % 64) % 64, ' ');
  header.push_back('\n');
  std::vector<uint8_t> b = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<uint8_t>(major), 0};
  const size_t len = header.size();
  b.push_back(static_cast<uint8_t>(len & 0xFF));
  b.push_back(static_cast<uint8_t>(len >> 8));
  if (major != 1) {
    b.push_back(0);
    b.push_back(0);
  }
  b.insert(b.end(), header.begin(), header.end());
  for (size_t i = 0; i < data_bytes; ++i) b.push_back(static_cast<uint8_t>(i));
  return b;
}

const std::string kGood = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 64), }";

TEST(Npy, WriteThenReadRoundTrips) {
  std::vector<float> x(3 * 64);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i) * 0.5f - 7.0f;
  const std::string path = ::testing::TempDir() + "/rt.npy";
  write_npy_f32(path, x.data(), 3, 64);
  const NpyMatrix m = read_npy_f32(path);
  EXPECT_EQ(m.rows, 3);
  EXPECT_EQ(m.cols, 64);
  EXPECT_EQ(m.data, x);
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ((bytes.size() - 3 * 64 * 4) % 64, 0u);  // header padded to 64 bytes
}

TEST(Npy, AcceptsVersion2) {
  const auto b = make_npy(kGood, 2 * 64 * 4, 2);
  const NpyMatrix m = parse_npy_f32(b.data(), b.size(), "v2");
  EXPECT_EQ(m.rows, 2);
}

TEST(Npy, EveryTruncationIsAnError) {
  const auto b = make_npy(kGood, 2 * 64 * 4);
  for (size_t n = 0; n < b.size(); ++n) {
    EXPECT_THROW(parse_npy_f32(b.data(), n, "t.npy"), Error) << "truncated at " << n;
  }
}

void expect_error_mentioning(const std::vector<uint8_t>& b, const std::string& needle) {
  try {
    parse_npy_f32(b.data(), b.size(), "bad.npy");
    FAIL() << "accepted; expected an error about " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("bad.npy"), std::string::npos) << e.what();
  }
}

TEST(Npy, RejectsHostileHeaders) {
  expect_error_mentioning(
      make_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 64), }", 2 * 64 * 8),
      "float32");
  expect_error_mentioning(
      make_npy("{'descr': '<f2', 'fortran_order': False, 'shape': (2, 64), }", 2 * 64 * 2),
      "float32");
  expect_error_mentioning(
      make_npy("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 64), }", 2 * 64 * 4),
      "float32");
  expect_error_mentioning(
      make_npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 64), }", 2 * 64 * 4),
      "Fortran");
  expect_error_mentioning(
      make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (128,), }", 128 * 4), "2-D");
  expect_error_mentioning(
      make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 32), }", 128 * 4), "2-D");
  expect_error_mentioning(
      make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999), }",
               16),
      "overflow");
  expect_error_mentioning(
      make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 64), }", 2 * 64 * 4 + 3),
      "trailing");
  expect_error_mentioning(
      make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }", 0), "shape");
  expect_error_mentioning(make_npy("{'fortran_order': False, 'shape': (2, 64), }", 2 * 64 * 4),
                          "descr");
  auto b = make_npy(kGood, 2 * 64 * 4);
  b[1] = 'X';
  expect_error_mentioning(b, "magic");
  b = make_npy(kGood, 2 * 64 * 4);
  b[6] = 9;
  expect_error_mentioning(b, "version");
}

TEST(Npy, MissingFileIsAnError) {
  EXPECT_THROW(read_npy_f32("/nonexistent/x.npy"), Error);
}

}  // namespace
}  // namespace sharq
