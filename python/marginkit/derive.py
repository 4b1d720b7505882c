"""Derive (Lyra v2) PMRM_2 portfolio margin.

Derive margins a portfolio-margin subaccount (one underlying: options, a perp,
cash and collateral) by revaluing it under a list of scenarios. The method, as
the venue's ``PMRMLib_2`` applies it and marginkit's core evaluates it
(``cpp/include/marginkit/derive_pmrm.hpp`` has the formulas):

* Options are priced Black-76 on each expiry's forward, with volatilities from
  the expiry's SVI slice (or given per option), discount ``exp(-max(r, 0) tau)``.
* Each scenario shocks the forward's variable portion by ``SpotShock`` and the
  volatilities up or down by ``1 + VOLRANGEUP (30 d / max(DTE, DTE_FLOOR))^p``
  (``1 - VOLRANGEDOWN ...``, floored at 0; ``p = SHORTTERMPOWER`` up to 30 days,
  else ``LONGTERMPOWER``; up vols floored at ``MIN_VOL_EVAL_SHOCKED``). Each
  expiry's shocked value is multiplied by a static discount (one for positive,
  one for negative values) and its P&L against the mark is dampened by the
  scenario's ``DampeningFactor``. Skew scenarios (``LINEAR``, ``ABS``) raise or
  lower the vols in the wings instead and count ``-|P&L|`` per expiry. Perps and
  risk-cancelling collateral move with the spot shock.
* ``worst`` is the lowest scenario P&L or the basis contingency (the forward
  moved by the basis shocks), whichever is lower.
* ``MM = worst x MM_LOSS_FACTOR - MM contingencies + MtM + cash`` and
  ``IM = worst x (IM_LOSS_FACTOR + peg loss) - IM contingencies - MM
  contingencies + MtM + cash``. Contingencies: perp notional, naked short
  options, collateral haircuts, and (IM only) low oracle confidence.

**Sign convention (Derive's):** ``im`` and ``mm`` are *surplus* amounts, the
account's mark-to-market equity minus the requirement; a negative value means
the requirement is not met (Derive rejects a risk-adding trade when the IM
surplus after it is negative, and liquidates below MM 0). The requirements
themselves are ``initial_requirement = mtm - im`` and
``maintenance_requirement = mtm - mm``.

Inputs come in two forms: Derive's own JSON shapes (the ``Scenario`` and
``Parameters`` objects of its PMRM_2 test portfolios: ``Cash``, ``SpotPrice``,
``Options``, ``OptionFeeds`` with ``SVIparam``, ``Scenarios`` with
``SpotShock`` / ``VolShockDirection`` / ``DampeningFactor``, ``SkewShock``,
``VolShock``, ``Margin``, ``BasisContingency``, ``OtherContingency``), or the
dataclasses below. :func:`derive_parameters` is Derive's default parameter set.

Example::

    from marginkit import derive
    pf = derive.DerivePortfolio(
        spot=2500.0, cash=1000.0,
        expiries=[derive.DeriveExpiry(seconds=30 * 86400, forward=2510.0, rate=0.05,
                                      svi=derive.SviSlice(0.02, 0.1, -0.3, -0.1, 0.2,
                                                          2510.0, 30 / 365))],
        options=[derive.DeriveOption(expiry=30 * 86400, strike=2600.0, is_call=True,
                                     amount=-1.0)])
    m = derive.derive_margin(pf)          # Derive's default parameters
    m.im, m.mm, m.worst_scenario, m.scenario_pnl
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from . import _core

__all__ = [
    "VOL_SHOCKS",
    "BasisContingencyParameters",
    "DeriveCollateral",
    "DeriveExpiry",
    "DeriveMargin",
    "DeriveOption",
    "DeriveParameters",
    "DerivePortfolio",
    "DeriveScenario",
    "MarginParameters",
    "OtherContingencyParameters",
    "SkewShockParameters",
    "SviSlice",
    "VolShockParameters",
    "derive_margin",
    "derive_parameters",
]

#: Volatility directions of a scenario, in the core's order (codes 0 ... 4).
VOL_SHOCKS = ("none", "up", "down", "linear", "abs")
_JSON_VOL = {"None": "none", "Up": "up", "Down": "down", "LINEAR": "linear", "ABS": "abs"}
_KINDS = ("regular", "tail", "skew")


# --------------------------------------------------------------------------- helpers

def _number(name: str, value: Any) -> float:
    """A finite-or-not float from a number or a numeric string (Derive's JSON has both)."""
    if isinstance(value, bool) or value is None:
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise TypeError(f"{name} must be a number, got {value!r}") from None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}") from None


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{name} must be a bool (or 0/1), got {value!r}")


