"""Black-76 price + four Greeks on 1,000,000 random options: marginkit (each kernel
path, one thread and all threads) against the NumPy/SciPy code a user would write.

Run: ``python -m pytest benchmarks/test_bench_pricing.py``; figures in RESULTS.md.
"""

from __future__ import annotations

import marginkit as mk
import numpy as np
import pytest
from scipy.special import ndtr

N = 1_000_000
GROUP = "black76 price+4 greeks, 1M options"


@pytest.fixture(scope="module")
def book():
    rng = np.random.default_rng(7)
    fwd = rng.uniform(50.0, 150.0, N)
    return {
        "cp": np.where(rng.random(N) < 0.5, 1, -1).astype(np.int8),
        "forward": fwd,
        "strike": fwd * np.exp(rng.uniform(-0.5, 0.5, N)),
        "expiry": rng.uniform(1 / 365, 2.0, N),
        "vol": rng.uniform(0.1, 1.5, N),
        "rate": rng.uniform(0.0, 0.05, N),
    }


def _black76(cdf, pdf, cp, forward, strike, expiry, vol, rate):
    """The five outputs, vectorised, with the given normal CDF and density."""
    w = cp.astype(np.float64)
    sqrt_t = np.sqrt(expiry)
    v = vol * sqrt_t
    df = np.exp(-rate * expiry)
    d1 = (np.log(forward / strike) + 0.5 * v * v) / v
    d2 = d1 - v
    nd1 = cdf(w * d1)
    phi = pdf(d1)
    price = df * w * (forward * nd1 - strike * cdf(w * d2))
    delta = df * w * nd1
    gamma = df * phi / (forward * v)
    vega = df * forward * phi * sqrt_t
    theta = rate * price - df * forward * phi * vol / (2.0 * sqrt_t)
    return price, delta, gamma, vega, theta


def _npdf(x):
    return np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)


def numpy_black76(cp, forward, strike, expiry, vol, rate):
    """The baseline: NumPy with scipy.special.ndtr, the fastest plain NumPy/SciPy."""
    return _black76(ndtr, _npdf, cp, forward, strike, expiry, vol, rate)


def scipy_stats_black76(cp, forward, strike, expiry, vol, rate):
    """The same with scipy.stats.norm, as much user code is written."""
    from scipy.stats import norm

    return _black76(norm.cdf, norm.pdf, cp, forward, strike, expiry, vol, rate)


def test_scipy_stats_reference(timed, book):
    price, *_ = timed(GROUP, "reference: scipy.stats.norm", scipy_stats_black76, **book, rounds=3)
    ref = mk.black76(**book, greeks=("price",)).price
    np.testing.assert_allclose(price, ref, rtol=1e-9, atol=1e-9)


def test_numpy_baseline(timed, book):
    price, *_ = timed(GROUP, "baseline", numpy_black76, **book, rounds=5)
    ref = mk.black76(**book, greeks=("price",)).price
    np.testing.assert_allclose(price, ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("threads", ["1 thread", "all threads"])
@pytest.mark.parametrize("isa", mk.build_info()["isa_available"])
def test_marginkit(timed, book, isa, threads):
    out = {g: np.empty(N) for g in mk.GREEKS}
    before = mk.get_num_threads()
    mk.set_isa(isa)
    mk.set_num_threads(1 if threads == "1 thread" else 0)
    try:
        timed(GROUP, f"marginkit {isa}, {threads}", mk.black76, **book, out=out, rounds=20)
    finally:
        mk.set_isa("auto")
        mk.set_num_threads(before)
    ref = numpy_black76(**book)
    for got, want in zip((out[g] for g in mk.GREEKS), ref, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-8)
