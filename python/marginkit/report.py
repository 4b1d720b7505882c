"""A venue's risk in one self-contained HTML file (``marginkit report``).

:func:`report_data` gathers, from the engine's public API, what the demo prints:
book totals and health states by margin asset, the riskiest accounts with
their liquidation prices, portfolio-versus-cross initial margin, for chosen
accounts their summary, attribution and liquidation plan, the liquidation plan
of the most endangered account, and a stress cascade round by round.
:func:`render_html` lays it out with the plots of :mod:`marginkit.plots` (an
account's P&L profile and risk-array heatmap, the cascade chart) embedded as
PNG data URIs, with inline CSS: the file needs nothing else to display.
Without matplotlib the tables are written and the report says the plots were
skipped. The engine passed in is not changed (stress and scenario work run on
copies).

Every number in a table cell also sits, unrounded, in the cell's
``data-value`` attribute (``repr`` of the float), so a script can read the
report back exactly.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np

from . import demo as _demo
from . import plots as _plots
from .engine import HEALTH_STATES, Engine
from .runtime import build_info

__all__ = ["build_report", "render_html", "report_data", "write_report"]


# ---- data ---------------------------------------------------------------------------

def _check_account(engine: Engine, account: Any) -> str:
    names = engine.accounts
    if isinstance(account, str):
        if account in names:
            return account
        raise ValueError(f"unknown account {account!r}")
    if isinstance(account, (int, np.integer)) and not isinstance(account, bool) \
            and 0 <= int(account) < len(names):
        return names[int(account)]
    raise ValueError(f"unknown account {account!r}")


def _account_detail(engine: Engine, name: str) -> dict[str, Any]:
    s = engine.summary(name)
    instruments = engine.instruments
    below, above = engine.liquidation_prices(name)
    attribution = [{"instrument": instruments[p.instrument], "size": p.size, "entry": p.entry,
                    "mark": p.mark, "im": p.im, "mm": p.mm, "equity": p.equity}
                   for p in engine.attribution(name)]
    plan = engine.plan_liquidation(name) if s.state in ("liquidation", "bankrupt") else None
    return {"account": name, "margin_asset": engine.margin_asset(name), "mode": engine.mode(name),
            "equity": s.equity, "im": s.im, "mm": s.mm, "available": s.available,
            "margin_ratio": s.margin_ratio, "state": s.state, "stale": s.stale,
            "underlying": engine.dominant_underlying(name),
            "liquidation_below": below, "liquidation_above": above,
            "attribution": attribution, "liquidation_plan": plan}


def report_data(engine: Engine, *, accounts: Sequence[str | int] | None = None,
                underlying: str | None = None, shock: float = -0.2, impact: float = 1e-6,
                max_rounds: int = 20, top: int = 10) -> dict[str, Any]:
    """Everything the report shows, as plain data.

    ``accounts``: the accounts detailed (summary, attribution, plan, plots);
    default the one portfolio margin frees the most capital for, and the
    riskiest account with positions. ``underlying`` of the
    stress cascade: default the underlying of the accounts' largest exposures,
    weighted by their maintenance margin in USD. ``shock``, ``impact``,
    ``max_rounds``: as :meth:`Engine.cascade` (run on a copy). ``top``: rows of
    the riskiest-accounts table. ValueError names an unknown account or
    underlying.
    """
    shock = float(shock)
    if not math.isfinite(shock) or shock <= -1.0:
        raise ValueError(f"shock must be finite and > -1 (got {shock})")
    if int(top) < 0 or int(max_rounds) < 1:
        raise ValueError("top must be >= 0 and max_rounds >= 1")
    chosen = [_check_account(engine, a) for a in (accounts or [])]
    if underlying is not None and underlying not in engine.assets:
        raise ValueError(f"unknown underlying {underlying!r}")
    names = engine.accounts
    ev = engine.evaluate_all()
    margin_assets, totals, ratio, riskiest = _demo.book_totals(engine, ev, int(top))
    order = [int(i) for i in np.argsort(ratio, kind="stable")]
    portfolio = _demo.portfolio_vs_cross(Engine.from_bytes(engine.to_bytes()))
    if not chosen:
        chosen = [r["account"] for r in portfolio["largest_savings"][:1]]
        riskiest_held = next((names[i] for i in order if engine.positions(i)), None)
        if riskiest_held is not None and riskiest_held not in chosen:
            chosen.append(riskiest_held)
    in_breach = [i for i in order if int(ev.state[i]) >= HEALTH_STATES.index("liquidation")]
    plan = engine.plan_liquidation(in_breach[0]) if in_breach else None
    if underlying is None:  # where most of the book's maintenance margin (USD) is
        weight: dict[str, float] = {}
        for i in range(len(names)):
            u = engine.dominant_underlying(i)
            usd = float(ev.mm[i]) * engine.price(margin_assets[i])
            if u is not None and math.isfinite(usd):
                weight[u] = weight.get(u, 0.0) + usd
        underlying = min(weight, key=lambda u: (-weight[u], u)) if weight else None
    stress = None
    if underlying is not None:
        start = engine.price(underlying)
        rounds = Engine.from_bytes(engine.to_bytes()).cascade(
            underlying, shock, impact=impact, max_rounds=max_rounds)
        stress = {"underlying": underlying, "shock": shock, "impact": impact,
                  "start_price": start, "rounds": rounds}
    info = build_info()
    return {
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "version": info["version"], "isa": info["isa"],
        "accounts": len(names), "instruments": len(engine.instruments),
        "states": {s: int((ev.state == k).sum()) for k, s in enumerate(HEALTH_STATES)},
        "totals": totals, "riskiest": riskiest, "portfolio_vs_cross": portfolio,
        "liquidation_plan": plan, "stress": stress,
        "details": [_account_detail(engine, a) for a in chosen],
    }


# ---- figures ------------------------------------------------------------------------

def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    return buf.getvalue()


def _figures(engine: Engine, data: dict[str, Any]) -> tuple[dict[str, bytes], list[str]]:
    """PNG figures by key (``profile:ACCOUNT``, ``heatmap:ACCOUNT``, ``cascade``),
    and notes on what was skipped. ImportError without matplotlib."""
    from . import plots

    figures: dict[str, bytes] = {}
    notes: list[str] = []
    for d in data["details"]:
        name = d["account"]
        if d["underlying"] is None:
            notes.append(f"{name}: no positions, no P&L profile or risk array")
            continue
        figures[f"profile:{name}"] = _png(plots.pnl_profile(engine, name))
        try:
            figures[f"heatmap:{name}"] = _png(plots.risk_heatmap(engine, name))
        except ValueError as exc:
            notes.append(f"{name}: no risk-array heatmap ({exc})")
    if data["stress"] is not None:
        s = data["stress"]
        figures["cascade"] = _png(plots.cascade_chart(s, start_price=s["start_price"]))
    return figures, notes


# ---- HTML ---------------------------------------------------------------------------

_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:2em;
border-bottom:1px solid #ddd;padding-bottom:.2em}h3{font-size:1.05em;margin-top:1.4em}
.meta,.note{color:#666;font-size:.9em}.skipped{background:#fff6e0;border:1px solid #f0c36d;
padding:.6em 1em;border-radius:4px}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:.86em}
caption{text-align:left;font-weight:600;padding:.3em 0}
th,td{padding:.25em .7em;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
th{background:#f6f6f6}td.text,th.text{text-align:left}td.why{white-space:normal;
text-align:left;max-width:28em}tr.bad td{color:#b00020}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#666;font-size:.85em}
"""


