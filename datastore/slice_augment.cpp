#include "datastore/slice_augment.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace cmaf::datastore {
namespace {

constexpr double kPi = 3.14159265358979323846;

void check_probability(double value, const char* option) {
  if (!(value >= 0.0 && value <= 1.0)) throw InputError(option, "", str(value, ", expected a probability in [0, 1]"));
}

void check_range(double low, double high, double min_allowed, const char* low_option, const char* high_option) {
  if (!(low > min_allowed) || !(high >= low) || !std::isfinite(high)) {
    throw InputError(low_option, high_option,
                     str("[", low, ", ", high, "], expected ", min_allowed, " < ", low_option, " <= ", high_option));
  }
}

}  // namespace

void check_augment_options(const AugmentOptions& o) {
  check_probability(o.flip_probability, "--flip-probability");
  check_probability(o.rot90_probability, "--rot90-probability");
  check_probability(o.rotation_probability, "--rotation-probability");
  check_probability(o.scale_probability, "--scale-probability");
  check_probability(o.intensity_probability, "--intensity-probability");
  check_probability(o.strong_intensity_probability, "--strong-intensity-probability");
  if (!(o.max_rotation_degrees >= 0.0 && o.max_rotation_degrees <= 180.0)) {
    throw InputError("--max-rotation-degrees", "", str(o.max_rotation_degrees, ", expected [0, 180]"));
  }
  check_range(o.min_scale, o.max_scale, 0.0, "--min-scale", "--max-scale");
  check_range(o.min_gamma, o.max_gamma, 0.0, "--min-gamma", "--max-gamma");
  for (const auto& [value, option] : {std::pair{o.max_brightness, "--max-brightness"},
                                      std::pair{o.max_contrast, "--max-contrast"},
                                      std::pair{o.max_noise_std, "--max-noise-std"}}) {
    if (!(value >= 0.0 && std::isfinite(value))) throw InputError(option, "", str(value, ", expected >= 0"));
  }
  if (o.max_contrast >= 1.0) throw InputError("--max-contrast", "", str(o.max_contrast, ", expected < 1"));
}

GeometricParams draw_geometry(const AugmentOptions& o, DeterministicRng& rng) {
  // Every draw happens whatever the outcome, so one option never shifts another's randomness.
  GeometricParams p;
  const double u_flip_x = rng.uniform();
  const double u_flip_y = rng.uniform();
  const double u_rot90 = rng.uniform();
  const uint64_t k = 1 + rng.below(3);
  const double u_rotation = rng.uniform();
  const double angle = rng.uniform(-o.max_rotation_degrees, o.max_rotation_degrees);
  const double u_scale = rng.uniform();
  const double scale = rng.uniform(o.min_scale, o.max_scale);
  if (!o.enabled) return p;
  p.flip_x = u_flip_x < o.flip_probability;
  p.flip_y = u_flip_y < o.flip_probability;
  p.rot90 = u_rot90 < o.rot90_probability ? static_cast<int>(k) : 0;
  p.rotation_degrees = u_rotation < o.rotation_probability ? angle : 0.0;
  p.scale = u_scale < o.scale_probability ? scale : 1.0;
  return p;
}

IntensityParams draw_intensity(const AugmentOptions& o, double probability, DeterministicRng& rng) {
  IntensityParams p;
  const double u[4] = {rng.uniform(), rng.uniform(), rng.uniform(), rng.uniform()};
  const double brightness = rng.uniform(-o.max_brightness, o.max_brightness);
  const double contrast = rng.uniform(1.0 - o.max_contrast, 1.0 + o.max_contrast);
  // Gamma drawn log-uniformly so darkening and brightening are equally likely.
  const double gamma = std::exp(rng.uniform(std::log(o.min_gamma), std::log(o.max_gamma)));
  const double noise = rng.uniform(0.0, o.max_noise_std);
  p.noise_seed = rng.next_u64();
  if (!o.enabled) return p;
  const double q = probability;
  if (u[0] < q) p.brightness = brightness;
  if (u[1] < q) p.contrast = contrast;
  if (u[2] < q) p.gamma = gamma;
  if (u[3] < q) p.noise_std = noise;
  return p;
}

