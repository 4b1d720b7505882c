// Instruction-set levels and run-time dispatch.
//
// Each SIMD kernel is compiled once per level (cpp/src/kernels/kernels_<isa>.cpp,
// each with its own compiler flags) into a KernelTable. At run time the best level
// the CPU supports is chosen, unless forced with set_isa() or the environment
// variable MARGINKIT_ISA (baseline | avx2 | avx512 | auto).
#pragma once

#include <string>
#include <vector>

namespace marginkit::simd {

enum class Isa : int { baseline = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(Isa isa) noexcept;

// Parses "baseline", "avx2", "avx512"; throws std::invalid_argument otherwise.
Isa isa_from_name(const std::string& name);

// Levels compiled into this build.
std::vector<Isa> isa_compiled();

// Levels compiled in and runnable on this CPU, lowest first.
std::vector<Isa> isa_available();

// The best available level.
Isa isa_best() noexcept;

// The level in use (isa_best() unless forced).
Isa isa_active() noexcept;

// Forces a level; throws std::invalid_argument if it is not available here.
void set_isa(Isa isa);

// Back to automatic choice (honours MARGINKIT_ISA at first use only).
void reset_isa() noexcept;

}  // namespace marginkit::simd
