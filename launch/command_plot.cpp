#include <iostream>

#include "core/run_plots.h"
#include "launch/cli.h"
#include "launch/commands.h"

namespace cmaf::launch {

int run_plot(int argc, char** argv) {
  const CommandLine info{
      "plot", "cmaformer plot RUN [--checkpoint CKPT] [--overlay-slices N]",
      "Renders PNG figures of a training run with gnuplot (Debian gnuplot-nox) into RUN/plots:\n"
      "losses; Lagrange multipliers and constraints per organ (runs with LDC); pseudo-label pool\n"
      "acceptance and thresholds per organ (runs with a pool); validation Dice per organ (runs with\n"
      "a val split); the EMA teacher's confident share (runs with unlabeled slices); prediction\n"
      "overlays on val (else test) slices with the newest valid checkpoint. A figure without data\n"
      "is not drawn."};
  core::PlotOptions o;
  po::options_description options("plot options");
  options.add_options()
      ("run", po::value(&o.run_dir), "run folder (cmaformer train --run-dir)")
      ("checkpoint", po::value(&o.checkpoint), "checkpoint for the overlays (default: the newest valid one)")
      ("overlay-slices", po::value(&o.overlay_slices)->default_value(o.overlay_slices), "val slices shown, 0 = none")
      ("gnuplot", po::value(&o.gnuplot)->default_value(o.gnuplot), "gnuplot executable");
  po::positional_options_description positional;
  positional.add("run", 1);
  po::variables_map values;
  if (!parse_command_line(info, argc, argv, options, positional, values)) return 0;
  require(values, "run", info);
  for (const std::string& png : core::plot_run(o)) std::cout << png << "\n";
  return 0;
}

}  // namespace cmaf::launch
