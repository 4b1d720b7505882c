"""Properties of the venue liquidation mechanisms (maintenance fraction,
open-interest IMF, margin-implied insurance-fund fee, fee ramp, fillable price,
spot weights and liability transfer) and the state format that carries them."""

from __future__ import annotations

import math
from pathlib import Path

import marginkit as mk
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

NOW = 1_735_776_000.0
SETTINGS = settings(max_examples=60, deadline=None)


def _perp(price: float, *, imf: float = 0.2, fraction: float = 0.5, size: float = 1.0,
          equity_over_mm: float = 0.9, **model) -> mk.Engine:
    """One linear perpetual position whose equity is ``equity_over_mm`` x MM."""
    eng = mk.Engine()
    eng.now = NOW
    eng.add_asset("USDC", price=1.0, time=NOW)
    eng.add_asset("BTC", price=price, time=NOW)
    eng.add_model("tier", "linear_rate", im_base=imf, im_slope=0.0, mm_fraction=fraction,
                  **model)
    eng.add_instrument("BTC-USD", kind="perpetual", underlying="BTC", settle="USDC",
                       model="tier", mark=price, time=NOW)
    eng.add_account("a", "USDC")
    notional = abs(size) * price
    mm = notional * eng.model_rates("tier")["mm_base"]
    # Cash of 0.1 % of the notional (a fixed amount could exceed the position's
    # whole requirement and ask for a negative entry price), and the entry price
    # that leaves equity = equity_over_mm x MM: it stays within 0.1 % + MM rate
    # x equity_over_mm of the price.
    cash = 1e-3 * notional
    eng.deposit("a", "USDC", cash)
    eng.fill("a", "BTC-USD", size, price - (equity_over_mm * mm - cash) / size, fee=0.0)
    return eng


@SETTINGS
@given(imf=st.floats(0.0, 1.0), fraction=st.floats(0.0, 1.0),
       quantum=st.sampled_from([0.0, 1e-6, 1e-4]), size=st.floats(1e-3, 1e3))
def test_mm_from_a_fraction_never_exceeds_im(imf, fraction, quantum, size):
    eng = _perp(100.0, imf=imf, fraction=fraction, size=size, equity_over_mm=0.5,
                rate_quantum=quantum)
    r = eng.model_rates("tier")
    assert 0.0 <= r["mm_base"] <= r["im_base"]
    assert r["mm_base"] <= imf * fraction + 1e-15  # rounded down, never up
    s = eng.summary("a")
    assert s.mm <= s.im


@SETTINGS
@given(imf=st.floats(0.01, 0.5), lo=st.floats(0.0, 1e6), width=st.floats(1.0, 1e6),
       oi=st.floats(0.0, 3e6))
def test_open_interest_rate_is_monotone_and_bounded(imf, lo, width, oi):
    eng = _perp(1.0, imf=imf, oi_lower=lo, oi_upper=lo + width)
    r = eng.initial_rate("tier", imf, oi)
    assert imf <= r <= 1.0
    assert eng.initial_rate("tier", imf, oi * 1.1 + 1.0) >= r
    eng.set_open_interest("BTC-USD", oi)  # $1 contracts
    s = eng.summary("a")
    assert s.im == pytest.approx(1.0 * r, rel=1e-12) and s.mm <= s.im


@SETTINGS
@given(ratio=st.floats(0.0, 0.999), fee=st.floats(0.0, 0.05), max_if=st.floats(0.0, 0.2),
       size=st.floats(-50.0, 50.0).filter(lambda x: abs(x) > 1e-3))
@example(ratio=0.5, fee=0.01, max_if=0.1, size=-0.0078125)  # once a negative entry price
def test_insurance_fund_fee_never_exceeds_the_equity_left(ratio, fee, max_if, size):
    """The margin-implied IF fee takes at most 95 % of what the liquidator fee
    leaves of the equity, and executing the plan never makes the account bankrupt."""
    eng = _perp(100.0, size=size, equity_over_mm=ratio)
    eng.set_liquidation_params(fee_rate=fee, fee_policy="margin_implied", max_if_fee=max_if)
    total, if_fee = eng.liquidation_fee_rate("a", "BTC-USD")
    equity = eng.summary("a").equity
    notional = abs(size) * 100.0
    assert 0.0 <= if_fee <= max_if and total == pytest.approx(fee + if_fee)
    assert if_fee * notional <= 0.95 * max(0.0, equity - fee * notional) + 1e-9 * notional
    fund0 = eng.insurance_fund("USDC")
    res = eng.liquidate("a")
    assert eng.insurance_fund("USDC") - fund0 == pytest.approx(res["fees_to_fund"], abs=1e-9)
    assert eng.summary("a").equity >= -1e-9 * notional
    assert res["bad_debt"] <= 1e-9 * notional


