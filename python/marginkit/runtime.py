"""Build information, instruction-set dispatch and threads."""

from __future__ import annotations

from typing import Any

from . import _core

__all__ = ["build_info", "get_isa", "get_num_threads", "set_isa", "set_num_threads"]


def build_info() -> dict[str, Any]:
    """What this build is and how it runs here.

    Keys: ``version``; ``isa`` (the kernel path in use: ``baseline``, ``avx2`` or
    ``avx512``); ``isa_best`` (what automatic dispatch picks on this CPU);
    ``isa_available`` (paths this CPU can run); ``isa_compiled``; ``num_threads``;
    ``compiler``.
    """
    return {
        "version": _core.__version__,
        "isa": _core.isa_active(),
        "isa_best": _core.isa_best(),
        "isa_available": list(_core.isa_available()),
        "isa_compiled": list(_core.isa_compiled()),
        "num_threads": _core.num_threads(),
        "compiler": _core.compiler(),
    }


def set_isa(name: str) -> None:
    """Force a kernel path: ``"baseline"``, ``"avx2"``, ``"avx512"``, or ``"auto"``.

    The environment variable ``MARGINKIT_ISA`` does the same at import time.
    Raises ValueError if the CPU (or this build) cannot run it.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    _core.set_isa(name)


def get_isa() -> str:
    """The kernel path in use."""
    return _core.isa_active()


def set_num_threads(n: int) -> None:
    """Threads used by large batch calls; ``n <= 0`` means all hardware threads.

    The environment variable ``MARGINKIT_NUM_THREADS`` sets the initial value.
    Batches below a size threshold always run on the calling thread.
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """Threads used by large batch calls."""
    return _core.num_threads()
