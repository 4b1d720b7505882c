"""The Engine's API: names and ids, errors and reason codes, argument validation,
expiry, stale prices, out-of-order updates, reduce-only, resting orders,
withdrawals, batch evaluation and venue symbols."""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone

import marginkit as mk
import numpy as np
import pytest
from marginkit.symbols import parse_symbol

NOW = 1_700_000_000.0
EXPIRY = 1_900_000_000
IM_BASE, IM_SLOPE, MM_BASE, MM_SLOPE = 0.02, 5e-5, 0.01, 5e-5


def lin_req(size_btc: float, index: float) -> tuple[float, float]:
    """Deribit-style linear_rate requirement (IM, MM) in USD of a BTC position."""
    s = abs(size_btc)
    return s * (IM_BASE + IM_SLOPE * s) * index, s * (MM_BASE + MM_SLOPE * s) * index


@pytest.fixture
def eng():
    """USD (cents), BTC at 100,000; a linear BTC perpetual (1 BTC contracts) and
    an inverse BTC call; alice (USD, 100,000 deposited) and bob (BTC, 2 BTC)."""
    e = mk.Engine()
    e.now = NOW
    e.add_asset("USD", price=1.0, time=NOW, quantum=0.01)
    e.add_asset("BTC", price=100_000.0, time=NOW)
    e.add_model("lin", "linear_rate", im_base=IM_BASE, im_slope=IM_SLOPE, mm_base=MM_BASE,
                mm_slope=MM_SLOPE)
    e.add_model("opt", "option_standard")
    e.add_instrument("BTC-USD-PERP", model="lin", kind="perpetual", underlying="BTC",
                     settle="USD", inverse=False, mark=100_000.0, time=NOW)
    e.add_instrument("BTC-OPT-C", model="opt", kind="option", underlying="BTC", settle="BTC",
                     inverse=True, strike=110_000.0, cp="C", expiry=EXPIRY, mark=0.02, time=NOW)
    e.add_account("alice", "USD")
    e.add_account("bob", "BTC")
    e.deposit("alice", "USD", 100_000.0)
    e.deposit("bob", "BTC", 2.0)
    return e


def state_of(e: mk.Engine, account) -> tuple:
    s = e.summary(account)
    return ((s.equity, s.im, s.mm, s.available, s.state, s.stale),
            tuple(e.balance(account, a) for a in e.assets), tuple(map(repr, e.positions(account))))


# ---- names and ids ------------------------------------------------------------------


def test_names_and_ids_both_work(eng):
    assert eng.assets == ["USD", "BTC"]
    assert eng.instruments == ["BTC-USD-PERP", "BTC-OPT-C"]
    assert eng.accounts == ["alice", "bob"]
    eng.fill("alice", "BTC-USD-PERP", 2.0, 100_000.0, fee=0.0)
    eng.fill(1, 1, -1.0, 0.02, fee=0.0)
    for name, aid in (("alice", 0), ("bob", 1)):
        for key in (name, aid, np.int64(aid), np.int32(aid)):
            assert state_of(eng, key) == state_of(eng, name)
            assert eng.balance(key, "USD") == eng.balance(name, 0)
    assert eng.positions(0) == eng.positions("alice")
    assert eng.positions("alice")[0]["instrument"] == "BTC-USD-PERP"
    assert eng.price("BTC") == eng.price(1) == 100_000.0
    assert eng.mark("BTC-OPT-C") == eng.mark(np.int64(1)) == 0.02


def _figures(c):
    return (c.accepted, c.reason, c.im_after, c.mm_after, c.equity_after, c.available_after)


def test_check_order_by_name_and_by_id(eng):
    ref = _figures(eng.check_order("alice", "BTC-USD-PERP", 0.5, 100_100.0))
    assert ref[0] and ref[1] == "ok"
    assert _figures(eng.check_order(0, 0, 0.5, 100_100.0)) == ref
    assert _figures(eng.check_order("alice", 0, 0.5, 100_100.0)) == ref
    assert _figures(eng.check_order(0, "BTC-USD-PERP", 0.5, 100_100.0)) == ref


def test_check_order_accepts_numpy_integer_ids(eng):
    """Ids as NumPy integers (e.g. from add_accounts() or evaluate_all() indexing)
    work in check_order as in every other method."""
    ref = _figures(eng.check_order(0, 0, 0.5, 100_100.0))
    assert _figures(eng.check_order(np.int64(0), np.int64(0), 0.5, 100_100.0)) == ref
    ids = eng.add_accounts(["carol"], "USD")
    eng.deposit(ids[0], "USD", 100_000.0)
    assert eng.check_order(ids[0], 0, 0.5, 100_100.0).reason == "ok"


