"""The margin engine against the code a user would write without it.

1. ``check_order`` from Python on one cross account of 20 linear USDC-settled
   perpetuals and dated futures (tiered and linear_rate models), against an
   incremental plain-Python check of the same account (``_baselines.py``):
   1,000 mixed orders per round, plus per-call latencies (p50/p99) measured with
   ``time.perf_counter_ns`` around each of 200,000 calls.
2. ``Engine.evaluate_all()`` after a market update on 1,000,000 accounts of 10
   positions (50 instruments), 1 thread and all threads, against NumPy on the
   same book in column form.

Every result is checked against its baseline. Per-call latencies and the time
to build the book print in their own section of the terminal summary.
With ``--benchmark-disable`` (the CI smoke run) the book has 10,000 accounts and
the latency sample 2,000 calls; ``MARGINKIT_BENCH_ACCOUNTS`` overrides the size.

Run: ``python -m pytest benchmarks/test_bench_engine.py``; figures in RESULTS.md.
"""

from __future__ import annotations

import math
import os
import time
from datetime import datetime, timezone

import _baselines as bl
import marginkit as mk
import numpy as np
import pytest
from _timing import (
    latency_stats,
    per_call_ns,
    run_orders,
    smoke_run,
    timer_overhead_ns,
    write_latency_table,
)

NOW = 1_750_000_000  # 2025-06-15 15:06:40 UTC: the engine's clock and every price's time
MAX_AGE = 60.0
QUANTUM = 0.01  # USDC amounts round to cents
TAKER_FEE = 0.0005
# underlying: (index price in USDC, contract size, bracket scale, rate multiple)
UNDERLYINGS = {
    "BTC": (100_000.0, 0.001, 1.0, 1.0),
    "ETH": (3_500.0, 0.01, 1.0, 1.0),
    "SOL": (180.0, 0.1, 0.2, 1.25),
    "XRP": (2.4, 10.0, 0.2, 1.25),
    "DOGE": (0.32, 100.0, 0.1, 1.5),
    "ADA": (0.9, 10.0, 0.1, 1.5),
    "AVAX": (35.0, 0.1, 0.1, 1.5),
    "LINK": (22.0, 1.0, 0.1, 1.5),
    "DOT": (7.0, 1.0, 0.1, 1.5),
    "LTC": (110.0, 0.1, 0.1, 1.5),
}
TIERED_UNDERLYINGS = ("BTC", "ETH", "SOL", "XRP", "DOGE")  # the others: linear_rate
FUTURES = ((7, 0.001), (30, 0.004), (90, 0.012), (180, 0.025))  # (days to expiry, basis)
PERP_BASIS = 0.0002
# Binance-style USDT-M brackets for BTC: (notional floor, mmr, imr)
BTC_BRACKETS = ((0, 0.004, 0.008), (50_000, 0.005, 0.01), (250_000, 0.01, 0.02),
                (1_000_000, 0.025, 0.05), (5_000_000, 0.05, 0.1), (20_000_000, 0.1, 0.2),
                (50_000_000, 0.125, 0.25), (100_000_000, 0.15, 1 / 3),
                (200_000_000, 0.25, 0.5))

CHECK_GROUP = "check_order, 1,000 mixed orders, 20-position account"
CHECK_ROLES = ("baseline", "marginkit, names", "marginkit, ids")
EVAL_GROUP = "evaluate_all after a price update, 10 positions per account"
EVAL_ROLES = ("baseline", "marginkit, 1 thread", "marginkit, all threads")
N_ACCOUNTS = 1_000_000
N_ACCOUNTS_SMOKE = 10_000
PER_ACCOUNT = 10
CHECK_POSITIONS = 20
LATENCY_CALLS, LATENCY_CALLS_SMOKE, WARMUP_CALLS = 200_000, 2_000, 20_000

_REPORT: dict[str, dict] = {"latency": {}, "book": {}, "check": {}}


# ---- reporting: a section of the terminal summary, whatever the capture mode -------


class _Reporter:
    def pytest_terminal_summary(self, terminalreporter):
        tr = terminalreporter
        lat, book, check = _REPORT["latency"], _REPORT["book"], _REPORT["check"]
        if not (lat or book):
            return
        tr.section("marginkit engine: per-call latency and book size")
        if lat:
            write_latency_table(tr, "check_order per call", check, lat, CHECK_ROLES, 20,
                                "marginkit p50 <= 1 us, p99 <= 3 us")
        if book:
            states = ", ".join(f"{name} {n:,}" for name, n in book.get("states", {}).items())
            tr.write_line(
                f"evaluate_all book: {book['accounts']:,} accounts, {book['positions']:,} "
                f"positions, {book['instruments']} instruments; built through the Python API "
                f"in {book['build_s']:.1f} s (add_account {book['add_account_s']:.1f} s, "
                f"deposit {book['deposit_s']:.1f} s, fill {book['fill_s']:.1f} s); "
                f"column form in {book['columns_s']:.2f} s")
            tr.write_line(f"  states: {states}")
            if "threads" in book:
                tr.write_line(f"  all threads = {book['threads']}")


