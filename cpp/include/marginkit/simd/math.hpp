// Vectorised elementary functions: exp, log, the standard normal density, its
// upper tail (via the Mills ratio) and its CDF. Accuracy: a few ulp in relative
// terms, including the far tail of the normal distribution. Coefficients come
// from tools/gen_coefficients.py.
#pragma once

#include "marginkit/simd/coefficients.hpp"
#include "marginkit/simd/vec.hpp"

namespace marginkit::simd::MK_ISA_NS {

inline constexpr double kLn2Hi = 0.693147180369123816490;  // 32 trailing zero bits
inline constexpr double kLn2Lo = 1.90821492927058770002e-10;
inline constexpr double kLog2e = 1.4426950408889634074;
inline constexpr double kInvSqrt2Pi = 0.39894228040143267794;
inline constexpr double kLnSqrt2Pi = 0.91893853320467274178;

#if defined(__AVX512F__)
// AVX-512: exp through a table of 2^(j/8) (kExp2*, coefficients.hpp), looked
// up by vpermpd (a shuffle: off the FMA pipes, which bound the kernels on
// Zen 4), and a polynomial of degree 7 instead of 11. kq = n + j/8 is x / ln 2
// rounded to eighths by adding 1.5 * 2^49 (an ulp of 1/8): the sum's low
// three mantissa bits are j, the permute's index; vscalefpd multiplies by
// 2^floor(kq) = 2^n. kq has at most 14 significant bits, so kq kLn2Hi is exact.

// tab[j] in each lane, j the low three bits of the lane's bits in idx.
// (vpermpd by its builtin with a defined pass-through: GCC 12 warns on the
// intrinsic's undefined one.)
inline vd lookup8(vd idx, const double (&tab)[8]) {
  const vd t = load(tab);
  return reinterpret_cast<vd>(__builtin_ia32_permvardf512_mask(
      reinterpret_cast<__v8df>(t), reinterpret_cast<__v8di>(idx), reinterpret_cast<__v8df>(t),
      static_cast<__mmask8>(-1)));
}

// x 2^floor(k) (vscalefpd).
inline vd scale_pow2_floor(vd x, vd k) { return scale_pow2(x, k); }

inline constexpr double kEighths = 844424930131968.0;  // 1.5 * 2^49

// exp(x) for x already clamped to [-746, 709.78] (see vexp).
inline vd vexp_clamped(vd x) {
  const vd kd = fma(x, splat(kLog2e), splat(kEighths)), kq = kd - kEighths;
  vd r = fma(kq, splat(-kLn2Hi), x);
  r = fma(kq, splat(-kLn2Lo), r);
  const vd q = fma(r * r, horner(r, coef::kExp8Poly), r);  // exp(r) - 1
  const vd t = lookup8(kd, coef::kExp2Hi);
  return scale_pow2_floor(fma(t, q, lookup8(kd, coef::kExp2Lo)) + t, kq);
}

// exp(-y) for y already clamped to [-709.78, 746], the negation folded into
// the reduction.
inline vd vexp_neg_clamped(vd y) {
  const vd kd = fma(y, splat(-kLog2e), splat(kEighths)), kq = kd - kEighths;
  vd r = fma(kq, splat(-kLn2Hi), -y);
  r = fma(kq, splat(-kLn2Lo), r);
  const vd q = fma(r * r, horner(r, coef::kExp8Poly), r);
  const vd t = lookup8(kd, coef::kExp2Hi);
  return scale_pow2_floor(fma(t, q, lookup8(kd, coef::kExp2Lo)) + t, kq);
}
#else
// exp(x) for x already clamped to [-746, 709.78] (see vexp).
inline vd vexp_clamped(vd x) {
  vd k = vround(x * kLog2e);
  vd r = fma(k, splat(-kLn2Hi), x);
  r = fma(k, splat(-kLn2Lo), r);
  vd p = horner(r, coef::kExpPoly);
  vd e = fma(r * r, p, r) + 1.0;
  return scale_pow2(e, k);
}

// exp(-y) for y already clamped to [-709.78, 746], the negation folded into
// the reduction.
inline vd vexp_neg_clamped(vd y) {
  vd k = vround(y * -kLog2e);
  vd r = fma(k, splat(-kLn2Hi), -y);
  r = fma(k, splat(-kLn2Lo), r);
  vd p = horner(r, coef::kExpPoly);
  vd e = fma(r * r, p, r) + 1.0;
  return scale_pow2(e, k);
}
#endif

// exp(-y), as vexp(-y).
inline vd vexp_neg(vd y) { return vexp_neg_clamped(vmin(vmax(y, splat(-709.78)), splat(746.0))); }

// exp(x), x may be any double (no NaN: inputs are validated upstream).
// Results below 2^-1022 (x < -708.39) flush to 0 (AVX-512: subnormal down to
// x = -745.13, then 0); above 709.78 saturate.
inline vd vexp(vd x) { return vexp_clamped(vmax(vmin(x, splat(709.78)), splat(-746.0))); }

#if defined(__AVX512F__)
// Standard normal density, exp(-t^2/2) / sqrt(2 pi), t^2 = sq + sql exactly.
// With kq = n + j/8 ~ -t^2 / (2 ln 2) (as in vexp_clamped) and
// s = 2r = -t^2 - kq 2 ln 2 (exact in its head; no halving of t^2), the density
// is 2^n c_j exp(s/2) = 2^n (c_j + (c_j/2) s (1 + s P(s))), c_j = 2^(j/8) /
// sqrt(2 pi) from kPdf*. |t| is clamped to 40 first: phi(40) underflows, and
// t^2 cannot overflow.
inline vd vnpdf(vd t) {
  t = vabsmin(t, splat(40.0));
  vd sq, sql;
  two_prod(t, t, sq, sql);
  const vd kd = fma(sq, splat(-0.5 * kLog2e), splat(kEighths)), kq = kd - kEighths;
  vd s = fma(kq, splat(-2.0 * kLn2Hi), -sq);
  s = fma(kq, splat(-2.0 * kLn2Lo), s) - sql;
  const vd w = fma(s * s, horner(s, coef::kExp8HalfPoly), s);  // 2 (exp(s/2) - 1)
  const vd c = lookup8(kd, coef::kPdfHi);
  return scale_pow2_floor(fma(lookup8(kd, coef::kPdfHalf), w, lookup8(kd, coef::kPdfLo)) + c, kq);
}
#else
// exp(-t*t/2) with the rounding error of t*t compensated: with h = -t/2
// (exact), -t*t/2 = hi + lo exactly, and exp(hi + lo) = exp(hi) (1 + lo).
// The argument is <= 0: only the lower clamp.
inline vd vexp_mhalfsq(vd t) {
  vd h = t * -0.5, hi, lo;
  two_prod(h, t, hi, lo);
  vd e = vexp_clamped(vmax(hi, splat(-746.0)));
  return fma(e, lo, e);
}

// Standard normal density.
inline vd vnpdf(vd x) { return vexp_mhalfsq(x) * kInvSqrt2Pi; }
#endif

// ln(m) + e ln 2 from s = (m - 1) / (m + 1), |s| <= (sqrt 2 - 1) / (sqrt 2 + 1).
inline vd log_from_s(vd s, vd e) {
  vd z = s * s, s2 = s + s;  // 2 (s + s z q) = 2s + 2s z q, exactly
  vd q = horner(z, coef::kLogPoly);
  vd lnm = fma(s2 * z, q, s2);
  return fma(e, splat(kLn2Hi), fma(e, splat(kLn2Lo), lnm));
}

// log(x) for finite x > 0 (subnormals included).
inline vd vlog(vd x) {
  vd m, e;
  split_exponent(x, m, e);
  const mask big = m > 1.4142135623730951;
  m = select(big, m * 0.5, m);
  e = select(big, e + 1.0, e);
  return log_from_s((m - 1.0) / (m + 1.0), e);
}

#if defined(__AVX512F__)
// tab[j] in each lane, j the low four bits of the lane's bits in idx
// (vpermt2pd: two registers of table).
inline vd lookup16(vd idx, const double (&tab)[16]) {
  return reinterpret_cast<vd>(_mm512_permutex2var_pd(reinterpret_cast<__m512d>(load(tab)),
                                                     reinterpret_cast<__m512i>(idx),
                                                     reinterpret_cast<__m512d>(load(tab + 8))));
}

inline constexpr double kLogIdx = 6755399441055744.0;  // 1.5 * 2^52

// log(a / b) for finite a, b > 0, without forming a / b. AVX-512: by a table
// (kLogRho etc., coefficients.hpp). With a = ma 2^ea, b = mb 2^eb (ma, mb in
// [1, 2)), s = (ma - mb) / (ma + mb) in (-1/3, 1/3) is approximated through
// vrcp14pd (only to pick the entry), j = round(15 s) in -5..5 (the low four
// bits of the sum with 1.5 * 2^52, the permute's index), rho_j ~ (15 + j) /
// (15 - j) and ln(ma / mb) = ln rho_j + 2 atanh(u), u = (ma - rho_j mb) / (ma +
// rho_j mb) with |u| <= 0.0375: a polynomial of degree 3 in u^2, no
// comparisons or selects. The numerator, one rounding by FMA, is exact where
// it matters: rho_j = 1, 2, 1/2 (ratios near 1, across a binade boundary
// included), where ln rho_j is 0 or exactly -(ea - eb) (kLn2Hi + kLn2Lo), so
// ln(a / b) near a = b keeps full relative accuracy.
inline vd vlog_ratio(vd a, vd b) {
  vd ma, ea, mb, eb;
  split_exponent(a, ma, ea);
  split_exponent(b, mb, eb);
  const vd sa = (ma - mb) * reinterpret_cast<vd>(_mm512_rcp14_pd(reinterpret_cast<__m512d>(ma + mb)));
  const vd kd = fma(sa, splat(15.0), splat(kLogIdx));
  const vd rho = lookup16(kd, coef::kLogRho);
  const vd u = fma(-rho, mb, ma) / fma(rho, mb, ma);
  const vd z = u * u, u2 = u + u;
  const vd lnm = fma(u2 * z, horner(z, coef::kLogTabPoly), u2);
  const vd e = ea - eb;
  return fma(e, splat(kLn2Hi), lookup16(kd, coef::kLogLnHi)) +
         (fma(e, splat(kLn2Lo), lookup16(kd, coef::kLogLnLo)) + lnm);
}
#else
// log(a / b) for finite a, b > 0, without forming a / b: with a = ma 2^ea and
// b = mb 2^eb, ln(a / b) = ln(ma / mb) + (ea - eb) ln 2, and ma / mb (brought
// into [1/sqrt 2, sqrt 2] by doubling one of them) enters only through
// s = (ma - mb) / (ma + mb), whose numerator is exact. As accurate as vlog, and
// a division shorter on the critical path than vlog(a / b).
inline vd vlog_ratio(vd a, vd b) {
  vd ma, ea, mb, eb;
  split_exponent(a, ma, ea);
  split_exponent(b, mb, eb);
  const mask up = ma > mb * 1.4142135623730951, down = mb > ma * 1.4142135623730951;
  vd e = select(up, splat(1.0), select(down, splat(-1.0), splat(0.0))) + (ea - eb);
  mb = select(up, mb + mb, mb);  // additions: the kernels are bound by the multiply pipes
  ma = select(down, ma + ma, ma);
  return log_from_s((ma - mb) / (ma + mb), e);
}
#endif

// Mills ratio R(t) = Q(t) / phi(t) for t >= 0 (t is clamped to [0, 1e7]). For
// the unbounded arguments of implied volatility; pricing, whose arguments are
// clamped to [0, 40], uses the cheaper rational fit (norm_pair_from_pdf).
inline vd vmills(vd t) {
  t = vmin(vmax(t, splat(0.0)), splat(1e7));
  vd inv = 1.0 / (t + coef::kMillsC);
  vd u = (t - coef::kMillsC) * inv;
  return horner(u, coef::kMillsPoly) * inv;
}

// Upper tail Q(t) = P(Z > t) for t >= 0, relatively accurate.
inline vd vnorm_upper(vd t) {
  t = vmin(t, splat(40.0));  // Q(40) underflows anyway
  return vnpdf(t) * vmills(t);
}

// Standard normal CDF N(x); x may be +-inf.
inline vd vncdf(vd x) {
  vd q = vnorm_upper(vabs(x));
  return select(x < 0.0, q, 1.0 - q);
}

// The Mills ratio R(|t|) for pricing, |t| clamped to [0, 40] (Q(40) underflows,
// and phi(t) = phi(|t|) is 0 beyond): the rational fit P / D of
// coefficients.hpp, one division (throughput-bound kernels hide it; sharing one
// division between two ratios costs three multiplications).
inline vd vmills_pricing(vd t) {
  const vd u = vabsmin(t, splat(40.0));
  return horner(u, coef::kMillsNum) / horner(u, coef::kMillsDen);
}

}  // namespace marginkit::simd::MK_ISA_NS
