#include "datastore/phantom.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"
#include "common/random.h"
#include "datastore/intensity.h"

namespace cmaf::datastore {
namespace {

constexpr double kAirHu = -1000.0;
constexpr double kFatHu = -100.0;
constexpr double kTissueHu = 40.0;
constexpr double kLargestRadius = 0.30;   // of the half field of view
constexpr double kSmallestRadius = 0.04;

struct Organ {
  double cx, cy, cz;       // centre, normalised coordinates in [-1, 1]
  double rx, ry, rz;       // radii
  double lobe_amplitude;   // boundary modulation
  int lobe_x, lobe_y;      // modulation frequencies
  double phase;
  double hu;               // mean intensity
};

struct Site {
  double offset_hu;  // scanner calibration
  double contrast;   // enhancement scale
  double noise_hu;   // noise sigma
  double in_plane_mm;
};

Site site_of(uint64_t seed, int site) {
  DeterministicRng rng = DeterministicRng::derive(seed ^ 0x5173ULL, static_cast<uint64_t>(site));
  return {rng.uniform(-20.0, 20.0), rng.uniform(0.85, 1.15), rng.uniform(8.0, 30.0),
          rng.uniform(0.65, 0.95)};
}

std::vector<Organ> make_organs(const PhantomSpec& spec, DeterministicRng& rng) {
  std::vector<Organ> organs;
  const int k_count = spec.classes;
  const double ratio = k_count > 1 ? std::pow(kSmallestRadius / kLargestRadius, 1.0 / (k_count - 1)) : 1.0;
  for (int k = 0; k < k_count; ++k) {
    const double r = kLargestRadius * std::pow(ratio, k) * rng.uniform(0.9, 1.1);
    // Anatomical layout: organs on a ring around the body centre, per-case jitter.
    const double angle = 6.283185307179586 * (k + 0.5) / k_count + rng.uniform(-0.2, 0.2);
    const double ring = 0.45 * (1.0 - 0.5 * r / kLargestRadius);
    Organ o;
    o.cx = ring * std::cos(angle) * 1.2 + rng.uniform(-0.05, 0.05);
    o.cy = ring * std::sin(angle) * 0.8 + rng.uniform(-0.05, 0.05);
    o.cz = rng.uniform(-0.35, 0.35);
    o.rx = r * rng.uniform(0.8, 1.25);
    o.ry = r * rng.uniform(0.8, 1.25);
    o.rz = std::min(0.9, 2.2 * r * rng.uniform(0.8, 1.25));  // organs span several slices
    o.lobe_amplitude = rng.uniform(0.05, 0.2);
    o.lobe_x = 2 + static_cast<int>(rng.below(3));
    o.lobe_y = 1 + static_cast<int>(rng.below(3));
    o.phase = rng.uniform(0.0, 6.283185307179586);
    o.hu = -20.0 + 260.0 * (k + 1) / (k_count + 1) + rng.uniform(-10.0, 10.0);
    organs.push_back(o);
  }
  // Paint large organs first: the small ones drawn over them stay visible.
  std::sort(organs.begin(), organs.end(), [](const Organ& a, const Organ& b) { return a.rx > b.rx; });
  return organs;
}

bool inside(const Organ& o, double x, double y, double z) {
  const double dx = (x - o.cx) / o.rx;
  const double dy = (y - o.cy) / o.ry;
  const double dz = (z - o.cz) / o.rz;
  const double d2 = dx * dx + dy * dy + dz * dz;
  if (d2 > 1.6) return false;
  const double lobes = 1.0 + o.lobe_amplitude * std::sin(o.lobe_x * dx * 3.0 + o.phase) *
                                 std::cos(o.lobe_y * dy * 3.0 - o.phase);
  return d2 < lobes * lobes;
}

}  // namespace

PhantomCase generate_phantom_case(const PhantomSpec& spec, uint64_t seed, int case_index, int site) {
  CMAF_CHECK(spec.size >= 8 && spec.slices >= 1 && spec.classes >= 1 && spec.classes <= 255,
             "phantom spec ", spec.size, "/", spec.slices, "/", spec.classes);
  DeterministicRng rng = DeterministicRng::derive(seed, static_cast<uint64_t>(case_index));
  const Site scanner = site_of(seed, site);
  std::vector<Organ> organs = make_organs(spec, rng);
  const double body_a = rng.uniform(0.82, 0.92);
  const double body_b = rng.uniform(0.6, 0.72);

  PhantomCase out;
  const double in_plane = scanner.in_plane_mm * 512.0 / static_cast<double>(spec.size);
  out.geometry = geometry_from_spacing({spec.slices, spec.size, spec.size}, {3.0, in_plane, in_plane});
  const auto n = static_cast<size_t>(out.geometry.voxel_count());
  out.image.resize(n);
  out.label.assign(n, 0);

  // Organ class ids: by size rank, largest = 1 (make_organs sorted them by size).
  const double texture_phase = rng.uniform(0.0, 6.283185307179586);
  size_t i = 0;
  for (int64_t d = 0; d < spec.slices; ++d) {
    const double z = spec.slices > 1 ? -1.0 + 2.0 * d / (spec.slices - 1) : 0.0;
    for (int64_t h = 0; h < spec.size; ++h) {
      const double y = -1.0 + 2.0 * (h + 0.5) / spec.size;
      for (int64_t w = 0; w < spec.size; ++w, ++i) {
        const double x = -1.0 + 2.0 * (w + 0.5) / spec.size;
        const double body = (x / body_a) * (x / body_a) + (y / body_b) * (y / body_b);
        double hu = body > 1.0 ? kAirHu : (body > 0.8 ? kFatHu : kTissueHu);
        if (body <= 1.0) {
          for (size_t k = 0; k < organs.size(); ++k) {
            if (inside(organs[k], x, y, z)) {
              hu = organs[k].hu;
              out.label[i] = static_cast<uint8_t>(k + 1);
            }
          }
          hu += 12.0 * std::sin(9.0 * x + texture_phase) * std::cos(7.0 * y - 0.5 * z);
        }
        hu = scanner.offset_hu + scanner.contrast * hu + scanner.noise_hu * rng.normal();
        out.image[i] = static_cast<float>(hu);
      }
    }
  }
  normalize_intensities(out.image, IntensityNormalization{}, "synthetic phantom");
  return out;
}

}  // namespace cmaf::datastore
