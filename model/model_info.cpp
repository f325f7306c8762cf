#include "model/model_info.h"

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <iomanip>
#include <map>
#include <sstream>

#include "common/error.h"

namespace cmaf::model {
namespace {

struct BlockGeometry {
  int64_t channels;
  int64_t divisor;  // output resolution = input / divisor
  bool tokens;      // a transformer stage: [N, C] tokens
};

// Output of each top-level block, from METHOD.md's forward table.
std::map<std::string, BlockGeometry> block_geometry(const CmaformerConfig& c) {
  const auto& f = c.widths;
  return {{"stem", {f[0], 1, false}},      {"embed1", {f[1], 2, false}},
          {"channel1", {f[1], 2, false}},  {"down1", {f[2], 4, false}},
          {"embed2", {f[3], 8, false}},    {"channel2", {f[3], 8, false}},
          {"down2", {f[4], 16, false}},    {"embed3", {f[5], 32, false}},
          {"channel3", {f[5], 32, false}}, {"bottleneck", {f[5], 32, false}},
          {"encoder", {f[5], 32, true}},   {"bridge", {f[5], 32, false}},
          {"decoder", {f[5], 32, true}},   {"gate1", {f[5], 32, false}},
          {"up1", {f[4], 16, false}},      {"gate2", {f[4], 16, false}},
          {"up2", {f[3], 4, false}},       {"gate3", {f[3], 4, false}},
          {"up3", {f[1], 1, false}},       {"head_aspp", {f[0], 1, false}},
          {"head", {c.classes, 1, false}}};
}

void add_layer_costs(const torch::nn::Module& module, const BlockGeometry& g, int64_t pixels,
                     BlockInfo& info) {
  constexpr int64_t kFloat = 4;
  for (const auto& child : module.modules(/*include_self=*/true)) {
    if (const auto* conv = child->as<torch::nn::Conv2d>()) {
      info.flops += 2.0 * static_cast<double>(conv->weight.numel()) * static_cast<double>(pixels);
      info.activation_bytes += 3 * conv->weight.size(0) * pixels * kFloat;
    } else if (const auto* linear = child->as<torch::nn::Linear>()) {
      const int64_t rows = g.tokens ? pixels : 1;  // squeeze-excitation works on pooled vectors
      info.flops += 2.0 * static_cast<double>(linear->weight.numel()) * static_cast<double>(rows);
      info.activation_bytes += 4 * linear->weight.size(0) * rows * kFloat;
    } else if (const auto* attention = child->as<torch::nn::MultiheadAttention>()) {
      const int64_t width = attention->options.embed_dim();
      const int64_t heads = attention->options.num_heads();
      info.flops += 2.0 * static_cast<double>(attention->in_proj_weight.numel()) * pixels;
      info.flops += 4.0 * static_cast<double>(pixels) * pixels * width;  // QK^T and AV
      info.activation_bytes += 2 * heads * pixels * pixels * kFloat;     // scores, softmax
    }
  }
}

std::string human(double value, const char* unit) {
  std::ostringstream out;
  const char* prefixes[] = {"", "K", "M", "G", "T"};
  int p = 0;
  while (value >= 1000.0 && p < 4) {
    value /= 1000.0;
    ++p;
  }
  out << std::fixed << std::setprecision(value < 10 ? 2 : 1) << value << " " << prefixes[p] << unit;
  return out.str();
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out;
  for (int64_t s : shape) out += (out.empty() ? "" : " x ") + std::to_string(s);
  return out;
}

}  // namespace

ModelInfo describe_model(CmaformerImpl& model, int64_t height, int64_t width, int64_t batch) {
  check_input_size(height, width);
  const auto geometry = block_geometry(model.config());
  ModelInfo info;
  const auto children = model.named_children();
  for (const std::string& name : CmaformerImpl::block_names()) {
    const BlockGeometry& g = geometry.at(name);
    const int64_t h = height / g.divisor;
    const int64_t w = width / g.divisor;
    BlockInfo block;
    block.name = name;
    block.output_shape = g.tokens ? std::vector<int64_t>{h * w, g.channels}
                                  : std::vector<int64_t>{g.channels, h, w};
    const auto& module = *children[name];
    for (const auto& p : module.parameters()) block.parameters += p.numel();
    add_layer_costs(module, g, h * w, block);
    info.parameters += block.parameters;
    info.flops += block.flops;
    info.activation_bytes += block.activation_bytes;
    info.blocks.push_back(std::move(block));
  }
  CMAF_CHECK_EQ(static_cast<size_t>(info.blocks.size()), children.size(),
                "every registered block is described");
  info.output_shape = {batch, model.config().classes, height, width};
  return info;
}

std::string ModelInfo::to_text(int64_t batch) const {
  std::ostringstream out;
  out << std::left << std::setw(12) << "block" << std::right << std::setw(14) << "parameters"
      << std::setw(16) << "GFLOP/sample" << std::setw(16) << "act. MB/sample" << "  output (one sample)\n";
  for (const BlockInfo& b : blocks) {
    out << std::left << std::setw(12) << b.name << std::right << std::setw(14) << b.parameters
        << std::setw(16) << std::fixed << std::setprecision(3) << b.flops / 1e9 << std::setw(16)
        << std::setprecision(1) << static_cast<double>(b.activation_bytes) / 1e6 << "  "
        << shape_text(b.output_shape) << "\n";
  }
  out << "\nparameters: " << parameters << " (" << human(static_cast<double>(parameters), "") << ", "
      << std::setprecision(1) << static_cast<double>(parameters) * 4 / 1e6 << " MB fp32)\n"
      << "forward: " << human(flops, "FLOP") << " per sample (" << human(flops / 2, "MAC")
      << "), " << human(flops * static_cast<double>(batch), "FLOP") << " per batch of " << batch
      << "; forward + backward ~ 3x\n"
      << "activation memory (estimate, fp32, kept for backward): "
      << human(static_cast<double>(activation_bytes), "B") << " per sample, "
      << human(static_cast<double>(activation_bytes) * static_cast<double>(batch), "B")
      << " per batch\n"
      << "output: " << shape_text(output_shape) << "\n";
  return out.str();
}

}  // namespace cmaf::model