# ---- unknown things -------------------------------------------------------------------


@pytest.mark.parametrize("account", ["nobody", 2, 99, -1])
def test_check_order_unknown_account_is_a_reason(eng, account):
    c = eng.check_order(account, "BTC-USD-PERP", 1.0, 100_000.0)
    assert (c.accepted, c.reason) == (False, "unknown_account")


@pytest.mark.parametrize("instrument", ["NOPE", 2, 99, -1])
def test_check_order_unknown_instrument_is_a_reason(eng, instrument):
    c = eng.check_order("alice", instrument, 1.0, 100_000.0)
    assert (c.accepted, c.reason) == (False, "unknown_instrument")


@pytest.mark.parametrize("account", [2**31, -(2**40)])
def test_check_order_out_of_range_ids_are_a_reason_not_an_exception(eng, account):
    """'bad arguments give a rejection with a reason code, never an exception'."""
    c = eng.check_order(account, "BTC-USD-PERP", 1.0, 100_000.0)
    assert (c.accepted, c.reason) == (False, "unknown_account")
    c = eng.check_order("alice", account, 1.0, 100_000.0)
    assert (c.accepted, c.reason) == (False, "unknown_instrument")


UNKNOWN_CALLS = [
    ("summary", lambda e: e.summary("nobody"), "nobody"),
    ("summary id", lambda e: e.summary(7), "7"),
    ("attribution", lambda e: e.attribution("nobody"), "nobody"),
    ("positions", lambda e: e.positions(-3), "-3"),
    ("balance account", lambda e: e.balance("nobody", "USD"), "nobody"),
    ("balance asset", lambda e: e.balance("alice", "DOGE"), "DOGE"),
    ("deposit asset", lambda e: e.deposit("alice", "DOGE", 1.0), "DOGE"),
    ("deposit account", lambda e: e.deposit("nobody", "USD", 1.0), "nobody"),
    ("withdraw asset", lambda e: e.withdraw("alice", 5, 1.0), "5"),
    ("fill instrument", lambda e: e.fill("alice", "NOPE", 1.0, 1.0), "NOPE"),
    ("fill account", lambda e: e.fill("nobody", 0, 1.0, 1.0), "nobody"),
    ("place_order instrument", lambda e: e.place_order("alice", 9, 1.0, 1.0), "9"),
    ("cancel_order", lambda e: e.cancel_order(424242), "424242"),
    ("fill_order", lambda e: e.fill_order(424242, 1.0, 1.0), "424242"),
    ("set_price", lambda e: e.set_price("DOGE", 1.0), "DOGE"),
    ("set_mark", lambda e: e.set_mark("NOPE", 1.0), "NOPE"),
    ("price", lambda e: e.price("DOGE"), "DOGE"),
    ("mark", lambda e: e.mark("NOPE"), "NOPE"),
    ("max_order_size account", lambda e: e.max_order_size("nobody", 0, "buy", 1.0), "nobody"),
    ("max_order_size instrument", lambda e: e.max_order_size(0, "NOPE", "buy", 1.0), "NOPE"),
    ("add_instrument model", lambda e: e.add_instrument(
        "X", model="nope", kind="perpetual", underlying="BTC", settle="USD"), "nope"),
    ("add_instrument underlying", lambda e: e.add_instrument(
        "X", model="lin", kind="perpetual", underlying="DOGE", settle="USD"), "DOGE"),
    ("add_instrument settle", lambda e: e.add_instrument(
        "X", model="lin", kind="perpetual", underlying="BTC", settle="EUR"), "EUR"),
    ("add_account asset", lambda e: e.add_account("carol", "DOGE"), "DOGE"),
]


@pytest.mark.parametrize("call,what", [(c, w) for _, c, w in UNKNOWN_CALLS],
                         ids=[n for n, _, _ in UNKNOWN_CALLS])
def test_unknown_names_and_ids_raise_value_error_naming_them(eng, call, what):
    before = [state_of(eng, a) for a in eng.accounts]
    with pytest.raises(ValueError, match=re.escape(what)):
        call(eng)
    assert [state_of(eng, a) for a in eng.accounts] == before


# ---- bad numbers -------------------------------------------------------------------------

