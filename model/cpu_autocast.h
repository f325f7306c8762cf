// RAII scope for CPU bf16 autocast (mixed precision on AVX512-BF16 CPUs).
//
// Inside the scope, LibTorch runs convolutions and matrix products in bfloat16 and keeps
// precision-sensitive ops (softmax, norms, losses) in fp32. The previous state is restored and
// autocast's weight cache cleared on exit. Uses the LibTorch 1.13 API, and the device-generic
// one where LibTorch 2.x deprecates the CPU-specific calls.
#pragma once

#include <ATen/autocast_mode.h>
#include <torch/version.h>

// LibTorch 2.4 introduced the device-generic autocast calls and deprecated the CPU ones.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define CMAF_DEVICE_GENERIC_AUTOCAST 1
#else
#define CMAF_DEVICE_GENERIC_AUTOCAST 0
#endif

namespace cmaf::model {

class CpuAutocast {
 public:
  explicit CpuAutocast(bool enabled = true) {
#if CMAF_DEVICE_GENERIC_AUTOCAST
    previous_enabled_ = at::autocast::is_autocast_enabled(at::kCPU);
    previous_dtype_ = at::autocast::get_autocast_dtype(at::kCPU);
    at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCPU, enabled);
#else
    previous_enabled_ = at::autocast::is_cpu_enabled();
    previous_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_cpu_enabled(enabled);
#endif
  }
  ~CpuAutocast() {
#if CMAF_DEVICE_GENERIC_AUTOCAST
    at::autocast::set_autocast_enabled(at::kCPU, previous_enabled_);
    at::autocast::set_autocast_dtype(at::kCPU, previous_dtype_);
#else
    at::autocast::set_cpu_enabled(previous_enabled_);
    at::autocast::set_autocast_cpu_dtype(previous_dtype_);
#endif
    at::autocast::clear_cache();
  }
  CpuAutocast(const CpuAutocast&) = delete;
  CpuAutocast& operator=(const CpuAutocast&) = delete;

 private:
  bool previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kBFloat16;
};

}  // namespace cmaf::model
