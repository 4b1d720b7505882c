"""A small book and market for the I/O tests, as records, and the same venue
built directly with the Engine API (the reference the loaders must match)."""

from __future__ import annotations

import csv
import math
from datetime import datetime, timezone

import marginkit as mk
from marginkit import presets, scenarios

NOW = datetime(2025, 1, 2, 8, 0, tzinfo=timezone.utc).timestamp()
T = "2025-01-02T08:00:00Z"

MARKET_COLUMNS = ["type", "name", "value", "time", "expiry", "strike", "quantum", "upto",
                  "contract_size", "model", "taker_fee"]
BOOK_COLUMNS = ["type", "account", "mode", "margin_asset", "asset", "amount", "instrument",
                "size", "entry", "price"]

MARKET = [
    {"type": "index", "name": "USDC", "value": 1.0, "time": T, "quantum": 0.01},
    {"type": "index", "name": "USDT", "value": 0.9995, "time": T, "quantum": 0.01},
    {"type": "index", "name": "BTC", "value": 97000.0, "time": T, "quantum": 1e-8},
    {"type": "haircut", "name": "BTC", "value": 0.0, "upto": 1.0},
    {"type": "haircut", "name": "BTC", "value": 0.05},
    {"type": "index", "name": "ETH", "value": 3400.0, "time": T, "quantum": 1e-8},
    {"type": "rate", "value": 0.01},
    {"type": "instrument", "name": "BTC-PERPETUAL", "contract_size": 10.0},
    {"type": "mark", "name": "BTC_USDC-PERPETUAL", "value": 97010.0, "time": T},
    {"type": "mark", "name": "BTC-PERPETUAL", "value": 97020.0, "time": T},
    {"type": "mark", "name": "BTC-31JAN25", "value": 98100.0, "time": T},
    {"type": "mark", "name": "ETH-USDT-SWAP", "value": 3401.5, "time": T},
    {"type": "forward", "name": "BTC", "value": 98000.0, "time": T, "expiry": "2025-01-31"},
    {"type": "vol", "name": "BTC", "value": 0.55, "time": T, "expiry": "2025-01-31",
     "strike": 100000.0},
    {"type": "vol", "name": "BTC-31JAN25-90000-P", "value": 0.6, "time": T},
]

BOOK = [
    {"type": "account", "account": "alice", "mode": "cross", "margin_asset": "USDC"},
    {"type": "balance", "account": "alice", "asset": "USDC", "amount": 50000.0},
    {"type": "balance", "account": "alice", "asset": "BTC", "amount": 0.5},
    {"type": "position", "account": "alice", "instrument": "BTC_USDC-PERPETUAL", "size": 1.5,
     "entry": 95000.0},
    {"type": "position", "account": "alice", "instrument": "BTC-31JAN25-100000-C",
     "size": -2.0, "entry": 0.05},
    {"type": "order", "account": "alice", "instrument": "BTC_USDC-PERPETUAL", "size": 0.5,
     "price": 96000.0},
    {"type": "account", "account": "bob", "mode": "portfolio", "margin_asset": "BTC"},
    {"type": "balance", "account": "bob", "asset": "BTC", "amount": 1.2},
    {"type": "position", "account": "bob", "instrument": "BTC-PERPETUAL", "size": -5000.0,
     "entry": 98000.0},
    {"type": "position", "account": "bob", "instrument": "BTC-31JAN25-90000-P", "size": 3.0,
     "entry": 0.01},
    {"type": "position", "account": "bob", "instrument": "BTC-31JAN25", "size": 2000.0,
     "entry": 97500.0},
    {"type": "account", "account": "carol", "mode": "isolated", "margin_asset": "USDC"},
    {"type": "balance", "account": "carol", "asset": "USDC", "amount": 20000.0},
    {"type": "position", "account": "carol", "instrument": "BTC_USDC-PERPETUAL", "size": -0.5,
     "entry": 97500.0},
    {"type": "position", "account": "carol", "instrument": "ETH-USDT-SWAP", "size": 4.0,
     "entry": 3300.0},
    {"type": "isolated", "account": "carol", "instrument": "BTC_USDC-PERPETUAL",
     "amount": 5000.0},
    {"type": "account", "account": "dave", "mode": "cross", "margin_asset": "USDT"},
    {"type": "balance", "account": "dave", "asset": "USDT", "amount": 1200.0},
    {"type": "position", "account": "dave", "instrument": "ETH-USDT-SWAP", "size": 10.0,
     "entry": 3500.0},
    {"type": "account", "account": "erin", "margin_asset": "USDC"},
    {"type": "balance", "account": "erin", "asset": "USDC", "amount": 10000.0},
    {"type": "position", "account": "erin", "instrument": "BTC_USDC-PERPETUAL", "size": 0.2,
     "entry": 97000.0},
    {"type": "isolated", "account": "erin", "instrument": "BTC_USDC-PERPETUAL",
     "amount": 2000.0},
]