def _mapping(name: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping, not {type(value).__name__}")
    return value


def _sequence(name: str, value: Any) -> Sequence[Any]:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a list, not {type(value).__name__}")
    return list(value)


def _check_keys(name: str, data: Mapping[str, Any], known: Iterable[str],
                ignored: Iterable[str] = ()) -> None:
    unknown = set(data) - set(known) - set(ignored)
    if unknown:
        raise ValueError(f"{name}: unknown field(s) {sorted(unknown)}")


def _block(cls: type, name: str, data: Mapping[str, Any], keys: Mapping[str, str],
           ignored: Iterable[str] = ()) -> Any:
    """A parameter dataclass from a Derive JSON block; missing keys keep the default."""
    _mapping(name, data)
    _check_keys(name, data, keys, ignored)
    return cls(**{attr: _number(f"{name}.{key}", data[key])
                  for key, attr in keys.items() if key in data})


def _numbers_post_init(obj: Any, prefix: str) -> None:
    for f in fields(obj):
        object.__setattr__(obj, f.name, _number(f"{prefix}.{f.name}", getattr(obj, f.name)))


def _to_core(core: Any, obj: Any) -> Any:
    for f in fields(obj):
        setattr(core, f.name, getattr(obj, f.name))
    return core


# --------------------------------------------------------------------------- parameters

_SKEW = _core.DeriveSkewShockParams()
_VOL = _core.DeriveVolShockParams()
_MARGIN = _core.DeriveMarginParams()
_BASIS = _core.DeriveBasisContingencyParams()
_OTHER = _core.DeriveOtherContingencyParams()


@dataclass(frozen=True)
class DeriveScenario:
    """One scenario: the spot moves to ``spot x spot_shock``; ``vol`` is one of
    :data:`VOL_SHOCKS`; the scenario's P&L counts at ``dampening``.

    Skew scenarios (``"linear"``, ``"abs"``) reprice options at the unshocked
    forward (Derive's manager only accepts them with ``spot_shock = 1``; any other
    shock still moves perps and risk-cancelling collateral, as its library does).
    """

    spot_shock: float
    vol: str = "none"
    dampening: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "spot_shock", _number("spot_shock", self.spot_shock))
        object.__setattr__(self, "dampening", _number("dampening", self.dampening))
        if self.vol not in VOL_SHOCKS:
            raise ValueError(f"vol must be one of {VOL_SHOCKS}, got {self.vol!r}")

    @property
    def kind(self) -> str:
        """``"skew"``, ``"tail"`` (dampening other than 1: extended moves) or ``"regular"``."""
        if self.vol in ("linear", "abs"):
            return "skew"
        return "regular" if self.dampening == 1.0 else "tail"


@dataclass(frozen=True)
class SkewShockParameters:
    """Skew scenarios: vol multiplier ``1 + clamp(k cap / k_star, -cap, cap)``, with
    ``cap = cbase sqrt(tau) + scale_cap`` and ``k_star = max(min_k_star, sqrt(tau)
    width_scale (vol_param_static + sqrt(tau) vol_param_scale))``."""

    linear_scale_cap: float = _SKEW.linear_scale_cap
    linear_cbase: float = _SKEW.linear_cbase
    abs_scale_cap: float = _SKEW.abs_scale_cap
    abs_cbase: float = _SKEW.abs_cbase
    min_k_star: float = _SKEW.min_k_star
    width_scale: float = _SKEW.width_scale
    vol_param_static: float = _SKEW.vol_param_static
    vol_param_scale: float = _SKEW.vol_param_scale

    def __post_init__(self) -> None:
        _numbers_post_init(self, "skew")


@dataclass(frozen=True)
class VolShockParameters:
    """Vol shocks ``1 + vol_range_up g`` / ``max(0, 1 - vol_range_down g)``, ``g =
    (30 / max(DTE, dte_floor_days))^p``; up vols floored at ``min_vol_up``."""

    vol_range_up: float = _VOL.vol_range_up
    vol_range_down: float = _VOL.vol_range_down
    short_term_power: float = _VOL.short_term_power
    long_term_power: float = _VOL.long_term_power
    dte_floor_days: float = _VOL.dte_floor_days
    min_vol_up: float = _VOL.min_vol_up

    def __post_init__(self) -> None:
        _numbers_post_init(self, "vol")


