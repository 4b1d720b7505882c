// SIMD kernels for the baseline level (flags set in CMakeLists.txt).
#define MK_ISA_NS baseline
#define MK_ISA_ENUM ::marginkit::simd::Isa::baseline
#define MK_ISA_ACCESSOR kernels_baseline
#include "kernels_all.inc"
