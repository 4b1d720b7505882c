"""Liquidation: plans, execution, bankruptcy, the insurance fund, ADL, batch
planning, cascades and persistence.

Worked cases are checked against hand formulas (a flat-rate linear perpetual:
``MM = rate x size x price``, equity = cash + size (mark - entry)); properties run
on random books of USDC-settled instruments (BTC and ETH perpetuals, a BTC put;
one margin asset, money quantum 0 unless a test says otherwise, no haircuts),
where value is conserved exactly::

    sum over accounts of summary().equity + insurance_fund + market_pnl - socialized

is unchanged by every liquidation (fills against the market move value between
an account and ``market_pnl``, penalties and fund payments between an account
and the fund, ADL between two accounts at one price, and write-offs between an
account and ``socialized``).

Tests whose docstring starts with "BUG (exposed)" fail on purpose: each records
an implementation defect with the values that show it (they are not marked
xfail so that they stay visible until fixed).
"""

from __future__ import annotations

import itertools
import math

import marginkit as mk
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from marginkit import scenarios as scn
from marginkit.presets import apply_preset

SETTINGS = settings(max_examples=50, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NOW = 1_735_776_000.0
EXPIRY = int(NOW + 60 * 86_400)
BTC = "BTC_USDC-PERPETUAL"
ETH = "ETH_USDC-PERPETUAL"
PUT = "BTC_USDC-90000-P"
BREACH = ("liquidation", "bankrupt")


# ---- venues ----------------------------------------------------------------------------------

def flat_perp(*, size: float = 10.0, price: float = 100.0, mm_rate: float = 0.1,
              shortage: float = 10.0, fee_rate: float = 0.0, target: str = "maintenance",
              buffer: float = 0.0) -> mk.Engine:
    """One linear perpetual with flat rates (IM 2x MM); "acct" holds ``size`` bought
    at ``price`` with equity ``MM - shortage``."""
    eng = mk.Engine()
    eng.now = NOW
    eng.add_asset("USDC", price=1.0, time=NOW)
    eng.add_asset("X", price=price, time=NOW)
    eng.add_model("flat", "linear_rate", im_base=2 * mm_rate, im_slope=0.0, mm_base=mm_rate,
                  mm_slope=0.0)
    eng.add_instrument("X-PERP", kind="perpetual", underlying="X", settle="USDC", model="flat",
                       mark=price, time=NOW)
    eng.add_account("acct", "USDC")
    eng.deposit("acct", "USDC", abs(size) * price * mm_rate - shortage)
    eng.fill("acct", "X-PERP", size, price, fee=0.0)
    eng.set_liquidation_params(fee_rate=fee_rate, target=target, buffer=buffer)
    return eng


def venue(*, options: bool = False, portfolio: bool = False, quantum: float = 0.0) -> mk.Engine:
    """USDC (quantum 0 unless said, the only margin asset), BTC 100k, ETH 3.4k, no haircuts;
    Deribit's linear-rate models; USDC-settled BTC and ETH perpetuals; with
    ``options`` USDC-settled BTC options (60 days, vol 60 %, forward 100k), with
    ``portfolio`` the Deribit scenario grid on BTC."""
    eng = mk.Engine()
    eng.now = NOW
    eng.add_asset("USDC", price=1.0, time=NOW, quantum=quantum)
    eng.add_asset("BTC", price=100_000.0, time=NOW)
    eng.add_asset("ETH", price=3_400.0, time=NOW)
    apply_preset(eng, "deribit")
    eng.add_instrument(BTC, model="deribit_btc_futures", mark=100_000.0, time=NOW)
    eng.add_instrument(ETH, model="deribit_eth_futures", mark=3_400.0, time=NOW)
    if options or portfolio:
        eng.set_forward("BTC", EXPIRY, 100_000.0, NOW)
        for k in (90_000, 100_000, 110_000):
            for cp in "CP":
                name = f"BTC_USDC-{k}-{cp}"
                eng.add_instrument(name, kind="option", underlying="BTC", settle="USDC",
                                   strike=k, cp=cp, expiry=EXPIRY, model="deribit_options")
                eng.set_vol(name, 0.6, NOW)
    if portfolio:
        eng.add_scenario_set("deribit", **scn.deribit())
        eng.set_scenarios("BTC", "deribit")
    return eng


def total_value(eng: mk.Engine) -> float:
    return (sum(eng.summary(a).equity for a in eng.accounts) + eng.insurance_fund("USDC")
            + eng.market_pnl("USDC") - eng.socialized("USDC"))


def scale(eng: mk.Engine) -> float:
    """The size of the figures the conservation check adds up."""
    return max(1.0, sum(abs(eng.summary(a).equity) for a in eng.accounts)
               + eng.insurance_fund("USDC") + abs(eng.market_pnl("USDC"))
               + eng.socialized("USDC"))


def clone(eng: mk.Engine) -> mk.Engine:
    return mk.Engine.from_bytes(eng.to_bytes())


def requirement(eng: mk.Engine, account: str, target: str) -> float:
    s = eng.summary(account)
    return s.mm if target == "maintenance" else s.im


def position_steps(plan: dict) -> list[dict]:
    return [s for s in plan["steps"] if s["kind"] != "cancel_orders"]


# ---- worked cases: a single perpetual ----------------------------------------------------------

@pytest.mark.parametrize("side", [1.0, -1.0])
@pytest.mark.parametrize("fee_rate,expected", [(0.0, 1.0), (0.01, 10.0 / 9.0)])
def test_single_perpetual_closes_exactly_what_restores_maintenance(fee_rate, expected, side):
    """$10 short of MM at a 10 % rate and $100: closing x frees 10 x of MM and
    costs 100 f x of penalty, 90 - 100 f x >= 100 - 10 x, so x = 10 / (10 - 100 f):
    1 unit without a fee, 10/9 with 1 % (within 1e-12 relative)."""
    eng = flat_perp(size=10.0 * side, fee_rate=fee_rate)
    s = eng.summary("acct")
    assert (s.equity, s.mm, s.state) == (90.0, 100.0, "liquidation")
    plan = eng.plan_liquidation("acct")
    (step,) = plan["steps"]
    assert step["kind"] == "reduce" and step["instrument"] == "X-PERP"
    assert step["qty"] == pytest.approx(-side * expected, rel=1e-12)
    assert step["price"] == 100.0 and step["slippage"] == 0.0
    assert step["penalty"] == pytest.approx(fee_rate * 100.0 * expected, rel=1e-12, abs=1e-300)
    assert step["released"] == pytest.approx(10.0 * expected, rel=1e-12)
    assert "sized exactly" in step["reason"]
    assert plan["restored"]
    assert (plan["equity_before"], plan["requirement_before"], plan["target_before"]) == (
        90.0, 100.0, 100.0)
    assert plan["equity_after"] == pytest.approx(90.0 - fee_rate * 100.0 * expected, rel=1e-12)
    assert plan["requirement_after"] == pytest.approx(100.0 - 10.0 * expected, rel=1e-12)
    res = eng.liquidate("acct")
    assert res["plan"] == plan
    assert res["fees_to_fund"] == pytest.approx(step["penalty"], rel=1e-12, abs=1e-300)
    assert eng.insurance_fund("USDC") == res["fees_to_fund"]
    after = eng.summary("acct")
    assert after.state == "reduce_only"  # exactly at MM: out of liquidation
    assert after.equity == pytest.approx(after.mm, rel=1e-12)
    (pos,) = eng.positions("acct")
    assert pos["size"] == pytest.approx(side * (10.0 - expected), rel=1e-12)


@pytest.mark.parametrize("fee_rate", [0.0, 0.02])
@pytest.mark.parametrize("target,buffer,expected", [
    # 90 - 100 f x >= 1.5 x 10 (10 - x)  ->  x = 60 / (15 - 100 f)
    ("maintenance", 0.5, lambda f: 60.0 / (15.0 - 100.0 * f)),
    # 90 - 100 f x >= 20 (10 - x)        ->  x = 110 / (20 - 100 f)
    ("initial", 0.0, lambda f: 110.0 / (20.0 - 100.0 * f)),
])
def test_single_perpetual_with_buffer_and_initial_target(target, buffer, expected, fee_rate):
    eng = flat_perp(fee_rate=fee_rate, target=target, buffer=buffer)
    plan = eng.plan_liquidation("acct")
    (step,) = plan["steps"]
    assert -step["qty"] == pytest.approx(expected(fee_rate), rel=1e-12)
    assert plan["restored"]
    assert plan["target_before"] == (150.0 if target == "maintenance" else 200.0)


def test_slippage_is_costed_and_sized_exactly():
    """Spread s and impact k: selling x fills at 100 (1 - s - k x); with no fee,
    90 - 100 x (s + k x) >= 10 (10 - x)  ->  100 k x^2 + (100 s - 10) x + 10 <= 0."""
    eng = flat_perp()
    s_, k = 0.01, 0.002
    eng.set_liquidity("X-PERP", spread=s_, impact=k)
    (step,) = eng.plan_liquidation("acct")["steps"]
    a, b, c = 100.0 * k, 100.0 * s_ - 10.0, 10.0
    x = (-b - math.sqrt(b * b - 4 * a * c)) / (2 * a)
    assert -step["qty"] == pytest.approx(x, rel=1e-12)
    assert step["price"] == pytest.approx(100.0 * (1 - s_ - k * x), rel=1e-12)
    assert step["slippage"] == pytest.approx(100.0 * x * (s_ + k * x), rel=1e-12)


def test_max_step_splits_the_liquidation():
    """3 units are needed (no fee, $30 short); steps of at most 1.25 each."""
    eng = flat_perp(shortage=30.0)
    eng.set_liquidity("X-PERP", max_step=1.25)
    plan = eng.plan_liquidation("acct")
    qty = [-s["qty"] for s in plan["steps"]]
    assert qty[:2] == [1.25, 1.25] and qty[2] == pytest.approx(0.5, rel=1e-12)
    assert "limited by the step size" in plan["steps"][0]["reason"]
    assert plan["restored"]


@pytest.mark.parametrize("target,released,qty", [("maintenance", 0.0, 0.5),
                                                   ("initial", 100.0, 5.25)])
def test_resting_orders_are_cancelled_first(target, released, qty):
    """Resting orders count toward IM at their worst side (bids of 5: IM 300 instead
    of 200), not toward MM; they are cancelled before any position is touched.
    Equity 95: MM target 100 needs 0.5 closed, IM target 200 needs 5.25."""
    eng = flat_perp(shortage=5.0, target=target)
    eng.place_order("acct", "X-PERP", 5.0, 99.0)
    eng.place_order("acct", "X-PERP", -1.0, 101.0)
    plan = eng.plan_liquidation("acct")
    cancel, step = plan["steps"]
    assert cancel["kind"] == "cancel_orders" and cancel["instrument"] == "X-PERP"
    assert cancel["released"] == pytest.approx(released, rel=1e-12)
    assert -step["qty"] == pytest.approx(qty, rel=1e-12)
    assert plan["restored"]
    eng.liquidate("acct")
    (pos,) = eng.positions("acct")
    assert (pos["bids"], pos["asks"]) == (0.0, 0.0)
    assert pos["size"] == pytest.approx(10.0 - qty, rel=1e-12)
    s = eng.summary("acct")
    assert s.equity >= (s.mm if target == "maintenance" else s.im) * (1 - 1e-12)


def test_penalty_is_capped_by_the_equity_left():
    """A fee of 50 % of notional on a close that leaves $2: the fund gets $2, the
    account ends at exactly zero, never negative (no bad debt)."""
    eng = flat_perp(size=1.0, mm_rate=0.1, shortage=8.0, fee_rate=0.5)  # equity 2, MM 10
    eng.set_liquidity("X-PERP", spread=0.5)
    (step,) = eng.plan_liquidation("acct")["steps"]
    # closing 1 at 50 loses 50 > 2: bankrupt; closing is the only way out
    assert step["kind"] == "close" and step["penalty"] == 0.0
    # no spread: closing 1 at 100 leaves 2; 50 % of 100 is capped at 2 (no partial
    # close restores: 2 - 50 x < 10 (1 - x) for x < 1)
    eng2 = flat_perp(size=1.0, mm_rate=0.1, shortage=8.0, fee_rate=0.5)
    (step,) = eng2.plan_liquidation("acct")["steps"]
    assert step["kind"] == "close" and step["penalty"] == 2.0
    res = eng2.liquidate("acct")
    assert res["fees_to_fund"] == 2.0 and res["bad_debt"] == 0.0
    assert eng2.summary("acct").equity == 0.0 and eng2.positions("acct") == []


# ---- worked cases: portfolio-mode spreads ------------------------------------------------------

def _pm_account(book: list[tuple[str, float]], deposit: float, perp_spread: float) -> mk.Engine:
    eng = venue(portfolio=True)
    for name in eng.instruments:
        if name.endswith(("-C", "-P")):
            eng.set_liquidity(name, spread=0.02, impact=0.001)
    eng.set_liquidity(BTC, spread=perp_spread, impact=1e-4)
    eng.add_account("pm", "USDC")
    eng.set_mode("pm", "portfolio")
    eng.deposit("pm", "USDC", deposit)
    for name, qty in book:
        eng.fill("pm", name, qty, eng.mark(name), fee=0.0)
    return eng


def _close_cost(eng: mk.Engine, name: str, qty: float, spread: float, impact: float) -> float:
    return abs(qty) * eng.mark(name) * (spread + impact * abs(qty))


HEDGED = {
    # short 10 ATM calls covered by 5 OTM calls: the long calls are the hedge
    "ratio_call_spread": ([("BTC_USDC-100000-C", -10.0), ("BTC_USDC-110000-C", 5.0)],
                          20_000.0, 0.0005, "BTC_USDC-110000-C"),
    # 5 BTC long protected by 5 puts (a 1 % perpetual spread makes the put cheaper to close)
    "protective_put": ([(BTC, 5.0), ("BTC_USDC-100000-P", 5.0)], 10_000.0, 0.01,
                       "BTC_USDC-100000-P"),
}


@pytest.mark.parametrize("name", sorted(HEDGED))
def test_portfolio_plan_never_closes_the_hedge_first(name):
    """The naive choice (the leg that is cheapest to close) is the hedge, and closing
    it would raise the requirement; the plan starts with the risky leg, every step
    releases requirement (checked by executing the steps at their prices), and the
    account ends restored."""
    book, deposit, perp_spread, hedge = HEDGED[name]
    eng = _pm_account(book, deposit, perp_spread)
    s = eng.summary("pm")
    assert s.state == "liquidation"
    costs = {n: _close_cost(eng, n, q, perp_spread if n == BTC else 0.02,
                            1e-4 if n == BTC else 0.001) for n, q in book}
    assert min(costs, key=costs.get) == hedge  # the naive pick
    q_hedge = dict(book)[hedge]
    assert eng.check_order("pm", hedge, -q_hedge, eng.mark(hedge)).mm_after > s.mm
    plan = eng.plan_liquidation("pm")
    steps = position_steps(plan)
    assert steps and steps[0]["instrument"] != hedge
    # The hedge may be trimmed later, once reducing the risky leg has left it
    # over-hedged, but only by steps that release requirement (checked below).
    assert plan["restored"]
    for step in steps:
        before = eng.summary("pm").mm
        eng.fill("pm", step["instrument"], step["qty"], step["price"], fee=step["penalty"])
        assert step["released"] > 0.0
        assert eng.summary("pm").mm <= before * (1 + 1e-12)
    after = eng.summary("pm")
    assert after.equity == pytest.approx(plan["equity_after"], rel=1e-9)
    assert after.state not in BREACH


@pytest.mark.parametrize("name", sorted(HEDGED))
def test_plan_has_no_dust_steps(name):
    """BUG (exposed): the step "sized exactly to restore the target" leaves the
    planning copy a hair (~1e-11 USDC) below the target once it is re-evaluated,
    so the plan appends further "reduce" steps of about 1e-16 contracts that
    release ~1e-12 (ratio_call_spread: -9.19e-16 of the 110k call after -1.833;
    protective_put: -4.43e-16 of the put after -4.489). A random book found one
    with ``released`` = -0.0 (see test_plan_properties). A step should trade a
    real quantity (here: at least 1e-9 of the position) and release requirement."""
    book, deposit, perp_spread, _ = HEDGED[name]
    eng = _pm_account(book, deposit, perp_spread)
    plan = eng.plan_liquidation("pm")
    held = dict(book)
    for step in position_steps(plan):
        assert abs(step["qty"]) >= 1e-9 * abs(held[step["instrument"]]), plan["steps"]
        held[step["instrument"]] += step["qty"]


def test_portfolio_call_spread_is_restored_by_reducing_the_short_leg():
    """BUG (exposed): a bear call spread in portfolio mode, short 10 BTC 100k calls
    and long 10 110k calls (60 days, vol 60 %, Deribit grid), $20,000 of equity
    against MM 29,295.80. Closing either whole leg raises the requirement (the
    short leg alone: 53,230; the long leg alone: 148,060), but buying back 2.5 of
    the short calls lowers MM to 8,242 for about $545 of slippage: the account can
    be restored. The plan evaluates each candidate at its whole size (or
    ``max_step``) and drops it when that raises the requirement, so it returns no
    step at all (``restored`` False) and ``liquidate`` leaves the account in
    breach."""
    book = [("BTC_USDC-100000-C", -10.0), ("BTC_USDC-110000-C", 10.0)]
    eng = _pm_account(book, 20_000.0, 0.0005)
    s = eng.summary("pm")
    assert s.state == "liquidation" and s.equity == pytest.approx(20_000.0)
    assert s.mm == pytest.approx(29_295.80, abs=0.01)
    for name, qty in book:
        assert eng.check_order("pm", name, -qty, eng.mark(name)).mm_after > s.mm
    partial = eng.check_order("pm", "BTC_USDC-100000-C", 2.5, eng.mark("BTC_USDC-100000-C"))
    cost = _close_cost(eng, "BTC_USDC-100000-C", 2.5, 0.02, 0.001)
    assert partial.mm_after < s.equity - cost  # restorable by a partial reduction
    plan = eng.plan_liquidation("pm")
    assert plan["restored"], (plan["steps"], plan["equity_after"], plan["requirement_after"])
    assert position_steps(plan)[0]["instrument"] == "BTC_USDC-100000-C"


# ---- worked cases: isolated bankruptcy ---------------------------------------------------------

CHILD = f"alice/{BTC}"


def _isolated(*, fund: float, counterparty: bool) -> mk.Engine:
    """alice (cross, 10,000 USDC) funds an isolated BTC position with 1,000 and buys
    0.4 BTC at 100k; BTC then falls to 97k: the child's equity is -200 (bankruptcy
    price 97,500). A 0.1 % spread makes the close fill at 96,903.
    ``counterparty``: bob is short 0.4 BTC (an ADL candidate)."""
    eng = venue()
    eng.set_liquidity(BTC, spread=0.001)
    eng.add_account("alice", "USDC")
    eng.deposit("alice", "USDC", 10_000.0)
    eng.fill("alice", ETH, 1.0, 3_400.0, fee=0.0)  # the parent has risk of its own
    if counterparty:
        eng.add_account("bob", "USDC")
        eng.deposit("bob", "USDC", 20_000.0)
        eng.fill("bob", BTC, -0.4, 100_000.0, fee=0.0)
    eng.open_isolated("alice", BTC, 1_000.0)
    eng.fill(CHILD, BTC, 0.4, 100_000.0, fee=0.0)
    if fund:
        eng.fund_insurance("USDC", fund)
    eng.move_underlying("BTC", 97_000.0)
    return eng


def _parent(eng: mk.Engine) -> tuple:
    s = eng.summary("alice")
    return (s.equity, s.mm, s.im, eng.balance("alice", "USDC"), repr(eng.positions("alice")))


def test_isolated_bankruptcy_paid_by_the_fund():
    eng = _isolated(fund=1_000.0, counterparty=True)
    s = eng.summary(CHILD)
    assert (s.equity, s.state) == (-200.0, "bankrupt")
    assert eng.bankruptcy_price(CHILD, BTC) == pytest.approx(97_500.0, rel=1e-12)
    parent, total = _parent(eng), total_value(eng)
    res = eng.liquidate(CHILD)
    debt = 200.0 + 0.4 * 97_000.0 * 0.001  # the fall plus the spread
    assert res["bad_debt"] == pytest.approx(debt, rel=1e-12)
    assert res["fund_paid"] == pytest.approx(res["bad_debt"], rel=1e-15)
    assert (res["adl_volume"], res["socialized"], res["adl_accounts"]) == (0.0, 0.0, [])
    assert eng.insurance_fund("USDC") == pytest.approx(1_000.0 - debt, rel=1e-12)
    assert eng.positions(CHILD) == [] and eng.summary(CHILD).equity == pytest.approx(0, abs=1e-9)
    assert _parent(eng) == parent
    assert eng.positions("bob")[0]["size"] == -0.4  # not deleveraged
    assert total_value(eng) == pytest.approx(total, rel=1e-12)


def test_isolated_bankruptcy_without_fund_is_deleveraged_at_the_bankruptcy_price():
    eng = _isolated(fund=0.0, counterparty=True)
    parent, total = _parent(eng), total_value(eng)
    bob = eng.summary("bob").equity
    res = eng.liquidate(CHILD)
    assert res["adl_accounts"] == ["bob"] and res["adl_volume"] == pytest.approx(0.4)
    assert res["adl_notional"] == pytest.approx(0.4 * 97_500.0, rel=1e-12)
    assert (res["bad_debt"], res["fund_paid"], res["socialized"]) == (0.0, 0.0, 0.0)
    assert eng.positions(CHILD) == [] and eng.summary(CHILD).equity == pytest.approx(0, abs=1e-9)
    # bob bought back at 97,500 instead of the 97,000 mark: he carries the 200
    assert eng.positions("bob") == []
    assert eng.summary("bob").equity == pytest.approx(bob - 200.0, rel=1e-12)
    assert _parent(eng) == parent
    assert eng.socialized("USDC") == 0.0 and eng.insurance_fund("USDC") == 0.0
    assert total_value(eng) == pytest.approx(total, rel=1e-12)


def test_isolated_bankruptcy_without_fund_or_counterparty_is_socialized():
    eng = _isolated(fund=0.0, counterparty=False)
    parent, total = _parent(eng), total_value(eng)
    res = eng.liquidate(CHILD)
    debt = 200.0 + 0.4 * 97_000.0 * 0.001
    assert res["socialized"] == pytest.approx(debt, rel=1e-12)
    assert res["adl_volume"] == 0.0 and res["fund_paid"] == 0.0
    assert eng.socialized("USDC") == pytest.approx(debt, rel=1e-12)
    assert eng.summary(CHILD).equity == pytest.approx(0.0, abs=1e-9)
    assert _parent(eng) == parent
    assert total_value(eng) == pytest.approx(total, rel=1e-12)


def test_fund_too_small_goes_to_adl():
    """The fund (50) cannot pay 238.8: the step is deleveraged against bob instead
    (the fund is kept)."""
    eng = _isolated(fund=50.0, counterparty=True)
    res = eng.liquidate(CHILD)
    assert res["adl_accounts"] == ["bob"] and res["fund_paid"] == 0.0
    assert eng.insurance_fund("USDC") == 50.0


def test_restored_plan_executes_out_of_liquidation():
    """BUG (exposed): 3 short BTC 90k puts (cross margin), 21,627.25 USDC, impact
    1e-5 per contract, fee 0.5 %, BTC 100k -> 110,937.5: equity 28,906.60 < MM
    32,805.10. The plan buys back 0.35694135567 puts "sized exactly to restore
    the target" and reports ``restored`` with equity_after = requirement_after =
    28901.930581691042. Executed (liquidate(), or fills at the step's price with
    the penalty as fee) the account has equity 28901.930581691035 against MM
    28901.930581691042: 7e-12 short, still "liquidation". The plan computes the
    penalty's effect in a different order (cash, then fee) than execution (cash
    - fee), and a step sized to the exact boundary falls on the wrong side of it."""
    eng = venue(options=True)
    eng.add_account("u", "USDC")
    eng.deposit("u", "USDC", 21_627.25)
    eng.fill("u", PUT, -3.0, eng.mark(PUT), fee=0.0)
    eng.set_liquidity(PUT, impact=1e-5)
    eng.set_liquidation_params(fee_rate=0.005)
    eng.move_underlying("BTC", 110_937.5)
    s = eng.summary("u")
    assert s.state == "liquidation"
    plan = eng.plan_liquidation("u")
    assert plan["restored"] and len(plan["steps"]) == 1
    eng.liquidate("u")
    after = eng.summary("u")
    assert after.state not in BREACH, (repr(after.equity), repr(after.mm), plan["equity_after"])


def _bankrupt_pair(*, fund: float = 0.0, hedge: str = ETH, hedge_qty: float = 10.0) -> mk.Engine:
    """500 USDC, 1 BTC long bought at 100k plus ``hedge_qty`` of ``hedge`` bought at
    its mark; BTC then falls to 75k: equity -24,500 (less the hedge's gain)."""
    eng = venue(options=True)
    eng.add_account("u", "USDC")
    eng.deposit("u", "USDC", 500.0)
    eng.fill("u", BTC, 1.0, 100_000.0, fee=0.0)
    eng.fill("u", hedge, hedge_qty, eng.mark(hedge), fee=0.0)
    if fund:
        eng.fund_insurance("USDC", fund)
    eng.move_underlying("BTC", 75_000.0)
    return eng


@pytest.mark.parametrize("fund,paid,socialized", [(0.0, 0.0, 24_500.0),
                                                   (10_000.0, 10_000.0, 14_500.0)])
def test_bad_debt_is_counted_once(fund, paid, socialized):
    """BUG (exposed): 1 BTC and 10 ETH long, equity -24,500 after BTC falls to 75k
    (no slippage, no counterparty). The plan closes BTC, then ETH. The fund pays
    ``paid``, ``socialized`` is written off, and the account's negative equity
    after the closes was 24,500, but ``bad_debt`` reports 49,000 (no fund) or
    39,000 (fund 10,000): liquidate() adds the whole remaining deficit again after
    every step, so a deficit the fund did not pay is counted once per later step."""
    eng = _bankrupt_pair(fund=fund)
    assert eng.summary("u").equity == -24_500.0
    plan = eng.plan_liquidation("u")
    assert [(s["kind"], s["instrument"]) for s in plan["steps"]] == [("close", BTC),
                                                                     ("close", ETH)]
    res = eng.liquidate("u")
    assert res["fund_paid"] == paid and res["socialized"] == socialized
    assert eng.summary("u").equity == 0.0 and eng.positions("u") == []
    assert res["bad_debt"] == 24_500.0, res


def test_bankrupt_account_is_not_left_with_debt_and_a_position():
    """BUG (exposed): 1 BTC long plus 1 BTC 90k put (bought at 5,041.17), 500 USDC,
    BTC 100k -> 75k: equity -11,928.44, the put now worth about 15,570. The plan
    closes the perpetual (and nothing else: a long option has no requirement to
    release, so it is never a candidate) and reports ``restored`` False. With an
    empty fund and no counterparty, liquidate() leaves the account bankrupt with
    equity -11,928.44 *and* the put; nothing is socialised (write-off needs a flat
    account) though the docstring says "what is left is socialised", and the
    result's ``bad_debt`` is 11,928.44 counted once per step. A bankrupt account
    should end at zero equity: its remaining positions closed (selling the put
    would not change the deficit) or its debt written off."""
    eng = _bankrupt_pair(hedge=PUT, hedge_qty=1.0)
    s = eng.summary("u")
    assert s.state == "bankrupt" and s.equity == pytest.approx(-11_928.44, abs=0.01)
    plan = eng.plan_liquidation("u")
    assert next(s_["instrument"] for s_ in position_steps(plan)) == BTC
    total = total_value(eng)
    res = eng.liquidate("u")
    assert total_value(eng) == pytest.approx(total, rel=1e-12)  # conserved all the same
    after = eng.summary("u")
    assert after.equity >= 0.0, (after.equity, eng.positions("u"), res)


def test_cancelled_orders_leave_no_residue():
    """BUG (exposed, order bookkeeping): two asks of 1 and 1.1869181219625815 on a
    short BTC position, both cancelled with cancel_order(): the position keeps
    ``asks`` = 2.220446049250313e-16 (the float residue of adding then
    subtracting the sizes), so after closing it the account still lists a size-0
    position and is not flat. liquidate() itself zeroes bids/asks exactly."""
    eng = venue()
    eng.add_account("u", "USDC")
    eng.deposit("u", "USDC", 50_000.0)
    eng.fill("u", BTC, -1.0, 100_000.0, fee=0.0)
    ids = [eng.place_order("u", BTC, q, 100_000.0) for q in (-1.0, -1.1869181219625815)]
    for oid in ids:
        eng.cancel_order(oid)
    eng.fill("u", BTC, 1.0, 100_000.0, fee=0.0)
    assert eng.positions("u") == [], eng.positions("u")


# ---- worked cases: ADL ranking -----------------------------------------------------------------

ADL_BOOK = [  # name, BTC size, entry, deposit
    ("a", -1.0, 110_000.0, 20_000.0),   # +10k, pnl% 1/11,  equity 30k,  lev 10/3
    ("b", -2.0, 105_000.0, 50_000.0),   # +10k, pnl% 1/21,  equity 60k,  lev 10/3
    ("c", -1.0, 120_000.0, 100_000.0),  # +20k, pnl% 1/6,   equity 120k, lev 5/6
    ("d", -1.0, 95_000.0, 10_000.0),    # -5k,  pnl% -1/19, equity 5k,   lev 20
    ("e", -1.0, 95_000.0, 40_000.0),    # -5k,  pnl% -1/19, equity 35k,  lev 20/7
    ("f", -1.0, 110_000.0, 20_000.0),   # as a: a tie, by id
    ("g", 1.0, 100_000.0, 10_000.0),    # long: same side as the liquidated
]


def test_adl_ranking_by_hand():
    """Profitable shorts by P&L% x leverage: a 1/11 x 10/3 = 0.303 (and its twin f),
    b 1/21 x 10/3 = 0.159, c 1/6 x 5/6 = 0.139; then losers by P&L% / leverage:
    d -1/19 / 20 = -0.0026, e -1/19 / (20/7) = -0.018."""
    eng = venue()
    for name, size, entry, dep in ADL_BOOK:
        eng.add_account(name, "USDC")
        eng.deposit(name, "USDC", dep)
        eng.fill(name, BTC, size, entry, fee=0.0)
    eng.add_account("h", "USDC")
    eng.deposit("h", "USDC", 1_000.0)
    eng.fill("h", ETH, -1.0, 4_000.0, fee=0.0)  # another instrument
    keys = {}
    for name, size, entry, dep in ADL_BOOK[:-1]:
        pnl = size * (100_000.0 - entry)
        pct = pnl / (abs(size) * entry)
        lev = abs(size) * 100_000.0 / (dep + pnl)
        keys[name] = pct * lev if pct > 0 else pct / lev
    want = sorted(keys, key=lambda n: (-keys[n], n))
    assert want == ["a", "f", "b", "c", "d", "e"]
    assert eng.adl_ranking(BTC, "long") == want
    assert eng.adl_ranking(BTC, "short") == ["g"]
    assert eng.adl_ranking(ETH, "short") == []
    assert eng.adl_ranking(ETH, "long") == ["h"]
    with pytest.raises(ValueError):
        eng.adl_ranking(BTC, "both")


def test_adl_follows_the_ranking_and_stops_when_covered():
    """A bankrupt 1.5 BTC long is taken by a (1 BTC), then half of f's."""
    eng = venue()
    for name, size, entry, dep in ADL_BOOK:
        eng.add_account(name, "USDC")
        eng.deposit(name, "USDC", dep)
        eng.fill(name, BTC, size, entry, fee=0.0)
    eng.add_account("z", "USDC")
    eng.deposit("z", "USDC", 1_000.0)
    eng.fill("z", BTC, 1.5, 101_000.0, fee=0.0)  # equity 1000 - 1500 < 0
    total = total_value(eng)
    bp = eng.bankruptcy_price("z", BTC)
    assert bp == pytest.approx(101_000.0 - 1_000.0 / 1.5, rel=1e-12)
    res = eng.liquidate("z")
    assert res["adl_accounts"] == ["a", "f"]
    assert res["adl_volume"] == pytest.approx(1.5)
    assert eng.positions("a") == []
    assert eng.positions("f")[0]["size"] == pytest.approx(-0.5)
    assert [eng.positions(n)[0]["size"] for n in "bcde"] == [-2.0, -1.0, -1.0, -1.0]
    assert eng.summary("z").equity == pytest.approx(0.0, abs=1e-8)
    assert total_value(eng) == pytest.approx(total, rel=1e-12)


# ---- random books ------------------------------------------------------------------------------

INSTRUMENTS = (BTC, ETH, PUT)
SIZES = {BTC: (0.01, 3.0), ETH: (0.1, 40.0), PUT: (0.1, 5.0)}


@st.composite
def books(draw, *, directional: bool = False, n_min: int = 1, n_max: int = 6,
          cents: bool = False):
    """Accounts (deposit, positions, resting orders), liquidity, liquidation
    parameters, a fund, price moves and the USDC quantum (0, or with ``cents``
    0 or 0.01). ``directional``: perpetuals only, every BTC position long."""
    names = (BTC, ETH) if directional else INSTRUMENTS
    n = draw(st.integers(n_min, n_max))
    accounts = []
    for _ in range(n):
        held = draw(st.lists(st.sampled_from(names), min_size=1, max_size=len(names),
                             unique=True))
        pos = []
        for name in held:
            lo, hi = SIZES[name]
            size = draw(st.floats(lo, hi))
            side = 1.0 if (directional and name == BTC) else draw(st.sampled_from([1.0, -1.0]))
            pos.append((name, side * size))
        orders = draw(st.lists(st.tuples(st.sampled_from(names), st.floats(-2.0, 2.0).filter(
            lambda q: abs(q) > 0.01)), max_size=2))
        accounts.append((draw(st.floats(500.0, 40_000.0)), pos, orders))
    liquidity = {name: (draw(st.sampled_from([0.0, 0.0005, 0.005, 0.02])),
                        draw(st.sampled_from([0.0, 1e-5, 1e-3])),
                        draw(st.sampled_from([0.0, 0.0, 0.5, 2.0])))
                 for name in INSTRUMENTS}
    params = dict(target=draw(st.sampled_from(["maintenance", "maintenance", "initial"])),
                  buffer=draw(st.sampled_from([0.0, 0.0, 0.25])),
                  fee_rate=draw(st.sampled_from([0.0, 0.005, 0.02, 0.3])))
    fund = draw(st.sampled_from([0.0, 0.0, 500.0, 1e6]))
    moves = {"BTC": draw(st.floats(0.75, 1.25)), "ETH": draw(st.floats(0.8, 1.2))}
    quantum = draw(st.sampled_from([0.0, 0.01])) if cents else 0.0
    return accounts, liquidity, params, fund, moves, quantum


def build(book, *, balanced: bool = False) -> tuple[mk.Engine, dict]:
    """The book on :func:`venue`; returns (engine, order ids per account). With
    ``balanced`` a well-funded market maker holds the opposite of the net book."""
    accounts, liquidity, params, fund, moves, quantum = book
    eng = venue(options=True, quantum=quantum)
    orders: dict[str, list[tuple[int, str]]] = {}
    net = dict.fromkeys(INSTRUMENTS, 0.0)
    for k, (deposit, pos, resting) in enumerate(accounts):
        name = f"u{k}"
        eng.add_account(name, "USDC")
        eng.deposit(name, "USDC", deposit)
        for ins, size in pos:
            eng.fill(name, ins, size, eng.mark(ins), fee=0.0)
            net[ins] += size
        orders[name] = [(eng.place_order(name, ins, q, eng.mark(ins)), ins)
                        for ins, q in resting if any(ins == p for p, _ in pos)]
    if balanced:
        eng.add_account("maker", "USDC")
        eng.deposit("maker", "USDC", 1e9)
        for ins, size in net.items():
            if size:
                eng.fill("maker", ins, -size, eng.mark(ins), fee=0.0)
    for ins, (spread, impact, max_step) in liquidity.items():
        eng.set_liquidity(ins, spread=spread, impact=impact, max_step=max_step)
    eng.set_liquidation_params(**params)
    if fund:
        eng.fund_insurance("USDC", fund)
    for u, factor in moves.items():
        eng.move_underlying(u, eng.price(u) * factor)
    return eng, orders


def _check_plan_shape(eng: mk.Engine, plan: dict, liquidity: dict) -> None:
    kinds = [s["kind"] for s in plan["steps"]]
    n_cancel = kinds.count("cancel_orders")
    assert kinds[:n_cancel] == ["cancel_orders"] * n_cancel  # cancels first
    for s in plan["steps"]:
        if s["kind"] == "cancel_orders":
            assert s["released"] >= 0.0 and s["qty"] == 0.0
            continue
        assert s["kind"] in ("reduce", "close")
        if "bankrupt" in s["reason"]:  # flattening a bankrupt account: sold for what it brings
            assert s["released"] >= 0.0, s
        else:
            assert s["released"] > 0.0, s  # never a step that raises the requirement
        assert s["penalty"] >= 0.0 and s["slippage"] >= 0.0
        max_step = liquidity[s["instrument"]][2]
        if max_step > 0:
            assert abs(s["qty"]) <= max_step
        assert s["reason"]


NO_COST = {BTC: (0.0, 0.0, 0.0), ETH: (0.0, 0.0, 0.0), PUT: (0.0, 0.0, 0.0)}
MAINTENANCE = {"target": "maintenance", "buffer": 0.0, "fee_rate": 0.0}
# Books found by the properties below that show a defect (kept as explicit examples).
DUST_BOOK = (  # a trailing "reduce" of 1.1e-16 puts with released -0.0
    [(13_427.522208384207, [(BTC, -2.697346111835781), (ETH, 4.0234375),
                            (PUT, -3.0707329409563044)], [])]
    + [(500.0, [(BTC, 1.0)], [])] * 4,
    {**NO_COST, PUT: (0.0005, 0.0, 0.0)}, {**MAINTENANCE, "fee_rate": 0.02}, 0.0,
    {"BTC": 0.75, "ETH": 0.9201623602647053}, 0.0)
BOUNDARY_BOOK = (  # restored by the plan, 7e-12 short of MM when executed
    [(21_627.25, [(PUT, -3.0)], [])], {**NO_COST, PUT: (0.0, 1e-5, 0.0)},
    {**MAINTENANCE, "fee_rate": 0.005}, 0.0, {"BTC": 1.109375, "ETH": 1.0}, 0.0)
DEBT_BOOKS = [  # bankrupt with several positions, empty fund, no counterparty
    ([(500.0, [(BTC, 1.0), (ETH, 1.0)], [])], NO_COST, MAINTENANCE, 0.0,
     {"BTC": 0.75, "ETH": 1.0}, 0.0),
    ([(500.0, [(BTC, 1.0), (ETH, 1.0), (PUT, 1.0)], [])], NO_COST, MAINTENANCE, 0.0,
     {"BTC": 0.75, "ETH": 1.0}, 0.0),
]


# A penalty applied apart from its fill left the plan's equity one ulp off a
# replay's (found by hypothesis): plans apply it as a fill with that fee does.
REPLAY_BOOK = (
    [(500.0, [("BTC_USDC-PERPETUAL", 0.25), ("BTC_USDC-90000-P", -1.0),
              ("ETH_USDC-PERPETUAL", 4.0)], []),
     (500.0, [("BTC_USDC-PERPETUAL", 1.0)], [])],
    {"BTC_USDC-PERPETUAL": (0.0, 0.0, 0.0), "ETH_USDC-PERPETUAL": (0.0, 0.0, 0.0),
     "BTC_USDC-90000-P": (0.0, 0.0, 0.0)},
    {"target": "maintenance", "buffer": 0.0, "fee_rate": 0.005}, 0.0,
    {"BTC": 1.1875, "ETH": 0.875}, 0.0)


@SETTINGS
@given(books(cents=True))
@example(DUST_BOOK)
@example(BOUNDARY_BOOK)
@example(REPLAY_BOOK)
def test_plan_properties(book):
    """plan_all is exactly the accounts in breach; plans are deterministic, cancel
    orders first, respect max_step, never raise the requirement; executed at their
    prices (fills with the penalty as fee) they leave the account at its target or
    flat, as ``restored`` says, with the equity the plan predicted."""
    eng, orders = build(book)
    liquidity, params = book[1], book[2]
    target = params["target"]
    in_breach = sorted(a for a in eng.accounts if eng.summary(a).state in BREACH)
    plans = eng.plan_all()
    assert [p["account"] for p in plans] == in_breach
    for plan in plans:
        name = plan["account"]
        assert eng.plan_liquidation(name) == plan  # deterministic, batch = single
        assert eng.plan_liquidation(name) == plan
        _check_plan_shape(eng, plan, liquidity)
        replay = clone(eng)
        for step in plan["steps"]:
            before = requirement(replay, name, target)
            if step["kind"] == "cancel_orders":
                for oid, ins in orders[name]:
                    if ins == step["instrument"]:
                        replay.cancel_order(oid)
            else:
                replay.fill(name, step["instrument"], step["qty"], step["price"],
                            fee=step["penalty"])
            assert requirement(replay, name, target) <= before * (1 + 1e-12) + 1e-9
        s = replay.summary(name)
        scale_ = max(1.0, abs(plan["equity_before"]), plan["requirement_before"])
        assert s.equity == pytest.approx(plan["equity_after"], abs=1e-9 * scale_ + book[5])
        if plan["restored"]:  # at or above the target, as summary() rounds, or flat
            flat = all(p["size"] == 0.0 for p in replay.positions(name))
            goal = s.mm * (1 + params["buffer"]) if target == "maintenance" else s.im
            assert flat or s.equity >= goal - 1e-9 * scale_, (s.equity, goal)
            assert flat or s.state not in BREACH, (s.equity, s.mm, s.state)


@SETTINGS
@given(books())
def test_liquidation_conserves_value(book):
    """Every liquidate() of every account in breach leaves the total value unchanged
    (1e-9 relative), and the fund and the socialized ledger move by the result's
    figures."""
    eng, _ = build(book)
    for plan in eng.plan_all():
        name = plan["account"]
        before, size = total_value(eng), scale(eng)
        fund, soc = eng.insurance_fund("USDC"), eng.socialized("USDC")
        res = eng.liquidate(name)
        assert total_value(eng) == pytest.approx(before, abs=1e-9 * size)
        assert eng.insurance_fund("USDC") == pytest.approx(
            fund + res["fees_to_fund"] - res["fund_paid"], abs=1e-9 * size)
        assert eng.socialized("USDC") == pytest.approx(soc + res["socialized"], abs=1e-9 * size)
        assert min(res["fees_to_fund"], res["bad_debt"], res["fund_paid"], res["adl_volume"],
                   res["socialized"]) >= 0.0
        assert res["fund_paid"] <= fund + res["fees_to_fund"] + 1e-9 * size


@SETTINGS
@given(books())
@example(DEBT_BOOKS[0])
@example(DEBT_BOOKS[1])
def test_liquidation_leaves_no_debt_behind(book):
    """After liquidate() the account is flat or out of breach (when its plan is
    ``restored``) and never keeps negative equity: bad debt is paid by the fund,
    deleveraged or socialised ("what is left is socialised"); ``bad_debt`` is the
    negative equity the closes left, i.e. what the fund paid plus what was
    socialised (each deficit counted once)."""
    eng, _ = build(book)
    for plan in eng.plan_all():
        name = plan["account"]
        size = scale(eng)
        res = eng.liquidate(name)
        s = eng.summary(name)
        assert s.equity >= -1e-9 * size, (name, s.equity, eng.positions(name), res)
        assert res["bad_debt"] == pytest.approx(res["fund_paid"] + res["socialized"],
                                                abs=1e-9 * size), res
        if res["plan"]["restored"] and not res["adl_volume"]:
            assert eng.positions(name) == [] or s.state not in BREACH, (s.equity, s.mm)


@SETTINGS
@given(size=st.floats(0.05, 3.0), side=st.sampled_from([1.0, -1.0]),
       move=st.floats(0.8, 1.2), deposit=st.floats(100.0, 20_000.0),
       spread=st.sampled_from([0.0, 0.001, 0.01, 0.05]), fee_rate=st.floats(0.0, 0.9))
# the fee capped on predicted equity left 2.8e-14 of bad debt here (found by hypothesis)
@example(size=0.47806414147758736, side=-1.0, move=0.99609375, deposit=100.0, spread=0.0,
         fee_rate=0.5)
def test_penalty_never_makes_an_account_bankrupt(size, side, move, deposit, spread, fee_rate):
    """One position, closed in one step or reduced: the fee is min(rate x notional,
    equity left after the fill); if the fill alone leaves equity >= 0 there is no
    bad debt and the account keeps equity >= 0."""
    fee_rate = min(fee_rate, 0.9)
    eng = venue()
    eng.add_account("u", "USDC")
    eng.deposit("u", "USDC", deposit)
    eng.fill("u", BTC, side * size, 100_000.0, fee=0.0)
    eng.set_liquidity(BTC, spread=spread)
    eng.set_liquidation_params(fee_rate=fee_rate)
    eng.move_underlying("BTC", 100_000.0 * move)
    plan = eng.plan_liquidation("u")
    steps = position_steps(plan)
    assume(len(steps) == 1)
    (step,) = steps
    left = plan["equity_before"] - step["slippage"]
    notional = abs(step["qty"]) * step["price"]
    assert step["penalty"] == pytest.approx(min(fee_rate * notional, max(0.0, left)),
                                            rel=1e-9, abs=1e-9)
    res = eng.liquidate("u")
    if left >= 0:
        assert res["bad_debt"] == 0.0
        assert eng.summary("u").equity >= -1e-9
    else:
        assert res["fees_to_fund"] == 0.0
        assert res["bad_debt"] == pytest.approx(-left, rel=1e-9)


@SETTINGS
@given(books(n_max=3))
def test_bankruptcy_price_closes_to_zero_equity(book):
    """Filling the whole position at bankruptcy_price leaves equity 0 (to the
    rounding of the account's figures); NaN exactly when no positive price does
    (linear instruments: p = mark - equity / (size x contract size) <= 0)."""
    eng, orders = build(book)
    for name in eng.accounts:
        for oid, _ in orders.get(name, []):
            eng.cancel_order(oid)
        for pos in eng.positions(name):
            ins, size = pos["instrument"], pos["size"]
            bp = eng.bankruptcy_price(name, ins)
            equity = eng.summary(name).equity
            want = eng.mark(ins) - equity / size
            tol = 1e-9 * (abs(equity) + sum(abs(p["size"]) * eng.mark(p["instrument"])
                                            for p in eng.positions(name)) + 1.0)
            if want <= 0:
                assert math.isnan(bp) or bp * abs(size) <= tol
                continue
            assert bp == pytest.approx(want, rel=1e-9, abs=tol / abs(size))
            twin = clone(eng)
            twin.fill(name, ins, -size, bp, fee=0.0)
            assert abs(twin.summary(name).equity) <= tol
    assert math.isnan(eng.bankruptcy_price(eng.accounts[0], "BTC_USDC-110000-C"))


# ---- cascades ----------------------------------------------------------------------------------

def on_btc(instrument: str) -> bool:
    """Instruments on the BTC underlying (the perpetual and the options; contract
    size 1, so contracts are units of the underlying)."""
    return instrument.startswith("BTC")


def _btc_net(eng: mk.Engine) -> dict[str, float]:
    """The accounts' net position per BTC instrument."""
    net: dict[str, float] = {}
    for a in eng.accounts:
        for p in eng.positions(a):
            if on_btc(p["instrument"]):
                net[p["instrument"]] = net.get(p["instrument"], 0.0) + p["size"]
    return net


def _move(eng: mk.Engine, price: float) -> None:
    """move_underlying, checking that only the accounts' net positions are revalued."""
    before, held = total_value(eng), _btc_net(eng)
    marks = {n: eng.mark(n) for n in held}
    eng.move_underlying("BTC", price)
    want = before + sum(q * (eng.mark(n) - marks[n]) for n, q in held.items())
    assert total_value(eng) == pytest.approx(want, abs=1e-9 * scale(eng))


def _replay(eng: mk.Engine, shock: float, impact: float, rounds: list[dict]) -> list[dict]:
    """The documented cascade by hand with individual liquidate() calls, in step
    with ``rounds`` (the cascade's own report): each round's figures are summed
    from the liquidate() results; value is conserved around every liquidation;
    the price after a round is ``p (1 - impact x units sold to the market)``, the
    units read from the accounts' positions (checked on rounds without ADL; the
    replay then moves to the reported price to stay in step)."""
    _move(eng, eng.price("BTC") * (1 + shock))
    out = []
    for reported in rounds:
        cr = dict(round=reported["round"], liquidated=0, volume=0.0, price=0.0, bad_debt=0.0,
                  fund=0.0, adl_volume=0.0, socialized=0.0)
        held = _btc_net(eng)
        for plan in eng.plan_all():
            before, size = total_value(eng), scale(eng)
            res = eng.liquidate(plan["account"])
            assert total_value(eng) == pytest.approx(before, abs=1e-9 * size)
            cr["liquidated"] += 1
            # only what reached the market counts (deleveraged volume does not)
            for name, qty in res["market_fills"]:
                if on_btc(name):
                    cr["volume"] += abs(qty)
            cr["bad_debt"] += res["bad_debt"]
            cr["adl_volume"] += res["adl_notional"]
            cr["socialized"] += res["socialized"]
        after = _btc_net(eng)  # what left the accounts went to the market
        sold = sum(held.values()) - sum(after.values())
        p = eng.price("BTC")
        moved = max(p * (1 - impact * sold), p * 1e-6) if cr["liquidated"] else p
        if cr["adl_volume"] == 0.0:
            assert reported["price"] == pytest.approx(moved, rel=1e-12, abs=1e-9), (cr, reported)
        if reported["price"] != p:
            _move(eng, reported["price"])
        cr["price"] = eng.price("BTC")
        cr["fund"] = eng.insurance_fund("USDC")
        out.append(cr)
    return out


@FEW
@given(books(n_min=2, n_max=6), st.sampled_from([-0.3, -0.15, 0.15, 0.3]),
       st.sampled_from([0.0, 1e-3, 0.02]))
def test_cascade_matches_a_replay(book, shock, impact):
    """Each round's figures are the sums of the individual liquidate() results
    (replayed on a copy); rounds stop at a fixed point (or max_rounds): the last
    round liquidated nothing or traded nothing, and then nothing is left to
    trade on the underlying."""
    eng, _ = build(book)
    twin = clone(eng)
    rounds = eng.cascade("BTC", shock, impact=impact, max_rounds=8)
    assert [r["round"] for r in rounds] == list(range(1, len(rounds) + 1))
    replay = _replay(twin, shock, impact, rounds)
    for got, want in zip(rounds, replay, strict=True):
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-9), (key, got, want)
    last = rounds[-1]
    for r in rounds[:-1]:
        assert r["liquidated"] > 0 and (r["volume"] > 0 or r["adl_volume"] > 0)
    if len(rounds) < 8:
        assert last["liquidated"] == 0 or (last["volume"] == 0 and last["adl_volume"] == 0)
        for plan in eng.plan_all():  # nothing left that trades the underlying
            assert not any(on_btc(s["instrument"]) for s in position_steps(plan)), plan


