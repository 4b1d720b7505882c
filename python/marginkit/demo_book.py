"""An embedded demo venue: BTC, ETH and SOL with perpetuals, futures and options,
inverse (coin-settled, Deribit-style) and linear (USDC), a market snapshot, and a
few thousand cross-margin accounts. Deterministic (seeded)."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np

from . import scenarios
from .engine import Engine
from .presets import apply_preset
from .pricing import black76

NOW = datetime(2025, 1, 2, 8, 0, tzinfo=timezone.utc)
SPOT = {"BTC": 97_000.0, "ETH": 3_400.0, "SOL": 190.0}
ATM_VOL = {"BTC": 0.55, "ETH": 0.68, "SOL": 0.85}
EXPIRIES = ("31JAN25", "28MAR25")
STRIKES = {"BTC": (80_000, 90_000, 100_000, 110_000, 120_000),
           "ETH": (2_800, 3_200, 3_600, 4_000),
           "SOL": (150, 190, 230)}


def _expiry(code: str) -> datetime:
    return datetime.strptime(code, "%d%b%y").replace(hour=8, tzinfo=timezone.utc)


def _years(code: str) -> float:
    return (_expiry(code) - NOW).total_seconds() / (365 * 86400)


def _smile(coin: str, strike: float, fwd: float) -> float:
    m = math.log(strike / fwd)
    return ATM_VOL[coin] + 0.30 * m * m - 0.05 * m


def build_engine(n_accounts: int = 3000, seed: int = 7, *, risk: bool = False) -> Engine:
    """The demo venue with ``n_accounts`` accounts (cross margin). With ``risk``,
    also portfolio-margin grids per underlying, liquidity models, liquidation
    parameters and an insurance fund (:func:`configure_risk`)."""
    rng = np.random.default_rng(seed)
    eng = Engine()
    eng.now = NOW.timestamp()
    eng.add_asset("USDC", price=1.0, quantum=0.01)
    eng.add_asset("BTC", price=SPOT["BTC"], quantum=1e-8,
                  haircuts=[(1_000, 0.0), (5_000, 0.025), (math.inf, 0.05)])
    eng.add_asset("ETH", price=SPOT["ETH"], quantum=1e-8,
                  haircuts=[(10_000, 0.0), (math.inf, 0.05)])
    eng.add_asset("SOL", price=SPOT["SOL"], quantum=1e-8, haircuts=[(math.inf, 0.10)])
    apply_preset(eng, "deribit")
    futures_model = {"BTC": "deribit_btc_futures", "ETH": "deribit_eth_futures",
                     "SOL": "deribit_sol_usdc_futures"}
    for coin in ("BTC", "ETH"):  # inverse, coin-settled (USD face value 10 per contract)
        eng.add_instrument(f"{coin}-PERPETUAL", model=futures_model[coin], contract_size=10.0,
                           mark=SPOT[coin] * 1.0002)
        for code in EXPIRIES:
            fwd = SPOT[coin] * math.exp(0.08 * _years(code))
            eng.add_instrument(f"{coin}-{code}", model=futures_model[coin], contract_size=10.0,
                               mark=fwd)
    for coin in ("BTC", "ETH", "SOL"):  # linear, USDC-settled
        eng.add_instrument(f"{coin}_USDC-PERPETUAL", model=futures_model[coin],
                           mark=SPOT[coin] * 1.0001)
    for coin in ("BTC", "ETH", "SOL"):
        for code in EXPIRIES:
            t = _years(code)
            fwd = SPOT[coin] * math.exp(0.08 * t)
            for k in STRIKES[coin]:
                inverse = coin != "SOL"
                prefix = coin if inverse else f"{coin}_USDC"
                for cp in ("C", "P"):
                    name = f"{prefix}-{code}-{k}-{cp}"
                    mark = black76(cp, fwd, float(k), t, _smile(coin, k, fwd),
                                   inverse=inverse, greeks=("price",)).price[0]
                    eng.add_instrument(name, model="deribit_options", mark=float(mark))
    _populate(eng, rng, n_accounts)
    if risk:
        configure_risk(eng)
    return eng


def configure_risk(eng: Engine) -> None:
    """Portfolio-margin grids per underlying, liquidity, liquidation and the fund."""
    eng.add_scenario_set("deribit", **scenarios.deribit(short_option_charge=0.01))
    for coin in ("BTC", "ETH", "SOL"):
        eng.set_scenarios(coin, "deribit")
    for name in eng.instruments:
        is_option = name.endswith(("-C", "-P"))
        eng.set_liquidity(name, spread=0.002 if is_option else 0.0005,
                          impact=1e-4 if is_option else 2e-6)
    eng.set_liquidation_params(target="maintenance", buffer=0.05, fee_rate=0.005)
    eng.fund_insurance("USDC", 250_000.0)
    eng.fund_insurance("BTC", 2.0)
    eng.fund_insurance("ETH", 30.0)


def _populate(eng: Engine, rng: np.random.Generator, n: int) -> None:
    """Random cross accounts: a USDC trader of linear products, or a coin trader
    of that coin's inverse products, with leverage from modest to reckless."""
    instruments = eng.instruments
    margin = rng.choice(["USDC", "BTC", "ETH"], size=n, p=[0.5, 0.3, 0.2])
    ids = [eng.add_account(f"acct{i:05d}", str(margin[i])) for i in range(n)]
    acc, ins, size, entry, deposits = [], [], [], [], {"USDC": [], "BTC": [], "ETH": []}
    for i, aid in enumerate(ids):
        m = str(margin[i])
        if m == "USDC":
            menu = [x for x in instruments if "_USDC" in x]
            equity_usd = float(rng.lognormal(10.0, 1.2))
        else:
            menu = [x for x in instruments if x.startswith(f"{m}-")]
            equity_usd = float(rng.lognormal(10.5, 1.2))
        deposits[m].append((aid, equity_usd / SPOT.get(m, 1.0)))
        leverage = float(rng.choice([1.0, 2.0, 5.0, 10.0, 20.0], p=[0.25, 0.3, 0.3, 0.12, 0.03]))
        picks = rng.choice(len(menu), size=min(len(menu), int(rng.integers(1, 6))), replace=False)
        for j in picks:
            name = menu[int(j)]
            iid = instruments.index(name)
            mark = eng.mark(iid)
            coin = name.split("-")[0].split("_")[0]
            is_option = name.endswith(("-C", "-P"))
            is_inverse = "_USDC" not in name
            usd = equity_usd * leverage / len(picks) * float(rng.uniform(0.3, 1.0))
            if is_option:
                qty = usd / SPOT[coin] * float(rng.choice([-1.0, 1.0], p=[0.4, 0.6])) * 0.25
                px = mark * float(rng.uniform(0.9, 1.1))
            elif is_inverse:
                qty = usd / 10.0 * float(rng.choice([-1.0, 1.0]))
                px = mark * float(rng.uniform(0.95, 1.05))
            else:
                qty = usd / mark * float(rng.choice([-1.0, 1.0]))
                px = mark * float(rng.uniform(0.95, 1.05))
            acc.append(aid)
            ins.append(iid)
            size.append(round(qty, 4) or 0.0001)
            entry.append(px)
    for asset, rows in deposits.items():
        if rows:
            a, amt = zip(*rows, strict=True)
            eng.deposit_many(np.array(a), asset, np.array(amt))
    eng.set_positions(np.array(acc), np.array(ins), np.array(size), np.array(entry))
