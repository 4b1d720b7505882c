"""Large batches write their outputs with streaming stores (pricing.cpp: outputs
over 16 MB, from the first element each output is aligned at); every element
must be that of small batches, bit for bit, whatever the outputs' alignment,
on every ISA path and thread count (the kernel files are compiled with
-ffp-contract=off: an option's results do not depend on its position in a
batch; tests/test_pricing_position.py)."""

from __future__ import annotations

import itertools

import marginkit as mk
import numpy as np
import pytest

# 5 outputs x 8 bytes x 430,000 = 17.2 MB: over the streaming threshold.
N = 430_000
PIECES = 8  # small batches of N / 8 (2.2 MB of outputs): normal stores


@pytest.fixture(scope="module")
def book():
    rng = np.random.default_rng(11)
    fwd = rng.uniform(50.0, 150.0, N)
    return {
        "cp": np.where(rng.random(N) < 0.5, 1, -1).astype(np.int8),
        "forward": fwd,
        "strike": fwd * np.exp(rng.uniform(-0.5, 0.5, N)),
        "expiry": rng.uniform(0.0, 2.0, N),
        "vol": rng.uniform(0.0, 1.5, N),
        "rate": rng.uniform(-0.01, 0.05, N),
    }


def _outputs(offsets):
    """Output arrays starting ``offset`` doubles into a larger allocation."""
    return {g: np.empty(N + 8)[o:o + N] for g, o in zip(mk.GREEKS, offsets, strict=True)}


def _by_pieces(book, inverse):
    out = {g: np.empty(N) for g in mk.GREEKS}
    edges = np.linspace(0, N, PIECES + 1).astype(int)
    for a, b in itertools.pairwise(edges):
        part = mk.black76(**{k: v[a:b] for k, v in book.items()}, inverse=inverse)
        for g in mk.GREEKS:
            out[g][a:b] = getattr(part, g)
    return out


@pytest.mark.parametrize("isa", mk.build_info()["isa_available"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("offsets", [(0,) * 5, (3,) * 5, (1, 2, 3, 4, 5)],
                         ids=["aligned", "same-offset", "mixed"])
def test_streamed_outputs_equal_small_batches(book, isa, threads, offsets):
    before = mk.get_num_threads()
    mk.set_isa(isa)
    mk.set_num_threads(threads)
    try:
        for inverse in (False, True):
            want = _by_pieces(book, inverse)
            got = _outputs(offsets)
            mk.black76(**book, inverse=inverse, out=got)
            for g in mk.GREEKS:
                np.testing.assert_array_equal(got[g], want[g], err_msg=f"{g} inverse={inverse}")
    finally:
        mk.set_isa("auto")
        mk.set_num_threads(before)
