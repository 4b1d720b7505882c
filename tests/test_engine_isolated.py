"""Isolated margin: sub-accounts "parent/instrument" funded from the parent's pool,
trading one instrument on their own collateral.

Figures are checked against hand formulas: Deribit's linear-rate requirement
(IM = s (0.02 + 5e-5 s) S, MM = s (0.01 + 5e-5 s) S for s BTC), equity = cash +
size (mark - entry), money rounded to the cent (requirements up, equity down).
"""

from __future__ import annotations

import math

import marginkit as mk
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marginkit.presets import apply_preset

SETTINGS = settings(max_examples=50, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

NOW = 1_735_776_000.0
BTC = "BTC_USDC-PERPETUAL"
ETH = "ETH_USDC-PERPETUAL"
CHILD = f"alice/{BTC}"


def lin(s: float, index: float, base: float) -> float:
    """Deribit BTC linear-rate requirement of s BTC (base 0.02 for IM, 0.01 for MM)."""
    s = abs(s)
    return s * (base + 5e-5 * s) * index


def cents_up(x: float) -> float:
    return math.ceil(round(x * 100, 6)) / 100


def engine(quantum: float = 0.01) -> mk.Engine:
    """USDC (cents), BTC 100k, ETH 3.4k; linear perpetuals; alice with 10,000 USDC
    and 10 ETH long (IM 681.36)."""
    eng = mk.Engine()
    eng.now = NOW
    eng.add_asset("USDC", price=1.0, time=NOW, quantum=quantum)
    eng.add_asset("BTC", price=100_000.0, time=NOW, haircuts=[(math.inf, 0.05)])
    eng.add_asset("ETH", price=3_400.0, time=NOW)
    apply_preset(eng, "deribit")
    eng.add_instrument(BTC, model="deribit_btc_futures", mark=100_000.0, time=NOW)
    eng.add_instrument(ETH, model="deribit_eth_futures", mark=3_400.0, time=NOW)
    eng.add_instrument("BTC-PERPETUAL", model="deribit_btc_futures", contract_size=10.0,
                       mark=100_000.0, time=NOW)
    eng.add_instrument("BTC_USDC", kind="spot", underlying="BTC", settle="USDC",
                       model="deribit_btc_futures")
    eng.add_account("alice", "USDC")
    eng.deposit("alice", "USDC", 10_000.0)
    eng.fill("alice", ETH, 10.0, 3_400.0, fee=0.0)
    return eng


def snapshot(eng: mk.Engine) -> tuple:
    rows = []
    for a in eng.accounts:
        s = eng.summary(a)
        rows.append((a, eng.parent(a), s.equity, s.im, s.mm, s.available, s.state,
                     tuple(eng.balance(a, x) for x in eng.assets), repr(eng.positions(a))))
    return tuple(rows)


# ---- opening -----------------------------------------------------------------------------

def test_open_isolated_moves_funds_and_names_the_child():
    eng = engine()
    s = eng.summary("alice")
    assert (s.equity, s.im) == (10_000.0, cents_up(10 * (0.02 + 4e-6 * 10) * 3_400))
    child = eng.open_isolated("alice", BTC, 1_234.56)
    assert eng.accounts == ["alice", CHILD]
    assert child == eng.accounts.index(CHILD) == 1
    assert eng.parent(CHILD) == "alice" and eng.parent("alice") is None
    assert eng.margin_asset(CHILD) == "USDC"
    assert eng.balance("alice", "USDC") == pytest.approx(10_000.0 - 1_234.56, abs=1e-9)
    assert eng.balance(CHILD, "USDC") == 1_234.56
    assert eng.positions(CHILD) == []
    c = eng.summary(CHILD)
    assert (c.equity, c.im, c.mm, c.available, c.state) == (1_234.56, 0.0, 0.0, 1_234.56,
                                                            "healthy")
    assert eng.summary("alice").equity == 10_000.0 - 1_234.56
    # a BTC-margined parent funds its child in BTC
    eng.add_account("bob", "BTC")
    eng.deposit("bob", "BTC", 2.0)
    kid = eng.open_isolated("bob", "BTC-PERPETUAL", 0.5)
    assert eng.accounts[kid] == "bob/BTC-PERPETUAL"
    assert eng.margin_asset(kid) == "BTC"
    assert (eng.balance("bob", "BTC"), eng.balance(kid, "BTC")) == (1.5, 0.5)


def test_open_isolated_up_to_the_parents_available_margin_exactly():
    """Funding may take the parent's available margin to zero, not a cent beyond;
    a refusal raises ValueError and changes nothing (no account is added)."""
    eng = engine()
    avail = eng.summary("alice").available
    assert avail == 10_000.0 - 681.36
    before = snapshot(eng)
    with pytest.raises(ValueError, match="insufficient_margin"):
        eng.open_isolated("alice", BTC, avail + 0.01)
    assert snapshot(eng) == before
    assert eng.accounts == ["alice"]
    with pytest.raises(ValueError, match="insufficient_balance"):
        eng.open_isolated("alice", BTC, 10_000.01)
    assert snapshot(eng) == before
    child = eng.open_isolated("alice", BTC, avail)  # the name is still free
    assert eng.accounts[child] == CHILD
    s = eng.summary("alice")
    assert (s.available, s.im) == (0.0, 681.36)
    assert eng.balance(CHILD, "USDC") == avail


def test_open_isolated_needs_margin_asset_balance_not_other_collateral():
    eng = engine()
    eng.add_account("carol", "USDC")
    eng.deposit("carol", "BTC", 1.0)  # 95,000 USDC of collateral, no USDC
    assert eng.summary("carol").equity == 95_000.0
    with pytest.raises(ValueError, match="insufficient_balance"):
        eng.open_isolated("carol", BTC, 100.0)
    assert eng.accounts == ["alice", "carol"]


@pytest.mark.parametrize("amount", [0.0, -1.0, math.nan, math.inf])
def test_open_isolated_rejects_bad_amounts(amount):
    eng = engine()
    before = snapshot(eng)
    with pytest.raises(ValueError, match="amount"):
        eng.open_isolated("alice", BTC, amount)
    assert snapshot(eng) == before


def test_open_isolated_refusals_that_raise():
    eng = engine()
    eng.open_isolated("alice", BTC, 100.0)
    before = snapshot(eng)
    with pytest.raises(ValueError, match="exists already"):
        eng.open_isolated("alice", BTC, 100.0)
    with pytest.raises(ValueError, match="cannot open isolated"):
        eng.open_isolated(CHILD, BTC, 10.0)
    with pytest.raises(ValueError, match="cannot open isolated"):
        eng.open_isolated(CHILD, ETH, 10.0)
    with pytest.raises(ValueError, match="spot"):
        eng.open_isolated("alice", "BTC_USDC", 100.0)
    with pytest.raises(ValueError, match="unknown"):
        eng.open_isolated("nobody", BTC, 100.0)
    with pytest.raises(ValueError, match="unknown"):
        eng.open_isolated("alice", "NOPE", 100.0)
    assert snapshot(eng) == before
    # a cross account already named like the child blocks the name
    eng.add_account("dave", "USDC")
    eng.deposit("dave", "USDC", 1_000.0)
    eng.add_account(f"dave/{ETH}", "USDC")
    before = snapshot(eng)
    with pytest.raises(ValueError, match="exists already"):
        eng.open_isolated("dave", ETH, 10.0)
    assert snapshot(eng) == before


# ---- one instrument ----------------------------------------------------------------------

def test_child_trades_only_its_instrument():
    eng = engine()
    eng.open_isolated("alice", BTC, 5_000.0)
    before = snapshot(eng)
    for other in (ETH, "BTC-PERPETUAL", "BTC_USDC"):
        r = eng.check_order(CHILD, other, 0.01, eng.mark(ETH))
        assert (r.accepted, r.reason) == (False, "not_isolated_instrument"), other
        with pytest.raises(ValueError, match="isolated"):
            eng.fill(CHILD, other, 0.01, 3_400.0)
        assert eng.max_order_size(CHILD, other, "buy", 3_400.0) == 0.0
    with pytest.raises(ValueError, match="isolated"):
        eng.place_order(CHILD, ETH, 1.0, 3_400.0)
    with pytest.raises(ValueError, match="isolated"):
        eng.set_positions([eng.accounts.index(CHILD)], [eng.instruments.index(ETH)], [1.0],
                          [3_400.0])
    assert snapshot(eng) == before
    # its own instrument trades normally
    r = eng.check_order(CHILD, BTC, 0.1, 100_000.0)
    assert r.accepted and r.reason == "ok"
    assert r.im_after == cents_up(lin(0.1, 100_000.0, 0.02))
    eng.fill(CHILD, BTC, 0.1, 100_000.0, fee=0.0)
    oid = eng.place_order(CHILD, BTC, 0.05, 99_000.0)
    assert eng.positions(CHILD) == [{"instrument": BTC, "size": 0.1, "entry": 100_000.0,
                                     "bids": 0.05, "asks": 0.0}]
    eng.cancel_order(oid)


def test_child_margins_on_its_own_collateral_only():
    """The parent's 9k of free margin does not back the child's orders: the child's
    limit is IM(x) <= its 1,000 USDC (at the mark, no fee)."""
    eng = engine()
    eng.open_isolated("alice", BTC, 1_000.0)
    assert not eng.check_order(CHILD, BTC, 1.0, 100_000.0).accepted
    assert eng.check_order("alice", BTC, 1.0, 100_000.0).accepted
    x = eng.max_order_size(CHILD, BTC, "buy", 100_000.0)
    # 1e5 x (0.02 + 5e-5 x) = 1000  ->  5 x^2 + 2000 x - 1000 = 0
    exact = (-2_000.0 + math.sqrt(2_000.0**2 + 4 * 5 * 1_000.0)) / 10.0
    assert x == pytest.approx(exact, abs=2e-7)  # a cent of IM is 1e-7 BTC here
    assert eng.check_order(CHILD, BTC, x, 100_000.0).accepted
    assert not eng.check_order(CHILD, BTC, np.nextafter(x, math.inf), 100_000.0).accepted


# ---- transfers ---------------------------------------------------------------------------

def test_transfer_both_ways():
    eng = engine()
    eng.open_isolated("alice", BTC, 1_000.0)
    assert eng.transfer("alice", CHILD, 500.0) == "ok"
    assert (eng.balance("alice", "USDC"), eng.balance(CHILD, "USDC")) == (8_500.0, 1_500.0)
    assert eng.transfer(CHILD, "alice", 1_200.0) == "ok"
    assert (eng.balance("alice", "USDC"), eng.balance(CHILD, "USDC")) == (9_700.0, 300.0)
    assert eng.transfer(CHILD, "alice", 300.0) == "ok"
    assert eng.balance(CHILD, "USDC") == 0.0
    assert eng.summary(CHILD).equity == 0.0


def test_transfer_refused_when_it_would_uncover_the_senders_im():
    eng = engine()
    eng.open_isolated("alice", BTC, 2_000.0)
    eng.fill(CHILD, BTC, 0.5, 100_000.0, fee=0.0)
    eng.set_price("BTC", 99_000.0)
    eng.set_mark(BTC, 99_000.0)
    c = eng.summary(CHILD)
    im = cents_up(lin(0.5, 99_000.0, 0.02))
    assert (c.equity, c.im) == (1_500.0, im)
    before = snapshot(eng)
    assert eng.transfer(CHILD, "alice", c.available + 0.01) == "insufficient_margin"
    assert eng.transfer(CHILD, "alice", 2_000.01) == "insufficient_balance"
    assert snapshot(eng) == before
    assert eng.transfer(CHILD, "alice", c.available) == "ok"
    assert eng.summary(CHILD).available == 0.0
    # the parent the same way
    p = eng.summary("alice")
    before = snapshot(eng)
    assert eng.transfer("alice", CHILD, p.available + 0.01) == "insufficient_margin"
    assert snapshot(eng) == before
    assert eng.transfer("alice", CHILD, p.available) == "ok"
    assert eng.summary("alice").available == 0.0


def test_transfer_only_between_a_parent_and_its_child():
    eng = engine()
    eng.open_isolated("alice", BTC, 1_000.0)
    eng.add_account("bob", "USDC")
    eng.deposit("bob", "USDC", 1_000.0)
    eng.open_isolated("bob", BTC, 100.0)
    before = snapshot(eng)
    for src, dst in (("alice", "bob"), ("bob", CHILD), (CHILD, f"bob/{BTC}"),
                     ("alice", "alice")):
        with pytest.raises(ValueError):
            eng.transfer(src, dst, 1.0)
    for amount in (0.0, -5.0, math.nan):
        with pytest.raises(ValueError):
            eng.transfer("alice", CHILD, amount)
    assert snapshot(eng) == before


def test_withdraw_on_a_child_raises_and_changes_nothing():
    eng = engine()
    eng.open_isolated("alice", BTC, 1_000.0)
    before = snapshot(eng)
    with pytest.raises(ValueError, match="transfer"):
        eng.withdraw(CHILD, "USDC", 1.0)
    assert snapshot(eng) == before


# ---- losses stay isolated -----------------------------------------------------------------

@SETTINGS
@given(st.floats(100.0, 5_000.0), st.floats(0.01, 0.5), st.sampled_from([1.0, -1.0]),
       st.lists(st.floats(0.3, 2.0), min_size=1, max_size=6))
def test_a_childs_loss_never_touches_the_parent(funding, size, side, path):
    """However far BTC moves, the parent (which holds no BTC) keeps its equity and
    state; the child's equity is its cash plus size (mark - entry), negative when
    bankrupt."""
    eng = engine(quantum=0.0)
    eng.open_isolated("alice", BTC, funding)
    q = side * size
    eng.fill(CHILD, BTC, q, 100_000.0, fee=0.0)
    parent = eng.summary("alice")
    for t, factor in enumerate(path, start=1):
        px = 100_000.0 * factor
        eng.set_price("BTC", px, NOW + t)
        eng.set_mark(BTC, px, NOW + t)
        p = eng.summary("alice")
        assert (p.equity, p.im, p.mm, p.state) == (parent.equity, parent.im, parent.mm,
                                                   parent.state)
        c = eng.summary(CHILD)
        want = funding + q * (px - 100_000.0)
        assert c.equity == pytest.approx(want, rel=1e-12, abs=1e-7)
        assert c.mm == pytest.approx(lin(q, px, 0.01), rel=1e-12)
        if want < 0:
            assert c.state == "bankrupt"
        ev = eng.evaluate_all()
        assert ev.equity[0] == parent.equity
    assert eng.balance("alice", "USDC") == 10_000.0 - funding


def test_bankrupt_child_cannot_send_and_can_be_topped_up():
    eng = engine()
    eng.open_isolated("alice", BTC, 1_000.0)
    eng.fill(CHILD, BTC, 0.2, 100_000.0, fee=0.0)
    eng.set_price("BTC", 90_000.0)
    eng.set_mark(BTC, 90_000.0)
    c = eng.summary(CHILD)
    assert c.equity == -1_000.0 and c.state == "bankrupt"
    parent_before = eng.summary("alice")
    assert eng.transfer(CHILD, "alice", 1.0) == "insufficient_margin"
    assert eng.transfer("alice", CHILD, 3_000.0) == "ok"
    c = eng.summary(CHILD)
    assert c.equity == 2_000.0
    assert c.state == "healthy"
    assert eng.summary("alice").equity == parent_before.equity - 3_000.0


# ---- liquidation price, batch evaluation --------------------------------------------------

@SETTINGS
@given(st.floats(200.0, 20_000.0), st.floats(0.01, 1.0), st.sampled_from([1.0, -1.0]),
       st.floats(0.97, 1.03), st.sampled_from([1.0, 1.1]))
def test_child_liquidation_price_closed_form(funding, size, side, entry_ratio, thr):
    """funding + q (P - entry) = thr |q| (0.01 + 5e-5 |q|) P on the losing side,
    NaN on the other; the parent's liquidation prices ignore the child's position."""
    eng = engine(quantum=0.0)
    eng.set_thresholds(warning=1.5, reduce_only=1.2, liquidation=thr)
    eng.deposit("alice", "USDC", 20_000.0)
    eng.open_isolated("alice", BTC, funding)
    parent_lp = eng.liquidation_prices("alice")
    # the parent: 30,000 - funding USDC, 10 ETH long at 3,400 (MM 10 (0.01 + 4e-6 10) P)
    d = 30_000.0 - funding
    assert parent_lp[0] == pytest.approx((34_000.0 - d) / (10.0 - thr * 0.1004), rel=1e-12)
    q = side * size
    entry = 100_000.0 * entry_ratio
    eng.fill(CHILD, BTC, q, entry, fee=0.0)
    m = size * (0.01 + 5e-5 * size)
    gap0 = funding + q * (100_000.0 - entry) - thr * m * 100_000.0
    below, above = eng.liquidation_prices(CHILD)
    if gap0 <= 0:
        assert (below, above) == (100_000.0, 100_000.0)
        return
    want = -(funding - q * entry) / (q - thr * m)
    losing, other = (below, above) if q > 0 else (above, below)
    assert math.isnan(other)
    if want <= 0:
        assert math.isnan(losing)
    else:
        assert losing == pytest.approx(want, rel=1e-12)
    after = eng.liquidation_prices("alice")
    assert np.array_equal(np.array(after), np.array(parent_lp), equal_nan=True)


def test_evaluate_all_covers_children():
    eng = engine()
    eng.add_account("bob", "USDC")
    eng.deposit("bob", "USDC", 50_000.0)
    eng.open_isolated("alice", BTC, 3_000.0)
    eng.open_isolated("bob", ETH, 500.0)
    eng.open_isolated("bob", BTC, 2_000.0)
    eng.fill(CHILD, BTC, 0.25, 100_000.0, fee=0.0)
    eng.fill(f"bob/{ETH}", ETH, -1.0, 3_400.0, fee=0.0)
    eng.fill(f"bob/{BTC}", BTC, 0.5, 101_000.0, fee=0.0)
    eng.set_price("BTC", 97_000.0)
    eng.set_mark(BTC, 97_000.0)
    ev = eng.evaluate_all()
    assert eng.accounts == ["alice", "bob", CHILD, f"bob/{ETH}", f"bob/{BTC}"]
    assert len(ev.equity) == 5
    for i, name in enumerate(eng.accounts):
        s = eng.summary(name)
        assert (ev.equity[i], ev.im[i], ev.mm[i], ev.available[i]) == (s.equity, s.im, s.mm,
                                                                       s.available), name
        assert eng.state_names([ev.state[i]]) == [s.state]
    assert ev.equity[2] == 3_000.0 - 0.25 * 3_000.0
    assert ev.mm[2] == cents_up(lin(0.25, 97_000.0, 0.01))
    assert ev.equity[4] == 2_000.0 - 0.5 * 4_000.0
    assert eng.state_names([ev.state[4]]) == ["bankrupt"]
    assert eng.state_names([ev.state[1]]) == ["healthy"]
