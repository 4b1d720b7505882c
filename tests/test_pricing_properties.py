"""Property tests for Black-76 pricing and implied volatility (hypothesis).

Inputs span the same domain as the oracle: F log-uniform in [0.1, 1e5],
K/F in [0.05, 3], T in [1 hour, 3 years], vol in [0.05, 4], r in [-0.01, 0.10].

Finite differences are central, in the natural coordinate of each input, with
one Richardson step (error O(h^4)); steps are scaled so that truncation and
round-off both stay well below the tolerance of 1e-6 of the natural scale:

* delta, gamma: step h = c F min(s sqrt T, 1) in F (c = 1e-3 for delta,
  5e-3 for gamma, whose second difference divides round-off by h^2)
* vega: step 1e-3 s in s
* theta: step 1e-3 T in T
"""

from __future__ import annotations

import math

import marginkit as mk
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

EPS = np.finfo(np.float64).eps
HOUR = 1.0 / 8760.0
SETTINGS = settings(max_examples=200, deadline=None)


def _loguniform(lo, hi):
    return st.floats(math.log(lo), math.log(hi)).map(math.exp)


@st.composite
def cases(draw):
    F = draw(_loguniform(0.1, 1e5))
    ratio = draw(_loguniform(0.05, 3.0))
    T = draw(_loguniform(HOUR, 3.0))
    s = draw(_loguniform(0.05, 4.0))
    r = draw(st.floats(-0.01, 0.10))
    w = draw(st.sampled_from([1, -1]))
    return dict(w=w, F=F, K=F * ratio, T=T, s=s, r=r)


def _price(w, F, K, T, s, r, inverse=False):
    """Price of each element (arrays in, array out) in one call."""
    n = max(np.size(x) for x in (F, K, T, s, r))
    arr = [np.ascontiguousarray(np.broadcast_to(np.asarray(x, dtype=np.float64), (n,)))
           for x in (F, K, T, s, r)]
    cp = np.full(n, w, dtype=np.int64)
    return mk.black76(cp, *arr, inverse=inverse).price


def _scales(F, K, T, s, r, price, inverse=False):
    sqT = math.sqrt(T)
    theta = F * s / (2 * sqT) + abs(r) * abs(price)
    if not inverse:
        return dict(price=F + K, delta=1.0, gamma=1.0 / (F * s * sqT), vega=F * sqT,
                    theta=theta)
    return dict(price=(F + K) / F, delta=1.0 / F,
                gamma=1.0 / (F * F * s * sqT) + 1.0 / (F * F), vega=sqT, theta=theta / F)


def _richardson(d_h, d_2h):
    return (4.0 * d_h - d_2h) / 3.0


def _fd(c, inverse):
    """All Greeks of case c by Richardson-extrapolated central differences,
    each from one vectorised marginkit call."""
    w, F, K, T, s, r = c["w"], c["F"], c["K"], c["T"], c["s"], c["r"]
    sT = s * math.sqrt(T)
    out = {}
    # delta, gamma: bumps in F
    hd = 1e-3 * F * min(sT, 1.0)
    hg = 5e-3 * F * min(sT, 1.0)
    Fs = np.array([F + hd, F - hd, F + 2 * hd, F - 2 * hd,
                   F, F + hg, F - hg, F + 2 * hg, F - 2 * hg])
    p = _price(w, Fs, K, T, s, r, inverse)
    # the step actually taken (F +- h is rounded)
    d1 = (p[0] - p[1]) / (Fs[0] - Fs[1])
    d2 = (p[2] - p[3]) / (Fs[2] - Fs[3])
    out["delta"] = _richardson(d1, d2)
    g1 = (p[5] - 2 * p[4] + p[6]) / hg ** 2
    g2 = (p[7] - 2 * p[4] + p[8]) / (2 * hg) ** 2
    out["gamma"] = _richardson(g1, g2)
    # vega: bumps in s
    hs = 1e-3 * s
    ss = np.array([s + hs, s - hs, s + 2 * hs, s - 2 * hs])
    p = _price(w, F, K, T, ss, r, inverse)
    out["vega"] = _richardson((p[0] - p[1]) / (ss[0] - ss[1]), (p[2] - p[3]) / (ss[2] - ss[3]))
    # theta = -dV/dT: bumps in T
    ht = 1e-3 * T
    Ts = np.array([T + ht, T - ht, T + 2 * ht, T - 2 * ht])
    p = _price(w, F, K, Ts, s, r, inverse)
    out["theta"] = -_richardson((p[0] - p[1]) / (Ts[0] - Ts[1]), (p[2] - p[3]) / (Ts[2] - Ts[3]))
    return out


