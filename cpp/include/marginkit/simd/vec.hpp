// A minimal SIMD vector layer on GCC/Clang vector extensions.
//
// Only kernel translation units include this header. Each defines MK_ISA_NS (a
// namespace name unique to its instruction set) and is compiled with that set's
// flags, so every inline function here exists once per ISA under a different
// namespace: no ODR clash can let AVX-512 code leak into the baseline path.
// Nothing in here may call an inline function from another namespace (the std
// library included); use compiler builtins.
#pragma once

#ifndef MK_ISA_NS
#error "vec.hpp is for kernel translation units: define MK_ISA_NS first"
#endif

#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace marginkit::simd::MK_ISA_NS {

#if defined(__AVX512F__)
inline constexpr int kWidth = 8;
#elif defined(__AVX2__)
inline constexpr int kWidth = 4;
#else
inline constexpr int kWidth = 2;
#endif

typedef double vd __attribute__((vector_size(8 * kWidth)));
typedef std::int64_t vi __attribute__((vector_size(8 * kWidth)));
typedef std::int32_t vi32 __attribute__((vector_size(4 * kWidth)));
typedef std::int8_t vi8 __attribute__((vector_size(kWidth)));

// Comparisons of vd give vi masks: all ones (-1) where true.
using mask = vi;

inline vd splat(double x) { return vd{} + x; }
// x in every lane, by one broadcast (splat adds +0 to it: one more operation,
// and -0 becomes +0).
inline vd bcast(double x) {
#if defined(__AVX512F__)
  return reinterpret_cast<vd>(_mm512_set1_pd(x));
#elif defined(__AVX2__)
  return reinterpret_cast<vd>(_mm256_set1_pd(x));
#elif defined(__SSE2__)
  return reinterpret_cast<vd>(_mm_set1_pd(x));
#else
  return vd{} + x;
#endif
}
inline vi splat_bits(std::int64_t x) { return vi{} + x; }

