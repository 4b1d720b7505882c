"""The built-in demonstration: an option chain priced with Black-76.

It grows with the engine (accounts, portfolio margin, liquidation). Everything it
shows is computed by the public API on embedded data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import demo_book
from .engine import HEALTH_STATES, Engine
from .pricing import black76, implied_vol
from .runtime import build_info

# An embedded BTC market: forwards per expiry (days) and a smile per expiry.
_SPOT = 97_000.0
_EXPIRIES_DAYS = (30,)
_FORWARDS = {7: 97_150.0, 30: 97_700.0, 91: 99_300.0}
_ATM_VOL = {7: 0.52, 30: 0.55, 91: 0.58}
_STRIKES = (80_000.0, 90_000.0, 95_000.0, 100_000.0, 105_000.0, 110_000.0, 120_000.0)


def plan_outcome(plan: dict[str, Any]) -> str:
    """A liquidation plan's outcome in words: restored (equity back at or above
    the target), flat with the bad debt the insurance fund must take (a plan
    closes everything when no partial step restores the account), or short of
    the target."""
    eq, req = plan["equity_after"], plan["requirement_after"]
    figures = f"equity after {eq:,.4f}, requirement after {req:,.4f}"
    if plan["restored"] and req == 0.0 and eq < 0.0:
        return f"flat: {-eq:,.4f} of bad debt left for the insurance fund ({figures})"
    if plan["restored"]:
        return f"restored ({figures})"
    return f"not restored: still below the target ({figures})"


def chain() -> dict[str, np.ndarray]:
    """The demo chain as columns: one call and one put per expiry and strike."""
    rows = []
    for days in _EXPIRIES_DAYS:
        fwd = _FORWARDS[days]
        for k in _STRIKES:
            m = np.log(k / fwd)
            vol = _ATM_VOL[days] + 0.35 * m * m - 0.04 * m  # a simple smile
            for cp in (1, -1):
                rows.append((days, cp, fwd, k, days / 365.0, vol))
    cols = np.array(rows, dtype=np.float64).T
    return {
        "days": cols[0],
        "cp": cols[1].astype(np.int8),
        "forward": cols[2],
        "strike": cols[3],
        "expiry": cols[4],
        "vol": cols[5],
    }


def chain_summary() -> dict[str, Any]:
    """The priced chain as plain data (``marginkit demo --json``)."""
    c = chain()
    lin = black76(c["cp"], c["forward"], c["strike"], c["expiry"], c["vol"])
    inv = black76(c["cp"], c["forward"], c["strike"], c["expiry"], c["vol"], inverse=True)
    iv = implied_vol(lin.price, c["cp"], c["forward"], c["strike"], c["expiry"])
    options = []
    for i in range(len(c["cp"])):
        options.append({
            "expiry_days": int(c["days"][i]),
            "type": "call" if c["cp"][i] > 0 else "put",
            "forward": float(c["forward"][i]),
            "strike": float(c["strike"][i]),
            "vol": float(c["vol"][i]),
            "price_usd": float(lin.price[i]),
            "price_btc": float(inv.price[i]),
            "delta": float(lin.delta[i]),
            "gamma": float(lin.gamma[i]),
            "vega": float(lin.vega[i]),
            "theta": float(lin.theta[i]),
            "implied_vol": float(iv[i]),
        })
    return {"build": build_info(), "spot": _SPOT, "options": options,
            "book": book_report(demo_book.build_engine(risk=True))}


def book_totals(engine: Engine, ev: Any, top: int) -> tuple[list[str], dict[str, dict[str, float]],
                                                            np.ndarray, list[dict[str, Any]]]:
    """From an ``evaluate_all()`` result: each account's margin asset, totals per
    margin asset, margin ratios, and the ``top`` riskiest accounts with their
    liquidation prices."""
    names = engine.accounts
    margin_assets = [engine.margin_asset(i) for i in range(len(names))]
    totals: dict[str, dict[str, float]] = {}
    for i, asset in enumerate(margin_assets):
        t = totals.setdefault(asset, {"accounts": 0, "equity": 0.0, "im": 0.0, "mm": 0.0})
        t["accounts"] += 1
        t["equity"] += float(ev.equity[i])
        t["im"] += float(ev.im[i])
        t["mm"] += float(ev.mm[i])
    ratio = np.where(ev.mm > 0, ev.equity / np.where(ev.mm > 0, ev.mm, 1.0), np.inf)
    riskiest = []
    for i in np.argsort(ratio, kind="stable")[:top]:
        i = int(i)
        below, above = engine.liquidation_prices(i)
        riskiest.append({
            "account": names[i], "margin_asset": margin_assets[i],
            "equity": float(ev.equity[i]), "im": float(ev.im[i]), "mm": float(ev.mm[i]),
            "margin_ratio": float(ratio[i]), "state": HEALTH_STATES[int(ev.state[i])],
            "liquidation_below": below, "liquidation_above": above,
        })
    return margin_assets, totals, ratio, riskiest


def book_report(engine: Engine, top: int = 8) -> dict[str, Any]:
    """Totals, the riskiest accounts and a pre-trade check on the demo venue."""
    import time

    t0 = time.perf_counter()
    ev = engine.evaluate_all()
    elapsed = time.perf_counter() - t0
    names = engine.accounts
    margin_assets, totals, ratio, riskiest = book_totals(engine, ev, top)
    # A pre-trade check for the healthiest USDC account with room to trade.
    usdc = [i for i, a in enumerate(margin_assets) if a == "USDC" and ev.available[i] > 0]
    trader = max(usdc, key=lambda i: ev.available[i])
    instrument = "BTC_USDC-PERPETUAL"
    mark = engine.mark(instrument)
    check = engine.check_order(trader, instrument, 1.0, mark)
    portfolio = portfolio_vs_cross(engine)
    liquidation = None
    in_breach = [i for i in np.argsort(ratio, kind="stable") if ev.state[int(i)] >= 3]
    if in_breach:
        liquidation = engine.plan_liquidation(int(in_breach[0]))
    stress = Engine.from_bytes(engine.to_bytes()).cascade("BTC", -0.20, impact=2e-6,
                                                          max_rounds=8)
    return {
        "accounts": len(names),
        "instruments": len(engine.instruments),
        "portfolio_vs_cross": portfolio,
        "liquidation_plan": liquidation,
        "stress": {"underlying": "BTC", "shock": -0.20, "rounds": stress},
        "evaluate_all_seconds": elapsed,
        "states": {s: int((ev.state == k).sum()) for k, s in enumerate(HEALTH_STATES)},
        "totals": totals,
        "riskiest": riskiest,
        "pretrade": {
            "account": names[trader], "instrument": instrument, "qty": 1.0, "price": mark,
            "accepted": check.accepted, "reason": check.reason, "im_after": check.im_after,
            "available_after": check.available_after,
            "max_buy": engine.max_order_size(trader, instrument, "buy", mark),
            "max_sell": engine.max_order_size(trader, instrument, "sell", mark),
        },
    }


def portfolio_vs_cross(engine: Engine, top: int = 5) -> dict[str, Any]:
    """Initial margin of the accounts holding options, in cross and in portfolio
    mode (the same positions), and the capital portfolio margin frees."""
    rows = []
    for i, name in enumerate(engine.accounts):
        if not any(p["instrument"].endswith(("-C", "-P")) for p in engine.positions(i)):
            continue
        cross = engine.summary(i)
        engine.set_mode(i, "portfolio")
        pm = engine.summary(i)
        engine.set_mode(i, "cross")
        rows.append({"account": name, "margin_asset": engine.margin_asset(i),
                     "cross_im": cross.im, "portfolio_im": pm.im})
    saved = sorted(rows, key=lambda r: r["cross_im"] - r["portfolio_im"], reverse=True)
    totals: dict[str, dict[str, float]] = {}
    for r in rows:
        t = totals.setdefault(r["margin_asset"], {"accounts": 0, "cross_im": 0.0,
                                                  "portfolio_im": 0.0})
        t["accounts"] += 1
        t["cross_im"] += r["cross_im"]
        t["portfolio_im"] += r["portfolio_im"]
    return {"totals": totals, "largest_savings": saved[:top]}


def run() -> None:
    """Print the demo with rich tables."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # files and pipes: do not squeeze the tables
    info = build_info()
    console.rule("[bold]marginkit demo")
    console.print(
        f"marginkit {info['version']}: kernels [bold]{info['isa']}[/] "
        f"(available: {', '.join(info['isa_available'])}), {info['num_threads']} threads"
    )
    summary = chain_summary()
    for days in _EXPIRIES_DAYS:
        rows = [o for o in summary["options"] if o["expiry_days"] == days]
        fwd = rows[0]["forward"]
        table = Table(
            title=f"BTC options, {days} days, forward {fwd:,.0f} "
            "(USD; vega per vol point, theta per day)",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        for col in ("strike", "vol", "call", "put", "call BTC", "d call", "d put", "gamma",
                    "vega", "theta"):
            table.add_column(col, justify="right")
        calls = [o for o in rows if o["type"] == "call"]
        puts = [o for o in rows if o["type"] == "put"]
        for c, p in zip(calls, puts, strict=False):
            table.add_row(
                f"{c['strike']:,.0f}", f"{c['vol']:.1%}", f"{c['price_usd']:,.0f}",
                f"{p['price_usd']:,.0f}", f"{c['price_btc']:.4f}", f"{c['delta']:+.3f}",
                f"{p['delta']:+.3f}", f"{c['gamma']:.1e}", f"{c['vega'] / 100:,.1f}",
                f"{c['theta'] / 365:,.1f}",
            )
        console.print(table)
    worst = max(abs(o["implied_vol"] - o["vol"]) for o in summary["options"])
    console.print(f"Implied-vol round trip over the chain: max error {worst:.1e}")

    with console.status("Building the demo venue and margining it in every mode..."):
        engine = demo_book.build_engine(risk=True)
        report = book_report(engine)
    _print_book(console, report)


def _print_book(console: Any, report: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table

    console.rule("[bold]Demo venue, cross margin")
    console.print(
        f"{report['accounts']:,} accounts, {report['instruments']} instruments (BTC, ETH, SOL: "
        f"perpetuals, futures, options; inverse and linear), evaluated in "
        f"{report['evaluate_all_seconds'] * 1e3:.1f} ms")
    table = Table(title="Book totals by margin asset", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("margin asset", "accounts", "equity", "initial margin", "maintenance"):
        table.add_column(col, justify="right")
    for asset, t in sorted(report["totals"].items()):
        table.add_row(asset, f"{t['accounts']:,}", f"{t['equity']:,.2f}", f"{t['im']:,.2f}",
                      f"{t['mm']:,.2f}")
    console.print(table)
    console.print("Health: " + ", ".join(f"{k} {v:,}" for k, v in report["states"].items()))
    table = Table(title="Riskiest accounts (equity / maintenance margin)", title_justify="left",
                  box=box.SIMPLE_HEAD)
    for col in ("account", "asset", "equity", "MM", "ratio", "state", "liq. below",
                "liq. above"):
        table.add_column(col, justify="right")
    for r in report["riskiest"]:
        table.add_row(r["account"], r["margin_asset"], f"{r['equity']:,.4f}", f"{r['mm']:,.4f}",
                      f"{r['margin_ratio']:.2f}", r["state"], f"{r['liquidation_below']:,.2f}",
                      f"{r['liquidation_above']:,.2f}")
    console.print(table)
    p = report["pretrade"]
    verdict = "[green]accepted" if p["accepted"] else f"[red]rejected ({p['reason']})"
    console.print(
        f"Pre-trade check: {p['account']} buys {p['qty']} {p['instrument']} at "
        f"{p['price']:,.2f}: {verdict}[/], IM after {p['im_after']:,.2f}, available after "
        f"{p['available_after']:,.2f}; largest buy {p['max_buy']:,.4f}, largest sell "
        f"{p['max_sell']:,.4f}")
    _print_modes_and_stress(console, report)


def _print_modes_and_stress(console: Any, report: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table

    pc = report["portfolio_vs_cross"]
    table = Table(title="Portfolio vs cross margin (accounts holding options)",
                  title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("margin asset", "accounts", "cross IM", "portfolio IM", "capital freed"):
        table.add_column(col, justify="right")
    for asset, t in sorted(pc["totals"].items()):
        freed = t["cross_im"] - t["portfolio_im"]
        share = freed / t["cross_im"] if t["cross_im"] else 0.0
        table.add_row(asset, f"{t['accounts']:,}", f"{t['cross_im']:,.2f}",
                      f"{t['portfolio_im']:,.2f}", f"{freed:,.2f} ({share:.0%})")
    console.print(table)
    plan = report["liquidation_plan"]
    if plan:
        table = Table(
            title=f"Liquidation plan for {plan['account']}: equity {plan['equity_before']:,.4f}"
                  f" vs target {plan['target_before']:,.4f}",
            title_justify="left", box=box.SIMPLE_HEAD)
        for col in ("step", "instrument", "qty", "price", "penalty", "released", "why"):
            table.add_column(col, justify="right" if col not in ("why", "instrument") else "left")
        for st in plan["steps"]:
            table.add_row(st["kind"], st["instrument"], f"{st['qty']:,.4f}",
                          f"{st['price']:,.4f}", f"{st['penalty']:,.6f}",
                          f"{st['released']:,.6f}", st["reason"])
        console.print(table)
        console.print(f"After the plan: {plan_outcome(plan)}")
    stress = report["stress"]
    table = Table(title=f"Stress: {stress['underlying']} {stress['shock']:+.0%}, liquidations "
                        "move the price (cascade)", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("round", "liquidated", "volume", "price", "bad debt $", "insurance fund $",
                "ADL notional $"):
        table.add_column(col, justify="right")
    for r in stress["rounds"]:
        table.add_row(str(r["round"]), f"{r['liquidated']:,}", f"{r['volume']:,.4f}",
                      f"{r['price']:,.2f}", f"{r['bad_debt']:,.2f}", f"{r['fund']:,.2f}",
                      f"{r['adl_volume']:,.2f}")
    console.print(table)
