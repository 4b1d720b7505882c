// SIMD kernels for the avx2 level (flags set in CMakeLists.txt).
#define MK_ISA_NS avx2
#define MK_ISA_ENUM ::marginkit::simd::Isa::avx2
#define MK_ISA_ACCESSOR kernels_avx2
#include "kernels_all.inc"
