"""The ``marginkit`` command line.

* ``marginkit demo`` runs the built-in demonstration (``--save FILE`` writes its
  engine state, which the other commands read with ``--state FILE``).
* ``marginkit check ACCOUNT INSTRUMENT QTY PRICE``: a pre-trade check and the
  largest buy and sell.
* ``marginkit liquidate ACCOUNT``: the liquidation plan (``--execute`` runs it and
  writes the state back).
* ``marginkit stress --underlying BTC --shock -0.2``: a cascade on a copy.
* ``marginkit report [--out report.html] [--account ID ...] [--shock -0.2
  --underlying BTC]``: the tables and the plots (:mod:`marginkit.plots`, with
  matplotlib) in one self-contained HTML file.
* ``marginkit info``: the build, the CPU path and threads.
* ``marginkit run --book BOOK --market MARKET [--mode cross|portfolio|isolated]
  [--preset NAME] [--out FILE] [--positions-out FILE] [--top N]
  [--no-liquidation-prices]``: the user's own
  book and market (CSV, JSON or Parquet; :mod:`marginkit.io`,
  ``docs/data-formats.md``), every account margined, results written to CSV,
  JSON or Parquet by the file extension.

Without ``--state`` the commands use the demo venue. ``--json`` everywhere prints
machine-readable output. Exit codes: 0 success (``check``: accepted), 1 an order
rejected by ``check``, 2 usage or input error (the message, on stderr, names the
file, the row and the column of bad input data).
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
    console.print(f"After the plan: {_demo.plan_outcome(plan)}")
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


def _report(args: argparse.Namespace) -> int:
    from rich.console import Console

    from . import report

    eng = _engine(args)
    with Console(stderr=True).status("Writing the report (tables, stress, plots)..."):
        summary = report.write_report(
            args.out, eng, accounts=args.account, underlying=args.underlying, shock=args.shock,
            impact=args.impact, max_rounds=args.rounds, top=args.top, plots=not args.no_plots,
            source=f"state {args.state}" if args.state else "demo venue")
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"wrote {summary['path']} ({summary['bytes']:,} bytes): accounts "
          f"{', '.join(summary['accounts']) or '-'}, stress on "
          f"{summary['stress_underlying'] or '-'}, {len(summary['figures'])} plots")
    if summary["plots_skipped"]:
        print(f"plots skipped: {summary['plots_skipped']}")
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
    rep = sub.add_parser(
        "report", help="write the book's tables and plots into one HTML file",
        description="Write one self-contained HTML file: book totals, the riskiest accounts, "
                    "portfolio vs cross margin, chosen accounts (attribution, liquidation "
                    "plan, P&L profile, risk-array heatmap), a liquidation plan and a stress "
                    "cascade with its chart. Plots need matplotlib (pip install "
                    "'marginkit[plot]'); without it the tables are written and the plots "
                    "skipped.")
    rep.add_argument("--out", metavar="FILE", default="report.html",
                     help="the HTML file to write (default: report.html)")
    rep.add_argument("--account", metavar="ID", nargs="+", action="extend",
                     help="accounts to detail (default: the one portfolio margin helps "
                          "most, and the riskiest)")
    rep.add_argument("--underlying", help="the stress cascade's underlying (default: where "
                                          "most of the book's maintenance margin is)")
    rep.add_argument("--shock", type=float, default=-0.2,
                     help="the stress shock, e.g. -0.2 for -20 %% (default)")
    rep.add_argument("--impact", type=float, default=1e-6,
                     help="price move per unit of underlying sold, as a fraction")
    rep.add_argument("--rounds", type=int, default=20, help="most cascade rounds")
    rep.add_argument("--top", type=int, default=10, help="rows of the riskiest accounts")
    rep.add_argument("--no-plots", action="store_true", help="tables only")
    common(rep)
    rep.set_defaults(func=_report)
    info = sub.add_parser("info", help="show the build, the CPU path in use and threads")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=_info)
    _add_run_parser(sub)
    return parser


def _run_book(args: argparse.Namespace) -> int:
    from . import run

    return run.main(args)


def _add_run_parser(sub: Any) -> None:
    run = sub.add_parser(
        "run", help="margin your own book and market (CSV, JSON or Parquet)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Load a book (accounts, balances, positions, orders, isolated "
                    "allocations) and a market\n(index prices, marks, vols, forwards, rate), "
                    "margin every account, print the totals,\nthe riskiest accounts and those "
                    "in warning or worse, and write the results.\nFormats: "
                    "docs/data-formats.md; examples: examples/book.csv, examples/market.csv.",
        epilog="exit codes:\n  0  success\n  2  usage or input error: the message (stderr) "
               "names the file, the row and the column")
    run.add_argument("--book", required=True, metavar="BOOK",
                     help="the book: .csv, .json or .parquet")
    run.add_argument("--market", required=True, metavar="MARKET",
                     help="the market snapshot: .csv, .json or .parquet")
    run.add_argument("--mode", choices=("cross", "portfolio", "isolated"),
                     help="put every account in this mode (default: each account's own "
                          "mode, else cross)")
    run.add_argument("--preset", metavar="NAME",
                     help="cross preset (deribit, binance, bitcom, bybit) and/or scenario "
                          "preset for portfolio mode (deribit, simple_grid, span); two as "
                          "CROSS,SCENARIOS (default: deribit)")
    run.add_argument("--out", metavar="FILE",
                     help="write per-account results (.csv, .json or .parquet)")
    run.add_argument("--positions-out", metavar="FILE",
                     help="write per-position attribution (.csv, .json or .parquet)")
    run.add_argument("--top", type=int, default=10, metavar="N",
                     help="rows of the riskiest-accounts table and JSON list (default 10)")
    run.add_argument("--json", action="store_true",
                     help="machine-readable totals and per-account rows")
    run.add_argument("--no-liquidation-prices", action="store_true",
                     help="skip each account's liquidation prices (the slowest part on "
                          "large books: about 0.15 ms an account); they are NaN then")
    run.set_defaults(func=_run_book)


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
