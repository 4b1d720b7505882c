"""Spot liquidation (Drift's liability transfer) inside the whole-book passes:
``plan_all`` flags accounts whose steps leave them below target with a borrow
and a deposit (``needs_spot``), and ``cascade`` (or ``liquidate(spot=True)``)
follows an account's steps with :meth:`Engine.spot_cure` before settling its
bad debt. Books without borrows are unaffected.

Value is conserved at the assets' prices (unweighted)::

    sum over accounts and assets of balance x price + fund x price
        + market_pnl - socialized
"""

from __future__ import annotations

import math

import marginkit as mk
import pytest
from hypothesis import HealthCheck, given, settings
from test_liquidation import BTC, books, build, venue

NOW = 1_735_776_000.0
FEW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])

LW = 1.2  # SOL's liability weight
AM, LM = 1.02, 0.95  # liquidation multipliers: USDC 1 + 2 %, SOL 1 - 5 %
PRICE = 450.0  # SOL after the move (from 100)


def spot_book(*, fee_policy: str = "fixed") -> mk.Engine:
    """USDC (margin asset) and SOL (liability weight 1.2); "cured" and "drained"
    each sold 5 SOL at 100 (borrowed) and hold 2,500 / 1,500 USDC; "safe" holds
    USDC only. At SOL 450 both borrowers are in breach (weighted equity 2,500 -
    2,700 = -200 and 1,500 - 2,700 = -1,200): a transfer of 3.5 SOL cures the
    first; the second's deposit is not enough (it is handed over whole)."""
    eng = mk.Engine()
    eng.now = NOW
    eng.add_asset("USDC", price=1.0, time=NOW, liquidator_fee=AM - 1.0)
    eng.add_asset("SOL", price=100.0, time=NOW, liability_weight=LW, liquidator_fee=1.0 - LM)
    eng.add_model("none", "linear_rate", im_base=0.0, im_slope=0.0, mm_base=0.0, mm_slope=0.0)
    eng.add_instrument("SOL/USDC", kind="spot", underlying="SOL", settle="USDC", model="none")
    for name, cash in (("cured", 2_000.0), ("drained", 1_000.0)):
        eng.add_account(name, "USDC")
        eng.deposit(name, "USDC", cash)
        eng.fill(name, "SOL/USDC", -5.0, 100.0, fee=0.0)
    eng.add_account("safe", "USDC")
    eng.deposit("safe", "USDC", 10_000.0)
    eng.set_liquidation_params(fee_policy=fee_policy, max_if_fee=0.01)
    eng.fund_insurance("USDC", 50.0)
    eng.move_underlying("SOL", PRICE)
    return eng


def clone(eng: mk.Engine) -> mk.Engine:
    return mk.Engine.from_bytes(eng.to_bytes())


def value(eng: mk.Engine) -> float:
    """Balances, the fund and the market at the assets' prices, less write-offs."""
    total = sum(eng.balance(a, s) * eng.price(s) for a in eng.accounts for s in eng.assets)
    total += sum(eng.insurance_fund(s) * eng.price(s) for s in eng.assets)
    return total + eng.market_pnl("USDC") - eng.socialized("USDC")


@pytest.mark.parametrize("fee_policy", ["fixed", "margin_implied"])
def test_cascade_cures_a_spot_borrow_by_liability_transfer(fee_policy):
    eng = spot_book(fee_policy=fee_policy)
    assert eng.summary("cured").equity == pytest.approx(-200.0, rel=1e-12)
    plans = {p["account"]: p for p in eng.plan_all()}
    assert set(plans) == {"cured", "drained"}
    for p in plans.values():  # no position step can help: spot is the only cure
        assert p["steps"] == [] and p["needs_spot"]
    want = {n: clone(eng).plan_spot_liquidation(n, "SOL", "USDC") for n in plans}
    assert want["cured"]["liability_transfer"] == pytest.approx(want["cured"]["to_cover"])
    assert want["drained"]["asset_transfer"] == 1_500.0  # the whole deposit
    twin, old = clone(eng), clone(eng)
    before = value(eng)

    rounds = eng.cascade("SOL", 0.0, impact=0.01)

    assert len(rounds) == 1  # spot transfers do not move the price: a fixed point
    r = rounds[0]
    assert (r["liquidated"], r["volume"], r["price"]) == (2, 0.0, PRICE)
    assert r["spot_transfers"] == 2
    assert r["spot_value"] == pytest.approx(
        sum(w["liability_transfer"] for w in want.values()) * PRICE, rel=1e-12)
    assert value(eng) == pytest.approx(before, abs=1e-9 * before)
    for name, w in want.items():  # the borrow shrank by the planned transfer less the fee
        assert eng.balance(name, "SOL") == pytest.approx(
            -5.0 + w["liability_transfer"] - w["fund_fee"], rel=1e-12)
    # restored (to within rounding, so no bad debt worth the name)
    assert eng.summary("cured").equity == pytest.approx(0.0, abs=1e-9)
    assert eng.balance("cured", "USDC") == pytest.approx(
        2_500.0 - want["cured"]["asset_transfer"], rel=1e-12)
    # deposit exhausted; the rest of the shortfall is bad debt the fund pays
    assert eng.balance("drained", "SOL") < 0.0
    assert eng.summary("drained").equity == pytest.approx(0.0, abs=1e-9)
    assert r["bad_debt"] == pytest.approx(
        LW * PRICE * -eng.balance("drained", "SOL"), rel=1e-9, abs=1e-9)
    assert eng.plan_all() == []  # nobody left in breach

    # the same through liquidate(spot=True), one account at a time
    got = []
    for plan in twin.plan_all():
        res = twin.liquidate(plan["account"], spot=True)
        assert [s["asset"] for s in res["spot"]] == ["USDC"]
        got.extend(res["spot"])
    assert [s["liability_transfer"] for s in got] == pytest.approx(
        [w["liability_transfer"] for w in want.values()], rel=1e-12)
    assert value(twin) == pytest.approx(value(eng), abs=1e-9 * before)

    # without spot (the standalone liquidate), the weighted shortfall is bad debt
    res = old.liquidate("cured")
    assert res["spot"] == [] and res["bad_debt"] == pytest.approx(200.0, rel=1e-12)


