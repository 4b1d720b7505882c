"""Requirement curves: every model evaluated as one branch-free piecewise form.

Tiered tables of any length up to the 64-bracket limit, checked bracket by bracket
against the published formula (MM = notional x MMR - cum) computed here in
Python; the batch pass (``evaluate_all``, which evaluates cached curves for
tables of up to 16 brackets and takes the general path beyond) equal to each
account's own summary, to the bit, on a book mixing every model and case the
curves cover and those they do not (resting orders, open-interest caps, values
at entry).
"""

from __future__ import annotations

import marginkit as mk
import numpy as np
import pytest

NOW = 1_700_000_000.0
EXPIRY = NOW + 90 * 86_400.0


def brackets(n: int) -> list[tuple[float, float, float]]:
    """n increasing brackets: floors 0, 10k, 20k, ...; MMR 0.5 %, 1 %, ...; IMR 2 x MMR."""
    return [(10_000.0 * k, 0.005 * (k + 1) / n * 10, 0.01 * (k + 1) / n * 10)
            for k in range(n)]


def tiered_reference(table, notional: float) -> tuple[float, float]:
    """IM and MM of a notional by Binance's recurrence, independently of the engine."""
    cum_mm = cum_im = 0.0
    k = 0
    for i in range(1, len(table)):
        if table[i][0] <= notional:
            cum_mm += table[i][0] * (table[i][1] - table[i - 1][1])
            cum_im += table[i][0] * (table[i][2] - table[i - 1][2])
            k = i
    return notional * table[k][2] - cum_im, notional * table[k][1] - cum_mm


def engine_with(table) -> mk.Engine:
    e = mk.Engine()
    e.now = NOW
    e.add_asset("USD", price=1.0, time=NOW)
    e.add_asset("BTC", price=50_000.0, time=NOW)
    e.add_model("tiers", "tiered", brackets=table)
    e.add_instrument("BTC-PERP", model="tiers", kind="perpetual", underlying="BTC",
                     settle="USD", mark=50_000.0, time=NOW)
    return e


@pytest.mark.parametrize("n", [1, 2, 9, 15, 16, 17, 31, 40, 63, 64])
def test_tiered_tables_of_every_length_follow_the_formula(n):
    table = brackets(n)
    e = engine_with(table)
    floors = [f for f, _, _ in table[1:]]
    # Notionals around every floor (just below, on, just above) and inside each bracket.
    notionals = sorted({x for f in floors for x in (f * (1 - 1e-9), f, f * (1 + 1e-9))}
                       | {1_000.0 + 10_000.0 * k for k in range(n + 2)})
    for i, notional in enumerate(notionals):
        name = f"a{i}"
        e.add_account(name, "USD")
        e.deposit(name, "USD", 1e9)
        qty = notional / 50_000.0
        e.fill(name, "BTC-PERP", -qty if i % 2 else qty, 50_000.0, fee=0.0)
    ev = e.evaluate_all()
    for i, notional in enumerate(notionals):
        im, mm = tiered_reference(table, abs(notional))
        s = e.summary(f"a{i}")
        assert s.im == pytest.approx(im, rel=1e-12, abs=1e-9), (n, notional)
        assert s.mm == pytest.approx(mm, rel=1e-12, abs=1e-9), (n, notional)
        assert (ev.im[i], ev.mm[i]) == (s.im, s.mm)


def test_more_than_64_brackets_is_a_clear_error():
    e = mk.Engine()
    with pytest.raises(ValueError, match="at most 64 brackets"):
        e.add_model("too_many", "tiered", brackets=brackets(65))
    e.add_model("too_many", "tiered", brackets=brackets(64))  # nothing was added


