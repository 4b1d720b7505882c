#!/usr/bin/env python3
"""Generate the polynomial coefficients of marginkit's SIMD math kernels.

Every coefficient in ``cpp/include/marginkit/simd/coefficients.hpp`` comes from
this script: Chebyshev-node least-squares fits computed with mpmath at 60 digits
(``mpmath.chebyfit``), then rounded to float64.  Run it again to reproduce the
header byte for byte::

    python tools/gen_coefficients.py > cpp/include/marginkit/simd/coefficients.hpp

Fits:

* ``exp``: ``exp(r) = 1 + r + r^2 * P(r)`` on ``|r| <= ln(2)/2``.
* ``exp`` with a table (the AVX-512 kernels): ``x = (n + j/8) ln 2 + r``,
  ``exp(x) = 2^n 2^(j/8) (1 + r + r^2 P8(r))`` on ``|r| <= ln(2)/16``, degree 5
  instead of 9; the eight ``2^(j/8)`` (a vpermpd lookup) as head + tail
  (``kExp2Hi``/``kExp2Lo``), and scaled by ``1/sqrt(2 pi)`` for the normal
  density (``kPdfHi``/``kPdfLo``, with ``kPdfHalf`` = ``kPdfHi / 2``, exact).
  The density takes ``s = 2r`` (no halving of ``-t^2``): ``kExp8HalfPoly`` is
  ``P8(s/2)/2``, the coefficients scaled by powers of two, exactly.
* ``log``: ``log(m) = 2 s (1 + z * Q(z))`` with ``s = (m-1)/(m+1)``, ``z = s^2``,
  ``m`` in ``[sqrt(1/2), sqrt(2)]``.
* ``log`` with a table (the AVX-512 ``vlog_ratio``): for ``ln(ma/mb)``,
  ``j = round(15 s)`` with ``s ~ (ma-mb)/(ma+mb)`` in ``(-1/3, 1/3)``, ``j`` in
  ``-5..5`` (a 16-entry vpermt2pd lookup, index ``j mod 16``); ``rho_j`` is the
  double nearest ``(15+j)/(15-j)`` (exactly 1/2, 1 and 2 at ``j = -5, 0, 5``),
  ``ln rho_j`` as head + tail (``kLogRho``, ``kLogLnHi``/``kLogLnLo``; at
  ``rho = 2^+-1`` exactly ``+-(kLn2Hi, kLn2Lo)`` of math.hpp), and
  ``ln(ma / (rho_j mb)) = 2 u (1 + z * QT(z))``, ``u = (ma - rho_j mb) / (ma +
  rho_j mb)``, ``|u| <= 0.0375``: degree 3 in ``z`` instead of 7.
* Mills ratio ``R(t) = Q(t) / phi(t)`` of the standard normal, ``t >= 0``:
  ``R(t) = M(u) / (t + C)`` with ``u = (t - C) / (t + C)`` in ``[-1, 1)``.  The
  upper tail is then ``Q(t) = exp(-t^2/2) / sqrt(2 pi) * R(t)``, accurate to a
  few ulp in *relative* terms all the way into the tail.  Used where ``t`` is
  unbounded (implied volatility deep in the wings).
* The same ratio on ``0 <= t <= 40`` only (pricing clamps there: ``Q(40)``
  underflows), as a rational function ``R(t) = P(t) / D(t)`` of degrees 9 / 10
  with ``D(0) = 1``: 19 terms instead of 24, no division to form ``u``, and one
  division shared by a pair of ratios. (Degrees 10 / 11 fit no better after
  rounding, 1.04e-16 both; 8 / 9 reach only 3e-15.)  A near-minimax relative-error fit by
  linearised least squares on Chebyshev nodes (Loeb's reweighting, then
  Lawson's), at 60 digits.  ``P(0)`` is fixed to the double next to
  ``sqrt(pi/2)`` whose product with the double ``1/sqrt(2 pi)`` rounds to exactly
  1/2, so that ``N(0) = 1/2`` exactly.
"""
import math

import mpmath as mp

mp.mp.dps = 60
MILLS_C = 5


def fit(f, lo, hi, n):
    poly = [float(c) for c in mp.chebyfit(f, [lo, hi], n)]  # highest degree first
    grid = [lo + (hi - lo) * mp.mpf(i) / 1000 for i in range(1, 1000)]
    err = max(abs(mp.polyval(poly, x) - f(x)) for x in grid)
    return poly, float(err)


