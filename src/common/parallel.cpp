// std::thread fork-join used by the CPU quantizers and the CPU backend.
#include "sharq/parallel.h"

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace sharq {

int default_threads() {
  if (const char* env = std::getenv("SHARQ_THREADS")) {
    const int t = std::atoi(env);
    if (t > 0) return t;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

void parallel_for(int64_t n, int threads, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int64_t t = std::clamp<int64_t>(threads, 1, n);
  if (t == 1) {
    fn(0, n);
    return;
  }
  std::vector<std::thread> pool;
  std::exception_ptr first_error;
  std::mutex error_mutex;
  const int64_t chunk = (n + t - 1) / t;
  for (int64_t i = 0; i < t; ++i) {
    const int64_t begin = i * chunk;
    const int64_t end = std::min(n, begin + chunk);
    if (begin >= end) break;
    pool.emplace_back([&, begin, end] {
      try {
        fn(begin, end);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!first_error) first_error = std::current_exception();
      }
    });
  }
  for (auto& th : pool) th.join();
  if (first_error) std::rethrow_exception(first_error);
}

}  // namespace sharq
