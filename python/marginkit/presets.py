"""Venue presets: published margin parameters as data, with their sources.

A preset is a set of named margin models (see :meth:`marginkit.Engine.add_model`)
plus the health thresholds the venue uses. ``apply_preset(engine, "deribit")``
adds its models to an engine; instruments then refer to them by name.

The numbers are those the venues publish (see each ``source``); where a venue
publishes a table per instrument, the preset carries the examples used in
``shared/golden`` rather than a copy of a changing production table.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS", "apply_preset", "preset_names"]

PRESETS: dict[str, dict[str, Any]] = {
    "deribit": {
        "source": "https://www.deribit.com/kb/margin-requirements (standard margin; "
                  "futures: IM = 2% + 0.005% x size in BTC, MM = 1% + 0.005% x size; "
                  "ETH 0.0004% per ETH; SOL/USDC 4%/2% + 0.0005% per SOL; options: short "
                  "call IM = max(0.15 - OTM/S, 0.10) + mark, MM = 0.075 + mark; short put "
                  "IM = max(max(0.15 - OTM/S, 0.10) + mark, MM), MM = max(0.075, 0.075 x "
                  "mark) + mark)",
        "thresholds": {"warning": 1.5, "reduce_only": 1.2, "liquidation": 1.0},
        "models": {
            "deribit_btc_futures": {"kind": "linear_rate", "im_base": 0.02, "im_slope": 5e-5,
                                    "mm_base": 0.01, "mm_slope": 5e-5},
            "deribit_eth_futures": {"kind": "linear_rate", "im_base": 0.02, "im_slope": 4e-6,
                                    "mm_base": 0.01, "mm_slope": 4e-6},
            "deribit_sol_usdc_futures": {"kind": "linear_rate", "im_base": 0.04,
                                         "im_slope": 5e-6, "mm_base": 0.02, "mm_slope": 5e-6},
            "deribit_options": {"kind": "option_standard", "im_otm": 0.15, "im_min": 0.10,
                                "mm": 0.075, "mm_mark_call": 0.0, "mm_mark_put": 0.075},
        },
    },
    "binance": {
        "source": "https://www.binance.com/en/support/faq/360033162192 (USDS-M leverage "
                  "brackets: MM = notional x MMR - maintenance amount, the amount derived "
                  "as cum_n = floor_n (MMR_n - MMR_n-1) + cum_n-1; IM = notional / leverage); "
                  "portfolio-margin uniMMR thresholds 150/120/105/100 %",
        "thresholds": {"warning": 1.5, "reduce_only": 1.2, "liquidation": 1.05},
        "models": {
            # The ZECUSDT bracket table of shared/golden/binance.json, with IM at the
            # bracket's maximum leverage (IMR = 2 x MMR).
            "binance_zecusdt": {"kind": "tiered", "brackets": [
                (0, 0.01, 0.02), (50_000, 0.025, 0.05), (150_000, 0.05, 0.10),
                (250_000, 0.10, 0.20), (500_000, 0.125, 0.25), (1_000_000, 0.25, 0.50),
                (2_000_000, 0.50, 1.00)]},
            "binance_adausdt": {"kind": "tiered", "brackets": [
                (0, 0.025, 0.05), (100_000, 0.05, 0.10), (500_000, 0.10, 0.20),
                (1_000_000, 0.15, 0.30), (2_000_000, 0.25, 0.50), (5_000_000, 0.50, 1.00)]},
        },
    },
    "bitcom": {
        "source": "https://www.bit.com/help-center (USDT options, regular mode: MM_put = "
                  "max(7.5% U, 7.5% mark) + mark; IM_put = max(max(15% U - OTM, 10% U) + "
                  "mark, MM))",
        "thresholds": {"warning": 1.5, "reduce_only": 1.2, "liquidation": 1.0},
        "models": {
            "bitcom_options": {"kind": "option_standard", "im_otm": 0.15, "im_min": 0.10,
                               "mm": 0.075, "mm_mark_call": 0.0, "mm_mark_put": 0.075},
        },
    },
    "bybit": {
        "source": "https://www.bybit.com/en/help-center (USDC options: MM = [max(MMf x "
                  "index, MMf x mark) + mark + liquidation fee x index] x size, MMf 3%, "
                  "liquidation fee 0.2%)",
        "thresholds": {"warning": 1.5, "reduce_only": 1.2, "liquidation": 1.0},
        "models": {
            "bybit_options": {"kind": "option_standard", "im_otm": 0.15, "im_min": 0.10,
                              "mm": 0.03, "mm_mark_call": 0.03, "mm_mark_put": 0.03,
                              "liq_fee": 0.002},
        },
    },
}


def preset_names() -> list[str]:
    """The names of the shipped presets."""
    return sorted(PRESETS)


def apply_preset(engine: Any, name: str, *, thresholds: bool = True) -> list[str]:
    """Adds a preset's models to ``engine`` (and its health thresholds unless
    ``thresholds=False``); returns the model names added."""
    try:
        preset = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose from {preset_names()}") from None
    added = []
    for model_name, params in preset["models"].items():
        params = dict(params)
        kind = params.pop("kind")
        engine.add_model(model_name, kind, **params)
        added.append(model_name)
    if thresholds:
        engine.set_thresholds(**preset["thresholds"])
    return added