def mills(u):
    c = mp.mpf(MILLS_C)
    if u >= 1:
        return mp.mpf(1)
    t = c * (1 + u) / (1 - u)
    q = mp.erfc(t / mp.sqrt(2)) / 2
    phi = mp.exp(-t * t / 2) / mp.sqrt(2 * mp.pi)
    return q / phi * (t + c)


def mills_t(t):
    return mp.erfc(t / mp.sqrt(2)) / 2 * mp.exp(t * t / 2) * mp.sqrt(2 * mp.pi)


def mills_p0():
    """The double nearest sqrt(pi/2) with fl(fl(1/sqrt(2 pi)) * P0) = 1/2."""
    inv_sqrt_2pi = float(1 / mp.sqrt(2 * mp.pi))
    lo = hi = float(mp.sqrt(mp.pi / 2))
    cands = [lo]
    for _ in range(4):
        lo, hi = math.nextafter(lo, 0.0), math.nextafter(hi, 2.0)
        cands += [lo, hi]
    cands.sort(key=lambda c: abs(mp.mpf(c) - mp.sqrt(mp.pi / 2)))
    return next(c for c in cands if inv_sqrt_2pi * c == 0.5)


def rational_fit(f, lo, hi, m, n, p0, npts=400, iters=30):
    """P / D with deg P = m, deg D = n, D(0) = 1, P(0) = p0: near-minimax in relative error.

    Minimises sum w_i^2 ((P - f D) / (f D_prev))^2 over Chebyshev nodes: first
    re-solving with the previous denominator (Loeb), then also reweighting by
    the error (Lawson). Returns the best iterate, coefficients rounded to float64.
    """
    lo, hi = mp.mpf(lo), mp.mpf(hi)
    xs = [(lo + hi) / 2 + (hi - lo) / 2 * mp.cos(mp.pi * (i + mp.mpf(1) / 2) / npts)
          for i in range(npts)] + [lo, hi]
    fs = [f(x) for x in xs]
    w = [mp.mpf(1)] * len(xs)
    dprev = [mp.mpf(1)] * len(xs)
    best = None
    for it in range(iters):
        rows, rhs = [], []
        for x, fx, wi, di in zip(xs, fs, w, dprev, strict=True):
            s = wi / (fx * di)
            rows.append([s * x**k for k in range(1, m + 1)]
                        + [-s * fx * x**k for k in range(1, n + 1)])
            rhs.append(s * (fx - p0))
        sol = mp.qr_solve(mp.matrix(rows), mp.matrix(rhs))[0]
        p = [mp.mpf(p0)] + [sol[k] for k in range(m)]
        d = [mp.mpf(1)] + [sol[m + k] for k in range(n)]
        pv = [mp.polyval(p[::-1], x) for x in xs]
        dv = [mp.polyval(d[::-1], x) for x in xs]
        err = [pv[i] / dv[i] / fs[i] - 1 for i in range(len(xs))]
        e = max(abs(v) for v in err)
        if best is None or e < best[0]:
            best = (e, p, d)
        if it >= iters // 3:
            w = [wi * mp.sqrt(abs(ei)) + mp.mpf(10) ** -40 for wi, ei in zip(w, err, strict=True)]
            total = sum(w)
            w = [wi / total * len(w) for wi in w]
        dprev = dv
    _, p, d = best
    pd = [float(c) for c in reversed(p)]  # highest degree first
    dd = [float(c) for c in reversed(d)]
    grid = [lo + (hi - lo) * mp.mpf(i) / 2000 for i in range(2001)]
    err = max(abs(mp.polyval(pd, x) / mp.polyval(dd, x) / f(x) - 1) for x in grid)
    return pd, dd, float(err)


def exp_p(r):
    return (mp.exp(r) - 1 - r) / (r * r) if r != 0 else mp.mpf(0.5)


def log_q(z):
    if z == 0:
        return mp.mpf(1) / 3
    s = mp.sqrt(z)
    return (mp.atanh(s) / s - 1) / z


def exp_table():
    """2^(j/8) and 2^(j/8)/sqrt(2 pi), j = 0..7, as float64 head + tail."""
    out = {}
    for name, scale in (("kExp2", mp.mpf(1)), ("kPdf", 1 / mp.sqrt(2 * mp.pi))):
        exact = [mp.power(2, mp.mpf(j) / 8) * scale for j in range(8)]
        hi = [float(v) for v in exact]
        lo = [float(v - mp.mpf(h)) for v, h in zip(exact, hi, strict=True)]
        out[name + "Hi"], out[name + "Lo"] = hi, lo
    out["kPdfHalf"] = [h / 2 for h in out["kPdfHi"]]
    return out