def test_spot_cure_prefers_the_largest_borrow_and_the_deposit_that_takes_most():
    """Two borrows (SOL 5 x 450 = 2,250, ETH 0.5 x 3,000 = 1,500) and two
    deposits (USDC 2,600, BTC 0.001 x 100k = 100): the SOL borrow goes
    first, paid with USDC (it takes over more than the BTC could)."""
    eng = spot_book()
    eng.add_asset("BTC", price=100_000.0, time=NOW)
    eng.add_asset("ETH", price=3_000.0, time=NOW, liability_weight=LW)
    eng.add_instrument("ETH/USDC", kind="spot", underlying="ETH", settle="USDC", model="none")
    eng.add_account("two", "USDC")
    eng.deposit("two", "USDC", 1_000.0)
    eng.deposit("two", "BTC", 0.001)
    eng.fill("two", "SOL/USDC", -5.0, 100.0, fee=0.0)  # +500 USDC
    eng.fill("two", "ETH/USDC", -0.5, 2_200.0, fee=0.0)  # +1,100 USDC
    assert eng.summary("two").equity < 0.0
    first = clone(eng).plan_spot_liquidation("two", "SOL", "USDC")
    done = clone(eng).spot_cure("two")
    assert (done[0]["liability"], done[0]["asset"]) == ("SOL", "USDC")
    assert done[0]["liability_transfer"] == first["liability_transfer"]
    assert all(s["liability_transfer"] > 0.0 for s in done)
    assert len({(s["liability"], s["asset"]) for s in done}) == len(done)
    before = value(eng)
    eng.spot_cure("two")
    assert value(eng) == pytest.approx(before, abs=1e-9 * before)
    assert clone(eng).spot_cure("safe") == []  # not in breach: nothing


@FEW
@given(books(n_min=2, n_max=5))
def test_books_without_borrows_cascade_as_before(book):
    """On the random books of test_liquidation (USDC only: no borrow has a
    deposit to pay it), no plan needs spot, and the cascade is the replay of
    plain liquidate() calls: no transfer anywhere."""
    eng, _ = build(book)
    twin = clone(eng)
    assert not any(p["needs_spot"] for p in eng.plan_all())
    rounds = eng.cascade("BTC", -0.2, impact=1e-3, max_rounds=4)
    for r in rounds:
        assert (r["spot_transfers"], r["spot_value"]) == (0, 0.0)
    twin.move_underlying("BTC", twin.price("BTC") * 0.8)
    for reported in rounds:
        liquidated = 0
        for plan in twin.plan_all():
            assert twin.liquidate(plan["account"])["spot"] == []
            liquidated += 1
        assert liquidated == reported["liquidated"]
        if reported["price"] != twin.price("BTC"):
            twin.move_underlying("BTC", reported["price"])
    assert math.isclose(sum(twin.balance(a, "USDC") for a in twin.accounts),
                        sum(eng.balance(a, "USDC") for a in eng.accounts),
                        rel_tol=1e-12, abs_tol=1e-6)


def test_cascade_closes_positions_then_transfers():
    """A 1 BTC long (USDC margin) whose account also borrowed 5 SOL (now 450,
    weighted -200): after a 1 % fall the perpetual is closed by the plan's steps,
    which cannot restore the account (its spot part alone is below 0), so the
    SOL borrow is then transferred for the USDC left; value (balances and
    positions at the prices, fund, market, write-offs) is conserved."""
    eng = venue()
    eng.add_asset("SOL", price=100.0, time=NOW, liability_weight=LW, liquidator_fee=1.0 - LM)
    eng.add_model("none", "linear_rate", im_base=0.0, im_slope=0.0, mm_base=0.0, mm_slope=0.0)
    eng.add_instrument("SOL/USDC", kind="spot", underlying="SOL", settle="USDC", model="none")
    eng.add_account("mixed", "USDC")
    eng.deposit("mixed", "USDC", 2_000.0)
    eng.fill("mixed", "SOL/USDC", -5.0, 100.0, fee=0.0)
    eng.fill("mixed", BTC, 1.0, 100_000.0, fee=0.0)
    eng.set_liquidity(BTC, spread=0.001)
    eng.move_underlying("SOL", PRICE)
    eng.move_underlying("BTC", 99_000.0)

    def total(e: mk.Engine) -> float:
        return value(e) + sum(r.equity for a in e.accounts for r in e.attribution(a))

    (plan,) = eng.plan_all()
    assert [s["kind"] for s in plan["steps"]] == ["close"] and plan["needs_spot"]
    twin = clone(eng)
    before = total(eng)
    rounds = eng.cascade("BTC", 0.0, impact=1e-3)
    r = rounds[0]
    assert (r["liquidated"], r["volume"], r["spot_transfers"]) == (1, 1.0, 1)
    assert eng.positions("mixed") == []
    assert total(eng) == pytest.approx(before, abs=1e-9 * abs(before))
    res = twin.liquidate("mixed", spot=True)
    (s,) = res["spot"]
    assert (s["liability"], s["asset"]) == ("SOL", "USDC")
    assert r["spot_value"] == pytest.approx(s["liability_transfer"] * PRICE, rel=1e-12)
    assert eng.balance("mixed", "SOL") == pytest.approx(-5.0 + s["liability_transfer"],
                                                        rel=1e-12)
