"""Plots (matplotlib, Agg): rendered to PNG files of the expected size, drawing
the engine's own numbers."""

from __future__ import annotations

import struct
import sys

import marginkit as mk
import numpy as np
import pytest
from marginkit import demo_book, plots

pytest.importorskip("matplotlib")

HEDGED = "acct00001"  # ETH-margined: five inverse ETH options (settled in ETH)
PERP = "acct00083"  # USDC-margined: one short BTC_USDC-PERPETUAL
MIXED = "acct00004"  # USDC-margined: SOL linear options and an ETH perpetual


@pytest.fixture(scope="module")
def engine():
    return demo_book.build_engine(risk=True)


def png_size(path) -> tuple[int, int]:
    """(width, height) from the PNG header, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def assert_png(path, width: int, height: int) -> None:
    import matplotlib.image

    assert png_size(path) == (width, height)
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (height, width)
    # Not blank: many distinct colours (curves, text, a colour map).
    assert len(np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0)) > 50


def line(fig, gid: str):
    found = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid() == gid]
    assert len(found) == 1, gid
    return found[0]


# ---- P&L profile ----------------------------------------------------------------

def test_profile_png_has_the_requested_size(engine, tmp_path):
    path = tmp_path / "profile.png"
    fig = plots.pnl_profile(engine, HEDGED, path=path, figsize=(8.0, 5.0), dpi=80)
    assert fig.get_size_inches().tolist() == [8.0, 5.0]
    assert_png(path, 640, 400)


def test_profile_is_zero_at_no_move_and_marks_the_requirement(engine):
    fig = plots.pnl_profile(engine, HEDGED)
    summary = engine.summary(HEDGED)
    price = engine.price("ETH")
    none = line(fig, "pnl-vol-none")
    x, y = none.get_xdata(), none.get_ydata()
    assert len(x) == 61 and x[30] == price
    assert abs(y[30]) < 1e-12  # nothing moves, nothing is gained or lost
    # The vol shocks alone move the options' value: up costs a short-vega book.
    assert line(fig, "pnl-vol-up").get_ydata()[30] < -0.05
    assert line(fig, "pnl-vol-down").get_ydata()[30] > 0.02
    assert line(fig, "level-mm").get_ydata()[0] == -summary.mm
    assert line(fig, "level-im").get_ydata()[0] == -summary.im
    assert line(fig, "price-now").get_xdata()[0] == price


def test_profile_of_a_perpetual_is_linear_in_the_move(engine):
    d = plots.pnl_profile_data(engine, PERP, moves=[-0.2, -0.1, 0.0, 0.05, 0.3])
    size = engine.positions(PERP)[0]["size"]
    mark = engine.mark("BTC_USDC-PERPETUAL")
    want = size * mark * np.array([-0.2, -0.1, 0.0, 0.05, 0.3])
    for shock in ("down", "none", "up"):  # a future has no vega
        np.testing.assert_allclose(d["pnl"][shock], want, rtol=1e-9, atol=1e-9)
    assert d["underlying"] == "BTC" and d["margin_asset"] == "USDC"
    np.testing.assert_allclose(d["prices"], engine.price("BTC") * (1 + d["moves"]), rtol=1e-15)


def test_profile_passes_through_the_scenario_sets_own_points(engine):
    """The demo's set uses the Deribit preset's vol shocks, the profile's default:
    the dense curves go through the risk array's own scenario P&L."""
    d = plots.pnl_profile_data(engine, HEDGED)
    names = {-1: "down", 0: "none", 1: "up"}
    assert d["set"] == "deribit" and len(d["grid"]) == 27  # 9 moves x 3 vol shocks
    for move, vol, pnl in d["grid"]:
        k = int(np.argmin(np.abs(d["moves"] - move)))
        assert d["moves"][k] == pytest.approx(move, abs=1e-12)
        assert d["pnl"][names[vol]][k] == pytest.approx(pnl, rel=1e-9, abs=1e-12)


def test_profile_leaves_the_engine_unchanged(engine):
    before = engine.to_bytes()
    plots.pnl_profile(engine, MIXED, underlying="SOL")
    plots.risk_heatmap(engine, MIXED, underlying="SOL")
    assert engine.to_bytes() == before


