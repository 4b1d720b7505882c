"""Venue liquidation formulas on plain numbers.

The engine applies these to accounts (fee and fill policies of
:meth:`Engine.set_liquidation_params`, spot weights of :meth:`Engine.add_asset`,
:meth:`Engine.plan_spot_liquidation`); here they are exposed for what-if
calculations and for inputs an engine cannot hold (a zero price, say). The math
is the core's; this module only validates.
"""

from __future__ import annotations

import math

from . import _core

__all__ = [
    "asset_size_weight",
    "fillable_adjustment",
    "liability_size_weight",
    "liability_transfer_to_cover",
    "margin_implied_fee",
    "ramped_fee",
    "spot_implied_fee",
]


def _num(name: str, value: float, *, nonneg: bool = True) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(x) or (nonneg and x < 0.0):
        raise ValueError(f"{name} must be finite{' and >= 0' if nonneg else ''}, got {value!r}")
    return x


def margin_implied_fee(mm_rate: float, liquidator_fee: float, shortage: float, notional: float,
                       max_fee: float, factor: float = 0.95) -> float:
    """Drift's insurance-fund fee rate of a perpetual liquidation:
    ``min(max_fee, factor x (mm_rate - liquidator_fee - shortage / notional))``,
    never below 0; 0 when ``notional`` is 0 or ``mm_rate <= liquidator_fee``."""
    return _core.margin_implied_fee(
        _num("mm_rate", mm_rate), _num("liquidator_fee", liquidator_fee),
        _num("shortage", shortage), _num("notional", notional), _num("max_fee", max_fee),
        _num("factor", factor))


def spot_implied_fee(shortage: float, liability_value: float, asset_weight: float,
                     asset_multiplier: float, liability_weight: float,
                     liability_multiplier: float, max_fee: float) -> float:
    """Drift's insurance-fund fee rate of a spot liability transfer:
    ``min(max_fee, (lw - aw am / lm - shortage / liability_value) / lw)``, never
    below 0; 0 when ``aw >= lw``, ``liability_value`` is 0 or ``lm`` is 0."""
    return _core.spot_implied_fee(
        _num("shortage", shortage), _num("liability_value", liability_value),
        _num("asset_weight", asset_weight), _num("asset_multiplier", asset_multiplier),
        _num("liability_weight", liability_weight),
        _num("liability_multiplier", liability_multiplier), _num("max_fee", max_fee))


def liability_transfer_to_cover(shortage: float, liability_price: float,
                                liability_weight: float, asset_weight: float,
                                asset_multiplier: float, liability_multiplier: float,
                                if_fee: float = 0.0) -> float:
    """Units of a liability whose transfer cures ``shortage``: ``shortage /
    (price (lw - aw am / lm) - price if_fee lw)``; ``inf`` when none can."""
    return _core.liability_transfer_to_cover(
        _num("shortage", shortage), _num("liability_price", liability_price),
        _num("liability_weight", liability_weight), _num("asset_weight", asset_weight),
        _num("asset_multiplier", asset_multiplier),
        _num("liability_multiplier", liability_multiplier), _num("if_fee", if_fee))


def ramped_fee(base: float, max_fee: float, inactive: float, grace: float,
               per_unit: float) -> float:
    """Drift's liquidation fee ramp: ``base`` while ``inactive < grace``, then
    ``min(base + inactive x per_unit, max_fee)``."""
    return _core.ramped_fee(_num("base", base), _num("max_fee", max_fee),
                            _num("inactive", inactive), _num("grace", grace),
                            _num("per_unit", per_unit))


def fillable_adjustment(tnc: float, tmmr: float, position_mm: float, ba: float,
                        spread_to_mm: float) -> float:
    """dYdX's fillable-price adjustment (quote amount off the position's
    notional): ``clamp(ba (1 - tnc / tmmr), 0, 1) x spread_to_mm x position_mm``."""
    return _core.fillable_adjustment(_num("tnc", tnc, nonneg=False), _num("tmmr", tmmr),
                                     _num("position_mm", position_mm), _num("ba", ba),
                                     _num("spread_to_mm", spread_to_mm))


def asset_size_weight(weight: float, imf_factor: float, size: float) -> float:
    """Drift's size-discounted asset weight: ``min(weight, 1.1 / (1 + imf sqrt(size)))``."""
    return _core.asset_size_weight(_num("weight", weight), _num("imf_factor", imf_factor),
                                   _num("size", size))


def liability_size_weight(weight: float, imf_factor: float, size: float) -> float:
    """Drift's size-premium liability weight: ``max(weight, 0.8 weight + imf sqrt(size))``."""
    return _core.liability_size_weight(_num("weight", weight), _num("imf_factor", imf_factor),
                                       _num("size", size))
