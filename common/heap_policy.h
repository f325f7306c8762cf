// The process-wide glibc allocator policy of every cmaformer executable.
//
// glibc serves each allocation at or above its mmap threshold (128 KiB, rising dynamically to a
// cap of 32 MiB that mallopt cannot raise) with a fresh mmap and unmaps it on free, so every
// training step page-faults its large activation and gradient buffers in anew and the kernel
// zeroes them again. On the half preset at 256 x 256 (64-channel full-resolution maps of exactly
// 32 MiB) a lone step spent 29 % of its time in the kernel, and two processes sharing the VM's
// cores lost 15-30 % of their step to it (BENCHMARKS.md, "Data-parallel training step").
//
// keep_freed_memory_in_the_heap() turns chunk-level mmap off (M_MMAP_MAX 0) and never trims the
// top of the heap (M_TRIM_THRESHOLD -1), so freed buffers of any size stay with the process and
// the next step reuses them: the policy of a caching allocator. Threads' own arenas still grow by
// mapping 64 MiB heaps; a request too large for them is served from the main heap. The price:
// resident memory stays at the run's peak instead of falling between steps, and the peak itself
// rises from fragmentation (half preset, 256 x 256: training +6-11 %, whole-volume eval +31 %,
// for 1.5x and 2.3x the speed). Call it first in main(), before large allocations. A user who
// sets MALLOC_MMAP_MAX_ or MALLOC_MMAP_THRESHOLD_ keeps glibc's mmap handling, and one who sets
// MALLOC_TRIM_THRESHOLD_ keeps that threshold.
#pragma once

namespace cmaf {

// Returns false where the C library is not glibc (nothing changed) or a mallopt call failed.
bool keep_freed_memory_in_the_heap();

}  // namespace cmaf