@SETTINGS
@given(ratio=st.floats(-0.5, 1.5), ba=st.floats(0.0, 5.0), smmr=st.floats(0.0, 1.0),
       size=st.floats(-10.0, 10.0).filter(lambda x: abs(x) > 1e-3))
def test_fillable_price_lies_between_the_mark_and_the_widest_spread(ratio, ba, smmr, size):
    """The fillable price is on the liquidated side of the mark, at most
    SMMR x MM / |size| away, at the mark once equity covers MM, and moves away
    from the mark as equity falls (ABR grows)."""
    price = 50_000.0
    eng = _perp(price, size=size, equity_over_mm=ratio)
    eng.set_liquidation_params(fill_policy="fillable", bankruptcy_adjustment=ba,
                               spread_to_mm=smmr)
    mm = eng.summary("a").mm
    fill = eng.liquidation_fill_price("a", "BTC-USD")
    widest = smmr * mm / abs(size)
    if size > 0:  # a sell
        assert price - widest * (1 + 1e-12) - 1e-9 <= fill <= price
    else:
        assert price <= fill <= price + widest * (1 + 1e-12) + 1e-9
    if ratio >= 1.0:
        assert fill == pytest.approx(price, rel=1e-15)
    worse = _perp(price, size=size, equity_over_mm=ratio - 0.1)
    worse.set_liquidation_params(fill_policy="fillable", bankruptcy_adjustment=ba,
                                 spread_to_mm=smmr)
    assert abs(worse.liquidation_fill_price("a", "BTC-USD") - price) >= abs(fill - price) - 1e-9


@SETTINGS
@given(inactive=st.floats(0.0, 1e6), grace=st.floats(0.0, 1e4), per=st.floats(0.0, 1e-5))
def test_fee_ramp_is_bounded(inactive, grace, per):
    eng = _perp(100.0)
    eng.set_liquidation_params(fee_rate=0.01, ramp_per_second=per, ramp_grace=grace,
                               max_fee_rate=0.05)
    eng.set_last_active("a", NOW - inactive)
    total, _ = eng.liquidation_fee_rate("a", "BTC-USD")
    assert 0.01 <= total <= 0.05
    if inactive < grace:
        assert total == 0.01


@SETTINGS
@given(aw=st.floats(0.5, 1.0), lw=st.floats(1.0, 1.5), fee_a=st.floats(0.0, 0.1),
       fee_l=st.floats(0.0, 0.1), shortage=st.floats(0.01, 50.0))
def test_liability_transfer_cures_the_shortage_or_takes_everything(aw, lw, fee_a, fee_l,
                                                                   shortage):
    """Sized to the shortage when a transfer can cure it (the account ends exactly
    at zero weighted equity), else as much as the borrow or the deposit allows."""
    eng = mk.Engine()
    eng.now = NOW
    eng.add_asset("USDC", price=1.0, time=NOW, haircuts=[(math.inf, 1.0 - aw)],
                  liquidator_fee=fee_a)
    eng.add_asset("SOL", price=100.0, time=NOW, liability_weight=lw, liquidator_fee=fee_l)
    eng.add_model("none", "linear_rate", im_base=0.0, im_slope=0.0, mm_base=0.0, mm_slope=0.0)
    eng.add_instrument("SOL/USDC", kind="spot", underlying="SOL", settle="USDC", model="none")
    eng.add_account("u", "USDC")
    units = (lw * 100.0 - shortage) / aw
    if units <= 0.0:
        return
    eng.deposit("u", "USDC", units / 2.0)
    eng.fill("u", "SOL/USDC", -1.0, units / 2.0, fee=0.0)
    plan = eng.plan_spot_liquidation("u", "SOL", "USDC")
    res = eng.liquidate_spot("u", "SOL", "USDC")
    after = eng.summary("u").equity
    assert res["liability_transfer"] == plan["liability_transfer"] >= 0.0
    assert eng.balance("u", "SOL") <= 1e-12 and eng.balance("u", "USDC") >= -1e-9
    if math.isfinite(plan["to_cover"]) and plan["to_cover"] <= plan["liability_transfer"]:
        assert after == pytest.approx(0.0, abs=1e-9)
    else:  # no transfer cures it (aw am / lm >= lw): the borrow or the deposit is used up
        assert eng.balance("u", "SOL") >= -1e-12 or eng.balance("u", "USDC") <= 1e-9


