"""The built-in demonstration: an option chain priced with Black-76.

It grows with the engine (accounts, portfolio margin, liquidation). Everything it
shows is computed by the public API on embedded data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .pricing import black76, implied_vol
from .runtime import build_info

# An embedded BTC market: forwards per expiry (days) and a smile per expiry.
_SPOT = 97_000.0
_EXPIRIES_DAYS = (7, 30, 91)
_FORWARDS = {7: 97_150.0, 30: 97_700.0, 91: 99_300.0}
_ATM_VOL = {7: 0.52, 30: 0.55, 91: 0.58}
_STRIKES = (80_000.0, 90_000.0, 95_000.0, 100_000.0, 105_000.0, 110_000.0, 120_000.0)


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
    return {"build": build_info(), "spot": _SPOT, "options": options}


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
