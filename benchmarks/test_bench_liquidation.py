"""Liquidation (issue 6) on a book of 1,000,000 cross-margin accounts.

The book: 25 USDC-settled linear futures (a perpetual and four dated futures on
each of BTC, ETH, SOL, XRP and DOGE, ``linear_rate`` models: IM 2 %, MM 1 %, both
+0.5 % per 1M USDC of position), 5 positions per account (65 % long), notional
lognormal (median 20k USDC), collateral lognormal (median 15 % of the notional:
6.7x leverage; sigma 0.6). Liquidation: back to MM x 1.1 (``buffer=0.1``), penalty
0.5 % of the traded notional to the insurance fund, closing costs 0.05 % spread +
0.5 % per 1M USDC traded; the insurance fund holds 1e12 USDC, so every deficit is
paid by the fund and auto-deleveraging never runs (see RESULTS.md).

4. Detection after a market update (``move_underlying("BTC", -5 %)``): the engine
   (``evaluate_all``, 1 thread and all threads) against NumPy on the book in column
   form (marks moved with the underlying, equity and MM per account, rounding and
   thresholds as the engine's); every account's equity, MM and liquidation flag
   are checked. Then detection + planning (``move_underlying`` + ``plan_all()``,
   and the same with the plans left in the core: ``count_in_liquidation``); NumPy
   has no equivalent of the planning, so that group has no baseline. The planned
   accounts are checked against NumPy's detection.
5. One cascade: ``cascade("BTC", -0.2, impact=...)`` on a fresh copy of the book
   (``impact`` = 1e-6 of the price per BTC sold for 1M accounts, scaled with the
   book size), run once (``benchmark.pedantic``, no warm-up: a second run would
   double the suite's longest item) and printed round by round. Per-round times
   come from the same cascade driven from Python (``evaluate_all``, the core's
   planning pass, ``liquidate`` per account) on a 100,000-account book of the same
   make-up, checked round by round against ``cascade`` on that book. No baseline:
   NumPy has no liquidation engine; the detection baseline's time per round is
   printed for scale.

With ``--benchmark-disable`` (the CI smoke run) the book has 10,000 accounts (and
the Python-driven cascade runs on it); ``MARGINKIT_BENCH_ACCOUNTS`` overrides the
size.

Run: ``python -m pytest benchmarks/test_bench_liquidation.py``; figures in RESULTS.md.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass

import marginkit as mk
import numpy as np
import pytest
from _timing import smoke_run

NOW = 1_750_000_000
QUANTUM = 0.01
# underlying: (price in USDC, contract size)
UNDERLYINGS = {"BTC": (100_000.0, 0.001), "ETH": (3_500.0, 0.01), "SOL": (180.0, 0.1),
               "XRP": (2.4, 10.0), "DOGE": (0.32, 100.0)}
FUTURES = ((0, 0.0002), (7, 0.001), (30, 0.004), (90, 0.012), (180, 0.025))  # (days, basis)
PER_ACCOUNT = 5
MOVE = -0.05  # the market update of case 4
SHOCK = -0.20  # the cascade's first move
IMPACT_1M = 1e-6  # cascade price impact per BTC sold, for a book of 1M accounts
BUFFER, FEE_RATE = 0.1, 0.005
SPREAD, IMPACT_PER_1M_USDC = 0.0005, 0.005
FUND = 1e12
LIQUIDATION, BANKRUPT = 3, 4

DETECT_GROUP = "liquidation detection after BTC -5 %, 5 futures per account"
DETECT_ROLES = ("baseline", "marginkit, 1 thread", "marginkit, all threads")
PLAN_GROUP = "liquidation detection + planning after BTC -5 % (no NumPy baseline)"
PLAN_ROLES = ("marginkit: plan_all() (plans as dicts)",
              "marginkit: plans kept in the core (count_in_liquidation)")
CASCADE_GROUP = "liquidation cascade, BTC -20 % with price impact (no NumPy baseline)"
N_ACCOUNTS = 1_000_000
N_ACCOUNTS_SMOKE = 10_000
REPLICA_ACCOUNTS = 100_000  # the book of the Python-driven cascade (per-round times)

_REPORT: dict[str, dict] = {"book": {}, "detect": {}, "cascade": {}}


def _say(line: str) -> None:
    """Straight to the terminal, whatever pytest captures."""
    sys.__stdout__.write(f"\n[bench liquidation] {line}\n")
    sys.__stdout__.flush()


class _Reporter:
    def pytest_terminal_summary(self, terminalreporter):
        tr = terminalreporter
        book, det, cas = _REPORT["book"], _REPORT["detect"], _REPORT["cascade"]
        if not book:
            return
        tr.section("marginkit liquidation: book, detection, planning, cascade")
        tr.write_line(f"book: {book['accounts']:,} cross accounts, {book['positions']:,} "
                      f"positions, {book['instruments']} futures; built in "
                      f"{book['build_s']:.1f} s (add_accounts, deposit_many, set_positions), "
                      f"first evaluate_all {book['first_eval_s']:.2f} s")
        if "states" in det:
            tr.write_line("after BTC -5 %: " + ", ".join(
                f"{k} {v:,}" for k, v in det["states"].items()))
        if "plans" in det:
            tr.write_line(f"  plans: {det['plans']:,} ({det['restored']:,} restore the target; "
                          f"{det['steps']:,} steps, {det['steps'] / max(det['plans'], 1):.1f} "
                          f"per plan)")
        for line in cas.get("lines", []):
            tr.write_line(line)


@pytest.fixture(scope="module")
def report(request):
    pm = request.config.pluginmanager
    if not pm.has_plugin("marginkit-liquidation-bench-report"):
        pm.register(_Reporter(), "marginkit-liquidation-bench-report")
    return _REPORT


# ---- the book as plain data, the engine, the NumPy baseline ---------------------------


@dataclass
class Book:
    """Positions in column form (``PER_ACCOUNT`` per account, in account order) and
    per-instrument data: what the engine is loaded with, and what NumPy uses."""

    names: list
    underlying: np.ndarray  # per instrument: index into UNDERLYINGS
    mark0: np.ndarray
    cs: np.ndarray
    mm_base: np.ndarray
    mm_slope: np.ndarray
    instrument: np.ndarray  # per position
    size: np.ndarray
    entry: np.ndarray
    collateral: np.ndarray  # per account

    @property
    def accounts(self) -> int:
        return self.collateral.size


def make_book(n_accounts: int, seed: int = 3) -> Book:
    names, und, mark0, cs, mm_base, mm_slope = [], [], [], [], [], []
    for k, (u, (price, size)) in enumerate(UNDERLYINGS.items()):
        for days, basis in FUTURES:
            names.append(f"{u}_USDC-{'PERPETUAL' if days == 0 else f'{days}D'}")
            und.append(k)
            mark0.append(price * (1.0 + basis))
            cs.append(size)
            mm_base.append(0.01)
            mm_slope.append(0.005 * price / 1e6)
    mark0, cs = np.array(mark0), np.array(cs)
    n_inst = len(names)
    rng = np.random.default_rng(seed)
    # PER_ACCOUNT distinct instruments per account: a random start and sorted offsets
    offsets = np.cumsum(rng.integers(1, n_inst // PER_ACCOUNT + 1, (n_accounts, PER_ACCOUNT)),
                        axis=1)
    inst = ((rng.integers(0, n_inst, n_accounts)[:, None] + offsets) % n_inst).ravel()
    notional = np.clip(rng.lognormal(math.log(20_000), 1.0, inst.size), 100.0, 5e6)
    contracts = np.maximum(1.0, np.round(notional / (cs[inst] * mark0[inst])))
    size = np.where(rng.random(inst.size) < 0.35, -contracts, contracts)
    entry = mark0[inst] * (1.0 + rng.normal(0.0, 0.01, inst.size))
    total = (contracts * cs[inst] * mark0[inst]).reshape(n_accounts, PER_ACCOUNT).sum(axis=1)
    collateral = np.round(total * rng.lognormal(math.log(0.15), 0.6, n_accounts), 2) + 50.0
    return Book(names=names, underlying=np.array(und), mark0=mark0, cs=cs,
                mm_base=np.array(mm_base), mm_slope=np.array(mm_slope),
                instrument=inst.astype(np.int32), size=size, entry=entry, collateral=collateral)


def new_engine(book: Book) -> mk.Engine:
    """The book loaded through the bulk API."""
    eng = mk.Engine()
    eng.now = NOW
    eng.add_asset("USDC", price=1.0, quantum=QUANTUM, time=NOW)
    for u, (price, _) in UNDERLYINGS.items():
        eng.add_asset(u, price=price, time=NOW)
        slope = 0.005 * price / 1e6
        eng.add_model(f"{u}_linear", "linear_rate", im_base=0.02, im_slope=slope, mm_base=0.01,
                      mm_slope=slope)
    u_names = list(UNDERLYINGS)
    for i, name in enumerate(book.names):
        u = u_names[book.underlying[i]]
        days = FUTURES[i % len(FUTURES)][0]
        iid = eng.add_instrument(
            name, model=f"{u}_linear", kind="perpetual" if days == 0 else "future",
            underlying=u, settle="USDC", inverse=False, contract_size=float(book.cs[i]),
            expiry=NOW + days * 86_400 if days else None, mark=float(book.mark0[i]), time=NOW)
        assert iid == i
        per_contract = float(book.cs[i] * book.mark0[i])
        eng.set_liquidity(iid, spread=SPREAD, impact=IMPACT_PER_1M_USDC * per_contract / 1e6)
    eng.set_liquidation_params(target="maintenance", buffer=BUFFER, fee_rate=FEE_RATE)
    eng.fund_insurance("USDC", FUND)
    ids = eng.add_accounts([f"acct-{k:07d}" for k in range(book.accounts)], "USDC")
    eng.deposit_many(ids, "USDC", book.collateral)
    eng.set_positions(np.repeat(ids, PER_ACCOUNT), book.instrument, book.size, book.entry)
    return eng


def round_up(x):
    n = x / QUANTUM
    return np.ceil(n - np.abs(n) * 1e-14) / 100.0 + 0.0


def round_down(x):
    n = x / QUANTUM
    return np.floor(n + np.abs(n) * 1e-14) / 100.0 + 0.0


def numpy_detect(book: Book, prices: np.ndarray):
    """Equity, MM and liquidation flags of every account with the underlyings at
    ``prices``: marks move with their underlying (the basis ratio kept), MM of
    ``linear_rate`` valued at the index, thresholds as the engine's (liquidation
    below 1.0 x MM, bankrupt below 0)."""
    ratio = prices / np.array([p for p, _ in UNDERLYINGS.values()])
    inst = book.instrument
    mark = (book.mark0 * ratio[book.underlying])[inst]
    index = prices[book.underlying][inst]
    cs = book.cs[inst]
    units = np.abs(book.size) * cs
    mm_pos = units * (book.mm_base[inst] + book.mm_slope[inst] * units) * index
    eq_pos = book.size * cs * (mark - book.entry)
    n = book.accounts
    equity = round_down(book.collateral + eq_pos.reshape(n, PER_ACCOUNT).sum(axis=1))
    mm = round_up(mm_pos.reshape(n, PER_ACCOUNT).sum(axis=1))
    return equity, mm, (equity < mm) | (equity < 0.0)


def base_prices() -> np.ndarray:
    return np.array([p for p, _ in UNDERLYINGS.values()])


# ---- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def book(request, report):
    n = int(os.environ.get("MARGINKIT_BENCH_ACCOUNTS", 0)) or (
        N_ACCOUNTS_SMOKE if smoke_run(request.config) else N_ACCOUNTS)
    data = make_book(n)
    t0 = time.perf_counter()
    eng = new_engine(data)
    t1 = time.perf_counter()
    eng.evaluate_all()
    t2 = time.perf_counter()
    report["book"].update(accounts=n, positions=int(data.size.size),
                          instruments=len(data.names), build_s=t1 - t0, first_eval_s=t2 - t1)
    _say(f"book: {n:,} accounts built in {t1 - t0:.1f} s, first evaluate_all {t2 - t1:.2f} s")
    return {"data": data, "engine": eng}


@pytest.fixture(scope="module")
def moved_prices():
    prices = base_prices()
    prices[0] *= 1.0 + MOVE
    return prices


@pytest.fixture(scope="module")
def detected(book, moved_prices, report):
    equity, mm, flag = numpy_detect(book["data"], moved_prices)
    state = np.where(equity < 0.0, BANKRUPT, np.where(equity < mm, LIQUIDATION, 0))
    report["detect"]["states"] = {
        "in liquidation": int((state == LIQUIDATION).sum()),
        "bankrupt": int((state == BANKRUPT).sum()), "accounts": int(state.size)}
    return equity, mm, flag


def market_update(eng, price):
    eng.move_underlying("BTC", price)


def move_and_evaluate(eng, price):
    market_update(eng, price)
    return eng.evaluate_all()


def move_and_plan(eng, price):
    market_update(eng, price)
    return eng.plan_all()


def move_and_count(eng, price):
    market_update(eng, price)
    return eng._core.count_in_liquidation()


# ---- 4. detection and planning --------------------------------------------------------------


@pytest.mark.parametrize("role", DETECT_ROLES)
def test_detection(timed, book, moved_prices, detected, role):
    eng, data = book["engine"], book["data"]
    if role == "baseline":
        got = timed(DETECT_GROUP, role, numpy_detect, data, moved_prices, rounds=10)
        for g, w in zip(got, detected, strict=True):
            np.testing.assert_array_equal(g, w)
        return
    before = mk.get_num_threads()
    mk.set_num_threads(1 if role == "marginkit, 1 thread" else 0)
    try:
        ev = timed(DETECT_GROUP, role, move_and_evaluate, eng, float(moved_prices[0]), rounds=10)
    finally:
        mk.set_num_threads(before)
    equity, mm, flag = detected
    np.testing.assert_array_equal(ev.equity, equity)
    np.testing.assert_array_equal(ev.mm, mm)
    np.testing.assert_array_equal(ev.state >= LIQUIDATION, flag)


@pytest.mark.parametrize("role", PLAN_ROLES)
def test_planning(timed, book, moved_prices, detected, report, role):
    eng = book["engine"]
    price = float(moved_prices[0])
    want = np.flatnonzero(detected[2])
    if role.startswith("marginkit: plan_all"):
        plans = timed(PLAN_GROUP, role, move_and_plan, eng, price, rounds=3)
        ids = np.array([int(p["account"].rsplit("-", 1)[1]) for p in plans])
        np.testing.assert_array_equal(ids, want)
        report["detect"].update(plans=len(plans), restored=sum(p["restored"] for p in plans),
                                steps=sum(len(p["steps"]) for p in plans))
        assert all(p["steps"] for p in plans)
    else:
        count = timed(PLAN_GROUP, role, move_and_count, eng, price, rounds=3)
        assert count == want.size


# ---- 5. one cascade --------------------------------------------------------------------------


def _impact(n_accounts: int) -> float:
    return IMPACT_1M * N_ACCOUNTS / n_accounts


def python_cascade(eng, book: Book, shock: float, impact: float, max_rounds: int = 20):
    """``Engine.cascade`` step by step through the public API, timing each round:
    detection (``evaluate_all``: the accounts at or below the liquidation
    threshold, the ones ``plan_all`` plans, in the same order), the core's planning
    pass (``count_in_liquidation``: ``plan_all`` without turning the plans into
    dicts; ``cascade`` runs it, then ``liquidate`` plans each account again),
    ``liquidate`` per account from Python, and the price impact of the net units
    of BTC sold."""
    btc = 0
    units_of = {name: (int(book.underlying[i]), float(book.cs[i]))
                for i, name in enumerate(book.names)}
    liquidate, core = eng.liquidate, eng._core
    eng.move_underlying("BTC", eng.price("BTC") * (1.0 + shock))
    rounds = []
    for r in range(1, max_rounds + 1):
        t0 = time.perf_counter()
        ids = np.flatnonzero(eng.evaluate_all().state >= LIQUIDATION).tolist()
        t1 = time.perf_counter()
        planned = core.count_in_liquidation()
        t2 = time.perf_counter()
        assert planned == len(ids)
        volume = net_sold = bad_debt = 0.0
        for a in ids:
            res = liquidate(a)
            bad_debt += res["bad_debt"]  # USDC = USD here
            for name, qty in res["market_fills"]:  # what reached the market
                u, cs = units_of[name]
                if u != btc:
                    continue
                units = qty * cs
                volume += abs(units)
                net_sold -= units
        t3 = time.perf_counter()
        p = eng.price("BTC")
        moved = max(p * (1.0 - impact * net_sold), p * 1e-6)
        if ids and moved != p:
            eng.move_underlying("BTC", moved)
        t4 = time.perf_counter()
        rounds.append({"round": r, "liquidated": len(ids), "volume": volume,
                       "price": eng.price("BTC"), "bad_debt": bad_debt, "detect_s": t1 - t0,
                       "plan_s": t2 - t1, "liquidate_s": t3 - t2, "move_s": t4 - t3})
        if not ids or volume == 0.0:
            break
    return rounds


def _cascade_table(core, steps=None, detect_s=None):
    head = (f"  {'round':>5} {'liquidated':>10} {'BTC sold':>9} {'price':>8} "
            f"{'bad debt':>13}")
    if steps:
        head += f" {'detect':>8} {'plan':>8} {'liquidate':>9} {'move':>6} {'NumPy':>7}"
    lines = [head]
    for k, c in enumerate(core):
        line = (f"  {c['round']:>5} {c['liquidated']:>10,} {c['volume']:>9.1f} "
                f"{c['price']:>8.0f} {c['bad_debt']:>13,.0f}")
        if steps:
            s = steps[k]
            line += (f" {s['detect_s'] * 1e3:>6.0f}ms {s['plan_s'] * 1e3:>6.0f}ms "
                     f"{s['liquidate_s'] * 1e3:>7.0f}ms {s['move_s'] * 1e3:>4.1f}ms "
                     f"{detect_s[k] * 1e3:>5.0f}ms")
        lines.append(line)
    return lines


def test_cascade(benchmark, book, report):
    data = book["data"]
    n = data.accounts
    impact = _impact(n)
    benchmark.group = CASCADE_GROUP
    benchmark.extra_info["role"] = "marginkit: cascade()"

    def run(eng):
        t0 = time.perf_counter()
        out = eng.cascade("BTC", SHOCK, impact=impact)
        return out, time.perf_counter() - t0

    core, core_s = benchmark.pedantic(run, setup=lambda: ((new_engine(data),), {}), rounds=1,
                                      warmup_rounds=0, iterations=1)
    assert all(r["adl_volume"] == 0.0 for r in core)
    # per-round times: the same cascade driven from Python, on a smaller book
    m = min(n, REPLICA_ACCOUNTS)
    small = data if m == n else make_book(m, seed=4)
    core_small = core if m == n else new_engine(small).cascade("BTC", SHOCK, impact=_impact(m))
    steps = python_cascade(new_engine(small), small, SHOCK, _impact(m))
    assert [r["liquidated"] for r in steps] == [r["liquidated"] for r in core_small]
    assert [r["price"] for r in steps] == [r["price"] for r in core_small]
    for s, c in zip(steps, core_small, strict=True):
        assert abs(s["bad_debt"] - c["bad_debt"]) <= 1e-9 * max(c["bad_debt"], 1.0)
    # NumPy detection at each round's starting price, for scale (on the positions
    # before the cascade: detection costs the same whatever the positions)
    start = [base_prices()[0] * (1.0 + SHOCK)] + [r["price"] for r in core_small[:-1]]
    detect_s = []
    for p in start:
        prices = base_prices()
        prices[0] = p
        t0 = time.perf_counter()
        numpy_detect(small, prices)
        detect_s.append(time.perf_counter() - t0)
    lines = [f"cascade: BTC {SHOCK:+.0%}, impact {impact:.3g} of the price per BTC sold, "
             f"{n:,} accounts: cascade() {core_s:.2f} s (one run), {len(core)} rounds, "
             f"{sum(r['liquidated'] for r in core):,} liquidations, bad debt "
             f"{sum(r['bad_debt'] for r in core):,.0f} USD (paid by the fund), ADL 0"]
    lines += _cascade_table(core)
    total = {k: sum(s[k] for s in steps) for k in ("detect_s", "plan_s", "liquidate_s",
                                                     "move_s")}
    lines.append(f"  the same driven from Python on {m:,} accounts (impact {_impact(m):.3g}), "
                 "per round: detect = evaluate_all, plan = the core's planning pass "
                 "(count_in_liquidation), liquidate = one call per account (it plans again), "
                 "NumPy = detection alone:")
    lines += _cascade_table(core_small, steps, detect_s)
    lines.append(f"  totals: detect {total['detect_s']:.2f} s, plan {total['plan_s']:.2f} s, "
                 f"liquidate {total['liquidate_s']:.2f} s, move {total['move_s']:.3f} s; "
                 f"NumPy detection alone {sum(detect_s):.2f} s (nothing in NumPy plans or "
                 f"executes liquidations)")
    report["cascade"]["lines"] = lines
    benchmark.extra_info.update(rounds=len(core), core_s=core_s, replica_accounts=m,
                                numpy_detect_s=sum(detect_s),
                                **{f"python_{k}": v for k, v in total.items()})
    for line in lines:
        _say(line)
