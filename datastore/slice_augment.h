// Per-sample slice augmentation: one affine warp (resize to the network input, scaling, rotation
// by a free angle, 90-degree rotations, flips) applied identically to image and label, then an
// intensity jitter on the image only.
//
// Image and label stay aligned because both are sampled through the same output-to-source map:
// bilinear for the image, nearest for the label; outside the source slice both read 0 (the CT
// window floor and background). Geometry is expressed in output pixels around the slice
// centre, align_corners = false, so the identity at the source size is an exact copy.
//
// Views: the labeled stream gets geometry + intensity; an unlabeled slice gets a weak view
// (geometry only, for the teacher) and a strong view (the same geometry plus intensity jitter,
// for the student), so teacher and student predictions are pixel-aligned.
// All parameters come from the caller's DeterministicRng: seeded per sample, replayable.
#pragma once

#include <array>
#include <cstdint>

#include "common/random.h"

namespace cmaf::datastore {

struct AugmentOptions {
  bool enabled = true;
  double flip_probability = 0.5;     // each axis independently
  double rot90_probability = 0.5;    // then k uniform in {1, 2, 3}
  double rotation_probability = 0.5;
  double max_rotation_degrees = 20.0;
  double scale_probability = 0.5;
  double min_scale = 0.85;
  double max_scale = 1.15;
  // Each of brightness, contrast, gamma, noise is applied with this probability: mild on labeled
  // slices (nnU-Net applies each with 0.1-0.3; intensity is the main cue between organs in CT),
  // strong on the student's view of unlabeled slices.
  double intensity_probability = 0.15;
  double strong_intensity_probability = 0.8;
  double max_brightness = 0.1;         // additive, in preprocessed units ([0, 1] for CT)
  double max_contrast = 0.25;          // multiplicative about the slice mean: 1 +- this
  double min_gamma = 0.7;              // on [0, 1]-clamped values
  double max_gamma = 1.5;
  double max_noise_std = 0.05;
};

// Throws InputError naming the option for a value out of range.
void check_augment_options(const AugmentOptions& options);

struct GeometricParams {
  bool flip_x = false;
  bool flip_y = false;
  int rot90 = 0;  // counter-clockwise quarter turns, 0..3
  double rotation_degrees = 0.0;
  double scale = 1.0;  // > 1 zooms in
};

struct IntensityParams {
  double brightness = 0.0;
  double contrast = 1.0;
  double gamma = 1.0;
  double noise_std = 0.0;
  uint64_t noise_seed = 0;
};

GeometricParams draw_geometry(const AugmentOptions& options, DeterministicRng& rng);
// `probability`: options.intensity_probability or options.strong_intensity_probability.
IntensityParams draw_intensity(const AugmentOptions& options, double probability, DeterministicRng& rng);

// Output pixel (y, x) of an out_h x out_w slice -> continuous source position (pixel centres at
// integers) of an src_h x src_w slice.
class SliceWarp {
 public:
  SliceWarp(int64_t src_h, int64_t src_w, int64_t out_h, int64_t out_w, const GeometricParams& params);
  int64_t src_h() const { return src_h_; }
  int64_t src_w() const { return src_w_; }
  int64_t out_h() const { return out_h_; }
  int64_t out_w() const { return out_w_; }
  // Source (sy, sx) of output (y, x).
  void source(int64_t y, int64_t x, double* sy, double* sx) const;
  // Inside the source slice's footprint [-0.5, size - 0.5] (outside, image and label read 0).
  bool inside(double sy, double sx) const {
    return sx >= -0.5 && sx <= static_cast<double>(src_w_) - 0.5 && sy >= -0.5 && sy <= static_cast<double>(src_h_) - 0.5;
  }

 private:
  int64_t src_h_, src_w_, out_h_, out_w_;
  std::array<double, 6> m_{};  // [sx; sy] = m * [x; y; 1]
};

// `out` holds out_h * out_w values.
void warp_image(const float* src, const SliceWarp& warp, float* out);
void warp_label(const uint8_t* src, const SliceWarp& warp, uint8_t* out);
void apply_intensity(float* image, int64_t count, const IntensityParams& params);

}  // namespace cmaf::datastore
