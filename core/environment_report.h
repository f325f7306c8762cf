// What this process runs on, for bug reports and for checking an installation: versions,
// LibTorch's threading, and a measured fp32 matmul rate that exposes the reference BLAS
// (about 5 GFLOP/s here, against ~100 per core with OpenBLAS).
#pragma once

#include <string>

namespace cmaf::core {

// Minimum matmul rate (GFLOP/s, one thread) below which the report warns about the BLAS.
inline constexpr double kSlowBlasGflops = 20.0;

struct EnvironmentReport {
  std::string text;
  double matmul_gflops = 0.0;  // 1 thread, 1024^3 fp32
  bool blas_ok = true;
};

EnvironmentReport environment_report(bool measure_blas);

}  // namespace cmaf::core
