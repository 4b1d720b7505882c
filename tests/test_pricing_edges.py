"""Black-76 edge cases, limits and input validation of the Python API."""

from __future__ import annotations

import math
import re

import marginkit as mk
import numpy as np
import pytest
from pricing_cases import bad_out_arrays

GREEKS = ("price", "delta", "gamma", "vega", "theta")
HOUR = 1.0 / 8760.0
SQRT_2PI = math.sqrt(2.0 * math.pi)


def _cases_kinked():
    """(w, F, K) with F > K, F < K and F == K for calls and puts."""
    out = []
    for w in (1, -1):
        for F, K in ((120.0, 100.0), (80.0, 100.0), (100.0, 100.0), (3e4, 2.9e4), (0.5, 0.5)):
            out.append((w, F, K))
    return out


KINKED = _cases_kinked()


def _arrays(cases):
    w = np.array([c[0] for c in cases], dtype=np.int64)
    F = np.array([c[1] for c in cases])
    K = np.array([c[2] for c in cases])
    return w, F, K


# --------------------------------------------------------------------------
# limits: T = 0 and vol = 0
# --------------------------------------------------------------------------

@pytest.mark.parametrize("vol", [0.0, 0.3, 4.0])
@pytest.mark.parametrize("rate", [0.0, 0.05, -0.01])
def test_expiry_zero_gives_intrinsic_and_limits(vol, rate):
    w, F, K = _arrays(KINKED)
    res = mk.black76(w, F, K, 0.0, vol, rate)
    intrinsic = np.maximum(w * (F - K), 0.0)  # DF = 1 at T = 0
    np.testing.assert_allclose(res.price, intrinsic, rtol=0, atol=1e-15 * 200e3)
    assert np.all(res.price >= 0.0)
    want_delta = np.where(F == K, 0.5 * w, np.where(w * (F - K) > 0, w, 0.0)).astype(float)
    np.testing.assert_array_equal(res.delta, want_delta)
    np.testing.assert_array_equal(res.gamma, np.zeros_like(F))
    np.testing.assert_array_equal(res.vega, np.zeros_like(F))
    np.testing.assert_allclose(res.theta, rate * intrinsic, rtol=1e-15, atol=0)


