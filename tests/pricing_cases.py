"""Inputs shared by the pricing tests."""

from __future__ import annotations

import numpy as np


def bad_out_arrays(n: int) -> dict[str, object]:
    """Outputs for n options that ``black76(out=...)`` must refuse without
    writing to them or through a copy: wrong dtype, layout, shape, writability
    or type. Each is filled with -7 so a stray write shows."""
    base = np.full(2 * n, -7.0)
    ro = np.full(n, -7.0)
    ro.flags.writeable = False
    return {
        "float32": np.full(n, -7.0, dtype=np.float32),
        "int64": np.full(n, -7, dtype=np.int64),
        "strided": base[::2],
        "column": np.full((n, 2), -7.0)[:, 0],
        "reversed": np.full(n, -7.0)[::-1],
        "short": np.full(n - 1, -7.0),
        "2-D": np.full((n, 1), -7.0),
        "readonly": ro,
        "list": [-7.0] * n,
    }