@dataclass(frozen=True)
class MarginParameters:
    """Loss factors and the static discounts of shocked expiry values."""

    mm_loss_factor: float = _MARGIN.mm_loss_factor
    im_loss_factor: float = _MARGIN.im_loss_factor
    short_rate_mult_scale: float = _MARGIN.short_rate_mult_scale
    long_rate_mult_scale: float = _MARGIN.long_rate_mult_scale
    short_rate_add_scale: float = _MARGIN.short_rate_add_scale
    long_rate_add_scale: float = _MARGIN.long_rate_add_scale
    base_static_discount: float = _MARGIN.base_static_discount
    base_static_discount_neg: float = _MARGIN.base_static_discount_neg

    def __post_init__(self) -> None:
        _numbers_post_init(self, "margin")


@dataclass(frozen=True)
class BasisContingencyParameters:
    """Basis contingency: forward shocks and the factor ``add + mult x tau``."""

    scenario_spot_up: float = _BASIS.scenario_spot_up
    scenario_spot_down: float = _BASIS.scenario_spot_down
    add_factor: float = _BASIS.add_factor
    mult_factor: float = _BASIS.mult_factor

    def __post_init__(self) -> None:
        _numbers_post_init(self, "basis")


@dataclass(frozen=True)
class OtherContingencyParameters:
    """Peg loss, oracle confidence and perp / naked-short-option contingencies."""

    peg_loss_threshold: float = _OTHER.peg_loss_threshold
    peg_loss_factor: float = _OTHER.peg_loss_factor
    conf_threshold: float = _OTHER.conf_threshold
    conf_margin: float = _OTHER.conf_margin
    mm_perp_percent: float = _OTHER.mm_perp_percent
    im_perp_percent: float = _OTHER.im_perp_percent
    mm_option_percent: float = _OTHER.mm_option_percent
    im_option_percent: float = _OTHER.im_option_percent

    def __post_init__(self) -> None:
        _numbers_post_init(self, "other")


_SKEW_KEYS = {"LINEAR_SCALE_CAP": "linear_scale_cap", "LINEAR_CBASE": "linear_cbase",
              "ABS_SCALE_CAP": "abs_scale_cap", "ABS_CBASE": "abs_cbase",
              "MIN_K_STAR": "min_k_star", "MIN_WIDTH_SCALE": "width_scale",
              "VOL_PARAM_STATIC": "vol_param_static", "VOL_PARAM_SCALE": "vol_param_scale"}
_VOL_KEYS = {"VOLRANGEUP": "vol_range_up", "VOLRANGEDOWN": "vol_range_down",
             "SHORTTERMPOWER": "short_term_power", "LONGTERMPOWER": "long_term_power",
             "DTE_FLOOR": "dte_floor_days", "MIN_VOL_EVAL_SHOCKED": "min_vol_up"}
_MARGIN_KEYS = {"MM_LOSS_FACTOR": "mm_loss_factor", "IM_LOSS_FACTOR": "im_loss_factor",
                "SHORT_RATE_MULTSCALE": "short_rate_mult_scale",
                "LONG_RATE_MULTSCALE": "long_rate_mult_scale",
                "SHORT_RATE_ADDSCALE": "short_rate_add_scale",
                "LONG_RATE_ADDSCALE": "long_rate_add_scale",
                "BASE_STATIC_DISCOUNT": "base_static_discount",
                "BASE_STATIC_DISCOUNT_NEG": "base_static_discount_neg"}
_BASIS_KEYS = {"SCENARIO_SPOT_UP": "scenario_spot_up",
               "SCENARIO_SPOT_DOWN": "scenario_spot_down",
               "BASIS_CONT_ADD_FACTOR": "add_factor", "BASIS_CONT_MULT_FACTOR": "mult_factor"}
_OTHER_KEYS = {"PEG_LOSS_THRESHOLD": "peg_loss_threshold", "PEG_LOSS_FACTOR": "peg_loss_factor",
               "CONF_THRESHOLD": "conf_threshold", "CONF_MARGIN": "conf_margin",
               "MM_PERP_PERCENT": "mm_perp_percent", "IM_PERP_PERCENT": "im_perp_percent",
               "MM_OPTION_PERCENT": "mm_option_percent",
               "IM_OPTION_PERCENT": "im_option_percent"}
