#include "datastore/dataset_writer.h"

#include <fcntl.h>
#include <glog/logging.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "common/atomic_file.h"
#include "common/error.h"
#include "datastore/volume_checks.h"

namespace cmaf::datastore {
namespace fs = std::filesystem;

namespace {
std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ",") + item;
  return out;
}

// Entries other than the lock and leftovers of killed runs: what makes a folder "not empty".
bool holds_files(const fs::path& dir) {
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name != kLockFileName && !is_atomic_temp_name(name)) return true;
  }
  return false;
}

int remove_leftovers(const fs::path& folder) {
  int removed = 0;
  if (!fs::is_directory(folder)) return removed;
  for (const auto& entry : fs::directory_iterator(folder)) {
    if (!is_atomic_temp_name(entry.path().filename().string())) continue;
    std::error_code ignored;
    removed += fs::remove(entry.path(), ignored) ? 1 : 0;
  }
  return removed;
}
}  // namespace

std::string utc_timestamp() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char buffer[32];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return buffer;
}

DatasetWriter::DatasetWriter(std::string dir, std::vector<std::string> classes)
    : dir_(std::move(dir)) {
  const fs::path root(dir_);
  if (fs::exists(root) && !fs::is_directory(root)) {
    throw InputError(dir_, "", "exists and is not a folder, expected a dataset folder");
  }
  if (!fs::exists(root)) {
    std::error_code error;
    fs::create_directories(root, error);
    if (error) throw IoError(str(dir_, ": cannot create the folder: ", error.message()));
    created_dirs_.push_back(root.string());
  }
  try {
    open_locked(classes);
  } catch (...) {
    roll_back();
    throw;
  }
}

void DatasetWriter::open_locked(const std::vector<std::string>& classes) {
  const fs::path root(dir_);
  const std::string lock_path = (root / kLockFileName).string();
  created_lock_file_ = !fs::exists(lock_path);
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) throw IoError(str(lock_path, ": cannot create: ", std::strerror(errno)));
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    throw InputError(dir_, "", "another cmaformer prep/synth is writing this dataset right now "
                               "(it holds " + lock_path + "); wait for it to finish");
  }
  if (has_manifest(dir_)) {
    manifest_ = load_manifest(dir_);
    appending_ = true;
    if (manifest_.classes != classes) {
      throw InputError(manifest_path(dir_), "classes",
                       str("this folder already holds a different dataset: its classes are [",
                           join(manifest_.classes), "], this run's are [", join(classes),
                           "]. Choose another --out, or the same label map and classes"));
    }
  } else {
    if (holds_files(root)) {
      throw InputError(dir_, "",
                       "is not empty and has no manifest.json: it does not hold a cmaformer "
                       "dataset, expected a new or empty folder (nothing was written)");
    }
    manifest_.classes = classes;
  }
  const fs::path cases = root / kCasesFolder;
  if (const int removed = remove_leftovers(cases); removed > 0) {
    LOG(INFO) << dir_ << ": removed " << removed << " leftover temporary file(s) of an interrupted run";
  }
  if (!fs::exists(cases)) {
    std::error_code error;
    fs::create_directories(cases, error);
    if (error) throw IoError(str(cases.string(), ": cannot create the folder: ", error.message()));
    created_dirs_.push_back(cases.string());
  }
}

DatasetWriter::~DatasetWriter() {
  if (!committed_) roll_back();
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the lock
}

void DatasetWriter::roll_back() {
  for (const std::string& file : written_files_) {
    std::error_code ignored;
    fs::remove(file, ignored);
  }
  written_files_.clear();
  if (created_lock_file_) {
    std::error_code ignored;
    fs::remove(fs::path(dir_) / kLockFileName, ignored);
    created_lock_file_ = false;
  }
  for (auto it = created_dirs_.rbegin(); it != created_dirs_.rend(); ++it) {
    std::error_code ignored;
    fs::remove(*it, ignored);  // only succeeds on an empty folder
  }
  created_dirs_.clear();
}

void DatasetWriter::check_case_id_free(const std::string& id, const std::string& source) const {
  if (const ManifestCase* existing = manifest_.find_case(id)) {
    throw InputError(source, "case id",
                     str("'", id, "' is already in dataset ", dir_, " (site '", existing->site,
                         "', from ", existing->source,
                         "); use --case-prefix to give this run's cases distinct ids"));
  }
}

void DatasetWriter::add_site(const SiteRecord& site) {
  for (const SiteRecord& existing : manifest_.sites) {
    if (existing.name != site.name) continue;
    if (existing.preprocessing != site.preprocessing) {
      throw InputError(manifest_path(dir_), str("sites '", site.name, "'"),
                       str("already exists with preprocessing ", existing.preprocessing.dump(),
                           ", this run uses ", site.preprocessing.dump(),
                           "; use another --site name or the same options"));
    }
    return;
  }
  manifest_.sites.push_back(site);
}

void DatasetWriter::add_case(const CaseMetadata& metadata, const std::vector<float>& image,
                             const std::vector<uint8_t>& label, Split split) {
  CMAF_CHECK(manifest_.find_site(metadata.site) != nullptr, "site ", metadata.site, " not added");
  check_case_id_free(metadata.case_id, metadata.source_image);
  ManifestCase entry;
  entry.id = metadata.case_id;
  entry.file = (fs::path(kCasesFolder) / (metadata.case_id + ".h5")).string();
  entry.site = metadata.site;
  entry.split = split;
  entry.has_label = metadata.label_role != LabelRole::kNone;
  entry.labeled = metadata.label_role == LabelRole::kSupervision;
  CMAF_CHECK(!entry.labeled || split == Split::kTrain, "only train cases supervise: ", entry.id);
  entry.shape = metadata.geometry.shape;
  entry.spacing = metadata.geometry.spacing;
  entry.source = metadata.source_image;
  if (entry.has_label) {
    LabelStatistics stats = label_statistics(label, metadata.geometry, manifest_.classes.size());
    entry.class_voxels = std::move(stats.class_voxels);
    entry.class_slices = std::move(stats.class_slices);
  }
  const std::string path = (fs::path(dir_) / entry.file).string();
  written_files_.push_back(path);  // before writing: a failure part-way is cleaned up too
  write_case_file(path, metadata, image, label);
  bytes_written_ += static_cast<int64_t>(fs::file_size(path));
  manifest_.cases.push_back(std::move(entry));
  ++staged_;
}

size_t DatasetWriter::commit() {
  CMAF_CHECK(!committed_, "DatasetWriter committed twice: ", dir_);
  save_manifest(dir_, manifest_);
  committed_ = true;
  return staged_;
}

}  // namespace cmaf::datastore