inline vd load(const double* p) {
  vd v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void store(double* p, vd v) { std::memcpy(p, &v, sizeof v); }

// A non-temporal (streaming) store to p, aligned to the vector size: the line
// is written without being read first and bypasses the caches. Streaming
// stores are weakly ordered: stream_fence() before others may rely on them.
inline void stream(double* p, vd v) {
#if defined(__AVX512F__)
  _mm512_stream_pd(p, reinterpret_cast<__m512d>(v));
#elif defined(__AVX__)
  _mm256_stream_pd(p, reinterpret_cast<__m256d>(v));
#elif defined(__SSE2__)
  _mm_stream_pd(p, reinterpret_cast<__m128d>(v));
#else
  store(p, v);
#endif
}

inline void stream_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

// A column is either an array or one value broadcast to every element.
inline vd load_col(const double* p, bool broadcast, std::size_t i) {
  return broadcast ? splat(*p) : load(p + i);
}

// kWidth int8 values as doubles. On x86 by sign extension to int32 and one
// conversion (vpmovsxbd, vcvtdq2pd); from a vector-extension load GCC assembles
// the bytes one by one in general-purpose registers.
inline vd load_i8(const std::int8_t* p) {
#if defined(__AVX512F__)
  // A 64-bit load the sign extension takes as its memory operand; the
  // conversion by its builtin with a defined pass-through (GCC 12 warns on the
  // intrinsic's undefined one).
  const __m256i i32 = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  return reinterpret_cast<vd>(__builtin_ia32_cvtdq2pd512_mask(
      reinterpret_cast<__v8si>(i32), reinterpret_cast<__v8df>(vd{}), static_cast<__mmask8>(-1)));
#elif defined(__AVX2__)
  std::int32_t bytes;
  std::memcpy(&bytes, p, sizeof bytes);
  return reinterpret_cast<vd>(_mm256_cvtepi32_pd(_mm_cvtepi8_epi32(_mm_cvtsi32_si128(bytes))));
#else
  vi8 v;
  std::memcpy(&v, p, sizeof v);
  return __builtin_convertvector(__builtin_convertvector(v, vi32), vd);
#endif
}

// Lanes of a where m is set, of b elsewhere. The vector ?: lets the compiler
// emit one blend (AVX2, AVX-512) and fold it with the comparison.
inline vd select(mask m, vd a, vd b) { return m ? a : b; }

inline vd vabs(vd x) {
  return reinterpret_cast<vd>(reinterpret_cast<vi>(x) & splat_bits(0x7fffffffffffffffLL));
}

// The sign bits of x (+-0.0), and x with its sign flipped where s has the sign
// bit: multiplication by w = +-1 (given w's sign bits) without a multiplication.
inline vd sign_bits(vd x) {
  return reinterpret_cast<vd>(reinterpret_cast<vi>(x) &
                              splat_bits(static_cast<std::int64_t>(1ULL << 63)));
}
inline vd flip_sign(vd x, vd s) {
  return reinterpret_cast<vd>(reinterpret_cast<vi>(x) ^ reinterpret_cast<vi>(s));
}

// q where s < 0, else c - q: a comparison and a blend, or on AVX2 one blend
// on the sign bit (-0 then takes q: the same value where it matters,
// N(0) = 1/2). (AVX-512 without the comparison, by shifts and logic ops,
// measured slower: the kernels are bound by all four floating-point pipes,
// not the FMA pipes alone.)
inline vd tail_or_complement(vd s, vd q, vd c) {
#if defined(__AVX2__) && !defined(__AVX512F__)
  return reinterpret_cast<vd>(_mm256_blendv_pd(reinterpret_cast<__m256d>(c - q),
                                               reinterpret_cast<__m256d>(q),
                                               reinterpret_cast<__m256d>(s)));
#else
  return select(s < 0.0, q, c - q);
#endif
}

// Sign bits of the lanes as an integer (bit i = lane i).
inline unsigned movemask(mask m) {
#if defined(__AVX512DQ__)
  return _mm512_movepi64_mask(reinterpret_cast<__m512i>(m));
#elif defined(__AVX2__)
  return static_cast<unsigned>(_mm256_movemask_pd(reinterpret_cast<__m256d>(m)));
#elif defined(__SSE2__)
  return static_cast<unsigned>(_mm_movemask_pd(reinterpret_cast<__m128d>(m)));
#else
  unsigned bits = 0;
  for (int i = 0; i < kWidth; ++i) bits |= (m[i] < 0 ? 1u : 0u) << i;
  return bits;
#endif
}

inline bool any(mask m) { return movemask(m) != 0; }
inline bool all(mask m) { return movemask(m) == (1u << kWidth) - 1u; }

// a < b ? a : b and a > b ? a : b, which is exactly what minpd / maxpd compute
// (the compiler does not emit them for the ?: form). On AVX-512 the builtins are
// called with the full mask rather than through the intrinsics, whose
// undefined pass-through operand makes GCC 12 warn.
inline vd vmin(vd a, vd b) {
#if defined(__AVX512F__)
  return reinterpret_cast<vd>(__builtin_ia32_minpd512_mask(
      reinterpret_cast<__v8df>(a), reinterpret_cast<__v8df>(b), reinterpret_cast<__v8df>(a),
      static_cast<__mmask8>(-1), _MM_FROUND_CUR_DIRECTION));
#elif defined(__AVX2__)
  return reinterpret_cast<vd>(_mm256_min_pd(reinterpret_cast<__m256d>(a), reinterpret_cast<__m256d>(b)));
#elif defined(__SSE2__)
  return reinterpret_cast<vd>(_mm_min_pd(reinterpret_cast<__m128d>(a), reinterpret_cast<__m128d>(b)));
#else
  return a < b ? a : b;
#endif
}

inline vd vmax(vd a, vd b) {
#if defined(__AVX512F__)
  return reinterpret_cast<vd>(__builtin_ia32_maxpd512_mask(
      reinterpret_cast<__v8df>(a), reinterpret_cast<__v8df>(b), reinterpret_cast<__v8df>(a),
      static_cast<__mmask8>(-1), _MM_FROUND_CUR_DIRECTION));
#elif defined(__AVX2__)
  return reinterpret_cast<vd>(_mm256_max_pd(reinterpret_cast<__m256d>(a), reinterpret_cast<__m256d>(b)));
#elif defined(__SSE2__)
  return reinterpret_cast<vd>(_mm_max_pd(reinterpret_cast<__m128d>(a), reinterpret_cast<__m128d>(b)));
#else
  return a > b ? a : b;
#endif
}

// The smallest lane of m, by halving (log2(kWidth) shuffles and minima): the
// minimum of the lanes in any order, for lanes that are not NaN.
inline double hmin(vd m) {
#if defined(__AVX512F__)
  m = vmin(m, __builtin_shufflevector(m, m, 4, 5, 6, 7, 0, 1, 2, 3));
  m = vmin(m, __builtin_shufflevector(m, m, 2, 3, 0, 1, 6, 7, 4, 5));
  m = vmin(m, __builtin_shufflevector(m, m, 1, 0, 3, 2, 5, 4, 7, 6));
#elif defined(__AVX2__)
  m = vmin(m, __builtin_shufflevector(m, m, 2, 3, 0, 1));
  m = vmin(m, __builtin_shufflevector(m, m, 1, 0, 3, 2));
#else
  m = vmin(m, __builtin_shufflevector(m, m, 1, 0));
#endif
  return m[0];
}

// min(|x|, c) for c >= 0 (x not NaN): one vrangepd on AVX-512DQ.
inline vd vabsmin(vd x, vd c) {
#if defined(__AVX512DQ__)
  // imm 0b1010: the smaller magnitude, sign cleared.
  return reinterpret_cast<vd>(__builtin_ia32_rangepd512_mask(
      reinterpret_cast<__v8df>(x), reinterpret_cast<__v8df>(c), 0x0A, reinterpret_cast<__v8df>(x),
      static_cast<__mmask8>(-1), _MM_FROUND_CUR_DIRECTION));
#else
  return vmin(vabs(x), c);
#endif
}

// Fused multiply-add where the ISA has it; a*b+c otherwise.
inline vd fma(vd a, vd b, vd c) {
#if defined(__AVX512F__)
  return reinterpret_cast<vd>(_mm512_fmadd_pd(reinterpret_cast<__m512d>(a),
                                              reinterpret_cast<__m512d>(b),
                                              reinterpret_cast<__m512d>(c)));
#elif defined(__FMA__)
  return reinterpret_cast<vd>(_mm256_fmadd_pd(reinterpret_cast<__m256d>(a),
                                              reinterpret_cast<__m256d>(b),
                                              reinterpret_cast<__m256d>(c)));
#else
  return a * b + c;
#endif
}

inline vd vsqrt(vd x) {
#if defined(__AVX512F__)
  return reinterpret_cast<vd>(__builtin_ia32_sqrtpd512_mask(
      reinterpret_cast<__v8df>(x), reinterpret_cast<__v8df>(x), static_cast<__mmask8>(-1),
      _MM_FROUND_CUR_DIRECTION));
#elif defined(__AVX2__)
  return reinterpret_cast<vd>(_mm256_sqrt_pd(reinterpret_cast<__m256d>(x)));
#elif defined(__SSE2__)
  return reinterpret_cast<vd>(_mm_sqrt_pd(reinterpret_cast<__m128d>(x)));
#else
  vd r;
  for (int i = 0; i < kWidth; ++i) r[i] = __builtin_sqrt(x[i]);
  return r;
#endif
}

// Round to nearest integer (ties to even), valid for |x| < 2^51.
inline vd vround(vd x) {
#if defined(__AVX512F__)
  return reinterpret_cast<vd>(__builtin_ia32_rndscalepd_mask(
      reinterpret_cast<__v8df>(x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
      reinterpret_cast<__v8df>(x), static_cast<__mmask8>(-1), _MM_FROUND_CUR_DIRECTION));
#elif defined(__AVX__)
  return reinterpret_cast<vd>(
      _mm256_round_pd(reinterpret_cast<__m256d>(x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#else
  const vd magic = splat(6755399441055744.0);  // 1.5 * 2^52
  return (x + magic) - magic;
#endif
}

// Integral doubles with |x| < 2^51 to int64, and back for 0 <= i < 2^51,
// without the int64 <-> double conversions that only AVX-512DQ has.
inline vi to_int(vd x) {
  const vd magic = splat(6755399441055744.0);
  return reinterpret_cast<vi>(x + magic) - reinterpret_cast<vi>(magic);
}

inline vd small_int_to_double(vi i) {
  return reinterpret_cast<vd>(i | 0x4330000000000000LL) - 4503599627370496.0;
}

// x * 2^k for integral k in [-1100, 1100] and x in [0.5, 2]: 2^k x where that is
// a normal number; below 2^-1022 the result is 0 (AVX-512: subnormal, by vscalefpd),
// above the double range it is infinite (AVX-512) or unspecified (k > 1023).
inline vd scale_pow2(vd x, vd k) {
#if defined(__AVX512F__)
  return reinterpret_cast<vd>(__builtin_ia32_scalefpd512_mask(
      reinterpret_cast<__v8df>(x), reinterpret_cast<__v8df>(k), reinterpret_cast<__v8df>(x),
      static_cast<__mmask8>(-1), _MM_FROUND_CUR_DIRECTION));
#else
  // k in [-1022, 1023] keeps 2^k a normal number.
  vd kc = vmax(k, splat(-1022.0));
  vd scaled = x * reinterpret_cast<vd>((to_int(kc) + 1023) << 52);
  return select(k < -1022.0, splat(0.0), scaled);
#endif
}

// x = m 2^e with m in [1, 2), for finite x > 0 (subnormals included).
inline void split_exponent(vd x, vd& m, vd& e) {
#if defined(__AVX512F__)
  m = reinterpret_cast<vd>(__builtin_ia32_getmantpd512_mask(
      reinterpret_cast<__v8df>(x), (_MM_MANT_SIGN_src << 2) | _MM_MANT_NORM_1_2,
      reinterpret_cast<__v8df>(x), static_cast<__mmask8>(-1), _MM_FROUND_CUR_DIRECTION));
  e = reinterpret_cast<vd>(__builtin_ia32_getexppd512_mask(
      reinterpret_cast<__v8df>(x), reinterpret_cast<__v8df>(x), static_cast<__mmask8>(-1),
      _MM_FROUND_CUR_DIRECTION));
#else
  const mask sub = x < 2.2250738585072014e-308;
  x = select(sub, x * 4503599627370496.0, x);  // * 2^52
  vi bits = reinterpret_cast<vi>(x);
  vi ebits = (bits >> 52) & 0x7ff;
  m = reinterpret_cast<vd>((bits & 0x000fffffffffffffLL) | 0x3ff0000000000000LL);
  e = small_int_to_double(ebits) - 1023.0;
  e = select(sub, e - 52.0, e);
#endif
}

// Exact product: a*b = hi + lo.
inline void two_prod(vd a, vd b, vd& hi, vd& lo) {
  hi = a * b;
#if defined(__AVX512F__) || defined(__FMA__)
  lo = fma(a, b, -hi);
#else
  // Dekker's split; no FMA is available so nothing can contract these lines.
  const vd split = splat(134217729.0);  // 2^27 + 1
  vd ta = split * a, tb = split * b;
  vd ah = ta - (ta - a), al = a - ah;
  vd bh = tb - (tb - b), bl = b - bh;
  lo = ((ah * bh - hi) + ah * bl + al * bh) + al * bl;
#endif
}

// Polynomial with coefficients highest degree first, as two interleaved Horner
// chains in x^2 (even and odd terms): half the dependency chain of plain Horner.
template <std::size_t N>
inline vd horner(vd x, const double (&c)[N]) {
  if constexpr (N < 6) {
    vd r = splat(c[0]);
    for (std::size_t i = 1; i < N; ++i) r = fma(r, x, splat(c[i]));
    return r;
  } else {
    // c[N-1] is the constant term; terms of degree d = N-1-i.
    const vd x2 = x * x;
    constexpr std::size_t top = N - 1;  // highest degree
    vd even = splat(c[top % 2 == 0 ? 0 : 1]);
    vd odd = splat(c[top % 2 == 0 ? 1 : 0]);
    for (std::size_t i = (top % 2 == 0 ? 2 : 3); i < N; i += 2) even = fma(even, x2, splat(c[i]));
    for (std::size_t i = (top % 2 == 0 ? 3 : 2); i < N; i += 2) odd = fma(odd, x2, splat(c[i]));
    return fma(odd, x, even);
  }
}

}  // namespace marginkit::simd::MK_ISA_NS