@FEW
@given(books(directional=True, n_min=1, n_max=6), st.sampled_from([-0.3, -0.15, 0.15, 0.3]),
       st.sampled_from([0.0, 1e-3, 0.02]))
def test_cascade_prices_move_in_the_shock_direction(book, shock, impact):
    """Every BTC position is on the losing side of the shock (long for a fall,
    short for a rise): liquidations only ever sell into a fall and buy into a
    rise, so with impact > 0 the price moves further in the shock's direction
    round after round, and never without impact. (A round whose move,
    impact x volume as a fraction of the price, is below the price's last bits
    leaves it where it was: the cascade converges geometrically, its last rounds
    trading ever smaller remainders.)"""
    if shock > 0:  # make every BTC position short
        accounts = [(d, [(n, -abs(q) if n == BTC else q) for n, q in pos], orders)
                    for d, pos, orders in book[0]]
        book = (accounts, *book[1:])
    eng, _ = build(book)
    start = eng.price("BTC") * (1 + shock)
    rounds = eng.cascade("BTC", shock, impact=impact, max_rounds=8)
    prices = [start] + [r["price"] for r in rounds]
    direction = 1.0 if shock > 0 else -1.0
    for a, b in itertools.pairwise(prices):
        assert direction * (b - a) >= 0.0, prices
    if impact == 0.0:
        assert prices == pytest.approx([start] * len(prices), rel=1e-15)
    for r, (a, b) in zip(rounds, itertools.pairwise(prices), strict=True):
        if impact * r["volume"] > 1e-12 and r["adl_volume"] == 0:
            assert direction * (b - a) > 0.0


