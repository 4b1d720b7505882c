"""Scenario sets for portfolio margin, as data.

A scenario set is a list of ``(move, vol, weight)``: the underlying moves to
``S (1 + move)``, option volatilities move ``vol`` = -1 (down), 0 or +1 (up) by
the set's volatility-shock model, and the scenario's P&L counts at ``weight``
(damping of extended moves, SPAN's 35 % for extremes). The portfolio
requirement of an underlying is the largest weighted loss plus add-ons::

    MM = max(0, -min_s weight_s P&L_s) + short_option_charge x S x net short units
         + delta_charge x S x |net delta units|
    IM = MM x im_factor

Presets (functions returning keyword arguments of
:meth:`marginkit.Engine.add_scenario_set`):

* :func:`deribit` - price +-16 % in 4 steps a side plus 0, each with vol up /
  unchanged / down, vol shocks scaled by days to expiry ``(30/DTE)^p`` (p = 0.30
  under 30 days, else 0.13), extended moves -66 %, -33 %, +50 %, +100 % ... +500 %
  with vol up and damping weights.
* :func:`deribit_legacy` - the parameters of Deribit's older portfolio-margin page:
  price +-10 %, one IV shock ``(30/DTE)^0.30 x 38 %`` up and down, and its
  0.01 BTC per short option contingency (counted without per-strike netting).
* :func:`span` - CME SPAN's 16 scenarios: 0, +-1/3, +-2/3, +-1 of the price scan
  range, each with vol up and down, and two extreme moves (+-2 x range, vol
  unchanged) counted at 35 %.
* :func:`simple_grid` - price -15 % to +15 % in 5 % steps x vol -25 % / 0 / +25 %.
* :func:`historical` - joint return vectors of several underlyings (a series the
  user supplies): each row is a scenario that moves them together; the loss is
  value-at-risk or expected shortfall at a confidence level.
* :class:`EwmaRange` - dynamic margin: a price range that follows an EWMA
  volatility estimate, with a floor, a cap and a limit on its speed; scale a
  grid with it (``deribit(price_range=rng.update(price))``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["EwmaRange", "deribit", "deribit_legacy", "historical", "simple_grid", "span"]


def deribit(*, price_range: float = 0.16, steps: int = 4, vol_up: float = 0.5,
            vol_down: float = 0.25, min_vol_up: float = 0.5, im_factor: float = 1.0,
            extended: bool = True, short_option_charge: float = 0.0,
            delta_charge: float = 0.0) -> dict[str, Any]:
    """Deribit-style portfolio margin grid (see the module docstring)."""
    scenarios = []
    for k in range(steps, -steps - 1, -1):
        move = price_range * k / steps
        for vol in (1, 0, -1):
            scenarios.append((move, vol, 1.0))
    if extended:
        # Extended moves with vol up, damped so that a move counts at about the
        # weight that makes it comparable to the regular range.
        for move in (-0.66, -0.33, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0):
            scenarios.append((move, 1, min(1.0, price_range / abs(move) * 0.25)))
    return {
        "scenarios": scenarios, "vol_up": vol_up, "vol_down": vol_down, "relative": True,
        "scale_by_dte": True, "pivot_days": 30.0, "floor_days": 1.0, "p_short": 0.30,
        "p_long": 0.13, "min_vol_up": min_vol_up, "im_factor": im_factor,
        "short_option_charge": short_option_charge, "delta_charge": delta_charge,
    }


DERIBIT_LEGACY_SOURCE = "https://www.deribit.com/pages/docs/portfoliomargin"


def deribit_legacy(*, price_range: float = 0.10, steps: int = 4, iv_shock: float = 0.38,
                   power: float = 0.30, relative: bool = True, im_factor: float = 1.0,
                   short_option_charge: float = 0.01,
                   delta_charge: float = 0.0) -> dict[str, Any]:
    """Deribit's legacy portfolio-margin parameters, as a scenario set.

    Source: :data:`DERIBIT_LEGACY_SOURCE` (the page that the golden cases
    ``deribit_pm_legacy_*`` in ``shared/golden/deribit.json`` quote). It publishes:

    * a maximum price move of +-10 % (``price_range``);
    * a maximum implied-volatility change of ``(30/DTE)^0.30 x 38 %``, one formula
      for every expiry and both directions (``iv_shock``, ``power``: the same power
      on both sides of the 30-day pivot, no floor on the up-shocked vol);
    * a contingency of 0.01 BTC per net short option per strike, calls and puts at
      a strike netted (``short_option_charge``, a fraction of the index: 0.01 BTC
      per option of 1 BTC);
    * a contingency of 1 % of the underlying for offsetting futures.

    What is marginkit's choice, not the page's:

    * ``steps`` (4 a side plus 0, each at vol up / unchanged / down), since the page
      gives the range only. There are no extended moves.
    * ``relative=True`` reads "IV change of 38 %" as ``vol (1 +/- 0.38 g)``, the
      form of the current Deribit rule; ``relative=False`` reads it as vol points.
    * ``floor_days=1`` on days to expiry, and ``im_factor=1`` (the page's figures
      are maintenance margin).

    What the engine's model does not express:

    * ``short_option_charge`` counts every short option unit, with no netting per
      strike, so it is never below the published contingency (call +10, put -20
      at one strike: 20 x 0.01 BTC, not 10 x 0.01 BTC).
    * The offsetting-futures contingency has no counterpart. ``delta_charge``
      charges the *net* delta, which is 0 for offsetting futures; it is 0 here.
    """
    scenarios = []
    for k in range(steps, -steps - 1, -1):
        move = price_range * k / steps
        for vol in (1, 0, -1):
            scenarios.append((move, vol, 1.0))
    return {
        "scenarios": scenarios, "vol_up": iv_shock, "vol_down": iv_shock,
        "relative": relative, "scale_by_dte": True, "pivot_days": 30.0, "floor_days": 1.0,
        "p_short": power, "p_long": power, "min_vol_up": 0.0, "im_factor": im_factor,
        "short_option_charge": short_option_charge, "delta_charge": delta_charge,
    }


def span(*, scan_range: float, vol_range: float, relative_vol: bool = False,
         extreme_weight: float = 0.35, im_factor: float = 1.0,
         short_option_charge: float = 0.0) -> dict[str, Any]:
    """CME SPAN's 16 scenarios in SPAN's order.

    ``scan_range``: the price scan range as a fraction of the price (SPAN
    publishes it in price units: divide by the price). ``vol_range``: the
    volatility scan range (absolute vol points unless ``relative_vol``).
    """
    scenarios = []
    for frac in (0.0, 1 / 3, -1 / 3, 2 / 3, -2 / 3, 1.0, -1.0):
        for vol in (1, -1):
            scenarios.append((frac * scan_range, vol, 1.0))
    # SPAN's order: 0/+vol, 0/-vol, +1/3/+vol, +1/3/-vol, -1/3/+vol, ...
    scenarios.append((2 * scan_range, 0, extreme_weight))
    scenarios.append((-2 * scan_range, 0, extreme_weight))
    return {
        "scenarios": scenarios, "vol_up": vol_range, "vol_down": vol_range,
        "relative": relative_vol, "scale_by_dte": False, "im_factor": im_factor,
        "short_option_charge": short_option_charge,
    }


def historical(returns: dict[str, Any], *, measure: str = "es", confidence: float = 0.99,
               im_factor: float = 1.0) -> dict[str, Any]:
    """A historical set from joint returns ``{underlying: array of returns}``
    (simple returns, one row per date, aligned across underlyings).

    VaR: the loss exceeded in at most ``1 - confidence`` of the scenarios
    (the empirical quantile, rounded to the conservative side); ES: the mean of
    the losses in that tail. Volatilities are not shocked.
    """
    import numpy as np

    if measure not in ("var", "es"):
        raise ValueError(f"measure must be 'var' or 'es', got {measure!r}")
    cols = {name: np.asarray(r, dtype=np.float64) for name, r in returns.items()}
    lengths = {c.shape for c in cols.values()}
    if len(lengths) != 1 or len(next(iter(lengths))) != 1:
        raise ValueError("returns must be 1-D arrays of one common length")
    n = next(iter(cols.values())).shape[0]
    if n == 0:
        raise ValueError("returns must not be empty")
    return {"scenarios": [(0.0, 0, 1.0)] * n, "measure": measure, "confidence": confidence,
            "im_factor": im_factor, "joint_moves": cols}


class EwmaRange:
    """A price range that follows an EWMA volatility estimate (dynamic margin).

    On each :meth:`update` with a new price, the variance estimate moves to
    ``lambda var + (1 - lambda) r^2`` (``r`` the log return, ``lambda =
    0.5^(1/half_life)``, the half-life counted in updates), and the range becomes
    ``multiplier x vol x sqrt(horizon)``, clamped to ``[floor, cap]`` and moved at
    most ``max_step`` (relative to the current range) per update, so one print
    cannot make margin jump. ``initial_vol`` seeds the estimate (per update).
    The estimator runs in the C++ core.
    """

    def __init__(self, *, half_life: float, multiplier: float, floor: float, cap: float,
                 max_step: float = 0.25, horizon: float = 1.0,
                 initial_vol: float | None = None) -> None:
        from . import _core

        self._core = _core.EwmaRange(float(half_life), float(multiplier), float(floor),
                                     float(cap), float(max_step), float(horizon),
                                     None if initial_vol is None else float(initial_vol))

    def update(self, price: float) -> float:
        """Feeds a price; returns the new range."""
        return self._core.update(float(price))

    @property
    def range(self) -> float:
        """The current range (a fraction of the price)."""
        return self._core.range

    @property
    def vol(self) -> float:
        """The current volatility estimate per update (NaN before the first return)."""
        return self._core.vol


def simple_grid(*, im_factor: float = 1.0) -> dict[str, Any]:
    """Price -15 % to +15 % in 5 % steps x vol -25 % / 0 / +25 % (relative)."""
    scenarios = [(k * 0.05, vol, 1.0) for k in range(-3, 4) for vol in (-1, 0, 1)]
    return {"scenarios": scenarios, "vol_up": 0.25, "vol_down": 0.25, "relative": True,
            "scale_by_dte": False, "im_factor": im_factor}
