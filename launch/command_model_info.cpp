#include <iostream>

#include "model/cmaformer.h"
#include "model/model_info.h"
#include "launch/cli.h"
#include "launch/commands.h"

namespace cmaf::launch {

int run_model_info(int argc, char** argv) {
  const CommandLine info{
      "model-info", "cmaformer model-info [--preset P] [--input-size S] [--classes K] [--batch B]",
      "Describes a CMAformer: parameters per block and in total, forward FLOPs counted from the\n"
      "layers, an activation-memory estimate and the output shape. Presets: paper (widths\n"
      "16..512, 512x512), half (widths / 2, 256), quarter (widths / 4, 224), tiny (tests)."};
  std::string preset = "paper";
  int64_t input_size = 0, classes = 0, batch = 1;
  po::options_description options("model-info options");
  options.add_options()
      ("preset", po::value(&preset)->default_value(preset), "paper | half | quarter | tiny")
      ("input-size", po::value(&input_size), "H = W (a multiple of 32; default: the preset's)")
      ("classes", po::value(&classes), "output classes (default: the preset's, 9 = Synapse)")
      ("batch", po::value(&batch)->default_value(batch), "batch size for the per-batch totals");
  po::variables_map values;
  if (!parse_command_line(info, argc, argv, options, {}, values)) return 0;
  model::CmaformerConfig config = model::preset_config(preset);
  if (classes > 0) config.classes = classes;
  if (input_size > 0) config.input_size = input_size;
  model::Cmaformer network(config);
  const model::ModelInfo described =
      model::describe_model(*network, config.input_size, config.input_size, batch);
  std::cout << "CMAformer preset " << config.preset << ", input " << config.input_size << " x "
            << config.input_size << ", " << config.classes << " classes\n\n"
            << described.to_text(batch);
  return 0;
}

}  // namespace cmaf::launch