BAD_NUMBERS = [
    ("set_price NaN", lambda e: e.set_price("BTC", math.nan), "price"),
    ("set_price inf", lambda e: e.set_price("BTC", math.inf), "price"),
    ("set_price negative", lambda e: e.set_price("BTC", -100.0), "price"),
    ("set_price zero", lambda e: e.set_price("BTC", 0.0), "price"),
    ("set_price NaN time", lambda e: e.set_price("BTC", 1.0, math.nan), "time"),
    ("set_mark NaN", lambda e: e.set_mark("BTC-USD-PERP", math.nan), "mark"),
    ("set_mark -inf", lambda e: e.set_mark("BTC-USD-PERP", -math.inf), "mark"),
    ("set_mark negative", lambda e: e.set_mark("BTC-USD-PERP", -1.0), "mark"),
    ("set_mark negative option", lambda e: e.set_mark("BTC-OPT-C", -0.01), "mark"),
    ("fill NaN qty", lambda e: e.fill("alice", 0, math.nan, 100_000.0), "qty"),
    ("fill inf qty", lambda e: e.fill("alice", 0, math.inf, 100_000.0), "qty"),
    ("fill zero qty", lambda e: e.fill("alice", 0, 0.0, 100_000.0), "quantity"),
    ("fill NaN price", lambda e: e.fill("alice", 0, 1.0, math.nan), "price"),
    ("fill negative price", lambda e: e.fill("alice", 0, 1.0, -1.0), "price"),
    ("fill negative option price", lambda e: e.fill("alice", 1, 1.0, -0.01), "price"),
    ("fill NaN fee", lambda e: e.fill("alice", 0, 1.0, 100_000.0, fee=math.nan), "fee"),
    ("fill negative fee", lambda e: e.fill("alice", 0, 1.0, 100_000.0, fee=-1.0), "fee"),
    ("place_order NaN qty", lambda e: e.place_order("alice", 0, math.nan, 1.0), "qty"),
    ("place_order inf price", lambda e: e.place_order("alice", 0, 1.0, math.inf), "price"),
    ("place_order negative price", lambda e: e.place_order("alice", 0, 1.0, -1.0), "price"),
    ("deposit NaN", lambda e: e.deposit("alice", "USD", math.nan), "amount"),
    ("deposit negative", lambda e: e.deposit("alice", "USD", -5.0), "amount"),
    ("deposit inf", lambda e: e.deposit("alice", "USD", math.inf), "amount"),
    ("withdraw NaN", lambda e: e.withdraw("alice", "USD", math.nan), "amount"),
    ("withdraw negative", lambda e: e.withdraw("alice", "USD", -5.0), "amount"),
    ("max_order_size NaN", lambda e: e.max_order_size("alice", 0, "buy", math.nan), "price"),
    ("max_order_size negative", lambda e: e.max_order_size("alice", 0, "buy", -1.0), "price"),
    ("max_order_size side", lambda e: e.max_order_size("alice", 0, "long", 1.0), "side"),
    ("now NaN", lambda e: setattr(e, "now", math.nan), "now"),
    ("max_age NaN", lambda e: setattr(e, "max_age", math.nan), "max_age"),
    ("max_age negative", lambda e: setattr(e, "max_age", -1.0), "max_age"),
    ("quantum NaN", lambda e: e.add_asset("EUR", quantum=math.nan), "quantum"),
    ("haircut NaN", lambda e: e.add_asset("EUR", haircuts=[(10.0, math.nan)]), "haircut"),
    ("linear_rate NaN", lambda e: e.add_model("x", "linear_rate", im_base=math.nan,
                                              im_slope=0, mm_base=0, mm_slope=0), "im_base"),
    ("option_standard inf", lambda e: e.add_model("x", "option_standard", mm=math.inf), "mm"),
    ("contract_size", lambda e: e.add_instrument(
        "X", model="lin", kind="perpetual", underlying="BTC", settle="USD",
        contract_size=-1.0), "contract_size"),
    ("strike", lambda e: e.add_instrument(
        "X", model="opt", kind="option", underlying="BTC", settle="BTC", inverse=True,
        strike=math.nan, cp="C", expiry=EXPIRY), "strike"),
    ("taker_fee", lambda e: e.add_instrument(
        "X", model="lin", kind="perpetual", underlying="BTC", settle="USD",
        taker_fee=-0.001), "taker_fee"),
]


@pytest.mark.parametrize("call,arg", [(c, a) for _, c, a in BAD_NUMBERS],
                         ids=[n for n, _, _ in BAD_NUMBERS])
def test_bad_numbers_raise_value_error_naming_the_argument(eng, call, arg):
    before = [state_of(eng, a) for a in eng.accounts]
    prices = (eng.price("USD"), eng.price("BTC"), eng.mark(0), eng.mark(1), eng.now, eng.max_age)
    with pytest.raises(ValueError, match=arg):
        call(eng)
    assert [state_of(eng, a) for a in eng.accounts] == before
    assert (eng.price("USD"), eng.price("BTC"), eng.mark(0), eng.mark(1), eng.now,
            eng.max_age) == prices


