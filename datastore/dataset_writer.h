// Adds cases to a dataset folder, all or nothing per run.
//
// Opening creates the folder (and cases/) or, when it already holds a manifest, appends to it:
// the class list must be the same. A non-empty folder without a manifest is refused. Case files
// are written atomically; they are published only by commit(), which rewrites the manifest
// atomically. If the writer is destroyed without commit (an error part-way), every case file
// this run wrote is removed: the folder is exactly as it was before the run.
//
// One writer per dataset at a time: the writer holds an exclusive flock on
// `<dir>/.cmaformer.lock` from opening to destruction; a second concurrent prep/synth on the same
// folder is refused. Under the lock, leftovers of killed runs (`cases/.tmp-*`) are removed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "datastore/case_file.h"
#include "datastore/manifest.h"

namespace cmaf::datastore {

class DatasetWriter {
 public:
  DatasetWriter(std::string dir, std::vector<std::string> classes);
  ~DatasetWriter();
  DatasetWriter(const DatasetWriter&) = delete;
  DatasetWriter& operator=(const DatasetWriter&) = delete;

  const std::string& dir() const { return dir_; }
  const DatasetManifest& manifest() const { return manifest_; }
  bool appending() const { return appending_; }

  // Throws InputError if `id` is already in the dataset (before any work is done on it).
  void check_case_id_free(const std::string& id, const std::string& source) const;

  // Registers the site of this run; an existing site must have the same preprocessing.
  void add_site(const SiteRecord& site);
  void set_generator(const nlohmann::json& generator) { manifest_.generator = generator; }

  // Writes cases/<id>.h5 and stages its manifest entry (statistics computed here).
  void add_case(const CaseMetadata& metadata, const std::vector<float>& image,
                const std::vector<uint8_t>& label, Split split);

  // Publishes every staged case. Returns the number of cases added.
  size_t commit();

  int64_t bytes_written() const { return bytes_written_; }

 private:
  std::string dir_;
  DatasetManifest manifest_;
  bool appending_ = false;
  bool committed_ = false;
  void open_locked(const std::vector<std::string>& classes);
  void roll_back();

  std::vector<std::string> created_dirs_;  // removed again (if empty) when not committed
  int lock_fd_ = -1;
  bool created_lock_file_ = false;  // removed again when not committed
  std::vector<std::string> written_files_;
  size_t staged_ = 0;
  int64_t bytes_written_ = 0;
};

inline constexpr const char* kLockFileName = ".cmaformer.lock";

// Current UTC time as ISO 8601, for manifest records.
std::string utc_timestamp();

}  // namespace cmaf::datastore
