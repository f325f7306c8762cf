#include "core/distance_transform.h"

#include <algorithm>
#include <limits>

#include "common/error.h"

namespace cmaf::core {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();

// One line: out[p] = min_q f[q] + ((p - q) s)^2 over the q with finite f. `v` and `z` are
// scratch of n and n + 1 entries.
void envelope_1d(const double* f, int64_t n, double s, double* out, std::vector<int64_t>& v, std::vector<double>& z) {
  const double s2 = s * s;
  int64_t k = -1;
  for (int64_t q = 0; q < n; ++q) {
    const double fq = f[q];
    if (fq == kInfinity) continue;
    const double qd = static_cast<double>(q);
    while (k >= 0) {
      const double r = static_cast<double>(v[static_cast<size_t>(k)]);
      const double fr = f[v[static_cast<size_t>(k)]];
      // Where the parabola from q overtakes the one from r.
      const double cross = ((fq + s2 * qd * qd) - (fr + s2 * r * r)) / (2.0 * s2 * (qd - r));
      if (cross <= z[static_cast<size_t>(k)]) {
        --k;
      } else {
        break;
      }
    }
    ++k;
    v[static_cast<size_t>(k)] = q;
    if (k == 0) {
      z[0] = -kInfinity;
    } else {
      const double r = static_cast<double>(v[static_cast<size_t>(k - 1)]);
      const double fr = f[v[static_cast<size_t>(k - 1)]];
      z[static_cast<size_t>(k)] = ((fq + s2 * qd * qd) - (fr + s2 * r * r)) / (2.0 * s2 * (qd - r));
    }
    z[static_cast<size_t>(k + 1)] = kInfinity;
  }
  if (k < 0) {
    for (int64_t p = 0; p < n; ++p) out[p] = kInfinity;
    return;
  }
  int64_t j = 0;
  for (int64_t p = 0; p < n; ++p) {
    const auto pd = static_cast<double>(p);
    while (z[static_cast<size_t>(j + 1)] < pd) ++j;
    const int64_t q = v[static_cast<size_t>(j)];
    const double step = static_cast<double>(p - q) * s;
    out[p] = f[q] + step * step;
  }
}

}  // namespace

std::vector<double> squared_distance_transform(const std::vector<uint8_t>& feature, std::array<int64_t, 3> shape,
                                               std::array<double, 3> spacing) {
  const int64_t d = shape[0], h = shape[1], w = shape[2];
  CMAF_CHECK_EQ(static_cast<int64_t>(feature.size()), d * h * w, "feature mask size");
  for (double s : spacing) CMAF_CHECK(s > 0.0, "spacing ", s);
  std::vector<double> g(feature.size());
  for (size_t i = 0; i < feature.size(); ++i) g[i] = feature[i] != 0 ? 0.0 : kInfinity;
  const int64_t longest = std::max({d, h, w});
  std::vector<int64_t> v(static_cast<size_t>(longest));
  std::vector<double> z(static_cast<size_t>(longest + 1));
  std::vector<double> line(static_cast<size_t>(longest));
  std::vector<double> out(static_cast<size_t>(longest));
  auto run_lines = [&](int64_t n, int64_t stride, double s, int64_t count, auto&& start_of) {
    for (int64_t l = 0; l < count; ++l) {
      const int64_t start = start_of(l);
      for (int64_t i = 0; i < n; ++i) line[static_cast<size_t>(i)] = g[static_cast<size_t>(start + i * stride)];
      envelope_1d(line.data(), n, s, out.data(), v, z);
      for (int64_t i = 0; i < n; ++i) g[static_cast<size_t>(start + i * stride)] = out[static_cast<size_t>(i)];
    }
  };
  run_lines(w, 1, spacing[2], d * h, [&](int64_t l) { return l * w; });
  run_lines(h, w, spacing[1], d * w, [&](int64_t l) { return (l / w) * h * w + (l % w); });
  run_lines(d, h * w, spacing[0], h * w, [&](int64_t l) { return l; });
  return g;
}

}  // namespace cmaf::core
