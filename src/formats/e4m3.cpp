// E4M3 decode table (SPEC section 2). Encoding is inline in codecs.h.
#include <array>

#include "sharq/codecs.h"

namespace sharq {
namespace {

std::array<float, 256> make_e4m3_table() {
  std::array<float, 256> t{};
  for (int c = 0; c < 256; ++c) {
    const int e = (c >> 3) & 0xF;
    const int m = c & 0x7;
    float v;
    if (e == 0xF && m == 0x7) {
      v = std::nanf("");
    } else if (e == 0) {
      v = std::ldexp(static_cast<float>(m), -9);
    } else {
      v = std::ldexp(1.0f + static_cast<float>(m) / 8.0f, e - 7);
    }
    t[static_cast<size_t>(c)] = (c & 0x80) ? -v : v;
  }
  return t;
}

const std::array<float, 256> kE4M3Table = make_e4m3_table();

}  // namespace

float e4m3_decode(uint8_t code) {
  return kE4M3Table[code];
}

}  // namespace sharq
