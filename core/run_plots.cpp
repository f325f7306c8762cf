#include "core/run_plots.h"

#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "core/checkpoint_store.h"
#include "core/model_weights.h"
#include "datastore/case_file.h"
#include "datastore/manifest.h"
#include "datastore/slice_augment.h"
#include "model/cmaformer.h"

namespace cmaf::core {
namespace {

namespace fs = std::filesystem;

struct Series {
  std::vector<nlohmann::json> steps;  // metrics lines with "loss"
  std::vector<nlohmann::json> vals;   // metrics lines with "val_dice"
  std::vector<nlohmann::json> pools;  // metrics lines with "pool" (one per published version)
  bool has_ldc = false;               // some step logged LDC constraints
  bool has_active_constraint = false;  // ... and one of them was active (not null)
  bool has_unlabeled = false;         // some step had unlabeled targets
  double prior_ratio = 0.0;           // the pool's organ gate (0: none)
};

Series read_metrics(const std::string& run_dir) {
  const fs::path path = fs::path(run_dir) / "metrics.jsonl";
  std::ifstream in(path);
  if (!in) throw InputError(path.string(), "", "missing: not a training run folder (cmaformer train --run-dir)");
  Series s;
  std::string line;
  int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw InputError(path.string(), str("line ", number), e.what());
    }
    if (j.contains("loss")) {
      s.has_ldc |= j.contains("constraints") && !j["constraints"].empty();
      if (j.contains("constraints")) {
        for (const auto& c : j["constraints"]) s.has_active_constraint |= !c.is_null();
      }
      s.has_unlabeled |= j.value("confident_fraction", 0.0) > 0.0;
      s.steps.push_back(std::move(j));
    } else if (j.contains("val_dice")) {
      s.vals.push_back(std::move(j));
    } else if (j.contains("pool")) {
      bool has_prior = false;
      const nlohmann::json classes = j["pool"].value("classes", nlohmann::json::object());
      for (const auto& item : classes.items()) {
        has_prior |= item.value().value("prior_share", 0.0) > 0.0;
      }
      if (has_prior) s.prior_ratio = std::max(s.prior_ratio, j["pool"].value("prior_ratio", 0.0));
      s.pools.push_back(std::move(j));
    }
  }
  s.has_unlabeled |= s.has_ldc || !s.pools.empty();
  if (s.steps.empty()) throw InputError(path.string(), "", "holds no logged step yet");
  return s;
}

std::string number(const nlohmann::json& v) { return v.is_null() ? "NaN" : str(v.get<double>()); }

// Organ names of the run, from its dataset's classes (multipliers index foreground classes).
std::vector<std::string> organ_names(const nlohmann::json& config, size_t count) {
  std::vector<std::string> names;
  try {
    const auto manifest = datastore::load_manifest(config.at("data").get<std::string>());
    for (size_t c = 1; c < manifest.classes.size(); ++c) names.push_back(manifest.classes[c]);
  } catch (const std::exception&) {
    // The dataset may have moved: number the classes instead.
  }
  while (names.size() < count) names.push_back(str("class_", names.size() + 1));
  return names;
}

void write_series(const fs::path& data, const Series& s, const std::vector<std::string>& organs) {
  std::ofstream losses(data / "losses.dat");
  losses << "# step total supervised cross_entropy dice ldc contrastive\n";
  std::ofstream multipliers(data / "multipliers.dat");
  multipliers << "# step lambda_1..lambda_K constraint_1..constraint_K\n";
  std::ofstream teacher(data / "teacher.dat");
  teacher << "# step confident_fraction lr\n";
  for (const auto& j : s.steps) {
    const auto& l = j["loss"];
    losses << j["step"] << ' ' << number(l["total"]) << ' ' << number(l["supervised"]) << ' '
           << number(l["cross_entropy"]) << ' ' << number(l["dice"]) << ' ' << number(l["ldc"]) << ' '
           << number(l["contrastive"]) << '\n';
    multipliers << j["step"];
    const auto& lambdas = j["multipliers"];
    const auto& constraints = j["constraints"];
    for (size_t c = 0; c < organs.size(); ++c) multipliers << ' ' << (c < lambdas.size() ? number(lambdas[c]) : "NaN");
    for (size_t c = 0; c < organs.size(); ++c) {
      multipliers << ' ' << (c < constraints.size() ? number(constraints[c]) : "NaN");
    }
    multipliers << '\n';
    teacher << j["step"] << ' ' << number(j["confident_fraction"]) << ' ' << number(j["lr"]) << '\n';
  }
  std::ofstream pool(data / "pool.dat");
  pool << "# step acceptance_1..acceptance_K threshold_1..threshold_K share_ratio_1..share_ratio_K (acceptance: "
          "confident / predicted pixels; share ratio: confident share of the pool / share in the labeled cases)\n";
  for (const auto& j : s.pools) {
    const auto& classes = j["pool"]["classes"];
    pool << j["step"];
    for (const auto& name : organs) {
      const bool known = classes.contains(name);
      const double predicted = known ? classes[name].value("predicted_pixels", 0.0) : 0.0;
      pool << ' ' << (predicted > 0 ? number(classes[name].value("confident_pixels", 0.0) / predicted) : "NaN");
    }
    for (const auto& name : organs) pool << ' ' << (classes.contains(name) ? number(classes[name]["threshold"]) : "NaN");
    for (const auto& name : organs) {
      const double prior = classes.contains(name) ? classes[name].value("prior_share", 0.0) : 0.0;
      // Log scale from 1e-3 (no confident pixel) to 100.
      const double ratio = prior > 0 ? classes[name].value("confident_share", 0.0) / prior : 0.0;
      pool << ' ' << (prior > 0 ? str(std::clamp(ratio, 1e-3, 100.0)) : "NaN");
    }
    pool << '\n';
  }
  std::ofstream val(data / "val_dice.dat");
  val << "# step mean organ_1..organ_K\n";
  for (const auto& j : s.vals) {
    val << j["step"] << ' ' << number(j["val_mean_dice"]);
    for (const auto& name : organs) {
      const auto& dice = j["val_dice"];
      val << ' ' << (dice.contains(name) ? number(dice[name]) : "NaN");
    }
    val << '\n';
  }
}