# Spreadsheet totals (IM + MM percent) that Derive's parameter files carry; the
# manager does not read them.
_OTHER_IGNORED = ("IM_PERP_PERCENT_NORMAL", "IM_OPTION_PERCENT_NORMAL")


def _default_scenarios() -> tuple[DeriveScenario, ...]:
    out = [DeriveScenario(1.0 + 4 * 0.045, "up")]
    for k in (3, 2, 1, 0, -1, -2, -3):
        shock = 1 if k == 0 else 1.0 + k * 0.045
        out += [DeriveScenario(shock, v) for v in ("down", "none", "up")]
    out.append(DeriveScenario(1.0 - 0.18, "up"))
    # Extended moves with vol up, dampened to 0.036 / |move|.
    for move in (-0.66, -0.33, 0.5, 1.0, 2.0, 3.0):
        out.append(DeriveScenario(1.0 + move, "up", 0.036 / abs(move)))
    out += [DeriveScenario(1, "linear"), DeriveScenario(1, "abs")]
    return tuple(out)


@dataclass(frozen=True)
class DeriveParameters:
    """A full PMRM_2 parameter set (see :func:`derive_parameters` for Derive's)."""

    scenarios: tuple[DeriveScenario, ...] = field(default_factory=_default_scenarios)
    skew: SkewShockParameters = field(default_factory=SkewShockParameters)
    vol: VolShockParameters = field(default_factory=VolShockParameters)
    margin: MarginParameters = field(default_factory=MarginParameters)
    basis: BasisContingencyParameters = field(default_factory=BasisContingencyParameters)
    other: OtherContingencyParameters = field(default_factory=OtherContingencyParameters)

    def __post_init__(self) -> None:
        scenarios = tuple(_sequence("scenarios", self.scenarios))
        for i, s in enumerate(scenarios):
            if not isinstance(s, DeriveScenario):
                raise TypeError(f"scenarios[{i}] must be a DeriveScenario, "
                                f"not {type(s).__name__}")
        object.__setattr__(self, "scenarios", scenarios)
        for name, cls in (("skew", SkewShockParameters), ("vol", VolShockParameters),
                          ("margin", MarginParameters), ("basis", BasisContingencyParameters),
                          ("other", OtherContingencyParameters)):
            if not isinstance(getattr(self, name), cls):
                raise TypeError(f"{name} must be a {cls.__name__}")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeriveParameters:
        """From Derive's ``Parameters`` object (``Scenarios``, ``SkewShock``,
        ``VolShock``, ``Margin``, ``BasisContingency``, ``OtherContingency``).

        Missing blocks or keys keep Derive's defaults; unknown keys are an error.
        """
        _mapping("parameters", data)
        _check_keys("parameters", data, ("Scenarios", "SkewShock", "VolShock", "Margin",
                                         "BasisContingency", "OtherContingency"))
        kw: dict[str, Any] = {}
        if "Scenarios" in data:
            scenarios = []
            for i, s in enumerate(_sequence("Scenarios", data["Scenarios"])):
                name = f"Scenarios[{i}]"
                _mapping(name, s)
                _check_keys(name, s, ("SpotShock", "VolShockDirection", "DampeningFactor"))
                vol = s.get("VolShockDirection", "None")
                if vol not in _JSON_VOL:
                    raise ValueError(f"{name}.VolShockDirection must be one of "
                                     f"{sorted(_JSON_VOL)}, got {vol!r}")
                scenarios.append(DeriveScenario(
                    _number(f"{name}.SpotShock", s.get("SpotShock", 1.0)), _JSON_VOL[vol],
                    _number(f"{name}.DampeningFactor", s.get("DampeningFactor", 1.0))))
            kw["scenarios"] = tuple(scenarios)
        for key, attr, klass, keys, ignored in (
                ("SkewShock", "skew", SkewShockParameters, _SKEW_KEYS, ()),
                ("VolShock", "vol", VolShockParameters, _VOL_KEYS, ()),
                ("Margin", "margin", MarginParameters, _MARGIN_KEYS, ()),
                ("BasisContingency", "basis", BasisContingencyParameters, _BASIS_KEYS, ()),
                ("OtherContingency", "other", OtherContingencyParameters, _OTHER_KEYS,
                 _OTHER_IGNORED)):
            if key in data:
                kw[attr] = _block(klass, key, data[key], keys, ignored)
        return cls(**kw)

    def _core(self) -> Any:
        p = _core.DeriveParams()
        scenarios = []
        for s in self.scenarios:
            c = _core.DeriveScenario()
            c.spot_shock = s.spot_shock
            c.vol = VOL_SHOCKS.index(s.vol)
            c.dampening = s.dampening
            scenarios.append(c)
        p.scenarios = scenarios
        p.skew = _to_core(_core.DeriveSkewShockParams(), self.skew)
        p.vol = _to_core(_core.DeriveVolShockParams(), self.vol)
        p.margin = _to_core(_core.DeriveMarginParams(), self.margin)
        p.basis = _to_core(_core.DeriveBasisContingencyParams(), self.basis)
        p.other = _to_core(_core.DeriveOtherContingencyParams(), self.other)
        return p


