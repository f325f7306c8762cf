#include "launch/cli.h"

#include <gtest/gtest.h>

#include <fstream>

#include "common/error.h"
#include "tests/temp_dir.h"

namespace cmaf::launch {
namespace {

struct Parsed {
  std::string out;
  int cases = 12;
  bool verify = false;
  bool bf16 = true;
};

Parsed parse(std::vector<std::string> args) {
  Parsed p;
  po::options_description options("test");
  options.add_options()("out", po::value(&p.out))("cases", po::value(&p.cases)->default_value(12))(
      "verify-data", po::bool_switch(&p.verify))("bf16", po::value(&p.bf16)->default_value(true));
  args.insert(args.begin(), "synth");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  po::variables_map values;
  parse_command_line({"synth", "cmaformer synth", "test"}, static_cast<int>(argv.size()), argv.data(),
                     options, {}, values);
  return p;
}

TEST(Cli, CommandLineValues) {
  const Parsed p = parse({"--out", "d", "--cases", "3", "--verify-data"});
  EXPECT_EQ(p.out, "d");
  EXPECT_EQ(p.cases, 3);
  EXPECT_TRUE(p.verify);
}

TEST(Cli, ConfigFileFillsWhatTheCommandLineLeavesOpenAndLoses) {
  test::TempDir dir;
  std::ofstream(dir.file("run.ini")) << "# comment\nout = from_file\ncases = 5\nthreads = 2\n"
                                        "[synth]\nverify-data = true\n[prep]\nwindow = 1,2\n";
  const Parsed p = parse({"--config", dir.file("run.ini"), "--cases", "9"});
  EXPECT_EQ(p.out, "from_file");
  EXPECT_EQ(p.cases, 9);  // the command line wins
  EXPECT_TRUE(p.verify);  // switch from the [synth] section; [prep] and other keys are skipped
}

TEST(Cli, UnknownKeyInTheCommandSectionNamesFileAndLine) {
  test::TempDir dir;
  std::ofstream(dir.file("run.ini")) << "[synth]\n\ncasez = 5\n";
  try {
    parse({"--config", dir.file("run.ini")});
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(e.subject(), dir.file("run.ini"));
    EXPECT_EQ(e.field(), "line 3 [synth]");
    EXPECT_NE(std::string(e.what()).find("unknown key 'casez'"), std::string::npos);
  }
}

TEST(Cli, MalformedValuesAndOptionsAreUsageOrInputErrors) {
  test::TempDir dir;
  std::ofstream(dir.file("bad.ini")) << "cases = many\n";
  EXPECT_THROW(parse({"--config", dir.file("bad.ini")}), InputError);
  std::ofstream(dir.file("worse.ini")) << "just words\n";
  EXPECT_THROW(parse({"--config", dir.file("worse.ini")}), InputError);
  EXPECT_THROW(parse({"--config", dir.file("missing.ini")}), InputError);
  EXPECT_THROW(parse({"--cases", "many"}), UsageError);
  EXPECT_THROW(parse({"--no-such-option"}), UsageError);
}

// An empty value is refused, never read as true (Boost's reading of an empty bool): a blanked
// `bf16 =` in a config file is an error naming the file, the line and the key.
TEST(Cli, AnEmptyValueIsRefusedNotTakenAsTrue) {
  test::TempDir dir;
  std::ofstream(dir.file("off.ini")) << "bf16 = false\n";
  EXPECT_FALSE(parse({"--config", dir.file("off.ini")}).bf16);
  EXPECT_FALSE(parse({"--bf16=false"}).bf16);
  for (const char* key : {"bf16", "out"}) {
    std::ofstream(dir.file("blank.ini")) << "cases = 4\n\n" << key << " =   # was something\n";
    try {
      parse({"--config", dir.file("blank.ini")});
      FAIL() << "an empty " << key << " accepted";
    } catch (const InputError& e) {
      EXPECT_EQ(e.subject(), dir.file("blank.ini"));
      EXPECT_EQ(e.field(), "line 3");
      EXPECT_NE(std::string(e.what()).find(str("key '", key, "' has no value")), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(parse({"--bf16="}), UsageError);
  EXPECT_THROW(parse({"--out="}), UsageError);
}

TEST(Cli, IntegerListsAreCheckedItemByItem) {
  EXPECT_EQ(parse_int_list("1,2, 4", "--reader-threads"), (std::vector<int>{1, 2, 4}));
  for (const char* bad : {"", "1,,2", "0", "2x", "-1"}) {
    try {
      parse_int_list(bad, "--reader-threads");
      FAIL() << "accepted '" << bad << "'";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("--reader-threads"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace cmaf::launch
