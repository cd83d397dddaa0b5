// A minimal fork-join parallel_for over row ranges with std::thread. Not a task scheduler:
// each call splits [0, n) into at most `threads` contiguous chunks and joins them.
#pragma once

#include <cstdint>
#include <functional>

namespace sharq {

// Default worker count: SHARQ_THREADS if set, else std::thread::hardware_concurrency().
int default_threads();

// Calls fn(begin, end) over disjoint chunks covering [0, n). Exceptions propagate (first one).
void parallel_for(int64_t n, int threads, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace sharq
