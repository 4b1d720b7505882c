"""Input conversion shared by the public API: arrays in, clear errors out.

Inputs may be copied into the dtype the core needs (documented per function);
``out=`` arrays never are: a wrong dtype, layout or shape is an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

_CALL_NAMES = {"call": 1, "c": 1, "put": -1, "p": -1}


def float_column(name: str, value: Any) -> np.ndarray:
    """``value`` as a contiguous float64 array: 1-D, or 0-D for a scalar (to broadcast).

    A float64 C-contiguous array (read-only included) passes through without a copy.
    """
    if isinstance(value, (str, bytes)):
        kind = type(value).__name__
        raise TypeError(f"{name} must be a number or an array of numbers, not {kind}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a number or an array of numbers: {exc}") from None
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a scalar or a 1-D array, got shape {arr.shape}")
    return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)


def cp_column(value: Any) -> np.ndarray:
    """Option types as int8 +1 (call) / -1 (put).

    Accepts bools (True = call), integers or floats equal to +1/-1, and the strings
    ``"call"``/``"put"``/``"C"``/``"P"`` (any case), as a scalar or a 1-D array.
    """
    if isinstance(value, str):
        code = _CALL_NAMES.get(value.lower())
        if code is None:
            raise ValueError(f"cp must be 'call', 'put', 'C' or 'P', got {value!r}")
        return np.asarray(code, dtype=np.int8)
    arr = np.asarray(value)
    if arr.ndim > 1:
        raise ValueError(f"cp must be a scalar or a 1-D array, got shape {arr.shape}")
    if arr.dtype == np.int8:  # the core checks the values
        return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)
    if arr.dtype == np.bool_:
        return np.where(arr, np.int8(1), np.int8(-1))
    if arr.dtype.kind in "US":
        flat = np.atleast_1d(arr)
        codes = np.empty(flat.shape, dtype=np.int8)
        for i, s in enumerate(flat):
            code = _CALL_NAMES.get(str(s).lower())
            if code is None:
                raise ValueError(f"cp[{i}] must be 'call', 'put', 'C' or 'P', got {str(s)!r}")
            codes[i] = code
        return codes.reshape(arr.shape)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"cp must be bool, +1/-1 or 'call'/'put', got dtype {arr.dtype}")
    bad = np.flatnonzero((arr != 1) & (arr != -1))
    if bad.size:
        i = int(bad[0])
        where = "" if arr.ndim == 0 else f"[{i}]"
        got = arr.item() if arr.ndim == 0 else arr[i]
        raise ValueError(f"cp{where} must be +1 (call) or -1 (put) (got {got})")
    return arr.astype(np.int8)


def common_length(columns: Sequence[tuple[str, np.ndarray]]) -> int:
    """The length shared by the 1-D columns (scalars broadcast); 1 if all are scalars."""
    n = None
    first = ""
    for name, arr in columns:
        if arr.ndim == 0:
            continue
        if n is None:
            n, first = arr.shape[0], name
        elif arr.shape[0] != n:
            raise ValueError(f"{name} has length {arr.shape[0]} but {first} has length {n}")
    return 1 if n is None else n


def as_core(arr: np.ndarray) -> np.ndarray:
    """A 0-D array as length 1 (the core broadcasts length-1 columns)."""
    return arr.reshape(1) if arr.ndim == 0 else arr


def output_array(name: str, arr: Any, n: int) -> np.ndarray:
    """Checks a caller's ``out=`` array; never copies."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"out[{name!r}] must be a numpy.ndarray, got {type(arr).__name__}")
    if arr.dtype != np.float64:
        raise TypeError(f"out[{name!r}] must have dtype float64, got {arr.dtype} (no silent copy)")
    if arr.shape != (n,):
        raise ValueError(f"out[{name!r}] must have shape ({n},), got {arr.shape}")
    if not arr.flags.c_contiguous:
        raise ValueError(f"out[{name!r}] must be C-contiguous (no silent copy)")
    if not arr.flags.writeable:
        raise ValueError(f"out[{name!r}] is read-only")
    return arr
