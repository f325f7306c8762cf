#include "core/segmentation_metrics.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <sstream>

#include "common/atomic_file.h"
#include "common/error.h"
#include "core/distance_transform.h"

namespace cmaf::core {
namespace {

namespace fs = std::filesystem;
using Shape = std::array<int64_t, 3>;

// The masks of one class cropped to the bounding box of both, with one voxel of background
// around it (so surfaces at the volume's border are found, as with medpy's border_value 0).
struct Crop {
  Shape shape{0, 0, 0};
  std::vector<uint8_t> prediction, truth;
};

Crop crop(const std::vector<uint8_t>& prediction, const std::vector<uint8_t>& truth, Shape shape, int label) {
  Shape lo{shape[0], shape[1], shape[2]};
  Shape hi{-1, -1, -1};
  const int64_t hw = shape[1] * shape[2];
  for (int64_t i = 0; i < static_cast<int64_t>(truth.size()); ++i) {
    if (prediction[static_cast<size_t>(i)] != label && truth[static_cast<size_t>(i)] != label) continue;
    const Shape at{i / hw, (i / shape[2]) % shape[1], i % shape[2]};
    for (int a = 0; a < 3; ++a) {
      lo[a] = std::min(lo[a], at[a]);
      hi[a] = std::max(hi[a], at[a]);
    }
  }
  Crop c;
  for (int a = 0; a < 3; ++a) c.shape[a] = hi[a] - lo[a] + 3;
  const auto n = static_cast<size_t>(c.shape[0] * c.shape[1] * c.shape[2]);
  c.prediction.assign(n, 0);
  c.truth.assign(n, 0);
  for (int64_t z = lo[0]; z <= hi[0]; ++z) {
    for (int64_t y = lo[1]; y <= hi[1]; ++y) {
      for (int64_t x = lo[2]; x <= hi[2]; ++x) {
        const auto src = static_cast<size_t>(z * hw + y * shape[2] + x);
        const auto dst = static_cast<size_t>(((z - lo[0] + 1) * c.shape[1] + (y - lo[1] + 1)) * c.shape[2] + (x - lo[2] + 1));
        c.prediction[dst] = prediction[src] == label;
        c.truth[dst] = truth[src] == label;
      }
    }
  }
  return c;
}

// Voxels of the mask with a 6-neighbour outside it. The crop's margin keeps neighbours in range.
std::vector<uint8_t> surface(const std::vector<uint8_t>& mask, Shape s) {
  std::vector<uint8_t> out(mask.size(), 0);
  const int64_t hw = s[1] * s[2];
  for (int64_t z = 1; z + 1 < s[0]; ++z) {
    for (int64_t y = 1; y + 1 < s[1]; ++y) {
      for (int64_t x = 1; x + 1 < s[2]; ++x) {
        const int64_t i = z * hw + y * s[2] + x;
        if (!mask[static_cast<size_t>(i)]) continue;
        const bool inner = mask[static_cast<size_t>(i - 1)] && mask[static_cast<size_t>(i + 1)] &&
                           mask[static_cast<size_t>(i - s[2])] && mask[static_cast<size_t>(i + s[2])] &&
                           mask[static_cast<size_t>(i - hw)] && mask[static_cast<size_t>(i + hw)];
        out[static_cast<size_t>(i)] = !inner;
      }
    }
  }
  return out;
}

// Distances from the surface voxels of `from` to the nearest surface voxel whose squared
// distance map is `to_distance`.
std::vector<double> directed(const std::vector<uint8_t>& from_surface, const std::vector<double>& to_distance) {
  std::vector<double> out;
  for (size_t i = 0; i < from_surface.size(); ++i) {
    if (from_surface[i]) out.push_back(std::sqrt(to_distance[i]));
  }
  return out;
}

double percentile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  const double position = q / 100.0 * static_cast<double>(values.size() - 1);
  const auto below = static_cast<size_t>(std::floor(position));
  const size_t above = std::min(below + 1, values.size() - 1);
  return values[below] + (position - static_cast<double>(below)) * (values[above] - values[below]);
}

double mean(const std::vector<double>& v) {
  double sum = 0.0;
  for (double x : v) sum += x;
  return sum / static_cast<double>(v.size());
}

struct SurfaceDistances {
  double hd95 = 0.0;
  double assd = 0.0;
};

SurfaceDistances surface_distances(const Crop& c, std::array<double, 3> spacing) {
  const std::vector<uint8_t> sp = surface(c.prediction, c.shape);
  const std::vector<uint8_t> st = surface(c.truth, c.shape);
  const std::vector<double> to_truth = squared_distance_transform(st, c.shape, spacing);
  const std::vector<double> to_prediction = squared_distance_transform(sp, c.shape, spacing);
  const std::vector<double> pt = directed(sp, to_truth);
  const std::vector<double> tp = directed(st, to_prediction);
  std::vector<double> both = pt;
  both.insert(both.end(), tp.begin(), tp.end());
  return {percentile(std::move(both), 95.0), 0.5 * (mean(pt) + mean(tp))};
}

}  // namespace

