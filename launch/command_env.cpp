#include <iostream>

#include "core/environment_report.h"
#include "launch/cli.h"
#include "launch/commands.h"

namespace cmaf::launch {

int run_env(int argc, char** argv) {
  const CommandLine info{
      "env", "cmaformer env [--no-blas-check]",
      "Prints versions, LibTorch's threading and a measured fp32 matmul rate. Exit status 1\n"
      "when the matmul rate shows the slow reference BLAS."};
  bool no_blas_check = false;
  po::options_description options("env options");
  options.add_options()("no-blas-check", po::bool_switch(&no_blas_check), "skip the matmul timing");
  po::variables_map values;
  if (!parse_command_line(info, argc, argv, options, {}, values)) return 0;
  const core::EnvironmentReport report = core::environment_report(!no_blas_check);
  std::cout << report.text;
  return report.blas_ok ? 0 : 1;
}

}  // namespace cmaf::launch
