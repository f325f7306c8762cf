// The subcommands of the `cmaformer` executable. Each parses its options (cli.h) and calls
// into the libraries; it returns the process exit code and lets cmaf::Error propagate.
#pragma once

#include <vector>

namespace cmaf::launch {

struct Command {
  const char* name;
  const char* summary;  // one line for `cmaformer --help`
  int (*run)(int argc, char** argv);  // argv[0] is the subcommand name
};

const std::vector<Command>& commands();

int run_synth(int argc, char** argv);
int run_prep(int argc, char** argv);
int run_inspect(int argc, char** argv);
int run_env(int argc, char** argv);
int run_model_info(int argc, char** argv);
int run_bench(int argc, char** argv);
int run_train(int argc, char** argv);
int run_metrics(int argc, char** argv);
int run_eval(int argc, char** argv);
int run_infer(int argc, char** argv);
int run_plot(int argc, char** argv);
int run_merge(int argc, char** argv);

// `cmaformer <args>`: dispatch, error reporting, exit codes (0 ok, 1 error, 2 usage).
int main_entry(int argc, char** argv);

}  // namespace cmaf::launch