@FEW
@given(books(n_min=2, n_max=6), st.sampled_from([-0.3, -0.1, 0.1, 0.3]))
def test_cascade_conserves_value_on_a_balanced_book(book, shock):
    """A market maker holds the other side of every position: the shock moves value
    only between accounts, and without impact nothing moves afterwards, so the
    total over accounts, fund, market and socialized losses is unchanged."""
    eng, _ = build(book, balanced=True)
    before, size = total_value(eng), scale(eng)
    eng.cascade("BTC", shock, impact=0.0)
    assert total_value(eng) == pytest.approx(before, abs=1e-9 * size)


def test_cascade_stops_after_one_quiet_round():
    eng = venue()
    eng.add_account("safe", "USDC")
    eng.deposit("safe", "USDC", 1e6)
    eng.fill("safe", BTC, 1.0, 100_000.0, fee=0.0)
    rounds = eng.cascade("BTC", -0.2, impact=0.01)
    assert rounds == [dict(round=1, liquidated=0, volume=0.0, price=80_000.0, bad_debt=0.0,
                           fund=0.0, adl_volume=0.0, socialized=0.0, spot_transfers=0,
                           spot_value=0.0)]


def test_cascade_worked_example():
    """Two 1 BTC longs bought at 100k, with 10,000 and 4,999 USDC, a 5 % fall and
    impact 1 % per BTC sold: at 95,000 the second has equity -1 (bankrupt), is
    closed (the fund pays 1) and its 1 BTC sold takes the price to 94,050, where
    the first (equity 4,050 against MM 0.01005 x 94,050 = 945.2) is fine: round 2
    liquidates nothing."""
    eng = venue()
    eng.add_account("x10", "USDC")
    eng.deposit("x10", "USDC", 10_000.0)
    eng.fill("x10", BTC, 1.0, 100_000.0, fee=0.0)
    eng.add_account("x20", "USDC")
    eng.deposit("x20", "USDC", 4_999.0)
    eng.fill("x20", BTC, 1.0, 100_000.0, fee=0.0)
    eng.fund_insurance("USDC", 10.0)
    assert not any(p["needs_spot"] for p in clone(eng).plan_all())
    rounds = eng.cascade("BTC", -0.05, impact=0.01)
    assert len(rounds) == 2
    r1, r2 = rounds
    for r in rounds:  # no borrows: no spot transfers
        assert (r["spot_transfers"], r["spot_value"]) == (0, 0.0)
    assert (r1["round"], r1["liquidated"], r1["volume"]) == (1, 1, 1.0)
    assert r1["price"] == pytest.approx(94_050.0, rel=1e-12)
    assert r1["bad_debt"] == pytest.approx(1.0, rel=1e-9)
    assert r1["fund"] == pytest.approx(9.0, rel=1e-9)
    assert (r1["adl_volume"], r1["socialized"]) == (0.0, 0.0)
    assert (r2["liquidated"], r2["volume"], r2["price"]) == (0, 0.0, r1["price"])
    assert eng.positions("x20") == [] and eng.positions("x10")[0]["size"] == 1.0
    assert eng.price("BTC") == r1["price"]
    assert eng.mark(BTC) == pytest.approx(94_050.0, rel=1e-12)


