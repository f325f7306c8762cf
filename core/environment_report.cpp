#include "core/environment_report.h"

#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <torch/version.h>

#include <H5Cpp.h>
#include <chrono>
#include <sstream>
#include <thread>

#include "cmaf/config.h"

namespace cmaf::core {
namespace {

double measure_matmul_gflops() {
  const int previous_threads = at::get_num_threads();
  at::set_num_threads(1);
  constexpr int64_t n = 1024;
  const at::Tensor a = at::rand({n, n});
  const at::Tensor b = at::rand({n, n});
  at::Tensor c = at::matmul(a, b);  // warm-up
  constexpr int repeats = 3;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) c = at::matmul(a, b);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  at::set_num_threads(previous_threads);
  return 2.0 * n * n * n * repeats / seconds / 1e9;
}

}  // namespace

EnvironmentReport environment_report(bool measure_blas) {
  EnvironmentReport report;
  unsigned hdf5_major = 0, hdf5_minor = 0, hdf5_release = 0;
  H5get_libversion(&hdf5_major, &hdf5_minor, &hdf5_release);
  std::ostringstream out;
  out << "cmaformer " << CMAF_VERSION << " (CUDA path " << (CMAF_WITH_CUDA ? "built" : "not built")
      << ")\n"
      << "LibTorch " << TORCH_VERSION << ", HDF5 " << hdf5_major << "." << hdf5_minor << "."
      << hdf5_release << "\n"
      << "hardware threads " << std::thread::hardware_concurrency() << ", LibTorch intra-op threads "
      << at::get_num_threads() << "\n\n"
      << at::get_parallel_info();
  if (measure_blas) {
    report.matmul_gflops = measure_matmul_gflops();
    report.blas_ok = report.matmul_gflops >= kSlowBlasGflops;
    out << "\nfp32 matmul 1024^3, 1 thread: " << report.matmul_gflops << " GFLOP/s";
    if (!report.blas_ok) {
      out << "  <- too slow: the reference BLAS is active. Install libopenblas0-openmp "
             "(scripts/setup.sh does) or select it with update-alternatives libblas.so.3";
    }
    out << "\n";
  }
  report.text = out.str();
  return report;
}

}  // namespace cmaf::core
