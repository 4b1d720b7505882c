"""The engine's money rounding (``round_figures``: equity down, IM and MM up to
the margin asset's quantum, with a relative slack of 1e-14 so float noise in an
exact amount costs no quantum) against the formula evaluated in NumPy: x in
multiples of the quantum (x / q, or x x 1/q when 1/q is an integer), floor or
ceil of it with the slack, scaled back, -0 made +0. The engine computes floor and
ceil without libm (a branch-free 2^52 rounding, equity as -round_up(-x)), so
this checks it value by value, bit for bit, where rounding is delicate."""

from __future__ import annotations

import numpy as np
import pytest
from marginkit import _core

QUANTA = [0.01, 0.5, 1.0, 1e-8, 0.1, 3.0, 0.07, 1e-300, 0.0]


def reference(x: np.ndarray, q: float) -> tuple[np.ndarray, np.ndarray]:
    if not q > 0.0:
        return x.copy(), x.copy()
    inv = 1.0 / q
    decimal = inv == np.rint(inv)
    with np.errstate(all="ignore"):
        n = x * inv if decimal else x / q
        slack = np.abs(n) * 1e-14
        back = (lambda m: m / inv) if decimal else (lambda m: m * q)
        down = back(np.floor(n + slack)) + 0.0
        up = back(np.ceil(n - slack)) + 0.0
    finite = np.isfinite(x)
    return np.where(finite, down, x), np.where(finite, up, x)


def cases(rng: np.random.Generator) -> np.ndarray:
    bits = rng.integers(0, 2**63, 200_000, dtype=np.uint64) | (
        rng.integers(0, 2, 200_000, dtype=np.uint64) << np.uint64(63))
    random_doubles = bits.view(np.float64)
    cents = np.round(rng.uniform(-1e7, 1e7, 100_000), 2)
    near = np.concatenate([np.nextafter(cents, np.inf), np.nextafter(cents, -np.inf),
                           cents * (1 + 3e-15), cents * (1 - 3e-15)])
    edges = np.array([0.0, -0.0, 2.0**52, -(2.0**52), 2.0**52 + 1, 2.0**52 - 1, 2.0**53,
                      0.5, -0.5, 1.5, -1.5, 2.5, 1e-320, -1e-320, 1.7e308, -1.7e308,
                      np.inf, -np.inf, np.nan])
    with np.errstate(over="ignore"):
        scaled = np.concatenate([edges * s for s in (1.0, 0.01, 100.0)])
    return np.concatenate([random_doubles, cents, near, scaled, rng.normal(0, 1e3, 50_000)])


@pytest.mark.parametrize("quantum", QUANTA)
def test_money_rounding_matches_the_formula_bit_for_bit(quantum):
    x = cases(np.random.default_rng(17))
    equity, im, mm = _core._round_figures(x, quantum)
    down, up = reference(x, quantum)
    up_of_negated = reference(-x, quantum)[1]
    for got, want, what in ((equity, down, "equity (down)"), (im, up, "im (up)"),
                            (mm, up_of_negated, "mm (up, the pair's other lane)")):
        same = (got.view(np.int64) == want.view(np.int64)) | (np.isnan(got) & np.isnan(want))
        bad = np.flatnonzero(~same)
        assert bad.size == 0, (what, quantum, x[bad[:5]], got[bad[:5]], want[bad[:5]])
    # conservative: equity never above the amount, requirements never below,
    # but for the slack (1e-14 relative) that absorbs float noise
    ok = np.isfinite(equity) & np.isfinite(im) & (quantum > 0.0)
    tol = np.abs(x[ok]) * 2e-14
    assert np.all(equity[ok] <= x[ok] + tol)
    assert np.all(im[ok] >= x[ok] - tol)
