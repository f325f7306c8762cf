#include "core/checkpoint_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/fingerprint.h"

namespace cmaf::core {
namespace {

namespace fs = std::filesystem;

constexpr const char* kStepPrefix = "step-";
constexpr const char* kStagingPrefix = ".staging-step-";

std::string padded(int64_t value) {
  std::ostringstream out;
  out << std::setw(8) << std::setfill('0') << value;
  return out.str();
}

struct FileDigest {
  int64_t bytes = 0;
  uint64_t hash = kFnvOffsetBasis;
};

FileDigest digest(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(str("cannot read ", path, ": ", std::strerror(errno)));
  FileDigest d;
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const std::streamsize got = in.gcount();
    if (got <= 0) break;
    d.hash = fnv1a(buffer.data(), static_cast<size_t>(got), d.hash);
    d.bytes += got;
  }
  return d;
}

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) throw IoError(str("open ", path, " for fsync: ", std::strerror(errno)));
  const int rc = ::fsync(fd);
  const int saved = errno;
  ::close(fd);
  if (rc != 0) throw IoError(str("fsync ", path, ": ", std::strerror(saved)));
}

int64_t step_of(const std::string& name, const char* prefix) {
  const std::string p = prefix;
  if (name.rfind(p, 0) != 0) return -1;
  const std::string digits = name.substr(p.size());
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(digits);
}

}  // namespace

std::string checkpoint_folder(const std::string& run_dir, int64_t step) {
  return (fs::path(run_dir) / kCheckpointsFolder / (kStepPrefix + padded(step))).string();
}

std::string staging_folder(const std::string& run_dir, int64_t step) {
  return (fs::path(run_dir) / kCheckpointsFolder / (kStagingPrefix + padded(step))).string();
}

std::string rank_part_name(int rank) { return "rank-" + padded(rank).substr(3) + ".pt"; }

std::string publish_checkpoint(const std::string& run_dir, int64_t step, const nlohmann::json& extra) {
  const std::string staging = staging_folder(run_dir, step);
  const std::string final_path = checkpoint_folder(run_dir, step);
  nlohmann::json manifest = extra;
  manifest["step"] = step;
  manifest["files"] = nlohmann::json::object();
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(staging)) {
    if (entry.is_regular_file() && entry.path().filename() != kCheckpointManifest) {
      names.push_back(entry.path().filename().string());
    }
  }
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    const std::string path = (fs::path(staging) / name).string();
    fsync_path(path, false);
    const FileDigest d = digest(path);
    manifest["files"][name] = {{"bytes", d.bytes}, {"fnv1a", fingerprint_hex(d.hash)}};
  }
  write_file_atomically((fs::path(staging) / kCheckpointManifest).string(), manifest.dump(2) + "\n");
  fsync_path(staging, true);
  std::error_code ec;
  if (fs::exists(final_path)) fs::remove_all(final_path, ec);  // a stale copy of this step (invalid)
  fs::rename(staging, final_path, ec);
  if (ec) throw IoError(str("publishing checkpoint: rename ", staging, " -> ", final_path, ": ", ec.message()));
  fsync_path((fs::path(run_dir) / kCheckpointsFolder).string(), true);
  return final_path;
}

std::optional<CheckpointInfo> verify_checkpoint(const std::string& path, std::string* problem) {
  const std::string manifest_path = (fs::path(path) / kCheckpointManifest).string();
  std::ifstream in(manifest_path);
  if (!in) {
    *problem = str(manifest_path, ": missing (an unfinished or foreign folder)");
    return std::nullopt;
  }
  CheckpointInfo info;
  info.path = path;
  try {
    info.manifest = nlohmann::json::parse(in);
    info.step = info.manifest.at("step").get<int64_t>();
    const auto& files = info.manifest.at("files");
    if (!files.is_object() || files.empty()) throw std::runtime_error("\"files\" lists nothing");
    for (const auto& [name, expected] : files.items()) {
      const std::string file = (fs::path(path) / name).string();
      if (!fs::exists(file)) {
        *problem = str(file, ": missing");
        return std::nullopt;
      }
      const FileDigest d = digest(file);
      const std::string hash = fingerprint_hex(d.hash);
      if (d.bytes != expected.at("bytes").get<int64_t>() || hash != expected.at("fnv1a").get<std::string>()) {
        *problem = str(file, ": checksum mismatch (", d.bytes, " bytes, fnv1a ", hash, "; manifest says ",
                       expected.at("bytes").get<int64_t>(), " bytes, fnv1a ", expected.at("fnv1a").get<std::string>(),
                       ")");
        return std::nullopt;
      }
    }
  } catch (const std::exception& e) {
    *problem = str(manifest_path, ": unreadable manifest: ", e.what());
    return std::nullopt;
  }
  return info;
}

std::vector<std::string> list_checkpoints(const std::string& run_dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  const fs::path folder = fs::path(run_dir) / kCheckpointsFolder;
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) return {};
  for (const auto& entry : fs::directory_iterator(folder)) {
    const int64_t step = step_of(entry.path().filename().string(), kStepPrefix);
    if (step >= 0 && entry.is_directory()) found.emplace_back(step, entry.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

std::optional<CheckpointInfo> latest_valid_checkpoint(const std::string& run_dir, std::vector<std::string>* skipped) {
  const std::vector<std::string> all = list_checkpoints(run_dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    std::string problem;
    auto info = verify_checkpoint(*it, &problem);
    if (info) return info;
    skipped->push_back(problem);
  }
  return std::nullopt;
}

void prune_checkpoints(const std::string& run_dir, int64_t keep, int64_t best_step) {
  const std::vector<std::string> all = list_checkpoints(run_dir);
  std::error_code ec;
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) {
    const int64_t step = step_of(fs::path(all[i]).filename().string(), kStepPrefix);
    if (step != best_step) fs::remove_all(all[i], ec);
  }
  for (const auto& entry : fs::directory_iterator(fs::path(run_dir) / kCheckpointsFolder)) {
    if (step_of(entry.path().filename().string(), kStagingPrefix) >= 0) fs::remove_all(entry.path(), ec);
  }
}

}  // namespace cmaf::core
