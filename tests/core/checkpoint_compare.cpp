// checkpoint_compare A B: exit 0 when two checkpoint folders hold the same training state
// (model, EMA teacher and projection head tensors bit-equal, same step and multipliers), else
// prints the first difference and exits 1. Archive bytes cannot be compared: LibTorch writes a
// random serialization id into every archive.
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "core/model_weights.h"
#include "losses/boundary_contrastive.h"

namespace {

namespace fs = std::filesystem;

bool same_modules(const torch::nn::Module& a, const torch::nn::Module& b, const std::string& what) {
  const auto pa = a.named_parameters();
  const auto pb = b.named_parameters();
  for (const auto& p : pa) {
    if (!torch::equal(p.value(), pb[p.key()])) {
      std::cerr << what << ": parameter " << p.key() << " differs\n";
      return false;
    }
  }
  const auto ba = a.named_buffers();
  const auto bb = b.named_buffers();
  for (const auto& x : ba) {
    if (!torch::equal(x.value(), bb[x.key()])) {
      std::cerr << what << ": buffer " << x.key() << " differs\n";
      return false;
    }
  }
  return true;
}

bool same_weights(const fs::path& a, const fs::path& b) {
  cmaf::model::Cmaformer x(cmaf::core::read_weights_config(a.string()));
  cmaf::model::Cmaformer y(cmaf::core::read_weights_config(b.string()));
  cmaf::core::load_weights(*x, a.string());
  cmaf::core::load_weights(*y, b.string());
  return same_modules(*x, *y, a.filename().string());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: checkpoint_compare A B\n";
    return 2;
  }
  const fs::path a = argv[1];
  const fs::path b = argv[2];
  bool same = same_weights(a / "model.pt", b / "model.pt") && same_weights(a / "teacher.pt", b / "teacher.pt");
  const auto sa = nlohmann::json::parse(std::ifstream(a / "state.json"));
  const auto sb = nlohmann::json::parse(std::ifstream(b / "state.json"));
  if (sa["state"]["step"] != sb["state"]["step"] || sa["state"]["multipliers"] != sb["state"]["multipliers"]) {
    std::cerr << "step or multipliers differ: " << sa["state"].dump() << " vs " << sb["state"].dump() << "\n";
    same = false;
  }
  if (fs::exists(a / "projection_head.pt")) {
    const int64_t channels = cmaf::core::read_weights_config((a / "model.pt").string()).widths[1];
    cmaf::losses::ProjectionHead x(channels), y(channels);
    torch::load(x, (a / "projection_head.pt").string());
    torch::load(y, (b / "projection_head.pt").string());
    same = same && same_modules(*x, *y, "projection_head.pt");
  }
  if (same) std::cout << "same training state: " << a << " and " << b << "\n";
  return same ? 0 : 1;
}
