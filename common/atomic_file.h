// Atomic file replacement: write to a hidden temporary name in the destination folder, fsync,
// rename over the final name, fsync the folder. A reader (or a crash) sees either the old file
// or the complete new one, never a half-written file under the final name.
//
//   AtomicFile out("/data/ds/cases/c1.h5");
//   write_everything_to(out.temp_path());
//   out.commit();                 // not reached on error: the destructor removes the temp file
#pragma once

#include <string>

namespace cmaf {

class AtomicFile {
 public:
  explicit AtomicFile(std::string final_path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // ".tmp-<pid>-<name>" beside the final file: hidden, so it never passes for a complete file,
  // and it keeps the extension (NIfTI writers choose compression by it).
  const std::string& temp_path() const { return temp_path_; }
  const std::string& final_path() const { return final_path_; }

  // fsync(temp) + rename(temp, final) + fsync(folder). Throws IoError naming the step.
  void commit();

 private:
  std::string final_path_;
  std::string temp_path_;
  bool committed_ = false;
};

// Writes `content` to `path` atomically (used for manifests and JSON reports).
void write_file_atomically(const std::string& path, const std::string& content);

// True for names produced by AtomicFile::temp_path (left behind only by a killed process).
bool is_atomic_temp_name(const std::string& file_name);

}  // namespace cmaf
