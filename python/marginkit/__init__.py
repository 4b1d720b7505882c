"""marginkit: a margin engine for derivatives venues.

A C++ SIMD core (runtime CPU dispatch, threads, the GIL released on large
batches) under a thin Python API.

* :func:`black76`, :func:`implied_vol`: option pricing over NumPy arrays.
* :class:`Engine`: accounts, instruments, prices, cross margin, pre-trade checks.
* :func:`derive_margin`: Derive (Lyra v2) PMRM_2 portfolio margin (module :mod:`marginkit.derive`).
* :func:`build_info`, :func:`set_isa`, :func:`set_num_threads`: how it runs.
"""

from . import derive, presets, scenarios, venue_formulas
from ._core import __version__
from .derive import (
    DeriveMargin,
    DeriveParameters,
    DerivePortfolio,
    derive_margin,
    derive_parameters,
)
from .engine import HEALTH_STATES, BookEvaluation, Engine
from .pricing import GREEKS, Black76Result, black76, implied_vol
from .runtime import build_info, get_isa, get_num_threads, set_isa, set_num_threads

__all__ = [
    "GREEKS",
    "HEALTH_STATES",
    "Black76Result",
    "BookEvaluation",
    "DeriveMargin",
    "DeriveParameters",
    "DerivePortfolio",
    "Engine",
    "__version__",
    "black76",
    "build_info",
    "derive",
    "derive_margin",
    "derive_parameters",
    "get_isa",
    "get_num_threads",
    "implied_vol",
    "presets",
    "scenarios",
    "set_isa",
    "set_num_threads",
    "venue_formulas",
]