@pytest.fixture(scope="module")
def report(request):
    pm = request.config.pluginmanager
    if not pm.has_plugin("marginkit-engine-bench-report"):
        pm.register(_Reporter(), "marginkit-engine-bench-report")
    return _REPORT


# ---- the venue -------------------------------------------------------------------


def _expiry_name(days: int) -> tuple[int, str]:
    t = NOW + days * 86_400
    return t, datetime.fromtimestamp(t, timezone.utc).strftime("%d%b%y").upper()


def make_venue():
    """Models and 50 linear USDC-settled instruments (a perpetual and four
    dated futures per underlying), with their marks, as plain data."""
    models, instruments = [], []
    for u, (price, cs, scale, mult) in UNDERLYINGS.items():
        if u in TIERED_UNDERLYINGS:
            brackets = [(f * scale, m * mult, i * mult) for f, m, i in BTC_BRACKETS]
            models.append((f"{u}_tiered", "tiered", {"brackets": brackets},
                           bl.tiered_model(brackets)))
        else:
            # rate grows by 0.5 % per 1M USDC of position
            slope = 0.005 * price / 1e6
            p = {"im_base": 0.02 * mult, "im_slope": slope, "mm_base": 0.01 * mult,
                 "mm_slope": slope}
            models.append((f"{u}_linear", "linear_rate", p, bl.linear_model(**p)))
        model = len(models) - 1
        instruments.append({"name": f"{u}_USDC-PERPETUAL", "underlying": u, "kind": "perpetual",
                            "expiry": 0, "model": model, "cs": cs, "index": price,
                            "mark": price * (1 + PERP_BASIS)})
        for days, basis in FUTURES:
            expiry, tag = _expiry_name(days)
            instruments.append({"name": f"{u}_USDC-{tag}", "underlying": u, "kind": "future",
                                "expiry": expiry, "model": model, "cs": cs, "index": price,
                                "mark": price * (1 + basis)})
    return models, instruments


def new_engine(models, instruments) -> mk.Engine:
    eng = mk.Engine()
    eng.now = NOW
    eng.max_age = MAX_AGE
    eng.add_asset("USDC", price=1.0, quantum=QUANTUM, time=NOW)
    for u, (price, *_) in UNDERLYINGS.items():
        eng.add_asset(u, price=price, time=NOW)
    for name, kind, params, _ in models:
        eng.add_model(name, kind, **params)
    for ins in instruments:
        iid = eng.add_instrument(
            ins["name"], model=ins["model"], kind=ins["kind"], underlying=ins["underlying"],
            settle="USDC", inverse=False, contract_size=ins["cs"],
            expiry=ins["expiry"] or None, taker_fee=TAKER_FEE, mark=ins["mark"], time=NOW)
        assert eng.instruments[iid] == ins["name"]
    return eng


def random_positions(rng, instruments, n_accounts: int, per_account: int):
    """``per_account`` distinct instruments per account, sizes with a lognormal
    notional (median 30k USDC), either side; entries within a few % of the mark.
    Returns flat arrays sorted by account, and each account's collateral."""
    n_inst = len(instruments)
    mark = np.array([i["mark"] for i in instruments])
    cs = np.array([i["cs"] for i in instruments])
    order = np.argsort(rng.random((n_accounts, n_inst), dtype=np.float32), axis=1)
    inst = order[:, :per_account].astype(np.int64).ravel()
    account = np.repeat(np.arange(n_accounts), per_account)
    notional = np.clip(rng.lognormal(math.log(30_000), 1.0, inst.size), 200.0, 5e6)
    contracts = np.maximum(1.0, np.round(notional / (cs[inst] * mark[inst])))
    size = np.where(rng.random(inst.size) < 0.5, -contracts, contracts)
    price = mark[inst] * (1.0 + rng.normal(0.0, 0.02, inst.size))
    total = np.add.reduceat(contracts * cs[inst] * mark[inst], np.arange(0, inst.size,
                                                                          per_account))
    collateral = np.round(total * rng.uniform(0.01, 0.12, n_accounts), 2) + 100.0
    return account, inst, size, price, collateral


def load_positions(eng, accounts, collateral, account, inst, size, price):
    """Through the public API: add_account, deposit, one fill per position (no
    fee, so collateral = deposit). Returns the seconds each step took."""
    t0 = time.perf_counter()
    for name in accounts:
        eng.add_account(name, "USDC")
    t1 = time.perf_counter()
    for a, amount in enumerate(collateral.tolist()):
        eng.deposit(a, 0, amount)
    t2 = time.perf_counter()
    fill = eng.fill
    for a, i, q, p in zip(account.tolist(), inst.tolist(), size.tolist(), price.tolist(),
                          strict=True):
        fill(a, i, q, p, 0.0)
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2


