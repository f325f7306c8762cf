#include "cluster/cpu_placement.h"

#include <dlfcn.h>
#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <iterator>
#include <thread>

#include "common/error.h"

namespace cmaf::cluster {
namespace {

// The union of the loaded OpenMP runtime's places while it binds threads, in increasing order;
// empty without an OpenMP runtime, or with binding off (omp_proc_bind_false, 0). Through dlsym:
// this library does not link an OpenMP runtime of its own, and a second one would be wrong.
std::vector<int> openmp_place_cpus() {
  using Int = int (*)();
  using IntOf = int (*)(int);
  using Ids = void (*)(int, int*);
  const auto bind = reinterpret_cast<Int>(dlsym(RTLD_DEFAULT, "omp_get_proc_bind"));  // an enum, int-sized
  const auto places = reinterpret_cast<Int>(dlsym(RTLD_DEFAULT, "omp_get_num_places"));
  const auto procs = reinterpret_cast<IntOf>(dlsym(RTLD_DEFAULT, "omp_get_place_num_procs"));
  const auto ids = reinterpret_cast<Ids>(dlsym(RTLD_DEFAULT, "omp_get_place_proc_ids"));
  std::vector<int> cpus;
  if (bind == nullptr || places == nullptr || procs == nullptr || ids == nullptr || bind() == 0) return cpus;
  const int count = places();
  for (int p = 0; p < count; ++p) {
    std::vector<int> place(static_cast<size_t>(std::max(0, procs(p))));
    if (place.empty()) continue;
    ids(p, place.data());
    cpus.insert(cpus.end(), place.begin(), place.end());
  }
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  return cpus;
}

}  // namespace

std::string cpu_ranges(const std::vector<int>& cpus) {
  std::string text;
  for (size_t k = 0; k < cpus.size();) {
    size_t last = k;
    while (last + 1 < cpus.size() && cpus[last + 1] == cpus[last] + 1) ++last;
    text += str(text.empty() ? "" : ",", cpus[k], last > k ? str("-", cpus[last]) : std::string());
    k = last + 1;
  }
  return text;
}

std::vector<int> launch_cpus() {
  // The places first: a runtime that sets up (and binds) only when first asked has then bound
  // the main thread before its mask is read.
  const std::vector<int> places = openmp_place_cpus();
  std::vector<int> mine = allowed_cpus();
  if (places.size() > mine.size() && std::includes(places.begin(), places.end(), mine.begin(), mine.end())) {
    return places;
  }
  return mine;
}

std::string openmp_binding_variables() {
  std::string text;
  for (const char* name : {"OMP_PROC_BIND", "OMP_PLACES", "GOMP_CPU_AFFINITY", "KMP_AFFINITY"}) {
    const char* value = std::getenv(name);
    if (value != nullptr) text += str(text.empty() ? "" : ", ", name, "=", value);
  }
  return text;
}

std::string main_threads_sharing_cpus(const std::vector<std::vector<int>>& launch,
                                      const std::vector<std::vector<int>>& main_threads, const std::string& binding) {
  CMAF_CHECK_EQ(launch.size(), main_threads.size(), "launcher and main-thread CPU lists of the local ranks");
  std::vector<int> given, used, shared;
  const auto add = [](std::vector<int>* into, const std::vector<int>& cpus) {
    std::vector<int> both;
    std::set_union(into->begin(), into->end(), cpus.begin(), cpus.end(), std::back_inserter(both));
    *into = std::move(both);
  };
  std::string pairs;
  int pair_count = 0;
  for (size_t a = 0; a < launch.size(); ++a) {
    add(&given, launch[a]);
    add(&used, main_threads[a]);
    for (size_t b = a + 1; b < launch.size(); ++b) {
      if (main_threads[a] == launch[a] && main_threads[b] == launch[b]) continue;  // as the launcher bound them
      std::vector<int> both;
      std::set_intersection(main_threads[a].begin(), main_threads[a].end(), main_threads[b].begin(),
                            main_threads[b].end(), std::back_inserter(both));
      if (both.empty()) continue;
      add(&shared, both);
      if (++pair_count <= 3) pairs += str(pair_count == 1 ? "" : ", ", a, " and ", b);
    }
  }
  if (pair_count == 0) return "";
  std::vector<int> idle;
  std::set_difference(given.begin(), given.end(), used.begin(), used.end(), std::back_inserter(idle));
  return str("the OpenMP runtime (", binding.empty() ? "told to bind threads" : binding, ") bound each rank's main ",
             "thread to its first place before main(), and the main threads of local ranks ", pairs,
             pair_count > 3 ? str(" (", pair_count, " pairs in all)") : std::string(), " are on the same CPU(s) ",
             cpu_ranges(shared),
             idle.empty() ? std::string()
                          : str(", while no main thread runs on CPU(s) ", cpu_ranges(idle),
                                " that the launcher gave them"),
             ": those ranks compute on the same CPUs and slow each other down (the threads a rank starts inherit its "
             "main thread's CPU, and its OpenMP threads take the places that follow). Give each rank its own cores "
             "through the launcher (mpirun --map-by slot:PE=<threads per rank> --bind-to core; "
             "srun --cpus-per-task=<threads per rank> --cpu-bind=cores), or unset the OpenMP binding variables "
             "for this job");
}

std::vector<int> allowed_cpus() {
  // Up to 64k CPUs: grow the set until the kernel's mask fits.
  for (int capacity = 1024; capacity <= 65536; capacity *= 4) {
    cpu_set_t* set = CPU_ALLOC(static_cast<size_t>(capacity));
    if (set == nullptr) break;
    const size_t bytes = CPU_ALLOC_SIZE(static_cast<size_t>(capacity));
    CPU_ZERO_S(bytes, set);
    const bool read = sched_getaffinity(0, bytes, set) == 0;
    const int error = errno;  // before free() can change it
    std::vector<int> cpus;
    for (int cpu = 0; read && cpu < capacity; ++cpu) {
      if (CPU_ISSET_S(static_cast<size_t>(cpu), bytes, set)) cpus.push_back(cpu);
    }
    CPU_FREE(set);
    if (!cpus.empty()) return cpus;
    if (read || error != EINVAL) break;  // EINVAL: the kernel's mask is larger than the set
  }
  // No mask to read: every hardware thread.
  std::vector<int> cpus(std::max(1u, std::thread::hardware_concurrency()));
  for (size_t k = 0; k < cpus.size(); ++k) cpus[k] = static_cast<int>(k);
  return cpus;
}

int default_thread_count(const std::vector<std::vector<int>>& local_cpus, int local_rank) {
  CMAF_CHECK(local_rank >= 0 && local_rank < static_cast<int>(local_cpus.size()), "local rank ",
             local_rank, " of ", local_cpus.size());
  const std::vector<int>& mine = local_cpus[static_cast<size_t>(local_rank)];
  int sharers = 0;
  for (const std::vector<int>& other : local_cpus) {
    const bool overlaps = std::any_of(other.begin(), other.end(), [&](int cpu) {
      return std::binary_search(mine.begin(), mine.end(), cpu);
    });
    if (overlaps) ++sharers;
  }
  return std::max(1, static_cast<int>(mine.size()) / std::max(1, sharers));
}

}  // namespace cmaf::cluster