std::vector<ClassMetrics> case_metrics(const std::vector<uint8_t>& prediction, const std::vector<uint8_t>& truth,
                                       std::array<int64_t, 3> shape, std::array<double, 3> spacing,
                                       const std::vector<int>& labels) {
  const auto n = static_cast<size_t>(shape[0] * shape[1] * shape[2]);
  if (prediction.size() != n || truth.size() != n) {
    throw InputError("prediction", "shape",
                     str(prediction.size(), " and ", truth.size(), " voxels, expected ", shape[0], " x ", shape[1], " x ",
                         shape[2], " = ", n, " in both"));
  }
  const double voxel_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0;
  std::vector<ClassMetrics> out;
  for (const int label : labels) {
    ClassMetrics m;
    m.label = label;
    int64_t both = 0;
    for (size_t i = 0; i < n; ++i) {
      const bool p = prediction[i] == label;
      const bool t = truth[i] == label;
      m.prediction_voxels += p;
      m.truth_voxels += t;
      both += p && t;
    }
    m.prediction_ml = static_cast<double>(m.prediction_voxels) * voxel_ml;
    m.truth_ml = static_cast<double>(m.truth_voxels) * voxel_ml;
    const int64_t sum = m.prediction_voxels + m.truth_voxels;
    if (sum > 0) m.dice = 2.0 * static_cast<double>(both) / static_cast<double>(sum);
    if (m.truth_voxels > 0) {
      m.volume_difference = static_cast<double>(m.prediction_voxels - m.truth_voxels) / static_cast<double>(m.truth_voxels);
    }
    if (m.prediction_voxels > 0 && m.truth_voxels > 0) {
      const Crop c = crop(prediction, truth, shape, label);
      const SurfaceDistances mm = surface_distances(c, spacing);
      m.hd95_mm = mm.hd95;
      m.assd_mm = mm.assd;
      m.paper_dice = *m.dice;
      m.paper_hd95_voxels = surface_distances(c, {1.0, 1.0, 1.0}).hd95;
    } else if (m.prediction_voxels > 0) {
      m.paper_dice = 1.0;  // the papers' convention for a prediction where the truth is empty
      m.paper_hd95_voxels = 0.0;
    }
    out.push_back(m);
  }
  return out;
}

namespace {

struct Accumulator {
  std::vector<double> values;
  int64_t undefined = 0;
  void add(const std::optional<double>& v) {
    if (v) {
      values.push_back(*v);
    } else {
      ++undefined;
    }
  }
  nlohmann::json mean_json() const { return values.empty() ? nlohmann::json(nullptr) : nlohmann::json(mean(values)); }
};

struct Means {
  Accumulator dice, hd95, assd, paper_dice, paper_hd95;
  void add(const ClassMetrics& m) {
    dice.add(m.dice);
    hd95.add(m.hd95_mm);
    assd.add(m.assd_mm);
    paper_dice.add(m.paper_dice);
    paper_hd95.add(m.paper_hd95_voxels);
  }
  nlohmann::json to_json() const {
    return {{"dice", dice.mean_json()},           {"dice_undefined", dice.undefined},
            {"hd95_mm", hd95.mean_json()},        {"hd95_undefined", hd95.undefined},
            {"assd_mm", assd.mean_json()},        {"paper_dice", paper_dice.mean_json()},
            {"paper_hd95_voxels", paper_hd95.mean_json()}, {"count", dice.values.size() + dice.undefined}};
  }
};

nlohmann::json mean_of_means(const std::map<std::string, Means>& per_class) {
  Accumulator dice, hd95, paper_dice, paper_hd95;
  for (const auto& [name, m] : per_class) {
    if (!m.dice.values.empty()) dice.values.push_back(mean(m.dice.values));
    if (!m.hd95.values.empty()) hd95.values.push_back(mean(m.hd95.values));
    paper_dice.values.push_back(mean(m.paper_dice.values));
    paper_hd95.values.push_back(mean(m.paper_hd95.values));
  }
  return {{"dice", dice.mean_json()},
          {"hd95_mm", hd95.mean_json()},
          {"paper_dice", paper_dice.mean_json()},
          {"paper_hd95_voxels", paper_hd95.mean_json()}};
}

std::string name_of(const std::vector<std::string>& names, int label) {
  return label >= 0 && label < static_cast<int>(names.size()) ? names[static_cast<size_t>(label)] : str("class_", label);
}

std::string cell(const std::optional<double>& v) {
  if (!v) return "NA";
  std::ostringstream out;
  out << std::setprecision(6) << *v;
  return out.str();
}

std::string fixed(const nlohmann::json& v, int digits) {
  if (v.is_null()) return "NA";
  std::ostringstream out;
  out << std::fixed << std::setprecision(digits) << v.get<double>();
  return out.str();
}

}  // namespace

