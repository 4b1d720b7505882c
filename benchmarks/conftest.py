"""Shared benchmark plumbing: every timed case registers under a group with a role
("baseline" or a marginkit variant); at the end of the run a table prints each
variant's median time and its speed-up over the group's baseline."""

from __future__ import annotations

import os

# BLAS worker threads spin after use and would steal the cores we time.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from collections import defaultdict

import pytest

_RESULTS: dict[str, dict[str, float]] = defaultdict(dict)


@pytest.fixture
def timed(benchmark):
    """``timed(group, role, fn, *args)``: benchmark ``fn`` and record its median."""

    def run(group: str, role: str, fn, *args, rounds: int | None = None, **kwargs):
        benchmark.group = group
        benchmark.extra_info["role"] = role
        if rounds is None:
            result = benchmark(fn, *args, **kwargs)
        else:
            result = benchmark.pedantic(fn, args=args, kwargs=kwargs, rounds=rounds,
                                        warmup_rounds=1, iterations=1)
        stats = getattr(benchmark, "stats", None)
        if stats is not None and getattr(stats, "stats", None) is not None:
            _RESULTS[group][role] = stats.stats.median
        return result

    return run


def pytest_terminal_summary(terminalreporter):
    if not _RESULTS:
        return
    tr = terminalreporter
    tr.section("marginkit vs baseline (median times; speed-up = baseline / marginkit)")
    for group, roles in sorted(_RESULTS.items()):
        base = roles.get("baseline")
        tr.write_line(f"{group}:")
        for role, t in sorted(roles.items(), key=lambda kv: kv[0] != "baseline"):
            ratio = f"{base / t:8.2f}x" if base and role != "baseline" else "        "
            tr.write_line(f"  {role:<28} {t * 1e3:10.3f} ms {ratio}")
