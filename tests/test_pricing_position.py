"""An option's results do not depend on where it sits in a batch, on the batch's
size or on the thread count: bit for bit, on every ISA path.

The kernels price two vectors a step and the rest one at a time, and a batch
split across threads starts each thread's part anywhere; the kernel files are
compiled with -ffp-contract=off (FMAs only where the source asks for them), so
every option is computed by the same operations wherever it lands.
(tests/test_pricing_streaming.py covers large batches, streaming stores and
two threads.)
"""

from __future__ import annotations

import marginkit as mk
import numpy as np
import pytest

N = 613  # not a multiple of any vector width or pair of vectors


@pytest.fixture(scope="module")
def book():
    rng = np.random.default_rng(5)
    fwd = rng.uniform(50.0, 150.0, N)
    book = {
        "cp": np.where(rng.random(N) < 0.5, 1, -1).astype(np.int8),
        "forward": fwd,
        "strike": fwd * np.exp(rng.uniform(-3.0, 3.0, N)),  # deep in and out of the money
        "expiry": rng.uniform(0.0, 3.0, N),
        "vol": rng.uniform(0.0, 2.0, N),
        "rate": rng.uniform(-0.02, 0.08, N),
    }
    book["expiry"][::37] = 0.0
    book["vol"][::41] = 0.0
    book["strike"][::43] = book["forward"][::43]  # at the money
    return book


def _slice(book, a, b):
    return {k: v[a:b] for k, v in book.items()}


@pytest.fixture(params=mk.build_info()["isa_available"])
def isa(request):
    before = mk.get_num_threads()
    mk.set_isa(request.param)
    mk.set_num_threads(1)
    yield request.param
    mk.set_isa("auto")
    mk.set_num_threads(before)


@pytest.mark.parametrize("inverse", [False, True])
def test_black76_independent_of_position(book, isa, inverse):
    ref = mk.black76(**book, inverse=inverse)
    # Shifted starts put every option in every lane and in both the paired and
    # the single-vector code; small batches take the partial-vector paths.
    for start in (1, 2, 3, 5, 7, 8, 9, 13, 16, 17):
        got = mk.black76(**_slice(book, start, N), inverse=inverse)
        for g in mk.GREEKS:
            np.testing.assert_array_equal(getattr(got, g), getattr(ref, g)[start:],
                                          err_msg=f"{g} from {start}")
    for size in (1, 3, 9, 17, 31):
        for a in range(0, 64, size):
            got = mk.black76(**_slice(book, a, a + size), inverse=inverse)
            for g in mk.GREEKS:
                np.testing.assert_array_equal(getattr(got, g), getattr(ref, g)[a:a + size],
                                              err_msg=f"{g} [{a}, {a + size})")


def test_implied_vol_independent_of_position(book, isa):
    price = mk.black76(**book, greeks=("price",)).price
    args = {k: v for k, v in book.items() if k != "vol"}
    ref = mk.implied_vol(price, **args)
    for start in (1, 3, 5, 8, 11):
        got = mk.implied_vol(price[start:], **_slice(args, start, N))
        np.testing.assert_array_equal(got, ref[start:], err_msg=f"from {start}")
    for size in (1, 5, 13):
        for a in range(0, 40, size):
            got = mk.implied_vol(price[a:a + size], **_slice(args, a, a + size))
            np.testing.assert_array_equal(got, ref[a:a + size], err_msg=f"[{a}, {a + size})")


def test_black76_independent_of_thread_count(isa):
    # Large enough for the pool to split it (and for streaming stores).
    n = 400_003
    rng = np.random.default_rng(9)
    fwd = rng.uniform(50.0, 150.0, n)
    big = {"cp": np.where(rng.random(n) < 0.5, 1, -1).astype(np.int8), "forward": fwd,
           "strike": fwd * np.exp(rng.uniform(-1.0, 1.0, n)), "expiry": rng.uniform(0.0, 2.0, n),
           "vol": rng.uniform(0.0, 1.5, n), "rate": rng.uniform(-0.01, 0.05, n)}
    for inverse in (False, True):
        mk.set_num_threads(1)
        one = mk.black76(**big, inverse=inverse)
        mk.set_num_threads(2)
        two = mk.black76(**big, inverse=inverse)
        for g in mk.GREEKS:
            np.testing.assert_array_equal(getattr(two, g), getattr(one, g), err_msg=g)