def test_bad_parameters_are_value_errors_naming_the_argument():
    eng = _perp(100.0)
    for kwargs, word in [({"fee_policy": "drift"}, "fee_policy"),
                         ({"fill_policy": "x"}, "fill_policy"),
                         ({"max_if_fee": 1.5}, "max_if_fee"),
                         ({"spread_to_mm": 2.0}, "spread_to_mm"),
                         ({"ramp_per_second": -1.0}, "ramp_per_second")]:
        with pytest.raises(ValueError, match=word):
            eng.set_liquidation_params(**kwargs)
    with pytest.raises(ValueError, match="mm_fraction"):
        eng.add_model("m2", "linear_rate", im_base=0.1, im_slope=0.0, mm_fraction=1.5)
    with pytest.raises(ValueError, match="mm_fraction"):
        eng.add_model("m3", "linear_rate", im_base=0.1, im_slope=0.0, mm_base=0.05,
                      mm_fraction=0.5)
    with pytest.raises(ValueError, match="oi_upper"):
        eng.add_model("m4", "linear_rate", im_base=0.1, im_slope=0.0, mm_base=0.05,
                      mm_slope=0.0, oi_lower=2.0, oi_upper=1.0)
    with pytest.raises(ValueError, match="liability_weight"):
        eng.add_asset("X", liability_weight=0.5)
    with pytest.raises(ValueError, match="liquidator_fee"):
        eng.add_asset("Y", liquidator_fee=1.0)
    with pytest.raises(ValueError, match="contracts"):
        eng.set_open_interest("BTC-USD", -1.0)
    with pytest.raises(ValueError, match="differ"):
        eng.plan_spot_liquidation("a", "USDC", "USDC")
    with pytest.raises(ValueError, match="shortage"):
        mk.venue_formulas.margin_implied_fee(0.05, 0.01, math.nan, 1.0, 0.05)


def test_venue_state_survives_a_save():
    eng = _perp(50_000.0, oi_lower=1e6, oi_upper=2e6, rate_quantum=1e-6)
    eng.add_asset("SOL", price=100.0, time=NOW, liability_weight=1.2, imf_factor=1e-3,
                  weight_quantum=1e-4, liquidator_fee=0.05)
    eng.set_open_interest("BTC-USD", 30.0)
    eng.set_last_active("a", NOW - 500.0)
    eng.set_liquidation_params(fee_rate=0.01, fee_policy="margin_implied", max_if_fee=0.02,
                               ramp_per_second=1e-6, ramp_grace=100.0, max_fee_rate=0.05,
                               fill_policy="fillable", bankruptcy_adjustment=2.0,
                               spread_to_mm=0.1, spot_dust=1.0)
    back = mk.Engine.from_bytes(eng.to_bytes())
    assert back.liquidation_params() == eng.liquidation_params()
    assert back.model_rates("tier") == eng.model_rates("tier")
    assert back.open_interest("BTC-USD") == 30.0 and back.last_active("a") == NOW - 500.0
    s, t = eng.summary("a"), back.summary("a")
    assert (s.equity, s.im, s.mm) == (t.equity, t.im, t.mm)
    assert back.liquidation_fill_price("a", "BTC-USD") == eng.liquidation_fill_price("a",
                                                                                     "BTC-USD")
    assert back.liquidation_fee_rate("a", "BTC-USD") == eng.liquidation_fee_rate("a", "BTC-USD")


def test_version_1_state_still_loads():
    """``data/engine_v1.bin`` was saved by the version-1 format (before the venue
    mechanisms): it loads with their defaults and evaluates as it did."""
    data = (Path(__file__).parent / "data" / "engine_v1.bin").read_bytes()
    assert int.from_bytes(data[8:12], "little") == 1
    eng = mk.Engine.from_bytes(data)
    s = eng.summary("sub")
    assert (s.equity, s.im, s.mm) == (24_850.0, 1_000.0, 500.0)
    p = eng.liquidation_params()
    assert (p["target"], p["buffer"], p["fee_rate"]) == ("maintenance", 0.1, 0.01)
    assert (p["fee_policy"], p["fill_policy"]) == ("fixed", "liquidity")
    assert eng.insurance_fund("USDC") == 123.0
    assert eng.open_interest("BTC-USD") == 0.0
    assert eng.model_rates("tier")["mm_fraction"] < 0
    assert eng.to_bytes()[8:12] == (2).to_bytes(4, "little")
