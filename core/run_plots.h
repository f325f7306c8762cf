// `cmaformer plot RUN`: PNG figures of a training run, rendered by gnuplot (Debian gnuplot-nox):
//   RUN/plots/losses.png       loss terms per logged step
//   RUN/plots/multipliers.png  Lagrange multiplier and constraint value per organ
//   RUN/plots/val_dice.png     validation Dice per organ and the mean
//   RUN/plots/teacher.png      share of unlabeled pixels the EMA teacher is confident about
//                              (the targets' acceptance: the pseudo-label pool is not built)
//   RUN/plots/overlays.png     a few val slices: truth and prediction of a checkpoint over the image
// The data behind each figure is written beside it (plots/data/*.dat) with the gnuplot script.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cmaf::core {

struct PlotOptions {
  std::string run_dir;
  std::string checkpoint;      // "" = the newest valid checkpoint of the run
  int64_t overlay_slices = 4;  // 0 = no overlay figure
  std::string gnuplot = "gnuplot";
};

// Returns the PNG files written. Throws InputError for a run folder without metrics.jsonl,
// IoError when gnuplot is missing or fails (its messages included).
std::vector<std::string> plot_run(const PlotOptions& options);

}  // namespace cmaf::core