@pytest.mark.parametrize("qty", [math.nan, math.inf, -math.inf, 0.0])
def test_check_order_bad_quantity_is_a_reason(eng, qty):
    c = eng.check_order("alice", "BTC-USD-PERP", qty, 100_000.0)
    assert (c.accepted, c.reason) == (False, "invalid_quantity")


@pytest.mark.parametrize("instrument,price", [
    ("BTC-USD-PERP", math.nan), ("BTC-USD-PERP", math.inf), ("BTC-USD-PERP", -1.0),
    ("BTC-USD-PERP", 0.0), ("BTC-OPT-C", -0.01), ("BTC-OPT-C", math.nan)])
def test_check_order_bad_price_is_a_reason(eng, instrument, price):
    c = eng.check_order("bob", instrument, 1.0, price)
    assert (c.accepted, c.reason) == (False, "invalid_price")


def test_check_order_without_a_mark_is_no_price(eng):
    eng.add_instrument("BTC-USD-PERP-2", model="lin", kind="perpetual", underlying="BTC",
                       settle="USD", inverse=False)
    assert math.isnan(eng.mark("BTC-USD-PERP-2"))
    c = eng.check_order("alice", "BTC-USD-PERP-2", 1.0, 100_000.0)
    assert (c.accepted, c.reason) == (False, "no_price")


# ---- duplicates and failed additions -------------------------------------------------------


def test_duplicate_names_raise(eng):
    with pytest.raises(ValueError, match="duplicate asset 'BTC'"):
        eng.add_asset("BTC", price=1.0)
    with pytest.raises(ValueError, match="duplicate model 'lin'"):
        eng.add_model("lin", "linear_rate", im_base=0.1, im_slope=0, mm_base=0.05, mm_slope=0)
    with pytest.raises(ValueError, match="duplicate instrument 'BTC-USD-PERP'"):
        eng.add_instrument("BTC-USD-PERP", model="lin", kind="perpetual", underlying="BTC",
                           settle="USD")
    with pytest.raises(ValueError, match="duplicate account 'alice'"):
        eng.add_account("alice", "USD")
    assert eng.assets == ["USD", "BTC"]
    assert eng.instruments == ["BTC-USD-PERP", "BTC-OPT-C"]
    assert eng.accounts == ["alice", "bob"]
    assert eng.price("BTC") == 100_000.0


def test_failed_add_asset_adds_nothing(eng):
    """add_asset(price=-1) raises; the name stays free for a correct retry."""
    with pytest.raises(ValueError, match="price"):
        eng.add_asset("ETH", price=-1.0)
    assert "ETH" not in eng.assets
    assert eng.add_asset("ETH", price=3_000.0) == 2


def test_failed_add_instrument_adds_nothing(eng):
    with pytest.raises(ValueError, match="mark"):
        eng.add_instrument("BTC-USD-FUT", model="lin", kind="future", underlying="BTC",
                           settle="USD", expiry=EXPIRY, mark=-5.0)
    assert "BTC-USD-FUT" not in eng.instruments
    eng.add_instrument("BTC-USD-FUT", model="lin", kind="future", underlying="BTC",
                       settle="USD", expiry=EXPIRY, mark=100_000.0)


def test_failed_add_model_adds_nothing(eng):
    with pytest.raises(ValueError, match="unknown parameter"):
        eng.add_model("lin2", "linear_rate", im_base=0.02, im_slope=0.0, mm_base=0.01,
                      mm_slope=0.0, im_cap=1.0)
    assert eng.add_model("lin2", "linear_rate", im_base=0.02, im_slope=0.0, mm_base=0.01,
                         mm_slope=0.0) == 2


def test_inverse_must_settle_in_its_underlying(eng):
    with pytest.raises(ValueError, match="inverse"):
        eng.add_instrument("BTC-INV", model="lin", kind="perpetual", underlying="BTC",
                           settle="USD", inverse=True)


# ---- expiry -----------------------------------------------------------------------------


def test_expired_option_rejected_at_add_time(eng):
    for expiry in (NOW - 86_400, NOW):
        with pytest.raises(ValueError, match="expired"):
            eng.add_instrument(f"BTC-OLD-{expiry}", model="opt", kind="option",
                               underlying="BTC", settle="BTC", inverse=True, strike=90_000.0,
                               cp="P", expiry=expiry)
    with pytest.raises(ValueError, match="expired"):
        eng.add_instrument("BTC-1JAN23-20000-C", model="opt")  # Deribit symbol, in the past
    assert eng.instruments == ["BTC-USD-PERP", "BTC-OPT-C"]


