"""``black76`` takes a short path for the common call (1-D arrays of one length:
int8 ``cp``, float64 C-contiguous others, ``rate`` an array or a float, all five
outputs): the same results, and on any problem the same error, naming the
argument and the first bad index, as the general path."""

from __future__ import annotations

import math

import marginkit as mk
import numpy as np
import pytest
from pricing_cases import bad_out_arrays

GREEKS = mk.GREEKS
N = 11


def _book(cp_dtype=np.int8):
    rng = np.random.default_rng(3)
    fwd = rng.uniform(50.0, 150.0, N)
    return dict(
        cp=np.where(rng.random(N) < 0.5, 1, -1).astype(cp_dtype),
        forward=fwd,
        strike=fwd * np.exp(rng.uniform(-0.5, 0.5, N)),
        expiry=rng.uniform(0.0, 2.0, N),
        vol=rng.uniform(0.0, 1.5, N),
        rate=rng.uniform(-0.01, 0.05, N),
    )


def _error(call):
    with pytest.raises((ValueError, TypeError)) as exc_info:
        call()
    return exc_info.type, str(exc_info.value)


def test_same_results_as_the_general_path():
    fast, general = _book(np.int8), _book(np.int64)  # int64 cp: the general path
    for inverse in (False, True):
        a = mk.black76(**fast, inverse=inverse)
        b = mk.black76(**general, inverse=inverse)
        out = {g: np.empty(N) for g in GREEKS}
        c = mk.black76(**fast, inverse=inverse, out=out)
        for g in GREEKS:
            np.testing.assert_array_equal(getattr(a, g), getattr(b, g))
            assert getattr(c, g) is out[g]
            np.testing.assert_array_equal(out[g], getattr(b, g))
    # a float rate
    a = mk.black76(**{**fast, "rate": 0.03})
    b = mk.black76(**{**general, "rate": 0.03})
    for g in GREEKS:
        np.testing.assert_array_equal(getattr(a, g), getattr(b, g))


@pytest.mark.parametrize("name", ["forward", "strike", "expiry", "vol", "rate"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0])
@pytest.mark.parametrize("with_out", [False, True])
def test_invalid_values_raise_as_the_general_path(name, value, with_out):
    if name == "rate" and value == -1.0:
        return  # negative rates are valid
    fast, general = _book(np.int8), _book(np.int64)
    fast[name][7] = general[name][7] = value
    kw = {"out": {g: np.empty(N) for g in GREEKS}} if with_out else {}
    got = _error(lambda: mk.black76(**fast, **kw))
    assert got == _error(lambda: mk.black76(**general, **kw))
    assert got[0] is ValueError and name in got[1] and "7" in got[1]


def test_bad_cp_and_lengths_raise_as_the_general_path():
    fast = _book(np.int8)
    fast["cp"][4] = 2
    general = {**fast, "cp": fast["cp"].astype(np.int64)}
    got = _error(lambda: mk.black76(**fast))
    assert got == _error(lambda: mk.black76(**general))
    assert "cp" in got[1] and "4" in got[1]
    for name in ("cp", "strike", "rate"):
        fast = _book(np.int8)
        fast[name] = fast[name][:-1]
        general = {**fast, "cp": fast["cp"].astype(np.int64)}
        got = _error(lambda fast=fast: mk.black76(**fast))
        assert got == _error(lambda general=general: mk.black76(**general))
        assert got[0] is ValueError and name in got[1]


@pytest.mark.parametrize("kind", list(bad_out_arrays(N)))
def test_bad_out_raises_as_the_general_path_and_nothing_is_written(kind):
    bad = bad_out_arrays(N)[kind]
    before = np.array(bad, copy=True)
    fast = _book(np.int8)
    general = {**fast, "cp": fast["cp"].astype(np.int64)}
    out = {g: np.full(N, -7.0) for g in GREEKS}
    out["gamma"] = bad
    got = _error(lambda: mk.black76(**fast, out=out))
    assert got == _error(lambda: mk.black76(**general, out=out))
    assert "gamma" in got[1]
    np.testing.assert_array_equal(np.asarray(bad), before)
    for g in GREEKS:
        if g != "gamma":
            np.testing.assert_array_equal(out[g], -7.0)


def test_unusual_arrays_take_the_general_path():
    fast = _book(np.int8)
    want = mk.black76(**fast)
    variants = {
        "read-only": {k: _readonly(v) for k, v in fast.items()},
        "big-endian": {**fast, "forward": fast["forward"].astype(">f8")},
        "strided": {**fast, "strike": np.repeat(fast["strike"], 2)[::2]},
        "greeks": fast,
    }
    for what, args in variants.items():
        kw = {"greeks": list(GREEKS)} if what == "greeks" else {}
        got = mk.black76(**args, **kw)
        for g in GREEKS:
            np.testing.assert_array_equal(getattr(got, g), getattr(want, g), err_msg=what)


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def test_scalars_as_the_general_path():
    # NumPy scalars take the general path, Python ones the short one.
    book = _book(np.int8)
    cases = [
        ((1, 100.0, 90.0, 1.0, 0.3, 0.01), {}),
        ((-1, 100, 120, 2, 1, 0), {}),
        ((book["cp"], 100.0, book["strike"], 0.5, book["vol"]), {}),
        ((1, book["forward"], 90.0, book["expiry"], 0.4, 0.02), {"inverse": True}),
    ]
    for args, kw in cases:
        general = [np.float64(a) if type(a) in (float, int) else a for a in args]
        if type(args[0]) is int:
            general[0] = np.int64(args[0])
        a = mk.black76(*args, **kw)
        b = mk.black76(*general, **kw)
        for g in GREEKS:
            np.testing.assert_array_equal(getattr(a, g), getattr(b, g))
    for bad in ((1, math.nan, 90.0, 1.0, 0.3), (1, 100.0, 90.0, -1.0, 0.3),
                (2, 100.0, 90.0, 1.0, 0.3), (True, 100.0, 90.0, 1.0, -0.3)):
        general = [np.float64(a) if type(a) is float else a for a in bad]
        general[0] = np.int64(bad[0]) if type(bad[0]) is int else bad[0]
        got = _error(lambda bad=bad: mk.black76(*bad))
        assert got == _error(lambda general=general: mk.black76(*general))
        assert got[0] is ValueError