def _close(got, want, scale, what):
    """Equal to 1e-9 relative to the larger of the value and the account's scale."""
    bad = ~(np.abs(got - want) <= 1e-9 * np.maximum(np.abs(want), scale))
    assert not bad.any(), (f"{what}: {int(bad.sum())} differ, e.g. account "
                           f"{int(np.flatnonzero(bad)[0])}: {got[bad][0]!r} vs {want[bad][0]!r}")


# ---- 1. check_order -------------------------------------------------------------


@pytest.fixture(scope="module")
def check_case(request):
    rng = np.random.default_rng(2024)
    models, instruments = make_venue()
    eng = new_engine(models, instruments)
    _, inst, size, price, _ = random_positions(rng, instruments, 1, CHECK_POSITIONS)
    entry = (size * price) / size  # the engine's average entry of a first fill
    names = [instruments[i]["name"] for i in inst]
    table = {ins["name"]: (models[ins["model"]][3], ins["cs"], ins["mark"], ins["index"],
                           TAKER_FEE, ins["expiry"], float(NOW)) for ins in instruments}
    # collateral: equity = 1.5 x IM (healthy, with room for ~80 % of the orders below)
    im = upnl = 0.0
    for name, q, e in zip(names, size.tolist(), entry.tolist(), strict=True):
        model, cs, mark, index, *_ = table[name]
        im += bl.requirement(model, cs, q, mark, index)[0]
        upnl += q * cs * (mark - e)
    collateral = round(1.5 * im - upnl, 2)
    account = "trader-1"
    aid = eng.add_account(account, "USDC")
    eng.deposit(account, "USDC", collateral)
    for i, q, p in zip(inst.tolist(), size.tolist(), price.tolist(), strict=True):
        eng.fill(aid, i, q, p, 0.0)
    checker = bl.PyPreTradeChecker(table, quantum=QUANTUM, now=float(NOW), max_age=MAX_AGE)
    checker.add_account(account, collateral,
                        [(n, q, e, 0.0, 0.0) for n, q, e in
                         zip(names, size.tolist(), entry.tolist(), strict=True)], float(NOW))
    # orders: 80 % on the account's instruments (adding, reducing, flipping), 20 % on
    # others; notional lognormal (median 100k USDC); price within 0.2 % of the mark
    n = WARMUP_CALLS + LATENCY_CALLS
    held = inst[rng.integers(0, CHECK_POSITIONS, n)]
    other = rng.integers(0, len(instruments), n)
    oi = np.where(rng.random(n) < 0.8, held, other)
    mark = np.array([i["mark"] for i in instruments])[oi]
    cs = np.array([i["cs"] for i in instruments])[oi]
    notional = rng.lognormal(math.log(100_000), 1.2, n)
    qty = np.maximum(1.0, np.round(notional / (cs * mark)))
    qty = np.where(rng.random(n) < 0.5, -qty, qty)
    px = np.round(mark * (1.0 + rng.uniform(-0.002, 0.002, n)), 6)
    inames = [ins["name"] for ins in instruments]
    by_name = [(account, inames[i], q, p)
               for i, q, p in zip(oi.tolist(), qty.tolist(), px.tolist(), strict=True)]
    by_id = [(aid, i, q, p) for i, q, p in zip(oi.tolist(), qty.tolist(), px.tolist(),
                                               strict=True)]
    return {"engine": eng, "checker": checker, "names": by_name, "ids": by_id,
            "positions": len(eng.positions(account))}


def _check_fn(case, role):
    if role == "baseline":
        return case["checker"].check_order, case["names"]
    return case["engine"].check_order, case["names" if role == "marginkit, names" else "ids"]


def test_check_order_agrees_with_baseline(check_case, report):
    eng, checker = check_case["engine"], check_case["checker"]
    assert check_case["positions"] == CHECK_POSITIONS
    names, ids = check_case["names"][:20_000], check_case["ids"][:20_000]
    edge = [("trader-1", names[0][1], 0.0, 1.0), ("trader-1", names[0][1], math.nan, 1.0),
            ("trader-1", names[0][1], 1.0, 0.0), ("trader-1", names[0][1], 1.0, -5.0),
            ("trader-1", "NOPE-PERPETUAL", 1.0, 1.0), ("nobody", names[0][1], 1.0, 1.0)]
    accepted = 0
    for (a, i, q, p), by_id in zip(names + edge, ids + [None] * len(edge), strict=True):
        want = checker.check_order(a, i, q, p)
        for got in (eng.check_order(a, i, q, p),) + ((eng.check_order(*by_id),) if by_id else ()):
            assert (got.accepted, got.reason) == want[:2], (a, i, q, p, got, want)
            scale = max(abs(want[4]), want[2], 1.0)
            for g, w in zip((got.im_after, got.mm_after, got.equity_after, got.available_after),
                            want[2:], strict=True):
                assert abs(g - w) <= 1e-9 * max(abs(w), scale), (a, i, q, p, got, want)
        accepted += want[0]
    rate = accepted / (len(names) + len(edge))
    assert 0.3 < rate < 0.95, f"orders accepted: {rate:.0%}; the mix should exercise both"
    report["check"]["accept_rate"] = rate