// Distinct colours for up to 12 organs (then they repeat).
constexpr std::array<std::array<int, 3>, 12> kPalette{{{230, 25, 75}, {60, 180, 75}, {255, 225, 25}, {0, 130, 200},
                                                      {245, 130, 48}, {145, 30, 180}, {70, 240, 240}, {240, 50, 230},
                                                      {210, 245, 60}, {250, 190, 212}, {0, 128, 128}, {170, 110, 40}}};

// One image of rows "x y r g b" for gnuplot's rgbimage: the slice in grey with the truth blended
// in colour on the left, with the prediction on the right, a white gap between (one regular
// grid: gnuplot infers the pixel grid from the points).
void write_overlay(std::ostream& out, const float* image, const uint8_t* truth, const uint8_t* prediction, int64_t s) {
  const float lo = *std::min_element(image, image + s * s);
  const float hi = *std::max_element(image, image + s * s);
  const float range = hi > lo ? hi - lo : 1.0F;
  constexpr int64_t kGap = 4;
  for (int64_t y = 0; y < s; ++y) {
    for (int64_t x = 0; x < 2 * s + kGap; ++x) {
      std::array<int, 3> rgb{255, 255, 255};
      const bool left = x < s;
      const bool right = x >= s + kGap;
      if (left || right) {
        const int64_t i = y * s + (left ? x : x - s - kGap);
        const int grey = static_cast<int>(255.0F * (image[i] - lo) / range);
        rgb = {grey, grey, grey};
        if (const int c = left ? truth[i] : prediction[i]; c > 0) {
          const auto& p = kPalette[static_cast<size_t>(c - 1) % kPalette.size()];
          for (size_t k = 0; k < 3; ++k) rgb[k] = (rgb[k] * 2 + p[k] * 3) / 5;
        }
      }
      out << x << ' ' << s - 1 - y << ' ' << rgb[0] << ' ' << rgb[1] << ' ' << rgb[2] << '\n';
    }
    out << '\n';
  }
}

