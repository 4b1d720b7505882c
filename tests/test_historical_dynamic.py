"""Historical (joint) scenario sets with value-at-risk / expected shortfall, and the
EWMA dynamic range.

Reference values are recomputed here independently of the core:

* scenario P&L of each position from the documented method: futures linear
  ``cs mark r``, inverse ``cs (1/mark - 1/(mark (1 + r)))`` in coin; options
  Black-76 (``marginkit.black76``) on the shocked forward ``F (1 + r)`` at the
  unshocked volatility, T from the engine clock, at ``engine.rate``, minus the
  mark (inverse: in coin at the shocked forward), times the contract size;
  settlement currency converted to the margin asset at today's prices;
* VaR / ES by their empirical definitions: losses sorted from the largest,
  ``k = ceil((1 - c) n)`` counted in exact decimal arithmetic, VaR the k-th largest
  loss, ES the mean of the k largest, both floored at 0;
* the EWMA range by its recursion in plain Python.
"""

from __future__ import annotations

import math
from fractions import Fraction

import marginkit as mk
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marginkit import scenarios as scn
from marginkit.presets import apply_preset

SETTINGS = settings(max_examples=50, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

YEAR = 365.0 * 86400.0
NOW = 1_735_776_000.0
DAY = 86400
EXP = int(NOW + 40 * DAY)
SPOT = {"BTC": 100_000.0, "ETH": 3_400.0}
FWD = {"BTC": 100_800.0, "ETH": 3_420.0}

# name: (kind, underlying, inverse, cs, strike, cp, vol)
INSTRUMENTS = {
    "BTC_USDC-PERP": ("perpetual", "BTC", False, 0.1, None, None, None),
    "BTC-FUT": ("future", "BTC", True, 10.0, None, None, None),
    "ETH_USDC-PERP": ("perpetual", "ETH", False, 1.0, None, None, None),
    "ETH-PERP": ("perpetual", "ETH", True, 1.0, None, None, None),
    "BTC_USDC-C": ("option", "BTC", False, 0.1, 110_000.0, "C", 0.55),
    "BTC-P": ("option", "BTC", True, 1.0, 92_000.0, "P", 0.62),
    "ETH_USDC-P": ("option", "ETH", False, 1.0, 3_200.0, "P", 0.7),
    "ETH-C": ("option", "ETH", True, 1.0, 3_800.0, "C", 0.66),
}
NAMES = list(INSTRUMENTS)
MODELS = {"BTC": "deribit_btc_futures", "ETH": "deribit_eth_futures"}


def engine(rate: float = 0.03) -> mk.Engine:
    eng = mk.Engine()
    eng.now = NOW
    eng.rate = rate
    eng.add_asset("USDC", price=1.0, time=NOW, quantum=0.0)
    eng.add_asset("BTC", price=SPOT["BTC"], time=NOW)
    eng.add_asset("ETH", price=SPOT["ETH"], time=NOW)
    eng.add_asset("SOL", price=190.0, time=NOW)
    apply_preset(eng, "deribit")
    for name, (kind, u, inverse, cs, k, cp, _vol) in INSTRUMENTS.items():
        settle = u if inverse else "USDC"
        if kind == "option":
            eng.add_instrument(name, kind="option", underlying=u, settle=settle,
                               inverse=inverse, contract_size=cs, strike=k, cp=cp, expiry=EXP,
                               model="deribit_options")
        else:
            mark = SPOT[u] * (1.0004 if kind == "perpetual" else 1.0)
            if name == "BTC-FUT":
                mark = FWD["BTC"]
            eng.add_instrument(name, kind=kind, underlying=u, settle=settle, inverse=inverse,
                               contract_size=cs, expiry=EXP if kind == "future" else None,
                               model=MODELS[u], mark=mark, time=NOW)
    # BTC's forward comes from the dated future's mark, ETH's is set directly
    eng.set_forward("ETH", EXP, FWD["ETH"], NOW)
    for name, (kind, *_rest, vol) in INSTRUMENTS.items():
        if kind == "option":
            eng.set_vol(name, vol, NOW)
    return eng


def expected_rows(eng: mk.Engine, returns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """P&L per contract per scenario, in the settlement currency."""
    rows = {}
    t = (EXP - eng.now) / YEAR
    for name, (kind, u, inverse, cs, k, cp, vol) in INSTRUMENTS.items():
        r = returns[u]
        mark = eng.mark(name)
        if kind != "option":
            rows[name] = cs * (1.0 / mark - 1.0 / (mark * (1.0 + r))) if inverse else \
                cs * mark * r
            continue
        f = FWD[u] * (1.0 + r)
        v = mk.black76(cp, f, k, t, vol, eng.rate, greeks=("price",)).price
        rows[name] = cs * ((v / f if inverse else v) - mark)
    return rows


def tail_count(confidence: float, n: int) -> int:
    """k = ceil((1 - c) n) in exact decimal arithmetic (c as written), at least 1."""
    return max(1, math.ceil((1 - Fraction(repr(confidence))) * n))


def var_es(pnl: np.ndarray, confidence: float) -> tuple[float, float]:
    losses = sorted((-pnl).tolist(), reverse=True)
    k = tail_count(confidence, len(losses))
    return max(0.0, losses[k - 1]), max(0.0, sum(losses[:k]) / k)


def joint_returns(rng: np.random.Generator, n: int, corr: float) -> dict[str, np.ndarray]:
    z = rng.standard_normal((n, 2))
    z[:, 1] = corr * z[:, 0] + math.sqrt(1 - corr * corr) * z[:, 1]
    scale = np.array([0.05, 0.07])
    r = np.expm1(z * scale - 0.5 * scale**2)
    return {"BTC": r[:, 0], "ETH": r[:, 1]}


def book_pnl(eng, account, rows):
    mp = eng.price(eng.margin_asset(account))
    pnl = 0.0
    for p in eng.positions(account):
        name = p["instrument"]
        if name not in rows:  # not in the joint set
            continue
        u, inverse = INSTRUMENTS[name][1], INSTRUMENTS[name][2]
        f = (eng.price(u) if inverse else 1.0) / mp
        pnl = pnl + p["size"] * f * rows[name]
    return pnl


sizes_st = st.one_of(st.just(0.0), st.floats(-20.0, 20.0).filter(lambda x: abs(x) > 1e-3))
book_st = st.fixed_dictionaries({n: sizes_st for n in NAMES})


@st.composite
def historical_cases(draw):
    return {
        "seed": draw(st.integers(0, 2**32 - 1)),
        "n": draw(st.sampled_from([1, 7, 50, 100, 250, 333])),
        "corr": draw(st.floats(-0.9, 0.95)),
        "confidence": draw(st.sampled_from([0.5, 0.9, 0.95, 0.975, 0.99, 0.997])),
        "measure": draw(st.sampled_from(["var", "es"])),
        "im_factor": draw(st.sampled_from([1.0, 1.25])),
        "book": draw(book_st),
        "margin": draw(st.sampled_from(["USDC", "BTC"])),
    }


def setup_case(case):
    rng = np.random.default_rng(case["seed"])
    returns = joint_returns(rng, case["n"], case["corr"])
    eng = engine()
    kw = scn.historical(returns, measure=case["measure"], confidence=case["confidence"],
                        im_factor=case["im_factor"])
    eng.add_scenario_set("hist", **kw)
    eng.set_scenarios("BTC", "hist")
    eng.set_scenarios("ETH", "hist")
    a = eng.add_account("a", case["margin"])
    eng.deposit(a, case["margin"], 1e9 if case["margin"] == "USDC" else 1e4)
    eng.set_mode(a, "portfolio")
    for name, q in case["book"].items():
        if q:
            eng.fill(a, name, q, eng.mark(name), fee=0.0)
    return eng, a, returns


# =========================================================================================
# 1. VaR / ES over joint moves
# =========================================================================================

@SETTINGS
@given(historical_cases())
def test_historical_var_es_equal_the_empirical_definitions(case):
    eng, a, returns = setup_case(case)
    rows = expected_rows(eng, returns)
    for name in NAMES:
        got = eng.risk_row(name)
        scale = abs(rows[name]).max() + abs(eng.mark(name)) * INSTRUMENTS[name][3] + 1e-300
        assert np.allclose(got, rows[name], rtol=1e-11, atol=1e-12 * scale), name
    pnl = book_pnl(eng, a, rows)
    groups = eng.portfolio(a)
    if not eng.positions(a):
        assert groups == []
        assert eng.summary(a).mm == 0.0
        return
    assert len(groups) == 1
    g = groups[0]
    assert g["underlying"] is None and g["set"] == "hist"
    assert sorted(g["instruments"]) == sorted(p["instrument"] for p in eng.positions(a))
    notional = sum(abs(p["size"]) * INSTRUMENTS[p["instrument"]][3]
                   * (SPOT[INSTRUMENTS[p["instrument"]][1]] if not INSTRUMENTS[p["instrument"]][2]
                      or INSTRUMENTS[p["instrument"]][0] == "option" else 1.0)
                   for p in eng.positions(a))
    mp = eng.price(case["margin"])
    tol = 1e-10 * notional / mp + 1e-12
    assert np.allclose(g["pnl"], pnl, rtol=0, atol=tol)
    var, es = var_es(np.asarray(pnl), case["confidence"])
    want = var if case["measure"] == "var" else es
    assert g["loss"] == pytest.approx(want, abs=tol), (g["loss"], var, es)
    s = eng.summary(a)
    assert s.mm == pytest.approx(want, abs=tol)
    assert s.im == pytest.approx(want * case["im_factor"], abs=tol * case["im_factor"])
    assert g["short_charge"] == g["delta_charge"] == 0.0
    # the reported scenario is the VaR quantile: the k-th largest loss
    k = tail_count(case["confidence"], case["n"])
    losses = np.sort(-np.asarray(pnl))[::-1]
    assert -pnl[g["worst"]] == pytest.approx(losses[k - 1], abs=tol)
    contrib = dict(zip(g["instruments"], g["contribution"], strict=True))
    for p in eng.positions(a):
        name = p["instrument"]
        u, inverse = INSTRUMENTS[name][1], INSTRUMENTS[name][2]
        f = (eng.price(u) if inverse else 1.0) / mp
        assert contrib[name] == pytest.approx(p["size"] * f * rows[name][g["worst"]], abs=tol)


@pytest.mark.parametrize(("confidence", "n", "k"), [
    (0.99, 100, 1), (0.99, 1000, 10), (0.95, 20, 1), (0.95, 21, 2), (0.9, 10, 1),
    (0.9, 30, 3), (0.975, 40, 1), (0.975, 41, 2), (0.5, 3, 2), (0.999, 10, 1), (0.7, 10, 3),
])
def test_tail_count_at_exact_multiples(confidence, n, k):
    """(1 - c) n that is a whole number in decimal (but not in binary, e.g. 0.01 x
    100 = 1.0000000000000009) gives exactly that many scenarios in the tail."""
    assert tail_count(confidence, n) == k
    eng = engine()
    returns = {"BTC": np.linspace(-0.2, 0.2, n) if n > 1 else np.array([-0.1])}
    eng.add_scenario_set("h", **scn.historical(returns, measure="var", confidence=confidence))
    eng.set_scenarios("BTC", "h")
    a = eng.add_account("a", "USDC")
    eng.deposit(a, "USDC", 1e7)
    eng.set_mode(a, "portfolio")
    eng.fill(a, "BTC_USDC-PERP", 10.0, eng.mark("BTC_USDC-PERP"), fee=0.0)
    # loss of scenario s: -1 BTC x mark x r_s; the k-th largest is at the k-th lowest r
    mark = eng.mark("BTC_USDC-PERP")
    losses = sorted((-1.0 * mark * returns["BTC"]).tolist(), reverse=True)
    assert eng.portfolio(a)[0]["loss"] == pytest.approx(max(0.0, losses[k - 1]), rel=1e-12)
    eng.add_scenario_set("e", **scn.historical(returns, measure="es", confidence=confidence))
    eng.set_scenarios("BTC", "e")
    assert eng.portfolio(a)[0]["loss"] == pytest.approx(
        max(0.0, sum(losses[:k]) / k), rel=1e-12)


def test_losses_are_floored_at_zero():
    """A book that gains in every scenario needs nothing."""
    eng = engine()
    returns = {"BTC": np.array([0.01, 0.02, 0.05]), "ETH": np.array([0.0, 0.01, 0.03])}
    for m in ("var", "es"):
        eng.add_scenario_set(m, **scn.historical(returns, measure=m, confidence=0.5))
    eng.set_scenarios("BTC", "var")
    eng.set_scenarios("ETH", "var")
    a = eng.add_account("a", "USDC")
    eng.deposit(a, "USDC", 1e6)
    eng.set_mode(a, "portfolio")
    eng.fill(a, "BTC_USDC-PERP", 5.0, eng.mark("BTC_USDC-PERP"), fee=0.0)
    eng.fill(a, "ETH_USDC-PERP", 2.0, eng.mark("ETH_USDC-PERP"), fee=0.0)
    for m in ("var", "es"):
        eng.set_scenarios("BTC", m)
        eng.set_scenarios("ETH", m)
        g = eng.portfolio(a)[0]
        assert g["loss"] == 0.0 and g["mm"] == 0.0
        assert eng.summary(a).mm == 0.0


def test_joint_group_spans_both_underlyings_and_others_stay_standard():
    """Positions on every underlying of the joint set form one group; a position on
    an underlying without a set keeps its standard requirement."""
    eng = engine()
    eng.add_instrument("SOL_USDC-PERP", kind="perpetual", underlying="SOL", settle="USDC",
                       model="deribit_sol_usdc_futures", mark=190.0, time=NOW)
    rng = np.random.default_rng(3)
    returns = joint_returns(rng, 60, 0.5)
    eng.add_scenario_set("hist", **scn.historical(returns, measure="es", confidence=0.95))
    eng.set_scenarios("BTC", "hist")
    eng.set_scenarios("ETH", "hist")
    book = {"BTC_USDC-PERP": 3.0, "ETH-C": -4.0, "ETH_USDC-PERP": -2.0, "SOL_USDC-PERP": 50.0}
    pm = eng.add_account("pm", "USDC")
    cross = eng.add_account("cross", "USDC")
    for a in (pm, cross):
        eng.deposit(a, "USDC", 1e7)
        for n, q in book.items():
            eng.fill(a, n, q, eng.mark(n), fee=0.0)
    eng.set_mode(pm, "portfolio")
    groups = eng.portfolio(pm)
    assert len(groups) == 1
    assert sorted(groups[0]["instruments"]) == ["BTC_USDC-PERP", "ETH-C", "ETH_USDC-PERP"]
    sol = next(r for r in eng.attribution(cross)
               if eng.instruments[r.instrument] == "SOL_USDC-PERP")
    assert eng.summary(pm).mm == pytest.approx(groups[0]["mm"] + sol.mm, rel=1e-12)
    rows = expected_rows(eng, returns)
    pnl = book_pnl(eng, pm, rows)
    _, es = var_es(pnl, 0.95)
    assert groups[0]["loss"] == pytest.approx(es, rel=1e-9)


# =========================================================================================
# 2. Pre-trade checks in a VaR / ES set
# =========================================================================================

order_st = st.tuples(st.sampled_from(NAMES), st.floats(-10.0, 10.0).filter(lambda x: abs(x) > 0.01))


@FEW
@given(historical_cases(), st.lists(order_st, min_size=1, max_size=4))
def test_check_order_incremental_equals_fill_and_summary(case, orders):
    eng, a, _ = setup_case(case)
    for name, qty in orders:
        r = eng.check_order(a, name, qty, eng.mark(name))
        assert r.reason in ("ok", "insufficient_margin"), r
        eng.fill(a, name, qty, eng.mark(name), fee=0.0)
        s = eng.summary(a)
        scale = 1e-9 * max(1.0, s.mm)
        assert r.im_after == pytest.approx(s.im, rel=1e-12, abs=scale), (name, qty)
        assert r.mm_after == pytest.approx(s.mm, rel=1e-12, abs=scale), (name, qty)
        assert r.equity_after == pytest.approx(s.equity, rel=1e-12, abs=scale)


@FEW
@given(st.integers(0, 2**32 - 1), st.sampled_from(["var", "es"]),
       st.sampled_from([0.9, 0.95, 0.99]), st.sampled_from(NAMES), st.sampled_from([1, -1]),
       st.floats(2_000.0, 50_000.0))
def test_max_order_size_is_the_boundary_of_check_order(seed, measure, confidence, name,
                                                       side, deposit):
    rng = np.random.default_rng(seed)
    eng = engine()
    returns = joint_returns(rng, 120, 0.6)
    eng.add_scenario_set("h", **scn.historical(returns, measure=measure,
                                               confidence=confidence))
    eng.set_scenarios("BTC", "h")
    eng.set_scenarios("ETH", "h")
    a = eng.add_account("a", "USDC")
    eng.deposit(a, "USDC", deposit)
    eng.set_mode(a, "portfolio")
    eng.fill(a, "ETH_USDC-PERP", 1.0, eng.mark("ETH_USDC-PERP"), fee=0.0)
    price = eng.mark(name)
    x = eng.max_order_size(a, name, side, price)
    assert x >= 0.0
    if math.isinf(x):
        return
    if x > 0:
        assert eng.check_order(a, name, side * x, price).accepted
    up = np.nextafter(x, math.inf)
    assert not eng.check_order(a, name, side * up, price).accepted, (x, up)


def test_var_max_order_size_is_the_end_of_the_accepted_interval_from_zero():
    """VaR is not convex in the order size, so the accepted sizes need not be one
    interval; max_order_size is documented as the end of the interval of accepted
    sizes that starts at zero (every smaller order is accepted too): an order
    growing through a rejected region is never offered.

    Three joint scenarios, VaR at 50 % (k = ceil(0.5 x 3) = 2: the second largest
    loss). 1 BTC long (10 x 0.1 at 100,040) loses 6,002.40 in scenario 1; buying x
    ETH (mark 3,401.36) loses 34.0136 x in scenario 0 and gains it in scenario 1.
    VaR(x) = max(0, min(34.0136 x, 6002.40 - 34.0136 x)): with 1,500 USDC of
    equity, x <= 44.1 and every x >= 132.4 are accepted (VaR is 0 beyond 176.5)."""
    eng = engine()
    returns = {"BTC": [0.0, -0.06, 0.0], "ETH": [-0.01, 0.01, 0.0]}
    eng.add_scenario_set("h", **scn.historical(returns, measure="var", confidence=0.5))
    eng.set_scenarios("BTC", "h")
    eng.set_scenarios("ETH", "h")
    a = eng.add_account("a", "USDC")
    eng.deposit(a, "USDC", 1_500.0)
    eng.set_mode(a, "portfolio")
    eng.fill(a, "BTC_USDC-PERP", 10.0, eng.mark("BTC_USDC-PERP"), fee=0.0)
    px = eng.mark("ETH_USDC-PERP")
    per_unit = 0.01 * px
    assert eng.summary(a).im == 0.0
    for x, ok in ((44.0, True), (50.0, False), (100.0, False), (140.0, True),
                  (200.0, True), (1e6, True)):
        r = eng.check_order(a, "ETH_USDC-PERP", x, px)
        want_var = max(0.0, min(per_unit * x, 6_002.4 - per_unit * x))
        assert r.im_after == pytest.approx(want_var, rel=1e-9, abs=1e-6), x
        assert r.accepted is ok, x
    got = eng.max_order_size(a, "ETH_USDC-PERP", "buy", px)
    # the first boundary is found exactly ...
    assert got == pytest.approx(1_500.0 / per_unit, rel=1e-12)
    # ... and it is not jumped over, although 140, 200 and 1e6 contracts are accepted
    assert eng.check_order(a, "ETH_USDC-PERP", got, px).accepted
    assert not eng.check_order(a, "ETH_USDC-PERP", got * (1 + 1e-9), px).accepted


def test_spot_max_order_size_in_a_portfolio_account_reads_no_risk_row():
    """Spot trades are not scenario-margined (a spot instrument has no risk row), so
    a portfolio-mode account's max_order_size on spot must be what check_order
    accepts, as in cross mode: with no haircut on BTC, buying or selling spot moves
    no equity and no requirement: inf. The closed-form portfolio solver instead
    reads the spot instrument's (non-existent) risk row, out of bounds."""
    results = {}
    for mode in ("cross", "portfolio"):
        eng = mk.Engine()
        eng.now = NOW
        eng.add_asset("USDC", price=1.0, time=NOW, quantum=0.01)
        eng.add_asset("BTC", price=100_000.0, time=NOW)
        apply_preset(eng, "deribit")
        eng.add_instrument("PERP", kind="perpetual", underlying="BTC", settle="USDC",
                           model="deribit_btc_futures", mark=100_000.0, time=NOW)
        eng.add_instrument("BTC_USDC", kind="spot", underlying="BTC", settle="USDC",
                           model="deribit_btc_futures", mark=100_000.0, time=NOW)
        eng.add_scenario_set("grid", **scn.deribit())
        eng.set_scenarios("BTC", "grid")
        a = eng.add_account("a", "USDC")
        eng.deposit(a, "USDC", 10_000.0)
        eng.set_mode(a, mode)
        eng.fill(a, "PERP", 0.5, 100_000.0, fee=0.0)
        assert len(eng.risk_row("BTC_USDC")) == 0
        for side, sign in (("buy", 1.0), ("sell", -1.0)):
            for qty in (0.125, 1.0, 10.0, 1_000.0):
                assert eng.check_order(a, "BTC_USDC", sign * qty, 100_000.0).accepted, \
                    (mode, side, qty)
            results[mode, side] = eng.max_order_size(a, "BTC_USDC", side, 100_000.0)
    assert results["cross", "buy"] == results["cross", "sell"] == math.inf
    # observed: portfolio buy 0.125, sell 1.0 (garbage from reading risk_[npos + s])
    assert results["portfolio", "buy"] == math.inf, results
    assert results["portfolio", "sell"] == math.inf, results


# =========================================================================================
# 3. Validation of joint sets
# =========================================================================================

def test_joint_set_on_an_underlying_without_moves_raises():
    eng = engine()
    returns = {"BTC": [0.01, -0.02], "ETH": [0.0, 0.03]}
    eng.add_scenario_set("h", **scn.historical(returns))
    with pytest.raises(ValueError, match="SOL"):
        eng.set_scenarios("SOL", "h")
    with pytest.raises(ValueError, match="USDC"):
        eng.set_scenarios("USDC", "h")
    # nothing was assigned
    a = eng.add_account("a", "USDC")
    eng.deposit(a, "USDC", 1e6)
    eng.set_mode(a, "portfolio")
    eng.fill(a, "BTC_USDC-PERP", 1.0, eng.mark("BTC_USDC-PERP"), fee=0.0)
    assert eng.portfolio(a) == []
    eng.set_scenarios("BTC", "h")
    assert len(eng.portfolio(a)) == 1


@pytest.mark.parametrize("charge", ["short_option_charge", "delta_charge"])
def test_joint_sets_with_add_on_charges_raise(charge):
    eng = engine()
    kw = scn.historical({"BTC": [0.01, -0.02]})
    with pytest.raises(ValueError, match="charge"):
        eng.add_scenario_set("h", **kw, **{charge: 0.01})
    assert eng._core.num_scenario_sets() == 0
    eng.add_scenario_set("h", **kw, **{charge: 0.0})
    assert eng._core.num_scenario_sets() == 1


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"confidence": 1.0}, "confidence"),
    ({"confidence": 0.0}, "confidence"),
    ({"measure": "cvar"}, "measure"),
])
def test_bad_historical_parameters_raise(kwargs, match):
    eng = engine()
    kw = dict(scn.historical({"BTC": [0.01, -0.02]}))
    kw.update(kwargs)
    with pytest.raises(ValueError, match=match):
        eng.add_scenario_set("h", **kw)


