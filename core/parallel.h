#pragma once
// Threading helpers. Work is split into fixed chunks whose boundaries depend only on the
// problem size, never on the thread count, so every result is identical for any number
// of threads (reductions combine per-chunk partials in chunk order).
#include <cstdint>

namespace lra::core {

int num_threads();
void set_num_threads(int n);
bool in_parallel_region();

// Calls body(begin, end) over [0, n) in chunks of at most `grain` items, in parallel.
template <typename Body>
void parallel_for(int64_t n, int64_t grain, const Body& body) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  int64_t chunks = (n + grain - 1) / grain;
  if (chunks == 1) {
    body(int64_t{0}, n);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    int64_t begin = c * grain;
    int64_t end = begin + grain < n ? begin + grain : n;
    body(begin, end);
  }
}

}  // namespace lra::core
