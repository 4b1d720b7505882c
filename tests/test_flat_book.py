"""The batch pass reads a flat copy of the accounts (engine.hpp, "the flat book"),
kept in step with them by every operation that changes an account. These tests
change accounts in every way the API offers, between batch passes, and require
``evaluate_all`` to give each account's ``summary()`` (computed from the account
itself) to the bit: a stale copy would show as a difference."""

from __future__ import annotations

import copy
import math

import marginkit as mk
import marginkit.scenarios as scn
import numpy as np
import pytest
from marginkit import demo_book

FIGURES = ("equity", "im", "mm", "available")


def same(x: float, y: float) -> bool:
    return x == y or (math.isnan(x) and math.isnan(y))


def assert_batch_equals_summaries(e: mk.Engine, where: str) -> int:
    """Returns the number of accounts in breach (liquidation or bankrupt)."""
    ev = e.evaluate_all()
    assert len(ev.equity) == len(e.accounts)
    for k, name in enumerate(e.accounts):
        s = e.summary(name)
        for field in FIGURES:
            got, want = float(getattr(ev, field)[k]), getattr(s, field)
            assert same(got, want), (where, name, field, got, want)
        assert mk.HEALTH_STATES[int(ev.state[k])] == s.state, (where, name)
    # plan_all detects through the flat book too
    breached = {name for k, name in enumerate(e.accounts)
                if ev.state[k] >= mk.HEALTH_STATES.index("liquidation")}
    assert {p["account"] for p in e.plan_all()} == breached, where
    return len(breached)


def venue() -> mk.Engine:
    e = demo_book.build_engine(n_accounts=0)
    e.max_age = 1e12  # the demo snapshot's times are 0
    for u in ("BTC", "SOL"):  # ETH stays on standard margin in portfolio accounts
        e.add_scenario_set(f"set_{u}", **scn.deribit())
        e.set_scenarios(u, f"set_{u}")
    return e


def add_option_books(e, rng, instruments, n=40, spread=0.0):
    """n portfolio accounts (USDC) of 1-11 of the instruments each, a third of
    them hedged pairwise, the rest one-sided, filled within `spread` of the mark."""
    for k in range(n):
        a = f"p{k}"
        e.add_account(a, "USDC")
        e.set_mode(a, "portfolio")
        e.deposit(a, "USDC", 5e6)
        names = rng.choice(instruments, size=int(rng.integers(1, 12)), replace=False)
        side = float(rng.choice([-1.0, 1.0]))
        for j, name in enumerate(names):
            sign = side * (-1.0) ** j if k % 3 == 0 else side
            price = e.mark(name) * float(rng.uniform(1.0 - spread, 1.0 + spread))
            e.fill(a, name, sign * float(rng.integers(1, 10)), price, fee=0.0)


def random_fill(e, rng, account, instruments):
    name = instruments[int(rng.integers(len(instruments)))]
    mark = e.mark(name)
    qty = float(rng.choice([-1.0, 1.0]) * rng.integers(1, 20))
    e.fill(account, name, qty, mark * float(rng.uniform(0.98, 1.02)), fee=0.0)


