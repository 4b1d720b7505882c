// A small persistent thread pool for batch kernels.
//
// parallel_for splits [0, n) into chunks of at least `grain` elements and runs
// them on the pool, the calling thread included. Small ranges, a pool of one
// thread, and calls made while the pool is busy (nested or concurrent) run
// serially on the calling thread, so parallel_for is always safe to call.
#pragma once

#include <cstddef>
#include <functional>

namespace marginkit {

// Threads used by batch calls (>= 1). Default: MARGINKIT_NUM_THREADS, else the
// number of hardware threads.
int num_threads() noexcept;

// Sets the pool size; n <= 0 means the number of hardware threads.
void set_num_threads(int n);

// Chunks: at least `grain` elements, and about `per_thread` chunks a thread
// (more chunks balance better when one thread runs slower, as a VM's second
// vCPU may; fewer repeat less per-chunk setup).
void parallel_for(std::size_t n, std::size_t grain,
                  const std::function<void(std::size_t begin, std::size_t end)>& fn,
                  std::size_t per_thread = 4);

}  // namespace marginkit