@pytest.mark.parametrize("rate", [0.0, 0.05])
def test_expiry_zero_inverse(rate):
    w, F, K = _arrays(KINKED)
    lin = mk.black76(w, F, K, 0.0, 0.5, rate)
    inv = mk.black76(w, F, K, 0.0, 0.5, rate, inverse=True)
    pi = lin.price / F
    di = (lin.delta - pi) / F
    np.testing.assert_allclose(inv.price, pi, rtol=1e-15, atol=1e-300)
    np.testing.assert_allclose(inv.delta, di, rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(inv.gamma, (lin.gamma - 2 * di) / F, rtol=1e-14, atol=1e-300)
    np.testing.assert_array_equal(inv.vega, np.zeros_like(F))
    np.testing.assert_allclose(inv.theta, rate * pi, rtol=1e-14, atol=0)
    assert np.all(np.isfinite(np.column_stack(inv)))


@pytest.mark.parametrize("T", [HOUR, 0.25, 3.0])
@pytest.mark.parametrize("rate", [0.0, 0.07, -0.01])
def test_vol_zero_gives_discounted_intrinsic(T, rate):
    w, F, K = _arrays(KINKED)
    res = mk.black76(w, F, K, T, 0.0, rate)
    DF = math.exp(-rate * T)
    intrinsic = DF * np.maximum(w * (F - K), 0.0)
    np.testing.assert_allclose(res.price, intrinsic, rtol=1e-15, atol=1e-15 * 200e3)
    want_delta = DF * np.where(F == K, 0.5 * w, np.where(w * (F - K) > 0, w, 0.0))
    np.testing.assert_allclose(res.delta, want_delta, rtol=1e-15, atol=0)
    np.testing.assert_array_equal(res.gamma, np.zeros_like(F))
    # vega: the limit s -> 0 is DF F sqrt(T) phi(0) at the money, else 0
    want_vega = np.where(F == K, DF * F * math.sqrt(T) / SQRT_2PI, 0.0)
    np.testing.assert_allclose(res.vega, want_vega, rtol=1e-14, atol=0)
    np.testing.assert_allclose(res.theta, rate * res.price, rtol=1e-14, atol=1e-300)
    assert np.all(np.isfinite(np.column_stack(res)))


def test_vol_zero_vega_is_continuous_at_the_money():
    F = K = 1234.5
    T = 0.5
    tiny = mk.black76(1, F, K, T, 1e-9, 0.02).vega[0]
    zero = mk.black76(1, F, K, T, 0.0, 0.02).vega[0]
    assert zero == pytest.approx(tiny, rel=1e-12)


# --------------------------------------------------------------------------
# extremes: deep ITM / OTM, tiny and huge forwards
# --------------------------------------------------------------------------

def _check_bounds(res, w, F, K, T, r):
    DF = np.exp(-r * T)
    intrinsic = DF * np.maximum(w * (F - K), 0.0)
    upper = DF * np.where(w > 0, F, K)
    slack = 4e-16 * (F + K)
    for g in GREEKS:
        assert np.all(np.isfinite(getattr(res, g))), g
    assert np.all(res.price >= intrinsic - slack), (res.price, intrinsic)
    assert np.all(res.price <= upper + slack), (res.price, upper)
    assert np.all(res.price >= 0.0)
    assert np.all(res.gamma >= 0.0)
    assert np.all(res.vega >= 0.0)
    assert np.all(w * res.delta >= 0.0)
    assert np.all(np.abs(res.delta) <= DF * (1 + 1e-15))


def test_deep_itm_otm_finite_and_within_bounds():
    rows = []
    for ratio in (1e-4, 0.05, 0.5, 2.0, 3.0, 1e4):
        for T in (HOUR, 1.0 / 365.0, 3.0):
            for s in (0.01, 0.05, 1.0, 4.0):
                for r in (-0.01, 0.1):
                    for w in (1, -1):
                        rows.append((w, 1000.0, 1000.0 * ratio, T, s, r))
    w, F, K, T, s, r = np.array(rows).T.copy()
    w = w.astype(np.int64)
    res = mk.black76(w, F, K, T, s, r)
    _check_bounds(res, w, F, K, T, r)
    # deep ITM at short T and low vol: the price is the discounted intrinsic
    DF = np.exp(-r * T)
    itm = (np.abs(np.log(F / K)) > 1.0) & (s * np.sqrt(T) < 0.01) & (w * (F - K) > 0)
    assert itm.any()
    np.testing.assert_allclose(res.price[itm], (DF * w * (F - K))[itm], rtol=1e-14)
    np.testing.assert_allclose(res.delta[itm], (DF * w)[itm], rtol=1e-14)
    otm = (np.abs(np.log(F / K)) > 1.0) & (s * np.sqrt(T) < 0.01) & (w * (F - K) < 0)
    assert otm.any()
    assert np.all(res.price[otm] < 1e-300)
    assert np.all(res.delta[otm] == 0.0) or np.all(np.abs(res.delta[otm]) < 1e-300)
    inv = mk.black76(w, F, K, T, s, r, inverse=True)
    for g in GREEKS:
        assert np.all(np.isfinite(getattr(inv, g))), g


@pytest.mark.parametrize("scale", [1e-6, 1e9])
def test_extreme_forwards_finite_and_homogeneous(scale):
    ratios = np.array([0.05, 0.5, 0.9, 1.0, 1.1, 2.0, 3.0])
    n = ratios.size
    w = np.tile([1, -1], n)
    ratios = np.repeat(ratios, 2)
    T, s, r = 0.3, 0.7, 0.03
    F = np.full(2 * n, scale)
    K = scale * ratios
    res = mk.black76(w, F, K, T, s, r)
    _check_bounds(res, w, F, K, T, r)
    # Black-76 is homogeneous: V(aF, aK) = a V(F, K), delta is invariant,
    # gamma scales by 1/a, vega and theta by a.
    unit = mk.black76(w, 1.0, ratios, T, s, r)
    np.testing.assert_allclose(res.price, scale * unit.price, rtol=1e-13, atol=1e-15 * scale)
    np.testing.assert_allclose(res.delta, unit.delta, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(res.gamma, unit.gamma / scale, rtol=1e-13, atol=1e-15 / scale)
    np.testing.assert_allclose(res.vega, scale * unit.vega, rtol=1e-13, atol=1e-15 * scale)
    np.testing.assert_allclose(res.theta, scale * unit.theta, rtol=1e-13, atol=1e-15 * scale)
    inv = mk.black76(w, F, K, T, s, r, inverse=True)
    for g in GREEKS:
        assert np.all(np.isfinite(getattr(inv, g))), g
    np.testing.assert_allclose(inv.price, unit.price, rtol=1e-13, atol=1e-15)


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------

N = 6
BAD_INDEX = 3


def _good():
    return dict(
        cp=np.array([1, -1, 1, -1, 1, -1], dtype=np.int64),
        forward=np.array([100.0, 200.0, 50.0, 75.0, 80.0, 90.0]),
        strike=np.array([90.0, 210.0, 55.0, 70.0, 80.0, 95.0]),
        expiry=np.array([0.5, 0.25, 1.0, 2.0, 0.1, 0.75]),
        vol=np.array([0.5, 0.6, 0.7, 0.8, 0.9, 0.4]),
        rate=np.array([0.01, 0.02, 0.0, -0.005, 0.05, 0.04]),
    )


def _call(args, **kw):
    return mk.black76(args["cp"], args["forward"], args["strike"], args["expiry"],
                      args["vol"], args["rate"], **kw)


def _assert_names(exc_info, name, index=BAD_INDEX):
    msg = str(exc_info.value)
    assert name in msg, f"message does not name {name!r}: {msg!r}"
    if index is not None:
        assert re.search(rf"(?<![\d.]){index}(?![\d.])", msg), (
            f"message does not give the first bad index {index}: {msg!r}")


_BAD = []
for _name in ("forward", "strike", "expiry", "vol", "rate"):
    for _v in (math.nan, math.inf, -math.inf):
        _BAD.append((_name, _v))
_BAD += [("forward", 0.0), ("forward", -1.0), ("strike", 0.0), ("strike", -5.0),
         ("expiry", -1e-9), ("expiry", -2.0), ("vol", -1e-9), ("vol", -0.5)]


@pytest.mark.parametrize("name,value", _BAD, ids=[f"{n}={v}" for n, v in _BAD])
@pytest.mark.parametrize("inverse", [False, True], ids=["linear", "inverse"])
def test_invalid_input_raises_naming_argument_and_index(name, value, inverse):
    args = _good()
    args[name][BAD_INDEX] = value
    args[name][BAD_INDEX + 2] = value  # only the first bad index is reported
    with pytest.raises(ValueError) as exc_info:
        _call(args, inverse=inverse)
    _assert_names(exc_info, name)


@pytest.mark.parametrize("name,value", [("forward", math.nan), ("forward", 0.0),
                                        ("strike", -1.0), ("expiry", -1.0),
                                        ("rate", math.inf)])
def test_implied_vol_invalid_input_raises(name, value):
    args = _good()
    price = _call(args).price.copy()
    args[name][BAD_INDEX] = value
    with pytest.raises(ValueError) as exc_info:
        mk.implied_vol(price, args["cp"], args["forward"], args["strike"], args["expiry"],
                       args["rate"])
    _assert_names(exc_info, name)


@pytest.mark.parametrize("name,value", [("vol", math.nan), ("strike", 0.0), ("forward", -3.0)])
def test_invalid_scalar_raises_naming_argument(name, value):
    args = dict(cp=1, forward=100.0, strike=100.0, expiry=1.0, vol=0.5, rate=0.0)
    args[name] = value
    with pytest.raises(ValueError, match=name):
        _call(args)


@pytest.mark.parametrize("name", ["cp", "strike", "expiry", "vol", "rate"])
def test_mismatched_lengths_name_the_argument(name):
    args = _good()
    args[name] = args[name][:-1]
    with pytest.raises(ValueError) as exc_info:
        _call(args)
    _assert_names(exc_info, name, index=None)


@pytest.mark.parametrize("bad", [0, 2, -2, 3])
def test_bad_cp_value_raises(bad):
    args = _good()
    args["cp"][BAD_INDEX] = bad
    with pytest.raises(ValueError) as exc_info:
        _call(args)
    _assert_names(exc_info, "cp")
    with pytest.raises(ValueError, match="cp"):
        mk.black76(bad, 100.0, 100.0, 1.0, 0.5)


@pytest.mark.parametrize("bad", ["straddle", "c", "x", ""])
def test_bad_cp_string_raises(bad):
    if bad == "c":
        # lower-case single letters are not in the documented set; accepting
        # them is allowed, rejecting them must be a ValueError naming cp
        try:
            mk.black76(bad, 100.0, 100.0, 1.0, 0.5)
        except ValueError as exc:
            assert "cp" in str(exc)
        return
    with pytest.raises(ValueError, match="cp"):
        mk.black76(bad, 100.0, 100.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="cp"):
        mk.black76(np.array(["call", bad]), 100.0, 100.0, 1.0, 0.5)


# --------------------------------------------------------------------------
# out=
# --------------------------------------------------------------------------

def test_out_arrays_are_written_in_place():
    args = _good()
    want = _call(args)
    out = {g: np.full(N, -7.0) for g in GREEKS}
    ids = {g: id(a) for g, a in out.items()}
    res = _call(args, out=out)
    for g in GREEKS:
        got = getattr(res, g)
        assert got is out[g], g
        assert id(got) == ids[g]
        assert np.shares_memory(got, out[g])
        np.testing.assert_array_equal(got, getattr(want, g))


def test_out_inverse_written_in_place():
    args = _good()
    want = _call(args, inverse=True)
    out = {g: np.empty(N) for g in GREEKS}
    res = _call(args, inverse=True, out=out)
    for g in GREEKS:
        assert getattr(res, g) is out[g]
        np.testing.assert_array_equal(out[g], getattr(want, g))


@pytest.mark.parametrize("kind", list(bad_out_arrays(N)))
@pytest.mark.parametrize("greek", ["price", "gamma"])
def test_bad_out_array_raises_and_is_not_copied(kind, greek):
    bad = bad_out_arrays(N)[kind]
    before = np.array(bad, copy=True)
    args = _good()
    with pytest.raises((ValueError, TypeError)):
        _call(args, out={greek: bad})
    # nothing written through a temporary copy or otherwise
    np.testing.assert_array_equal(np.asarray(bad), before)


# --------------------------------------------------------------------------
# broadcasting, cp forms, read-only inputs, result type
# --------------------------------------------------------------------------

def test_scalars_broadcast():
    K = np.array([80.0, 100.0, 120.0])
    res = mk.black76(1, 100.0, K, 0.5, 0.6, 0.01)
    assert isinstance(res, mk.Black76Result)
    for g in GREEKS:
        arr = getattr(res, g)
        assert isinstance(arr, np.ndarray) and arr.shape == (3,) and arr.dtype == np.float64
    for i, k in enumerate(K):
        one = mk.black76(1, 100.0, float(k), 0.5, 0.6, 0.01)
        for g in GREEKS:
            assert getattr(one, g).shape == (1,)
            assert getattr(res, g)[i] == getattr(one, g)[0]
    # rate defaults to 0
    a = mk.black76(-1, 100.0, 90.0, 1.0, 0.3)
    b = mk.black76(-1, 100.0, 90.0, 1.0, 0.3, 0.0)
    np.testing.assert_array_equal(a.price, b.price)


def test_result_is_namedtuple_and_greeks_selection():
    res = mk.black76(1, 100.0, 100.0, 1.0, 0.5)
    assert isinstance(res, tuple)
    assert res._fields == GREEKS
    sel = mk.black76(1, 100.0, 100.0, 1.0, 0.5, greeks=("price", "vega"))
    assert sel.delta is None and sel.gamma is None and sel.theta is None
    np.testing.assert_array_equal(sel.price, res.price)
    np.testing.assert_array_equal(sel.vega, res.vega)


def test_cp_forms_agree():
    F = np.array([100.0, 100.0, 100.0, 100.0])
    K = np.array([90.0, 110.0, 95.0, 105.0])
    ref = mk.black76(np.array([1, -1, 1, -1]), F, K, 0.5, 0.4, 0.02)
    forms = [
        np.array([True, False, True, False]),
        [1, -1, 1, -1],
        np.array([1, -1, 1, -1], dtype=np.int32),
        np.array([1, -1, 1, -1], dtype=np.int8),
        np.array(["call", "put", "call", "put"]),
        np.array(["C", "P", "C", "P"]),
        np.array(["call", "P", "C", "put"]),
    ]
    for cp in forms:
        res = mk.black76(cp, F, K, 0.5, 0.4, 0.02)
        for g in GREEKS:
            np.testing.assert_array_equal(getattr(res, g), getattr(ref, g), err_msg=repr(cp))
    for scalar, idx in ((True, 0), ("call", 0), ("C", 0), (1, 0), (False, 1), ("put", 1),
                        ("P", 1), (-1, 1)):
        res = mk.black76(scalar, F[idx], K[idx], 0.5, 0.4, 0.02)
        assert res.price[0] == ref.price[idx], scalar


def test_read_only_inputs_accepted():
    args = _good()
    want = _call(args)
    for a in args.values():
        a.flags.writeable = False
    res = _call(args)
    for g in GREEKS:
        np.testing.assert_array_equal(getattr(res, g), getattr(want, g))
    price = want.price.copy()
    price.flags.writeable = False
    vol = mk.implied_vol(price, args["cp"], args["forward"], args["strike"], args["expiry"],
                         args["rate"])
    np.testing.assert_allclose(vol, args["vol"], rtol=1e-9)
    # inputs untouched
    np.testing.assert_array_equal(args["vol"], _good()["vol"])


def test_non_contiguous_inputs_accepted():
    args = _good()
    want = _call(args)
    strided = {k: np.repeat(v, 2)[::2] for k, v in args.items()}
    assert not strided["forward"].flags.c_contiguous
    res = _call(strided)
    for g in GREEKS:
        np.testing.assert_array_equal(getattr(res, g), getattr(want, g))


def test_implied_vol_scalar_and_full_output():
    p = mk.black76(1, 100.0, 100.0, 1.0, 0.5).price[0]
    v = mk.implied_vol(p, 1, 100.0, 100.0, 1.0)
    assert isinstance(v, np.ndarray) and v.shape == (1,)
    assert v[0] == pytest.approx(0.5, rel=1e-10)
    v2, n_bad = mk.implied_vol(p, "C", 100.0, 100.0, 1.0, full_output=True)
    assert n_bad == 0
    assert v2[0] == v[0]