def test_bad_joint_moves_raise():
    eng = engine()
    with pytest.raises(ValueError):
        scn.historical({"BTC": [0.01, -0.02], "ETH": [0.0]})
    with pytest.raises(ValueError):
        scn.historical({"BTC": []})
    with pytest.raises(ValueError, match="measure"):
        scn.historical({"BTC": [0.01]}, measure="worst")
    for bad in (-1.0, -1.5, math.nan, math.inf):
        with pytest.raises(ValueError, match="BTC"):
            eng.add_scenario_set("h", **scn.historical({"BTC": [0.01, bad]}))
    kw = scn.historical({"BTC": [0.01, 0.02]})
    kw["scenarios"] = [(0.0, 0, 0.5), (0.0, 0, 1.0)]
    with pytest.raises(ValueError, match="weight"):
        eng.add_scenario_set("h", **kw)
    with pytest.raises(ValueError, match="unknown asset"):
        eng.add_scenario_set("h", **scn.historical({"XRP": [0.01, 0.02]}))
    assert eng._core.num_scenario_sets() == 0


# =========================================================================================
# 4. EWMA dynamic range
# =========================================================================================

class PyEwma:
    """The documented recursion, in plain Python."""

    def __init__(self, half_life, multiplier, floor, cap, max_step=0.25, horizon=1.0,
                 initial_vol=None):
        self.lam = 0.5 ** (1.0 / half_life)
        self.mult, self.floor, self.cap = multiplier, floor, cap
        self.max_step, self.horizon = max_step, horizon
        self.var = None if initial_vol is None else initial_vol * initial_vol
        self.last = None
        self.range = floor if initial_vol is None else self.target()

    def target(self):
        v = 0.0 if self.var is None else math.sqrt(self.var)
        return min(max(self.mult * v * math.sqrt(self.horizon), self.floor), self.cap)

    def update(self, price):
        if self.last is not None:
            r = math.log(price / self.last)
            self.var = r * r if self.var is None else \
                self.lam * self.var + (1.0 - self.lam) * r * r
            step = self.max_step * self.range
            moved = min(max(self.target(), self.range - step), self.range + step)
            self.range = min(max(moved, self.floor), self.cap)
        self.last = price
        return self.range