# What each account holds, as the reference builds it.
ACCOUNTS = {  # name: (margin asset, own mode, balances)
    "alice": ("USDC", "cross", {"USDC": 50000.0, "BTC": 0.5}),
    "bob": ("BTC", "portfolio", {"BTC": 1.2}),
    "carol": ("USDC", "isolated", {"USDC": 20000.0}),
    "dave": ("USDT", "cross", {"USDT": 1200.0}),
    "erin": ("USDC", "cross", {"USDC": 10000.0}),
}
POSITIONS = [(r["account"], r["instrument"], r["size"], r["entry"])
             for r in BOOK if r["type"] == "position"]
# Isolated allocations: per account's own modes, and with --mode isolated
# (explicit rows, else an equal share of the margin-asset balance left).
ISOLATED = {"carol": {"BTC_USDC-PERPETUAL": 5000.0, "ETH-USDT-SWAP": 15000.0},
            "erin": {"BTC_USDC-PERPETUAL": 2000.0}}
ALL_ISOLATED = {"alice": {"BTC_USDC-PERPETUAL": 25000.0, "BTC-31JAN25-100000-C": 25000.0},
                "bob": dict.fromkeys(("BTC-PERPETUAL", "BTC-31JAN25-90000-P", "BTC-31JAN25"),
                                     1.2 / 3),
                "carol": ISOLATED["carol"], "dave": {"ETH-USDT-SWAP": 1200.0},
                "erin": ISOLATED["erin"]}
MODELS = {"BTC_USDC-PERPETUAL": "deribit_btc_futures", "BTC-PERPETUAL": "deribit_btc_futures",
          "BTC-31JAN25": "deribit_btc_futures", "ETH-USDT-SWAP": "deribit_eth_futures",
          "BTC-31JAN25-100000-C": "deribit_options", "BTC-31JAN25-90000-P": "deribit_options"}


def direct_engine(mode: str | None = None, *, cross_preset: str = "deribit",
                  scenario_preset: str = "deribit") -> mk.Engine:
    """The small venue built by hand with the Engine API."""
    eng = mk.Engine()
    eng.now = NOW
    eng.add_asset("USDC", price=1.0, time=NOW, quantum=0.01)
    eng.add_asset("USDT", price=0.9995, time=NOW, quantum=0.01)
    eng.add_asset("BTC", price=97000.0, time=NOW, quantum=1e-8,
                  haircuts=[(1.0, 0.0), (math.inf, 0.05)])
    eng.add_asset("ETH", price=3400.0, time=NOW, quantum=1e-8)
    for name in presets.preset_names():
        presets.apply_preset(eng, name, thresholds=False)
    eng.set_thresholds(**presets.PRESETS[cross_preset]["thresholds"])
    eng.rate = 0.01
    option_model = {"bybit": "bybit_options", "bitcom": "bitcom_options"}.get(
        cross_preset, "deribit_options")
    for sym, model in MODELS.items():
        model = option_model if model == "deribit_options" else model
        eng.add_instrument(sym, model=model, contract_size=10.0 if sym == "BTC-PERPETUAL" else 1.0)
    eng.set_forward("BTC", datetime(2025, 1, 31, 8, tzinfo=timezone.utc), 98000.0, NOW)
    eng.set_marks({"BTC_USDC-PERPETUAL": 97010.0, "BTC-PERPETUAL": 97020.0,
                   "BTC-31JAN25": 98100.0, "ETH-USDT-SWAP": 3401.5}, NOW)
    eng.set_vols({"BTC-31JAN25-90000-P": 0.6, "BTC-31JAN25-100000-C": 0.55}, NOW)
    modes = {a: mode or own for a, (_, own, _) in ACCOUNTS.items()}
    if "portfolio" in modes.values():
        preset = {"deribit": scenarios.deribit, "simple_grid": scenarios.simple_grid}
        eng.add_scenario_set(scenario_preset, **preset[scenario_preset]())
        for u in ("BTC", "ETH"):
            eng.set_scenarios(u, scenario_preset)
    isolated = ALL_ISOLATED if mode == "isolated" else ({} if mode else ISOLATED)
    holder: dict[tuple[str, str], str] = {}
    for name, (asset, _, balances) in ACCOUNTS.items():
        eng.add_account(name, asset)
        for a, amount in balances.items():
            eng.deposit(name, a, amount)
        if modes[name] == "portfolio":
            eng.set_mode(name, "portfolio")
        for sym, amount in isolated.get(name, {}).items():
            child = eng.open_isolated(name, sym, amount)
            holder[name, sym] = eng.accounts[child]
    for acct, sym, size, entry in POSITIONS:
        target = holder.get((acct, sym), acct)
        eng.set_positions([eng.accounts.index(target)], [eng.instruments.index(sym)], [size],
                          [entry])
    eng.place_order(holder.get(("alice", "BTC_USDC-PERPETUAL"), "alice"),
                    "BTC_USDC-PERPETUAL", 0.5, 96000.0)
    return eng


def write_csv(rows: list[dict], columns: list[str], path) -> None:
    """Rows as a CSV file, empty cells where a row has no value."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow(["" if r.get(c) is None else r[c] for c in columns])