def test_every_account_change_reaches_the_batch_pass():
    rng = np.random.default_rng(7)
    e = venue()
    instruments = [n for n in e.instruments if not n.endswith("-PERPETUAL") or "USDC" in n]
    for k in range(40):
        a = f"a{k}"
        e.add_account(a, ("USDC", "BTC", "ETH")[k % 3])
        e.deposit(a, "USDC", 2e6)
        e.deposit(a, "BTC", 5.0)
        if k % 2:
            e.set_mode(a, "portfolio")
        for _ in range(int(rng.integers(0, 6))):
            random_fill(e, rng, a, instruments)
    perp = "BTC_USDC-PERPETUAL"
    for k in range(12):  # leveraged: market moves put some of them under water
        e.add_account(f"lev{k}", "USDC")
        e.deposit(f"lev{k}", "USDC", 4_000.0)
        e.fill(f"lev{k}", perp, 0.5 if k % 2 else -0.5, e.mark(perp), fee=0.0)
    assert_batch_equals_summaries(e, "start")
    orders: list[int] = []
    isolated: list[str] = []
    breaches = 0
    for step in range(120):
        names = e.accounts
        a = names[int(rng.integers(len(names)))]
        op = step % 12
        if op in (0, 3, 4):  # not on an isolated account (other instruments, withdrawals)
            a = a.split("/")[0]
        if op == 0:  # trade: open, add to, reduce or flip a position
            random_fill(e, rng, a, instruments)
        elif op == 1:  # close a position completely (it leaves the account)
            held = e.positions(a)
            if held:
                p = held[int(rng.integers(len(held)))]
                e.fill(a, p["instrument"], -p["size"], e.mark(p["instrument"]), fee=0.0)
        elif op == 2:
            e.deposit(a, ("USDC", "ETH", "SOL")[step % 3], float(rng.uniform(1.0, 1e4)))
        elif op == 3:
            e.withdraw(a, "USDC", 1.0)
        elif op == 4:  # resting orders move an account out of the flat book, and back
            name = instruments[int(rng.integers(len(instruments)))]
            orders.append(e.place_order(a, name, float(rng.choice([-2.0, 3.0])), e.mark(name)))
        elif op == 5 and orders:
            e.cancel_order(orders.pop(0))
        elif op == 6 and "/" not in a:
            e.set_mode(a, "cross" if e.mode(a) == "portfolio" else "portfolio")
        elif op == 7 and len(isolated) < 5:
            a = f"a{3 * len(isolated)}"  # USDC-margined
            child = e.open_isolated(a, "BTC_USDC-PERPETUAL", 5e4)
            isolated.append(e.accounts[child])
            e.fill(child, "BTC_USDC-PERPETUAL", 1.0, e.mark("BTC_USDC-PERPETUAL"), fee=0.0)
        elif op == 8 and isolated:
            child = isolated[int(rng.integers(len(isolated)))]
            e.transfer(child.split("/")[0], child, 1e3)
        elif op == 9:  # bulk position loads, on old and new accounts
            new = e.add_accounts([f"bulk{step}-{j}" for j in range(3)], "USDC")
            ids = np.append(new, 0)
            e.deposit_many(ids[:3], "USDC", np.full(3, 1e6))
            inst = np.array([e.instruments.index(n) for n in rng.choice(instruments, 4)])
            marks = np.array([e.mark(int(i)) for i in inst])
            e.set_positions(ids, inst, np.array([2.0, -3.0, 0.0, 1.0]), marks)
        elif op == 10:  # a market move; then liquidate whoever it put under water
            e.set_price("BTC", e.price("BTC") * float(rng.uniform(0.8, 1.2)), step)
            ev = e.evaluate_all()
            for k in np.flatnonzero(ev.state >= mk.HEALTH_STATES.index("liquidation"))[:3]:
                e.liquidate(int(k))
        elif op == 11:  # many changes at once: the whole book is rebuilt
            for b in names[: len(names) // 2]:
                e.deposit(b, "USDC", 1.0)
        breaches += assert_batch_equals_summaries(e, f"step {step} op {op}")
    assert breaches > 0  # detection was exercised


def test_copies_saved_and_loaded_engines_keep_their_own_books(tmp_path):
    e = venue()
    for k in range(10):
        e.add_account(f"a{k}", "USDC")
        e.deposit(f"a{k}", "USDC", 1e6)
        e.fill(f"a{k}", "BTC_USDC-PERPETUAL", float(k + 1), e.mark("BTC_USDC-PERPETUAL"),
               fee=0.0)
    before = e.evaluate_all()
    c = copy.deepcopy(e)
    c.fill("a3", "BTC_USDC-PERPETUAL", 50.0, e.mark("BTC_USDC-PERPETUAL"), fee=0.0)
    c.deposit("a4", "USDC", 5e5)
    assert_batch_equals_summaries(c, "copy")
    after = e.evaluate_all()  # the original is untouched by its copy's changes
    for field in FIGURES:
        np.testing.assert_array_equal(getattr(after, field), getattr(before, field))
    path = tmp_path / "book.mk"
    c.save(path)
    d = mk.Engine.load(path)
    assert_batch_equals_summaries(d, "loaded")
    got, want = d.evaluate_all(), c.evaluate_all()
    for field in FIGURES:
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field))