@st.composite
def ewma_cases(draw):
    floor = draw(st.floats(0.005, 0.2))
    return {
        "half_life": draw(st.floats(0.5, 100.0)), "multiplier": draw(st.floats(0.5, 10.0)),
        "floor": floor, "cap": floor * draw(st.floats(1.0, 20.0)),
        "max_step": draw(st.floats(0.01, 2.0)), "horizon": draw(st.floats(0.1, 30.0)),
        "initial_vol": draw(st.one_of(st.none(), st.floats(0.0, 0.2))),
    }


@SETTINGS
@given(ewma_cases(), st.integers(0, 2**32 - 1), st.floats(0.001, 0.15),
       st.integers(1, 200))
def test_ewma_range_matches_the_python_recursion(params, seed, sigma, steps):
    rng = np.random.default_rng(seed)
    prices = 100.0 * np.exp(np.cumsum(rng.standard_normal(steps) * sigma))
    eng_r = scn.EwmaRange(**params)
    ref = PyEwma(**params)
    assert eng_r.range == pytest.approx(ref.range, rel=1e-14)
    if params["initial_vol"] is None:
        assert math.isnan(eng_r.vol)
    else:
        assert eng_r.vol == pytest.approx(params["initial_vol"], rel=1e-15)
    prev = eng_r.range
    for p in prices:
        got = eng_r.update(float(p))
        want = ref.update(float(p))
        assert got == pytest.approx(want, rel=1e-12), (p, got, want)
        assert eng_r.range == got
        if ref.var is None:
            assert math.isnan(eng_r.vol)
        else:
            assert eng_r.vol == pytest.approx(math.sqrt(ref.var), rel=1e-12)
        # floor, cap and the speed limit hold on every update
        assert params["floor"] <= got <= params["cap"]
        assert abs(got - prev) <= params["max_step"] * prev * (1 + 1e-12)
        prev = got


