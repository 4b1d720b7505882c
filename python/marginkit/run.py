"""``marginkit run``: a user's book and market, margined and reported.

Loads the book and the market (:mod:`marginkit.io`), builds the engine,
evaluates every account (with liquidation prices), prints the book's totals,
the riskiest accounts and the accounts in warning or worse (or, with
``--json``, the same as machine-readable data), and writes the per-account and
per-position results to the files asked for.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from contextlib import nullcontext
from datetime import datetime, timezone
from typing import Any

from . import io

__all__ = ["main", "report"]

_FLAGGED = ("warning", "reduce_only", "liquidation", "bankrupt")
_OUTPUT_TYPES = (".csv", ".json", ".parquet", ".pq")


def report(venue: io.Venue, rows: list[dict[str, Any]], top: int = 10,
           mode: str | None = None) -> dict[str, Any]:
    """The ``--json`` document: sources, settings, totals per margin asset,
    health counts, the ``top`` riskiest accounts and the flagged ones (names),
    and every account's row (non-finite numbers as null)."""
    summary = io.totals(rows)
    riskiest = sorted((r for r in rows if r["mm"] > 0),
                      key=lambda r: (r["margin_ratio"], r["account"]))[:max(top, 0)]
    return {
        "book": venue.book, "market": venue.market,
        "as_of": datetime.fromtimestamp(venue.engine.now, timezone.utc).isoformat(),
        "mode": mode, "preset": venue.preset, "scenario_preset": venue.scenario_preset,
        "num_accounts": len(rows),
        "totals": summary["by_margin_asset"], "states": summary["states"],
        "riskiest": [r["account"] for r in riskiest],
        "flagged": [r["account"] for r in rows if r["state"] in _FLAGGED],
        "accounts": [{k: io.json_safe(v) for k, v in r.items()} for r in rows],
    }


def main(args: argparse.Namespace) -> int:
    """Runs the command (``args`` from the ``run`` subparser); returns the exit code.
    Input errors raise :class:`marginkit.io.InputError` (exit code 2 in the CLI)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    for flag, path in (("--out", args.out), ("--positions-out", args.positions_out)):
        if path and os.path.splitext(path)[1].lower() not in _OUTPUT_TYPES:
            raise ValueError(f"{flag} {path}: unknown output file type (use .csv, .json or "
                             ".parquet)")
    if args.top < 0:
        raise ValueError(f"--top must be >= 0, got {args.top}")
    err = Console(stderr=True)
    live = err.is_terminal
    with err.status("Loading the book and the market...") if live else nullcontext():
        market = io.read_market(args.market)
        book = io.read_book(args.book)
        venue = io.build_engine(book, market, mode=args.mode, preset=args.preset)
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeRemainingColumn(), console=err, transient=True,
                  disable=not live) as progress:
        task = progress.add_task("Margining accounts", total=len(venue.accounts))
        rows = io.account_results(
            venue, liquidation_prices=not getattr(args, "no_liquidation_prices", False),
            progress=lambda k: progress.update(task, completed=k))
    positions = io.position_results(venue)
    written = []
    if args.out:
        io.write_table(rows, args.out, io.ACCOUNT_COLUMNS)
        written.append((args.out, len(rows)))
    if args.positions_out:
        io.write_table(positions, args.positions_out, io.POSITION_COLUMNS)
        written.append((args.positions_out, len(positions)))
    data = report(venue, rows, args.top, args.mode)
    if args.json:
        print(json.dumps(data, indent=1))
        return 0
    _print(venue, rows, positions, data, args.top, written)
    return 0


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if math.isnan(x):
            return "-"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return f"{x:,.2f}" if abs(x) >= 100 else f"{x:,.6f}"
    return str(x)


def _print(venue: io.Venue, rows: list[dict[str, Any]], positions: list[dict[str, Any]],
           data: dict[str, Any], top: int, written: list[tuple[str, int]]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=140)
    subs = sum(1 for r in rows if r["parent"])
    console.rule(f"[bold]marginkit run: {venue.book}")
    console.print(
        f"{len(rows) - subs:,} accounts"
        + (f" (+{subs:,} isolated sub-accounts)" if subs else "")
        + f", {len(positions):,} positions; market {venue.market} as of {data['as_of']}; "
        f"mode {data['mode'] or 'per account'}; presets {venue.preset} (cross), "
        f"{venue.scenario_preset} (portfolio)")
    table = Table(title="Book totals by margin asset", title_justify="left",
                  box=box.SIMPLE_HEAD)
    for col in ("margin asset", "accounts", "equity", "initial margin", "maintenance",
                "available"):
        table.add_column(col, justify="right")
    for asset, t in data["totals"].items():
        table.add_row(asset, f"{t['accounts']:,}", _fmt(t["equity"]), _fmt(t["im"]),
                      _fmt(t["mm"]), _fmt(t["available"]))
    console.print(table)
    console.print("Health: " + ", ".join(f"{k} {v:,}" for k, v in data["states"].items()))
    by_name = {r["account"]: r for r in rows}
    for title, names in (
            (f"Riskiest accounts (equity / maintenance margin), top {top}", data["riskiest"]),
            ("Accounts in warning, reduce-only, liquidation or bankrupt", data["flagged"])):
        if not names:
            continue
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
        for col in ("account", "mode", "asset", "equity", "IM", "MM", "ratio", "state",
                    "liq. on", "liq. below", "liq. above"):
            table.add_column(col, justify="left" if col == "account" else "right")
        shown = sorted((by_name[n] for n in names),
                       key=lambda r: (r["margin_ratio"], r["account"]))[:max(top, 1)]
        for r in shown:
            table.add_row(r["account"], r["mode"], r["margin_asset"], _fmt(r["equity"]),
                          _fmt(r["im"]), _fmt(r["mm"]), _fmt(r["margin_ratio"]), r["state"],
                          _fmt(r["liquidation_underlying"]), _fmt(r["liquidation_below"]),
                          _fmt(r["liquidation_above"]))
        if len(names) > len(shown):
            table.caption = f"... and {len(names) - len(shown):,} more (--top, --out)"
        console.print(table)
    for path, n in written:
        console.print(f"wrote {path} ({n:,} rows)")