def _describe(c):
    return ", ".join(f"{k}={v!r}" for k, v in c.items())


# --------------------------------------------------------------------------

@SETTINGS
@given(cases())
def test_put_call_parity(c):
    F, K, T, s, r = c["F"], c["K"], c["T"], c["s"], c["r"]
    for inverse in (False, True):
        res = mk.black76(np.array([1, -1]), F, K, T, s, r, inverse=inverse)
        call, put = float(res.price[0]), float(res.price[1])
        DF = math.exp(-r * T)
        fwd = DF * (F - K)
        scale = F + K
        if inverse:
            fwd /= F
            scale /= F
        assert abs((call - put) - fwd) <= 1e-12 * scale, (_describe(c), inverse, call, put, fwd)
        # parity of the Greeks, from C - P = DF (F - K) (inverse: DF (1 - K/F)):
        # delta: DF (DF K / F^2); gamma: 0 (-2 DF K / F^3); vega: 0;
        # theta = -d/dT: r DF (F - K) (r DF (F - K) / F)
        want = {
            "delta": DF * K / (F * F) if inverse else DF,
            "gamma": -2.0 * DF * K / F ** 3 if inverse else 0.0,
            "vega": 0.0,
            "theta": r * fwd,
        }
        sc = _scales(F, K, T, s, r, max(abs(call), abs(put)) * (F if inverse else 1.0), inverse)
        for g, v in want.items():
            diff = float(getattr(res, g)[0] - getattr(res, g)[1])
            assert abs(diff - v) <= 1e-11 * sc[g], (g, inverse, _describe(c), diff, v)


@pytest.mark.parametrize("inverse", [False, True], ids=["linear", "inverse"])
@SETTINGS
@given(c=cases())
def test_greeks_match_finite_differences(c, inverse):
    w, F, K, T, s, r = c["w"], c["F"], c["K"], c["T"], c["s"], c["r"]
    res = mk.black76(w, F, K, T, s, r, inverse=inverse)
    price = float(res.price[0])
    sc = _scales(F, K, T, s, r, price * (F if inverse else 1.0), inverse)
    fd = _fd(c, inverse)
    for g in ("delta", "gamma", "vega", "theta"):
        got = float(getattr(res, g)[0])
        assert abs(got - fd[g]) <= 1e-6 * sc[g], (
            f"{g}{'_inv' if inverse else ''}: analytic {got!r} vs FD {fd[g]!r}, "
            f"diff/scale {abs(got - fd[g]) / sc[g]:.3e}; {_describe(c)}")


@SETTINGS
@given(cases())
def test_inverse_relations(c):
    w, F, K, T, s, r = c["w"], c["F"], c["K"], c["T"], c["s"], c["r"]
    lin = mk.black76(w, F, K, T, s, r)
    inv = mk.black76(w, F, K, T, s, r, inverse=True)
    p, d, g, v, th = (float(x[0]) for x in lin)
    pi, di, gi, vi, thi = (float(x[0]) for x in inv)
    sl = _scales(F, K, T, s, r, p)
    si = _scales(F, K, T, s, r, p, inverse=True)
    assert abs(pi * F - p) <= 1e-13 * sl["price"], (_describe(c), pi, p)
    assert abs(di - (d - pi) / F) <= 1e-11 * si["delta"], (_describe(c), di, d, pi)
    assert abs(gi - (g - 2 * di) / F) <= 1e-11 * si["gamma"], (_describe(c), gi, g, di)
    assert abs(vi * F - v) <= 1e-11 * sl["vega"], (_describe(c), vi, v)
    assert abs(thi * F - th) <= 1e-11 * sl["theta"], (_describe(c), thi, th)


# deep ITM put: the coin price black76 returns is an ulp below the exact intrinsic
DEEP_ITM_PUT = dict(w=-1, F=math.exp(7.0), K=2800.3508727251633, T=math.exp(-1.0),
                    s=math.exp(-2.0), r=0.0)


