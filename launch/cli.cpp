#include "launch/cli.h"

#include <algorithm>
#include <fstream>
#include <iostream>
#include <sstream>
#include <vector>

#include "common/error.h"

namespace cmaf::launch {
namespace {

std::string trim(const std::string& text) {
  const size_t begin = text.find_first_not_of(" \t\r");
  if (begin == std::string::npos) return "";
  const size_t end = text.find_last_not_of(" \t\r");
  return text.substr(begin, end - begin + 1);
}

bool is_true(const std::string& value) {
  return value == "1" || value == "true" || value == "yes" || value == "on";
}

// INI file -> "--key=value" tokens for `command`, validated against `options`.
std::vector<std::string> config_tokens(const std::string& path, const std::string& command,
                                       const po::options_description& options) {
  std::ifstream in(path);
  if (!in) throw InputError(path, "", "cannot be opened, expected an INI config file (--config)");
  std::vector<std::string> tokens;
  std::string line;
  std::string section;
  for (int number = 1; std::getline(in, line); ++number) {
    const size_t comment = line.find_first_of("#;");
    line = trim(comment == std::string::npos ? line : line.substr(0, comment));
    if (line.empty()) continue;
    const std::string where = str("line ", number);
    if (line.front() == '[') {
      if (line.back() != ']') throw InputError(path, where, str("'", line, "' is not a [section]"));
      section = trim(line.substr(1, line.size() - 2));
      continue;
    }
    const size_t equals = line.find('=');
    if (equals == std::string::npos) {
      throw InputError(path, where, str("'", line, "', expected key = value"));
    }
    if (!section.empty() && section != command) continue;  // another subcommand's section
    const std::string key = trim(line.substr(0, equals));
    const std::string value = trim(line.substr(equals + 1));
    if (key == "config" || key == "help") {
      throw InputError(path, where, str("key '", key, "' cannot be set in a config file"));
    }
    const po::option_description* option = options.find_nothrow(key, false);
    if (option == nullptr) {
      if (section.empty()) continue;  // top-level keys may belong to other subcommands
      throw InputError(path, str(where, " [", section, "]"),
                       str("unknown key '", key, "' for `cmaformer ", command, "`"));
    }
    if (option->semantic()->max_tokens() == 0) {  // a switch: "key = true|false"
      if (is_true(value)) tokens.push_back("--" + key);
      continue;
    }
    if (value.empty()) {  // Boost would refuse "--key=" too, without the line
      throw InputError(path, where, str("key '", key, "' has no value (remove the line for the default)"));
    }
    tokens.push_back("--" + key + "=" + value);
  }
  return tokens;
}

}  // namespace

bool parse_command_line(const CommandLine& info, int argc, char** argv,
                        po::options_description& options,
                        const po::positional_options_description& positional,
                        po::variables_map& values) {
  po::options_description common("Common options");
  common.add_options()("help,h", "print this help and exit")(
      "config", po::value<std::string>(), "INI file with option values (command line wins)");
  po::options_description all;
  all.add(options).add(common);
  try {
    po::store(po::command_line_parser(argc, argv).options(all).positional(positional).run(), values);
    if (values.count("help") > 0) {
      std::cout << "usage: " << info.synopsis << "\n\n" << info.summary << "\n\n" << all << "\n";
      return false;
    }
    if (values.count("config") > 0) {
      const std::string path = values["config"].as<std::string>();
      const std::vector<std::string> tokens = config_tokens(path, info.command, options);
      try {
        po::store(po::command_line_parser(tokens).options(options).run(), values);
      } catch (const po::error& e) {
        throw InputError(path, "", str(e.what(), " (config file for `cmaformer ", info.command, "`)"));
      }
    }
    po::notify(values);
  } catch (const po::error& e) {
    throw UsageError(str("cmaformer ", info.command, ": ", e.what(),
                         "\nsee `cmaformer ", info.command, " --help`"));
  }
  return true;
}

void require(const po::variables_map& values, const std::string& option, const CommandLine& info) {
  if (values.count(option) == 0) {
    throw UsageError(str("cmaformer ", info.command, ": the option --", option,
                         " is required\nusage: ", info.synopsis));
  }
}

std::array<double, 3> parse_spacing(const std::string& text) {
  std::array<double, 3> spacing{};
  std::istringstream in(text);
  char c1 = 0, c2 = 0;
  if (!(in >> spacing[0] >> c1 >> spacing[1] >> c2 >> spacing[2]) || c1 != ',' || c2 != ',' ||
      !in.eof() || spacing[0] <= 0 || spacing[1] <= 0 || spacing[2] <= 0) {
    throw InputError("--spacing", "", str("'", text, "', expected z,y,x in mm, each > 0"));
  }
  return spacing;
}

std::vector<int> parse_int_list(const std::string& text, const std::string& option) {
  std::vector<int> out;
  size_t begin = 0;
  while (begin <= text.size()) {
    const size_t end = std::min(text.find(',', begin), text.size());
    const std::string item = trim(text.substr(begin, end - begin));
    size_t used = 0;
    int value = 0;
    try {
      value = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || value < 1) {
      throw UsageError(str(option, " '", text, "': '", item, "' is not a positive integer (expected e.g. 1,2)"));
    }
    out.push_back(value);
    begin = end + 1;
  }
  return out;
}

}  // namespace cmaf::launch