@pytest.mark.parametrize("kwargs, message", [
    ({"underlying": "XYZ"}, "unknown underlying 'XYZ'"),
    ({"moves": [0.1, -1.0]}, "moves must be finite and > -1"),
    ({"moves": []}, "non-empty"),
])
def test_profile_rejects_bad_arguments(engine, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plots.pnl_profile_data(engine, HEDGED, **kwargs)


def test_unknown_account_is_named(engine):
    with pytest.raises(ValueError, match="unknown account 'nobody'"):
        plots.pnl_profile(engine, "nobody")
    with pytest.raises(ValueError, match="unknown account 99999"):
        plots.risk_heatmap(engine, 99999)


# ---- risk-array heatmap ------------------------------------------------------------

def test_heatmap_draws_each_positions_weighted_scenario_pnl(engine, tmp_path):
    path = tmp_path / "heatmap.png"
    fig = plots.risk_heatmap(engine, HEDGED, path=path, figsize=(9.0, 8.0), dpi=100)
    assert_png(path, 900, 800)
    drawn = np.asarray(fig.axes[0].images[0].get_array())
    # Independently: size x risk row x weight (the options settle in ETH, the
    # account's margin asset, so no conversion).
    info = engine.scenario_set_info("deribit")
    weights = np.array([w for _, _, w in info["scenarios"]])
    positions = engine.positions(HEDGED)
    want = np.column_stack([p["size"] * engine.risk_row(p["instrument"]) * weights
                            for p in positions])
    assert drawn.shape == (35, 5)
    np.testing.assert_allclose(drawn, want, rtol=1e-12, atol=1e-15)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert [lb.split("\n")[0] for lb in labels] == [p["instrument"] for p in positions]
    assert fig.axes[0].get_yticklabels()[0].get_text() == "+16% vol up"
    assert fig.axes[0].get_yticklabels()[-1].get_text() == "+500% vol up (x0.008)"


def test_heatmap_highlights_the_engines_worst_scenario(engine):
    fig = plots.risk_heatmap(engine, HEDGED)
    copy = mk.Engine.from_bytes(engine.to_bytes())
    copy.set_mode(HEDGED, "portfolio")
    group = copy.portfolio(HEDGED)[0]
    d = plots.scenario_matrix(engine, HEDGED)
    assert d["worst"] == group["worst"] == int(np.argmin(group["pnl"]))
    np.testing.assert_allclose(d["matrix"].sum(axis=1), group["pnl"], rtol=1e-12, atol=1e-15)
    assert d["loss"] == group["loss"]
    frame = [p for p in fig.axes[0].patches if p.get_gid() == "worst-scenario"]
    assert len(frame) == 1 and frame[0].get_y() == d["worst"] - 0.5
    bars = fig.axes[1].patches
    assert len(bars) == 35
    assert [b.get_width() for b in bars] == pytest.approx(list(group["pnl"]))
    red = [k for k, b in enumerate(bars) if b.get_facecolor()[0] > 0.8]
    assert red == [d["worst"]]


def test_heatmap_converts_to_the_margin_asset(engine):
    """USDC account, SOL options settled in USDC: columns add up to the group's
    scenario P&L, which the engine measures in USDC."""
    d = plots.scenario_matrix(engine, MIXED, underlying="SOL")
    assert d["instruments"] == ["SOL_USDC-28MAR25-190-P", "SOL_USDC-28MAR25-150-P"]
    weights = np.array([w for _, _, w in d["scenarios"]])
    want = np.column_stack([s * engine.risk_row(i) * weights
                            for i, s in zip(d["instruments"], d["sizes"], strict=True)])
    np.testing.assert_allclose(d["matrix"], want, rtol=1e-12, atol=1e-12)


def test_heatmap_needs_a_scenario_set(engine):
    copy = mk.Engine.from_bytes(engine.to_bytes())
    copy.set_scenarios("ETH", None)
    with pytest.raises(ValueError, match="ETH has no scenario set"):
        plots.risk_heatmap(copy, HEDGED)


# ---- cascade chart -----------------------------------------------------------------

def test_cascade_chart_has_one_point_per_round(engine, tmp_path):
    rounds = mk.Engine.from_bytes(engine.to_bytes()).cascade("BTC", -0.2, impact=2e-6,
                                                             max_rounds=8)
    assert len(rounds) >= 2
    path = tmp_path / "cascade.png"
    fig = plots.cascade_chart({"underlying": "BTC", "shock": -0.2, "rounds": rounds},
                              start_price=engine.price("BTC"), path=path, dpi=50)
    assert_png(path, 450, 350)
    price = line(fig, "price")
    assert price.get_xdata().tolist() == [r["round"] for r in rounds]
    assert price.get_ydata().tolist() == [r["price"] for r in rounds]
    assert line(fig, "fund").get_ydata().tolist() == [r["fund"] for r in rounds]
    bars = fig.axes[1].patches
    assert [b.get_height() for b in bars] == [r["volume"] for r in rounds]
    assert fig.get_suptitle() == f"Stress cascade: BTC -20%, {len(rounds)} rounds"


def test_cascade_chart_refuses_an_empty_cascade():
    with pytest.raises(ValueError, match="no rounds"):
        plots.cascade_chart([])


# ---- without matplotlib --------------------------------------------------------------

@pytest.fixture
def no_matplotlib(monkeypatch):
    """Imports of matplotlib fail, as if it were not installed."""
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


def test_plots_say_how_to_install_matplotlib(engine, no_matplotlib):
    with pytest.raises(ImportError, match=r'pip install "marginkit\[plot\]"'):
        plots.pnl_profile(engine, HEDGED)
    with pytest.raises(ImportError, match="matplotlib"):
        plots.cascade_chart([{"round": 1, "price": 1.0, "volume": 0.0, "fund": 0.0}])
    # The numbers need no matplotlib.
    assert plots.scenario_matrix(engine, HEDGED)["matrix"].shape == (35, 5)
