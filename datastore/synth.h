// `cmaformer synth`: a deterministic synthetic phantom dataset (see phantom.h).
//
// Case i belongs to site i % sites. Splits are drawn like prep's (split_plan.h): test first,
// then val, then the labeled train cases; the remaining train cases are unlabeled and keep
// their label for evaluation only. Re-running with identical parameters into the same folder
// verifies the files and does nothing; different parameters are refused.
#pragma once

#include <cstdint>
#include <string>

#include "datastore/phantom.h"

namespace cmaf::datastore {

struct SynthOptions {
  std::string out;
  int cases = 12;
  PhantomSpec phantom;
  int sites = 1;
  uint64_t seed = 0;
  std::string test_cases;     // count or ids ("" = none)
  std::string val_cases;      // count or ids ("" = none)
  std::string labeled_cases;  // count or ids among train ("" = all)
};

struct SynthReport {
  int64_t cases = 0;
  int64_t slices = 0;
  bool already_present = false;
  double seconds = 0.0;
};

SynthReport run_synth(const SynthOptions& options);

}  // namespace cmaf::datastore
