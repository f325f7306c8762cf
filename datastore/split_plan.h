// Which cases of one `prep`/`synth` run go to test, val, and labeled/unlabeled train.
//
// A selection is either a count (chosen by a seeded, platform-independent shuffle) or explicit
// case ids: "--test-cases 4" or "--test-cases btcv_01,btcv_07". Test is chosen first, then val,
// then the labeled train cases among the rest. The plan is a pure function of the inputs.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "datastore/manifest.h"

namespace cmaf::datastore {

struct CaseSelection {
  std::optional<int64_t> count;
  std::vector<std::string> ids;
  bool empty() const { return !count && ids.empty(); }
};

// "" -> nothing selected; "N" -> a count; "a,b,c" -> ids. `option` names the flag in errors.
CaseSelection parse_case_selection(const std::string& text, const std::string& option);

struct SplitRequest {
  CaseSelection test;
  CaseSelection val;
  CaseSelection labeled;                   // among train cases; empty: see labeled_fraction
  std::optional<double> labeled_fraction;  // of train cases, rounded, at least 1 if > 0
  uint64_t seed = 0;
};

struct CaseAssignment {
  Split split = Split::kTrain;
  bool labeled = false;  // train only
};

// `candidates`: ids of cases that have labels (only they can be test/val/labeled).
// Throws InputError for unknown ids, overlaps, or counts larger than the cases available.
std::map<std::string, CaseAssignment> plan_splits(const std::vector<std::string>& candidates,
                                                  const SplitRequest& request);

}  // namespace cmaf::datastore