@pytest.mark.parametrize("role", CHECK_ROLES)
def test_check_order(timed, benchmark, check_case, report, role):
    check, orders = _check_fn(case=check_case, role=role)
    timed(CHECK_GROUP, role, run_orders, check, orders[:1000])
    # per-call latencies (a round of pytest-benchmark times many calls together)
    calls = LATENCY_CALLS_SMOKE if benchmark.disabled else LATENCY_CALLS
    warmup = min(WARMUP_CALLS, calls)
    run_orders(check, orders[LATENCY_CALLS:LATENCY_CALLS + warmup])
    ns = per_call_ns(check, orders[:calls])
    timer = timer_overhead_ns()
    stats = latency_stats(ns)
    benchmark.extra_info.update({f"per_call_{k}_ns": v for k, v in stats.items()})
    benchmark.extra_info["per_call_calls"] = calls
    report["latency"][role] = stats
    report["check"].update(calls=calls, warmup=warmup, timer_ns=timer)


# ---- 2. evaluate_all ------------------------------------------------------------------


@pytest.fixture(scope="module")
def book(request, report):
    n = int(os.environ.get("MARGINKIT_BENCH_ACCOUNTS", 0)) or (
        N_ACCOUNTS_SMOKE if smoke_run(request.config) else N_ACCOUNTS)
    rng = np.random.default_rng(11)
    models, instruments = make_venue()
    account, inst, size, price, collateral = random_positions(rng, instruments, n, PER_ACCOUNT)
    t0 = time.perf_counter()
    eng = new_engine(models, instruments)
    steps = load_positions(eng, [f"acct-{k:07d}" for k in range(n)], collateral, account, inst,
                           size, price)
    t1 = time.perf_counter()
    columns = bl.column_book(
        account=account, instrument=inst, size=size, entry=(size * price) / size,
        collateral=collateral, models=[m[3] for m in models],
        model_of=[i["model"] for i in instruments], mark=[i["mark"] for i in instruments],
        index=[i["index"] for i in instruments], contract_size=[i["cs"] for i in instruments],
        quantum=QUANTUM)
    t2 = time.perf_counter()
    report["book"].update(accounts=n, positions=int(inst.size), instruments=len(instruments),
                          build_s=t1 - t0, add_account_s=steps[0], deposit_s=steps[1],
                          fill_s=steps[2], columns_s=t2 - t1)
    return {"engine": eng, "columns": columns, "tick": (0, instruments[0]["mark"])}


@pytest.fixture(scope="module")
def book_reference(book, report):
    ref = bl.numpy_evaluate(book["columns"])
    counts = np.bincount(ref[4], minlength=len(mk.HEALTH_STATES))
    report["book"]["states"] = dict(zip(mk.HEALTH_STATES, counts.tolist(), strict=True))
    return ref


def reprice_and_evaluate(eng, instrument, mark):
    """A market update (it invalidates every account's cached sums), then the book."""
    eng.set_mark(instrument, mark)
    return eng.evaluate_all()


def assert_same_book(got, want):
    scale = np.maximum(np.abs(want[0]), want[1])
    for name, g, w in zip(("equity", "im", "mm", "available"), got[:4], want[:4], strict=True):
        _close(g, w, scale, name)
    bad = got[4] != want[4]
    assert not bad.any(), f"state: {int(bad.sum())} accounts differ"


@pytest.mark.parametrize("role", EVAL_ROLES)
def test_evaluate_all(timed, book, book_reference, report, role):
    eng = book["engine"]
    if role == "baseline":
        got = timed(EVAL_GROUP, role, bl.numpy_evaluate, book["columns"], rounds=5)
    else:
        before = mk.get_num_threads()
        mk.set_num_threads(1 if role == "marginkit, 1 thread" else 0)
        if role == "marginkit, all threads":
            report["book"]["threads"] = mk.get_num_threads()
        try:
            got = timed(EVAL_GROUP, role, reprice_and_evaluate, eng, *book["tick"], rounds=10)
        finally:
            mk.set_num_threads(before)
    assert_same_book(got, book_reference)