@pytest.mark.parametrize("inverse", [False, True], ids=["linear", "inverse"])
@SETTINGS
@given(c=cases())
@example(c=DEEP_ITM_PUT)
def test_implied_vol_round_trip(c, inverse):
    w, F, K, T, s, r = c["w"], c["F"], c["K"], c["T"], c["s"], c["r"]
    res = mk.black76(w, F, K, T, s, r)
    vega = float(res.vega[0])
    # marginkit's own price, in coin for inverse options
    quote = float(mk.black76(w, F, K, T, s, r, inverse=inverse).price[0])
    iv = mk.implied_vol(quote, w, F, K, T, r, inverse=inverse)
    assert isinstance(iv, np.ndarray) and iv.shape == (1,)
    iv = float(iv[0])
    assert math.isfinite(iv) and iv >= 0.0, (_describe(c), quote, iv)
    back = float(mk.black76(w, F, K, T, iv, r, inverse=inverse).price[0])
    scale = (F + K) / F if inverse else F + K
    assert abs(back - quote) <= 1e-10 * scale, (_describe(c), quote, iv, back)
    if vega / (F * math.sqrt(T)) > 1e-6:
        # Where the inverse problem is well posed, the vol itself comes back.
        # A price known to a few ulps of (F + K) only pins the vol down to
        # ~eps (F + K) / vega: that conditioning bound is added, and only
        # matters in short-dated corners (it is < 1e-12 for typical cases).
        cond = 16 * EPS * (F + K) / vega
        assert abs(iv - s) <= 1e-8 * max(s, 1.0) + cond, (
            f"vol {s!r} -> {iv!r} (diff {iv - s:.3e}, conditioning {cond:.3e}); {_describe(c)}")


@SETTINGS
@given(cases(), st.lists(st.sampled_from(["ok", "low", "high"]), min_size=1, max_size=12))
def test_implied_vol_outside_bounds_is_nan(c, kinds):
    F, K, T, s, r, w = c["F"], c["K"], c["T"], c["s"], c["r"], c["w"]
    DF = math.exp(-r * T)
    intrinsic = DF * max(w * (F - K), 0.0)
    upper = DF * (F if w > 0 else K)
    price_ok = float(mk.black76(w, F, K, T, s, r).price[0])
    bump = 1e-9 * (F + K)
    if not (intrinsic + bump < price_ok < upper - bump):
        price_ok = 0.5 * (intrinsic + upper)  # a price clearly inside the bounds
    prices, invalid = [], []
    for k in kinds:
        if k == "ok":
            prices.append(price_ok)
            invalid.append(False)
        elif k == "low" and intrinsic > 2 * bump:
            prices.append(intrinsic - bump)  # below intrinsic (and positive)
            invalid.append(True)
        else:
            prices.append(upper + bump)  # above F*DF (call) / K*DF (put)
            invalid.append(True)
    prices = np.array(prices)
    invalid = np.array(invalid)
    n = len(prices)
    vol, n_bad = mk.implied_vol(prices, np.full(n, w), F, K, T, r, full_output=True)
    assert n_bad == invalid.sum(), (_describe(c), prices, vol)
    assert np.all(np.isnan(vol[invalid])), (_describe(c), prices, vol)
    assert np.all(np.isfinite(vol[~invalid])), (_describe(c), prices, vol)
    plain = mk.implied_vol(prices, np.full(n, w), F, K, T, r)
    np.testing.assert_array_equal(plain, vol)
    if invalid.any():
        with pytest.raises(ValueError):
            mk.implied_vol(prices, np.full(n, w), F, K, T, r, on_invalid="raise")
    else:
        np.testing.assert_array_equal(
            mk.implied_vol(prices, np.full(n, w), F, K, T, r, on_invalid="raise"), vol)


@pytest.mark.parametrize("inverse", [False, True], ids=["linear", "inverse"])
def test_implied_vol_negative_price_is_rejected(inverse):
    # A negative price is bad input (the project's rule: ValueError naming the
    # argument and index); a non-negative one outside the bounds gives NaN.
    F = np.array([100.0, 100.0, 100.0, 100.0])
    K = np.array([90.0, 110.0, 110.0, 90.0])
    w = np.array([1, 1, -1, -1])  # ITM call, OTM call, ITM put, OTM put
    prices = np.array([5.0, 1.0, 12.0, -0.0])
    prices = prices / F if inverse else prices
    vol, n_bad = mk.implied_vol(prices, w, F, K, 0.5, 0.01, inverse=inverse, full_output=True)
    assert n_bad == 1  # the ITM call below its intrinsic value
    assert np.isnan(vol[0])
    assert math.isfinite(vol[1]) and math.isfinite(vol[2])
    assert vol[3] == 0.0  # -0.0 == 0 is the intrinsic value of an OTM put
    bad = prices.copy()
    bad[1] = -1e-9
    with pytest.raises(ValueError, match=r"price\[1\] must be >= 0"):
        mk.implied_vol(bad, w, F, K, 0.5, 0.01, inverse=inverse)