def test_instrument_expired_once_now_passes_expiry(eng):
    assert eng.check_order("bob", "BTC-OPT-C", -1.0, 0.02).accepted
    eng.now = EXPIRY - 1
    assert eng.check_order("bob", "BTC-OPT-C", -1.0, 0.02).reason != "instrument_expired"
    for now in (EXPIRY, EXPIRY + 3_600):
        eng.now = now
        c = eng.check_order("bob", "BTC-OPT-C", -1.0, 0.02)
        assert (c.accepted, c.reason) == (False, "instrument_expired")
        assert eng.check_order("bob", "BTC-OPT-C", 1.0, 0.02).reason == "instrument_expired"
    # the perpetual never expires
    assert eng.check_order("alice", "BTC-USD-PERP", 0.1, 100_000.0).reason != "instrument_expired"


# ---- market data: staleness and order ---------------------------------------------------


def test_stale_prices_block_risk_increasing_orders_only(eng):
    eng.fill("alice", "BTC-USD-PERP", 2.0, 100_000.0, fee=0.0)
    eng.max_age = 60.0
    eng.now = NOW + 60.0  # exactly max_age old: still fresh
    assert not eng.summary("alice").stale
    assert eng.check_order("alice", "BTC-USD-PERP", 0.5, 100_000.0).accepted
    eng.now = NOW + 61.0
    assert eng.summary("alice").stale
    before = state_of(eng, "alice")
    for qty in (0.5, -2.5, -5.0):  # more long; flip short; bigger short
        c = eng.check_order("alice", "BTC-USD-PERP", qty, 100_000.0)
        assert (c.accepted, c.reason) == (False, "stale_price"), qty
    for qty in (-0.5, -2.0):  # reducing, closing
        c = eng.check_order("alice", "BTC-USD-PERP", qty, 100_000.0)
        assert (c.accepted, c.reason) == (True, "ok"), qty
    assert state_of(eng, "alice") == before
    # A fresh index alone is not enough: the mark is stale too.
    eng.set_price("BTC", 100_000.0, NOW + 61.0)
    eng.set_price("USD", 1.0, NOW + 61.0)
    assert eng.check_order("alice", "BTC-USD-PERP", 0.5, 100_000.0).reason == "stale_price"
    eng.set_mark("BTC-USD-PERP", 100_000.0, NOW + 61.0)
    assert eng.check_order("alice", "BTC-USD-PERP", 0.5, 100_000.0).accepted
    assert not eng.summary("alice").stale


def test_stale_collateral_price_blocks_risk_increasing_orders(eng):
    """bob's collateral is BTC: an old BTC price makes every increase stale."""
    eng.max_age = 10.0
    eng.now = NOW + 5.0
    eng.set_mark("BTC-OPT-C", 0.02, NOW + 5.0)
    assert eng.check_order("bob", "BTC-OPT-C", -1.0, 0.02).accepted
    eng.now = NOW + 30.0
    eng.set_mark("BTC-OPT-C", 0.02, NOW + 30.0)
    assert eng.check_order("bob", "BTC-OPT-C", -1.0, 0.02).reason == "stale_price"


def test_out_of_order_updates_are_ignored(eng):
    assert eng.set_price("BTC", 101_000.0, NOW + 10) is True
    assert eng.set_price("BTC", 99_000.0, NOW + 5) is False
    assert eng.price("BTC") == 101_000.0
    assert eng.set_mark("BTC-USD-PERP", 101_500.0, NOW + 10) is True
    assert eng.set_mark("BTC-USD-PERP", 90_000.0, NOW + 9.999) is False
    assert eng.mark("BTC-USD-PERP") == 101_500.0
    assert eng.set_mark("BTC-OPT-C", 0.03, NOW - 1) is False
    assert eng.mark("BTC-OPT-C") == 0.02
    # The ignored update changes no account figure either.
    eng.fill("alice", "BTC-USD-PERP", 1.0, 100_000.0, fee=0.0)
    before = state_of(eng, "alice")
    assert eng.set_mark("BTC-USD-PERP", 50_000.0, NOW) is False
    assert state_of(eng, "alice") == before
    # Same time or newer replaces.
    assert eng.set_price("BTC", 102_000.0, NOW + 10) is True
    assert eng.price("BTC") == 102_000.0


# ---- health states ---------------------------------------------------------------------------


