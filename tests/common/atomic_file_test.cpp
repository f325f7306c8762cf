#include "common/atomic_file.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "tests/temp_dir.h"

namespace cmaf {
namespace {
namespace fs = std::filesystem;

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(AtomicFile, TempNameIsHiddenInTheSameFolderAndKeepsTheExtension) {
  const AtomicFile file("/data/ds/cases/c1.nii.gz");
  const fs::path temp(file.temp_path());
  EXPECT_EQ(temp.parent_path(), fs::path("/data/ds/cases"));
  EXPECT_TRUE(is_atomic_temp_name(temp.filename().string()));
  EXPECT_EQ(temp.filename().string().substr(temp.filename().string().size() - 7), ".nii.gz");
  EXPECT_FALSE(is_atomic_temp_name("c1.h5"));
}

TEST(AtomicFile, CommitReplacesTheFinalFileWhole) {
  test::TempDir dir;
  const std::string path = dir.file("manifest.json");
  write_file_atomically(path, "old");
  write_file_atomically(path, "new content");
  EXPECT_EQ(read_all(path), "new content");
  EXPECT_EQ(dir.entries().size(), 1u);  // no temp file left
}

TEST(AtomicFile, AbandonedWriteLeavesNeitherTempNorFinalFile) {
  test::TempDir dir;
  const std::string path = dir.file("case.h5");
  {
    AtomicFile file(path);
    std::ofstream(file.temp_path()) << "half written";
    EXPECT_TRUE(fs::exists(file.temp_path()));
  }  // an exception would unwind the same way
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(dir.entries().empty());
}

TEST(AtomicFile, CommitWithoutTempFileFailsNamingTheFile) {
  test::TempDir dir;
  AtomicFile file(dir.file("x.json"));
  try {
    file.commit();
    FAIL() << "commit of a file never written must fail";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("x.json"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace cmaf
