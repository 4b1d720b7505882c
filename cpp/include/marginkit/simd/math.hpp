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

// exp(-y), as vexp(-y).
inline vd vexp_neg(vd y) { return vexp_neg_clamped(vmin(vmax(y, splat(-709.78)), splat(746.0))); }

// exp(x), x may be any double (no NaN: inputs are validated upstream).
// Results below 2^-1022 (x < -708.39) flush to 0 (AVX-512: subnormal down to
// x = -745.13, then 0); above 709.78 saturate.
inline vd vexp(vd x) { return vexp_clamped(vmax(vmin(x, splat(709.78)), splat(-746.0))); }

// exp(-t*t/2) with the rounding error of t*t compensated: with h = -t/2
// (exact), -t*t/2 = hi + lo exactly, and exp(hi + lo) = exp(hi) (1 + lo).
// The argument is <= 0: only the lower clamp.
inline vd vexp_mhalfsq(vd t) {
  vd h = t * -0.5, hi, lo;
  two_prod(h, t, hi, lo);
  vd e = vexp_clamped(vmax(hi, splat(-746.0)));
  return fma(e, lo, e);
}

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

// Standard normal density.
inline vd vnpdf(vd x) { return vexp_mhalfsq(x) * kInvSqrt2Pi; }

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

// N(w a) and N(w b) (w = +-1) and the densities phi(a), phi(b): the pricing
// kernels need all four. Black-76 passes phi(d2) = phi(d1) F / K, one
// exponential for both densities (black76_core).
struct NormPair {
  vd cdf_a, cdf_b, pdf_a, pdf_b;
};

// The tails and CDFs of a and b given their densities. The Mills ratios are
// rational, R(t) = P(t) / D(t) on [0, 40] (coefficients.hpp), each with its
// own division: divisions cost the kernels nothing measurable (they are
// throughput-bound on the other floating-point operations), sharing one
// between the pair cost three multiplications.
// ws: the sign bits of w.
inline NormPair norm_pair_from_pdf(vd ws, vd a, vd b, vd pdf_a, vd pdf_b) {
  vd ta = vabsmin(a, splat(40.0)), tb = vabsmin(b, splat(40.0));
  vd ra = horner(ta, coef::kMillsNum) / horner(ta, coef::kMillsDen);
  vd rb = horner(tb, coef::kMillsNum) / horner(tb, coef::kMillsDen);
  NormPair r;
  r.pdf_a = pdf_a;
  r.pdf_b = pdf_b;
  // phi(t) = phi(|t|), and both are 0 beyond the clamp at 40.
  vd qa = r.pdf_a * ra;
  vd qb = r.pdf_b * rb;
  r.cdf_a = select(flip_sign(a, ws) < 0.0, qa, 1.0 - qa);
  r.cdf_b = select(flip_sign(b, ws) < 0.0, qb, 1.0 - qb);
  return r;
}

}  // namespace marginkit::simd::MK_ISA_NS