@pytest.mark.parametrize("mode", ["cross", "portfolio"])
def test_unpriced_accounts_are_nan_in_the_batch_pass_too(mode):
    e = venue()
    e.add_asset("NEW", time=0.0)  # no price yet
    e.add_account("x", "USDC")
    e.set_mode("x", mode)
    e.deposit("x", "USDC", 1e5)
    e.fill("x", "BTC_USDC-PERPETUAL", 1.0, e.mark("BTC_USDC-PERPETUAL"), fee=0.0)
    e.deposit("x", "NEW", 1.0)
    ev = e.evaluate_all()
    assert math.isnan(ev.equity[0]) and math.isnan(ev.im[0])
    assert_batch_equals_summaries(e, mode)


def test_an_asset_added_after_a_pass_reaches_the_next_one():
    """The pass reads each asset's price and quantum from tables built per
    market state (adding an asset starts a new one): accounts margined in
    assets added since the last pass, priced or not yet, with and without
    positions, get their summaries."""
    e = venue()
    e.add_account("x", "USDC")
    e.deposit("x", "USDC", 1e4)
    e.evaluate_all()
    for k in range(40):
        priced = k % 2 == 0
        e.add_asset(f"NEW{k}", price=2.0 + k if priced else None, quantum=0.25)
        e.add_account(f"y{k}", f"NEW{k}")
        e.deposit(f"y{k}", f"NEW{k}", 10.3 + k)
        if priced and k % 4 == 0:
            e.fill(f"y{k}", "BTC_USDC-PERPETUAL", 0.01, e.mark("BTC_USDC-PERPETUAL"), fee=0.0)
    assert_batch_equals_summaries(e, "new assets")
    ev = e.evaluate_all()
    assert np.isnan(ev.equity[2::2]).all() and not np.isnan(ev.equity[1::2]).any()


def test_scenario_set_changes_regroup_the_flat_book():
    """Portfolio accounts are laid out by scenario group; assigning or removing an
    underlying's set changes the groups (and which positions are margined on
    their own), and the next pass follows."""
    rng = np.random.default_rng(11)
    e = venue()
    options = [n for n in e.instruments if n.count("-") == 3]
    for k in range(30):
        a = f"p{k}"
        e.add_account(a, "USDC")
        e.set_mode(a, "portfolio")
        e.deposit(a, "USDC", 5e6)
        for name in rng.choice(options, size=int(rng.integers(1, 9)), replace=False):
            qty = float(rng.choice([-1.0, 1.0]) * rng.integers(1, 10))
            e.fill(a, name, qty, e.mark(name), fee=0.0)
    assert_batch_equals_summaries(e, "BTC and SOL sets")
    e.set_scenarios("ETH", "set_BTC")  # ETH options join the grid, a third group
    assert_batch_equals_summaries(e, "ETH added")
    e.set_scenarios("BTC", None)  # BTC options back on standard margin
    assert_batch_equals_summaries(e, "BTC removed")
    e.set_scenarios("BTC", "set_BTC")
    e.set_price("ETH", e.price("ETH") * 0.9, 1.0)
    assert_batch_equals_summaries(e, "ETH down")