def test_reduce_only_state_rejects_increases_and_accepts_reductions(eng):
    eng.add_account("carol", "USD")
    eng.deposit("carol", "USD", 3_000.0)
    eng.fill("carol", "BTC-USD-PERP", 2.0, 100_000.0, fee=0.0)
    # MM = 2 x (1% + 2 x 0.005%) x 100,000 = 2,020; equity 3,000 -> 1.485 x MM: warning
    assert eng.summary("carol").state == "warning"
    eng.set_mark("BTC-USD-PERP", 99_500.0, NOW + 1)  # equity 2,000 + ... = 2,000 / 2,020
    s = eng.summary("carol")
    assert s.equity == pytest.approx(2_000.0)
    assert s.state == "liquidation"
    eng.set_mark("BTC-USD-PERP", 99_700.0, NOW + 2)  # equity 2,400: 1.188 x MM
    s = eng.summary("carol")
    assert s.equity == pytest.approx(2_400.0)
    assert s.state == "reduce_only"
    for qty in (0.01, -4.5):  # more long; flip to a bigger short
        c = eng.check_order("carol", "BTC-USD-PERP", qty, 99_700.0)
        assert (c.accepted, c.reason) == (False, "reduce_only"), qty
    c = eng.check_order("carol", "BTC-USD-PERP", -1.0, 99_700.0)
    assert (c.accepted, c.reason) == (True, "ok")
    im1, mm1 = lin_req(1.0, 100_000.0)
    assert c.im_after == pytest.approx(im1) and c.mm_after == pytest.approx(mm1)
    assert eng.check_order("carol", "BTC-USD-PERP", -2.0, 99_700.0).accepted


def test_thresholds_move_the_states(eng):
    eng.add_account("carol", "USD")
    eng.deposit("carol", "USD", 3_000.0)
    eng.fill("carol", "BTC-USD-PERP", 2.0, 100_000.0, fee=0.0)  # MM 2,020; equity 3,000
    eng.set_thresholds(warning=1.6, reduce_only=1.5, liquidation=1.4)
    assert eng.summary("carol").state == "reduce_only"
    assert eng.check_order("carol", "BTC-USD-PERP", 0.1, 100_000.0).reason == "reduce_only"
    eng.set_thresholds()
    assert eng.summary("carol").state == "warning"
    with pytest.raises(ValueError):
        eng.set_thresholds(warning=1.0, reduce_only=1.2, liquidation=1.1)


# ---- resting orders ---------------------------------------------------------------------


def test_resting_orders_count_at_their_worst_case(eng):
    eng.fill("alice", "BTC-USD-PERP", 1.0, 100_000.0, fee=0.0)
    bid = eng.place_order("alice", "BTC-USD-PERP", 2.0, 99_000.0)
    ask = eng.place_order("alice", "BTC-USD-PERP", -5.0, 101_000.0)
    pos = eng.positions("alice")[0]
    assert (pos["size"], pos["bids"], pos["asks"]) == (1.0, 2.0, 5.0)
    im_long, _ = lin_req(1.0 + 2.0, 100_000.0)
    im_short, _ = lin_req(1.0 - 5.0, 100_000.0)
    _, mm_now = lin_req(1.0, 100_000.0)
    s = eng.summary("alice")
    assert s.im == pytest.approx(max(im_long, im_short), abs=0.01)
    assert s.im == pytest.approx(im_short, abs=0.01)  # the asks are the worse side
    assert s.mm == pytest.approx(mm_now, abs=0.01)  # orders do not change MM
    assert eng.attribution("alice")[0].im == s.im
    eng.cancel_order(ask)
    assert eng.summary("alice").im == pytest.approx(im_long, abs=0.01)
    eng.fill_order(bid, 0.5, 99_000.0, fee=0.0)
    pos = eng.positions("alice")[0]
    assert (pos["size"], pos["bids"], pos["asks"]) == (1.5, 1.5, 0.0)
    assert eng.summary("alice").im == pytest.approx(im_long, abs=0.01)  # same worst case
    eng.cancel_order(bid)
    assert eng.summary("alice").im == pytest.approx(lin_req(1.5, 100_000.0)[0], abs=0.01)
    with pytest.raises(ValueError, match=str(bid)):
        eng.cancel_order(bid)


