"""Timing helpers shared by the benchmark suites."""

from __future__ import annotations

import time

import numpy as np


def run_orders(check, orders) -> None:
    """Calls ``check(account, instrument, qty, price)`` for every order."""
    for a, i, q, p in orders:
        check(a, i, q, p)


def per_call_ns(check, orders) -> np.ndarray:
    """Latency of each call (ns), timed one by one (the timer's ~50 ns included)."""
    pc = time.perf_counter_ns
    out = [0] * len(orders)
    for k, (a, i, q, p) in enumerate(orders):
        t0 = pc()
        check(a, i, q, p)
        out[k] = pc() - t0
    return np.array(out, dtype=np.float64)


def smoke_run(config) -> bool:
    """True under ``--benchmark-disable`` (CI's smoke run: small books, each case once)."""
    return bool(config.getoption("benchmark_disable", False)
                and not config.getoption("benchmark_enable", False))
