// The table of SIMD kernels that one instruction-set level provides.
// Internal to the core: callers use the functions in pricing.hpp and friends.
#pragma once

#include <cstddef>

#include "marginkit/pricing.hpp"
#include "marginkit/simd/isa.hpp"

namespace marginkit::simd {

struct KernelTable {
  Isa isa;
  int width;  // doubles per vector
  // Both check their inputs as they go: black76 returns false, implied_vol
  // SIZE_MAX, if any element was invalid (pricing.cpp then finds which).
  bool (*black76)(const Black76Inputs&, const Black76Outputs&, Settlement, std::size_t begin,
                  std::size_t end);
  std::size_t (*implied_vol)(const ImpliedVolInputs&, double* out, Settlement, std::size_t begin,
                             std::size_t end);
};

// One per compiled level; defined in kernels_<isa>.cpp.
const KernelTable& kernels_baseline();
#if defined(MARGINKIT_HAVE_X86_KERNELS)
const KernelTable& kernels_avx2();
const KernelTable& kernels_avx512();
#endif

// The table of the active level (isa_active()).
const KernelTable& active_kernels() noexcept;

}  // namespace marginkit::simd