class _Num:
    """A numeric cell: the formatted text, and the exact value in ``data-value``."""

    def __init__(self, value: float | int, fmt: str = ",.4f") -> None:
        self.value = value
        self.fmt = fmt

    def html(self) -> str:
        v = self.value
        if isinstance(v, float) and not math.isfinite(v):
            text = "-" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        else:
            text = format(v, self.fmt)
        return f'<td data-value="{html.escape(repr(v))}">{html.escape(text)}</td>'


def _cell(value: Any) -> str:
    if isinstance(value, _Num):
        return value.html()
    if isinstance(value, tuple):  # (text, css class)
        return f'<td class="{value[1]}">{html.escape(str(value[0]))}</td>'
    return f'<td class="text">{html.escape(str(value))}</td>'


def _table(caption: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
           table_id: str | None = None, text_columns: Sequence[int] = (0,)) -> str:
    text = ' class="text"'
    head = "".join(f"<th{text if k in text_columns else ''}>{html.escape(c)}</th>"
                   for k, c in enumerate(columns))
    body = "".join(f"<tr>{''.join(_cell(v) for v in row)}</tr>" for row in rows)
    ident = f' id="{html.escape(table_id)}"' if table_id else ""
    return (f"<table{ident}><caption>{html.escape(caption)}</caption>"
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _figure_html(figures: dict[str, bytes], key: str, caption: str) -> str:
    png = figures.get(key)
    if png is None:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure id="fig-{html.escape(key.replace(":", "-"))}">'
            f'<img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _plan_html(plan: dict[str, Any], table_id: str) -> str:
    rows = [(st["kind"], st["instrument"], _Num(st["qty"]), _Num(st["price"]),
             _Num(st["penalty"], ",.6f"), _Num(st["released"], ",.6f"), (st["reason"], "why"))
            for st in plan["steps"]]
    out = _table(f"Liquidation plan for {plan['account']}: equity {plan['equity_before']:,.4f} "
                 f"vs target {plan['target_before']:,.4f}",
                 ("step", "instrument", "qty", "price", "penalty", "released", "why"), rows,
                 table_id=table_id, text_columns=(0, 1, 6))
    return out + f'<p class="note">After the plan: {html.escape(_demo.plan_outcome(plan))}.</p>'


def _detail_html(d: dict[str, Any], figures: dict[str, bytes]) -> str:
    name = d["account"]
    parts = [f'<h3 id="account-{html.escape(name)}">Account {html.escape(name)} '
             f'({html.escape(d["mode"])} margin, {html.escape(d["margin_asset"])})</h3>']
    rows = [("equity", _Num(d["equity"])), ("initial margin", _Num(d["im"])),
            ("maintenance margin", _Num(d["mm"])), ("available", _Num(d["available"])),
            ("margin ratio", _Num(d["margin_ratio"], ",.3f")), ("state", d["state"]),
            ("largest exposure", d["underlying"] or "-"),
            ("liquidation below", _Num(d["liquidation_below"], ",.2f")),
            ("liquidation above", _Num(d["liquidation_above"], ",.2f"))]
    parts.append(_table("Summary", ("", "value"), rows, table_id=f"summary-{name}"))
    rows = [(a["instrument"], _Num(a["size"]), _Num(a["entry"], ",.6g"), _Num(a["mark"], ",.6g"),
             _Num(a["im"], ",.6f"), _Num(a["mm"], ",.6f"), _Num(a["equity"], ",.6f"))
            for a in d["attribution"]]
    parts.append(_table(f"Attribution (requirements and equity in {d['margin_asset']})",
                        ("instrument", "size", "entry", "mark", "IM", "MM", "equity"), rows,
                        table_id=f"attribution-{name}"))
    if d["liquidation_plan"]:
        parts.append(_plan_html(d["liquidation_plan"], f"plan-{name}"))
    parts.append(_figure_html(figures, f"profile:{name}",
                              f"{name}: P&L across moves of {d['underlying']}, per vol shock, "
                              "with the requirement as loss levels"))
    parts.append(_figure_html(figures, f"heatmap:{name}",
                              f"{name}: risk array (scenario x position), worst scenario "
                              "framed"))
    return "".join(parts)


def render_html(data: dict[str, Any], figures: dict[str, bytes] | None = None,
                notes: Sequence[str] = (), *, title: str = "marginkit report",
                source: str | None = None, skipped: str | None = None) -> str:
    """The report as one HTML document (see the module docstring). ``figures``:
    PNG bytes by key (``profile:ACCOUNT``, ``heatmap:ACCOUNT``, ``cascade``);
    None means the plots were skipped, which the report says (``skipped``: why;
    default: matplotlib is missing). ``notes``: lines shown under the title."""
    figs = figures or {}
    esc = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">{esc(source or "")}{" - " if source else ""}{data["accounts"]:,} '
        f'accounts, {data["instruments"]} instruments; marginkit {esc(data["version"])} '
        f'({esc(data["isa"])}); generated {esc(data["generated"])}</p>',
    ]
    if figures is None:
        why = esc(skipped or _plots.INSTALL_HINT, quote=False)
        parts.append(f'<p class="skipped" id="plots-skipped">Plots skipped: {why}.</p>')
    for note in notes:
        parts.append(f'<p class="note">{esc(note)}</p>')
    parts.append("<h2>Book</h2>")
    rows = [(asset, _Num(t["accounts"], ","), _Num(t["equity"], ",.2f"), _Num(t["im"], ",.2f"),
             _Num(t["mm"], ",.2f")) for asset, t in sorted(data["totals"].items())]
    parts.append(_table("Book totals by margin asset",
                        ("margin asset", "accounts", "equity", "initial margin", "maintenance"),
                        rows, table_id="totals"))
    parts.append(_table("Health", tuple(data["states"]),
                        [tuple(_Num(v, ",") for v in data["states"].values())],
                        table_id="health", text_columns=()))
    rows = [(r["account"], r["margin_asset"], _Num(r["equity"]), _Num(r["mm"]),
             _Num(r["margin_ratio"], ".2f"), r["state"], _Num(r["liquidation_below"], ",.2f"),
             _Num(r["liquidation_above"], ",.2f")) for r in data["riskiest"]]
    parts.append(_table("Riskiest accounts (equity / maintenance margin)",
                        ("account", "asset", "equity", "MM", "ratio", "state", "liq. below",
                         "liq. above"), rows, table_id="riskiest", text_columns=(0, 1, 5)))
    pc = data["portfolio_vs_cross"]
    rows = []
    for asset, t in sorted(pc["totals"].items()):
        freed = t["cross_im"] - t["portfolio_im"]
        rows.append((asset, _Num(t["accounts"], ","), _Num(t["cross_im"], ",.2f"),
                     _Num(t["portfolio_im"], ",.2f"), _Num(freed, ",.2f"),
                     _Num(freed / t["cross_im"] if t["cross_im"] else 0.0, ".0%")))
    parts.append("<h2>Portfolio vs cross margin</h2>")
    parts.append(_table("Initial margin of the accounts holding options, in each mode",
                        ("margin asset", "accounts", "cross IM", "portfolio IM", "capital freed",
                         "share"), rows, table_id="portfolio-totals"))
    rows = [(r["account"], r["margin_asset"], _Num(r["cross_im"]), _Num(r["portfolio_im"]),
             _Num(r["cross_im"] - r["portfolio_im"])) for r in pc["largest_savings"]]
    parts.append(_table("Largest savings", ("account", "asset", "cross IM", "portfolio IM",
                                            "saved"), rows, table_id="portfolio-savings",
                        text_columns=(0, 1)))
    parts.append("<h2>Accounts</h2>")
    for d in data["details"]:
        parts.append(_detail_html(d, figs))
    parts.append("<h2>Liquidation</h2>")
    plan = data["liquidation_plan"]
    if plan:
        parts.append(_plan_html(plan, "liquidation-plan"))
    else:
        parts.append('<p class="note">No account is in breach.</p>')
    parts.append("<h2>Stress</h2>")
    s = data["stress"]
    if s is None:
        parts.append('<p class="note">No positions: no stress cascade.</p>')
    else:
        rows = [(_Num(r["round"], "d"), _Num(r["liquidated"], ","), _Num(r["volume"]),
                 _Num(r["price"], ",.2f"), _Num(r["bad_debt"], ",.2f"), _Num(r["fund"], ",.2f"),
                 _Num(r["adl_volume"], ",.2f"), _Num(r["socialized"], ",.2f"))
                for r in s["rounds"]]
        parts.append(_table(
            f"Stress: {s['underlying']} {s['shock']:+.0%} from {s['start_price']:,.2f}, "
            f"impact {s['impact']:g}; liquidations move the price (cascade)",
            ("round", "liquidated", "volume", "price", "bad debt $", "insurance fund $",
             "ADL notional $", "socialized $"), rows, table_id="stress", text_columns=()))
        parts.append(_figure_html(figs, "cascade", "Price, liquidated volume and insurance "
                                                   "fund by round"))
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)