def test_cascade_price_impact_counts_only_what_reaches_the_market():
    """BUG (exposed): a bankrupt 1 BTC long (2,000 USDC at 100k, then -5 %) with an
    empty fund is taken entirely by ADL against the short at its bankruptcy price
    (98,000): nothing is sold to the market. ``cascade`` still counts the step's
    whole quantity as "net units sold", so with impact 1 % the price falls from
    95,000 to 94,050 after round 1 although no liquidation order reached the
    book. The ADL'd part should not move the price (it does, by 1 % x 1 BTC)."""
    eng = venue()
    eng.add_account("long", "USDC")
    eng.deposit("long", "USDC", 2_000.0)
    eng.fill("long", BTC, 1.0, 100_000.0, fee=0.0)
    eng.add_account("short", "USDC")
    eng.deposit("short", "USDC", 1e6)
    eng.fill("short", BTC, -1.0, 100_000.0, fee=0.0)
    rounds = eng.cascade("BTC", -0.05, impact=0.01)
    assert rounds[0]["liquidated"] == 1
    assert rounds[0]["adl_volume"] == pytest.approx(98_000.0)  # notional, all of it
    assert eng.market_pnl("USDC") == 0.0  # the market took nothing
    assert rounds[0]["price"] == pytest.approx(95_000.0, rel=1e-12), rounds


