"""Plots of an account's risk and of a stress cascade (matplotlib, optional).

Install the extra with ``pip install "marginkit[plot]"``; everything else in
marginkit works without it. Each plot function returns a
:class:`matplotlib.figure.Figure` drawn on the Agg canvas (no display, no pyplot
state: safe on servers and in threads), and also writes it to ``path`` when one
is given (the format follows the extension). The figure is ``figsize x dpi``
pixels. In a notebook, the returned figure displays itself.

* :func:`pnl_profile` - an account's P&L across price moves of an underlying,
  one curve per volatility shock (down / none / up), with the maintenance and
  initial requirements drawn as loss levels and the loss that would wipe out
  the equity.
* :func:`risk_heatmap` - the risk array of the account's positions on an
  underlying: each position's weighted P&L in each scenario of the
  underlying's scenario set, with the worst scenario highlighted.
* :func:`cascade_chart` - price, liquidated volume and insurance fund by round
  of :meth:`marginkit.Engine.cascade`.

The numbers come from the engine: :func:`pnl_profile_data` and
:func:`scenario_matrix` return what the plots draw. Both work on a copy of
the engine, so the engine passed in is never changed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .engine import Engine

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "INSTALL_HINT",
    "VOL_MODEL_KEYS",
    "cascade_chart",
    "pnl_profile",
    "pnl_profile_data",
    "risk_heatmap",
    "scenario_label",
    "scenario_matrix",
]

INSTALL_HINT = 'marginkit\'s plots need matplotlib: pip install "marginkit[plot]"'

#: Keyword arguments of :meth:`Engine.add_scenario_set` that make a volatility-shock model.
VOL_MODEL_KEYS = ("vol_up", "vol_down", "relative", "scale_by_dte", "pivot_days",
                  "floor_days", "p_short", "p_long", "min_vol_up")
_VOL_NAMES = {-1: "down", 0: "none", 1: "up"}
_VOL_COLORS = {"down": "#1f77b4", "none": "#222222", "up": "#d62728"}
_PROFILE_SET = "__marginkit_plot_profile__"
_SCRATCH_ACCOUNT = "__marginkit_plot_position_{}__"


def _figure(figsize: tuple[float, float], dpi: float) -> Figure:
    """A figure on the Agg canvas; ImportError with the install hint without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _finish(fig: Figure, path: Any) -> Figure:
    if path is not None:
        fig.savefig(path, dpi=fig.dpi)
    return fig


def _scratch(engine: Engine) -> Engine:
    """A copy of the engine to work on (scenario sets, modes, helper accounts)."""
    return Engine.from_bytes(engine.to_bytes())


def _account_name(engine: Engine, account: str | int) -> str:
    if isinstance(account, str):
        if account not in engine.accounts:
            raise ValueError(f"unknown account {account!r}")
        return account
    names = engine.accounts
    if isinstance(account, (int, np.integer)) and not isinstance(account, bool) \
            and 0 <= int(account) < len(names):
        return names[int(account)]
    raise ValueError(f"unknown account {account!r}")


def _underlying(engine: Engine, account: str, underlying: str | None) -> str:
    if underlying is None:
        u = engine.dominant_underlying(account)
        if u is None:
            raise ValueError(f"account {account!r} has no positions")
        return u
    if underlying not in engine.assets:
        raise ValueError(f"unknown underlying {underlying!r}")
    return underlying


def _group(engine: Engine, account: str, underlying: str) -> dict[str, Any] | None:
    """The account's portfolio group of ``underlying`` (the account must be in
    portfolio mode), or None if the underlying has no grid scenario set."""
    for g in engine.portfolio(account):
        if g["underlying"] == underlying:
            return g
    return None


def scenario_label(move: float, vol: int, weight: float = 1.0) -> str:
    """``"+16% vol up"``, with the weight when it is not 1 (damped extended moves)."""
    text = f"{move:+.0%} vol {_VOL_NAMES.get(int(vol), str(vol))}"
    return text if weight == 1.0 else f"{text} (x{weight:.3g})"


# ---- P&L profile ------------------------------------------------------------------

