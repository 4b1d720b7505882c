"""The ``marginkit`` command line.

``marginkit demo`` runs the built-in demonstration; ``marginkit info`` shows how
this build runs on this machine. Exit codes: 0 success, 2 usage or input error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import demo as _demo
from .runtime import build_info


def _info(args: argparse.Namespace) -> int:
    info = build_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="marginkit build", show_header=False)
    for key, value in info.items():
        table.add_row(key, ", ".join(value) if isinstance(value, list) else str(value))
    Console().print(table)
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(_demo.chain_summary(), indent=2))
        return 0
    _demo.run()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marginkit",
        description="A margin engine for derivatives venues.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="run the built-in demonstration book")
    demo.add_argument("--json", action="store_true", help="machine-readable output")
    demo.set_defaults(func=_run_demo)
    info = sub.add_parser("info", help="show the build, the CPU path in use and threads")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``marginkit`` script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except (ValueError, TypeError, OSError) as exc:
        print(f"marginkit: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