# ---- persistence -------------------------------------------------------------------------------

def test_persistence_keeps_liquidity_params_and_ledgers(tmp_path):
    import pickle

    eng = _isolated(fund=100.0, counterparty=False)
    eng.set_liquidity(BTC, spread=0.003, impact=2e-4, max_step=0.25)
    eng.set_liquidity(ETH, spread=0.01)
    eng.set_liquidation_params(target="initial", buffer=0.1, fee_rate=0.015)
    eng.liquidate(CHILD)  # market gain, fund payment, socialized loss
    assert eng.market_pnl("USDC") > 0 and eng.socialized("USDC") > 0
    eng.add_account("carol", "USDC")
    eng.deposit("carol", "USDC", 3_000.0)
    eng.fill("carol", BTC, 1.0, 97_000.0, fee=0.0)
    eng.place_order("carol", BTC, 0.5, 96_000.0)
    path = tmp_path / "state.bin"
    eng.save(path)
    for other in (mk.Engine.from_bytes(eng.to_bytes()), mk.Engine.load(path),
                  pickle.loads(pickle.dumps(eng))):
        for ins in (BTC, ETH):
            assert other._core.liquidity(other.instruments.index(ins)) == \
                eng._core.liquidity(eng.instruments.index(ins))
        p = other._core.liquidation_params()
        assert (p["target"], p["buffer"], p["fee_rate"]) == (1, 0.1, 0.015)
        for ledger in ("insurance_fund", "market_pnl", "socialized"):
            assert getattr(other, ledger)("USDC") == getattr(eng, ledger)("USDC")
        assert other.plan_liquidation("carol") == eng.plan_liquidation("carol")
        assert other.plan_all() == eng.plan_all()
        assert other.liquidate("carol") == clone(eng).liquidate("carol")