nlohmann::json summarize(const std::vector<CaseResult>& cases, const std::vector<std::string>& class_names) {
  std::map<std::string, Means> per_class;
  std::map<std::string, std::map<std::string, Means>> per_site;
  nlohmann::json per_case = nlohmann::json::object();
  std::vector<std::string> order;
  for (const CaseResult& c : cases) {
    Means case_means;
    for (const ClassMetrics& m : c.classes) {
      const std::string name = name_of(class_names, m.label);
      if (per_class.count(name) == 0) order.push_back(name);
      per_class[name].add(m);
      per_site[c.site][name].add(m);
      case_means.add(m);
    }
    per_case[c.case_id] = case_means.to_json();
    per_case[c.case_id]["site"] = c.site;
  }
  nlohmann::json classes = nlohmann::json::object();
  for (const std::string& name : order) classes[name] = per_class[name].to_json();
  nlohmann::json sites = nlohmann::json::object();
  for (const auto& [site, by_class] : per_site) {
    sites[site] = mean_of_means(by_class);
    for (const auto& [name, m] : by_class) sites[site]["per_class"][name] = m.to_json();
  }
  return {{"cases", cases.size()},
          {"class_order", order},
          {"per_class", classes},
          {"mean", mean_of_means(per_class)},
          {"per_case", per_case},
          {"per_site", sites},
          {"conventions",
           {{"paper", "TransUNet/SSL4MIS: medpy Dice and HD95 in voxel units (spacing ignored); pred non-empty and "
                      "truth empty scores Dice 1 / HD95 0; empty prediction scores 0 / 0"},
            {"correct", "Dice undefined when both are empty; HD95 and ASSD in mm with the case spacing, undefined "
                        "unless both are non-empty; undefined values are excluded from means and counted"}}}};
}

void write_metric_reports(const std::string& json_path, const std::vector<CaseResult>& cases,
                          const std::vector<std::string>& class_names, const nlohmann::json& extra) {
  const fs::path stem = fs::path(json_path).replace_extension();
  if (stem.has_parent_path()) fs::create_directories(stem.parent_path());
  const nlohmann::json summary = summarize(cases, class_names);
  nlohmann::json all = extra;
  all["summary"] = summary;
  nlohmann::json rows = nlohmann::json::array();
  std::ostringstream csv;
  csv << "case,site,class,label,prediction_voxels,truth_voxels,dice,hd95_mm,assd_mm,volume_difference,"
         "prediction_ml,truth_ml,paper_dice,paper_hd95_voxels\n";
  for (const CaseResult& c : cases) {
    for (const ClassMetrics& m : c.classes) {
      auto opt = [](const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
      rows.push_back({{"case", c.case_id},           {"site", c.site},
                      {"class", name_of(class_names, m.label)}, {"label", m.label},
                      {"prediction_voxels", m.prediction_voxels}, {"truth_voxels", m.truth_voxels},
                      {"dice", opt(m.dice)},          {"hd95_mm", opt(m.hd95_mm)},
                      {"assd_mm", opt(m.assd_mm)},    {"volume_difference", opt(m.volume_difference)},
                      {"prediction_ml", m.prediction_ml}, {"truth_ml", m.truth_ml},
                      {"paper_dice", m.paper_dice},   {"paper_hd95_voxels", m.paper_hd95_voxels}});
      csv << c.case_id << ',' << c.site << ',' << name_of(class_names, m.label) << ',' << m.label << ','
          << m.prediction_voxels << ',' << m.truth_voxels << ',' << cell(m.dice) << ',' << cell(m.hd95_mm) << ','
          << cell(m.assd_mm) << ',' << cell(m.volume_difference) << ',' << cell(m.prediction_ml) << ','
          << cell(m.truth_ml) << ',' << cell(m.paper_dice) << ',' << cell(m.paper_hd95_voxels) << '\n';
    }
  }
  all["rows"] = rows;
  std::ostringstream md;
  const auto& order = summary["class_order"];
  md << "| convention | metric |";
  for (const auto& name : order) md << ' ' << name.get<std::string>() << " |";
  md << " mean |\n| --- | --- |";
  for (size_t i = 0; i <= order.size(); ++i) md << " --- |";
  md << '\n';
  const struct {
    const char* convention;
    const char* metric;
    const char* key;
    int digits;
  } lines[] = {{"paper (voxels)", "Dice", "paper_dice", 4},
               {"paper (voxels)", "HD95", "paper_hd95_voxels", 2},
               {"correct (mm)", "Dice", "dice", 4},
               {"correct (mm)", "HD95 mm", "hd95_mm", 2}};
  for (const auto& line : lines) {
    md << "| " << line.convention << " | " << line.metric << " |";
    for (const auto& name : order) md << ' ' << fixed(summary["per_class"][name.get<std::string>()][line.key], line.digits) << " |";
    md << ' ' << fixed(summary["mean"][line.key], line.digits) << " |\n";
  }
  md << "\n" << cases.size() << " cases. Correct convention: undefined values (empty truth and prediction for Dice; "
     << "an empty side for HD95) are excluded from the means; their counts are in metrics.json.\n";
  write_file_atomically(stem.string() + ".json", all.dump(2) + "\n");
  write_file_atomically(stem.string() + ".csv", csv.str());
  write_file_atomically(stem.string() + ".md", md.str());
}

}  // namespace cmaf::core