def mixed_book() -> mk.Engine:
    """Every model and position case: linear and inverse futures (linear_rate), short
    and long tables (tiered, 5 and 20 brackets, one valued at entry), an
    open-interest cap in force, long and short options, resting orders, an
    order-only position, and settlement in another asset than the margin asset."""
    e = mk.Engine()
    e.now = NOW
    e.add_asset("USD", price=1.0, time=NOW, quantum=0.01)
    e.add_asset("USDT", price=0.999, time=NOW, quantum=0.01)
    e.add_asset("BTC", price=60_000.0, time=NOW, quantum=1e-8)
    e.add_model("lin", "linear_rate", im_base=0.02, im_slope=5e-6, mm_base=0.01, mm_slope=5e-6)
    e.add_model("short_table", "tiered", brackets=brackets(5))
    e.add_model("long_table", "tiered", brackets=brackets(20))
    e.add_model("at_entry", "tiered", brackets=brackets(4), value_at_entry=True)
    e.add_model("oi", "tiered", brackets=brackets(3), oi_lower=1e6, oi_upper=1e8)
    e.add_model("opt", "option_standard")
    spec = dict(underlying="BTC", time=NOW)
    e.add_instrument("LIN", model="lin", kind="perpetual", settle="USD", mark=60_100.0, **spec)
    e.add_instrument("INV", model="lin", kind="future", settle="BTC", inverse=True,
                     expiry=EXPIRY, mark=60_500.0, contract_size=10.0, **spec)
    e.add_instrument("SHORT", model="short_table", kind="perpetual", settle="USDT",
                     mark=59_900.0, **spec)
    e.add_instrument("LONG", model="long_table", kind="perpetual", settle="USD",
                     mark=60_000.0, **spec)
    e.add_instrument("ENTRY", model="at_entry", kind="perpetual", settle="USD",
                     mark=60_000.0, **spec)
    e.add_instrument("OI", model="oi", kind="perpetual", settle="USD", mark=60_000.0, **spec)
    e.add_instrument("CALL", model="opt", kind="option", settle="USD", strike=65_000.0, cp="C",
                     expiry=EXPIRY, mark=2_000.0, **spec)
    e.add_instrument("PUT", model="opt", kind="option", settle="BTC", inverse=True,
                     strike=55_000.0, cp="P", expiry=EXPIRY, mark=0.02, **spec)
    e.set_open_interest("OI", 500.0)
    rng = np.random.default_rng(3)
    names = ["LIN", "INV", "SHORT", "LONG", "ENTRY", "OI", "CALL", "PUT"]
    for k in range(60):
        a = f"acct{k}"
        e.add_account(a, "USD" if k % 3 else "BTC")
        e.deposit(a, "USD", float(rng.uniform(1e3, 5e5)))
        e.deposit(a, "BTC", float(rng.uniform(0.0, 3.0)))
        for name in rng.choice(names, size=int(rng.integers(1, 7)), replace=False):
            mark = e.mark(name)
            qty = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.01, 40.0))
            e.fill(a, name, qty, mark * float(rng.uniform(0.95, 1.05)), fee=0.0)
        if k % 5 == 0:
            e.place_order(a, "LONG", float(rng.uniform(0.1, 30.0)), 60_000.0)
        if k % 7 == 0:
            e.place_order(a, "CALL", -float(rng.uniform(0.1, 10.0)), 2_000.0)
    return e


def test_evaluate_all_equals_each_summary_on_a_mixed_book():
    e = mixed_book()
    for move in (1.0, 0.93, 1.12):
        e.set_price("BTC", 60_000.0 * move, NOW + move)
        for name, mark in (("LIN", 60_100.0), ("SHORT", 59_900.0), ("LONG", 60_000.0),
                           ("ENTRY", 60_000.0), ("OI", 60_000.0), ("INV", 60_500.0)):
            e.set_mark(name, mark * move, NOW + move)
        ev = e.evaluate_all()
        for k, name in enumerate(e.accounts):
            s = e.summary(name)
            assert (ev.equity[k], ev.im[k], ev.mm[k], ev.available[k]) == (
                s.equity, s.im, s.mm, s.available), (move, name)
            assert mk.HEALTH_STATES[int(ev.state[k])] == s.state


def test_attribution_sums_to_the_summary_on_a_mixed_book():
    """Per-position requirements (the general path, one position at a time, each
    rounded up to the margin asset's quantum) add up to the account's (the batch
    curves, rounded once): between the sum and the sum plus a quantum a position."""
    e = mixed_book()
    e.evaluate_all()
    for k, name in enumerate(e.accounts):
        quantum = 1e-8 if k % 3 == 0 else 0.01  # BTC- or USD-margined
        rows = e.attribution(name)
        s = e.summary(name)
        total = sum(r.im for r in rows)
        assert s.im <= total + 1e-9, name
        assert total <= s.im + quantum * len(rows) * 1.000001 + 1e-9, name