def test_ewma_first_return_seeds_the_variance_and_the_step_limit_binds():
    rng = scn.EwmaRange(half_life=10.0, multiplier=3.0, floor=0.02, cap=0.5, max_step=0.25)
    assert rng.range == 0.02 and math.isnan(rng.vol)
    assert rng.update(100.0) == 0.02 and math.isnan(rng.vol)  # no return yet
    r = math.log(110.0 / 100.0)
    got = rng.update(110.0)
    assert rng.vol == pytest.approx(abs(r), rel=1e-15)  # var = r^2
    # target 3 x 0.0953 = 0.286, but one update moves at most 25 %: 0.02 -> 0.025
    assert got == pytest.approx(0.025, rel=1e-15)
    lam = 0.5 ** (1 / 10)
    var = r * r
    for k, px in enumerate((110.0, 110.0, 110.0), start=1):
        var = lam * var
        got = rng.update(px)
        assert rng.vol == pytest.approx(math.sqrt(var), rel=1e-13)
        assert got == pytest.approx(0.02 * 1.25 ** (k + 1), rel=1e-13)
    # a long calm spell brings it down to the floor, never below
    for _ in range(400):
        got = rng.update(110.0)
    assert got == 0.02


def test_ewma_cap_binds():
    rng = scn.EwmaRange(half_life=2.0, multiplier=5.0, floor=0.05, cap=0.1, max_step=10.0,
                        initial_vol=0.5)
    assert rng.range == 0.1  # the seed's target 2.5 is capped
    rng.update(100.0)
    assert rng.update(300.0) == 0.1


