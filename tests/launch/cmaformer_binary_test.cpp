// The `cmaformer` executable as a user runs it: exit codes, messages on stderr, files on disk.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "datastore/manifest.h"
#include "datastore/nifti_volume.h"
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
  for (const char* command : {"synth", "prep", "merge", "inspect", "model-info", "train", "plot", "eval", "infer", "metrics", "bench", "env"}) {
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

// This machine and CI have no GPU: `--device cuda` must stop at start-up, before any step, with
// the rank, the host and what to do, and write no checkpoint. Where a GPU and a CUDA build are
// present the run trains instead (the GPU path itself is not exercised here).
TEST(CmaformerBinary, DeviceCudaWithoutAGpuStopsAtStartNamingRankAndHost) {
  test::TempDir dir;
  test::write_nnunet_folder(dir.file("raw"), 4, 3, 6, 32);
  ASSERT_EQ(cmaformer("prep --input " + dir.file("raw") + " --out " + dir.file("ds") +
                      " --test-cases 1 --labeled-cases 2 --seed 2").exit_code, 0);
  const std::string common = "train --data " + dir.file("ds") + " --run-dir " + dir.file("run") +
                             " --preset tiny --input-size 32 --steps 2 --checkpoint-every 2 --threads 1";
  const ProcessResult cuda = cmaformer(common + " --device cuda");
  if (cuda.exit_code == 0) GTEST_SKIP() << "a CUDA device and a CUDA build are present: " << cuda.output;
  EXPECT_EQ(cuda.exit_code, 1) << cuda.output;
  EXPECT_NE(cuda.output.find("error: --device: cuda: no CUDA device usable by rank 0 (node-local rank 0 of 1, "),
            std::string::npos)
      << cuda.output;
  EXPECT_FALSE(fs::exists(dir.file("run/checkpoints/step-00000002")));
  const ProcessResult typo = cmaformer(common + " --device gpu");
  EXPECT_EQ(typo.exit_code, 1) << typo.output;
  EXPECT_NE(typo.output.find("--device: 'gpu', expected cpu or cuda"), std::string::npos) << typo.output;
}

TEST(CmaformerBinary, InferOnTheRawScanReproducesEvalsPredictionOfThePreparedCase) {
  test::TempDir dir;
  test::write_nnunet_folder(dir.file("raw"), 4, 3, 6, 32);
  ASSERT_EQ(cmaformer("prep --input " + dir.file("raw") + " --out " + dir.file("ds") +
                      " --test-cases 1 --labeled-cases 2 --seed 2").exit_code, 0);
  const ProcessResult train = cmaformer("train --data " + dir.file("ds") + " --run-dir " + dir.file("run") +
                                        " --preset tiny --input-size 32 --steps 2 --checkpoint-every 2 --threads 1");
  ASSERT_EQ(train.exit_code, 0) << train.output;
  const std::string ckpt = dir.file("run/checkpoints/step-00000002");
  const ProcessResult eval = cmaformer("eval --checkpoint " + ckpt + " --data " + dir.file("ds") + " --out " +
                                       dir.file("eval") + " --save-predictions --threads 1");
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  std::string test_case;
  for (const auto& c : datastore::load_manifest(dir.file("ds")).cases) {
    if (c.split == datastore::Split::kTest) test_case = c.id;
  }
  // prep names cases after the source; the raw scan is imagesTr/<id>_0000.nii.gz.
  const std::string scan = dir.file("raw/imagesTr/" + test_case + "_0000.nii.gz");
  ASSERT_TRUE(fs::exists(scan)) << scan;
  const ProcessResult infer = cmaformer("infer --checkpoint " + ckpt + " --input " + scan + " --output " +
                                        dir.file("seg.nii.gz") + " --threads 1");
  ASSERT_EQ(infer.exit_code, 0) << infer.output;
  // The label volume lies on the scan: same dimensions, spacing and affine.
  const datastore::NiftiHeader in = datastore::read_nifti_header(scan);
  const datastore::NiftiHeader out = datastore::read_nifti_header(dir.file("seg.nii.gz"));
  EXPECT_EQ(out.geometry.shape, in.geometry.shape);
  EXPECT_EQ(out.geometry.spacing, in.geometry.spacing);
  EXPECT_LT(datastore::affine_max_difference(out.geometry.affine, in.geometry.affine), 1e-4);
  EXPECT_EQ(out.geometry.qform_code, in.geometry.qform_code);
  EXPECT_EQ(out.geometry.sform_code, in.geometry.sform_code);
  const ProcessResult compare = cmaformer("metrics --pred " + dir.file("seg.nii.gz") + " --truth " +
                                          dir.file("eval/predictions/" + test_case + ".nii.gz") + " --classes 1,2 --out " +
                                          dir.file("same.json"));
  ASSERT_EQ(compare.exit_code, 0) << compare.output;
  std::ifstream csv(dir.file("same.csv"));
  std::string line;
  std::getline(csv, line);
  int rows = 0, agreeing = 0;
  while (std::getline(csv, line)) {
    ++rows;
    // Columns: case,site,class,label,prediction_voxels,truth_voxels,dice,...
    std::vector<std::string> cells;
    std::stringstream in(line);
    for (std::string cell; std::getline(in, cell, ',');) cells.push_back(cell);
    EXPECT_EQ(cells[4], cells[5]) << line;
    EXPECT_TRUE(cells[6] == "1" || cells[6] == "NA") << line;
    agreeing += cells[6] == "1";
  }
  EXPECT_EQ(rows, 2);
  EXPECT_GT(agreeing, 0) << "both predictions empty: the comparison proves nothing";
  const ProcessResult folder = cmaformer("infer --checkpoint " + ckpt + " --input " + dir.file("raw/imagesTr") +
                                         " --output " + dir.file("segs") + " --threads 1");
  ASSERT_EQ(folder.exit_code, 0) << folder.output;
  EXPECT_TRUE(fs::exists(dir.file("segs/" + test_case + ".nii.gz")));
  const ProcessResult bad = cmaformer("infer --checkpoint " + dir.file("run") + " --input " + scan + " --output " +
                                      dir.file("x.nii.gz"));
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find(dir.file("run")), std::string::npos) << bad.output;
  EXPECT_FALSE(fs::exists(dir.file("x.nii.gz")));
}

}  // namespace
}  // namespace cmaf::launch