def test_orders_alone_need_initial_margin(eng):
    oid = eng.place_order("alice", "BTC-USD-PERP", -3.0, 101_000.0)
    pos = eng.positions("alice")
    assert len(pos) == 1 and (pos[0]["size"], pos[0]["asks"]) == (0.0, 3.0)
    s = eng.summary("alice")
    assert s.im == pytest.approx(lin_req(3.0, 100_000.0)[0], abs=0.01)
    assert s.mm == 0.0
    # A new order is checked together with the resting ones.
    c = eng.check_order("alice", "BTC-USD-PERP", 1.0, 100_000.0)  # +1, asks 3: worst -2
    assert c.im_after == pytest.approx(lin_req(2.0, 100_000.0)[0], abs=0.01)
    c = eng.check_order("alice", "BTC-USD-PERP", -1.0, 100_000.0)  # -1, asks 3: worst -4
    assert c.im_after == pytest.approx(lin_req(4.0, 100_000.0)[0], abs=0.01)
    eng.cancel_order(oid)
    assert eng.positions("alice") == []
    assert eng.summary("alice").im == 0.0


# ---- gains against the mark ------------------------------------------------------------------


def test_gains_against_the_mark_never_approve_an_order(eng):
    """Buying below the mark shows the gain in equity_after / available_after, but
    the order is approved only as if it traded at the mark."""
    eng.add_account("carol", "USD")
    eng.deposit("carol", "USD", 1_000.0)
    c = eng.check_order("carol", "BTC-USD-PERP", 1.0, 97_000.0)  # IM 2,005; gain 3,000
    assert c.im_after == pytest.approx(lin_req(1.0, 100_000.0)[0], abs=0.01)
    assert c.equity_after == pytest.approx(4_000.0, abs=0.01)
    assert c.available_after == pytest.approx(1_995.0, abs=0.01)
    assert (c.accepted, c.reason) == (False, "insufficient_margin")
    c = eng.check_order("carol", "BTC-USD-PERP", 0.4, 97_000.0)  # IM 800.80 < 1,000
    assert (c.accepted, c.reason) == (True, "ok")
    # So the largest buy is the same at the mark and at any better price (no fees),
    # and it is finite however good the price.
    at_mark = eng.max_order_size("carol", "BTC-USD-PERP", "buy", 100_000.0)
    assert 0.4 < at_mark < 0.5
    for price in (99_000.0, 97_000.0, 50_000.0, 1.0):
        assert eng.max_order_size("carol", "BTC-USD-PERP", "buy", price) == at_mark
    assert eng.max_order_size("carol", "BTC-USD-PERP", "sell", 103_000.0) == at_mark
    # A worse price costs margin: the loss against the mark counts.
    assert eng.max_order_size("carol", "BTC-USD-PERP", "buy", 101_000.0) < at_mark


# ---- withdrawals ---------------------------------------------------------------------------


def test_withdraw_keeps_initial_margin_covered(eng):
    eng.fill("alice", "BTC-USD-PERP", 2.0, 100_000.0, fee=0.0)
    s = eng.summary("alice")
    im, _ = lin_req(2.0, 100_000.0)
    assert s.im == pytest.approx(im, abs=0.01)
    assert s.available == pytest.approx(100_000.0 - s.im, abs=1e-6)
    before = state_of(eng, "alice")
    assert eng.withdraw("alice", "USD", s.available + 0.01) == "insufficient_margin"
    assert eng.withdraw("alice", "USD", 100_000.01) == "insufficient_balance"
    assert eng.withdraw("alice", "BTC", 0.5) == "insufficient_balance"
    assert state_of(eng, "alice") == before
    assert eng.withdraw("alice", "USD", s.available) == "ok"
    after = eng.summary("alice")
    assert after.available == pytest.approx(0.0, abs=1e-6)
    assert after.im == s.im
    assert eng.balance("alice", "USD") == pytest.approx(100_000.0 - s.available)
    assert eng.withdraw("alice", "USD", 0.01) == "insufficient_margin"


def test_withdraw_refused_while_under_water_even_without_positions_left(eng):
    eng.fill("alice", "BTC-USD-PERP", 1.0, 100_000.0, fee=0.0)
    eng.set_mark("BTC-USD-PERP", 1_000.0, NOW + 1)  # a 99,000 USD loss
    before = state_of(eng, "alice")
    assert eng.withdraw("alice", "USD", 1_000.0) == "insufficient_margin"
    assert state_of(eng, "alice") == before


# ---- batch evaluation ---------------------------------------------------------------------


