#include "common/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/error.h"

namespace cmaf {
namespace fs = std::filesystem;

namespace {
constexpr const char* kTempPrefix = ".tmp-";

void fsync_path(const std::string& path, int open_flags) {
  const int fd = ::open(path.c_str(), open_flags);
  if (fd < 0) {
    throw IoError(str(path, ": open for fsync failed: ", std::strerror(errno)));
  }
  const int rc = ::fsync(fd);
  const int saved_errno = errno;
  ::close(fd);
  // Some file systems (and folders on them) cannot be fsynced: EINVAL means "not supported".
  if (rc != 0 && saved_errno != EINVAL) {
    throw IoError(str(path, ": fsync failed: ", std::strerror(saved_errno)));
  }
}
}  // namespace

AtomicFile::AtomicFile(std::string final_path) : final_path_(std::move(final_path)) {
  const fs::path final_fs(final_path_);
  const std::string name = final_fs.filename().string();
  temp_path_ =
      (final_fs.parent_path() / (kTempPrefix + std::to_string(::getpid()) + "-" + name)).string();
}

AtomicFile::~AtomicFile() {
  if (!committed_) {
    std::error_code ignored;
    fs::remove(temp_path_, ignored);
  }
}

void AtomicFile::commit() {
  CMAF_CHECK(!committed_, "AtomicFile committed twice: ", final_path_);
  fsync_path(temp_path_, O_RDONLY);
  if (std::rename(temp_path_.c_str(), final_path_.c_str()) != 0) {
    throw IoError(str(final_path_, ": rename from ", temp_path_, " failed: ", std::strerror(errno)));
  }
  committed_ = true;
  std::string folder = fs::path(final_path_).parent_path().string();
  fsync_path(folder.empty() ? "." : folder, O_RDONLY | O_DIRECTORY);
}

void write_file_atomically(const std::string& path, const std::string& content) {
  AtomicFile file(path);
  {
    std::ofstream out(file.temp_path(), std::ios::binary | std::ios::trunc);
    if (!out) {
      throw IoError(str(path, ": cannot create ", file.temp_path(), ": ", std::strerror(errno)));
    }
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    out.close();
    if (!out) throw IoError(str(path, ": write to ", file.temp_path(), " failed"));
  }
  file.commit();
}

bool is_atomic_temp_name(const std::string& file_name) {
  return file_name.rfind(kTempPrefix, 0) == 0;
}

}  // namespace cmaf