def pnl_profile_data(engine: Engine, account: str | int, *, underlying: str | None = None,
                     moves: Sequence[float] | None = None,
                     vol_model: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The account's P&L across price moves of ``underlying``, per vol shock.

    ``underlying``: default the account's largest exposure
    (:meth:`Engine.dominant_underlying`). ``moves``: relative price moves
    (default -30 % to +30 % in 1 % steps). ``vol_model``: the volatility shocks,
    as keyword arguments of :meth:`Engine.add_scenario_set` (a preset's dict such
    as ``scenarios.span(...)`` works; other keys are ignored); default the shocks
    of the underlying's own scenario set, else the
    :func:`marginkit.scenarios.deribit` preset's.

    The revaluation is the engine's own: on a copy, a scenario set with one
    scenario per move and vol shock (weight 1) is given to the underlying and
    the account's positions on it are revalued through the risk arrays, so the
    P&L is that of portfolio margin (futures in closed form, options with
    Black-76 at the shocked forward and volatility; collateral is not
    revalued), in the account's margin asset.

    Returns a dict: ``account``, ``underlying``, ``margin_asset``, ``mode``,
    ``price`` (the underlying's USD price now), ``moves`` and ``prices`` (arrays),
    ``pnl`` (``{"down", "none", "up"}`` -> array per move), the account's current
    ``equity``, ``im`` and ``mm`` (in its own mode), and ``grid``: the
    underlying's own scenario set, if it has one, as ``(move, vol, pnl)`` rows
    (unweighted P&L) within the plotted range, and its ``set`` name.
    """
    name = _account_name(engine, account)
    u = _underlying(engine, name, underlying)
    mv = np.asarray(np.linspace(-0.3, 0.3, 61) if moves is None else moves, dtype=np.float64)
    if mv.ndim != 1 or mv.size == 0:
        raise ValueError("moves must be a non-empty 1-D sequence")
    if not np.all(np.isfinite(mv)) or np.any(mv <= -1.0):
        raise ValueError("moves must be finite and > -1")
    mv = np.unique(mv)
    copy = _scratch(engine)
    copy.set_mode(name, "portfolio")
    grid_rows: list[tuple[float, int, float]] = []
    set_name = None
    own = _group(copy, name, u)
    if own is not None:
        set_name = own["set"]
        info = copy.scenario_set_info(set_name)
        if vol_model is None:  # the underlying's own set's volatility shocks
            vol_model = info
        for (m, v, w), p in zip(info["scenarios"], own["pnl"], strict=True):
            if w > 0 and mv[0] <= m <= mv[-1]:
                grid_rows.append((float(m), int(v), float(p) / w))
    if vol_model is None:
        from . import scenarios

        vol_model = scenarios.deribit()
    shocks = {k: vol_model[k] for k in VOL_MODEL_KEYS if k in vol_model}
    copy.add_scenario_set(_PROFILE_SET, [(float(m), v, 1.0) for m in mv for v in (-1, 0, 1)],
                          **shocks)
    copy.set_scenarios(u, _PROFILE_SET)
    group = _group(copy, name, u)
    if group is None:  # pragma: no cover - set_scenarios just gave it a grid set
        raise ValueError(f"account {name!r} has no positions on {u}")
    pnl = np.asarray(group["pnl"], dtype=np.float64).reshape(mv.size, 3)
    summary = engine.summary(name)
    price = engine.price(u)
    return {
        "account": name, "underlying": u, "margin_asset": engine.margin_asset(name),
        "mode": engine.mode(name), "price": price, "moves": mv, "prices": price * (1.0 + mv),
        "pnl": {"down": pnl[:, 0].copy(), "none": pnl[:, 1].copy(), "up": pnl[:, 2].copy()},
        "equity": summary.equity, "im": summary.im, "mm": summary.mm,
        "grid": grid_rows, "set": set_name,
    }


def pnl_profile(engine: Engine, account: str | int, *, underlying: str | None = None,
                moves: Sequence[float] | None = None,
                vol_model: Mapping[str, Any] | None = None, path: Any = None,
                figsize: tuple[float, float] = (9.0, 5.5), dpi: float = 100) -> Figure:
    """The account's P&L profile across price moves of ``underlying``.

    One curve per vol shock (down / none / up, from :func:`pnl_profile_data`,
    which documents the arguments), the points of the underlying's own scenario
    set as markers, and horizontal loss levels: the maintenance and initial
    requirements (``-MM``, ``-IM``: the losses the margin covers) and ``-equity``
    (the loss that leaves nothing). The bottom axis is the underlying's price,
    the top one the move. Returns the figure; writes it to ``path`` if given.
    """
    d = pnl_profile_data(engine, account, underlying=underlying, moves=moves,
                         vol_model=vol_model)
    fig = _figure(figsize, dpi)
    ax = fig.add_subplot(1, 1, 1)
    prices = d["prices"]
    for shock in ("down", "none", "up"):
        ax.plot(prices, d["pnl"][shock], color=_VOL_COLORS[shock], lw=1.8,
                label=f"vol {shock}", gid=f"pnl-vol-{shock}")
    if d["grid"]:
        for v in (-1, 0, 1):
            pts = [(m, p) for m, vv, p in d["grid"] if vv == v]
            if pts:
                m, p = (np.array(x) for x in zip(*pts, strict=True))
                ax.plot(d["price"] * (1 + m), p, "o", ms=4, mfc="none",
                        color=_VOL_COLORS[_VOL_NAMES[v]], gid=f"grid-vol-{_VOL_NAMES[v]}",
                        label=f"{d['set']} grid" if v == 0 else None)
    levels = (("mm", "-MM (maintenance)", "#ff7f0e", "--"),
              ("im", "-IM (initial)", "#9467bd", "--"),
              ("equity", "-equity (wiped out)", "#8c564b", ":"))
    curves = np.concatenate(list(d["pnl"].values()))
    low = min(float(curves.min()), 0.0)
    high = max(float(curves.max()), 0.0)
    for key in ("mm", "im"):
        if math.isfinite(d[key]):
            low = min(low, -d[key])
    span = max(high - low, 1e-12)
    floor = low - 0.08 * span  # levels far below the curves would flatten them: noted instead
    for key, label, color, style in levels:
        value = d[key]
        if not math.isfinite(value):
            continue
        if -value >= low - 2.0 * span:
            ax.axhline(-value, color=color, ls=style, lw=1.2, label=f"{label} {-value:,.4g}",
                       gid=f"level-{key}")
            floor = min(floor, -value - 0.08 * span)
        else:
            ax.plot([], [], color=color, ls=style, lw=1.2,
                    label=f"{label} {-value:,.4g} (below the plot)")
    ax.set_ylim(floor, high + 0.08 * span)
    ax.axhline(0.0, color="#999999", lw=0.6)
    ax.axvline(d["price"], color="#999999", lw=0.8, ls=":", gid="price-now")
    ax.set_xlabel(f"{d['underlying']} price (USD)")
    ax.set_ylabel(f"P&L ({d['margin_asset']})")
    ax.set_title(f"{d['account']}: P&L across {d['underlying']} moves "
                 f"({d['mode']} margin, {d['margin_asset']})")
    spot = d["price"]
    top = ax.secondary_xaxis("top", functions=(lambda p: p / spot - 1.0,
                                               lambda m: spot * (1.0 + m)))
    top.set_xlabel("move")
    from matplotlib.ticker import PercentFormatter

    top.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return _finish(fig, path)


# ---- risk-array heatmap -------------------------------------------------------------

def scenario_matrix(engine: Engine, account: str | int, *,
                    underlying: str | None = None) -> dict[str, Any]:
    """Each position's weighted P&L in each scenario of ``underlying``'s set.

    ``underlying``: default the account's largest exposure. The underlying
    needs a grid scenario set (:meth:`Engine.set_scenarios`); ValueError
    otherwise. The positions are those the account's portfolio group holds;
    each column is revalued by the engine on its own (a helper account holding
    only that position, on a copy), so the columns are in the account's margin
    asset and weighted like the requirement, and they add up to the group's
    scenario P&L (:meth:`Engine.portfolio`), whatever the account's mode.

    Returns a dict: ``account``, ``underlying``, ``margin_asset``, ``set``,
    ``scenarios`` (``(move, vol, weight)`` rows), ``labels``, ``instruments``,
    ``sizes``, ``matrix`` (scenarios x positions), ``total`` (the group's P&L
    per scenario), ``worst`` (the index of the worst scenario) and ``loss``.
    """
    name = _account_name(engine, account)
    u = _underlying(engine, name, underlying)
    copy = _scratch(engine)
    copy.set_mode(name, "portfolio")
    group = _group(copy, name, u)
    if group is None:
        raise ValueError(f"{u} has no scenario set, or account {name!r} holds nothing on it "
                         "(risk arrays need Engine.set_scenarios)")
    info = copy.scenario_set_info(group["set"])
    margin_asset = copy.margin_asset(name)
    positions = {p["instrument"]: p for p in copy.positions(name)}
    ids = {n: i for i, n in enumerate(copy.instruments)}
    columns = []
    for k, instrument in enumerate(group["instruments"]):
        helper = _SCRATCH_ACCOUNT.format(k)
        aid = copy.add_account(helper, margin_asset)
        p = positions[instrument]
        copy.set_positions(np.array([aid]), np.array([ids[instrument]]), np.array([p["size"]]),
                           np.array([p["entry"]]))
        copy.set_mode(aid, "portfolio")
        own = _group(copy, helper, u)
        columns.append(np.asarray(own["pnl"], dtype=np.float64) if own is not None
                       else np.zeros(len(info["scenarios"])))
    matrix = (np.column_stack(columns) if columns
              else np.zeros((len(info["scenarios"]), 0)))
    return {
        "account": name, "underlying": u, "margin_asset": margin_asset, "set": group["set"],
        "scenarios": list(info["scenarios"]),
        "labels": [scenario_label(m, v, w) for m, v, w in info["scenarios"]],
        "instruments": list(group["instruments"]),
        "sizes": [positions[i]["size"] for i in group["instruments"]],
        "matrix": matrix, "total": np.asarray(group["pnl"], dtype=np.float64),
        "worst": int(group["worst"]), "loss": float(group["loss"]),
    }


def risk_heatmap(engine: Engine, account: str | int, *, underlying: str | None = None,
                 path: Any = None, figsize: tuple[float, float] | None = None,
                 dpi: float = 100) -> Figure:
    """The risk-array heatmap of an account: scenario (rows, labelled by move
    and vol shock) x position (columns), each cell the position's weighted P&L
    in the margin asset (:func:`scenario_matrix`), on a diverging scale centred
    at zero; beside it, the total per scenario. The worst scenario is framed and
    its total drawn in red. Default ``figsize``: grows with the positions and
    scenarios. Returns the figure; writes it to ``path`` if given.
    """
    d = scenario_matrix(engine, account, underlying=underlying)
    m = d["matrix"]
    n_scen, n_pos = m.shape
    if figsize is None:
        figsize = (max(8.0, 3.5 + 1.1 * n_pos), max(5.0, 1.8 + 0.22 * n_scen))
    fig = _figure(figsize, dpi)
    gs = fig.add_gridspec(1, 3, width_ratios=[max(n_pos, 1) * 1.1, 1.8, 0.15], wspace=0.08)
    ax = fig.add_subplot(gs[0, 0])
    bars = fig.add_subplot(gs[0, 1], sharey=ax)
    cax = fig.add_subplot(gs[0, 2])
    lim = float(np.max(np.abs(m))) if m.size else 0.0
    lim = lim if lim > 0 else 1.0
    image = ax.imshow(m, aspect="auto", cmap="RdBu", vmin=-lim, vmax=lim,
                      interpolation="nearest")
    ax.set_yticks(range(n_scen), d["labels"], fontsize=7)
    sizes = [f"{s:+,.0f}" if abs(s) >= 1e4 else f"{s:+,.4g}" for s in d["sizes"]]
    ax.set_xticks(range(n_pos), [f"{i}\n{s}" for i, s in zip(d["instruments"], sizes,
                                                              strict=True)],
                  fontsize=7, rotation=30, ha="right")
    w = d["worst"]
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((-0.5, w - 0.5), n_pos, 1.0, fill=False, ec="black", lw=2.0,
                           gid="worst-scenario"))
    ax.get_yticklabels()[w].set_fontweight("bold")
    colors = ["#d62728" if k == w else "#7f7f7f" for k in range(n_scen)]
    bars.barh(range(n_scen), d["total"], color=colors, height=0.8)
    bars.axvline(0.0, color="black", lw=0.6)
    bars.tick_params(labelleft=False, labelsize=7)
    bars.set_xlabel("total", fontsize=8)
    fig.colorbar(image, cax=cax).set_label(f"weighted P&L ({d['margin_asset']})", fontsize=8)
    fig.suptitle(f"{d['account']}: risk array on {d['underlying']} ({d['set']}); worst "
                 f"{d['labels'][w]}: {d['total'][w]:+,.6g} {d['margin_asset']}", fontsize=10)
    fig.subplots_adjust(left=0.18, right=0.9, bottom=0.16, top=0.93)
    return _finish(fig, path)


# ---- cascade chart ------------------------------------------------------------------

def cascade_chart(cascade: Sequence[Mapping[str, Any]] | Mapping[str, Any], *,
                  underlying: str | None = None, shock: float | None = None,
                  start_price: float | None = None, path: Any = None,
                  figsize: tuple[float, float] = (9.0, 7.0), dpi: float = 100) -> Figure:
    """Price, liquidated volume and insurance fund by round of a stress cascade.

    ``cascade``: the rounds :meth:`Engine.cascade` returns, or a dict with
    ``rounds`` (and optionally ``underlying`` and ``shock``), as ``marginkit
    stress --json`` prints it. ``start_price``: the price before the shock, drawn
    as a reference line. One point (or bar) per round. Returns the figure;
    writes it to ``path`` if given.
    """
    if isinstance(cascade, Mapping):
        underlying = underlying or cascade.get("underlying")
        shock = cascade.get("shock") if shock is None else shock
        rounds = list(cascade["rounds"])
    else:
        rounds = list(cascade)
    if not rounds:
        raise ValueError("the cascade has no rounds")
    x = np.array([r["round"] for r in rounds], dtype=np.float64)
    price = np.array([r["price"] for r in rounds], dtype=np.float64)
    volume = np.array([r["volume"] for r in rounds], dtype=np.float64)
    fund = np.array([r["fund"] for r in rounds], dtype=np.float64)
    fig = _figure(figsize, dpi)
    ax_p, ax_v, ax_f = fig.subplots(3, 1, sharex=True)
    ax_p.plot(x, price, "o-", color="#1f77b4", gid="price")
    if start_price is not None:
        ax_p.axhline(start_price, color="#999999", ls="--", lw=1, label="before the shock")
        ax_p.legend(fontsize=8)
    ax_p.set_ylabel("price (USD)")
    ax_v.bar(x, volume, color="#ff7f0e", width=0.6, gid="volume")
    for xi, r in zip(x, rounds, strict=True):
        if r.get("liquidated"):
            ax_v.annotate(f"{r['liquidated']:,} acct.", (xi, r["volume"]), fontsize=7,
                          ha="center", va="bottom")
    ax_v.set_ylabel(f"liquidated ({underlying or 'units'})")
    ax_f.plot(x, fund, "s-", color="#2ca02c", gid="fund")
    ax_f.set_ylabel("insurance fund (USD)")
    ax_f.set_xlabel("round")
    ax_f.set_xticks(x)
    for ax in (ax_p, ax_v, ax_f):
        ax.grid(alpha=0.3)
    what = underlying or "underlying"
    fig.suptitle(f"Stress cascade: {what}" + ("" if shock is None else f" {shock:+.0%}")
                 + f", {len(rounds)} round{'s' if len(rounds) != 1 else ''}")
    fig.tight_layout()
    return _finish(fig, path)