@pytest.mark.parametrize("inverse", [False, True], ids=["linear", "inverse"])
@SETTINGS
@given(c=cases())
@example(c=DEEP_ITM_PUT)
@example(c=dict(w=1, F=1.0, K=0.36787944117144233, T=math.e, s=1.0, r=0.09375))
@example(c=dict(w=-1, F=math.exp(8.875), K=9473.464890588017, T=math.e, s=1.0, r=0.0625))
def test_implied_vol_at_rounded_intrinsic_is_not_nan(c, inverse):
    """The float64 intrinsic value, computed the obvious way, is a valid price.

    The exact intrinsic value is rarely a float64; its correctly rounded value
    may lie an ulp below it. Such a price (or any price whose time value is
    below rounding, e.g. a deep ITM option's) must give a finite vol that
    reprices it, not NaN.
    """
    w, F, K, T, r = c["w"], c["F"], c["K"], c["T"], c["r"]
    DF = math.exp(-r * T)
    quote = DF * max(w * (F - K), 0.0)
    if inverse:
        quote /= F
    v = mk.implied_vol(quote, w, F, K, T, r, inverse=inverse)
    v = float(v[0])
    assert math.isfinite(v) and v >= 0.0, (_describe(c), quote, v)
    back = float(mk.black76(w, F, K, T, v, r, inverse=inverse).price[0])
    scale = (F + K) / F if inverse else F + K
    assert abs(back - quote) <= 1e-13 * scale, (_describe(c), quote, v, back)


@SETTINGS
@given(cases())
def test_implied_vol_of_intrinsic_is_zero(c):
    F, K, T, r, w = c["F"], c["K"], c["T"], c["r"], c["w"]
    # vol 0 prices the discounted intrinsic value
    v0 = float(mk.black76(w, F, K, T, 0.0, r).price[0])
    DF = math.exp(-r * T)
    assert v0 == pytest.approx(DF * max(w * (F - K), 0.0), rel=1e-14, abs=0.0), (_describe(c), v0)
    # with r = 0 the intrinsic value max(w (F - K), 0) is unambiguous in
    # float64: a price exactly equal to it has implied vol 0
    intrinsic = max(w * (F - K), 0.0)
    v = mk.implied_vol(intrinsic, w, F, K, T, 0.0)
    assert float(v[0]) == 0.0, (_describe(c), intrinsic, v)
    # an out-of-the-money price of exactly 0 has implied vol 0 at any rate
    if w * (F - K) <= 0:
        v = mk.implied_vol(0.0, w, F, K, T, r)
        assert float(v[0]) == 0.0, (_describe(c), v)


@SETTINGS
@given(cases())
def test_monotonicity(c):
    F, K, T, s, r = c["F"], c["K"], c["T"], c["s"], c["r"]
    steps = 1.0 + 1e-3 * np.arange(6)
    noise = 1e-14 * (F + K)

    def check(prices, increasing, what, slope):
        d = np.diff(prices)
        if not increasing:
            d = -d
        assert np.all(d >= -noise), (what, _describe(c), prices)
        # strictly monotone where the move is far above rounding
        strict = np.abs(slope) > 1e-9 * (F + K)
        if strict:
            assert np.all(d > 0), (what, _describe(c), prices)

    res = mk.black76(1, F, K, T, s, r)
    delta, vega = float(res.delta[0]), float(res.vega[0])
    for w in (1, -1):
        sign = 1 if w > 0 else -1
        pw = mk.black76(w, F, K, T, s, r)
        dw = float(pw.delta[0])
        check(_price(w, F * steps, K, T, s, r), sign > 0, f"cp={w} in F", dw * F * 1e-3)
        # dV/dK from Euler's relation for a price homogeneous of degree 1 in (F, K)
        dk = (float(pw.price[0]) - dw * F) / K
        check(_price(w, F, K * steps, T, s, r), sign < 0, f"cp={w} in K", dk * K * 1e-3)
        check(_price(w, F, K, T, s * steps, r), True, f"cp={w} in vol", vega * s * 1e-3)
    assert delta >= 0.0 and vega >= 0.0
