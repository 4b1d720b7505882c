"""The bounded offset between underlyings in portfolio accounts."""

from __future__ import annotations

import itertools
import math

import marginkit as mk
import numpy as np
import pytest
from marginkit import scenarios

NOW = 1_735_804_800  # 2025-01-02


def engine(offset: float) -> mk.Engine:
    eng = mk.Engine()
    eng.now = NOW
    eng.add_asset("USDC", price=1.0, time=NOW)  # quantum 0: exact comparisons
    eng.add_asset("BTC", price=100_000.0, time=NOW)
    eng.add_asset("ETH", price=4_000.0, time=NOW)
    eng.add_model("lin", "linear_rate", im_base=0.02, im_slope=0.0, mm_base=0.01, mm_slope=0.0)
    for coin, px in (("BTC", 100_000.0), ("ETH", 4_000.0)):
        eng.add_instrument(f"{coin}_USDC-PERPETUAL", model="lin", mark=px, time=NOW)
    eng.add_scenario_set("grid", **scenarios.deribit(im_factor=1.25))
    eng.set_scenarios("BTC", "grid")
    eng.set_scenarios("ETH", "grid")
    eng.portfolio_offset = offset
    eng.add_account("a", "USDC")
    eng.deposit("a", "USDC", 1_000_000.0)
    eng.set_mode("a", "portfolio")
    return eng


def hedged(offset: float, eth: float = -25.0) -> mk.Engine:
    eng = engine(offset)
    eng.fill("a", "BTC_USDC-PERPETUAL", 1.0, 100_000.0, fee=0.0)
    eng.fill("a", "ETH_USDC-PERPETUAL", eth, 4_000.0, fee=0.0)
    return eng


def losses(eng: mk.Engine) -> tuple[float, float]:
    """(summed loss L, joint loss J) from the reported weighted P&L vectors."""
    groups = eng.portfolio("a")
    summed = sum(max(0.0, -min(g["pnl"])) for g in groups)
    joint = max(0.0, -min(np.sum([g["pnl"] for g in groups], axis=0)))
    return summed, joint


@pytest.mark.parametrize("k", [0.0, 0.25, 0.5, 1.0])
def test_requirement_is_the_bounded_mix_of_summed_and_joint_loss(k):
    eng = hedged(k)
    summed, joint = losses(eng)
    assert joint < 0.5 * summed  # a hedge across underlyings: the joint loss is small
    s = eng.summary("a")
    assert s.mm == pytest.approx(summed - k * (summed - joint), rel=1e-12)
    assert s.im == pytest.approx(1.25 * (summed - k * (summed - joint)), rel=1e-12)
    assert joint - 1e-9 <= s.mm <= summed + 1e-9
    credit = eng.portfolio_credit("a")
    assert credit == pytest.approx((k * (summed - joint), 1.25 * k * (summed - joint)),
                                   rel=1e-12, abs=1e-12)


def test_the_credit_grows_with_the_offset_and_vanishes_at_zero():
    mms = [hedged(k).summary("a").mm for k in np.linspace(0.0, 1.0, 6)]
    assert all(x > y for x, y in itertools.pairwise(mms))
    assert hedged(0.0).portfolio_credit("a") == (0.0, 0.0)


def test_a_single_underlying_gets_no_credit():
    eng = engine(1.0)
    eng.fill("a", "BTC_USDC-PERPETUAL", 1.0, 100_000.0, fee=0.0)
    assert eng.portfolio_credit("a") == (0.0, 0.0)
    assert eng.summary("a").mm == pytest.approx(losses(eng)[0], rel=1e-12)


@pytest.mark.parametrize("k", [0.3, 1.0])
@pytest.mark.parametrize("order", [("ETH_USDC-PERPETUAL", -10.0), ("ETH_USDC-PERPETUAL", 40.0),
                                   ("BTC_USDC-PERPETUAL", 0.5), ("BTC_USDC-PERPETUAL", -2.0)])
def test_incremental_check_equals_the_fill(k, order):
    for eth in (-25.0, 0.0):  # 0: the order opens the second group (no credit before)
        eng = engine(k)
        eng.fill("a", "BTC_USDC-PERPETUAL", 1.0, 100_000.0, fee=0.0)
        if eth:
            eng.fill("a", "ETH_USDC-PERPETUAL", eth, 4_000.0, fee=0.0)
        name, qty = order
        px = eng.mark(name)
        check = eng.check_order("a", name, qty, px)
        eng.fill("a", name, qty, px, fee=0.0)
        s = eng.summary("a")
        assert check.mm_after == pytest.approx(s.mm, rel=1e-12, abs=1e-9)
        assert check.im_after == pytest.approx(s.im, rel=1e-12, abs=1e-9)


def test_resting_orders_take_the_least_favourable_credit():
    eng = hedged(1.0)
    before = eng.portfolio_credit("a")
    eng.place_order("a", "ETH_USDC-PERPETUAL", 25.0, 4_000.0)  # would remove the hedge
    mm_credit, im_credit = eng.portfolio_credit("a")
    assert mm_credit == pytest.approx(before[0], rel=1e-12)  # MM: positions as they stand
    assert im_credit < before[1]  # IM: the bids-filled case has almost no offset


def test_max_order_size_is_the_boundary_with_an_offset():
    eng = hedged(0.7)
    eng.withdraw("a", "USDC", 950_000.0)
    for name, side in (("BTC_USDC-PERPETUAL", "buy"), ("ETH_USDC-PERPETUAL", "sell"),
                       ("ETH_USDC-PERPETUAL", "buy")):
        px = eng.mark(name)
        x = eng.max_order_size("a", name, side, px)
        sign = 1.0 if side == "buy" else -1.0
        assert math.isfinite(x) and x > 0
        assert eng.check_order("a", name, sign * x, px).accepted
        assert not eng.check_order("a", name, sign * x * (1 + 1e-9), px).accepted


def test_offset_is_bounded_and_persisted():
    eng = hedged(0.4)
    for bad in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match="offset"):
            eng.portfolio_offset = bad
    assert eng.portfolio_offset == 0.4
    back = mk.Engine.from_bytes(eng.to_bytes())
    assert back.portfolio_offset == 0.4
    assert back.summary("a").mm == eng.summary("a").mm
