"""Writes the example book and market from the demo venue (marginkit.demo_book).

    python examples/make_example.py                 # examples/{book,market}.{csv,json}
    python examples/make_example.py --parquet       # also .parquet (needs pyarrow)
    python examples/make_example.py --accounts 3000 --out /tmp/venue

The files hold the demo venue's accounts (cross margin, one margin asset each,
balances and positions) and its market snapshot (index prices with haircut
tiers, every instrument's mark, the inverse futures' 10 USD contract size), so
``marginkit run --book examples/book.csv --market examples/market.csv`` margins
exactly what ``demo_book.build_engine(n_accounts=40)`` holds. Format:
docs/data-formats.md.

Parquet from Python, for any book or market table::

    import pandas as pd
    pd.read_csv("examples/book.csv").to_parquet("book.parquet")   # pandas + pyarrow
"""

from __future__ import annotations

import argparse
import json
import math
import os
from datetime import timezone
from typing import Any

from marginkit import demo_book

BOOK_COLUMNS = ["type", "account", "mode", "margin_asset", "asset", "amount", "instrument",
                "size", "entry", "price"]
MARKET_COLUMNS = ["type", "name", "value", "time", "expiry", "strike", "quantum", "upto",
                  "contract_size", "model", "taker_fee"]


def tables(n_accounts: int = 40) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(book rows, market rows) of the demo venue with ``n_accounts`` accounts."""
    eng = demo_book.build_engine(n_accounts=n_accounts)
    now = demo_book.NOW.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    market: list[dict[str, Any]] = []
    for asset in eng.assets:
        info = eng.asset_info(asset)
        market.append({"type": "index", "name": asset, "value": info["price"], "time": now,
                       "quantum": info["quantum"]})
        tiers = info["haircuts"]
        if tiers == [(math.inf, 0.0)]:  # no haircut, written as no tiers
            tiers = []
        for upto, cut in tiers:
            market.append({"type": "haircut", "name": asset, "value": cut,
                           "upto": None if math.isinf(upto) else upto})
    for name in eng.instruments:
        if eng.instrument_info(name)["contract_size"] != 1.0:
            market.append({"type": "instrument", "name": name,
                           "contract_size": eng.instrument_info(name)["contract_size"]})
        market.append({"type": "mark", "name": name, "value": eng.mark(name), "time": now})
    book: list[dict[str, Any]] = []
    for acct in eng.accounts:
        book.append({"type": "account", "account": acct, "mode": "cross",
                     "margin_asset": eng.margin_asset(acct)})
        for asset in eng.assets:
            amount = eng.balance(acct, asset)
            if amount:
                book.append({"type": "balance", "account": acct, "asset": asset,
                             "amount": amount})
        for p in eng.positions(acct):
            book.append({"type": "position", "account": acct, "instrument": p["instrument"],
                         "size": p["size"], "entry": p["entry"]})
    return book, market


def write(rows: list[dict[str, Any]], columns: list[str], path: str) -> None:
    """Writes rows as CSV, JSON (a list of records) or Parquet, by extension."""
    from marginkit import io

    if path.endswith(".json"):  # compact records: only the columns a row uses
        with open(path, "w", encoding="utf-8") as f:
            f.write("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")
    else:
        io.write_table(rows, path, columns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=40)
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--parquet", action="store_true", help="also write .parquet files")
    args = parser.parse_args()
    book, market = tables(args.accounts)
    os.makedirs(args.out, exist_ok=True)
    exts = (".csv", ".json", ".parquet") if args.parquet else (".csv", ".json")
    for ext in exts:
        write(book, BOOK_COLUMNS, os.path.join(args.out, "book" + ext))
        write(market, MARKET_COLUMNS, os.path.join(args.out, "market" + ext))


if __name__ == "__main__":
    main()
