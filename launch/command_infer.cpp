#include <iostream>

#include "cluster/process_runtime.h"
#include "core/inference.h"
#include "launch/cli.h"
#include "launch/commands.h"

namespace cmaf::launch {

int run_infer(int argc, char** argv) {
  const CommandLine info{
      "infer",
      "cmaformer infer --checkpoint CKPT --input SCAN.nii.gz|DIR --output SEG.nii.gz|DIR [--site S] [--flip-tta] [--largest-component]",
      "Segments new scans with a checkpoint folder: the scan is normalised as the training data was\n"
      "(recorded in the checkpoint), predicted slice by slice, and written as a label NIfTI with the\n"
      "input's dimensions and affine. A folder input gives a folder of <case>.nii.gz (nnU-Net's\n"
      "_0000 channel suffix dropped)."};
  core::InferOptions o;
  int threads = 0;
  po::options_description options("infer options");
  options.add_options()
      ("checkpoint", po::value(&o.checkpoint), "checkpoint folder (RUN/checkpoints/step-N)")
      ("input", po::value(&o.input), "a NIfTI scan or a folder of them")
      ("output", po::value(&o.output), "output NIfTI path, or folder for a folder input")
      ("site", po::value(&o.site), "whose preprocessing to apply when the training sites differ")
      ("flip-tta", po::bool_switch(&o.flip_tta), "average with the left-right flipped prediction")
      ("largest-component", po::bool_switch(&o.largest_component), "keep each organ's largest 3-D connected component (26-connectivity), the rest background")
      ("batch", po::value(&o.batch)->default_value(o.batch), "slices per forward")
      ("threads", po::value(&threads)->default_value(threads), "LibTorch threads, 0 = the CPUs in this process's affinity mask (capped by a cgroup CPU quota)");
  po::variables_map values;
  if (!parse_command_line(info, argc, argv, options, {}, values)) return 0;
  for (const char* required : {"checkpoint", "input", "output"}) require(values, required, info);
  cluster::RuntimeOptions runtime_options;
  runtime_options.threads = threads;
  auto runtime = cluster::ProcessRuntime::start(&argc, &argv, runtime_options);
  const int64_t done = core::run_inference(o);
  std::cout << "segmented " << done << " scan" << (done == 1 ? "" : "s") << " -> " << o.output << "\n";
  runtime.reset();
  return 0;
}

}  // namespace cmaf::launch
