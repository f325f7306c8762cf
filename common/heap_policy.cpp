#include "common/heap_policy.h"

#include <cstdlib>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace cmaf {

bool keep_freed_memory_in_the_heap() {
#if defined(__GLIBC__)
  constexpr int kNeverTrim = -1;  // mallopt(3): -1 disables trimming completely
  bool ok = true;
  const bool user_sets_mmap =
      std::getenv("MALLOC_MMAP_MAX_") != nullptr || std::getenv("MALLOC_MMAP_THRESHOLD_") != nullptr;
  if (!user_sets_mmap) ok = mallopt(M_MMAP_MAX, 0) == 1 && ok;
  if (std::getenv("MALLOC_TRIM_THRESHOLD_") == nullptr) ok = mallopt(M_TRIM_THRESHOLD, kNeverTrim) == 1 && ok;
  return ok;
#else
  return false;
#endif
}

}  // namespace cmaf