SliceWarp::SliceWarp(int64_t src_h, int64_t src_w, int64_t out_h, int64_t out_w, const GeometricParams& p)
    : src_h_(src_h), src_w_(src_w), out_h_(out_h), out_w_(out_w) {
  CMAF_CHECK(src_h > 0 && src_w > 0 && out_h > 0 && out_w > 0, src_h, "x", src_w, " -> ", out_h, "x", out_w);
  CMAF_CHECK(p.scale > 0.0, "scale ", p.scale);
  CMAF_CHECK(p.rot90 == 0 || out_h == out_w, "quarter turns need a square output, got ", out_h, "x", out_w);
  // Inverse of (scale, rotate, quarter-turn, flip) in output pixels about the centre: undo the
  // flip, then the quarter turn, then the rotation, then the scale. Quarter turns use exact
  // 0/+-1 entries so that an unrotated warp is exact.
  auto multiply = [](const std::array<double, 4>& a, const std::array<double, 4>& b) {
    return std::array<double, 4>{a[0] * b[0] + a[1] * b[2], a[0] * b[1] + a[1] * b[3],
                                 a[2] * b[0] + a[3] * b[2], a[2] * b[1] + a[3] * b[3]};
  };
  std::array<double, 4> a{p.flip_x ? -1.0 : 1.0, 0.0, 0.0, p.flip_y ? -1.0 : 1.0};
  static constexpr std::array<std::array<double, 4>, 4> kQuarter{
      {{1, 0, 0, 1}, {0, 1, -1, 0}, {-1, 0, 0, -1}, {0, -1, 1, 0}}};  // rotation by -k*90 degrees
  a = multiply(kQuarter[static_cast<size_t>(((p.rot90 % 4) + 4) % 4)], a);
  if (p.rotation_degrees != 0.0) {
    const double t = -p.rotation_degrees * kPi / 180.0;
    a = multiply({std::cos(t), -std::sin(t), std::sin(t), std::cos(t)}, a);
  }
  const double inv_scale = 1.0 / p.scale;
  const double fx = static_cast<double>(src_w) / static_cast<double>(out_w) * inv_scale;
  const double fy = static_cast<double>(src_h) / static_cast<double>(out_h) * inv_scale;
  // px = x + 0.5 - out_w / 2, py = y + 0.5 - out_h / 2; sx = fx * (a0 px + a1 py) + src_w / 2 - 0.5.
  const double cx = 0.5 - static_cast<double>(out_w) / 2.0;
  const double cy = 0.5 - static_cast<double>(out_h) / 2.0;
  m_ = {fx * a[0], fx * a[1], fx * (a[0] * cx + a[1] * cy) + static_cast<double>(src_w) / 2.0 - 0.5,
        fy * a[2], fy * a[3], fy * (a[2] * cx + a[3] * cy) + static_cast<double>(src_h) / 2.0 - 0.5};
}

void SliceWarp::source(int64_t y, int64_t x, double* sy, double* sx) const {
  const auto xd = static_cast<double>(x);
  const auto yd = static_cast<double>(y);
  *sx = m_[0] * xd + m_[1] * yd + m_[2];
  *sy = m_[3] * xd + m_[4] * yd + m_[5];
}

void warp_image(const float* src, const SliceWarp& warp, float* out) {
  const int64_t h = warp.src_h();
  const int64_t w = warp.src_w();
  for (int64_t y = 0; y < warp.out_h(); ++y) {
    for (int64_t x = 0; x < warp.out_w(); ++x) {
      double sy = 0.0;
      double sx = 0.0;
      warp.source(y, x, &sy, &sx);
      float value = 0.0F;
      // Bilinear with edge clamping inside the footprint (PyTorch's align_corners = false).
      if (warp.inside(sy, sx)) {
        const double cx = std::clamp(sx, 0.0, static_cast<double>(w - 1));
        const double cy = std::clamp(sy, 0.0, static_cast<double>(h - 1));
        const auto x0 = static_cast<int64_t>(cx);
        const auto y0 = static_cast<int64_t>(cy);
        const int64_t x1 = std::min(x0 + 1, w - 1);
        const int64_t y1 = std::min(y0 + 1, h - 1);
        const double tx = cx - static_cast<double>(x0);
        const double ty = cy - static_cast<double>(y0);
        const double top = src[y0 * w + x0] + tx * (src[y0 * w + x1] - src[y0 * w + x0]);
        const double bottom = src[y1 * w + x0] + tx * (src[y1 * w + x1] - src[y1 * w + x0]);
        value = static_cast<float>(top + ty * (bottom - top));
      }
      out[y * warp.out_w() + x] = value;
    }
  }
}

void warp_label(const uint8_t* src, const SliceWarp& warp, uint8_t* out) {
  const int64_t h = warp.src_h();
  const int64_t w = warp.src_w();
  for (int64_t y = 0; y < warp.out_h(); ++y) {
    for (int64_t x = 0; x < warp.out_w(); ++x) {
      double sy = 0.0;
      double sx = 0.0;
      warp.source(y, x, &sy, &sx);
      uint8_t value = 0;
      if (warp.inside(sy, sx)) {
        const int64_t nx = std::clamp<int64_t>(static_cast<int64_t>(std::floor(sx + 0.5)), 0, w - 1);
        const int64_t ny = std::clamp<int64_t>(static_cast<int64_t>(std::floor(sy + 0.5)), 0, h - 1);
        value = src[ny * w + nx];
      }
      out[y * warp.out_w() + x] = value;
    }
  }
}

void apply_intensity(float* image, int64_t count, const IntensityParams& p) {
  if (count <= 0) return;
  if (p.gamma != 1.0) {
    // On the slice's own range, so it suits [0, 1] CT windows and z-scored MR alike.
    const auto [lo_it, hi_it] = std::minmax_element(image, image + count);
    const double lo = *lo_it;
    const double range = static_cast<double>(*hi_it) - lo;
    if (range > 0.0) {
      for (int64_t i = 0; i < count; ++i) {
        image[i] = static_cast<float>(lo + range * std::pow((image[i] - lo) / range, p.gamma));
      }
    }
  }
  if (p.contrast != 1.0) {
    double sum = 0.0;
    for (int64_t i = 0; i < count; ++i) sum += image[i];
    const double mean = sum / static_cast<double>(count);
    for (int64_t i = 0; i < count; ++i) image[i] = static_cast<float>(mean + p.contrast * (image[i] - mean));
  }
  if (p.brightness != 0.0) {
    for (int64_t i = 0; i < count; ++i) image[i] = static_cast<float>(image[i] + p.brightness);
  }
  if (p.noise_std > 0.0) {
    DeterministicRng rng(p.noise_seed);
    for (int64_t i = 0; i < count; ++i) image[i] = static_cast<float>(image[i] + p.noise_std * rng.normal());
  }
}

}  // namespace cmaf::datastore