def derive_parameters() -> DeriveParameters:
    """Derive's default PMRM_2 parameters (those of its published test portfolios).

    Scenarios: spot +-18 % in 4.5 % steps (vol down / unchanged / up; +-18 % with
    vol up only), extended moves -66 %, -33 %, +50 %, +100 %, +200 %, +300 % with
    vol up dampened to 0.036 / |move|, and the LINEAR and ABS skew scenarios.
    Vol shocks +50 % / -27.5 % at 30 days (powers 0.3 / 0.13, 1-day floor, up vols
    at least 45 %); MM / IM loss factors 0.8 / 1.0; static discounts 0.95 and
    1.04 with rate scales 1 / 0.5 and add-ons 8 %; basis shocks +-4.5 % with factor
    0.5 + 2 tau; peg loss below 0.98 at factor 2; confidence contingency below 0.55;
    perp 1.5 % / 0.5 % and naked short option 0.3 % / 0.2 % of spot (MM / IM).
    """
    return DeriveParameters()


# --------------------------------------------------------------------------- portfolio

@dataclass(frozen=True)
class SviSlice:
    """Raw SVI: total variance ``a + b (rho (k - m) + sqrt((k - m)^2 + sigma^2))`` in
    ``k = ln(K / forward)``, ``vol = sqrt(w / tau)`` (Derive clamps ``k`` to
    ``+-4 sqrt(a + b sigma)`` and ``w`` to 20)."""

    a: float
    b: float
    rho: float
    m: float
    sigma: float
    forward: float
    tau: float

    def __post_init__(self) -> None:
        _numbers_post_init(self, "svi")


@dataclass(frozen=True)
class DeriveExpiry:
    """One expiry's feeds. ``seconds`` to expiry identifies it (options refer to it);
    ``forward_fixed`` is the part of the forward already fixed by the settlement
    average (``None``: Derive's rule, ``forward (1800 - seconds) / 1800`` inside the
    last 30 minutes); ``rate`` is floored at 0 as Derive does."""

    seconds: float
    forward: float
    rate: float = 0.0
    svi: SviSlice | None = None
    forward_confidence: float = 1.0
    rate_confidence: float = 1.0
    vol_confidence: float = 1.0
    forward_fixed: float | None = None

    def __post_init__(self) -> None:
        for name in ("seconds", "forward", "rate", "forward_confidence", "rate_confidence",
                     "vol_confidence"):
            object.__setattr__(self, name, _number(name, getattr(self, name)))
        if self.forward_fixed is not None:
            object.__setattr__(self, "forward_fixed",
                               _number("forward_fixed", self.forward_fixed))
        if self.svi is not None and not isinstance(self.svi, SviSlice):
            object.__setattr__(self, "svi", SviSlice(*_sequence("svi", self.svi)))


@dataclass(frozen=True)
class DeriveOption:
    """An option position: ``expiry`` is its expiry's ``seconds``; ``amount`` signed
    (long > 0); ``vol`` overrides the SVI slice's volatility."""

    expiry: float
    strike: float
    is_call: bool
    amount: float
    vol: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "expiry", _number("expiry", self.expiry))
        object.__setattr__(self, "strike", _number("strike", self.strike))
        object.__setattr__(self, "is_call", _flag("is_call", self.is_call))
        object.__setattr__(self, "amount", _number("amount", self.amount))
        if self.vol is not None:
            object.__setattr__(self, "vol", _number("vol", self.vol))