@pytest.mark.parametrize("isa", mk.build_info()["isa_available"])
def test_batch_worst_loss_is_the_summarys_on_every_kernel_path(isa):
    """The batch pass takes a group's worst weighted loss in one kernel that never
    stores the scenario P&L (weighted_worst); summary() keeps the P&L vector and
    takes ScenarioSet::loss of it. Both must agree to the bit on every kernel
    path: hedged books (losses near zero), one-sided books, weighted extended
    moves (the Deribit preset's damped scenarios) and SPAN's 35 % extremes."""
    before = mk.build_info()["isa"]
    mk.set_isa(isa)
    try:
        rng = np.random.default_rng(23)
        e = demo_book.build_engine(n_accounts=0)
        e.max_age = 1e12
        e.add_scenario_set("set_BTC", **scn.deribit())
        e.add_scenario_set("set_SOL", **scn.span(scan_range=0.15, vol_range=0.25))
        e.set_scenarios("BTC", "set_BTC")
        e.set_scenarios("SOL", "set_SOL")
        options = [n for n in e.instruments if n.count("-") == 3 and not n.startswith("ETH")]
        add_option_books(e, rng, options)
        assert_batch_equals_summaries(e, isa)
        e.set_price("BTC", e.price("BTC") * 1.07, 1.0)
        assert_batch_equals_summaries(e, f"{isa}, BTC up")
    finally:
        mk.set_isa(before)


@pytest.mark.parametrize("margin_settled", [True, False])
@pytest.mark.parametrize("options_only", [True, False])
def test_every_shape_of_portfolio_account_gives_its_summary(margin_settled, options_only):
    """The batch pass specialises portfolio accounts whose positions all settle in
    the margin asset, or are all options: each of the four shapes must give what
    summary() gives, to the bit, before and after a market move (inverse BTC
    options and futures settle in BTC, SOL_USDC options and perpetuals in USDC)."""
    rng = np.random.default_rng(31 + 2 * margin_settled + options_only)
    e = venue()
    names = [n for n in e.instruments
             if (n.startswith("SOL_USDC") if margin_settled else n.startswith("BTC"))
             and (n.count("-") == 3 or not options_only)]
    assert any(n.count("-") != 3 for n in names) != options_only
    add_option_books(e, rng, names, n=25, spread=0.03)
    assert_batch_equals_summaries(e, "as filled")
    e.set_price("BTC", e.price("BTC") * 0.93, 1.0)
    e.set_price("SOL", e.price("SOL") * 1.05, 1.0)
    assert_batch_equals_summaries(e, "moved")


def add_mixed_accounts(e, rng, options, unrounded, n=150):
    """n accounts in random order, so that each block of 64 the batch pass takes
    mixes the accounts its portfolio kernel covers (options settled in the
    margin asset; some in an asset whose figures are not rounded, options
    `unrounded`, so that every bit of the sums shows) with every kind it must
    leave to the engine: cross accounts, portfolio accounts with an inverse
    option or a perpetual, one with a resting order, and empty ones."""
    kinds = rng.choice(["plain"] * 4 + ["unrounded"] * 2 +
                       ["cross", "inverse", "perpetual", "order", "empty"], n)
    for k, kind in enumerate(kinds):
        a = f"m{k}-{kind}"
        margin = "USDX" if kind == "unrounded" else "USDC"
        e.add_account(a, margin)
        if kind != "cross":
            e.set_mode(a, "portfolio")
        if kind != "unrounded":  # (no collateral: the equity is the positions' value, every bit)
            e.deposit(a, margin, float(rng.choice([2e4, 5e6])))
        if kind == "empty":
            continue
        names = list(rng.choice(unrounded if kind == "unrounded" else options,
                                size=int(rng.integers(1, 12)), replace=False))
        names += {"inverse": ["BTC-31JAN25-100000-C"], "perpetual": ["SOL_USDC-PERPETUAL"]}.get(
            kind, [])
        side = float(rng.choice([-1.0, 1.0]))
        for j, name in enumerate(names):
            sign = side * (-1.0) ** j if k % 3 == 0 else side
            e.fill(a, name, sign * float(rng.integers(1, 10)), e.mark(name), fee=0.0)
        if kind == "order":
            e.place_order(a, names[0], 1.0, e.mark(names[0]))


