"""Black-76 option pricing: price, Greeks and implied volatility over arrays.

Conventions
-----------
* ``cp``: +1 call, -1 put (bools, ints or ``"call"``/``"put"`` accepted).
* ``forward`` F and ``strike`` K in the quote currency (USD for BTC options).
* ``expiry`` T in years (ACT/365), ``vol`` sigma annualised (0.5 = 50 %),
  ``rate`` r continuously compounded; the discount factor is ``exp(-r T)``.
* ``price = DF * w * (F N(w d1) - K N(w d2))``,
  ``d1 = (ln(F/K) + sigma^2 T / 2) / (sigma sqrt T)``, ``d2 = d1 - sigma sqrt T``.

Units of the Greeks
-------------------
* ``delta`` = dV/dF, ``gamma`` = d2V/dF2 (per unit of the forward),
* ``vega`` = dV/dsigma per 1.00 of volatility (divide by 100 for "per vol point"),
* ``theta`` = -dV/dT per year (divide by 365 for "per day").

Inverse (coin-settled, as on Deribit)
-------------------------------------
With ``inverse=True`` the value is in coin: ``Vc = V / F``, and every Greek is the
derivative of that coin value: ``delta = dVc/dF = (delta_usd - Vc) / F``,
``gamma = d2Vc/dF2``, ``vega = vega_usd / F``, ``theta = theta_usd / F``. Deribit's
displayed delta (in coin) is ``F * delta``.

Limits
------
``T = 0`` or ``vol = 0``: the discounted intrinsic value; delta
``DF w 1{w(F-K) > 0}`` (``DF w / 2`` exactly at the money), gamma 0, theta ``r V``;
vega tends to ``DF F sqrt(T) / sqrt(2 pi)`` at the money and 0 elsewhere. Prices
are clamped to the no-arbitrage bounds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from . import _core
from ._validation import as_core, common_length, cp_column, float_column, output_array

__all__ = ["GREEKS", "Black76Result", "black76", "implied_vol"]

GREEKS = ("price", "delta", "gamma", "vega", "theta")
_F64 = np.dtype(np.float64)
_I8 = np.dtype(np.int8)


class Black76Result(NamedTuple):
    """Outputs of :func:`black76`; a field is ``None`` when it was not requested."""

    price: np.ndarray | None
    delta: np.ndarray | None
    gamma: np.ndarray | None
    vega: np.ndarray | None
    theta: np.ndarray | None


def black76(
    cp: Any,
    forward: Any,
    strike: Any,
    expiry: Any,
    vol: Any,
    rate: Any = 0.0,
    *,
    inverse: bool = False,
    greeks: Iterable[str] = GREEKS,
    out: Mapping[str, np.ndarray] | None = None,
) -> Black76Result:
    """Black-76 price and Greeks of European options on forwards.

    Parameters
    ----------
    cp, forward, strike, expiry, vol, rate
        Scalars or 1-D arrays of one common length; scalars broadcast. See the
        module docstring for units. float64 C-contiguous arrays are used without
        a copy (read-only arrays included); anything else is converted.
    inverse
        Coin-settled: value and Greeks in coin (module docstring).
    greeks
        Which of ``"price", "delta", "gamma", "vega", "theta"`` to compute.
    out
        Optional preallocated outputs, ``{"price": arr, ...}``: float64,
        C-contiguous, writable, of the common length. They are written in place
        and returned as they are; a wrong dtype or layout raises rather than copy.

    Returns
    -------
    Black76Result
        A named tuple of arrays (``None`` for outputs not requested).

    Raises
    ------
    ValueError
        Naming the argument and the first bad index: NaN or infinite values,
        ``forward <= 0``, ``strike <= 0``, ``expiry < 0``, ``vol < 0``, ``cp`` not
        +-1, mismatched lengths, unknown output names.
    TypeError
        Non-numeric inputs; ``out`` arrays of the wrong dtype.

    Examples
    --------
    >>> import marginkit as mk
    >>> r = mk.black76("call", 100.0, 100.0, 1.0, 0.2)
    >>> round(float(r.price[0]), 6)
    7.965567
    """
    fast = _black76_fast(cp, forward, strike, expiry, vol, rate, inverse, greeks, out)
    if fast is not None:
        return fast
    wanted = tuple(greeks)
    unknown = [g for g in wanted if g not in GREEKS]
    if unknown:
        raise ValueError(f"greeks: unknown output(s) {unknown}; choose from {GREEKS}")
    cols = [
        ("cp", cp_column(cp)),
        ("forward", float_column("forward", forward)),
        ("strike", float_column("strike", strike)),
        ("expiry", float_column("expiry", expiry)),
        ("vol", float_column("vol", vol)),
        ("rate", float_column("rate", rate)),
    ]
    n = common_length(cols)
    out = dict(out or {})
    extra = [k for k in out if k not in wanted]
    if extra:
        raise ValueError(f"out: {extra} not among the requested greeks {wanted}")
    arrays = {
        g: output_array(g, out[g], n) if g in out else np.empty(n) for g in wanted
    }
    _core.black76(n, *(as_core(a) for _, a in cols), bool(inverse),
                  *(arrays.get(g) for g in GREEKS))
    return Black76Result(*(arrays.get(g) for g in GREEKS))


def _black76_fast(cp, forward, strike, expiry, vol, rate, inverse, greeks, out):
    """The common call, in a few type checks: every input a 1-D array in the
    core's dtype (int8 ``cp``, float64 C-contiguous others), all of one length,
    or a Python scalar (an int +-1 for ``cp``, a float or int otherwise, then
    broadcast); all five outputs. The core checks the values (and the outputs'
    dtype, layout, length and writability). Anything else, or any error, returns
    None: :func:`black76` then takes the general path, which converts what it
    may and names every problem.
    """
    if greeks is not GREEKS:
        return None
    n = -1
    cols = []
    for a in (forward, strike, expiry, vol, rate):
        kind = type(a)
        if kind is np.ndarray:
            shape = a.shape
            if a.dtype is not _F64 or len(shape) != 1 or (n >= 0 and shape[0] != n):
                return None
            n = shape[0]
        elif kind is float or kind is int:
            a = np.array((a,), dtype=_F64)  # a scalar: broadcast by the core
        else:
            return None
        cols.append(a)
    kind = type(cp)
    if kind is np.ndarray:
        shape = cp.shape
        if cp.dtype is not _I8 or len(shape) != 1 or (n >= 0 and shape[0] != n):
            return None
        n = shape[0]
    elif kind is int and (cp == 1 or cp == -1):
        cp = np.array((cp,), dtype=_I8)
    else:
        return None
    if n < 0:
        n = 1
    if out is None:
        arrays = (np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n))
    else:
        if type(out) is not dict or len(out) != 5:
            return None
        arrays = tuple(out.get(g) for g in GREEKS)
        for a in arrays:
            if type(a) is not np.ndarray:
                return None
    try:
        _core.black76(n, cp, *cols, bool(inverse), *arrays)
    except (TypeError, ValueError):
        return None  # the general path raises the error with its own message
    return Black76Result(*arrays)


def implied_vol(
    price: Any,
    cp: Any,
    forward: Any,
    strike: Any,
    expiry: Any,
    rate: Any = 0.0,
    *,
    inverse: bool = False,
    on_invalid: str = "nan",
    full_output: bool = False,
) -> Any:
    """Black-76 implied volatility from option prices.

    Parameters
    ----------
    price
        Discounted option prices (in coin when ``inverse=True``), >= 0.
    cp, forward, strike, expiry, rate
        As in :func:`black76`.
    on_invalid
        ``"nan"``: a price outside the no-arbitrage bounds (below the discounted
        intrinsic value, or at/above ``DF*F`` for a call, ``DF*K`` for a put) gives
        NaN. ``"raise"``: raise ValueError saying how many and where the first is.
    full_output
        Also return the number of NaN results: ``(vol, n_invalid)``.

    A price equal to the intrinsic value gives 0; at ``expiry == 0`` any other
    price is invalid (the volatility is not identifiable). The solver is a
    safeguarded Newton iteration on the log of the normalised out-of-the-money
    price, which stays accurate for deep in- and out-of-the-money options.
    """
    if on_invalid not in ("nan", "raise"):
        raise ValueError(f"on_invalid must be 'nan' or 'raise', got {on_invalid!r}")
    cols = [
        ("price", float_column("price", price)),
        ("cp", cp_column(cp)),
        ("forward", float_column("forward", forward)),
        ("strike", float_column("strike", strike)),
        ("expiry", float_column("expiry", expiry)),
        ("rate", float_column("rate", rate)),
    ]
    n = common_length(cols)
    vol = np.empty(n)
    n_invalid = _core.implied_vol(n, *(as_core(a) for _, a in cols), bool(inverse), vol)
    if n_invalid and on_invalid == "raise":
        first = int(np.flatnonzero(np.isnan(vol))[0])
        raise ValueError(
            f"price: {n_invalid} price(s) outside the no-arbitrage bounds, first at index {first}"
        )
    return (vol, int(n_invalid)) if full_output else vol