// Writes data/overlay_<i>.dat for the val slices with the most foreground; returns how many.
int64_t write_overlays(const fs::path& data, const nlohmann::json& config, const std::string& checkpoint,
                       int64_t count) {
  const std::string dataset = config.at("data").get<std::string>();
  const auto manifest = datastore::load_manifest(dataset);
  std::vector<std::pair<int64_t, std::pair<std::string, int64_t>>> candidates;  // (foreground, (file, slice))
  for (const datastore::Split split : {datastore::Split::kVal, datastore::Split::kTest}) {
    for (const auto& c : manifest.cases) {
      if (c.split != split || !c.has_label) continue;
      const datastore::CaseFile file((fs::path(dataset) / c.file).string());
      const auto label = file.read_label(datastore::LabelUse::kEvaluation);
      const int64_t n = c.shape[1] * c.shape[2];
      for (int64_t z = 0; z < c.slices(); ++z) {
        const auto fg = std::count_if(label.begin() + z * n, label.begin() + (z + 1) * n, [](uint8_t v) { return v > 0; });
        candidates.push_back({fg, {c.file, z}});
      }
    }
    if (!candidates.empty()) break;
  }
  if (candidates.empty()) return 0;
  std::sort(candidates.begin(), candidates.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  const std::string weights = (fs::path(checkpoint) / "model.pt").string();
  model::Cmaformer model(read_weights_config(weights));
  load_weights(*model, weights);
  model->eval();
  const int64_t s = model->config().input_size;
  const int64_t shown = std::min<int64_t>(count, static_cast<int64_t>(candidates.size()));
  torch::NoGradGuard no_grad;
  for (int64_t i = 0; i < shown; ++i) {
    const auto& [file_name, z] = candidates[static_cast<size_t>(i)].second;
    const datastore::CaseFile file((fs::path(dataset) / file_name).string());
    const auto& shape = file.metadata().geometry.shape;
    std::vector<float> image(static_cast<size_t>(shape[1] * shape[2]));
    std::vector<uint8_t> label(image.size());
    file.read_image_slice(z, image.data());
    file.read_label_slice(z, datastore::LabelUse::kEvaluation, label.data());
    const datastore::SliceWarp resize(shape[1], shape[2], s, s, datastore::GeometricParams{});
    torch::Tensor x = torch::empty({1, 1, s, s});
    std::vector<uint8_t> truth(static_cast<size_t>(s * s));
    datastore::warp_image(image.data(), resize, x.data_ptr<float>());
    datastore::warp_label(label.data(), resize, truth.data());
    const torch::Tensor prediction = model->forward(x).argmax(1).to(torch::kUInt8).contiguous();
    std::ofstream out(data / str("overlay_", i, ".dat"));
    write_overlay(out, x.data_ptr<float>(), truth.data(), prediction.data_ptr<uint8_t>(), s);
  }
  return shown;
}

std::string gnuplot_script(const fs::path& plots, const std::vector<std::string>& organs, const Series& series,
                           int64_t overlays, const std::string& checkpoint) {
  std::ostringstream g;
  const auto png = [&](const char* name, int w, int h) {
    g << "set terminal pngcairo noenhanced size " << w << "," << h << " font ',10'\nset output '" << (plots / name).string() << "'\n";
  };
  const std::string data = (plots / "data").string();
  g << "set grid\nset key outside right\nset xlabel 'step'\n";
  png("losses.png", 1000, 500);
  g << "set title 'Loss terms (unlabeled terms before the ramp-up weight)'\nplot ";
  const char* loss_names[] = {"total", "supervised", "cross-entropy", "1 - Dice", "LDC", "contrastive"};
  for (int c = 0; c < 6; ++c) {
    g << (c ? ", " : "") << "'" << data << "/losses.dat' using 1:" << c + 2 << " with lines lw 2 title '" << loss_names[c] << "'";
  }
  g << "\n";
  // One curve per organ from columns first .. first + K - 1 of a data file.
  const auto per_organ = [&](const char* file, size_t first, const char* style) {
    g << "plot ";
    for (size_t c = 0; c < organs.size(); ++c) {
      g << (c ? ", " : "") << "'" << data << "/" << file << "' using 1:" << first + c << " with " << style
        << " lw 2 title '" << organs[c] << "'";
    }
    g << "\n";
  };
  if (series.has_ldc) {
    if (series.has_active_constraint) {
      png("multipliers.png", 1000, 800);
      g << "set multiplot layout 2,1\nset title 'Lagrange multiplier per organ'\n";
      per_organ("multipliers.dat", 2, "lines");
      // Gaps: steps whose targets held no pixel of the organ (constraint inactive, logged null).
      g << "set title 'LDC constraint C = 1 - Dice(student, target) per organ (gaps: organ absent from the targets)'\n";
      per_organ("multipliers.dat", 2 + organs.size(), "linespoints pt 7 ps 0.4");
      g << "unset multiplot\n";
    } else {
      png("multipliers.png", 1000, 500);
      g << "set title 'Lagrange multiplier per organ (no constraint was ever active: the targets held no organ)'\n";
      per_organ("multipliers.dat", 2, "lines");
    }
  }
  if (!series.pools.empty()) {
    png("pool.png", 1000, 800);
    g << "set multiplot layout 2,1\nset title 'Pseudo-label pool: share of the pixels the teacher assigns to each organ at or above its threshold'\n"
      << "set yrange [0:1]\n";
    per_organ("pool.dat", 2, "linespoints");
    if (series.prior_ratio > 0) {
      // The organ gate's view: outside [1/r, r] (the dashed lines) an organ is left out.
      g << "set title 'Organ gate: confident share of the pool / share in the labeled cases (kept within "
        << series.prior_ratio << "x, dashed; none at 1e-3)'\nset logscale y\nset yrange [5e-4:200]\n"
        << "set arrow 1 from graph 0, first " << 1.0 / series.prior_ratio << " to graph 1, first "
        << 1.0 / series.prior_ratio << " nohead dt 2\nset arrow 2 from graph 0, first " << series.prior_ratio
        << " to graph 1, first " << series.prior_ratio << " nohead dt 2\n";
      per_organ("pool.dat", 2 + 2 * organs.size(), "linespoints");
      g << "unset arrow 1\nunset arrow 2\nunset logscale y\n";
    } else {
      g << "set title 'Pool confidence threshold per organ'\n";
      per_organ("pool.dat", 2 + organs.size(), "linespoints");
    }
    g << "unset multiplot\nset autoscale y\n";
  }
  if (!series.vals.empty()) {
    png("val_dice.png", 1000, 500);
    g << "set title 'Validation Dice (val slices at the network input)'\nset yrange [0:1]\nplot '" << data
      << "/val_dice.dat' using 1:2 with linespoints lw 3 lc rgb 'black' title 'mean'";
    for (size_t c = 0; c < organs.size(); ++c) {
      g << ", '" << data << "/val_dice.dat' using 1:" << c + 3 << " with linespoints lw 1 title '" << organs[c] << "'";
    }
    g << "\nset autoscale y\n";
  }
  if (series.has_unlabeled) {
    png("teacher.png", 1000, 400);
    g << "set title 'Unlabeled pixels the EMA teacher is confident about (used as targets)'\nset yrange [0:1]\n"
      << "plot '" << data << "/teacher.dat' using 1:2 with lines lw 2 title 'confident fraction'\nset autoscale y\n";
  }
  if (overlays > 0) {
    png("overlays.png", 900, static_cast<int>(260 * overlays));
    g << "unset grid\nunset key\nunset xlabel\nunset tics\nunset border\nset size ratio -1\n"
      << "set multiplot layout " << overlays << ",1 title 'left: truth, right: prediction of "
      << fs::path(checkpoint).filename().string() << "'\n";
    for (int64_t i = 0; i < overlays; ++i) {
      g << "set title ''\nplot '" << data << "/overlay_" << i << ".dat' using 1:2:3:4:5 with rgbimage\n";
    }
    g << "unset multiplot\n";
  }
  return g.str();
}

}  // namespace

