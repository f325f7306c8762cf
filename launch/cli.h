// Command-line and INI option parsing shared by every subcommand.
//
// Each subcommand describes its options once (Boost.Program_options). Values come from the
// command line and from `--config FILE`, an INI file whose keys are the long option names:
//   threads = 2          # top-level keys apply to every subcommand that has the option
//   [prep]               # a section named after a subcommand applies to that one only
//   window = -125,275
// The command line wins over the file. An unknown key is an error naming the file and line.
#pragma once

#include <boost/program_options.hpp>

#include <array>
#include <string>
#include <vector>

namespace cmaf::launch {

namespace po = boost::program_options;

struct CommandLine {
  std::string command;   // subcommand name, e.g. "prep"
  std::string synopsis;  // one line, e.g. "cmaformer prep --input DIR --out DIR [options]"
  std::string summary;   // what the command does, a few lines
};

// Returns false when --help was given (the help text has been printed to stdout).
// Throws UsageError for unknown or malformed options, InputError for a bad config file.
bool parse_command_line(const CommandLine& info, int argc, char** argv,
                        po::options_description& options,
                        const po::positional_options_description& positional,
                        po::variables_map& values);

// Throws UsageError naming the command and `option` when it was not given.
void require(const po::variables_map& values, const std::string& option, const CommandLine& info);

// "z,y,x" in mm, each > 0. Throws InputError naming --spacing otherwise.
std::array<double, 3> parse_spacing(const std::string& text);

// "1,2,4" -> {1, 2, 4}; each a positive integer. Throws UsageError naming `option` otherwise.
std::vector<int> parse_int_list(const std::string& text, const std::string& option);

}  // namespace cmaf::launch
