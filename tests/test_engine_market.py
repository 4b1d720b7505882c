"""Market data and market-driven risk of the Engine: option marks from forwards and
volatilities (set_forward / set_vol / rate), net Greeks per underlying, and
liquidation prices.

Reference values are recomputed here independently of the core:

* Black-76 in mpmath (30 digits) and with closed-form Greeks in plain Python
  (``math.erfc``), T from the engine clock to expiry (ACT/365);
* net Greeks as sums over positions of the documented contributions (futures:
  linear ``size cs``, inverse ``size cs / entry``; options: Black-76 Greeks at the
  volatility implied by the mark, on the index, rate 0, times ``size cs`` and, for
  linear options, the settlement asset's USD price), and by finite differences of
  the account's equity with the market moved consistently;
* liquidation prices in closed form (equity(P) = threshold x MM(P), with the
  bracket that applies at P), and by re-evaluating the account at the returned
  prices with the engine's own prices and marks moved consistently.
"""

from __future__ import annotations

import math

import marginkit as mk
import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from marginkit.presets import apply_preset

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

YEAR = 365.0 * 86400.0
NOW = 1_735_776_000.0  # 2025-01-02 00:00 UTC
DAY = 86400


# ---- independent references ------------------------------------------------------------

def _ncdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _npdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def b76(cp: int, f: float, k: float, t: float, vol: float, r: float = 0.0):
    """Black-76 (price, delta, gamma, vega, theta) per unit, quote currency; theta
    is -dV/dT per year."""
    df = math.exp(-r * t)
    if t <= 0.0 or vol <= 0.0:
        return df * max(cp * (f - k), 0.0), 0.0, 0.0, 0.0, 0.0
    sd = vol * math.sqrt(t)
    d1 = (math.log(f / k) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    price = df * cp * (f * _ncdf(cp * d1) - k * _ncdf(cp * d2))
    delta = df * cp * _ncdf(cp * d1)
    gamma = df * _npdf(d1) / (f * sd)
    vega = df * f * _npdf(d1) * math.sqrt(t)
    theta = r * price - df * f * _npdf(d1) * vol / (2.0 * math.sqrt(t))
    return price, delta, gamma, vega, theta


def b76_mp(cp: int, f, k, t, vol, r):
    """Black-76 price at 30 significant digits."""
    with mpmath.workdps(30):
        f, k, t, vol, r = (mpmath.mpf(x) for x in (f, k, t, vol, r))
        df = mpmath.exp(-r * t)
        if t <= 0 or vol == 0:
            return df * max(cp * (f - k), 0)
        sd = vol * mpmath.sqrt(t)
        d1 = (mpmath.log(f / k) + sd * sd / 2) / sd
        d2 = d1 - sd
        return df * cp * (f * mpmath.ncdf(cp * d1) - k * mpmath.ncdf(cp * d2))


def same(x, y) -> bool:
    """Equal tuples of floats, NaN equal to NaN."""
    return np.array_equal(np.array(x, dtype=float), np.array(y, dtype=float), equal_nan=True)


def tau(eng: mk.Engine, expiry: float) -> float:
    return max(0.0, (expiry - eng.now) / YEAR)


def base_engine(*, btc=100_000.0, eth=3_400.0, usdc=1.0, quantum=0.0, rate=0.0):
    """USDC, BTC, ETH priced at NOW (time NOW); the Deribit preset's models."""
    eng = mk.Engine()
    eng.now = NOW
    eng.rate = rate
    eng.add_asset("USDC", price=usdc, time=NOW, quantum=quantum)
    eng.add_asset("BTC", price=btc, time=NOW)
    eng.add_asset("ETH", price=eth, time=NOW)
    apply_preset(eng, "deribit")
    return eng


def add_option(eng, name, *, underlying="BTC", inverse=False, strike, cp, expiry, cs=1.0):
    eng.add_instrument(name, kind="option", underlying=underlying,
                       settle=underlying if inverse else "USDC", inverse=inverse,
                       contract_size=cs, strike=strike, cp=cp, expiry=int(expiry),
                       model="deribit_options")


# =========================================================================================
# 1. Option marks from forwards and volatilities
# =========================================================================================

@st.composite
def vol_cases(draw):
    fwd = math.exp(draw(st.floats(math.log(0.5), math.log(3e5))))
    return {
        "fwd": fwd, "strike": fwd * math.exp(draw(st.floats(-1.2, 1.2))),
        "cp": draw(st.sampled_from(["C", "P"])), "inverse": draw(st.booleans()),
        "days": draw(st.one_of(st.floats(0.01, 2.0), st.floats(2.0, 800.0))),
        "elapsed": draw(st.floats(0.0, 0.999)),  # fraction of the life gone when set_vol runs
        "vol": draw(st.one_of(st.just(0.0), st.floats(0.01, 3.0))),
        "rate": draw(st.floats(-0.05, 0.2)), "cs": draw(st.sampled_from([0.1, 1.0, 10.0])),
        "source": draw(st.sampled_from(["forward", "future", "both"])),
    }


@SETTINGS
@given(vol_cases())
def test_set_vol_marks_the_option_at_black76_on_the_forward(case):
    """mark = Black-76(F, K, T = (expiry - now) / 365d, vol, engine.rate), in coin
    (V / F) for an inverse option; F set directly, else a dated future's mark on the
    same underlying and expiry. A directly set forward wins over the future."""
    eng = base_engine(rate=case["rate"])
    expiry = int(NOW + case["days"] * DAY)
    inverse = case["inverse"]
    add_option(eng, "OPT", inverse=inverse, strike=case["strike"], cp=case["cp"],
               expiry=expiry, cs=case["cs"])
    fwd = case["fwd"]
    if case["source"] in ("future", "both"):
        # decoys: another expiry and a perpetual on the same underlying
        eng.add_instrument("OTHER", kind="future", underlying="BTC", settle="BTC",
                           inverse=True, contract_size=10.0, expiry=expiry + DAY,
                           model="deribit_btc_futures", mark=fwd * 3.0, time=NOW)
        eng.add_instrument("PERP", kind="perpetual", underlying="BTC", settle="USDC",
                           model="deribit_btc_futures", mark=fwd * 2.0, time=NOW)
        future_mark = fwd if case["source"] == "future" else fwd * 1.5
        eng.add_instrument("FUT", kind="future", underlying="BTC", settle="BTC",
                           inverse=True, contract_size=10.0, expiry=expiry,
                           model="deribit_btc_futures", mark=future_mark, time=NOW)
    if case["source"] in ("forward", "both"):
        assert eng.set_forward("BTC", expiry, fwd, NOW)
        assert eng.forward("BTC", expiry) == fwd
    else:
        assert math.isnan(eng.forward("BTC", expiry))
    eng.now = NOW + case["elapsed"] * (expiry - NOW)
    assert eng.set_vol("OPT", case["vol"], eng.now)
    t = tau(eng, expiry)
    cp = 1 if case["cp"] == "C" else -1
    want_lib = mk.black76(case["cp"], fwd, case["strike"], t, case["vol"], case["rate"],
                          inverse=inverse, greeks=("price",)).price[0]
    got = eng.mark("OPT")
    assert got == pytest.approx(want_lib, rel=1e-13, abs=1e-300)
    with mpmath.workdps(30):
        want = b76_mp(cp, fwd, case["strike"], t, case["vol"], case["rate"])
        if inverse:
            want = want / mpmath.mpf(fwd)
        scale = (fwd + case["strike"]) / (fwd if inverse else 1.0)
        assert abs(mpmath.mpf(got) - want) <= 1e-12 * scale, (got, want)


def test_set_vol_follows_the_clock_and_the_rate():
    eng = base_engine()
    expiry = NOW + 90 * DAY
    add_option(eng, "OPT", strike=110_000.0, cp="C", expiry=expiry)
    eng.set_forward("BTC", expiry, 101_000.0, NOW)
    for now, rate in ((NOW, 0.0), (NOW + 30 * DAY, 0.0), (NOW + 30 * DAY, 0.1),
                      (NOW + 89 * DAY, -0.02)):
        eng.now = now
        eng.rate = rate
        assert eng.rate == rate
        eng.set_vol("OPT", 0.6, now)
        want = float(b76_mp(1, 101_000.0, 110_000.0, (expiry - now) / YEAR, 0.6, rate))
        assert eng.mark("OPT") == pytest.approx(want, rel=1e-12)
    # past expiry: T = 0, the intrinsic value
    eng.now = expiry + DAY
    eng.set_forward("BTC", expiry, 120_000.0, eng.now)
    eng.set_vol("OPT", 0.6, eng.now)
    assert eng.mark("OPT") == pytest.approx(10_000.0, rel=1e-15)


@pytest.mark.parametrize("source", ["forward", "future"])
@pytest.mark.parametrize(("fwd_age", "vol_age"), [(100.0, 50.0), (50.0, 100.0),
                                                  (100.0, 100.0), (0.0, 100.0)])
def test_mark_time_is_the_older_of_vol_and_forward(source, fwd_age, vol_age):
    """The mark is timed by min(vol time, forward time): with the clock at NOW, an
    account holding only the option is stale exactly when max_age < NOW - that."""
    eng = base_engine()
    expiry = NOW + 30 * DAY
    add_option(eng, "OPT", strike=100_000.0, cp="P", expiry=expiry)
    if source == "forward":
        eng.set_forward("BTC", expiry, 100_500.0, NOW - fwd_age)
    else:
        eng.add_instrument("FUT", kind="future", underlying="BTC", settle="USDC",
                           expiry=int(expiry), model="deribit_btc_futures", mark=100_500.0,
                           time=NOW - fwd_age)
    assert eng.set_vol("OPT", 0.5, NOW - vol_age)
    eng.add_account("a", "USDC")
    eng.deposit("a", "USDC", 1e6)
    eng.fill("a", "OPT", 1.0, eng.mark("OPT"), fee=0.0)
    age = max(fwd_age, vol_age)
    for max_age, stale in ((age, False), (age - 0.5, True)):
        if max_age <= 0:
            continue
        eng.max_age = max_age
        assert eng.summary("a").stale is stale, max_age
        r = eng.check_order("a", "OPT", 1.0, eng.mark("OPT"))
        assert r.reason == ("stale_price" if stale else "ok"), (max_age, r)
    # an update older than the mark's time is refused; one at that time is not
    assert eng.set_mark("OPT", 1.0, NOW - age - 1.0) is False
    assert eng.set_vol("OPT", 0.7, NOW - age - 1.0) is False
    assert eng.set_mark("OPT", 123.0, NOW - age) is True
    assert eng.mark("OPT") == 123.0


def test_forward_updates_out_of_order_are_ignored():
    eng = base_engine()
    expiry = NOW + 30 * DAY
    assert eng.set_forward("BTC", expiry, 101_000.0, NOW)
    assert eng.set_forward("BTC", expiry, 99_000.0, NOW - 1) is False
    assert eng.forward("BTC", expiry) == 101_000.0
    assert math.isnan(eng.forward("ETH", expiry))
    assert math.isnan(eng.forward("BTC", expiry + 1))


def test_set_vol_on_a_non_option_raises_naming_it():
    eng = base_engine()
    expiry = NOW + 30 * DAY
    eng.add_instrument("BTC-FUT-X", kind="future", underlying="BTC", settle="BTC", inverse=True,
                       contract_size=10.0, expiry=int(expiry), model="deribit_btc_futures",
                       mark=100_000.0, time=NOW)
    eng.add_instrument("BTC-PERP-X", kind="perpetual", underlying="BTC", settle="USDC",
                       model="deribit_btc_futures", mark=100_000.0, time=NOW)
    for name in ("BTC-FUT-X", "BTC-PERP-X"):
        before = eng.mark(name)
        with pytest.raises(ValueError, match=name):
            eng.set_vol(name, 0.5)
        assert eng.mark(name) == before


def test_set_vol_without_any_forward_raises_naming_it():
    eng = base_engine()
    expiry = NOW + 30 * DAY
    add_option(eng, "BTC-NOFWD-C", strike=100_000.0, cp="C", expiry=expiry)
    # neither a perpetual, a future on another expiry or underlying, nor a forward
    # for another expiry is a forward for this option
    eng.add_instrument("PERP", kind="perpetual", underlying="BTC", settle="USDC",
                       model="deribit_btc_futures", mark=100_000.0, time=NOW)
    eng.add_instrument("F2", kind="future", underlying="BTC", settle="USDC",
                       expiry=int(expiry) + DAY, model="deribit_btc_futures", mark=1e5, time=NOW)
    eng.add_instrument("FE", kind="future", underlying="ETH", settle="USDC",
                       expiry=int(expiry), model="deribit_eth_futures", mark=3e3, time=NOW)
    eng.set_forward("BTC", expiry + 1, 100_000.0)
    eng.set_forward("ETH", expiry, 3_000.0)
    with pytest.raises(ValueError, match="BTC-NOFWD-C"):
        eng.set_vol("BTC-NOFWD-C", 0.5)
    assert math.isnan(eng.mark("BTC-NOFWD-C"))
    # a future on the expiry without a mark yet is no forward either
    eng.add_instrument("F1", kind="future", underlying="BTC", settle="USDC",
                       expiry=int(expiry), model="deribit_btc_futures")
    with pytest.raises(ValueError, match="BTC-NOFWD-C"):
        eng.set_vol("BTC-NOFWD-C", 0.5)
    eng.set_mark("F1", 100_200.0)
    assert eng.set_vol("BTC-NOFWD-C", 0.5)
    assert eng.mark("BTC-NOFWD-C") == pytest.approx(
        float(b76_mp(1, 100_200.0, 100_000.0, 30 / 365, 0.5, 0.0)), rel=1e-12)


@pytest.mark.parametrize("vol", [-0.1, math.nan, math.inf])
def test_set_vol_rejects_bad_volatilities(vol):
    eng = base_engine()
    expiry = NOW + 30 * DAY
    add_option(eng, "OPT", strike=100_000.0, cp="C", expiry=expiry)
    eng.set_forward("BTC", expiry, 100_000.0)
    with pytest.raises(ValueError, match="vol"):
        eng.set_vol("OPT", vol)


# =========================================================================================
# 2. Net Greeks
# =========================================================================================

EXP1 = NOW + 45 * DAY
EXP2 = NOW + 200 * DAY

GREEK_INSTRUMENTS = {
    # name: (kind, underlying, inverse, cs, strike, cp, expiry)
    "BTC_USDC-PERP": ("perpetual", "BTC", False, 0.1, None, None, None),
    "BTC-PERP": ("perpetual", "BTC", True, 10.0, None, None, None),
    "BTC-FUT": ("future", "BTC", True, 10.0, None, None, EXP1),
    "ETH_USDC-PERP": ("perpetual", "ETH", False, 1.0, None, None, None),
    "ETH-PERP": ("perpetual", "ETH", True, 1.0, None, None, None),
    "BTC_USDC-C": ("option", "BTC", False, 0.01, 110_000.0, 1, EXP1),
    "BTC_USDC-P": ("option", "BTC", False, 0.01, 90_000.0, -1, EXP2),
    "BTC-C": ("option", "BTC", True, 1.0, 105_000.0, 1, EXP2),
    "BTC-P": ("option", "BTC", True, 1.0, 95_000.0, -1, EXP1),
    "ETH_USDC-C": ("option", "ETH", False, 1.0, 3_600.0, 1, EXP2),
    "ETH-P": ("option", "ETH", True, 1.0, 3_000.0, -1, EXP1),
}
MODELS = {"BTC": "deribit_btc_futures", "ETH": "deribit_eth_futures"}


def greek_engine(spot, vols, usdc=1.0, ratios=None):
    """Every GREEK_INSTRUMENTS entry, option marks at Black-76 on the index at the
    given vols (rate 0), futures at index x ratio."""
    eng = base_engine(btc=spot["BTC"], eth=spot["ETH"], usdc=usdc)
    ratios = ratios or {}
    for name, (kind, u, inverse, cs, k, cp, exp) in GREEK_INSTRUMENTS.items():
        settle = u if inverse else "USDC"
        if kind == "option":
            eng.add_instrument(name, kind="option", underlying=u, settle=settle,
                               inverse=inverse, contract_size=cs, strike=k,
                               cp="C" if cp > 0 else "P", expiry=int(exp),
                               model="deribit_options")
        else:
            eng.add_instrument(name, kind=kind, underlying=u, settle=settle, inverse=inverse,
                               contract_size=cs, expiry=None if exp is None else int(exp),
                               model=MODELS[u])
    remark(eng, spot, vols, usdc, ratios)
    return eng


def index_of(name, spot, usdc):
    _, u, inverse, *_ = GREEK_INSTRUMENTS[name]
    return spot[u] if inverse else spot[u] / usdc


def remark(eng, spot, vols, usdc, ratios):
    """Sets the market to spot (USD prices) and every mark consistently."""
    eng.set_price("USDC", usdc, NOW)
    for u, p in spot.items():
        eng.set_price(u, p, NOW)
    for name, (kind, _u, inverse, _cs, k, cp, exp) in GREEK_INSTRUMENTS.items():
        index = index_of(name, spot, usdc)
        if kind == "option":
            v = b76(cp, index, k, tau(eng, exp), vols[name])[0]
            eng.set_mark(name, v / index if inverse else v, NOW)
        else:
            eng.set_mark(name, index * ratios.get(name, 1.0), NOW)


def expected_greeks(eng, book, entries, spot, vols, usdc):
    want = {}
    for name, size in book.items():
        kind, u, inverse, cs, k, cp, exp = GREEK_INSTRUMENTS[name]
        g = want.setdefault(u, np.zeros(4))
        if kind != "option":
            g[0] += size * cs / entries[name] if inverse else size * cs
            continue
        _, d, ga, ve, th = b76(cp, index_of(name, spot, usdc), k, tau(eng, exp), vols[name])
        units = size * cs * (1.0 if inverse else usdc)
        g += units * np.array([d, ga, ve, th])
    return want


def book_st():
    sizes = st.one_of(st.just(0.0), st.floats(-50.0, 50.0).filter(lambda x: abs(x) > 1e-3))
    return st.fixed_dictionaries({n: sizes for n in GREEK_INSTRUMENTS})


vols_st = st.fixed_dictionaries(
    {n: st.floats(0.3, 1.5) for n, v in GREEK_INSTRUMENTS.items() if v[0] == "option"})


@SETTINGS
@given(book_st(), vols_st, st.floats(80_000.0, 125_000.0), st.floats(2_700.0, 4_300.0),
       st.sampled_from([1.0, 0.9995, 1.002]), st.floats(0.9, 1.1))
def test_net_greeks_are_the_sums_of_the_positions(book, vols, btc, eth, usdc, entry_ratio):
    """Spot and vols keep every option within a few standard deviations of the
    money: the vol implied by a deep in-the-money mark is ill-conditioned (a few ulps
    of price move its Greeks by 1e-5 relative), which is not what is tested here."""
    spot = {"BTC": btc, "ETH": eth}
    eng = greek_engine(spot, vols, usdc)
    a = eng.add_account("a", "USDC")
    eng.deposit(a, "USDC", 1e9)
    entries = {}
    for name, size in book.items():
        if size != 0.0:
            entries[name] = eng.mark(name) * entry_ratio
            eng.fill(a, name, size, entries[name], fee=0.0)
    book = {n: q for n, q in book.items() if q != 0.0}
    got = eng.net_greeks(a)
    want = expected_greeks(eng, book, entries, spot, vols, usdc)
    assert set(got) == set(want)
    for u, w in want.items():
        g = got[u]
        vals = np.array([g["delta"], g["gamma"], g["vega"], g["theta"]])
        # scale per Greek: the sum of absolute contributions
        scale = np.zeros(4)
        for name, size in book.items():
            if GREEK_INSTRUMENTS[name][1] != u:
                continue
            one = expected_greeks(eng, {name: abs(size)}, entries, spot, vols, usdc)[u]
            scale += np.abs(one)
        tol = 1e-7 * scale + 1e-12
        assert np.all(np.abs(vals - w) <= tol), (u, vals, w, tol)


def test_net_greeks_of_an_empty_account_and_of_flat_positions():
    spot = {"BTC": 100_000.0, "ETH": 3_400.0}
    vols = {n: 0.6 for n, v in GREEK_INSTRUMENTS.items() if v[0] == "option"}
    eng = greek_engine(spot, vols)
    a = eng.add_account("a", "USDC")
    assert eng.net_greeks(a) == {}
    eng.deposit(a, "USDC", 1e6)
    eng.place_order(a, "BTC-C", 1.0, eng.mark("BTC-C"))  # a resting order has no Greeks
    assert eng.net_greeks(a) == {}
    eng.fill(a, "ETH_USDC-PERP", 2.0, 3_400.0, fee=0.0)
    assert eng.net_greeks(a) == {"ETH": {"delta": 2.0, "gamma": 0.0, "vega": 0.0,
                                         "theta": 0.0}}


LINEAR_BOOK = {"BTC_USDC-PERP": 7.0, "BTC_USDC-C": -30.0, "BTC_USDC-P": 45.0,
               "ETH_USDC-PERP": -3.0, "ETH_USDC-C": 4.0}


@pytest.mark.parametrize("u", ["BTC", "ETH"])
def test_net_delta_and_gamma_are_finite_differences_of_the_account_value(u):
    """A linear-only USDC book (USDC at 1 USD): the account's equity (USD) with the
    underlying moved to S (1 +- h), futures marks moving with it (basis kept) and
    options repriced at their implied vols, differentiates to the net delta and
    gamma. (Futures marks at the index: a future's delta is per unit of its own
    price, so with a basis ratio r the equity would move r x size x cs per unit.)"""
    spot = {"BTC": 100_000.0, "ETH": 3_400.0}
    vols = {n: 0.55 + 0.05 * i for i, (n, v) in enumerate(GREEK_INSTRUMENTS.items())
            if v[0] == "option"}
    ratios: dict[str, float] = {}
    eng = greek_engine(spot, vols, ratios=ratios)
    a = eng.add_account("a", "USDC")
    eng.deposit(a, "USDC", 1e7)
    for name, size in LINEAR_BOOK.items():
        eng.fill(a, name, size, eng.mark(name) * 1.01, fee=0.0)
    g = eng.net_greeks(a)[u]

    def equity(s):
        moved = dict(spot, **{u: s})
        remark(eng, moved, vols, 1.0, ratios)
        return eng.summary(a).equity

    s0 = spot[u]
    h = 1e-4 * s0
    up, mid, down = equity(s0 + h), equity(s0), equity(s0 - h)
    fd_delta = (up - down) / (2 * h)
    fd_gamma = (up - 2 * mid + down) / (h * h)
    assert fd_delta == pytest.approx(g["delta"], rel=1e-6, abs=1e-9)
    assert fd_gamma == pytest.approx(g["gamma"], rel=1e-3, abs=1e-9)
    # vega and theta the same way: options repriced at vol + dv, and at T - dt
    dv = 1e-5

    def equity_vol(shift):
        shifted = {n: v + (shift if GREEK_INSTRUMENTS[n][1] == u else 0.0)
                   for n, v in vols.items()}
        remark(eng, spot, shifted, 1.0, ratios)
        return eng.summary(a).equity

    fd_vega = (equity_vol(dv) - equity_vol(-dv)) / (2 * dv)
    vega_options = 0.0
    for n, size in LINEAR_BOOK.items():
        kind, un, _inv, cs, k, cp, exp = GREEK_INSTRUMENTS[n]
        if kind == "option" and un == u:
            vega_options += size * cs * b76(cp, spot[u], k, tau(eng, exp), vols[n])[3]
    assert g["vega"] == pytest.approx(vega_options, rel=1e-7)
    assert fd_vega == pytest.approx(g["vega"], rel=1e-5)
    remark(eng, spot, vols, 1.0, ratios)
    dt = 60.0
    base = eng.summary(a).equity
    eng.now = NOW + dt
    remark(eng, spot, vols, 1.0, ratios)
    fd_theta = (eng.summary(a).equity - base) / (dt / YEAR)  # dV/dt = -dV/dT = theta
    eng.now = NOW
    remark(eng, spot, vols, 1.0, ratios)
    # the clock moves every underlying's options
    assert fd_theta == pytest.approx(sum(x["theta"] for x in eng.net_greeks(a).values()),
                                     rel=1e-4)


def test_inverse_futures_delta_is_face_over_entry_and_matches_its_usd_value():
    """An inverse future's USD value size cs (1/entry - 1/S) S has dV/dS = size cs /
    entry: the net delta, whatever the mark."""
    eng = base_engine()
    eng.add_instrument("BTC-PERPETUAL", model="deribit_btc_futures", contract_size=10.0,
                       mark=100_000.0, time=NOW)
    a = eng.add_account("a", "USDC")
    eng.deposit(a, "USDC", 1e6)
    eng.fill(a, "BTC-PERPETUAL", 3_000.0, 95_000.0, fee=0.0)
    eng.fill(a, "BTC-PERPETUAL", 1_000.0, 105_000.0, fee=0.0)  # harmonic average entry
    entry = 4_000.0 / (3_000.0 / 95_000.0 + 1_000.0 / 105_000.0)
    assert eng.positions(a)[0]["entry"] == pytest.approx(entry, rel=1e-15)
    d = eng.net_greeks(a)["BTC"]["delta"]
    assert d == pytest.approx(4_000.0 * 10.0 / entry, rel=1e-14)

    def usd_value(s):
        return 4_000.0 * 10.0 * (1.0 / entry - 1.0 / s) * s

    h = 1.0
    assert (usd_value(100_000.0 + h) - usd_value(100_000.0 - h)) / (2 * h) == \
        pytest.approx(d, rel=1e-9)


# =========================================================================================
# 3. Liquidation prices
# =========================================================================================

BRACKETS = [(0.0, 0.01, 0.02), (50_000.0, 0.025, 0.05), (150_000.0, 0.05, 0.10),
            (250_000.0, 0.10, 0.20), (500_000.0, 0.125, 0.25)]


def _cums(brackets):
    out, cum, prev = [], 0.0, 0.0
    for i, (floor, mmr, _) in enumerate(brackets):
        if i:
            cum = floor * (mmr - prev) + cum
        out.append(cum)
        prev = mmr
    return out


def perp_engine(model: str, thr: float):
    eng = base_engine()
    eng.add_model("tiers", "tiered", brackets=BRACKETS)
    eng.set_thresholds(warning=max(1.5, thr), reduce_only=max(1.2, thr), liquidation=thr)
    eng.add_instrument("BTC_USDC-PERP", kind="perpetual", underlying="BTC", settle="USDC",
                       model="tiers" if model == "tiered" else "deribit_btc_futures",
                       mark=100_000.0, time=NOW)
    return eng


def closed_form_lp(model, *, deposit, q, entry, ratio, thr):
    """Roots of D + q (r P - E) = thr MM(P) in P (1 BTC contracts, USDC at 1): the
    one whose bracket is the one at P. MM: tiered by the notional |q| r P; or
    Deribit's linear rate |q| (mm_base + mm_slope |q|) P (valued at the index P)."""
    a = abs(q)
    if model == "tiered":
        roots = []
        cums = _cums(BRACKETS)
        for b, (floor, mmr, _) in enumerate(BRACKETS):
            top = BRACKETS[b + 1][0] if b + 1 < len(BRACKETS) else math.inf
            # D - q E + thr cum + P (q r - thr a r mmr) = 0
            slope = q * ratio - thr * a * ratio * mmr
            p = -(deposit - q * entry + thr * cums[b]) / slope
            if p > 0 and floor <= a * ratio * p < top:
                roots.append(p)
        return roots
    m = a * (0.01 + 5e-5 * a)
    p = -(deposit - q * entry) / (q * ratio - thr * m)
    return [p] if p > 0 else []


def gap_formula(model, *, deposit, q, entry, ratio, thr, p):
    a = abs(q)
    eq = deposit + q * (ratio * p - entry)
    if model == "tiered":
        n = a * ratio * p
        b = max(i for i, br in enumerate(BRACKETS) if br[0] <= n)
        mm = n * BRACKETS[b][1] - _cums(BRACKETS)[b]
    else:
        mm = a * (0.01 + 5e-5 * a) * p
    return eq - thr * mm


@SETTINGS
@given(st.sampled_from(["tiered", "linear_rate"]), st.sampled_from([1.0, 1.05, 1.3]),
       st.sampled_from([1.0, -1.0]), st.floats(0.01, 8.0), st.floats(1.2, 30.0),
       st.floats(0.995, 1.005), st.floats(0.95, 1.05))
def test_linear_perp_liquidation_price_closed_form(model, thr, side, size, leverage, ratio,
                                                   entry_ratio):
    """A lone linear perpetual (1 BTC contracts) in a USDC account: the price on the
    losing side solves deposit + q (r P - entry) = thr MM(P) with the bracket at P
    (the mark keeps its basis ratio r to the index); the other side is NaN."""
    q = side * size
    p0 = 100_000.0
    entry = p0 * ratio * entry_ratio
    deposit = size * p0 / leverage
    kw = {"deposit": deposit, "q": q, "entry": entry, "ratio": ratio, "thr": thr}
    g0 = gap_formula(model, p=p0, **kw)
    assume(abs(g0) > 1e-6 * deposit)
    eng = perp_engine(model, thr)
    eng.set_mark("BTC_USDC-PERP", p0 * ratio, NOW)
    a = eng.add_account("a", "USDC")
    eng.deposit(a, "USDC", deposit)
    eng.fill(a, "BTC_USDC-PERP", q, entry, fee=0.0)
    below, above = eng.liquidation_prices(a)
    assert same(eng.liquidation_prices(a, "BTC"), (below, above))
    if g0 < 0:
        assert (below, above) == (p0, p0)
        return
    roots = closed_form_lp(model, **kw)
    lo, hi = (below, above) if q > 0 else (above, below)
    assert math.isnan(hi), (below, above)
    wanted = [r for r in roots if (r < p0 if q > 0 else r > p0)]
    if not wanted or not (p0 * 1e-6 < wanted[0] < p0 * 1e6):
        assert math.isnan(lo), (below, above, roots)
        return
    assert len(wanted) == 1, roots
    assert lo == pytest.approx(wanted[0], rel=1e-11), (below, above, roots)
    # on the liquidation side of the returned price, not before it
    assert gap_formula(model, p=lo, **kw) <= 1e-9 * deposit
    inside = lo * (1 + 1e-9) if q > 0 else lo * (1 - 1e-9)
    assert gap_formula(model, p=inside, **kw) > -1e-9 * deposit


@pytest.mark.parametrize("model", ["tiered", "linear_rate"])
@pytest.mark.parametrize("leverage", [0.9, 0.3, 0.05, 0.002])
def test_far_liquidation_prices_are_found_exactly(model, leverage):
    """Shorts over-collateralised so that the liquidation price sits 2x to ~500x
    above today's: beyond the 1 % walk, found by the 25 % steps and bisected to
    the closed form."""
    p0, size = 100_000.0, 1.0
    kw = {"deposit": size * p0 / leverage, "q": -size, "entry": p0, "ratio": 1.0, "thr": 1.0}
    eng = perp_engine(model, 1.0)
    eng.set_mark("BTC_USDC-PERP", p0, NOW)
    a = eng.add_account("a", "USDC")
    eng.deposit(a, "USDC", kw["deposit"])
    eng.fill(a, "BTC_USDC-PERP", -size, p0, fee=0.0)
    below, above = eng.liquidation_prices(a, "BTC")
    wanted = [r for r in closed_form_lp(model, **kw) if r > p0]
    assert math.isnan(below) and len(wanted) == 1
    assert above > 2 * p0
    assert above == pytest.approx(wanted[0], rel=1e-11)


def test_short_perp_liquidation_above_only():
    eng = perp_engine("tiered", 1.0)
    a = eng.add_account("a", "USDC")
    eng.deposit(a, "USDC", 20_000.0)
    eng.fill(a, "BTC_USDC-PERP", -2.0, 100_000.0, fee=0.0)
    below, above = eng.liquidation_prices(a, "BTC")
    assert math.isnan(below)
    # notional 2 P in the third bracket (cum 150k x 0.025 + 750 = 4500):
    # 20000 - 2 (P - 1e5) = 2 P 0.05 - 4500
    want = (20_000.0 + 200_000.0 + 4_500.0) / (2.0 * 1.05)
    assert 150_000 <= 2 * want < 250_000
    assert above == pytest.approx(want, rel=1e-13)


STRADDLE_EXP = NOW + 60 * DAY


def straddle_engine(inverse: bool, with_perp: bool):
    """A short straddle (strike 100k, 60 days, vol 0.6), optionally delta-hedged
    with a perpetual whose mark is 1.0005 x the index."""
    eng = base_engine()
    margin = "BTC" if inverse else "USDC"
    vols = {"C": 0.6, "P": 0.65}
    for cp in ("C", "P"):
        add_option(eng, cp, inverse=inverse, strike=100_000.0, cp=cp, expiry=STRADDLE_EXP)
    if inverse:
        eng.add_instrument("PERP", kind="perpetual", underlying="BTC", settle="BTC",
                           inverse=True, contract_size=10.0, model="deribit_btc_futures")
    else:
        eng.add_instrument("PERP", kind="perpetual", underlying="BTC", settle="USDC",
                           model="deribit_btc_futures")
    move_market(eng, 100_000.0, vols, inverse)
    a = eng.add_account("a", margin)
    eng.deposit(a, margin, 1.2 if inverse else 120_000.0)
    eng.fill(a, "C", -3.0, eng.mark("C"), fee=0.0)
    eng.fill(a, "P", -2.0, eng.mark("P"), fee=0.0)
    if with_perp:
        eng.fill(a, "PERP", -3_000.0 if inverse else -0.3, eng.mark("PERP"), fee=0.0)
    return eng, a, vols


def move_market(eng, s, vols, inverse):
    """BTC at s; the perpetual's mark at 1.0005 s; options at Black-76 on s (rate 0)
    at their vols, in coin when inverse."""
    eng.set_price("BTC", s, NOW)
    eng.set_mark("PERP", 1.0005 * s, NOW)
    for cp, v in vols.items():
        price = b76(1 if cp == "C" else -1, s, 100_000.0, tau(eng, STRADDLE_EXP), v)[0]
        eng.set_mark(cp, price / s if inverse else price, NOW)


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("with_perp", [False, True])
def test_option_book_liquidation_prices_are_zeros_of_equity_minus_threshold_mm(inverse,
                                                                                with_perp):
    """Both sides finite for a short straddle; at each returned price the account,
    re-evaluated with the engine's own market moved there (perpetual at its basis,
    options repriced at their implied vols, BTC collateral revalued), sits at the
    threshold: equity - thr MM ~ 0, positive just inside and <= 0 just outside."""
    eng, a, vols = straddle_engine(inverse, with_perp)
    eng.set_thresholds(warning=1.5, reduce_only=1.2, liquidation=1.1)
    s = eng.summary(a)
    assert s.equity > 1.1 * s.mm > 0
    below, above = eng.liquidation_prices(a)
    assert 0 < below < 100_000.0 < above < math.inf, (below, above)

    def gap(p):
        move_market(eng, p, vols, inverse)
        x = eng.summary(a)
        return x.equity - 1.1 * x.mm, x

    for p, inward in ((below, 1.0), (above, -1.0)):
        g, x = gap(p)
        scale = abs(x.equity) + x.mm
        assert abs(g) <= 1e-9 * scale, (p, g, x.equity, x.mm)
        assert gap(p * (1 + inward * 1e-7))[0] > 0, p
        assert gap(p * (1 - inward * 1e-7))[0] < 0, p
    move_market(eng, 100_000.0, vols, inverse)
    assert eng.liquidation_prices(a) == (below, above)


def test_account_already_under_the_threshold_gets_todays_price():
    eng, a, _ = straddle_engine(False, True)
    eng.set_thresholds(warning=3.0, reduce_only=2.5, liquidation=2.0)
    s = eng.summary(a)
    assert s.equity < 2.0 * s.mm and s.state == "liquidation"
    assert eng.liquidation_prices(a) == (100_000.0, 100_000.0)
    # bankrupt too
    eng2 = perp_engine("linear_rate", 1.0)
    b = eng2.add_account("b", "USDC")
    eng2.deposit(b, "USDC", 100.0)
    eng2.fill(b, "BTC_USDC-PERP", 1.0, 120_000.0, fee=0.0)
    assert eng2.summary(b).state == "bankrupt"
    assert eng2.liquidation_prices(b, "BTC") == (100_000.0, 100_000.0)


def test_no_positions_no_liquidation_prices():
    eng = perp_engine("tiered", 1.0)
    a = eng.add_account("a", "USDC")
    eng.deposit(a, "USDC", 1_000.0)
    assert all(math.isnan(x) for x in eng.liquidation_prices(a))
    # an underlying the account has no exposure to
    eng.fill(a, "BTC_USDC-PERP", 0.01, 100_000.0, fee=0.0)
    below, above = eng.liquidation_prices(a, "ETH")
    assert math.isnan(below) and math.isnan(above)


@pytest.mark.parametrize(("btc_contracts", "eth_size", "want"), [
    (30_000.0, 50.0, "BTC"),    # 300k USD face vs 170k USD
    (10_000.0, 50.0, "ETH"),    # 100k USD face vs 170k USD
    (-10_000.0, -60.0, "ETH"),  # signs do not matter
    (-20_000.0, 40.0, "BTC"),   # 200k vs 136k
])
def test_dominant_underlying_is_the_largest_notional(btc_contracts, eth_size, want):
    eng = base_engine()
    eng.add_instrument("BTC-PERPETUAL", model="deribit_btc_futures", contract_size=10.0,
                       mark=100_000.0, time=NOW)
    eng.add_instrument("ETH_USDC-PERPETUAL", model="deribit_eth_futures", mark=3_400.0,
                       time=NOW)
    a = eng.add_account("a", "USDC")
    eng.deposit(a, "USDC", 1e6)
    eng.fill(a, "BTC-PERPETUAL", btc_contracts, 100_000.0, fee=0.0)
    eng.fill(a, "ETH_USDC-PERPETUAL", eth_size, 3_400.0, fee=0.0)
    assert eng._core.dominant_underlying(eng._acct(a)) == eng.assets.index(want)
    got = eng.liquidation_prices(a)
    ref = eng.liquidation_prices(a, want)
    assert same(got, ref), (got, ref)
    other = eng.liquidation_prices(a, "ETH" if want == "BTC" else "BTC")
    assert not same(got, other)


def test_dominant_underlying_counts_options_by_underlying_units():
    """Options count |size| x cs units of the underlying at its price: 3 BTC of
    options (300k USD) outweigh 80 ETH of perpetuals (272k USD)."""
    eng = base_engine()
    add_option(eng, "BTC-C", strike=150_000.0, cp="C", expiry=NOW + 30 * DAY, cs=0.5)
    eng.set_mark("BTC-C", 100.0, NOW)
    eng.add_instrument("ETH_USDC-PERPETUAL", model="deribit_eth_futures", mark=3_400.0,
                       time=NOW)
    a = eng.add_account("a", "USDC")
    eng.deposit(a, "USDC", 1e6)
    eng.fill(a, "BTC-C", -6.0, 100.0, fee=0.0)
    eng.fill(a, "ETH_USDC-PERPETUAL", 80.0, 3_400.0, fee=0.0)
    assert eng._core.dominant_underlying(eng._acct(a)) == eng.assets.index("BTC")
    eng.fill(a, "ETH_USDC-PERPETUAL", 10.0, 3_400.0, fee=0.0)  # 306k USD
    assert eng._core.dominant_underlying(eng._acct(a)) == eng.assets.index("ETH")


def test_liquidation_prices_of_an_option_marked_off_the_forward_agree_with_summary():
    """A deep in-the-money put marked by set_vol on a forward above the index at a
    positive rate is worth less than its intrinsic value on the index (48,193.81 <
    50,000), so no volatility reprices it on the index at rate 0. The account is
    above its liquidation threshold (equity 57,000 vs MM 55,693.81: ratio 1.023,
    reduce_only), so its liquidation prices are not today's price; the short put
    loses as BTC falls, so the price below is finite and under 100,000, and the
    account's own equity - MM there is ~0.
    Observed: (100000.0, 100000.0): the leg is repriced at vol 0 (intrinsic 50,000),
    which already puts the account 2,306 under the threshold at today's price."""
    eng = base_engine(rate=0.05)
    expiry = NOW + 90 * DAY
    add_option(eng, "P150", strike=150_000.0, cp="P", expiry=expiry)
    eng.set_forward("BTC", expiry, 102_000.0)
    eng.set_vol("P150", 0.5)
    mark = eng.mark("P150")
    want_mark = float(b76_mp(-1, 102_000.0, 150_000.0, 90 / 365, 0.5, 0.05))
    assert mark == pytest.approx(want_mark, rel=1e-12)
    assert mark < 50_000.0  # below the intrinsic value on the index
    a = eng.add_account("a", "USDC")
    eng.deposit(a, "USDC", 57_000.0)
    eng.fill(a, "P150", -1.0, mark, fee=0.0)
    s = eng.summary(a)
    mm = max(0.075 * 100_000.0, 0.075 * mark) + mark
    # Cash 57,000 + the premium, less the short's value: 57,000 up to the
    # rounding of that sum (its last bit depends on the mark's).
    assert s.equity == pytest.approx(57_000.0, abs=2e-11)
    assert s.mm == pytest.approx(mm, rel=1e-12)
    assert s.state == "reduce_only"  # above liquidation (threshold 1.0)
    below, above = eng.liquidation_prices(a)
    assert (below, above) != (100_000.0, 100_000.0), (
        f"liquidation_prices = {(below, above)} for an account at margin ratio "
        f"{s.margin_ratio:.4f} > 1")
    assert below < 100_000.0


@pytest.mark.parametrize(("contracts", "deposit", "ratio", "entry"), [
    (5_000.0, 0.2, 1.0, 100_000.0),      # 50k USD long on 0.2 BTC
    (20_000.0, 1.5, 1.0003, 98_000.0),   # long, contango basis
    (-8_000.0, 0.3, 0.9995, 101_000.0),  # short, backwardation
    (-30_000.0, 2.0, 1.0, 100_000.0),
])
def test_inverse_perp_in_a_coin_account_liquidation_price(contracts, deposit, ratio, entry):
    """A BTC-margined account with an inverse perpetual (10 USD contracts), all in
    BTC: deposit + q cs (1/entry - 1/(r P)) = MM(P) with Deribit's linear rate on
    s = |q| cs / P BTC: s (0.01 + 5e-5 s); solved with scipy's brentq."""
    from scipy.optimize import brentq

    eng = base_engine()
    eng.add_instrument("BTC-PERPETUAL", model="deribit_btc_futures", contract_size=10.0,
                       mark=100_000.0 * ratio, time=NOW)
    a = eng.add_account("a", "BTC")
    eng.deposit(a, "BTC", deposit)
    eng.fill(a, "BTC-PERPETUAL", contracts, entry, fee=0.0)

    def gap(p):
        s = abs(contracts) * 10.0 / p
        return deposit + contracts * 10.0 * (1 / entry - 1 / (ratio * p)) - \
            s * (0.01 + 5e-5 * s)

    p0 = 100_000.0
    assert gap(p0) > 0
    assert eng.summary(a).equity - eng.summary(a).mm == pytest.approx(gap(p0), rel=1e-12)
    below, above = eng.liquidation_prices(a)
    # the search range: 1% steps, 1400 of them, each way; the coin MM grows like
    # 1/P^2 as P falls, so even a short meets it far below (P of a few USD)
    for got, lo, hi in ((below, p0 * 1.01 ** -1400, p0), (above, p0, p0 * 1.01 ** 1400)):
        if gap(lo) > 0 and gap(hi) > 0:
            assert math.isnan(got), (below, above)
        else:
            assert got == pytest.approx(brentq(gap, lo, hi, xtol=1e-12, rtol=1e-15),
                                        rel=1e-12)
    if contracts > 0:
        assert math.isnan(above)


def test_liquidation_prices_all_equals_each_account():
    """The threaded whole-book call gives each account's own liquidation prices
    along its dominant underlying, bit for bit (cross and portfolio accounts)."""
    from marginkit import demo_book

    eng = demo_book.build_engine(n_accounts=400, risk=True)
    for name in eng.accounts[::3]:
        eng.set_mode(name, "portfolio")
    underlying, below, above = eng.liquidation_prices_all()
    assert len(underlying) == below.size == above.size == len(eng.accounts)
    for i in range(len(eng.accounts)):
        assert underlying[i] == eng.dominant_underlying(i)
        want = eng.liquidation_prices(i) if underlying[i] else (math.nan, math.nan)
        assert same((below[i], above[i]), want), i
    assert np.isfinite(below).sum() > 100