@dataclass(frozen=True)
class DeriveCollateral:
    """Collateral valued ``amount x price / stable_price``; risk-cancelling
    collateral (the underlying itself) moves with the spot shock."""

    name: str
    amount: float
    price: float
    mm_haircut: float = 0.0
    im_haircut: float = 0.0
    confidence: float = 1.0
    risk_cancelling: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"collateral name must be a str, not {type(self.name).__name__}")
        for name in ("amount", "price", "mm_haircut", "im_haircut", "confidence"):
            object.__setattr__(self, name, _number(name, getattr(self, name)))
        object.__setattr__(self, "risk_cancelling",
                           _flag("risk_cancelling", self.risk_cancelling))


@dataclass(frozen=True)
class DerivePortfolio:
    """A PMRM_2 subaccount on one underlying, with its market data."""

    spot: float
    cash: float = 0.0
    spot_confidence: float = 1.0
    stable_price: float = 1.0
    perp_amount: float = 0.0
    perp_price: float = 0.0
    perp_confidence: float = 1.0
    unrealised_perp_pnl: float = 0.0
    unrealised_funding: float = 0.0
    expiries: tuple[DeriveExpiry, ...] = ()
    options: tuple[DeriveOption, ...] = ()
    collaterals: tuple[DeriveCollateral, ...] = ()

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name not in ("expiries", "options", "collaterals"):
                object.__setattr__(self, f.name, _number(f.name, getattr(self, f.name)))
        for name, cls in (("expiries", DeriveExpiry), ("options", DeriveOption),
                          ("collaterals", DeriveCollateral)):
            items = tuple(_sequence(name, getattr(self, name)))
            for i, item in enumerate(items):
                if not isinstance(item, cls):
                    raise TypeError(f"{name}[{i}] must be a {cls.__name__}, "
                                    f"not {type(item).__name__}")
            object.__setattr__(self, name, items)
        seen: dict[float, int] = {}
        for i, e in enumerate(self.expiries):
            if e.seconds in seen:
                raise ValueError(f"expiries[{i}].seconds {e.seconds} repeats "
                                 f"expiries[{seen[e.seconds]}]")
            seen[e.seconds] = i
        for i, o in enumerate(self.options):
            if o.expiry not in seen:
                raise ValueError(f"options[{i}].expiry {o.expiry} matches no expiry's seconds")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DerivePortfolio:
        """From Derive's ``Scenario`` object (``Cash``, ``SpotPrice``, ``Options``,
        ``OptionFeeds``, ``Collaterals``, perp fields ...).

        Helper values Derive's files record next to the inputs (``MarkVol``,
        ``MarkDiscount``, ``k``, ``k_star``, multipliers, ``ExiryTs``,
        ``StableConfidence``, a collateral's ``ConfidenceFactor``, and the perp's
        ``LastEntryPrice`` / ``FundingIndex`` / ``SystemFundingIndex`` from which
        ``UnrealisedPerpPNL`` and ``UnrealisedFunding`` were computed) are not inputs
        of the method and are ignored; unknown keys are an error.
        """
        _mapping("scenario", data)
        _check_keys("scenario", data, (
            "Cash", "Collaterals", "SpotPrice", "SpotConfidence", "NumPerps", "PerpPrice",
            "PerpConfidence", "UnrealisedPerpPNL", "UnrealisedFunding", "StablePrice",
            "Options", "OptionFeeds"),
            ("StableConfidence", "LastEntryPrice", "FundingIndex", "SystemFundingIndex"))
        if "SpotPrice" not in data:
            raise ValueError("scenario.SpotPrice is required")
        expiries = []
        for i, f in enumerate(_sequence("OptionFeeds", data.get("OptionFeeds", ()))):
            name = f"OptionFeeds[{i}]"
            _mapping(name, f)
            _check_keys(name, f, ("FeedExpiry", "Forward", "ForwardConfidence", "Rate",
                                  "RateConfidence", "SVIparam", "OptionVolConfidences"))
            for key in ("FeedExpiry", "Forward"):
                if key not in f:
                    raise ValueError(f"{name}.{key} is required")
            svi = None
            if "SVIparam" in f:
                params = _sequence(f"{name}.SVIparam", f["SVIparam"])
                if len(params) != 7:
                    raise ValueError(f"{name}.SVIparam must hold a, b, rho, m, sigma, "
                                     f"forward, tau (7 values), got {len(params)}")
                svi = SviSlice(*(_number(f"{name}.SVIparam[{j}]", v)
                                 for j, v in enumerate(params)))
            expiries.append(DeriveExpiry(
                seconds=_number(f"{name}.FeedExpiry", f["FeedExpiry"]),
                forward=_number(f"{name}.Forward", f["Forward"]),
                rate=_number(f"{name}.Rate", f.get("Rate", 0.0)), svi=svi,
                forward_confidence=_number(f"{name}.ForwardConfidence",
                                           f.get("ForwardConfidence", 1.0)),
                rate_confidence=_number(f"{name}.RateConfidence", f.get("RateConfidence", 1.0)),
                vol_confidence=_number(f"{name}.OptionVolConfidences",
                                       f.get("OptionVolConfidences", 1.0))))
        options = []
        helper = ("ExiryTs", "MarkDiscount", "MarkVol", "k", "linear_mult_cap",
                  "abs_mult_cap", "k_star", "linear_multiplier", "abs_multiplier")
        for i, o in enumerate(_sequence("Options", data.get("Options", ()))):
            name = f"Options[{i}]"
            _mapping(name, o)
            _check_keys(name, o, ("Expiry", "Strike", "IsCall", "Amount"), helper)
            for key in ("Expiry", "Strike", "IsCall", "Amount"):
                if key not in o:
                    raise ValueError(f"{name}.{key} is required")
            options.append(DeriveOption(
                expiry=_number(f"{name}.Expiry", o["Expiry"]),
                strike=_number(f"{name}.Strike", o["Strike"]),
                is_call=_flag(f"{name}.IsCall", o["IsCall"]),
                amount=_number(f"{name}.Amount", o["Amount"])))
        collaterals = []
        for i, c in enumerate(_sequence("Collaterals", data.get("Collaterals", ()))):
            name = f"Collaterals[{i}]"
            _mapping(name, c)
            _check_keys(name, c, ("Name", "Amount", "Price", "Confidence", "IsRiskCancelling",
                                  "IMHaircut", "MMHaircut"), ("ConfidenceFactor",))
            for key in ("Amount", "Price"):
                if key not in c:
                    raise ValueError(f"{name}.{key} is required")
            collaterals.append(DeriveCollateral(
                name=str(c.get("Name", f"collateral{i}")),
                amount=_number(f"{name}.Amount", c["Amount"]),
                price=_number(f"{name}.Price", c["Price"]),
                mm_haircut=_number(f"{name}.MMHaircut", c.get("MMHaircut", 0.0)),
                im_haircut=_number(f"{name}.IMHaircut", c.get("IMHaircut", 0.0)),
                confidence=_number(f"{name}.Confidence", c.get("Confidence", 1.0)),
                risk_cancelling=_flag(f"{name}.IsRiskCancelling",
                                      c.get("IsRiskCancelling", False))))

        def num(key: str, default: float) -> float:
            return _number(f"scenario.{key}", data.get(key, default))

        return cls(
            spot=num("SpotPrice", math.nan), cash=num("Cash", 0.0),
            spot_confidence=num("SpotConfidence", 1.0), stable_price=num("StablePrice", 1.0),
            perp_amount=num("NumPerps", 0.0), perp_price=num("PerpPrice", 0.0),
            perp_confidence=num("PerpConfidence", 1.0),
            unrealised_perp_pnl=num("UnrealisedPerpPNL", 0.0),
            unrealised_funding=num("UnrealisedFunding", 0.0),
            expiries=tuple(expiries), options=tuple(options), collaterals=tuple(collaterals))

    def _core(self) -> Any:
        p = _core.DerivePortfolio()
        for f in fields(self):
            if f.name not in ("expiries", "options", "collaterals"):
                setattr(p, f.name, getattr(self, f.name))
        index = {e.seconds: i for i, e in enumerate(self.expiries)}
        expiries = []
        for e in self.expiries:
            c = _core.DeriveExpiry()
            for name in ("seconds", "forward", "rate", "forward_confidence", "rate_confidence",
                         "vol_confidence"):
                setattr(c, name, getattr(e, name))
            if e.forward_fixed is not None:
                c.forward_fixed = e.forward_fixed
            if e.svi is not None:
                c.svi = _to_core(_core.DeriveSvi(), e.svi)
            expiries.append(c)
        options = []
        for o in self.options:
            c = _core.DeriveOption()
            c.expiry = index[o.expiry]
            c.strike, c.is_call, c.amount = o.strike, o.is_call, o.amount
            if o.vol is not None:
                c.vol = o.vol
            options.append(c)
        p.expiries = expiries
        p.options = options
        p.collaterals = [_to_core(_core.DeriveCollateral(), c) for c in self.collaterals]
        return p