# ---- arguments ---------------------------------------------------------------------------------

def test_bad_arguments_are_rejected():
    eng = flat_perp()
    for kw in (dict(spread=-0.1), dict(spread=1.0), dict(impact=-1.0), dict(max_step=-1.0),
               dict(spread=math.nan)):
        with pytest.raises(ValueError):
            eng.set_liquidity("X-PERP", **kw)
    for kw in (dict(target="equity"), dict(buffer=-0.1), dict(fee_rate=1.0),
               dict(fee_rate=-0.01)):
        with pytest.raises(ValueError):
            eng.set_liquidation_params(**kw)
    for amount in (0.0, -1.0, math.inf):
        with pytest.raises(ValueError):
            eng.fund_insurance("USDC", amount)
    with pytest.raises(ValueError):
        eng.plan_liquidation("nobody")
    with pytest.raises(ValueError):
        eng.cascade("X", -1.0)
    with pytest.raises(ValueError):
        eng.cascade("X", -0.1, max_rounds=0)
    assert eng.bankruptcy_price("acct", "X-PERP") == pytest.approx(91.0, rel=1e-12)  # 100 - 90/10
    eng.add_account("empty", "USDC")
    assert math.isnan(eng.bankruptcy_price("empty", "X-PERP"))
    assert eng.plan_liquidation("empty")["steps"] == []
