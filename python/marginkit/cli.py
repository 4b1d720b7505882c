"""The ``marginkit`` command line.

* ``marginkit demo`` runs the built-in demonstration (``--save FILE`` writes its
  engine state, which the other commands read with ``--state FILE``).
* ``marginkit check ACCOUNT INSTRUMENT QTY PRICE``: a pre-trade check and the
  largest buy and sell.
* ``marginkit liquidate ACCOUNT``: the liquidation plan (``--execute`` runs it and
  writes the state back).
* ``marginkit stress --underlying BTC --shock -0.2``: a cascade on a copy.
* ``marginkit info``: the build, the CPU path and threads.

Without ``--state`` the commands use the demo venue. ``--json`` everywhere prints
machine-readable output. Exit codes: 0 success (``check``: accepted), 1 an order
rejected by ``check``, 2 usage or input error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from . import demo as _demo
from .engine import Engine
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
    if args.save:
        from . import demo_book

        demo_book.build_engine(risk=True).save(args.save)
    if args.json:
        print(json.dumps(_demo.chain_summary(), indent=2))
        return 0
    _demo.run()
    return 0


def _console() -> Any:
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=120)


def _engine(args: argparse.Namespace) -> Engine:
    if args.state:
        return Engine.load(args.state)
    from . import demo_book

    return demo_book.build_engine(risk=True)


def _emit(args: argparse.Namespace, data: Any, title: str, rows: list[tuple[str, Any]]) -> None:
    if args.json:
        print(json.dumps(data, indent=2, default=float))
        return
    from rich.table import Table

    table = Table(title=title, show_header=False, title_justify="left")
    for key, value in rows:
        table.add_row(key, f"{value:,.6f}" if isinstance(value, float) else str(value))
    _console().print(table)


def _check(args: argparse.Namespace) -> int:
    eng = _engine(args)
    for what, name, known in (("account", args.account, eng.accounts),
                              ("instrument", args.instrument, eng.instruments)):
        if name not in known:
            raise ValueError(f"unknown {what} {name!r}")
    c = eng.check_order(args.account, args.instrument, args.qty, args.price)
    data = {"account": args.account, "instrument": args.instrument, "qty": args.qty,
            "price": args.price, "accepted": c.accepted, "reason": c.reason,
            "im_after": c.im_after, "mm_after": c.mm_after, "equity_after": c.equity_after,
            "available_after": c.available_after,
            "max_buy": eng.max_order_size(args.account, args.instrument, "buy", args.price),
            "max_sell": eng.max_order_size(args.account, args.instrument, "sell", args.price)}
    _emit(args, data, f"check: {args.account} {args.qty:+} {args.instrument} @ {args.price}",
          list(data.items())[4:])
    return 0 if c.accepted else 1


def _liquidate(args: argparse.Namespace) -> int:
    eng = _engine(args)
    if args.account not in eng.accounts:
        raise ValueError(f"unknown account {args.account!r}")
    if args.execute:
        data: dict[str, Any] = eng.liquidate(args.account)
        if args.state:
            eng.save(args.state)
        plan = data["plan"]
    else:
        plan = data = eng.plan_liquidation(args.account)
    if args.json:
        print(json.dumps(data, indent=2, default=float))
        return 0
    from rich.table import Table

    table = Table(title=f"liquidation plan for {args.account}: equity "
                        f"{plan['equity_before']:,.4f} vs target {plan['target_before']:,.4f}",
                  title_justify="left")
    for col in ("step", "instrument", "qty", "price", "penalty", "released", "why"):
        table.add_column(col)
    for st in plan["steps"]:
        table.add_row(st["kind"], st["instrument"], f"{st['qty']:,.4f}", f"{st['price']:,.4f}",
                      f"{st['penalty']:,.6f}", f"{st['released']:,.6f}", st["reason"])
    console = _console()
    console.print(table)
    console.print(f"restored: {plan['restored']}; equity after {plan['equity_after']:,.4f}, "
                  f"requirement after {plan['requirement_after']:,.4f}")
    return 0


def _stress(args: argparse.Namespace) -> int:
    eng = _engine(args)
    if args.underlying not in eng.assets:
        raise ValueError(f"unknown underlying {args.underlying!r}")
    rounds = eng.cascade(args.underlying, args.shock, impact=args.impact,
                         max_rounds=args.rounds)
    if args.json:
        print(json.dumps({"underlying": args.underlying, "shock": args.shock,
                          "impact": args.impact, "rounds": rounds}, indent=2))
        return 0
    from rich.table import Table

    table = Table(title=f"stress: {args.underlying} {args.shock:+.1%}, impact {args.impact}",
                  title_justify="left")
    for col in ("round", "liquidated", "volume", "price", "bad debt $", "fund $", "ADL $"):
        table.add_column(col, justify="right")
    for r in rounds:
        table.add_row(str(r["round"]), f"{r['liquidated']:,}", f"{r['volume']:,.4f}",
                      f"{r['price']:,.2f}", f"{r['bad_debt']:,.2f}", f"{r['fund']:,.2f}",
                      f"{r['adl_volume']:,.2f}")
    _console().print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marginkit",
        description="A margin engine for derivatives venues.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="run the built-in demonstration book")
    demo.add_argument("--json", action="store_true", help="machine-readable output")
    demo.add_argument("--save", metavar="FILE", help="also write the demo engine's state")
    demo.set_defaults(func=_run_demo)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--state", metavar="FILE",
                       help="an engine state saved by Engine.save / demo --save "
                            "(default: the demo venue)")
        p.add_argument("--json", action="store_true", help="machine-readable output")

    check = sub.add_parser("check", help="pre-trade check of one order, and the largest sizes")
    check.add_argument("account")
    check.add_argument("instrument")
    check.add_argument("qty", type=float, help="signed quantity: > 0 buys, < 0 sells")
    check.add_argument("price", type=float)
    common(check)
    check.set_defaults(func=_check)
    liq = sub.add_parser("liquidate", help="the liquidation plan of one account")
    liq.add_argument("account")
    liq.add_argument("--execute", action="store_true",
                     help="run the plan (and write the state back to --state)")
    common(liq)
    liq.set_defaults(func=_liquidate)
    stress = sub.add_parser("stress", help="a price shock with liquidation cascades (on a copy)")
    stress.add_argument("--underlying", required=True)
    stress.add_argument("--shock", type=float, required=True, help="e.g. -0.2 for -20 %%")
    stress.add_argument("--impact", type=float, default=1e-6,
                        help="price move per unit of underlying sold, as a fraction")
    stress.add_argument("--rounds", type=int, default=20)
    common(stress)
    stress.set_defaults(func=_stress)
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