# --------------------------------------------------------------------------- result

@dataclass(frozen=True)
class DeriveMargin:
    """The margin of a PMRM_2 portfolio and its breakdown.

    ``im`` / ``mm`` are Derive's surplus values (equity minus requirement, see the
    module docs). Scenario indices refer to ``DeriveParameters.scenarios``;
    ``worst_scenario`` is ``None`` when the basis contingency is the worst loss.
    Contingencies are amounts >= 0 that reduce the surplus; ``confidence`` is the
    oracle-confidence contingency (IM only). ``expiries`` and ``options`` are the
    core's per-expiry results (mtm, discounted_mtm, static discounts, vol shock
    multipliers, k_star, caps, naked shorts, basis share ...) and per-option
    results (vol, vol_up, vol_down, price, k, skew multipliers), in input order.
    """

    im: float
    mm: float
    mtm: float
    option_mtm: float
    collateral_mtm: float
    perp_mtm: float
    worst: float
    worst_scenario: int | None
    worst_regular: float
    worst_regular_scenario: int | None
    worst_tail: float
    worst_tail_scenario: int | None
    worst_skew: float
    worst_skew_scenario: int | None
    basis_contingency: float
    im_factor: float
    mm_perp: float
    im_perp: float
    mm_option: float
    im_option: float
    mm_collateral: float
    im_collateral: float
    confidence: float
    mm_contingency: float
    im_contingency: float
    scenario_pnl: np.ndarray
    scenario_kind: tuple[str, ...]
    collateral_values: np.ndarray
    expiries: tuple[Any, ...]
    options: tuple[Any, ...]

    @property
    def initial_requirement(self) -> float:
        """The IM requirement: ``mtm - im``."""
        return self.mtm - self.im

    @property
    def maintenance_requirement(self) -> float:
        """The MM requirement: ``mtm - mm``."""
        return self.mtm - self.mm

    @classmethod
    def _from_core(cls, r: Any) -> DeriveMargin:
        def idx(i: int) -> int | None:
            return None if i < 0 else int(i)

        scalars = ("im", "mm", "mtm", "option_mtm", "collateral_mtm", "perp_mtm", "worst",
                   "worst_regular", "worst_tail", "worst_skew", "basis_contingency",
                   "im_factor", "mm_perp", "im_perp", "mm_option", "im_option",
                   "mm_collateral", "im_collateral", "confidence", "mm_contingency",
                   "im_contingency")
        pnl = r.scenario_pnl
        pnl.flags.writeable = False
        values = r.collateral_values
        values.flags.writeable = False
        return cls(
            **{name: float(getattr(r, name)) for name in scalars},
            worst_scenario=idx(r.worst_scenario),
            worst_regular_scenario=idx(r.worst_regular_scenario),
            worst_tail_scenario=idx(r.worst_tail_scenario),
            worst_skew_scenario=idx(r.worst_skew_scenario),
            scenario_pnl=pnl, scenario_kind=tuple(_KINDS[k] for k in r.scenario_kind),
            collateral_values=values, expiries=tuple(r.expiries), options=tuple(r.options))


