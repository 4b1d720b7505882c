"""Property tests of the margin engine (hypothesis) on small random books.

A book: USD (price 1), BTC and ETH with random prices; a size-linear model
(``linear_rate``), two bracket tables (``tiered``: one by USD notional for linear
contracts, one by BTC notional for inverse ones), an ``option_standard`` model;
six instruments (linear BTC and ETH perpetuals, an inverse BTC perpetual and
future, an inverse BTC call, a linear ETH put); one to three accounts margined in
USD or BTC, with deposits, fills and resting orders.

Exact figures are recomputed here with ``fractions.Fraction`` from the published
formulas (``Engine.add_model``'s docstring), independently of the engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import marginkit as mk
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
EXPIRY = 1_900_000_000
NOW = 1_700_000_000.0

# name, kind, underlying, settle, inverse, contract_size, model, cp, max |qty| (contracts)
INSTRUMENTS = [
    ("BTC-USD-PERP", "perpetual", "BTC", "USD", False, 0.001, "lin", None, 30_000.0),
    ("ETH-USD-PERP", "perpetual", "ETH", "USD", False, 1.0, "tier_usd", None, 3_000.0),
    ("BTC-PERP", "perpetual", "BTC", "BTC", True, 10.0, "tier_btc", None, 300_000.0),
    ("BTC-FUT", "future", "BTC", "BTC", True, 10.0, "lin", None, 300_000.0),
    ("BTC-C", "option", "BTC", "BTC", True, 1.0, "opt", "C", 30.0),
    ("ETH-P", "option", "ETH", "USD", False, 1.0, "opt", "P", 300.0),
]
NI = len(INSTRUMENTS)
ASSETS = ("USD", "BTC", "ETH")


def _f(lo: float, hi: float):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def _loguniform(lo: float, hi: float):
    return st.floats(math.log(lo), math.log(hi)).map(math.exp)


@st.composite
def bracket_tables(draw, scale: float):
    """(floor, mmr, imr) triples: floors from 0 increasing, rates non-decreasing,
    imr >= mmr (IM - MM may shrink or grow from one bracket to the next)."""
    n = draw(st.integers(1, 4))
    floors = [0.0]
    for _ in range(n - 1):
        floors.append(floors[-1] + draw(_loguniform(0.05, 5.0)) * scale)
    mmr = draw(_f(0.002, 0.02))
    gap = draw(_f(0.0, 0.02))
    out = []
    for fl in floors:
        imr = max(mmr + gap, out[-1][2] if out else 0.0)  # non-decreasing, >= mmr
        out.append((fl, mmr, imr))
        mmr += draw(_f(0.0, 0.05))
        gap = max(0.0, gap + draw(_f(-0.01, 0.02)))
    return out


@dataclass
class Book:
    quantum: float
    prices: dict[str, float]
    haircut_eth: list[tuple[float, float]]
    lin: dict[str, float]
    tier_usd: list[tuple[float, float, float]]
    tier_btc: list[tuple[float, float, float]]
    opt: dict[str, float]
    strikes: tuple[float, float]
    marks: list[float]
    margin_assets: list[str]
    deposits: list[tuple[int, str, float]]
    fills: list[tuple[int, int, float, float]]
    orders: list[tuple[int, int, float, float]] = field(default_factory=list)
    taker_fee: float = 0.0


def _mark_for(i: int, prices: dict[str, float], strikes, draw) -> float:
    kind, und = INSTRUMENTS[i][1], INSTRUMENTS[i][2]
    if kind == "option":
        if INSTRUMENTS[i][3] == "BTC":  # inverse: coin per unit
            intrinsic = max(prices["BTC"] - strikes[0], 0.0) / prices["BTC"]
            return intrinsic + draw(_f(0.0, 0.1))
        intrinsic = max(strikes[1] - prices["ETH"], 0.0)
        return intrinsic + draw(_f(0.0, 0.1)) * prices["ETH"]
    return prices[und] * (1.0 + draw(_f(-0.03, 0.03)))


def _qty(draw, i: int) -> float:
    q = draw(_f(0.001, 1.0)) * INSTRUMENTS[i][8]
    return q if draw(st.booleans()) else -q


def _trade_price(draw, i: int, mark: float) -> float:
    p = mark * (1.0 + draw(_f(-0.05, 0.05)))
    if INSTRUMENTS[i][1] == "option":
        return max(p, 0.0)
    return p


@st.composite
def books(draw, *, quantum: float | None = None, orders: bool = True, fee: bool = False):
    prices = {"USD": 1.0, "BTC": draw(_f(20_000.0, 100_000.0)), "ETH": draw(_f(1_000.0, 5_000.0))}
    q = draw(st.sampled_from([0.0, 0.01])) if quantum is None else quantum
    im_base = draw(_f(0.01, 0.05))
    lin = dict(im_base=im_base, im_slope=draw(_f(0.0, 1e-4)),
               mm_base=im_base * draw(_f(0.2, 1.0)))
    lin["mm_slope"] = lin["im_slope"] * draw(_f(0.0, 1.0))
    opt = dict(im_otm=draw(_f(0.1, 0.2)), im_min=draw(_f(0.05, 0.12)), mm=draw(_f(0.03, 0.1)),
               mm_mark_call=draw(_f(0.0, 0.1)), mm_mark_put=draw(_f(0.0, 0.1)),
               liq_fee=draw(_f(0.0, 0.005)))
    strikes = (prices["BTC"] * draw(_f(0.7, 1.3)), prices["ETH"] * draw(_f(0.7, 1.3)))
    marks = [_mark_for(i, prices, strikes, draw) for i in range(NI)]
    n_acc = draw(st.integers(1, 3))
    margin_assets = [draw(st.sampled_from(["USD", "BTC"])) for _ in range(n_acc)]
    deposits = []
    for a in range(n_acc):
        deposits.append((a, "USD", draw(_loguniform(100.0, 5e6))))
        if draw(st.booleans()):
            deposits.append((a, "BTC", draw(_loguniform(0.01, 50.0))))
        if draw(st.booleans()):
            deposits.append((a, "ETH", draw(_loguniform(0.1, 500.0))))
    fills = []
    for _ in range(draw(st.integers(0, 6))):
        a, i = draw(st.integers(0, n_acc - 1)), draw(st.integers(0, NI - 1))
        fills.append((a, i, _qty(draw, i), _trade_price(draw, i, marks[i])))
    book_orders = []
    if orders:
        for _ in range(draw(st.integers(0, 3))):
            a, i = draw(st.integers(0, n_acc - 1)), draw(st.integers(0, NI - 1))
            book_orders.append((a, i, _qty(draw, i), _trade_price(draw, i, marks[i])))
    haircut_eth = [(draw(_f(1.0, 100.0)), draw(_f(0.0, 0.2)))]
    haircut_eth.append((haircut_eth[0][0] * 2, haircut_eth[0][1] + draw(_f(0.0, 0.3))))
    return Book(q, prices, haircut_eth, lin, draw(bracket_tables(1e6)),
                draw(bracket_tables(20.0)), opt, strikes, marks, margin_assets, deposits,
                fills, book_orders, draw(_f(0.0, 0.001)) if fee else 0.0)


def build(book: Book) -> mk.Engine:
    eng = mk.Engine()
    eng.now = NOW
    eng.add_asset("USD", price=1.0, time=NOW, quantum=book.quantum)
    eng.add_asset("BTC", price=book.prices["BTC"], time=NOW)
    eng.add_asset("ETH", price=book.prices["ETH"], time=NOW, haircuts=book.haircut_eth)
    eng.add_model("lin", "linear_rate", **book.lin)
    eng.add_model("tier_usd", "tiered", brackets=book.tier_usd)
    eng.add_model("tier_btc", "tiered", brackets=book.tier_btc)
    eng.add_model("opt", "option_standard", **book.opt)
    for i, (name, kind, und, settle, inv, cs, model, cp, _) in enumerate(INSTRUMENTS):
        strike = None
        if kind == "option":
            strike = book.strikes[0] if und == "BTC" else book.strikes[1]
        eng.add_instrument(name, model=model, kind=kind, underlying=und, settle=settle,
                           inverse=inv, contract_size=cs, strike=strike, cp=cp,
                           expiry=EXPIRY if kind in ("future", "option") else None,
                           taker_fee=book.taker_fee, mark=book.marks[i], time=NOW)
    for a, asset in enumerate(book.margin_assets):
        eng.add_account(f"acct{a}", asset)
    for a, asset, amount in book.deposits:
        eng.deposit(a, asset, amount)
    for a, i, qty, price in book.fills:
        eng.fill(a, i, qty, price, fee=0.0)
    for a, i, qty, price in book.orders:
        eng.place_order(a, i, qty, price)
    return eng


def snapshot(eng: mk.Engine, account: int):
    s = eng.summary(account)
    return (
        tuple(repr(getattr(s, k)) for k in ("equity", "im", "mm", "available", "margin_ratio",
                                             "state", "stale")),
        tuple(eng.balance(account, a) for a in ASSETS),
        tuple(tuple(sorted(p.items())) for p in eng.positions(account)),
        tuple((r.instrument, r.size, r.entry, r.mark, r.im, r.mm, r.equity)
              for r in eng.attribution(account)),
        tuple(eng.price(a) for a in ASSETS),
        tuple(eng.mark(i) for i in range(NI)),
    )


# ---- exact figures (Fractions, from the published formulas) ---------------------------


def _F(x: float) -> Fraction:
    return Fraction(x)


def exact_requirement(book: Book, i: int, size: Fraction) -> tuple[Fraction, Fraction]:
    """(IM, MM) of a position of ``size`` contracts in the settlement currency."""
    if size == 0:
        return Fraction(0), Fraction(0)
    _, _, und, settle, inv, cs, model, cp, _ = INSTRUMENTS[i]
    cs = _F(cs)
    mark = _F(book.marks[i])
    index = _F(book.prices[und]) if inv else _F(book.prices[und]) / _F(book.prices[settle])
    aq = abs(size)
    if model == "lin":
        p = {k: _F(v) for k, v in book.lin.items()}
        base = aq * cs / index if inv else aq * cs
        value = Fraction(1) if inv else index
        return (base * (p["im_base"] + p["im_slope"] * base) * value,
                base * (p["mm_base"] + p["mm_slope"] * base) * value)
    if model in ("tier_usd", "tier_btc"):
        table = book.tier_usd if model == "tier_usd" else book.tier_btc
        n = aq * cs / mark if inv else aq * cs * mark
        cum_mm = cum_im = Fraction(0)
        rates = (Fraction(0), Fraction(0))
        for k, (fl, mmr, imr) in enumerate(table):
            fl, mmr, imr = _F(fl), _F(mmr), _F(imr)
            if k > 0:
                if fl > n:
                    break
                cum_mm += fl * (mmr - rates[0])
                cum_im += fl * (imr - rates[1])
            rates = (mmr, imr)
        return n * rates[1] - cum_im, n * rates[0] - cum_mm
    # option_standard
    p = {k: _F(v) for k, v in book.opt.items()}
    units = aq * cs
    if size > 0:
        return units * mark, Fraction(0)
    strike = _F(book.strikes[0] if und == "BTC" else book.strikes[1])
    spot = _F(book.prices[und])
    scale = 1 / spot if inv else Fraction(1)
    u = index * scale
    otm = (max(strike - spot, 0) if cp == "C" else max(spot - strike, 0)) * scale
    mm_mark = p["mm_mark_call"] if cp == "C" else p["mm_mark_put"]
    mm = max(p["mm"] * u, mm_mark * mark) + mark + p["liq_fee"] * u
    im = max(max(p["im_otm"] * u - otm, p["im_min"] * u) + mark, mm)
    return units * im, units * mm


def exact_account(book: Book, eng: mk.Engine, account: int):
    """Exact (equity, IM, MM, [(IM, MM) per attribution row]) in the margin asset."""
    margin = book.margin_assets[account]
    pm = _F(book.prices[margin])
    equity = Fraction(0)
    for asset in ASSETS:
        bal = _F(eng.balance(account, asset))
        price = _F(book.prices[asset])
        if asset == "ETH" and bal > 0:
            value, lo = Fraction(0), Fraction(0)
            for upto, cut in book.haircut_eth:
                if bal <= lo:
                    break
                value += (min(bal, _F(upto)) - lo) * (1 - _F(cut))
                lo = _F(upto)
            equity += value * price / pm
        else:
            equity += bal * price / pm
    rows = []
    for pos in eng.positions(account):
        i = eng.instruments.index(pos["instrument"])
        _, kind, _, settle, inv, cs, *_ = INSTRUMENTS[i]
        f = _F(book.prices[settle]) / pm
        q, bids, asks = _F(pos["size"]), _F(pos["bids"]), _F(pos["asks"])
        im, mm = exact_requirement(book, i, q)
        for alt in ((q + bids) if bids > 0 else None, (q - asks) if asks > 0 else None):
            if alt is not None:
                im = max(im, exact_requirement(book, i, alt)[0])
        mark, entry, cs = _F(book.marks[i]), _F(pos["entry"]), _F(cs)
        if q != 0:
            if kind == "option":
                equity += q * cs * mark * f
            elif inv:
                equity += q * cs * (1 / entry - 1 / mark) * f
            else:
                equity += q * cs * (mark - entry) * f
        rows.append((im * f, mm * f))
    return equity, sum(r[0] for r in rows), sum(r[1] for r in rows), rows


def _is_multiple(x: float, q: float) -> bool:
    return abs(x / q - round(x / q)) <= 1e-6


def _ge(x: float, exact: Fraction) -> bool:
    """x >= exact, up to the representation error of binary floating point."""
    return Fraction(x) >= exact - abs(exact) * Fraction(1, 10**12) - Fraction(1, 10**12)


# ---- invariants ----------------------------------------------------------------------


@SETTINGS
@given(books())
def test_im_at_least_mm_at_least_zero(book):
    eng = build(book)
    for a in range(len(book.margin_assets)):
        s = eng.summary(a)
        assert s.im >= s.mm >= 0.0
        for r in eng.attribution(a):
            assert r.im >= r.mm >= 0.0, r.instrument


@SETTINGS
@given(books(orders=False))
def test_flattening_every_position_leaves_no_requirement(book):
    eng = build(book)
    for a in range(len(book.margin_assets)):
        for pos in eng.positions(a):
            i = pos["instrument"]
            eng.fill(a, i, -pos["size"], eng.mark(i), fee=0.0)
        assert eng.positions(a) == []
        assert eng.attribution(a) == []
        s = eng.summary(a)
        assert (s.im, s.mm) == (0.0, 0.0)
        assert s.state == ("bankrupt" if s.equity < 0 else "healthy")


@st.composite
def book_and_order(draw, **kw):
    book = draw(books(**kw))
    a = draw(st.integers(0, len(book.margin_assets) - 1))
    i = draw(st.integers(0, NI - 1))
    return book, a, i, _qty(draw, i), _trade_price(draw, i, book.marks[i])


@SETTINGS
@given(book_and_order())
def test_incremental_check_equals_full_recompute(case):
    """check_order's figures are those of summary() after filling the order at the
    same price with no fee (no haircut on settlement assets here; see
    test_incremental_check_with_a_haircut_settlement_asset)."""
    book, a, i, qty, price = case
    eng = build(book)
    check = eng.check_order(a, i, qty, price)
    assert check.reason in ("ok", "insufficient_margin", "reduce_only"), check.reason
    eng.fill(a, i, qty, price, fee=0.0)
    s = eng.summary(a)
    tol = dict(rel=1e-12, abs=1e-9)
    assert check.im_after == pytest.approx(s.im, **tol)
    assert check.mm_after == pytest.approx(s.mm, **tol)
    assert check.equity_after == pytest.approx(s.equity, **tol)
    assert check.available_after == pytest.approx(s.available, **tol)


@st.composite
def boundary_case(draw):
    book = draw(books())
    a = draw(st.integers(0, len(book.margin_assets) - 1))
    i = draw(st.integers(0, NI - 1))
    side = draw(st.sampled_from(["buy", "sell"]))
    return book, a, i, side, _trade_price(draw, i, book.marks[i])


def _assert_boundary(eng, a, i, side, price):
    x = eng.max_order_size(a, i, side, price)
    assert x >= 0.0
    if not (math.isfinite(x) and x > 0.0):
        return x
    s = 1.0 if side == "buy" else -1.0
    at = eng.check_order(a, i, s * x, price)
    assert at.accepted, (x, at.reason, at.available_after)
    beyond = eng.check_order(a, i, s * x * (1 + 1e-9), price)
    assert not beyond.accepted, (x, beyond.available_after)
    return x


@SETTINGS
@given(boundary_case())
def test_max_order_size_is_the_boundary_of_check_order(case):
    book, a, i, side, price = case
    _assert_boundary(build(book), a, i, side, price)


@st.composite
def tiered_boundary(draw):
    """One tiered instrument, deposits spread so that the largest order lands in
    any bracket (several floors below it), maybe an existing position and orders."""
    table = draw(bracket_tables(1e5))
    inverse = draw(st.booleans())
    btc = draw(_f(20_000.0, 100_000.0))
    mark = btc * (1 + draw(_f(-0.01, 0.01)))
    if inverse:
        table = [(fl / btc, m, r) for fl, m, r in table]
    deposit = draw(_loguniform(10.0, 1e6))
    side = draw(st.sampled_from(["buy", "sell"]))
    price = mark * (1 + draw(_f(-0.002, 0.01)) * (1 if side == "buy" else -1))
    pos = draw(st.sampled_from([0.0, 0.3, -0.3, 1.0])) * (table[-1][0] or 1.0)
    resting = draw(st.sampled_from([0.0, 0.5])) * (table[-1][0] or 1.0)
    return table, inverse, btc, mark, deposit, side, price, pos, resting


@SETTINGS
@given(tiered_boundary())
def test_max_order_size_boundary_across_bracket_floors(case):
    table, inverse, btc, mark, deposit, side, price, pos, resting = case
    eng = mk.Engine()
    eng.add_asset("USD", price=1.0)
    eng.add_asset("BTC", price=btc)
    eng.add_model("t", "tiered", brackets=table)
    settle = "BTC" if inverse else "USD"
    cs = 10.0 if inverse else 0.01
    eng.add_instrument("X", model="t", kind="perpetual", underlying="BTC", settle=settle,
                       inverse=inverse, contract_size=cs, mark=mark)
    eng.add_account("a", settle)
    eng.deposit("a", settle, deposit / btc if inverse else deposit)
    # notional units -> contracts
    to_contracts = (lambda n: n * mark / cs) if inverse else (lambda n: n / (cs * mark))
    if pos:
        eng.fill("a", "X", to_contracts(pos), mark, fee=0.0)
    if resting:
        eng.place_order("a", "X", to_contracts(resting), mark * 0.99)
        eng.place_order("a", "X", -to_contracts(resting) / 2, mark * 1.01)
    _assert_boundary(eng, "a", "X", side, price)


def _requirement(model: str, params, inverse: bool, kind: str, size: float, cp: str = "P"):
    """(IM, MM) of a lone position of ``size`` contracts, read from attribution()."""
    eng = mk.Engine()
    eng.add_asset("USD", price=1.0)
    eng.add_asset("BTC", price=50_000.0)
    if model == "tiered":
        eng.add_model("m", "tiered", brackets=params)
    else:
        eng.add_model("m", model, **params)
    settle = "BTC" if inverse else "USD"
    mark = 0.05 if (kind == "option" and inverse) else (2_000.0 if kind == "option" else 50_000.0)
    eng.add_instrument("X", model="m", kind=kind, underlying="BTC", settle=settle,
                       inverse=inverse, contract_size=10.0 if inverse and kind != "option" else 1.0,
                       strike=45_000.0 if kind == "option" else None, cp=cp,
                       expiry=EXPIRY if kind == "option" else None, mark=mark)
    eng.add_account("a", settle)
    eng.fill("a", "X", size, mark, fee=0.0)
    r = eng.attribution("a")[0]
    return r.im, r.mm


@st.composite
def model_cases(draw):
    which = draw(st.sampled_from(["linear_rate", "tiered", "option_standard"]))
    inverse = draw(st.booleans())
    if which == "linear_rate":
        im_base = draw(_f(0.0, 0.05))
        slope = draw(_f(0.0, 1e-3))
        params = dict(im_base=im_base, im_slope=slope, mm_base=im_base * draw(_f(0.0, 1.0)),
                      mm_slope=slope * draw(_f(0.0, 1.0)))
        kind, scale = "perpetual", (1e6 if inverse else 100.0)
    elif which == "tiered":
        params = draw(bracket_tables(20.0 if inverse else 1e6))
        kind, scale = "perpetual", (1e6 if inverse else 100.0)
    else:
        params = dict(im_otm=draw(_f(0.0, 0.3)), im_min=draw(_f(0.0, 0.2)),
                      mm=draw(_f(0.0, 0.2)), mm_mark_call=draw(_f(0.0, 0.2)),
                      mm_mark_put=draw(_f(0.0, 0.2)), liq_fee=draw(_f(0.0, 0.01)))
        kind, scale = "option", 100.0
    a, b = sorted((draw(_f(1e-4, 1.0)) * scale, draw(_f(1e-4, 1.0)) * scale))
    sign = draw(st.sampled_from([1.0, -1.0]))
    cp = draw(st.sampled_from(["C", "P"]))
    return which, params, inverse, kind, a, b, sign, cp


@SETTINGS
@given(model_cases())
def test_requirement_monotone_in_size(case):
    which, params, inverse, kind, a, b, sign, cp = case
    im_a, mm_a = _requirement(which, params, inverse, kind, sign * a, cp)
    im_b, mm_b = _requirement(which, params, inverse, kind, sign * b, cp)
    slack = 1e-12 * max(im_b, 1e-300)
    assert im_a <= im_b + slack
    assert mm_a <= mm_b + slack


@SETTINGS
@given(st.booleans(), bracket_tables(1.0), _f(20_000.0, 100_000.0), st.sampled_from([1.0, -1.0]))
def test_tiered_continuous_at_bracket_floors(inverse, table, mark, sign):
    """At each floor the requirement is the same from below and from above."""
    scale = 20.0 if inverse else 1e6
    table = [(fl * scale, m, r) for fl, m, r in table]
    eng = mk.Engine()
    eng.add_asset("USD", price=1.0)
    eng.add_asset("BTC", price=mark)
    eng.add_model("t", "tiered", brackets=table)
    settle = "BTC" if inverse else "USD"
    cs = 10.0 if inverse else 0.001
    eng.add_instrument("X", model="t", kind="perpetual", underlying="BTC", settle=settle,
                       inverse=inverse, contract_size=cs, mark=mark)
    for k, (floor, *_rates) in enumerate(table[1:]):
        contracts = floor * mark / cs if inverse else floor / (cs * mark)
        got = []
        for j, x in enumerate((contracts * (1 - 1e-12), contracts, contracts * (1 + 1e-12))):
            eng.add_account(f"a{k}_{j}", settle)
            eng.fill(f"a{k}_{j}", "X", sign * x, mark, fee=0.0)
            r = eng.attribution(f"a{k}_{j}")[0]
            got.append((r.im, r.mm))
        for im, mm in got[1:]:
            assert im == pytest.approx(got[0][0], rel=1e-9)
            assert mm == pytest.approx(got[0][1], rel=1e-9)


# ---- nothing changes on refusals and errors ----------------------------------------------

BAD_CALLS = [
    ("fill: NaN qty", lambda e, a: e.fill(a, 0, math.nan, 1.0)),
    ("fill: inf price", lambda e, a: e.fill(a, 0, 1.0, math.inf)),
    ("fill: negative price", lambda e, a: e.fill(a, 0, 1.0, -5.0)),
    ("fill: zero price (perpetual)", lambda e, a: e.fill(a, 1, 1.0, 0.0)),
    ("fill: negative option price", lambda e, a: e.fill(a, 4, 1.0, -0.01)),
    ("fill: zero qty", lambda e, a: e.fill(a, 0, 0.0, 100.0)),
    ("fill: unknown instrument", lambda e, a: e.fill(a, "NOPE", 1.0, 1.0)),
    ("fill: instrument id out of range", lambda e, a: e.fill(a, NI, 1.0, 1.0)),
    ("fill: negative fee", lambda e, a: e.fill(a, 0, 1.0, 100.0, fee=-1.0)),
    ("fill: unknown account", lambda e, a: e.fill("nobody", 0, 1.0, 100.0)),
    ("place_order: NaN qty", lambda e, a: e.place_order(a, 0, math.nan, 100.0)),
    ("place_order: negative price", lambda e, a: e.place_order(a, 0, 1.0, -1.0)),
    ("place_order: zero qty", lambda e, a: e.place_order(a, 0, 0.0, 1.0)),
    ("fill_order: unknown order", lambda e, a: e.fill_order(10**9, 1.0, 1.0)),
    ("cancel_order: unknown order", lambda e, a: e.cancel_order(10**9)),
    ("deposit: negative", lambda e, a: e.deposit(a, "USD", -1.0)),
    ("deposit: NaN", lambda e, a: e.deposit(a, "USD", math.nan)),
    ("deposit: unknown asset", lambda e, a: e.deposit(a, "DOGE", 1.0)),
    ("withdraw: NaN", lambda e, a: e.withdraw(a, "USD", math.nan)),
    ("withdraw: negative", lambda e, a: e.withdraw(a, "USD", -1.0)),
    ("withdraw: asset id out of range", lambda e, a: e.withdraw(a, 7, 1.0)),
    ("set_price: negative", lambda e, a: e.set_price("BTC", -1.0, NOW + 10)),
    ("set_price: NaN", lambda e, a: e.set_price("BTC", math.nan, NOW + 10)),
    ("set_price: zero", lambda e, a: e.set_price("ETH", 0.0, NOW + 10)),
    ("set_price: NaN time", lambda e, a: e.set_price("BTC", 1.0, math.nan)),
    ("set_mark: negative (perpetual)", lambda e, a: e.set_mark(0, -1.0, NOW + 10)),
    ("set_mark: negative (option)", lambda e, a: e.set_mark(4, -0.01, NOW + 10)),
    ("set_mark: inf", lambda e, a: e.set_mark(1, math.inf, NOW + 10)),
    ("max_order_size: NaN price", lambda e, a: e.max_order_size(a, 0, "buy", math.nan)),
    ("max_order_size: bad side", lambda e, a: e.max_order_size(a, 0, "hold", 1.0)),
    ("summary: unknown account", lambda e, a: e.summary(99)),
]


@st.composite
def bad_actions(draw):
    book = draw(books())
    a = draw(st.integers(0, len(book.margin_assets) - 1))
    kind = draw(st.sampled_from(["check", "withdraw", "error", "fill_order"]))
    if kind == "check":
        i = draw(st.integers(0, NI - 1))
        return book, a, ("check", i, _qty(draw, i) * draw(st.sampled_from([1.0, 100.0])),
                         _trade_price(draw, i, book.marks[i]))
    if kind == "withdraw":
        return book, a, ("withdraw", draw(st.sampled_from(ASSETS)), draw(_loguniform(1.0, 1e9)))
    if kind == "fill_order":
        return book, a, ("fill_order", draw(st.sampled_from(["too much", "bad price"])))
    return book, a, ("error", draw(st.sampled_from(range(len(BAD_CALLS)))))


@SETTINGS
@given(bad_actions())
def test_refusals_and_errors_change_nothing(case):
    book, a, action = case
    eng = build(book)
    before = [snapshot(eng, k) for k in range(len(book.margin_assets))]
    if action[0] == "check":
        check = eng.check_order(a, action[1], action[2], action[3])
        assume(not check.accepted)
    elif action[0] == "withdraw":
        result = eng.withdraw(a, action[1], action[2])
        assume(result != "ok")
        assert result in ("insufficient_balance", "insufficient_margin", "no_price")
    elif action[0] == "fill_order":
        oid = eng.place_order(a, 2, 5.0, eng.mark(2))
        before = [snapshot(eng, k) for k in range(len(book.margin_assets))]
        with pytest.raises(ValueError):
            if action[1] == "too much":
                eng.fill_order(oid, 6.0, eng.mark(2))
            else:
                eng.fill_order(oid, 1.0, -1.0)
    else:
        _, call = BAD_CALLS[action[1]]
        with pytest.raises(ValueError):
            call(eng, a)
    after = [snapshot(eng, k) for k in range(len(book.margin_assets))]
    assert after == before


# ---- rounding ------------------------------------------------------------------------


@SETTINGS
@given(books(quantum=0.01))
def test_rounding_is_conservative(book):
    """USD rounds to 0.01: requirements (per position and per account) are
    multiples of the quantum at or above the exact amount, equity one at or below;
    the account's IM is at least the unrounded sum of the positions' exact IMs."""
    eng = build(book)
    q = 0.01
    for a, margin in enumerate(book.margin_assets):
        if margin != "USD":
            continue
        eq, im, mm, rows = exact_account(book, eng, a)
        s = eng.summary(a)
        assert _is_multiple(s.im, q) and _is_multiple(s.mm, q) and _is_multiple(s.equity, q)
        assert _ge(s.im, im) and _ge(s.mm, mm)
        assert _ge(-s.equity, -eq)
        attribution = eng.attribution(a)
        assert len(attribution) == len(rows)
        for r, (r_im, r_mm) in zip(attribution, rows, strict=True):
            assert _is_multiple(r.im, q) and _is_multiple(r.mm, q)
            assert _ge(r.im, r_im) and _ge(r.mm, r_mm)
        assert s.im <= sum(r.im for r in attribution) + 1e-9  # one rounding, not n


@SETTINGS
@given(books(quantum=0.01))
def test_rounding_goes_no_further_than_the_next_quantum(book):
    """...and no further than the next multiple of the quantum: IM and MM at most
    the exact amount rounded up to the cent, equity at least the exact amount
    rounded down (the deterministic whole-cent cases are below)."""
    eng = build(book)
    q = Fraction(1, 100)
    tiny = Fraction(1, 10**9)
    for a, margin in enumerate(book.margin_assets):
        if margin != "USD":
            continue
        eq, im, mm, _ = exact_account(book, eng, a)
        s = eng.summary(a)
        assert Fraction(s.im) <= math.ceil(im / q) * q + tiny, (s.im, float(im))
        assert Fraction(s.mm) <= math.ceil(mm / q) * q + tiny, (s.mm, float(mm))
        assert Fraction(s.equity) >= math.floor(eq / q) * q - tiny, (s.equity, float(eq))


@pytest.mark.parametrize("amount", [0.07, 8.2, 1234.57])
def test_whole_cent_deposit_is_its_own_equity(amount):
    """A deposit of a whole number of cents is that much equity, to the cent."""
    eng = mk.Engine()
    eng.add_asset("USD", price=1.0, quantum=0.01)
    eng.add_account("a", "USD")
    eng.deposit("a", "USD", amount)
    s = eng.summary("a")
    assert s.equity == pytest.approx(amount, abs=1e-9)
    assert s.available == pytest.approx(amount, abs=1e-9)


@pytest.mark.parametrize("rate", [0.05, 0.07, 0.56])
def test_whole_cent_requirement_is_not_rounded_up_a_cent(rate):
    """IM = 1 coin x rate x index 1 = a whole number of cents: reported as it is."""
    eng = mk.Engine()
    eng.add_asset("USD", price=1.0, quantum=0.01)
    eng.add_asset("X", price=1.0)
    eng.add_model("m", "linear_rate", im_base=rate, im_slope=0.0, mm_base=rate / 2, mm_slope=0.0)
    eng.add_instrument("X-PERP", model="m", kind="perpetual", underlying="X", settle="USD",
                       inverse=False, mark=1.0)
    eng.add_account("a", "USD")
    eng.deposit("a", "USD", 100.0)
    eng.fill("a", "X-PERP", 1.0, 1.0, fee=0.0)
    assert eng.summary("a").im == pytest.approx(rate, abs=1e-9)
    assert eng.attribution("a")[0].im == pytest.approx(rate, abs=1e-9)


# ---- the failing examples the properties found, pinned ------------------------------------


def test_incremental_check_with_a_haircut_settlement_asset():
    """Selling inverse options credits the premium in BTC, which counts at
    (1 - haircut) as collateral: check_order must see the same equity as summary()
    after the fill (here it counted the premium in full and approved an order that
    leaves the account under its initial margin)."""
    eng = mk.Engine()
    eng.add_asset("USD", price=1.0, quantum=0.01)
    eng.add_asset("BTC", price=50_000.0, haircuts=[(math.inf, 0.1)])
    eng.add_model("opt", "option_standard")
    eng.add_instrument("BTC-OPT-60000-C", model="opt", kind="option", underlying="BTC",
                       settle="BTC", inverse=True, strike=60_000.0, cp="C", expiry=EXPIRY,
                       mark=0.05)
    eng.add_account("a", "USD")
    eng.deposit("a", "BTC", 2.0)  # 90,000 USD of collateral
    # Per option: IM = (max(0.15 - 0.2, 0.10) + 0.05) BTC = 7,500 USD.
    check = eng.check_order("a", "BTC-OPT-60000-C", -12.0, 0.05)
    eng.fill("a", "BTC-OPT-60000-C", -12.0, 0.05, fee=0.0)
    s = eng.summary("a")
    # 2.6 BTC x 0.9 x 50,000 - 12 x 0.05 x 50,000 = 87,000; IM 90,000.
    assert s.equity == pytest.approx(87_000.0, abs=0.01)
    assert s.im == pytest.approx(90_000.0, abs=0.01)
    assert check.im_after == pytest.approx(s.im, abs=1e-9)
    assert check.equity_after == pytest.approx(s.equity, abs=1e-9)
    assert check.available_after == pytest.approx(s.available, abs=1e-9)
    assert not check.accepted  # available after the fill: -3,000


def test_max_order_size_is_the_largest_accepted_with_rounding():
    """A sell of an inverse perpetual above the mark (equity grows with the size)
    on a USD account rounding to cents: max_order_size must be the largest
    quantity check_order accepts; check_order also accepts x (1 + 1e-9) here."""
    eng = mk.Engine()
    eng.add_asset("USD", price=1.0, quantum=0.01)
    eng.add_asset("BTC", price=20_000.0)
    eng.add_model("t", "tiered", brackets=[(0.0, 0.015625, 0.03125), (20.0, 0.03125, 0.0625)])
    eng.add_instrument("BTC-PERP", model="t", kind="perpetual", underlying="BTC", settle="BTC",
                       inverse=True, contract_size=10.0, mark=20_000.0)
    eng.add_account("a", "USD")
    eng.deposit("a", "USD", math.exp(15.0))
    _assert_boundary(eng, "a", "BTC-PERP", "sell", 20_703.125)


def test_tiny_requirement_rounds_up_not_to_zero():
    """A position 3.6e-12 contracts short (left by two fills that do not quite
    cancel) needs 2.3e-12 USD: rounded up to the cent that is 0.01, not -0.0."""
    eng = mk.Engine()
    eng.add_asset("USD", price=1.0, quantum=0.01)
    eng.add_asset("BTC", price=20_000.0)
    eng.add_model("lin", "linear_rate", im_base=0.03125, im_slope=0.0, mm_base=0.03125,
                  mm_slope=0.0)
    eng.add_instrument("BTC-USD-PERP", model="lin", kind="perpetual", underlying="BTC",
                       settle="USD", inverse=False, contract_size=0.001, mark=20_000.0)
    eng.add_account("a", "USD")
    eng.deposit("a", "USD", 100.0)
    eng.fill("a", "BTC-USD-PERP", -30_000.0, 20_000.0, fee=0.0)
    eng.fill("a", "BTC-USD-PERP", 29_999.999999999996, 20_000.0, fee=0.0)
    size = eng.positions("a")[0]["size"]
    assert size == pytest.approx(-3.637978807091713e-12, rel=1e-9)
    exact = abs(size) * 0.001 * 0.03125 * 20_000.0  # 2.27e-12 USD
    assert exact > 0.0
    s = eng.summary("a")
    assert s.im >= exact and s.mm >= exact
    assert s.im == 0.01 and s.mm == 0.01


@pytest.mark.parametrize("i", range(NI))
def test_opening_fill_enters_at_exactly_the_trade_price(i):
    """Regression: an opening fill's entry is the trade price itself; an average
    through q x p / q (or q / (q / p) for inverse) can miss it by an ulp, which left
    a sub-cent loss that cost a whole cent of equity at max_order_size's boundary."""
    book = Book(quantum=0.01, prices={"USD": 1.0, "BTC": 24570.0, "ETH": 1000.0},
                haircut_eth=[(1.0, 0.0), (2.0, 0.0)],
                lin={"im_base": 0.03125, "im_slope": 0.0, "mm_base": 0.03125, "mm_slope": 0.0},
                tier_usd=[(0.0, 0.015625, 0.015625)], tier_btc=[(0.0, 0.0078125, 0.01171875)],
                opt={"im_otm": 0.125, "im_min": 0.0625, "mm": 0.0625, "mm_mark_call": 0.0,
                     "mm_mark_put": 0.0, "liq_fee": 0.0},
                strikes=(24570.0, 1000.0), marks=[24570.0, 1000.0, 24570.0, 24570.0, 0.0, 0.0],
                margin_assets=["USD"], deposits=[(0, "USD", 100.00000000000004)], fills=[],
                orders=[], taker_fee=0.0)
    price = book.marks[i] or 7.25
    for qty in (853.2491035461426, 0.1 + 0.2, 3.0 / 7.0):
        eng = build(book)
        eng.fill(0, i, qty, price, fee=0.0)
        assert eng.attribution(0)[0].entry == price
    eng = build(book)
    _assert_boundary(eng, 0, 2, "buy", 24570.0)
