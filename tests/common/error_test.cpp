#include "common/error.h"

#include <gtest/gtest.h>

#include <string>

namespace cmaf {
namespace {

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Error, CheckEqPrintsLocationConditionBothValuesAndContext) {
  const int slices_image = 96;
  const int slices_label = 95;
  const std::string message =
      message_of([&] { CMAF_CHECK_EQ(slices_image, slices_label, "case ", "btcv_17"); });
  EXPECT_NE(message.find("tests/common/error_test.cpp:"), std::string::npos) << message;
  EXPECT_NE(message.find("slices_image == slices_label (96 vs 95): case btcv_17"), std::string::npos)
      << message;
}

TEST(Error, CheckPassesSilentlyWhenTrue) {
  EXPECT_NO_THROW(CMAF_CHECK(1 + 1 == 2, "arithmetic"));
  EXPECT_NO_THROW(CMAF_CHECK_LT(1, 2, "order"));
}

TEST(Error, InputErrorNamesSubjectFieldAndDetail) {
  const InputError error("a/b.nii.gz", "pixdim", "expected spacings > 0");
  EXPECT_STREQ(error.what(), "a/b.nii.gz: pixdim: expected spacings > 0");
  EXPECT_EQ(error.subject(), "a/b.nii.gz");
  EXPECT_EQ(error.field(), "pixdim");
}

TEST(Error, PrefixIsPrependedToLaterErrors) {
  set_error_prefix("[rank 3] ");
  const std::string message = message_of([] { throw IoError("disk full"); });
  set_error_prefix("");
  EXPECT_EQ(message, "[rank 3] disk full");
}

}  // namespace
}  // namespace cmaf
