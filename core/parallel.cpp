#include "core/parallel.h"

#include <omp.h>

#include <Eigen/Core>

namespace lra::core {

int num_threads() { return omp_get_max_threads(); }

void set_num_threads(int n) {
  omp_set_num_threads(n);
  Eigen::setNbThreads(n);
}

bool in_parallel_region() { return omp_in_parallel() != 0; }

}  // namespace lra::core
