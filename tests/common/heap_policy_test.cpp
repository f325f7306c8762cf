// The allocator policy keeps large freed buffers in the heap instead of unmapping them.
#include "common/heap_policy.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace cmaf {
namespace {

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
TEST(HeapPolicy, LargeBuffersComeFromTheHeapAndStayThereWhenFreed) {
  if (std::getenv("MALLOC_MMAP_MAX_") != nullptr || std::getenv("MALLOC_MMAP_THRESHOLD_") != nullptr) {
    GTEST_SKIP() << "MALLOC_MMAP_* set in the environment: the user's setting wins by design";
  }
  ASSERT_TRUE(keep_freed_memory_in_the_heap());
  // 64 MiB: twice glibc's largest mmap threshold, so without the policy this is an mmap.
  constexpr size_t kBytes = size_t{64} << 20;
  const size_t mapped_before = mallinfo2().hblks;
  void* buffer = std::malloc(kBytes);
  ASSERT_NE(buffer, nullptr);
  std::memset(buffer, 1, kBytes);
  EXPECT_EQ(mallinfo2().hblks, mapped_before) << "a 64 MiB allocation was served by its own mmap";
  std::free(buffer);
  EXPECT_GE(mallinfo2().fordblks, kBytes) << "the freed 64 MiB left the heap (trimmed or unmapped)";
  void* again = std::malloc(kBytes);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(mallinfo2().hblks, mapped_before);
  std::free(again);
}
#else
TEST(HeapPolicy, NotGlibc) {
  EXPECT_FALSE(keep_freed_memory_in_the_heap()) << "only glibc has this policy";
}
#endif

}  // namespace
}  // namespace cmaf