def derive_margin(portfolio: DerivePortfolio | Mapping[str, Any],
                  parameters: DeriveParameters | Mapping[str, Any] | None = None
                  ) -> DeriveMargin:
    """Derive PMRM_2 margin of ``portfolio`` under ``parameters``.

    ``portfolio`` is a :class:`DerivePortfolio` or Derive's ``Scenario`` JSON object;
    ``parameters`` a :class:`DeriveParameters`, Derive's ``Parameters`` JSON object,
    or ``None`` for :func:`derive_parameters`. Invalid values raise ``ValueError``
    naming the field (``expiries[2].svi.b must be finite and >= 0``); values of the
    wrong type raise ``TypeError``.
    """
    if isinstance(portfolio, Mapping):
        portfolio = DerivePortfolio.from_json(portfolio)
    elif not isinstance(portfolio, DerivePortfolio):
        raise TypeError("portfolio must be a DerivePortfolio or a mapping, "
                        f"not {type(portfolio).__name__}")
    if parameters is None:
        parameters = derive_parameters()
    elif isinstance(parameters, Mapping):
        parameters = DeriveParameters.from_json(parameters)
    elif not isinstance(parameters, DeriveParameters):
        raise TypeError("parameters must be DeriveParameters, a mapping or None, "
                        f"not {type(parameters).__name__}")
    return DeriveMargin._from_core(_core.derive_pmrm(parameters._core(), portfolio._core()))
