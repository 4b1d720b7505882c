// A scenario grid as the SIMD kernels read it: per scenario, the forward
// multiplier 1 + move, its logarithm and the volatility direction (-1, 0, +1,
// as a double so that it loads as a vector). The arrays hold n entries padded
// to a multiple of 8 (the risk rows' padding) with a scenario that moves
// nothing (mult 1, log_mult 0, dir 0): the kernels read whole vectors.
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