@pytest.mark.parametrize("isa", mk.build_info()["isa_available"])
def test_the_portfolio_kernel_pass_gives_each_accounts_summary(isa):
    """Portfolio accounts of options settled in the margin asset, their groups on
    sets of one length, take one kernel call per block of accounts
    (portfolio_block): on every kernel path it must give what summary() gives,
    to the bit, for one- and two-group accounts, hedged and one-sided, in blocks
    mixed with accounts it does not cover, before and after a market move, and
    once the two underlyings' sets differ in length (two-group accounts then
    take the engine's path)."""
    before = mk.build_info()["isa"]
    mk.set_isa(isa)
    try:
        rng = np.random.default_rng(41)
        e = venue()
        # Sets of 15 and 16 scenarios (16 padded: every kernel path covers
        # them), BTC's with every term of a group's requirement: short option
        # and delta charges, and an IM factor
        e.add_scenario_set("btc15", **scn.deribit(steps=2, extended=False, im_factor=1.3,
                                                  short_option_charge=0.01, delta_charge=0.005))
        e.add_scenario_set("sol16", **scn.span(scan_range=0.15, vol_range=0.2,
                                               short_option_charge=0.02))
        e.set_scenarios("BTC", "btc15")
        e.set_scenarios("SOL", "sol16")
        btc = e.price("BTC")
        for name in [n for n in e.instruments if n.startswith("BTC-") and n.count("-") == 3]:
            linear = "BTC_USDC" + name[3:]
            e.add_instrument(linear, model="deribit_options", contract_size=0.01,
                             mark=e.mark(name) * btc)
        options = [n for n in e.instruments if n.count("-") == 3 and "_USDC" in n]
        assert {n[:3] for n in options} == {"BTC", "SOL"}
        assert "BTC-31JAN25-100000-C" in e.instruments
        e.add_asset("USDX", price=1.0)  # quantum 0: figures not rounded
        for name in options:
            e.add_instrument(name.replace("_USDC", "_USDX"), model="deribit_options",
                             settle="USDX", contract_size=e.instrument_info(name)["contract_size"],
                             mark=e.mark(name))
        unrounded = [n.replace("_USDC", "_USDX") for n in options]
        add_mixed_accounts(e, rng, options, unrounded)
        assert_batch_equals_summaries(e, isa)
        e.set_price("BTC", btc * 0.94, 1.0)
        assert_batch_equals_summaries(e, f"{isa}, BTC down")
        # A pre-trade check refreshes an account by the engine's full path
        # (refresh()); the summary then shows those sums: the same bits.
        ev = e.evaluate_all()
        for k, name in enumerate(e.accounts):
            e.check_order(name, unrounded[0] if "unrounded" in name else options[0], 1.0,
                          e.mark(options[0]))
            s = e.summary(name)
            for field in FIGURES:
                got, want = float(getattr(ev, field)[k]), getattr(s, field)
                assert same(got, want), ("after check_order", name, field, got, want)
        e.add_scenario_set("grid_SOL", **scn.simple_grid())
        e.set_scenarios("SOL", "grid_SOL")
        assert_batch_equals_summaries(e, f"{isa}, SOL on another grid")
    finally:
        mk.set_isa(before)


