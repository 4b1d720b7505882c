// A scenario grid as the SIMD kernels read it: per scenario, the forward
// multiplier 1 + move, its logarithm and the volatility direction (-1, 0, +1,
// as a double so that it loads as a vector).
#pragma once

#include <cstddef>

namespace marginkit::simd {

struct ScenarioGrid {
  std::size_t n = 0;
  const double* mult = nullptr;
  const double* log_mult = nullptr;
  const double* dir = nullptr;
};

}  // namespace marginkit::simd
