"""Static data read back from the engine: instruments, assets and scenario sets
round-trip through the same calls that created them."""

from __future__ import annotations

import math

import marginkit as mk
import numpy as np
import pytest
from marginkit import demo_book
from marginkit import scenarios as scn


@pytest.fixture(scope="module")
def demo():
    return demo_book.build_engine(n_accounts=30, risk=True)


def _clone_static(eng: mk.Engine) -> mk.Engine:
    """A new engine with the same assets, models and instruments, built only from
    what the info getters return (models by the preset that made them)."""
    out = mk.Engine()
    out.now = eng.now
    for name in eng.assets:
        info = eng.asset_info(name)
        out.add_asset(name, price=info["price"], time=eng.now, haircuts=info["haircuts"] or None,
                      quantum=info["quantum"], liability_weight=info["liability_weight"],
                      imf_factor=info["imf_factor"], weight_quantum=info["weight_quantum"],
                      liquidator_fee=info["liquidator_fee"])
    mk.presets.apply_preset(out, "deribit")
    for name in eng.instruments:
        info = eng.instrument_info(name)
        del info["name"]
        out.add_instrument(name, mark=eng.mark(name), time=eng.now, **info)
    return out


def test_instrument_info_of_each_kind(demo):
    perp = demo.instrument_info("BTC-PERPETUAL")
    assert perp == {"name": "BTC-PERPETUAL", "kind": "perpetual", "underlying": "BTC",
                    "settle": "BTC", "inverse": True, "contract_size": 10.0, "strike": None,
                    "cp": None, "expiry": None, "model": "deribit_btc_futures",
                    "taker_fee": perp["taker_fee"]}
    opt = next(n for n in demo.instruments if n.startswith("SOL_USDC") and n.endswith("-P"))
    info = demo.instrument_info(opt)
    assert (info["kind"], info["underlying"], info["settle"], info["inverse"], info["cp"]) == (
        "option", "SOL", "USDC", False, "P")
    assert info["strike"] == float(opt.split("-")[-2])
    assert info["expiry"] == int(demo_book._expiry(opt.split("-")[1]).timestamp())
    with pytest.raises(ValueError, match="NOPE"):
        demo.instrument_info("NOPE")


def test_static_data_round_trips(demo):
    clone = _clone_static(demo)
    for name in demo.instruments:
        assert clone.instrument_info(name) == demo.instrument_info(name)
    for name in demo.assets:
        assert clone.asset_info(name) == demo.asset_info(name)
    btc = demo.asset_info("BTC")
    assert btc["haircuts"][0] == (1000.0, 0.0) and math.isinf(btc["haircuts"][-1][0])


@pytest.mark.parametrize("kw", [scn.deribit(), scn.span(scan_range=0.12, vol_range=0.08),
                                scn.simple_grid(im_factor=1.3),
                                scn.deribit(min_vol_up=0.0, delta_charge=0.001)],
                         ids=["deribit", "span", "simple", "deribit-no-floor"])
def test_scenario_set_info_round_trips(demo, kw):
    eng = mk.Engine.from_bytes(demo.to_bytes())
    eng.add_scenario_set("a", **kw)
    info = eng.scenario_set_info("a")
    assert info["name"] == "a"
    for key, value in kw.items():
        if key == "scenarios":
            assert info[key] == [(float(m), int(v), float(w)) for m, v, w in value]
        else:
            assert info[key] == value, key
    again = {k: v for k, v in info.items() if k != "name"}
    eng.add_scenario_set("b", **again)
    assert {k: v for k, v in eng.scenario_set_info("b").items() if k != "name"} == again
    # the copy margins identically
    eng.set_scenarios("BTC", "a")
    rows_a = [eng.risk_row(n) for n in eng.instruments if n.startswith("BTC-")]
    eng.set_scenarios("BTC", "b")
    rows_b = [eng.risk_row(n) for n in eng.instruments if n.startswith("BTC-")]
    for ra, rb in zip(rows_a, rows_b, strict=True):
        np.testing.assert_array_equal(ra, rb)


def test_historical_set_info_carries_its_joint_moves(demo):
    eng = mk.Engine.from_bytes(demo.to_bytes())
    rng = np.random.default_rng(3)
    returns = {"BTC": rng.normal(0, 0.03, 50), "ETH": rng.normal(0, 0.04, 50)}
    eng.add_scenario_set("hist", **scn.historical(returns, measure="var", confidence=0.95))
    info = eng.scenario_set_info("hist")
    assert info["measure"] == "var" and info["confidence"] == 0.95
    assert set(info["joint_moves"]) == {"BTC", "ETH"}
    for u, r in returns.items():
        np.testing.assert_array_equal(info["joint_moves"][u], r)