def test_evaluate_all_matches_summary(eng):
    eng.fill("alice", "BTC-USD-PERP", 2.0, 100_000.0, fee=0.0)
    eng.fill("bob", "BTC-OPT-C", -20.0, 0.02, fee=0.0)
    eng.add_account("carol", "USD")
    eng.deposit("carol", "USD", 2_100.0)
    eng.fill("carol", "BTC-USD-PERP", -2.0, 100_000.0, fee=0.0)
    eng.add_account("dave", "BTC")  # empty
    eng.add_account("erin", "USD")
    eng.deposit("erin", "USD", 10.0)
    eng.fill("erin", "BTC-USD-PERP", 1.0, 100_000.0, fee=0.0)
    eng.set_mark("BTC-USD-PERP", 99_000.0, NOW + 1)  # erin bankrupt, carol healthy
    ev = eng.evaluate_all()
    assert len(ev.equity) == len(eng.accounts) == 5
    names = eng.state_names(ev.state)
    assert "bankrupt" in names
    for k, name in enumerate(eng.accounts):
        s = eng.summary(name)
        assert (ev.equity[k], ev.im[k], ev.mm[k], ev.available[k]) == (
            s.equity, s.im, s.mm, s.available), name
        assert names[k] == s.state
        assert mk.HEALTH_STATES[int(ev.state[k])] == s.state


# ---- venue symbols ----------------------------------------------------------------------


def test_symbols_parse_into_instruments():
    e = mk.Engine()
    e.add_asset("USD", price=1.0)
    e.add_asset("USDT", price=1.0)
    e.add_asset("BTC", price=50_000.0)
    e.add_model("opt", "option_standard")
    e.add_model("lin", "linear_rate", im_base=0.02, im_slope=0.0, mm_base=0.01, mm_slope=0.0)
    opt = e.add_instrument("BTC-27DEC24-100000-C", model="opt", mark=0.01)
    swap = e.add_instrument("BTC-USDT-SWAP", model="lin", venue="okx", mark=50_000.0)
    inv = e.add_instrument("BTC-USD-SWAP", model="lin", venue="okx", contract_size=100.0,
                           mark=50_000.0)
    spec = parse_symbol("BTC-27DEC24-100000-C")
    assert (spec.inverse, spec.settle, spec.strike, spec.option_type) == (True, "BTC", 100_000.0,
                                                                          "C")
    assert (parse_symbol("BTC-USDT-SWAP", "okx").inverse,
            parse_symbol("BTC-USD-SWAP", "okx").inverse) == (False, True)

    e.add_account("acct", "USD")
    e.deposit("acct", "USD", 1_000_000.0)
    # Inverse option: the premium is in BTC, and the option's requirement in coin.
    e.fill("acct", opt, -10.0, 0.01, fee=0.0)
    assert e.balance("acct", "BTC") == pytest.approx(0.1)
    assert e.balance("acct", "USD") == 1_000_000.0
    r = e.attribution("acct")[0]
    otm = (100_000.0 - 50_000.0) / 50_000.0  # 1 coin: the 10% floor applies
    im_coin = max(max(0.15 - otm, 0.10) + 0.01, 0.075 + 0.01)
    assert r.im == pytest.approx(10 * im_coin * 50_000.0, rel=1e-12)  # in USD
    assert r.mm == pytest.approx(10 * (0.075 + 0.01) * 50_000.0, rel=1e-12)
    # OKX USDT swap: linear, P&L in USDT.
    e.fill("acct", swap, 1.0, 50_000.0, fee=0.0)
    e.fill("acct", swap, -1.0, 51_000.0, fee=0.0)
    assert e.balance("acct", "USDT") == pytest.approx(1_000.0)
    # OKX USD swap: inverse, 100 USD contracts, P&L in BTC.
    e.fill("acct", inv, 100.0, 50_000.0, fee=0.0)
    e.fill("acct", inv, -100.0, 40_000.0, fee=0.0)
    assert e.balance("acct", "BTC") == pytest.approx(0.1 + 10_000.0 * (1 / 50_000 - 1 / 40_000))
    # The option expires on 27 Dec 2024 at 08:00 UTC.
    e.now = datetime(2024, 12, 27, 8, 0, tzinfo=timezone.utc).timestamp()
    assert e.check_order("acct", opt, -1.0, 0.01).reason == "instrument_expired"
    assert e.check_order("acct", swap, 1.0, 50_000.0).reason == "ok"


# ---- signs ------------------------------------------------------------------------------------


def test_requirements_of_an_empty_account_are_plus_zero(eng):
    """No requirement is +0.0, not -0.0 (which prints as "-0.00")."""
    for name in eng.accounts:
        s = eng.summary(name)
        assert math.copysign(1.0, s.im) == 1.0 and math.copysign(1.0, s.mm) == 1.0
    ev = eng.evaluate_all()
    assert not np.signbit(ev.im).any() and not np.signbit(ev.mm).any()
    assert f"{eng.summary('alice').im:.2f}" == "0.00"
