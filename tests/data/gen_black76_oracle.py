#!/usr/bin/env python3
"""Generate ``black76_oracle.csv``: Black-76 prices and Greeks computed with
mpmath at 50 significant digits, used as the accuracy oracle for marginkit.

Run from anywhere::

    python tests/data/gen_black76_oracle.py            # writes tests/data/black76_oracle.csv
    python tests/data/gen_black76_oracle.py --check    # also recompute at 80 digits and compare

The output is deterministic (fixed seed); re-running it reproduces the file
byte for byte.

Inputs
------
2,400 random cases drawn with ``numpy.random.default_rng(20261122)`` in this
order (each a vector of 2,400 draws):

* forward ``F``: log-uniform on [0.1, 1e5]
* strike ratio ``K/F``: log-uniform on [0.05, 3]
* expiry ``T`` in years: log-uniform on [1/8760 (one hour), 3]
* volatility ``s``: log-uniform on [0.05, 4]
* rate ``r``: uniform on [-0.01, 0.10]
* ``cp``: a random permutation of 1,200 calls (+1) and 1,200 puts (-1)

``strike = float64(F * ratio)`` is rounded to float64 first and the float64
strike is stored. About 40 hand-picked edge cases follow the random ones
(deep ITM/OTM with K/F = 0.05 and 3 at one hour and vol 0.05, forwards 0.1 and
1e5, vol 4 with T = 3, exactly at the money, extreme rates).

Every float64 input is taken as EXACT by mpmath (``mp.mpf(x)``), so the oracle
is the true value of the formula at the stored binary inputs; the results are
rounded to the nearest float64 once, at the end, and written with ``repr()``
(shortest round-tripping form, at most 17 significant digits).

Conventions
-----------
Black-76 on the forward, w = +1 for a call, -1 for a put::

    DF    = exp(-r T)
    d1    = (ln(F/K) + s^2 T / 2) / (s sqrt(T)),   d2 = d1 - s sqrt(T)
    price = DF * w * (F N(w d1) - K N(w d2))

Greeks (linear, quote-currency value V = price)::

    delta = dV/dF      = DF w N(w d1)
    gamma = d2V/dF2    = DF phi(d1) / (F s sqrt(T))
    vega  = dV/ds      = DF F phi(d1) sqrt(T)           (per 1.00 of volatility)
    theta = -dV/dT     = r V - DF F phi(d1) s / (2 sqrt(T))   (per year; includes
                                                        the discount factor's T)

Inverse (coin-settled, Deribit style): the coin value is Vc = V / F, and::

    price_inv = Vc
    delta_inv = dVc/dF   = (delta - Vc) / F
    gamma_inv = d2Vc/dF2 = (gamma - 2 delta_inv) / F
    vega_inv  = vega / F
    theta_inv = theta / F

Columns: cp, forward, strike, expiry, vol, rate, price, delta, gamma, vega,
theta, price_inv, delta_inv, gamma_inv, vega_inv, theta_inv.

All arithmetic is done with mpmath functions (mp.ncdf, mp.npdf, mp.exp,
mp.log, mp.sqrt) on mpf values, not with float formulas.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import mpmath as mp
import numpy as np

SEED = 20261122
N_RANDOM = 2400
DPS = 50

COLUMNS = (
    "cp", "forward", "strike", "expiry", "vol", "rate",
    "price", "delta", "gamma", "vega", "theta",
    "price_inv", "delta_inv", "gamma_inv", "vega_inv", "theta_inv",
)

OUT_PATH = Path(__file__).with_name("black76_oracle.csv")


def random_inputs():
    rng = np.random.default_rng(SEED)
    n = N_RANDOM
    forward = np.exp(rng.uniform(math.log(0.1), math.log(1e5), n))
    ratio = np.exp(rng.uniform(math.log(0.05), math.log(3.0), n))
    expiry = np.exp(rng.uniform(math.log(1.0 / 8760.0), math.log(3.0), n))
    vol = np.exp(rng.uniform(math.log(0.05), math.log(4.0), n))
    rate = rng.uniform(-0.01, 0.10, n)
    cp = rng.permutation(np.concatenate([np.ones(n // 2), -np.ones(n - n // 2)])).astype(int)
    strike = forward * ratio  # float64 product: this rounded strike is the input
    rows = []
    for i in range(n):
        rows.append((int(cp[i]), float(forward[i]), float(strike[i]), float(expiry[i]),
                     float(vol[i]), float(rate[i])))
    return rows


def edge_inputs():
    """About 40 hand-picked cases, appended after the random ones."""
    hour = 1.0 / 8760.0
    rows = []

    def add(cp, F, ratio, T, s, r):
        K = float(np.float64(F) * np.float64(ratio))
        rows.append((cp, float(F), K, float(T), float(s), float(r)))

    # deep ITM / OTM: K/F = 0.05 and 3, short and long T, low and high vol (16)
    for ratio in (0.05, 3.0):
        for T in (hour, 3.0):
            for s in (0.05, 4.0):
                for cp in (1, -1):
                    add(cp, 1000.0, ratio, T, s, 0.03)
    # deep ITM / OTM at one hour and vol 0.05, other forwards (4)
    for F in (0.1, 1e5):
        for ratio, cp in ((0.05, 1), (3.0, -1)):
            add(cp, F, ratio, hour, 0.05, 0.05)
    # huge and tiny forwards, near the money (12)
    for F in (0.1, 1e5):
        for ratio in (0.5, 1.0, 2.0):
            for cp in (1, -1):
                add(cp, F, ratio, 0.25, 0.8, 0.02)
    # vol 4 with T = 3 (4; K/F 0.05 and 3 already above)
    for F in (0.1, 1e5):
        for cp in (1, -1):
            add(cp, F, 1.0, 3.0, 4.0, 0.10)
    # exactly at the money, one hour, low vol (2)
    for cp in (1, -1):
        add(cp, 50000.0, 1.0, hour, 0.05, 0.0)
    # extreme rates with T = 3 (4)
    for r in (-0.01, 0.10):
        for cp in (1, -1):
            add(cp, 30000.0, 1.1, 3.0, 0.6, r)
    return rows


def oracle_row(cp, F_, K_, T_, s_, r_):
    """Exact-input Black-76 values at the current mp precision (mpf results)."""
    w = mp.mpf(cp)
    F = mp.mpf(F_)
    K = mp.mpf(K_)
    T = mp.mpf(T_)
    s = mp.mpf(s_)
    r = mp.mpf(r_)
    DF = mp.exp(-r * T)
    sqT = mp.sqrt(T)
    ssT = s * sqT
    d1 = (mp.log(F / K) + s * s * T / 2) / ssT
    d2 = d1 - ssT
    pdf1 = mp.npdf(d1)
    price = DF * w * (F * mp.ncdf(w * d1) - K * mp.ncdf(w * d2))
    delta = DF * w * mp.ncdf(w * d1)
    gamma = DF * pdf1 / (F * ssT)
    vega = DF * F * pdf1 * sqT
    theta = r * price - DF * F * pdf1 * s / (2 * sqT)
    price_inv = price / F
    delta_inv = (delta - price_inv) / F
    gamma_inv = (gamma - 2 * delta_inv) / F
    vega_inv = vega / F
    theta_inv = theta / F
    return (price, delta, gamma, vega, theta,
            price_inv, delta_inv, gamma_inv, vega_inv, theta_inv)


def to_f64(x):
    """Round an mpf to the nearest float64 (``float(mpf)`` truncates).

    Goes through a 40-digit decimal string, which Python's ``float()`` rounds
    correctly, subnormals included.
    """
    return float(mp.nstr(x, 40))


def generate():
    rows = random_inputs() + edge_inputs()
    out = []
    with mp.workdps(DPS):
        for inp in rows:
            vals = oracle_row(*inp)
            out.append(inp + tuple(to_f64(v) for v in vals))
    return out


def check(rows, dps=80):
    """Recompute at higher precision; count float64 results that change."""
    n_diff = 0
    with mp.workdps(dps):
        for row in rows:
            vals = oracle_row(*row[:6])
            for a, v in zip(row[6:], vals, strict=True):
                b = to_f64(v)
                if a != b:
                    n_diff += 1
    return n_diff


def fmt(x):
    if isinstance(x, int):
        return str(x)
    return repr(float(x))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT_PATH)
    ap.add_argument("--check", action="store_true",
                    help="recompute at 80 digits and count float64 values that differ")
    args = ap.parse_args(argv)
    rows = generate()
    with open(args.out, "w", newline="\n") as fh:
        fh.write(",".join(COLUMNS) + "\n")
        for row in rows:
            fh.write(",".join(fmt(x) for x in row) + "\n")
    print(f"wrote {len(rows)} cases to {args.out}")
    if args.check:
        n_bad = check(rows)
        print(f"80-digit check: {n_bad} float64 values differ")
        return 1 if n_bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
