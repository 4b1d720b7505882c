// SIMD kernels for the avx512 level (flags set in CMakeLists.txt).
#define MK_ISA_NS avx512
#define MK_ISA_ENUM ::marginkit::simd::Isa::avx512
#define MK_ISA_ACCESSOR kernels_avx512
#include "kernels_all.inc"