@pytest.mark.parametrize("kwargs", [
    {"half_life": 0.0}, {"half_life": -1.0}, {"half_life": math.nan}, {"half_life": math.inf},
    {"multiplier": 0.0}, {"floor": 0.0}, {"cap": -0.1}, {"max_step": 0.0},
    {"horizon": 0.0}, {"floor": 0.3, "cap": 0.2}, {"initial_vol": -0.1},
    {"initial_vol": math.nan}, {"max_step": math.inf},
])
def test_ewma_bad_parameters_raise(kwargs):
    params = {"half_life": 10.0, "multiplier": 3.0, "floor": 0.05, "cap": 0.5}
    params.update(kwargs)
    with pytest.raises(ValueError):
        scn.EwmaRange(**params)


@pytest.mark.parametrize("price", [0.0, -1.0, math.nan, math.inf])
def test_ewma_bad_prices_raise_and_change_nothing(price):
    rng = scn.EwmaRange(half_life=10.0, multiplier=3.0, floor=0.05, cap=0.5)
    rng.update(100.0)
    rng.update(103.0)
    state = (rng.range, rng.vol)
    with pytest.raises(ValueError, match="price"):
        rng.update(price)
    assert (rng.range, rng.vol) == state
    ref = PyEwma(10.0, 3.0, 0.05, 0.5)
    for p in (100.0, 103.0, 103.0):
        want = ref.update(p)
    assert rng.update(103.0) == pytest.approx(want, rel=1e-14)


