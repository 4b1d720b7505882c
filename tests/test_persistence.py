"""Persistence: Engine.save / load (atomic files), to_bytes / from_bytes, pickling.

A rich engine (the demo venue with 300 accounts, a spot market, portfolio sets of
every kind, portfolio-mode accounts, isolated children, resting orders, forwards,
volatilities, a rate, thresholds, a max age and a clock) must come back byte for
byte and figure for figure; corrupt inputs must raise ValueError (or, for byte
flips that happen to stay valid, give an engine that evaluates), never crash.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import pickle
import struct

import marginkit as mk
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from marginkit import demo_book
from marginkit import scenarios as scn

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

T0 = demo_book.NOW.timestamp()


def build_rich() -> tuple[mk.Engine, list[int], list[int]]:
    """Returns (engine, isolated child ids, order ids still resting)."""
    eng = demo_book.build_engine(300)
    eng.now = T0 + 3_600.0
    eng.max_age = 400 * 86_400.0
    eng.rate = 0.031
    eng.set_thresholds(warning=1.6, reduce_only=1.25, liquidation=1.05)
    eng.add_instrument("BTC_USDC", kind="spot", underlying="BTC", settle="USDC",
                       model="deribit_btc_futures", taker_fee=0.001)
    eng.add_scenario_set("deribit_btc", **scn.deribit(im_factor=1.1, short_option_charge=0.005,
                                                      delta_charge=0.001))
    eng.set_scenarios("BTC", "deribit_btc")
    rng = np.random.default_rng(5)
    returns = {"ETH": rng.normal(0.0, 0.05, 120), "SOL": rng.normal(0.0, 0.08, 120)}
    eng.add_scenario_set("hist", **scn.historical(returns, measure="es", confidence=0.975,
                                                  im_factor=1.2))
    eng.set_scenarios("ETH", "hist")
    eng.set_scenarios("SOL", "hist")
    eng.add_scenario_set("span", **scn.span(scan_range=0.1, vol_range=0.05))  # unassigned
    eng.add_scenario_set("var", **scn.historical({"BTC": rng.normal(0, 0.04, 50)},
                                                 measure="var", confidence=0.9))
    for i in range(0, 300, 7):
        eng.set_mode(i, "portfolio")
    eng.set_forward("SOL", demo_book._expiry("28MAR25"), 195.0, T0 + 60.0)
    eng.set_forward("BTC", demo_book._expiry("31JAN25"), 98_500.0, T0 + 30.0)
    eng.set_vol("SOL_USDC-28MAR25-150-P", 0.9, T0 + 60.0)
    eng.set_vol("BTC-31JAN25-100000-C", 0.58, T0 + 10.0)
    eng.set_vol("ETH-28MAR25-3600-C", 0.7)
    eng.set_price("BTC", 97_250.0, T0 + 120.0)
    orders = []
    for i in range(0, 300, 11):
        pos = eng.positions(i)
        if pos:
            ins = pos[0]["instrument"]
            orders.append(eng.place_order(i, ins, -0.5 * pos[0]["size"], eng.mark(ins)))
    pos = eng.positions(0)[0]
    eng.fill_order(orders[0], abs(pos["size"]) * 0.2, eng.mark(pos["instrument"]))  # partly
    kids = []
    for i in range(1, 300, 37):
        m = eng.margin_asset(i)
        ins = "BTC_USDC-PERPETUAL" if m == "USDC" else f"{m}-PERPETUAL"
        try:
            kid = eng.open_isolated(i, ins, eng.balance(i, m) * 0.05)
        except ValueError:
            continue
        qty = 0.01 if m == "USDC" else 10.0
        eng.fill(kid, ins, qty, eng.mark(ins), fee=0.0)
        orders.append(eng.place_order(kid, ins, qty, eng.mark(ins) * 0.99))
        kids.append(kid)
    eng.set_mode(kids[0], "portfolio")
    usdc = [i for i in range(300) if eng.margin_asset(i) == "USDC"]
    eng.fill(usdc[0], "BTC_USDC", 0.05, 97_000.0)  # spot: balances only
    eng.cancel_order(orders.pop(1))
    return eng, kids, orders


@pytest.fixture(scope="module")
def rich():
    eng, kids, orders = build_rich()
    assert len(kids) >= 5 and len(orders) >= 20
    return eng, kids, orders


@pytest.fixture(scope="module")
def data(rich):
    return rich[0].to_bytes()


def nan_eq(x, y) -> bool:
    return np.array_equal(np.asarray(x, dtype=float), np.asarray(y, dtype=float),
                          equal_nan=True)


def summary_tuple(s) -> tuple:
    return tuple(repr(v) for v in (s.equity, s.im, s.mm, s.available, s.margin_ratio,
                                   s.state, s.stale))


def check_tuple(c) -> tuple:
    return tuple(repr(v) for v in (c.accepted, c.reason, c.im_after, c.mm_after,
                                   c.equity_after, c.available_after))


def portfolio_repr(groups) -> list:
    return [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in g.items()}
            for g in groups]


def account_state(eng: mk.Engine, a: int) -> tuple:
    return (eng.accounts[a], eng.parent(a), eng.margin_asset(a), eng.mode(a),
            summary_tuple(eng.summary(a)), repr(eng.positions(a)),
            tuple(repr(eng.balance(a, x)) for x in eng.assets),
            repr(portfolio_repr(eng.portfolio(a))),
            repr([(r.instrument, r.size, r.entry, r.mark, r.im, r.mm, r.equity)
                  for r in eng.attribution(a)]),
            repr(eng.net_greeks(a)))


CHECKS = [("BTC-PERPETUAL", 100.0), ("BTC-PERPETUAL", -50.0), ("BTC_USDC-PERPETUAL", 0.3),
          ("SOL_USDC-PERPETUAL", -20.0), ("ETH-28MAR25-3600-C", -1.0),
          ("BTC-31JAN25-100000-C", 0.5), ("SOL_USDC-28MAR25-150-P", -10.0),
          ("BTC_USDC", 0.01), ("ETH_USDC-PERPETUAL", 2.0)]


def market_state(eng: mk.Engine) -> tuple:
    core = eng._core
    sets = [core.scenario_set(i) for i in range(core.num_scenario_sets())]
    return (eng.assets, eng.instruments, eng.accounts,
            [repr(eng.price(a)) for a in eng.assets],
            [repr(eng.mark(i)) for i in eng.instruments],
            eng.now, eng.max_age, eng.rate, core.thresholds(), core.num_orders(),
            repr(sets), [core.underlying_scenarios(i) for i in range(len(eng.assets))],
            [repr(eng.forward(u, demo_book._expiry(c))) for u in ("BTC", "ETH", "SOL")
             for c in demo_book.EXPIRIES])


# ---- round trips ------------------------------------------------------------------------------

def test_to_bytes_round_trip_is_byte_identical(rich, data):
    eng = rich[0]
    assert data[:8] == b"MKENGINE"
    assert struct.unpack_from("<I", data, 8)[0] == eng.FORMAT_VERSION == \
        eng._core.format_version()
    back = mk.Engine.from_bytes(data)
    assert back.to_bytes() == data
    assert mk.Engine.from_bytes(back.to_bytes()).to_bytes() == data
    # evaluating (which fills caches and risk arrays) does not change the state
    back.evaluate_all()
    assert back.to_bytes() == data


def test_every_figure_is_identical_after_reload(rich, data):
    eng, kids, _ = rich
    back = mk.Engine.from_bytes(data)
    assert market_state(back) == market_state(eng)
    for name in eng.instruments:
        assert nan_eq(back.risk_row(name), eng.risk_row(name)), name
    for a in range(len(eng.accounts)):
        assert account_state(back, a) == account_state(eng, a), eng.accounts[a]
        for ins, qty in CHECKS:
            px = eng.mark(ins) if ins != "BTC_USDC" else 97_300.0
            assert check_tuple(back.check_order(a, ins, qty, px)) == \
                check_tuple(eng.check_order(a, ins, qty, px)), (a, ins, qty)
    ev1, ev2 = eng.evaluate_all(), back.evaluate_all()
    for x, y in zip(ev1, ev2, strict=True):
        assert nan_eq(x, y)
    for kid in kids:
        assert back.parent(kid) == eng.parent(kid) is not None
        for ins, qty in CHECKS[:3]:
            assert check_tuple(back.check_order(kid, ins, qty, eng.mark(ins))) == \
                check_tuple(eng.check_order(kid, ins, qty, eng.mark(ins)))
        assert nan_eq(back.liquidation_prices(kid), eng.liquidation_prices(kid))
    for a in range(0, len(eng.accounts), 13):
        assert nan_eq(back.liquidation_prices(a), eng.liquidation_prices(a)), a
        for ins in ("BTC-PERPETUAL", "SOL_USDC-PERPETUAL", "ETH-28MAR25-3600-C"):
            for side in ("buy", "sell"):
                assert repr(back.max_order_size(a, ins, side, eng.mark(ins))) == \
                    repr(eng.max_order_size(a, ins, side, eng.mark(ins))), (a, ins, side)


def test_reloaded_engine_keeps_working_like_the_original(data):
    """Orders, ids, isolated transfers and market updates act the same on both."""
    e1, e2 = mk.Engine.from_bytes(data), mk.Engine.from_bytes(data)
    kid = next(a for a in range(len(e1.accounts)) if e1.parent(a) is not None)
    parent = e1.parent(kid)
    for e in (e1, e2):
        resting = [(a, p) for a in range(len(e.accounts)) for p in e.positions(a)
                   if p["bids"] or p["asks"]]
        assert resting
    results = []
    for e in (e1, e2):
        out = [e.place_order(3, "BTC_USDC-PERPETUAL", 0.01, 90_000.0),
               e.place_order(5, "ETH-PERPETUAL", -1.0, 3_500.0),
               e.transfer(parent, kid, 1e-6), e.transfer(kid, parent, 1e-6)]
        e.cancel_order(out[0])
        e.set_price("ETH", 3_300.0)
        e.set_mark("ETH-PERPETUAL", 3_301.0)
        e.now = e.now + 60.0
        out.append(e.to_bytes())
        out.append([summary_tuple(e.summary(a)) for a in range(len(e.accounts))])
        results.append(out)
    assert results[0] == results[1]
    assert results[0][0] > 0 and results[0][1] == results[0][0] + 1


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickling_round_trips(rich, data, protocol):
    blob = pickle.dumps(rich[0], protocol=protocol)
    back = pickle.loads(blob)
    assert isinstance(back, mk.Engine)
    assert back.to_bytes() == data
    assert back.accounts == rich[0].accounts
    assert summary_tuple(back.summary(7)) == summary_tuple(rich[0].summary(7))


def test_copies_are_independent(data):
    eng = mk.Engine.from_bytes(data)
    for dup in (copy.deepcopy(eng), copy.copy(eng)):
        assert dup.to_bytes() == data
        dup.deposit(0, dup.margin_asset(0), 1_000.0)
        dup.add_account("extra", "USDC")
        assert eng.to_bytes() == data
        assert "extra" not in eng.accounts
    eng.set_price("BTC", 1.0)
    assert copy.deepcopy(eng).price("BTC") == 1.0


def test_save_and_load_a_file_atomically(rich, data, tmp_path):
    path = tmp_path / "state.mk"
    rich[0].save(path)
    assert sorted(os.listdir(tmp_path)) == ["state.mk"]
    assert path.read_bytes() == data
    back = mk.Engine.load(path)
    assert back.to_bytes() == data
    # overwrite in place, with a str path; still no temporary file left behind
    small = demo_book.build_engine(3)
    small.save(str(path))
    assert sorted(os.listdir(tmp_path)) == ["state.mk"]
    assert mk.Engine.load(str(path)).to_bytes() == small.to_bytes()


def test_a_failed_save_leaves_the_old_file_and_no_temporary(rich, tmp_path, monkeypatch):
    path = tmp_path / "state.mk"
    path.write_bytes(b"old state")
    eng = mk.Engine.from_bytes(rich[0].to_bytes())

    def boom():
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(eng, "to_bytes", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        eng.save(path)
    assert sorted(os.listdir(tmp_path)) == ["state.mk"]
    assert path.read_bytes() == b"old state"
    with pytest.raises(OSError):
        rich[0].save(tmp_path / "missing" / "state.mk")
    assert sorted(os.listdir(tmp_path)) == ["state.mk"]


def test_expired_instruments_and_unpriced_things_reload():
    eng = demo_book.build_engine(20)
    eng.add_asset("XRP")  # no price
    eng.add_instrument("XRP_USDC-PERPETUAL", model="deribit_sol_usdc_futures")  # no mark
    eng.add_account("x", "XRP")
    eng.deposit("x", "XRP", 5.0)
    eng.now = demo_book._expiry("31JAN25").timestamp() + 86_400.0  # first expiry passed
    data = eng.to_bytes()
    back = mk.Engine.from_bytes(data)
    assert back.to_bytes() == data
    assert math.isnan(back.price("XRP")) and math.isnan(back.mark("XRP_USDC-PERPETUAL"))
    assert math.isnan(back.summary("x").equity)
    r = back.check_order(0, "BTC-31JAN25", 10.0, 98_000.0)
    assert r.reason == "instrument_expired"
    for a in range(len(eng.accounts)):
        assert account_state(back, a) == account_state(eng, a)


def test_empty_engine_round_trips():
    eng = mk.Engine()
    data = eng.to_bytes()
    back = mk.Engine.from_bytes(data)
    assert back.to_bytes() == data
    assert back.accounts == back.assets == back.instruments == []
    assert math.isinf(back.max_age) and back.now == 0.0 and back.rate == 0.0


# ---- buffers ----------------------------------------------------------------------------------

def test_read_only_buffers_and_memoryviews_are_accepted(data):
    padded = b"xx" + data + b"yy"
    views = [
        memoryview(data),
        bytearray(data),
        memoryview(bytearray(data)).toreadonly(),
        memoryview(padded)[2:-2],
        memoryview(np.frombuffer(data, dtype=np.uint8)),  # a read-only NumPy buffer
        memoryview(data).cast("B"),
    ]
    assert not np.frombuffer(data, dtype=np.uint8).flags.writeable
    for v in views:
        assert mk.Engine.from_bytes(v).to_bytes() == data, type(v)


@pytest.mark.parametrize("bad", ["MKENGINE", None, 42, [1, 2, 3]])
def test_non_bytes_raise_type_error(bad):
    with pytest.raises(TypeError):
        mk.Engine.from_bytes(bad)


# ---- corrupt inputs -------------------------------------------------------------------------

def test_every_truncation_raises_value_error(data):
    for cut in range(0, len(data), 97):
        with pytest.raises(ValueError):
            mk.Engine.from_bytes(data[:cut])
    for cut in (len(data) - 1, len(data) - 8, 8, 11, 12):
        with pytest.raises(ValueError):
            mk.Engine.from_bytes(data[:cut])
    with pytest.raises(ValueError):
        mk.Engine.from_bytes(data + b"\x00")  # trailing garbage


@pytest.mark.parametrize("magic", [b"MKENGINF", b"mkengine", b"\x00" * 8,
                                   b"PK\x03\x04\x00\x00\x00\x00"])
def test_wrong_magic_raises(data, magic):
    with pytest.raises(ValueError, match="not a marginkit"):
        mk.Engine.from_bytes(magic + data[8:])


@pytest.mark.parametrize("delta", [1, 2, 1000, 2**32 - 1 - mk.Engine.FORMAT_VERSION])
def test_future_version_raises(data, delta):
    version = mk.Engine.FORMAT_VERSION + delta
    bad = data[:8] + struct.pack("<I", version) + data[12:]
    with pytest.raises(ValueError, match=f"version {version}"):
        mk.Engine.from_bytes(bad)
    with pytest.raises(ValueError, match="version 0"):
        mk.Engine.from_bytes(data[:8] + struct.pack("<I", 0) + data[12:])


def _exercise(eng: mk.Engine) -> None:
    """What a venue does with a loaded engine: nothing of it may crash."""
    ev = eng.evaluate_all()
    assert len(ev.equity) == len(eng.accounts)
    n_ins = len(eng.instruments)
    for a in range(len(eng.accounts)):
        eng.summary(a)
        eng.portfolio(a)
        eng.attribution(a)
        eng.net_greeks(a)
        if n_ins:
            eng.check_order(a, a % n_ins, 1.0, 100.0)
    for i in range(n_ins):
        eng.risk_row(i)


@functools.lru_cache(maxsize=1)
def rich_bytes() -> bytes:
    return build_rich()[0].to_bytes()


@FUZZ
@given(st.integers(0, 2**31 - 1), st.integers(1, 255))
@example(12, 0xFF)       # the version's low byte
@example(16, 0x80)       # the clock's bytes
def test_single_byte_flips_never_crash(where, xor):
    """A byte flipped anywhere in the rich state (position drawn over the whole
    state, value XORed with a non-zero mask) gives ValueError, or an engine that
    evaluates. (Names that stop being UTF-8: see
    test_a_scenario_set_name_that_is_not_utf8_is_refused.)"""
    data = rich_bytes()
    pos = where % len(data)
    corrupt = bytearray(data)
    corrupt[pos] ^= xor
    try:
        eng = mk.Engine.from_bytes(bytes(corrupt))
    except ValueError:
        return
    try:
        _exercise(eng)
    except UnicodeDecodeError:
        pass


def test_loader_rejects_a_position_on_a_spot_instrument():
    """No API call can give an account a position in a spot instrument (fills move
    balances, set_positions and place_order refuse spot), and a spot instrument has
    no risk row. One flipped byte (instrument id 1 -> 0) in a saved position makes
    one: the loader must refuse it. Observed: it loads, and a portfolio-mode account
    then reads the risk array at risk_[npos + s] (out of bounds): pnl[0] comes out
    as 1.78e-322 (heap metadata) and the rest is the perpetual's row shifted by one
    scenario (MM 1,975.31 for a spot "position" that has no risk)."""
    eng = mk.Engine()
    eng.now = T0
    eng.add_asset("USDC", price=1.0, time=T0)
    eng.add_asset("BTC", price=100_000.0, time=T0)
    eng.add_model("lin", "linear_rate", im_base=0.02, im_slope=5e-5, mm_base=0.01,
                  mm_slope=5e-5)
    spot = eng.add_instrument("BTC_USDC", kind="spot", underlying="BTC", settle="USDC",
                              model="lin")
    perp = eng.add_instrument("PERP", kind="perpetual", underlying="BTC", settle="USDC",
                              model="lin", mark=100_000.0, time=T0)
    assert (spot, perp) == (0, 1)
    eng.add_scenario_set("grid", **scn.deribit())
    eng.set_scenarios("BTC", "grid")
    a = eng.add_account("a", "USDC")
    eng.deposit(a, "USDC", 1e6)
    eng.set_mode(a, "portfolio")
    size = 0.123456789
    eng.fill(a, "PERP", size, 100_000.0, fee=0.0)
    data = eng.to_bytes()
    # the saved position: i32 instrument, then f64 size
    pattern = struct.pack("<i", perp) + struct.pack("<d", size)
    at = data.find(pattern)
    assert at > 0 and data.count(pattern) == 1
    corrupt = bytearray(data)
    corrupt[at] = spot  # a single byte: 0x01 -> 0x00
    with pytest.raises(ValueError):
        mk.Engine.from_bytes(bytes(corrupt))


def build_tiny() -> mk.Engine:
    """Every kind of state in a few kilobytes: haircut tiers, the three model kinds,
    spot, linear and inverse futures and options, a grid and a joint historical set,
    cross / portfolio / isolated accounts, resting orders, a forward and a vol."""
    eng = mk.Engine()
    eng.now = T0
    eng.max_age = 3_600.0
    eng.rate = 0.02
    eng.set_thresholds(warning=1.4, reduce_only=1.2, liquidation=1.1)
    eng.add_asset("USDC", price=1.0, time=T0, quantum=0.01)
    eng.add_asset("BTC", price=100_000.0, time=T0, haircuts=[(5.0, 0.0), (math.inf, 0.1)])
    eng.add_asset("ETH", price=3_400.0, time=T0)
    eng.add_model("lin", "linear_rate", im_base=0.02, im_slope=5e-5, mm_base=0.01,
                  mm_slope=5e-5)
    eng.add_model("tiers", "tiered", brackets=[(0, 0.01, 0.02), (50_000, 0.025, 0.05)])
    eng.add_model("opt", "option_standard", liq_fee=0.001)
    exp = int(T0 + 30 * 86_400)
    eng.add_instrument("BTC_USDC", kind="spot", underlying="BTC", settle="USDC", model="lin",
                       mark=100_000.0, time=T0)
    eng.add_instrument("PERP", kind="perpetual", underlying="BTC", settle="USDC",
                       model="tiers", mark=100_050.0, time=T0, taker_fee=0.0005)
    eng.add_instrument("FUT", kind="future", underlying="BTC", settle="BTC", inverse=True,
                       contract_size=10.0, expiry=exp, model="lin", mark=100_500.0, time=T0)
    eng.add_instrument("C", kind="option", underlying="BTC", settle="USDC", strike=105_000.0,
                       cp="C", expiry=exp, model="opt")
    eng.add_instrument("P", kind="option", underlying="BTC", settle="BTC", inverse=True,
                       strike=95_000.0, cp="P", expiry=exp, model="opt")
    eng.add_instrument("ETHP", kind="perpetual", underlying="ETH", settle="USDC", model="lin",
                       mark=3_400.0, time=T0)
    eng.set_forward("ETH", exp, 3_420.0, T0)
    eng.set_vol("C", 0.6, T0)
    eng.set_vol("P", 0.65, T0)
    eng.add_scenario_set("grid", **scn.deribit(short_option_charge=0.01))
    eng.set_scenarios("BTC", "grid")
    eng.add_scenario_set("hist", **scn.historical({"ETH": [0.01, -0.05, 0.02, -0.1],
                                                   "BTC": [0.0, -0.02, 0.01, -0.08]},
                                                  measure="var", confidence=0.7))
    eng.set_scenarios("ETH", "hist")
    for name, margin, mode in (("x", "USDC", "cross"), ("y", "BTC", "portfolio"),
                               ("z", "USDC", "portfolio")):
        a = eng.add_account(name, margin)
        eng.deposit(a, margin, 50_000.0 if margin == "USDC" else 2.0)
        eng.set_mode(a, mode)
    eng.fill("x", "PERP", 0.4, 100_000.0)
    eng.fill("x", "C", -2.0, eng.mark("C"))
    eng.fill("x", "BTC_USDC", 0.1, 100_000.0)
    eng.fill("y", "FUT", -2_000.0, 100_400.0)
    eng.fill("y", "P", 1.0, eng.mark("P"))
    eng.fill("z", "ETHP", -3.0, 3_400.0)
    eng.fill("z", "PERP", 0.2, 100_000.0)
    eng.place_order("x", "PERP", -0.2, 101_000.0)
    eng.place_order("y", "P", -0.5, eng.mark("P"))
    kid = eng.open_isolated("x", "PERP", 5_000.0)
    eng.fill(kid, "PERP", 0.3, 100_000.0)
    eng.place_order(kid, "PERP", 0.1, 99_000.0)
    return eng


def _exercise_all(eng: mk.Engine) -> None:
    _exercise(eng)
    n_ins = len(eng.instruments)
    for a in range(len(eng.accounts)):
        eng.liquidation_prices(a)
        for i in range(n_ins):
            m = eng.mark(i)
            try:
                eng.max_order_size(a, i, "sell", m if math.isfinite(m) and m >= 0 else 1.0)
            except ValueError:
                pass


def test_every_single_byte_flip_of_a_tiny_state_is_refused_or_evaluates():
    """Each byte of a small state flipped in turn (masks 0xFF, 0x01, 0x80, 0x10 by
    position): ValueError, or an engine on which everything evaluates. (Names that
    stop being UTF-8 are test_a_scenario_set_name_that_is_not_utf8_is_refused's.)"""
    eng = build_tiny()
    data = eng.to_bytes()
    assert mk.Engine.from_bytes(data).to_bytes() == data
    loaded, failures = 0, []
    for pos in range(len(data)):
        corrupt = bytearray(data)
        corrupt[pos] ^= (0xFF, 0x01, 0x80, 0x10)[pos % 4]
        try:
            back = mk.Engine.from_bytes(bytes(corrupt))
        except ValueError:
            continue
        loaded += 1
        try:
            _exercise_all(back)
        except UnicodeDecodeError:
            pass
        except Exception as exc:  # any other exception is a finding here
            failures.append((pos, f"{type(exc).__name__}: {exc}"))
    assert not failures, failures[:10]
    assert 0 < loaded < len(data)


def test_a_scenario_set_name_that_is_not_utf8_is_refused():
    """from_bytes refuses asset, instrument, account and model names that are not
    UTF-8 (it indexes them), but not a scenario set's: one flipped byte of "grid"
    loads, and portfolio() of every account using the set then raises
    UnicodeDecodeError (as do scenario_set_info and set_scenarios by name)."""
    eng = build_tiny()
    data = eng.to_bytes()
    at = data.find(struct.pack("<Q", 4) + b"grid")
    assert at > 0
    corrupt = bytearray(data)
    corrupt[at + 8] = 0x98  # not a UTF-8 start byte
    for name in (b"USDC", b"lin", b"PERP", b"x/PERP"):
        other = bytearray(data)
        where = data.find(struct.pack("<Q", len(name)) + name)
        assert where > 0, name
        other[where + 8] = 0x98
        with pytest.raises(ValueError):
            mk.Engine.from_bytes(bytes(other))
    try:
        back = mk.Engine.from_bytes(bytes(corrupt))
    except ValueError:
        return
    back.portfolio("y")  # observed: UnicodeDecodeError
