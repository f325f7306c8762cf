// The `cmaformer` executable as a user runs it: exit codes, messages on stderr, files on disk.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "tests/datastore/test_volumes.h"
#include "tests/temp_dir.h"

namespace cmaf::launch {
namespace {
namespace fs = std::filesystem;

struct ProcessResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

ProcessResult cmaformer(const std::string& args) {
  const std::string command = std::string(CMAF_BINARY) + " " + args + " 2>&1";
  ProcessResult run;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return run;
  std::array<char, 4096> buffer{};
  while (fgets(buffer.data(), buffer.size(), pipe) != nullptr) run.output += buffer.data();
  const int status = pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

TEST(CmaformerBinary, HelpListsEverySubcommandAndEachHasItsOwnHelp) {
  const ProcessResult help = cmaformer("--help");
  EXPECT_EQ(help.exit_code, 0);
  for (const char* command : {"synth", "prep", "inspect", "model-info", "train", "eval", "metrics", "bench", "env"}) {
    EXPECT_NE(help.output.find(command), std::string::npos) << command;
    const ProcessResult sub = cmaformer(std::string(command) + " --help");
    EXPECT_EQ(sub.exit_code, 0) << command;
    EXPECT_NE(sub.output.find(std::string("usage: cmaformer ") + command), std::string::npos)
        << sub.output;
    EXPECT_NE(sub.output.find("--config"), std::string::npos) << command;
  }
}

TEST(CmaformerBinary, UsageErrorsExitWithTwo) {
  EXPECT_EQ(cmaformer("").exit_code, 2);
  const ProcessResult unknown = cmaformer("train-everything");
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.output.find("unknown command 'train-everything'"), std::string::npos);
  const ProcessResult option = cmaformer("synth --out x --no-such-flag");
  EXPECT_EQ(option.exit_code, 2);
  EXPECT_NE(option.output.find("see `cmaformer synth --help`"), std::string::npos) << option.output;
  const ProcessResult missing = cmaformer("prep --out x");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("--input is required"), std::string::npos) << missing.output;
}

TEST(CmaformerBinary, SynthThenInspectFromAConfigFile) {
  test::TempDir dir;
  std::ofstream(dir.file("run.ini")) << "[synth]\ncases = 4\nsize = 32\nslices = 4\nsites = 2\n"
                                        "test-cases = 1\nlabeled-cases = 1\n";
  const ProcessResult synth = cmaformer("synth --config " + dir.file("run.ini") + " --out " + dir.file("ds"));
  ASSERT_EQ(synth.exit_code, 0) << synth.output;
  EXPECT_NE(synth.output.find("4 cases, 16 slices"), std::string::npos) << synth.output;
  const ProcessResult inspect = cmaformer("inspect " + dir.file("ds") + " --verify-data --json " + dir.file("r.json"));
  EXPECT_EQ(inspect.exit_code, 0) << inspect.output;
  EXPECT_NE(inspect.output.find("0 problem(s)"), std::string::npos) << inspect.output;
  EXPECT_TRUE(fs::exists(dir.file("r.json")));
}

TEST(CmaformerBinary, BadInputExitsWithOneNamesTheFileAndWritesNothing) {
  test::TempDir dir;
  test::write_nnunet_folder(dir.file("raw"), 2, 3);
  const std::string image = dir.file("raw/imagesTr/case_01_0000.nii.gz");
  const std::string bytes = test::read_bytes(image);
  test::write_bytes(image, bytes.substr(0, bytes.size() / 2));
  const ProcessResult prep = cmaformer("prep --input " + dir.file("raw") + " --out " + dir.file("ds"));
  EXPECT_EQ(prep.exit_code, 1) << prep.output;
  EXPECT_NE(prep.output.find("error: " + image + ": data: "), std::string::npos) << prep.output;
  EXPECT_FALSE(fs::exists(dir.file("ds")));
  const ProcessResult inspect = cmaformer("inspect " + dir.file("raw"));
  EXPECT_EQ(inspect.exit_code, 1);
  EXPECT_NE(inspect.output.find("manifest.json: cannot be opened"), std::string::npos) << inspect.output;
}

}  // namespace
}  // namespace cmaf::launch
