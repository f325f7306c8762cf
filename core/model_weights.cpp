#include "core/model_weights.h"

#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <filesystem>
#include <sstream>

#include "common/atomic_file.h"
#include "common/error.h"

namespace cmaf::core {
namespace {

std::string shape_of(const torch::Tensor& t) {
  std::ostringstream out;
  out << t.sizes();
  return out.str();
}

torch::serialize::InputArchive open_archive(const std::string& path) {
  if (!std::filesystem::exists(path)) throw InputError(path, "", "file does not exist");
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path, torch::Device(torch::kCPU));  // weights saved on a GPU load anywhere
  } catch (const c10::Error& e) {
    throw InputError(path, "", str("not a LibTorch weights archive (", e.what_without_backtrace(), ")"));
  }
  return archive;
}

}  // namespace

void save_weights(model::CmaformerImpl& model, const std::string& path) {
  torch::serialize::OutputArchive archive;
  for (const auto& p : model.named_parameters()) archive.write(p.key(), p.value());
  for (const auto& b : model.named_buffers()) archive.write(b.key(), b.value(), /*is_buffer=*/true);
  archive.write(kConfigKey, c10::IValue(model.config().to_json().dump()));
  AtomicFile file(path);
  try {
    archive.save_to(file.temp_path());
  } catch (const c10::Error& e) {
    throw IoError(str(path, ": saving weights failed: ", e.what_without_backtrace()));
  }
  file.commit();
}

model::CmaformerConfig read_weights_config(const std::string& path) {
  torch::serialize::InputArchive archive = open_archive(path);
  c10::IValue value;
  if (!archive.try_read(kConfigKey, value) || !value.isString()) {
    throw InputError(path, kConfigKey, "missing: not a cmaformer weights file");
  }
  return model::CmaformerConfig::from_json(nlohmann::json::parse(value.toStringRef()), path);
}

void load_weights(model::CmaformerImpl& model, const std::string& path) {
  torch::serialize::InputArchive archive = open_archive(path);
  c10::IValue stored_config;
  std::string stored_preset = "unknown";
  if (archive.try_read(kConfigKey, stored_config) && stored_config.isString()) {
    stored_preset = nlohmann::json::parse(stored_config.toStringRef()).value("preset", "unknown");
  }
  const std::string context =
      str(" (file preset '", stored_preset, "', model preset '", model.config().preset, "', ",
          model.config().classes, " classes)");
  // Read and check everything first: a mismatch leaves the model untouched.
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;
  auto collect = [&](const std::string& name, const torch::Tensor& target, bool is_buffer) {
    torch::Tensor stored;
    if (!archive.try_read(name, stored, is_buffer)) {
      throw InputError(path, name, "missing from the weights file" + context);
    }
    if (stored.sizes() != target.sizes()) {
      throw InputError(path, name,
                       str("shape ", shape_of(stored), " in the file, ", shape_of(target),
                           " in the model", context));
    }
    copies.emplace_back(target, stored);
  };
  for (const auto& p : model.named_parameters()) collect(p.key(), p.value(), false);
  for (const auto& b : model.named_buffers()) collect(b.key(), b.value(), true);
  torch::NoGradGuard no_grad;
  for (auto& [target, stored] : copies) target.copy_(stored);
}

}  // namespace cmaf::core
