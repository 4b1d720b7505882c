"""Timing helpers shared by the benchmark suites."""

from __future__ import annotations

import math
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


STAT_KEYS = ("p50", "p90", "p99", "p99.9", "mean")


def latency_stats(ns: np.ndarray) -> dict[str, float]:
    """Percentiles and mean of per-call latencies (ns)."""
    stats = {k: float(np.percentile(ns, float(k[1:]))) for k in STAT_KEYS[:-1]}
    stats["mean"] = float(ns.mean())
    return stats


def timer_overhead_ns() -> float:
    """What one perf_counter_ns pair costs here (ns, median)."""
    pc = time.perf_counter_ns
    return float(np.median([-(pc() - pc()) for _ in range(10_000)]))


def fmt_latency(stats: dict[str, float]) -> str:
    return " ".join(f"{stats[k] / 1e3:7.3f}us" for k in STAT_KEYS)


def write_latency_table(tr, title: str, check: dict, latencies: dict, roles, width: int,
                        goal: str) -> None:
    """The per-call latency table of a terminal-summary section."""
    tr.write_line(
        f"{title} (perf_counter_ns around each call, {check['calls']:,} calls after "
        f"{check['warmup']:,} of warm-up; includes the timer's own {check['timer_ns']:.0f} ns; "
        f"{check.get('accept_rate', math.nan):.0%} of orders accepted):")
    tr.write_line(f"  {'role':<{width}} " + " ".join(f"{k:>9}" for k in STAT_KEYS))
    for role in roles:
        if role in latencies:
            tr.write_line(f"  {role:<{width}} " + fmt_latency(latencies[role]))
    tr.write_line(f"  goal: {goal}")