LN2_HI = 0.693147180369123816490  # kLn2Hi, kLn2Lo of math.hpp
LN2_LO = 1.90821492927058770002e-10


def log_table():
    """rho_j and ln(rho_j) (head + tail) by j mod 16; +-(kLn2Hi, kLn2Lo) at rho = 2^+-1."""
    rho, hi, lo = [1.0] * 16, [0.0] * 16, [0.0] * 16
    for j in range(-5, 6):
        r = float(mp.mpf(15 + j) / (15 - j))
        rho[j % 16] = r
        if abs(j) == 5:
            hi[j % 16], lo[j % 16] = math.copysign(LN2_HI, j), math.copysign(LN2_LO, j)
            continue
        v = mp.log(mp.mpf(r))
        hi[j % 16] = float(v)
        lo[j % 16] = float(v - mp.mpf(hi[j % 16]))
    return {"kLogRho": rho, "kLogLnHi": hi, "kLogLnLo": lo}


def emit_table(name, values, comment):
    body = ",\n    ".join(repr(c) for c in values)
    return (f"// {comment}\n"
            f"inline constexpr double {name}[{len(values)}] = {{\n    {body}}};\n")


def emit(name, coeffs, comment):
    body = ",\n    ".join(repr(c) for c in coeffs)
    return (f"// {comment}; highest degree first\n"
            f"inline constexpr double {name}[{len(coeffs)}] = {{\n    {body}}};\n")


def main():
    ln2h = float(mp.log(2) / 2)
    smax = (mp.sqrt(2) - 1) / (mp.sqrt(2) + 1)

    def poly(name, coeffs_err):
        coeffs, err = coeffs_err
        return emit(name, coeffs, f"max fit error {err:.3g}")

    num, den, err = rational_fit(mills_t, 0, 40, 9, 10, mills_p0())
    ln2_16 = float(mp.log(2) / 16)
    exp8, exp8_err = fit(exp_p, -ln2_16 * 1.01, ln2_16 * 1.01, 6)
    # P8(s/2)/2: the coefficient of degree d times 2^-(d+1), exact.
    exp8_half = [c * 2.0 ** -(len(exp8) - i) for i, c in enumerate(exp8)]
    tab = exp_table()
    ltab = log_table()
    logt, logt_err = fit(log_q, 0, 0.0375**2 * 1.01, 4)
    parts = [
        poly("kExpPoly", fit(exp_p, -ln2h * 1.01, ln2h * 1.01, 10)),
        emit("kExp8Poly", exp8, f"|r| <= ln(2)/16: max fit error {exp8_err:.3g}"
             f" (of exp(r): {exp8_err * ln2_16**2:.3g})")
        + emit("kExp8HalfPoly", exp8_half, "kExp8Poly(s/2)/2, for s = 2r")
        + emit_table("kExp2Hi", tab["kExp2Hi"], "2^(j/8), j = 0..7: head")
        + emit_table("kExp2Lo", tab["kExp2Lo"], "tail: 2^(j/8) - kExp2Hi[j]")
        + emit_table("kPdfHi", tab["kPdfHi"], "2^(j/8) / sqrt(2 pi): head")
        + emit_table("kPdfHalf", tab["kPdfHalf"], "kPdfHi / 2")
        + emit_table("kPdfLo", tab["kPdfLo"], "tail"),
        poly("kLogPoly", fit(log_q, 0, float(smax * smax) * 1.01, 8)),
        emit("kLogTabPoly", logt, f"|u| <= 0.0375: max fit error {logt_err:.3g}")
        + emit_table("kLogRho", ltab["kLogRho"], "rho_j by j mod 16, j = -5..5 (unused: 1)")
        + emit_table("kLogLnHi", ltab["kLogLnHi"], "ln(rho_j): head (+-kLn2Hi at j = +-5)")
        + emit_table("kLogLnLo", ltab["kLogLnLo"], "tail (+-kLn2Lo at j = +-5)"),
        poly("kMillsPoly", fit(mills, -1, 0.999999, 24)),
        "// Mills ratio on [0, 40] as kMillsNum(t) / kMillsDen(t), max relative error\n"
        f"// {err:.3g} (rounded coefficients).\n"
        + emit("kMillsNum", num, "numerator")
        + emit("kMillsDen", den, "denominator"),
    ]
    print("// Generated by tools/gen_coefficients.py; do not edit.\n#pragma once\n")
    print("namespace marginkit::simd::coef {\n")
    print(f"inline constexpr double kMillsC = {MILLS_C}.0;\n")
    print("\n".join(parts))
    print("}  // namespace marginkit::simd::coef")


if __name__ == "__main__":
    main()
