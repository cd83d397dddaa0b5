// The CUDA backend's profiling knob (include/sharq/cuda/profile_skip.h): SHARQ_CUDA_PROFILE_SKIP's
// op list parses to the right mask, and an unknown op is an error that names it and the known
// ones.
#include <gtest/gtest.h>

#include <string>

#include "sharq/cuda/profile_skip.h"
#include "sharq/error.h"

namespace sharq::cuda::profile_skip {
namespace {

TEST(ProfileSkip, ParsesOpLists) {
  EXPECT_EQ(parse(nullptr), 0u);
  EXPECT_EQ(parse(""), 0u);
  EXPECT_EQ(parse("rope"), uint32_t{kRope});
  EXPECT_EQ(parse("o,down"), uint32_t{kO | kDown});
  EXPECT_EQ(parse("qkv,,gateup,"), uint32_t{kQkv | kGateUp});
  uint32_t all = 0;
  std::string spec;
  for (const auto& [name, op] : kNames) {
    all |= op;
    spec += std::string(name) + ",";
  }
  EXPECT_EQ(parse(spec.c_str()), all);
  EXPECT_EQ(all, (1u << 10) - 1);  // ten distinct ops
}

TEST(ProfileSkip, UnknownOpIsAnError) {
  try {
    parse("rope,ffn");
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("'ffn'"), std::string::npos) << what;
    EXPECT_NE(what.find("gateup"), std::string::npos) << what;
  }
  EXPECT_THROW(parse("Rope"), Error);
}

}  // namespace
}  // namespace sharq::cuda::profile_skip