def build_report(engine: Engine, *, plots: bool = True, source: str | None = None,
                 **kwargs: Any) -> tuple[str, dict[str, Any]]:
    """The HTML report of an engine, and a summary: ``accounts`` detailed,
    ``figures`` (keys embedded), ``plots_skipped`` (None, or why). ``kwargs``:
    as :func:`report_data`. ``plots=False`` leaves the plots out."""
    data = report_data(engine, **kwargs)
    figures: dict[str, bytes] | None = None
    notes: list[str] = []
    skipped = "not requested"
    if plots:
        try:
            figures, notes = _figures(engine, data)
            skipped = None
        except ImportError as exc:
            skipped = str(exc)
    text = render_html(data, figures, notes, source=source, skipped=skipped)
    return text, {"accounts": [d["account"] for d in data["details"]],
                  "figures": sorted(figures or {}), "plots_skipped": skipped,
                  "stress_underlying": data["stress"]["underlying"] if data["stress"] else None}


def write_report(path: Any, engine: Engine, **kwargs: Any) -> dict[str, Any]:
    """Writes :func:`build_report`'s HTML to ``path`` (UTF-8) and returns its
    summary with ``path`` and ``bytes``."""
    target = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {target}: no directory {folder}")
    if os.path.isdir(target):
        raise IsADirectoryError(f"cannot write {target}: it is a directory")
    text, summary = build_report(engine, **kwargs)
    with open(target, "w", encoding="utf-8") as f:
        f.write(text)
    summary.update(path=target, bytes=len(text.encode("utf-8")))
    return summary
