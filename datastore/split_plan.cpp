#include "datastore/split_plan.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include "common/error.h"
#include "common/random.h"

namespace cmaf::datastore {
namespace {

// Picks from `pool` (ordered) and removes the picked ids from it.
std::vector<std::string> take(std::vector<std::string>& pool, const CaseSelection& selection,
                              const std::string& option, DeterministicRng& rng) {
  std::vector<std::string> picked;
  if (selection.count) {
    const int64_t n = *selection.count;
    if (n > static_cast<int64_t>(pool.size())) {
      throw InputError(option, "",
                       str(n, " cases requested, but only ", pool.size(),
                           " labeled cases are left to choose from"));
    }
    std::vector<std::string> shuffled = pool;
    rng.shuffle(shuffled);
    picked.assign(shuffled.begin(), shuffled.begin() + n);
  } else {
    for (const std::string& id : selection.ids) {
      if (std::find(pool.begin(), pool.end(), id) == pool.end()) {
        throw InputError(option, "",
                         str("case '", id, "' is not among the ", pool.size(),
                             " labeled cases still available (unknown id, no label, or already "
                             "chosen by another split option)"));
      }
      picked.push_back(id);
    }
  }
  const std::set<std::string> chosen(picked.begin(), picked.end());
  pool.erase(std::remove_if(pool.begin(), pool.end(),
                            [&](const std::string& id) { return chosen.count(id) > 0; }),
             pool.end());
  std::sort(picked.begin(), picked.end());
  return picked;
}

}  // namespace

CaseSelection parse_case_selection(const std::string& text, const std::string& option) {
  CaseSelection selection;
  if (text.empty()) return selection;
  const bool numeric = std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (numeric) {
    if (text.size() > 9) throw InputError(option, "", str("'", text, "' is not a sensible case count"));
    selection.count = std::stoll(text);
    return selection;
  }
  std::stringstream in(text);
  std::string id;
  std::set<std::string> seen;
  while (std::getline(in, id, ',')) {
    if (id.empty()) throw InputError(option, "", str("'", text, "' has an empty case id"));
    if (!seen.insert(id).second) throw InputError(option, "", str("case '", id, "' is listed twice"));
    selection.ids.push_back(id);
  }
  return selection;
}

std::map<std::string, CaseAssignment> plan_splits(const std::vector<std::string>& candidates,
                                                  const SplitRequest& request) {
  std::vector<std::string> pool = candidates;
  std::sort(pool.begin(), pool.end());
  DeterministicRng rng(request.seed);
  std::map<std::string, CaseAssignment> plan;
  for (const std::string& id : take(pool, request.test, "--test-cases", rng)) {
    plan[id] = {Split::kTest, false};
  }
  for (const std::string& id : take(pool, request.val, "--val-cases", rng)) {
    plan[id] = {Split::kVal, false};
  }
  CaseSelection labeled = request.labeled;
  if (!request.labeled.empty() && request.labeled_fraction) {
    throw InputError("--labeled-fraction", "", "give either --labeled-cases or --labeled-fraction");
  }
  if (request.labeled_fraction) {
    const double f = *request.labeled_fraction;
    if (!(f >= 0.0 && f <= 1.0)) {
      throw InputError("--labeled-fraction", "", str(f, ", expected a fraction in [0, 1]"));
    }
    int64_t n = std::llround(f * static_cast<double>(pool.size()));
    if (f > 0.0 && n == 0 && !pool.empty()) n = 1;
    labeled.count = n;
  }
  if (labeled.empty()) labeled.count = static_cast<int64_t>(pool.size());  // default: all labeled
  for (const std::string& id : take(pool, labeled, "--labeled-cases", rng)) {
    plan[id] = {Split::kTrain, true};
  }
  for (const std::string& id : pool) plan[id] = {Split::kTrain, false};
  return plan;
}

}  // namespace cmaf::datastore