@pytest.mark.parametrize("isa", mk.build_info()["isa_available"])
def test_the_figures_kernel_gives_each_accounts_summary(isa):
    """The batch pass rounds and classifies a vector of accounts at a time
    (block_figures): on every kernel path each account's equity, IM, MM,
    available margin and state must be summary()'s, to the bit, for margin
    assets with decimal, non-decimal and no rounding quanta, in every health
    state, unpriced (NaN) and with nothing at risk, in blocks that mix them with
    accounts the flat book does not cover (portfolio accounts with orders)."""
    before = mk.build_info()["isa"]
    mk.set_isa(isa)
    try:
        rng = np.random.default_rng(53)
        e = venue()
        e.add_asset("QNONE", price=1.0)  # quantum 0: no rounding
        e.add_asset("QQUARTER", price=1.0, quantum=0.25)
        e.add_asset("QTHIRD", price=1.0, quantum=1.0 / 3.0)
        e.add_asset("UNPRICED", time=0.0)
        margins = ["USDC", "BTC", "QNONE", "QQUARTER", "QTHIRD", "UNPRICED"]
        perps = ["BTC_USDC-PERPETUAL", "ETH_USDC-PERPETUAL", "SOL_USDC-PERPETUAL"]
        for k in range(203):  # three full blocks and a part, not a multiple of 8
            margin = "USDC" if k % 22 == 11 else str(rng.choice(margins))
            a = f"f{k}"
            e.add_account(a, margin)
            deposit = float(10.0 ** rng.uniform(2.0, 5.5))
            deposit /= e.price("BTC") if margin == "BTC" else 1.0
            e.deposit(a, "USDC" if margin == "UNPRICED" else margin, deposit)
            if k % 11 == 0:  # nothing at risk: zero equity, or cents x 100 just under
                e.withdraw(a, "USDC" if margin == "UNPRICED" else margin, deposit)
                if k % 2:  # a whole number (0.29 x 100 = 28.999999999999996)
                    e.deposit(a, "USDC", (0.29, 0.57, 0.58, 1.13, 4.35)[k % 5])
                continue
            if k % 13 == 0:  # a portfolio account with an order: not in the flat book
                e.set_mode(a, "portfolio")
            for name in rng.choice(perps, size=int(rng.integers(1, 4)), replace=False):
                qty = float(rng.choice([-1.0, 1.0]) * rng.integers(1, 40))
                e.fill(a, str(name), qty, e.mark(str(name)), fee=0.0)
                if k % 13 == 0:
                    e.place_order(a, str(name), -qty / 2, e.mark(str(name)))
        assert_batch_equals_summaries(e, isa)
        states = {mk.HEALTH_STATES[int(c)] for c in e.evaluate_all().state}
        for move in (0.97, 0.9, 1.25, 1.6):
            e.move_underlying("BTC", e.price("BTC") * move)  # and the marks on it
            e.move_underlying("ETH", e.price("ETH") * move)
            assert_batch_equals_summaries(e, f"{isa}, moved x{move}")
            ev = e.evaluate_all()
            states |= {mk.HEALTH_STATES[int(c)] for c in ev.state}
            assert np.isnan(ev.equity).any() and not np.isnan(ev.equity).all()
        assert states == set(mk.HEALTH_STATES), states
    finally:
        mk.set_isa(before)


@pytest.mark.parametrize("isa", mk.build_info()["isa_available"])
def test_the_cross_kernel_pass_gives_each_accounts_summary(isa):
    """Cross accounts without resting orders run through the kernels'
    cross_curve_sums (compiled per instruction set, with a piece count of its
    own) up to the first position whose curve is general, and the engine's loop
    from there. On every kernel path the batch pass must give summary() to the
    bit: brackets crossed at every size, a model of more brackets than the
    short curve holds, linear and inverse instruments, options, and positions
    settled in an asset other than the margin asset (BTC, USDC and ETH
    accounts), before and after a market move."""
    before = mk.build_info()["isa"]
    mk.set_isa(isa)
    try:
        rng = np.random.default_rng(53)
        e = venue()
        btc = e.price("BTC")
        for name, n in (("TIERS", 12), ("LONGTABLE", 20)):  # 20 > the short curve's 16
            table = [(10_000.0 * k, 0.004 * (k + 1), 0.008 * (k + 1)) for k in range(n)]
            e.add_model(name.lower(), "tiered", brackets=table)
            e.add_instrument(f"BTC_USDC-{name}", model=name.lower(), kind="perpetual",
                             underlying="BTC", settle="USDC", mark=btc * 1.001)
        names = e.instruments
        for k in range(60):
            a = f"x{k}"
            e.add_account(a, ("USDC", "BTC", "ETH")[k % 3])
            e.deposit(a, "USDC", 3e6)
            e.deposit(a, "BTC", 30.0)
            for j in rng.choice(len(names), size=int(rng.integers(1, 11)), replace=False):
                name = names[int(j)]
                qty = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.05, 4.0))
                e.fill(a, name, qty, e.mark(name) * float(rng.uniform(0.97, 1.03)), fee=0.0)
        assert_batch_equals_summaries(e, isa)
        e.set_price("BTC", btc * 1.06, 1.0)
        e.set_price("ETH", e.price("ETH") * 0.95, 1.0)
        assert_batch_equals_summaries(e, f"{isa}, moved")
    finally:
        mk.set_isa(before)
