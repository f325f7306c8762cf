#include "core/rank_agreement.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "cluster/process_runtime.h"
#include "common/atomic_file.h"
#include "common/error.h"
#include "common/fingerprint.h"
#include "datastore/manifest.h"

namespace cmaf::core {
namespace fs = std::filesystem;
namespace {

constexpr const char* kManifestKey = "dataset manifest";
// ".rank0-check-<token>": a name of its own per start (two jobs started on one folder do not
// read each other's), removed again by rank 0 once every rank has looked for it.
constexpr const char* kTokenFilePrefix = ".rank0-check-";
constexpr auto kTokenWait = std::chrono::seconds(5);  // a shared file system's attribute caches

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// Rank 0's `text` on every rank (its length, then its bytes in int64 words).
std::string broadcast_text(const std::string& text, cluster::Communicator& world) {
  at::Tensor length = at::full({1}, static_cast<int64_t>(text.size()), at::kLong);
  world.broadcast(length, 0);
  const int64_t bytes = length.item<int64_t>();
  at::Tensor words = at::zeros({std::max<int64_t>(1, (bytes + 7) / 8)}, at::kLong);
  if (world.rank() == 0) std::memcpy(words.data_ptr<int64_t>(), text.data(), text.size());
  world.broadcast(words, 0);
  return std::string(reinterpret_cast<const char*>(words.data_ptr<int64_t>()), static_cast<size_t>(bytes));
}

// One int64 from every rank, in rank order.
std::vector<int64_t> gather_values(int64_t mine, cluster::Communicator& world) {
  const at::Tensor all = world.all_gather(at::full({1}, mine, at::kLong)).reshape({-1});
  return std::vector<int64_t>(all.data_ptr<int64_t>(), all.data_ptr<int64_t>() + all.numel());
}

std::string rank_list(const std::vector<int>& ranks) {
  std::string out;
  for (int r : ranks) out += (out.empty() ? "" : ", ") + std::to_string(r);
  return out;
}

}  // namespace

std::string shared_options_text(const TrainConfig& config) {
  nlohmann::json options = config.to_json();
  // Paths (checked by content: the manifest below, the run folder by check_run_dir_shared) and
  // settings of each rank's own resources, which do not change what is trained.
  for (const char* key : {"data", "run-dir", "threads", "loader-threads", "loader-queue", "cache-budget-mib",
                          "stall-seconds"}) {
    options.erase(key);
  }
  // A checkpoint folder named by path may be spelled differently on each rank.
  if (config.resume != "auto" && config.resume != "none") {
    options["resume"] = fs::absolute(config.resume).lexically_normal().string();
  }
  // Site weights by value: "a:3,b:1", "b:1.0,a:3" and "a:3" are one setting (a site not named
  // weighs 1). The text was parsed once already (TrainConfig::validate), before MPI started.
  if (!config.site_weights.empty()) {
    std::map<std::string, double> weights = config.parsed_site_weights();
    for (auto it = weights.begin(); it != weights.end();) it = it->second == 1.0 ? weights.erase(it) : std::next(it);
    options["site-weights"] = weights;
  }
  // The manifest's content, not its bytes: a copy re-serialised by another tool is the same dataset.
  const std::string manifest = read_all((fs::path(config.data) / datastore::kManifestFileName).string());
  const nlohmann::json parsed = nlohmann::json::parse(manifest, nullptr, false);
  const std::string canonical = parsed.is_discarded() ? manifest : parsed.dump();
  options[kManifestKey] = fingerprint_hex(fnv1a(canonical.data(), canonical.size()));
  return options.dump();
}

void check_options_agree(const TrainConfig& config, cluster::Communicator& world) {
  if (world.size() == 1) return;
  const std::string mine = shared_options_text(config);
  const auto fingerprint = static_cast<int64_t>(fnv1a(mine.data(), mine.size()));
  const std::vector<int64_t> all = gather_values(fingerprint, world);
  std::vector<int> differing;
  for (int r = 1; r < world.size(); ++r) {
    if (all[static_cast<size_t>(r)] != all[0]) differing.push_back(r);
  }
  if (differing.empty()) return;
  const std::string theirs = broadcast_text(mine, world);  // rank 0's
  const std::string rule =
      "every rank must be started with the same options and dataset (only --threads, --loader-threads, "
      "--loader-queue, --cache-budget-mib and --stall-seconds may differ; --data and --run-dir may be spelled "
      "differently if they hold the same dataset and name the same folder)";
  if (fingerprint == all[0]) {
    throw InputError("options", "",
                     str("rank(s) ", rank_list(differing), " were started with other options than rank 0 (their errors "
                         "name them); ", rule));
  }
  // Rank 0 the odd one out: every other rank agrees with the rest.
  const bool rank0_alone = world.size() > 2 && static_cast<int>(differing.size()) == world.size() - 1 &&
                           std::all_of(all.begin() + 1, all.end(), [&](int64_t f) { return f == all[1]; });
  const nlohmann::json here = nlohmann::json::parse(mine);
  const nlohmann::json there = nlohmann::json::parse(theirs);
  std::string keys;
  std::string details;
  for (const auto& [key, value] : here.items()) {
    const bool missing = !there.contains(key);
    if (!missing && there.at(key) == value) continue;
    const std::string name = key == kManifestKey ? str("--data (", datastore::kManifestFileName, ")") : "--" + key;
    keys += (keys.empty() ? "" : ", ") + name;
    details += str(details.empty() ? "" : "; ", name, " ", key == kManifestKey ? "fingerprint " : "", value.dump(),
                   " on this rank, ", missing ? std::string("absent") : there.at(key).dump(), " on rank 0");
  }
  for (const auto& [key, value] : there.items()) {
    if (here.contains(key)) continue;
    keys += (keys.empty() ? "" : ", ") + ("--" + key);
    details += str(details.empty() ? "" : "; ", "--", key, " absent on this rank, ", value.dump(), " on rank 0");
  }
  if (keys.empty()) {  // texts that differ in a value that compares equal (-0 and 0)
    keys = "options";
    details = str("this rank's options as compared: ", mine, "; rank 0's: ", theirs);
  }
  throw InputError(keys, "",
                   str(details, " (", cluster::host_name(), ")",
                       rank0_alone ? str("; all ", world.size() - 1, " ranks other than rank 0 agree among themselves: "
                                         "rank 0 may be the one started differently")
                                   : std::string(),
                       ": ", rule));
}

void check_run_dir_shared(const std::string& run_dir, cluster::Communicator& world) {
  if (world.size() == 1) return;
  int64_t token = 0;
  if (world.rank() == 0) {
    std::random_device random;
    token = static_cast<int64_t>((static_cast<uint64_t>(random()) << 32) ^ random() ^
                                 static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
  }
  const auto file_of = [&](int64_t t) {
    return (fs::path(run_dir) / (kTokenFilePrefix + fingerprint_hex(static_cast<uint64_t>(t)))).string();
  };
  struct RemoveOnExit {  // rank 0's file goes, whatever happens after it was written
    std::string path;
    ~RemoveOnExit() {
      std::error_code ignored;
      if (!path.empty()) fs::remove(path, ignored);
    }
  } written;
  const auto contents_of = [](int64_t t) { return fingerprint_hex(static_cast<uint64_t>(t)) + "\n"; };
  if (world.rank() == 0) {
    written.path = file_of(token);
    write_file_atomically(written.path, contents_of(token));
  }
  at::Tensor shared = at::full({1}, token, at::kLong);
  world.broadcast(shared, 0);
  token = shared.item<int64_t>();
  const std::string path = file_of(token);
  const std::string expected = contents_of(token);
  std::string found = world.rank() == 0 ? expected : read_all(path);
  if (found != expected) world.begin_local_work("looking for rank 0's file in the run folder");  // not a stall
  const auto give_up = std::chrono::steady_clock::now() + kTokenWait;
  while (found != expected && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    found = read_all(path);
  }
  const std::vector<int64_t> seen = gather_values(found == expected ? 1 : 0, world);
  std::vector<int> blind;
  for (int r = 0; r < world.size(); ++r) {
    if (seen[static_cast<size_t>(r)] == 0) blind.push_back(r);
  }
  if (blind.empty()) return;
  const std::string absolute = fs::absolute(run_dir).lexically_normal().string();
  const std::string rule =
      "every rank must name the same run folder, on a file system that every node sees (not node-local storage "
      "such as /tmp, $TMPDIR or a local disk): rank 0 writes the checkpoints there and every rank writes its part "
      "of them";
  if (found != expected) {
    throw InputError(absolute, "--run-dir",
                     str("not the folder rank 0 writes to, as seen from ", cluster::host_name(), ": the file ",
                         fs::path(path).filename().string(), " that rank 0 wrote there is not here after ",
                         kTokenWait.count(), " s; ", rule));
  }
  throw InputError(absolute, "--run-dir",
                   str("rank(s) ", rank_list(blind), " do not see this folder as rank 0 writes it (their errors say "
                       "from which host); ", rule));
}

}  // namespace cmaf::core