# ---- a Deribit grid scaled by the range ----------------------------------------------------

GRID_BOOKS = {
    "long_perp": {"BTC_USDC-PERP": 20.0},
    "short_inverse_future": {"BTC-FUT": -3_000.0},
    "short_call": {"BTC_USDC-C": -30.0},
    "short_put_inverse": {"BTC-P": -2.0},
    "short_straddle_hedged": {"BTC_USDC-C": -30.0, "BTC-P": -3.0, "BTC_USDC-PERP": 5.0},
}


@pytest.mark.parametrize("book", list(GRID_BOOKS))
@pytest.mark.parametrize("margin", ["USDC", "BTC"])
def test_scaling_a_deribit_grid_with_the_range_is_monotone(book, margin):
    """Feed a volatile price path to an EwmaRange, build a Deribit grid at each
    range it produced; for books whose loss grows with the size of the move (short
    options, futures) the requirement never falls as the range grows, and rises
    strictly for futures."""
    rng = np.random.default_rng(11)
    ewma = scn.EwmaRange(half_life=5.0, multiplier=2.5, floor=0.04, cap=0.4, max_step=0.3)
    ranges = {ewma.update(float(p))
              for p in 100.0 * np.exp(np.cumsum(rng.standard_normal(60) * 0.04))}
    ranges = sorted(ranges)
    assert len(ranges) >= 10
    eng = engine()
    a = eng.add_account("a", margin)
    eng.deposit(a, margin, 1e8 if margin == "USDC" else 1e3)
    eng.set_mode(a, "portfolio")
    for n, q in GRID_BOOKS[book].items():
        eng.fill(a, n, q, eng.mark(n), fee=0.0)
    mms = []
    for i, r in enumerate(ranges):
        eng.add_scenario_set(f"d{i}", **scn.deribit(price_range=r))
        eng.set_scenarios("BTC", f"d{i}")
        s = eng.summary(a)
        mms.append((s.mm, s.im))
    for (mm0, im0), (mm1, im1), r0, r1 in zip(mms, mms[1:], ranges, ranges[1:], strict=False):
        assert mm1 >= mm0 * (1 - 1e-12), (r0, r1, mm0, mm1)
        assert im1 >= im0 * (1 - 1e-12), (r0, r1, im0, im1)
        if book in ("long_perp", "short_inverse_future"):
            assert mm1 > mm0
    assert mms[-1][0] > mms[0][0] > 0
    if book == "long_perp":
        # the loss is the largest down move on the grid, 20 x 0.1 x mark x range
        # (extended moves m count at min(1, range / |m| / 4): at most range / 4)
        mark = eng.mark("BTC_USDC-PERP")
        for r, (mm, _) in zip(ranges, mms, strict=True):
            assert mm == pytest.approx(2.0 * mark * r / eng.price(margin), rel=1e-12)
