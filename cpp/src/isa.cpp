// Run-time CPU dispatch: which kernel table is active.
#include <atomic>
#include <cstdlib>
#include <stdexcept>

#include "kernels/kernel_table.hpp"
#include "marginkit/simd/isa.hpp"

namespace marginkit::simd {
namespace {

bool cpu_runs(Isa isa) noexcept {
  switch (isa) {
    case Isa::baseline:
      return true;
#if defined(MARGINKIT_HAVE_X86_KERNELS)
    case Isa::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("popcnt");
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx2") &&
             __builtin_cpu_supports("fma") && __builtin_cpu_supports("popcnt");
#endif
    default:
      return false;
  }
}

const KernelTable& table_of(Isa isa) noexcept {
  switch (isa) {
#if defined(MARGINKIT_HAVE_X86_KERNELS)
    case Isa::avx2:
      return kernels_avx2();
    case Isa::avx512:
      return kernels_avx512();
#endif
    default:
      return kernels_baseline();
  }
}

// From MARGINKIT_ISA if set to an available level, else the best one.
Isa initial_isa() noexcept {
  if (const char* env = std::getenv("MARGINKIT_ISA")) {
    try {
      Isa want = isa_from_name(env);
      if (cpu_runs(want)) return want;
    } catch (const std::invalid_argument&) {
      // "auto" or a typo: automatic choice.
    }
  }
  return isa_best();
}

std::atomic<const KernelTable*>& active_slot() noexcept {
  static std::atomic<const KernelTable*> slot{&table_of(initial_isa())};
  return slot;
}

}  // namespace

const char* isa_name(Isa isa) noexcept {
  switch (isa) {
    case Isa::avx2:
      return "avx2";
    case Isa::avx512:
      return "avx512";
    default:
      return "baseline";
  }
}

Isa isa_from_name(const std::string& name) {
  for (Isa isa : {Isa::baseline, Isa::avx2, Isa::avx512}) {
    if (name == isa_name(isa)) return isa;
  }
  throw std::invalid_argument("unknown instruction set '" + name +
                              "' (expected baseline, avx2 or avx512)");
}

std::vector<Isa> isa_compiled() {
#if defined(MARGINKIT_HAVE_X86_KERNELS)
  return {Isa::baseline, Isa::avx2, Isa::avx512};
#else
  return {Isa::baseline};
#endif
}

std::vector<Isa> isa_available() {
  std::vector<Isa> out;
  for (Isa isa : isa_compiled()) {
    if (cpu_runs(isa)) out.push_back(isa);
  }
  return out;
}

Isa isa_best() noexcept {
  Isa best = Isa::baseline;
  for (Isa isa : {Isa::avx2, Isa::avx512}) {
    if (cpu_runs(isa)) best = isa;
  }
  return best;
}

Isa isa_active() noexcept { return active_slot().load(std::memory_order_acquire)->isa; }

void set_isa(Isa isa) {
  if (!cpu_runs(isa)) {
    throw std::invalid_argument(std::string("instruction set '") + isa_name(isa) +
                                "' is not available on this CPU or in this build");
  }
  active_slot().store(&table_of(isa), std::memory_order_release);
}

void reset_isa() noexcept { active_slot().store(&table_of(isa_best()), std::memory_order_release); }

const KernelTable& active_kernels() noexcept {
  return *active_slot().load(std::memory_order_acquire);
}

}  // namespace marginkit::simd