std::vector<std::string> plot_run(const PlotOptions& o) {
  const Series series = read_metrics(o.run_dir);
  const fs::path config_path = fs::path(o.run_dir) / "config.json";
  const nlohmann::json config = nlohmann::json::parse(std::ifstream(config_path), nullptr, false);
  if (config.is_discarded()) throw InputError(config_path.string(), "", "missing or not JSON");
  const size_t organ_count = series.steps.back()["multipliers"].size();
  const std::vector<std::string> organs = organ_names(config, organ_count);
  const fs::path plots = fs::path(o.run_dir) / "plots";
  fs::create_directories(plots / "data");
  for (const char* name : {"losses.png", "multipliers.png", "pool.png", "val_dice.png", "teacher.png", "overlays.png"}) {
    fs::remove(plots / name);  // a figure this run cannot draw must not survive from an earlier call
  }
  write_series(plots / "data", series, organs);
  std::string checkpoint = o.checkpoint;
  if (checkpoint.empty() && o.overlay_slices > 0) {
    std::vector<std::string> skipped;
    const auto latest = latest_valid_checkpoint(o.run_dir, &skipped);
    if (latest) checkpoint = latest->path;
  }
  const int64_t overlays =
      checkpoint.empty() || o.overlay_slices <= 0 ? 0 : write_overlays(plots / "data", config, checkpoint, o.overlay_slices);
  const std::string script = gnuplot_script(plots, organs, series, overlays, checkpoint);
  std::ofstream(plots / "data" / "plots.gnuplot") << script;
  const std::string command = str(o.gnuplot, " '", (plots / "data" / "plots.gnuplot").string(), "' 2>&1");
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) throw IoError(str("cannot run ", o.gnuplot));
  std::string output;
  std::array<char, 512> buffer{};
  while (fgets(buffer.data(), buffer.size(), pipe) != nullptr) output += buffer.data();
  const int status = pclose(pipe);
  if (status != 0) {
    throw IoError(str(o.gnuplot, " failed (status ", status, ")", output.empty() ? "" : ": " + output,
                      status == 127 * 256 ? " -- install Debian's gnuplot-nox" : ""));
  }
  std::vector<std::string> written;
  for (const char* name : {"losses.png", "multipliers.png", "pool.png", "val_dice.png", "teacher.png", "overlays.png"}) {
    if (fs::exists(plots / name)) written.push_back((plots / name).string());
  }
  return written;
}

}  // namespace cmaf::core
