"""Books and markets from files and DataFrames; results back to files.

A **book** is a venue's accounts: margin mode, margin asset, collateral balances,
positions, resting orders and isolated allocations. A **market** is a price
snapshot: index prices of assets, instrument marks, implied volatilities,
forwards, the rate, and optional per-instrument static data. Both are *long*
tables, one row per fact, with a ``type`` column saying what the row is, so the
same schema works in CSV, Parquet, JSON (a list of records) and pandas
DataFrames. The schema, with examples: ``docs/data-formats.md``.

>>> from marginkit import io
>>> venue = io.load("examples/book.csv", "examples/market.csv")   # doctest: +SKIP
>>> rows = io.account_results(venue)                              # doctest: +SKIP
>>> io.write_table(rows, "accounts.parquet")                      # doctest: +SKIP

:func:`build_engine` turns a book and a market into a populated
:class:`~marginkit.Engine` through its public API (instruments, accounts,
deposits, positions, orders, isolated sub-accounts, marks, volatilities,
forwards); all margin figures are then the engine's own. Every input error is a
:class:`InputError` (a ``ValueError``) whose message names the file, the data
row (1-based, as a user counts them: the first row under the CSV header is row
1, and its line in the file is given too) and the column.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import gc
import itertools
import json
import math
import os
import sys
import time as _time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

import numpy as np

from . import presets as _presets
from . import scenarios as _scenarios
from .engine import Engine
from .symbols import EXPIRY_TIME_UTC, InstrumentKind, InstrumentSpec, parse_symbol

__all__ = [
    "BOOK_TYPES",
    "MARKET_TYPES",
    "MODES",
    "SCENARIO_PRESETS",
    "AccountInfo",
    "Book",
    "InputError",
    "Market",
    "Venue",
    "account_results",
    "build_engine",
    "load",
    "position_results",
    "read_book",
    "read_market",
    "resolve_preset",
    "totals",
    "write_table",
]

MODES = ("cross", "portfolio", "isolated")
BOOK_TYPES = ("account", "balance", "position", "order", "isolated")
MARKET_TYPES = ("index", "haircut", "mark", "vol", "forward", "rate", "instrument")

#: Scenario presets selectable by name (``--preset``) for portfolio-mode accounts.
#: ``span`` needs a scan range: marginkit uses +-16 % and a relative vol range of
#: 25 %, its own choice (SPAN publishes ranges per product).
SCENARIO_PRESETS: dict[str, Callable[[], dict[str, Any]]] = {
    "deribit": _scenarios.deribit,
    "simple_grid": _scenarios.simple_grid,
    "span": lambda: _scenarios.span(scan_range=0.16, vol_range=0.25, relative_vol=True),
}

# The model an instrument gets when the market names none: per cross preset,
# by kind ("option", or "future" for perpetuals and dated futures) and
# underlying (None: any). A preset without a rule for an instrument falls back
# to the deribit rules.
_DEFAULT_MODELS: dict[str, dict[tuple[str, str | None], str]] = {
    "deribit": {("option", None): "deribit_options",
                ("future", "BTC"): "deribit_btc_futures",
                ("future", "ETH"): "deribit_eth_futures",
                ("future", "SOL"): "deribit_sol_usdc_futures"},
    "binance": {("future", "ZEC"): "binance_zecusdt", ("future", "ADA"): "binance_adausdt"},
    "bitcom": {("option", None): "bitcom_options"},
    "bybit": {("option", None): "bybit_options"},
}



@functools.lru_cache(maxsize=65536)
def _parse_symbol_cached(name: str) -> InstrumentSpec:
    """parse_symbol, once per distinct symbol (a book repeats a few instruments
    over millions of rows; specs are immutable)."""
    return parse_symbol(name)

class InputError(ValueError):
    """Bad user data: the message names the source (file), the row and the column.

    ``source``, ``row`` (1-based data row, None for file-level problems),
    ``column`` (None if not about one column) are kept as attributes.
    """

    def __init__(self, source: str, message: str, *, row: int | None = None,
                 column: str | None = None, where: str | None = None) -> None:
        self.source, self.row, self.column = source, row, column
        parts = [source]
        if where is not None:
            parts.append(where)
        elif row is not None:
            parts.append(f"row {row}")
        if column is not None:
            parts.append(f"column {column!r}")
        super().__init__(f"{', '.join(parts)}: {message}")


# ---- tables -----------------------------------------------------------------------------

class _Table:
    """Rows of one source as dicts, with what is needed to name a row in errors."""

    def __init__(self, source: str, columns: Sequence[str], rows: list[Mapping[str, Any]],
                 lines: list[int] | None = None, label: str = "row") -> None:
        self.source, self.columns, self.rows = source, list(columns), rows
        self.lines, self.label = lines, label

    def where(self, i: int) -> str:
        text = f"{self.label} {i + 1}"
        if self.lines is not None:
            text += f" (line {self.lines[i]})"
        return text

    def error(self, i: int | None, column: str | None, message: str) -> InputError:
        if i is None:
            return InputError(self.source, message, column=column)
        return InputError(self.source, message, row=i + 1, column=column, where=self.where(i))

    def _raw(self, i: int, column: str, needed_by: str | None) -> Any:
        if column not in self.columns:
            if needed_by is None:
                return None
            raise self.error(i, column, f"missing required column {column!r} "
                                        f"(needed by {needed_by} rows)")
        value = self.rows[i].get(column)
        if _missing(value):
            if needed_by is None:
                return None
            raise self.error(i, column, f"missing value (required in {needed_by} rows)")
        return value

    def text(self, i: int, column: str, needed_by: str | None = None) -> str | None:
        value = self._raw(i, column, needed_by)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self.error(i, column, f"expected text, got {value!r}")
        return str(value).strip()

    def number(self, i: int, column: str, needed_by: str | None = None, *, what: str = "value",
               positive: bool = False, nonneg: bool = False, nonzero: bool = False,
               allow_inf: bool = False) -> float | None:
        value = self._raw(i, column, needed_by)
        if value is None:
            return None
        x = _to_float(value)
        if x is None:
            raise self.error(i, column, f"unparseable number {value!r}")
        if math.isnan(x):
            raise self.error(i, column, f"the {what} is NaN")
        if math.isinf(x) and not allow_inf:
            raise self.error(i, column, f"the {what} must be finite, got {value!r}")
        if positive and not x > 0:
            raise self.error(i, column, f"the {what} must be > 0, got {value!r}")
        if nonneg and not x >= 0:
            raise self.error(i, column, f"the {what} must be >= 0, got {value!r}")
        if nonzero and x == 0:
            raise self.error(i, column, f"the {what} must not be zero")
        return x

    def time(self, i: int, column: str = "time") -> float | None:
        value = self._raw(i, column, None)
        if value is None:
            return None
        try:
            return _to_epoch(value, date_time=None)
        except ValueError as exc:
            raise self.error(i, column, str(exc)) from None

    def expiry(self, i: int, column: str = "expiry", needed_by: str | None = None) -> int | None:
        value = self._raw(i, column, needed_by)
        if value is None:
            return None
        try:
            return int(_to_epoch(value, date_time=EXPIRY_TIME_UTC))
        except ValueError as exc:
            raise self.error(i, column, str(exc)) from None

    def symbol(self, i: int, column: str, needed_by: str) -> tuple[str, InstrumentSpec]:
        name = self.text(i, column, needed_by)
        assert name is not None
        try:
            spec = _parse_symbol_cached(name)
        except (ValueError, TypeError) as exc:
            raise self.error(i, column, f"unknown instrument symbol: {exc}") from None
        if spec.kind is InstrumentKind.SPOT:
            raise self.error(i, column, f"{name!r} is a spot pair, not a derivative: hold "
                                        f"{spec.base} as a balance and give its index price")
        return name, spec


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True  # DataFrames and Parquet fill absent cells of float columns with NaN
    if isinstance(value, str) and not value.strip():
        return True
    pd = sys.modules.get("pandas")  # pandas' own missing values, if it is in use
    return pd is not None and (value is pd.NaT or value is pd.NA)


def _to_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _to_epoch(value: Any, *, date_time: Any) -> float:
    """Unix seconds from a number, an ISO 8601 string, a datetime or a date.
    Times without an offset are UTC; a bare date gets ``date_time`` (expiries:
    08:00 UTC) or midnight UTC."""
    if isinstance(value, bool):
        raise ValueError(f"expected a time, got {value!r}")
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime.combine(value, date_time or datetime.min.time())
    elif isinstance(value, str):
        text = value.strip()
        x = _to_float(text)
        if x is not None:
            return _check_epoch(x, value)
        try:
            if len(text) == 10:  # YYYY-MM-DD
                dt = datetime.combine(date.fromisoformat(text), date_time or datetime.min.time())
            else:
                dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(f"unparseable time {value!r} (use ISO 8601, e.g. "
                             f"2025-01-02T08:00:00Z, or unix seconds)") from None
    else:
        x = _to_float(value)
        if x is None:
            raise ValueError(f"unparseable time {value!r}")
        return _check_epoch(x, value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _check_epoch(x: float, value: Any) -> float:
    if not math.isfinite(x) or x < 0:
        raise ValueError(f"a time must be finite unix seconds >= 0, got {value!r}")
    return x


def _read(source: Any, name: str | None, what: str) -> _Table:
    """Any supported input as a :class:`_Table`."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        label = name or path
        ext = os.path.splitext(path)[1].lower()
        if ext == ".csv":
            return _read_csv(path, label)
        if ext == ".json":
            return _read_json(path, label)
        if ext in (".parquet", ".pq"):
            return _read_parquet(path, label)
        raise InputError(label, f"unknown {what} file type {ext or '(none)'!r}: use .csv, "
                                ".json or .parquet")
    if isinstance(source, list):
        return _records(source, name or f"{what} records", "record")
    if hasattr(source, "to_dict") and hasattr(source, "columns"):  # a pandas DataFrame
        label = name or f"{what} DataFrame"
        columns = [str(c) for c in source.columns]
        if len(set(columns)) != len(columns):
            raise InputError(label, "duplicate column names")
        rows = [dict(zip(columns, r, strict=True))
                for r in source.itertuples(index=False, name=None)]
        return _Table(label, columns, rows)
    raise TypeError(f"a {what} must be a file path, a pandas DataFrame or a list of records, "
                    f"got {type(source).__name__}")


def _read_csv(path: str, label: str) -> _Table:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header: list[str] | None = None
            rows: list[dict[str, Any]] = []
            lines: list[int] = []
            start = 1
            for record in reader:
                line, start = start, reader.line_num + 1
                if not record or all(not c.strip() for c in record):
                    continue
                if header is None:
                    header = [c.strip() for c in record]
                    dup = sorted({c for c in header if header.count(c) > 1})
                    if dup or "" in header:
                        raise InputError(label, f"bad header (line {line}): "
                                                + (f"duplicate column {dup[0]!r}" if dup
                                                   else "an empty column name"))
                    continue
                if len(record) > len(header):
                    raise InputError(label, f"{len(record)} fields but the header has "
                                            f"{len(header)}", row=len(rows) + 1,
                                     where=f"row {len(rows) + 1} (line {line})")
                rows.append(dict(zip(header, record, strict=False)))
                lines.append(line)
    except UnicodeDecodeError as exc:
        raise InputError(label, f"not UTF-8 text: {exc}") from None
    except csv.Error as exc:
        raise InputError(label, f"malformed CSV: {exc}") from None
    if header is None:
        raise InputError(label, "empty file (no header row)")
    return _Table(label, header, rows, lines)


def _read_json(path: str, label: str) -> _Table:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise InputError(label, f"invalid JSON at line {exc.lineno} column {exc.colno}: "
                                f"{exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise InputError(label, f"not UTF-8 text: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("records"), list):
        data = data["records"]
    if not isinstance(data, list):
        raise InputError(label, "expected a JSON list of records (objects), or an object "
                                "with a 'records' list")
    return _records(data, label, "record")


def _records(data: list[Any], label: str, row_label: str) -> _Table:
    columns: dict[str, None] = {}
    for k, rec in enumerate(data):
        if not isinstance(rec, Mapping):
            raise InputError(label, f"expected an object, got {type(rec).__name__}",
                             row=k + 1, where=f"{row_label} {k + 1}")
        columns.update(dict.fromkeys(str(c) for c in rec))
    return _Table(label, list(columns), [{str(k): v for k, v in r.items()} for r in data],
                  label=row_label)


def _read_parquet(path: str, label: str) -> _Table:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(label, "reading Parquet needs pyarrow: pip install "
                                "'marginkit[io]'") from None
    try:
        table = pq.read_table(path)
    except OSError:
        raise
    except Exception as exc:  # pyarrow's errors on corrupt files
        raise InputError(label, f"not a readable Parquet file: {exc}") from None
    return _Table(label, table.column_names, table.to_pylist())


# ---- books ------------------------------------------------------------------------------

@dataclass
class _Ref:
    """Where a fact came from, to name it in errors found later."""

    table: _Table
    index: int
    column: str | None = None  # the column that named it (symbols)

    def error(self, column: str | None, message: str) -> InputError:
        return self.table.error(self.index, column or self.column, message)


@dataclass
class _Account:
    name: str
    mode: str | None
    margin_asset: str
    ref: _Ref
    balances: dict[str, tuple[float, _Ref]] = field(default_factory=dict)
    positions: dict[str, tuple[float, float, _Ref]] = field(default_factory=dict)
    orders: list[tuple[str, float, float, _Ref]] = field(default_factory=list)
    isolated: dict[str, tuple[float, _Ref]] = field(default_factory=dict)


@dataclass
class Book:
    """A parsed book (see :func:`read_book`): accounts in file order."""

    source: str
    accounts: dict[str, _Account]
    symbols: dict[str, tuple[InstrumentSpec, _Ref]]  # every instrument named, first mention

    def __repr__(self) -> str:
        n = sum(len(a.positions) for a in self.accounts.values())
        return f"Book({self.source!r}: {len(self.accounts)} accounts, {n} positions)"


def read_book(source: Any, *, name: str | None = None) -> Book:
    """Reads a book from a ``.csv`` / ``.json`` / ``.parquet`` file, a pandas
    DataFrame or a list of records (dicts). ``name`` labels the source in error
    messages (default: the path). Raises :class:`InputError` naming the file,
    row and column of the first problem.

    Row types (column ``type``): ``account`` (``account``, ``margin_asset``,
    optional ``mode``), ``balance`` (``account``, ``asset``, ``amount``),
    ``position`` (``account``, ``instrument``, ``size``, ``entry``), ``order``
    (``account``, ``instrument``, ``size``, ``price``), ``isolated``
    (``account``, ``instrument``, ``amount``).

    Large tables are read and checked a column at a time
    (:func:`_read_book_columns`); whenever that path meets anything it does not
    vouch for (a bad or missing cell, a quoted or irregular CSV, an unusual
    value type) the table is read again row by row, which names the problem.
    Both give the same :class:`Book`.
    """
    with _no_gc():
        try:
            return _read_book_columns(source, name)
        except _Fallback:
            return _read_book_rows(source, name)


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Cyclic garbage collection paused: reading a large table allocates
    hundreds of thousands of objects that all live on, and the collector would
    traverse them again and again (a third of the time on 60,000 rows)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _read_book_rows(source: Any, name: str | None) -> Book:
    """:func:`read_book` a row at a time: the reference, and what names errors."""
    t = _read(source, name, "book")
    if "type" not in t.columns:
        raise t.error(None, "type", "missing required column 'type' (account, balance, "
                                    "position, order or isolated)")
    accounts: dict[str, _Account] = {}
    symbols: dict[str, tuple[InstrumentSpec, _Ref]] = {}
    kinds = [_row_type(t, i, BOOK_TYPES) for i in range(len(t.rows))]
    for i, kind in enumerate(kinds):
        if kind != "account":
            continue
        acct = t.text(i, "account", "account")
        assert acct is not None
        if "/" in acct:
            raise t.error(i, "account", f"account names may not contain '/' (reserved for "
                                        f"isolated sub-accounts): {acct!r}")
        if acct in accounts:
            raise t.error(i, "account", f"duplicate account {acct!r} (first at "
                                        f"{t.where(accounts[acct].ref.index)})")
        mode = t.text(i, "mode")
        if mode is not None:
            mode = mode.lower()
            if mode not in MODES:
                raise t.error(i, "mode", f"unknown margin mode {mode!r} (cross, portfolio "
                                         "or isolated)")
        asset = t.text(i, "margin_asset", "account")
        assert asset is not None
        accounts[acct] = _Account(acct, mode, asset, _Ref(t, i))
    for i, kind in enumerate(kinds):
        if kind == "account":
            continue
        acct = t.text(i, "account", kind)
        if acct not in accounts:
            raise t.error(i, "account", f"unknown account {acct!r}: declare it in an "
                                        "'account' row")
        a = accounts[acct]
        ref = _Ref(t, i)
        if kind == "balance":
            asset = t.text(i, "asset", kind)
            assert asset is not None
            amount = t.number(i, "amount", kind, what="balance", nonneg=True)
            _unique(a.balances, asset, ref, f"balance of {asset!r} for account {acct!r}",
                    "asset")
            a.balances[asset] = (amount, ref)  # type: ignore[assignment]
            continue
        instrument, spec = t.symbol(i, "instrument", kind)
        symbols.setdefault(instrument, (spec, _Ref(t, i, "instrument")))
        option = spec.kind is InstrumentKind.OPTION
        if kind == "position":
            size = t.number(i, "size", kind, what="size")
            entry = t.number(i, "entry", kind, what="entry price", positive=not option,
                             nonneg=option)
            _unique(a.positions, instrument, ref, f"position of {acct!r} in {instrument!r}",
                    "instrument")
            a.positions[instrument] = (size, entry, ref)  # type: ignore[assignment]
        elif kind == "order":
            size = t.number(i, "size", kind, what="order size", nonzero=True)
            price = t.number(i, "price", kind, what="order price", positive=True)
            a.orders.append((instrument, size, price, ref))  # type: ignore[arg-type]
        else:  # isolated
            amount = t.number(i, "amount", kind, what="isolated allocation", positive=True)
            _unique(a.isolated, instrument, ref, f"isolated allocation of {acct!r} to "
                                                 f"{instrument!r}", "instrument")
            a.isolated[instrument] = (amount, ref)  # type: ignore[assignment]
    return Book(t.source, accounts, symbols)


# ---- books a column at a time -----------------------------------------------------------
#
# The fast path of read_book. It never raises InputError itself: whenever it
# meets something it does not vouch for it raises _Fallback and the row-by-row
# path reads the table again, which either raises the exact error (file, row,
# line, column, message) or, for a false alarm, returns the book. When it does
# not fall back it builds the same Book as _read_book_rows: the same numbers
# (Python's float() on every cell), texts, dict orders and references.


class _Fallback(Exception):
    """The columnar reader leaves this table to the row-by-row one."""


class _ColumnTable(_Table):
    """A :class:`_Table` read as columns; its rows (dicts, as :func:`_read`
    gives them) are built only if something asks for them."""

    def __init__(self, source: str, columns: Sequence[str], n: int,
                 make_rows: Callable[[], list[Mapping[str, Any]]],
                 lines: list[int] | None = None, label: str = "row") -> None:
        self.source, self.columns, self.n = source, list(columns), n
        self.lines, self.label = lines, label
        self._make_rows = make_rows

    @functools.cached_property
    def rows(self) -> list[Mapping[str, Any]]:  # type: ignore[override]
        return self._make_rows()


def _columns(source: Any, name: str | None, what: str) -> tuple[_ColumnTable, dict[str, Any]]:
    """The input as columns (lists of cell values, as :func:`_read` would give
    them row by row); _Fallback for anything irregular."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        label = name or path
        ext = os.path.splitext(path)[1].lower()
        if ext == ".csv":
            return _csv_columns(path, label)
        if ext == ".json":
            try:
                with open(path, encoding="utf-8") as f:
                    data = json.load(f)
            except (OSError, ValueError):
                raise _Fallback from None
            if isinstance(data, dict) and isinstance(data.get("records"), list):
                data = data["records"]
            if not isinstance(data, list):
                raise _Fallback
            return _record_columns(data, label)
        if ext in (".parquet", ".pq"):
            try:
                import pyarrow.parquet as pq

                table = pq.read_table(path)
            except Exception:
                raise _Fallback from None
            names = list(table.column_names)
            if len(set(names)) != len(names):
                raise _Fallback
            cols = {c: table.column(c).to_pylist() for c in names}
            return _ColumnTable(label, names, table.num_rows, table.to_pylist), cols
        raise _Fallback
    if isinstance(source, list):
        return _record_columns(source, name or f"{what} records")
    if hasattr(source, "to_dict") and hasattr(source, "columns") and hasattr(source, "iloc"):
        label = name or f"{what} DataFrame"
        names = [str(c) for c in source.columns]
        if len(set(names)) != len(names):
            raise _Fallback
        # Iterating a column gives what itertuples (the row-by-row path) gives.
        cols = {c: list(source.iloc[:, k]) for k, c in enumerate(names)}
        n = len(source)

        def rows() -> list[Mapping[str, Any]]:
            return [dict(zip(names, r, strict=True)) for r in zip(*cols.values(), strict=True)]

        return _ColumnTable(label, names, n, rows), cols
    raise _Fallback


def _csv_columns(path: str, label: str) -> tuple[_ColumnTable, dict[str, Any]]:
    """A plain CSV (no quotes, no blank lines, every row as wide as the header)
    split on commas, which is what the csv module gives for such a file."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        raise _Fallback from None
    if '"' in text or "\0" in text:
        raise _Fallback
    text = text.replace("\r\n", "\n")
    if "\r" in text:
        raise _Fallback
    if text.endswith("\n"):
        text = text[:-1]
    lines = text.split("\n")
    header = [c.strip() for c in lines[0].split(",")]
    if len(set(header)) != len(header) or "" in header:
        raise _Fallback  # also a blank first line
    width = len(header)
    body = lines[1:]
    if not set(map(str.count, body, itertools.repeat(","))) <= {width - 1}:
        raise _Fallback  # a row with more or fewer cells than the header
    # A blank line (which the csv reader skips, shifting line numbers) has a
    # blank 'type' cell, which sends the table to the row-by-row reader.
    n = len(body)
    cells = text[len(lines[0]) + 1:].replace("\n", ",").split(",") if n else []
    cols = {c: cells[k::width] for k, c in enumerate(header)}

    def rows() -> list[Mapping[str, Any]]:
        return [dict(zip(header, r, strict=True)) for r in zip(*cols.values(), strict=True)]

    return _ColumnTable(label, header, n, rows, list(range(2, n + 2))), cols


def _record_columns(data: list[Any], label: str) -> tuple[_ColumnTable, dict[str, Any]]:
    names: dict[Any, None] = {}
    for rec in data:
        if type(rec) is not dict:
            raise _Fallback
        names.update(dict.fromkeys(rec))
    if not all(type(c) is str for c in names):
        raise _Fallback
    cols = {c: [r.get(c) for r in data] for c in names}

    def rows() -> list[Mapping[str, Any]]:
        return [{str(k): v for k, v in r.items()} for r in data]

    return _ColumnTable(label, list(names), len(data), rows, label="record"), cols


def _texts(values: Iterable[Any], *, required: bool = True) -> list[Any]:
    """:meth:`_Table.text` of each cell (None where missing, if not required)."""
    try:  # all strings (every CSV cell)
        texts = list(map(str.strip, values))
    except TypeError:
        pass
    else:
        if all(texts):
            return texts
        if required:
            raise _Fallback
        return [v or None for v in texts]
    out: list[Any] = []
    append = out.append
    for v in values:
        if type(v) is str:
            s = v.strip()
            if s:
                append(s)
                continue
        elif not _missing(v):
            if isinstance(v, bool) or not isinstance(v, (str, int)):
                raise _Fallback
            append(str(v).strip())
            continue
        if required:
            raise _Fallback
        append(None)
    return out


def _floats(values: list[Any], *, positive: bool = False, nonneg: Any = False,
            nonzero: bool = False) -> list[float]:
    """:meth:`_Table.number` of each (required, finite) cell; ``nonneg`` may be
    a per-cell mask (the rest must then be positive)."""
    if bool in set(map(type, values)):  # float(True) is 1.0; the row path refuses it
        raise _Fallback
    try:  # float() of each cell, as _to_float
        x = np.fromiter(values, dtype=object, count=len(values)).astype(np.float64)
    except Exception:
        raise _Fallback from None
    ok = np.isfinite(x)
    if positive:
        ok &= x > 0
    if nonneg is True:
        ok &= x >= 0
    elif nonneg is not False:
        ok &= np.where(nonneg, x >= 0, x > 0)
    if nonzero:
        ok &= x != 0
    if not ok.all():
        raise _Fallback
    return x.tolist()


def _read_book_columns(source: Any, name: str | None) -> Book:
    t, cols = _columns(source, name, "book")
    n = t.n
    if "type" not in cols or (n and "account" not in cols):
        raise _Fallback

    def take(column: str, idx: list[int]) -> list[Any]:
        if not idx:
            return []
        if column not in cols:
            raise _Fallback
        c = cols[column]
        return [c[i] for i in idx]

    lower: dict[str, str] = {}
    kinds = [lower.get(k) or lower.setdefault(k, k.lower())
             for k in _texts(cols["type"])]
    rows: dict[str, list[int]] = {k: [] for k in BOOK_TYPES}
    try:
        for i, k in enumerate(kinds):
            rows[k].append(i)
    except KeyError:
        raise _Fallback from None
    owner = _texts(cols["account"]) if n else []
    ids = rows["account"]
    names = [owner[i] for i in ids]
    if len(set(names)) != len(names) or any("/" in a for a in names):
        raise _Fallback
    modes = [None if m is None else m.lower()
             for m in _texts(take("mode", ids) if "mode" in cols else [None] * len(ids),
                             required=False)]
    if not set(modes) <= {None, *MODES}:
        raise _Fallback
    assets = _texts(take("margin_asset", ids))
    accounts = {a: _Account(a, mode, asset, _Ref(t, i))
                for a, mode, asset, i in zip(names, modes, assets, ids, strict=True)}
    if not accounts.keys() >= set(owner):
        raise _Fallback

    ids = rows["balance"]
    assets = _texts(take("asset", ids))
    amounts = _floats(take("amount", ids), nonneg=True)
    if len(set(zip([owner[i] for i in ids], assets, strict=True))) != len(ids):
        raise _Fallback
    for i, asset, amount in zip(ids, assets, amounts, strict=True):
        accounts[owner[i]].balances[asset] = (amount, _Ref(t, i))

    # Instruments: each distinct symbol parsed once; the first mention names it.
    ids = [i for i, k in enumerate(kinds) if k not in ("account", "balance")]
    instrument: dict[int, str] = dict(zip(ids, _texts(take("instrument", ids)), strict=True))
    specs: dict[str, InstrumentSpec] = {}
    for sym in dict.fromkeys(instrument.values()):
        try:
            spec = _parse_symbol_cached(sym)
        except Exception:
            raise _Fallback from None
        if spec.kind is InstrumentKind.SPOT:
            raise _Fallback
        specs[sym] = spec
    symbols: dict[str, tuple[InstrumentSpec, _Ref]] = {}
    for i, sym in instrument.items():
        if sym not in symbols:
            symbols[sym] = (specs[sym], _Ref(t, i, "instrument"))

    ids = rows["position"]
    syms = [instrument[i] for i in ids]
    sizes = _floats(take("size", ids))
    option = np.array([specs[s].kind is InstrumentKind.OPTION for s in syms], dtype=bool)
    entries = _floats(take("entry", ids), nonneg=option)
    if len(set(zip([owner[i] for i in ids], syms, strict=True))) != len(ids):
        raise _Fallback
    for i, sym, size, entry in zip(ids, syms, sizes, entries, strict=True):
        accounts[owner[i]].positions[sym] = (size, entry, _Ref(t, i))

    ids = rows["order"]
    sizes = _floats(take("size", ids), nonzero=True)
    prices = _floats(take("price", ids), positive=True)
    for i, size, price in zip(ids, sizes, prices, strict=True):
        accounts[owner[i]].orders.append((instrument[i], size, price, _Ref(t, i)))

    ids = rows["isolated"]
    syms = [instrument[i] for i in ids]
    amounts = _floats(take("amount", ids), positive=True)
    if len(set(zip([owner[i] for i in ids], syms, strict=True))) != len(ids):
        raise _Fallback
    for i, sym, amount in zip(ids, syms, amounts, strict=True):
        accounts[owner[i]].isolated[sym] = (amount, _Ref(t, i))
    return Book(t.source, accounts, symbols)


def _row_type(t: _Table, i: int, allowed: Sequence[str]) -> str:
    kind = t.text(i, "type", "every")
    assert kind is not None
    kind = kind.lower()
    if kind not in allowed:
        raise t.error(i, "type", f"unknown row type {kind!r} (one of {', '.join(allowed)})")
    return kind


def _unique(table: Mapping[Any, Any], key: Any, ref: _Ref, what: str, column: str) -> None:
    if key in table:
        first = table[key][-1]
        raise ref.error(column, f"duplicate {what} (first at {first.table.where(first.index)})")


# ---- markets ----------------------------------------------------------------------------

@dataclass
class _Instrument:
    contract_size: float | None = None
    model: str | None = None
    taker_fee: float | None = None
    ref: _Ref | None = None


@dataclass
class Market:
    """A parsed market snapshot (see :func:`read_market`)."""

    source: str
    index: dict[str, tuple[float, float | None, float | None, _Ref]]  # price, time, quantum
    haircuts: dict[str, dict[float, tuple[float, _Ref]]]
    marks: dict[str, tuple[float, float | None, _Ref]]
    vols: dict[str, tuple[float, float | None, _Ref]]
    strike_vols: dict[tuple[str, int, float], tuple[float, float | None, _Ref]]
    forwards: dict[tuple[str, int], tuple[float, float | None, _Ref]]
    rate: tuple[float, _Ref] | None
    instruments: dict[str, _Instrument]
    symbols: dict[str, tuple[InstrumentSpec, _Ref]]
    now: float

    def __repr__(self) -> str:
        return (f"Market({self.source!r}: {len(self.index)} index prices, {len(self.marks)} "
                f"marks, {len(self.vols) + len(self.strike_vols)} vols)")


def read_market(source: Any, *, name: str | None = None) -> Market:
    """Reads a market snapshot (file, DataFrame or records; see :func:`read_book`).

    Row types (column ``type``; ``name`` is an asset or an instrument symbol,
    ``value`` the number, ``time`` when it was observed): ``index`` (an asset's
    USD price; optional ``quantum``), ``haircut`` (a collateral tier: ``upto``,
    ``value`` = haircut), ``mark``, ``vol`` (an option's implied volatility, or
    with ``expiry`` and ``strike`` every option of underlying ``name`` there),
    ``forward`` (``expiry``), ``rate`` and ``instrument`` (``contract_size``,
    ``model``, ``taker_fee``).
    """
    t = _read(source, name, "market")
    if "type" not in t.columns:
        raise t.error(None, "type", "missing required column 'type' (index, haircut, mark, "
                                    "vol, forward, rate or instrument)")
    m = Market(t.source, {}, {}, {}, {}, {}, {}, None, {}, {}, 0.0)
    times: list[float] = []
    for i in range(len(t.rows)):
        kind = _row_type(t, i, MARKET_TYPES)
        ref = _Ref(t, i)
        when = t.time(i)
        if when is not None:
            times.append(when)
        if kind == "rate":
            value = t.number(i, "value", kind, what="rate")
            if m.rate is not None:
                raise t.error(i, "type", f"duplicate rate (first at "
                                         f"{t.where(m.rate[1].index)})")
            m.rate = (value, ref)  # type: ignore[assignment]
            continue
        if kind in ("index", "haircut", "forward"):
            asset = t.text(i, "name", kind)
            assert asset is not None
            if kind == "index":
                price = t.number(i, "value", kind, what="index price", positive=True)
                quantum = t.number(i, "quantum", what="quantum", nonneg=True)
                _unique(m.index, asset, ref, f"index price of {asset!r}", "name")
                m.index[asset] = (price, when, quantum, ref)  # type: ignore[assignment]
            elif kind == "haircut":
                upto = t.number(i, "upto", what="tier limit", positive=True, allow_inf=True)
                cut = t.number(i, "value", kind, what="haircut", nonneg=True)
                if cut > 1:  # type: ignore[operator]
                    raise t.error(i, "value", f"a haircut is a fraction in [0, 1], got {cut}")
                tiers = m.haircuts.setdefault(asset, {})
                upto = math.inf if upto is None else upto
                _unique(tiers, upto, ref, f"haircut tier of {asset!r} up to {upto}", "upto")
                tiers[upto] = (cut, ref)  # type: ignore[assignment]
            else:
                expiry = t.expiry(i, "expiry", kind)
                fwd = t.number(i, "value", kind, what="forward", positive=True)
                key = (asset, expiry)
                _unique(m.forwards, key, ref, f"forward of {asset!r} for that expiry", "expiry")
                m.forwards[key] = (fwd, when, ref)  # type: ignore[index, assignment]
            continue
        if kind == "vol" and not (_missing(t.rows[i].get("expiry"))
                                  and _missing(t.rows[i].get("strike"))):
            asset = t.text(i, "name", kind)
            expiry = t.expiry(i, "expiry", "vol-by-strike")
            strike = t.number(i, "strike", "vol-by-strike", what="strike", positive=True)
            vol = t.number(i, "value", kind, what="volatility", nonneg=True)
            key2 = (asset, expiry, strike)
            _unique(m.strike_vols, key2, ref, f"vol of {asset!r} at that expiry and strike",
                    "strike")
            m.strike_vols[key2] = (vol, when, ref)  # type: ignore[index, assignment]
            continue
        symbol, spec = t.symbol(i, "name", kind)
        m.symbols.setdefault(symbol, (spec, _Ref(t, i, "name")))
        option = spec.kind is InstrumentKind.OPTION
        if kind == "mark":
            mark = t.number(i, "value", kind, what="mark price", positive=not option,
                            nonneg=option)
            _unique(m.marks, symbol, ref, f"mark of {symbol!r}", "name")
            m.marks[symbol] = (mark, when, ref)  # type: ignore[assignment]
        elif kind == "vol":
            if not option:
                raise t.error(i, "name", f"{symbol!r} is not an option: a vol row names an "
                                         "option, or an underlying with expiry and strike")
            vol = t.number(i, "value", kind, what="volatility", nonneg=True)
            _unique(m.vols, symbol, ref, f"vol of {symbol!r}", "name")
            m.vols[symbol] = (vol, when, ref)  # type: ignore[assignment]
        else:  # instrument
            spec_row = _Instrument(
                t.number(i, "contract_size", what="contract size", positive=True),
                t.text(i, "model"), t.number(i, "taker_fee", what="taker fee", nonneg=True),
                ref)
            _unique({k: (v.ref,) for k, v in m.instruments.items()}, symbol, ref,
                    f"instrument row for {symbol!r}", "name")
            if spec_row.model is not None and spec_row.model not in _all_models():
                raise t.error(i, "model", f"unknown margin model {spec_row.model!r} (one of "
                                          f"{', '.join(sorted(_all_models()))})")
            m.instruments[symbol] = spec_row
    for symbol, (_, _, ref) in m.vols.items():
        if symbol in m.marks:
            first = m.marks[symbol][2]
            raise ref.error("name", f"both a mark ({first.table.where(first.index)}) and a vol "
                                    f"for {symbol!r}: a vol sets the mark, give one of them")
    for asset, tiers in m.haircuts.items():
        if asset not in m.index:
            ref = next(iter(tiers.values()))[1]
            raise ref.error("name", f"haircut tiers for {asset!r} but no index row for it")
    m.now = max(times) if times else _time.time()
    return m


def _all_models() -> set[str]:
    return {name for p in _presets.PRESETS.values() for name in p["models"]}


# ---- the engine -------------------------------------------------------------------------

@dataclass
class AccountInfo:
    """An engine account as loaded: ``parent`` is set for isolated sub-accounts
    (named ``parent/instrument``); ``mode`` is cross, portfolio or isolated."""

    name: str
    mode: str
    margin_asset: str
    parent: str | None = None


@dataclass
class Venue:
    """A populated engine and what was loaded into it (accounts in book order,
    each followed by its isolated sub-accounts)."""

    engine: Engine
    accounts: list[AccountInfo]
    preset: str
    scenario_preset: str
    book: str
    market: str


def resolve_preset(preset: str | None) -> tuple[str, str]:
    """``(cross preset, scenario preset)`` from a ``--preset`` value.

    One name sets what it names: a cross preset (:mod:`marginkit.presets`:
    deribit, binance, bitcom, bybit) or a scenario preset (deribit,
    simple_grid, span); ``deribit`` is both. Two names, ``CROSS,SCENARIOS``, set
    both. What is not named stays deribit."""
    cross, scen = "deribit", "deribit"
    names = [p.strip() for p in (preset or "").split(",") if p.strip()]
    known = f"cross presets: {', '.join(_presets.preset_names())}; scenario presets: " \
            f"{', '.join(sorted(SCENARIO_PRESETS))}"
    if len(names) > 2:
        raise ValueError(f"--preset {preset!r}: at most two names, CROSS,SCENARIOS ({known})")
    if len(names) == 2:
        if names[0] not in _presets.PRESETS:
            raise ValueError(f"--preset {preset!r}: {names[0]!r} is not a cross preset ({known})")
        if names[1] not in SCENARIO_PRESETS:
            raise ValueError(f"--preset {preset!r}: {names[1]!r} is not a scenario preset "
                             f"({known})")
        return names[0], names[1]
    if names:
        n = names[0]
        if n not in _presets.PRESETS and n not in SCENARIO_PRESETS:
            raise ValueError(f"unknown preset {n!r} ({known})")
        cross = n if n in _presets.PRESETS else cross
        scen = n if n in SCENARIO_PRESETS else scen
    return cross, scen


def load(book: Any, market: Any, *, mode: str | None = None,
         preset: str | None = None) -> Venue:
    """Reads a book and a market (paths, DataFrames, records, or :class:`Book` /
    :class:`Market`) and builds the engine (:func:`build_engine`)."""
    m = market if isinstance(market, Market) else read_market(market)
    b = book if isinstance(book, Book) else read_book(book)
    return build_engine(b, m, mode=mode, preset=preset)


def build_engine(book: Book, market: Market, *, mode: str | None = None,
                 preset: str | None = None) -> Venue:
    """A populated :class:`~marginkit.Engine` from a book and a market.

    ``mode``: None keeps each account's own mode (default cross); ``"cross"``,
    ``"portfolio"`` or ``"isolated"`` puts every account in that mode. In
    isolated mode every instrument an account trades is a sub-account funded
    from its margin-asset balance: by its ``isolated`` row, else by an equal
    share of what the explicit allocations leave. Isolated rows of cross and
    portfolio accounts isolate just those instruments.

    ``preset``: see :func:`resolve_preset`. Every preset's models are added;
    each instrument uses the model its ``instrument`` row names, else the cross
    preset's model for its kind and underlying (falling back to deribit's); the
    cross preset's health thresholds apply. Portfolio-mode accounts use the
    scenario preset on every underlying.
    """
    if mode is not None and mode not in MODES:
        raise ValueError(f"unknown margin mode {mode!r} (cross, portfolio or isolated)")
    cross_preset, scen_preset = resolve_preset(preset)
    eng = Engine()
    eng.now = market.now
    # Instruments: every symbol named in the book or the market.
    specs = dict(book.symbols)
    for sym, val in market.symbols.items():
        specs.setdefault(sym, val)
    # Assets: each needs an index price.
    for a in book.accounts.values():
        if a.margin_asset not in market.index:
            raise a.ref.error("margin_asset", _no_index(a.margin_asset, market))
        for asset, (_, ref) in a.balances.items():
            if asset not in market.index:
                raise ref.error("asset", _no_index(asset, market))
    for sym, (spec, ref) in specs.items():
        for asset in dict.fromkeys((spec.base, spec.settle)):
            if asset not in market.index:
                raise ref.error(None, f"{sym!r} needs {_no_index(asset, market)}")
    for (asset, _), (_, _, ref) in market.forwards.items():
        if asset not in market.index:
            raise ref.error("name", _no_index(asset, market))
    for asset, (price, when, quantum, _) in market.index.items():
        tiers = sorted(market.haircuts.get(asset, {}).items())
        eng.add_asset(asset, price=price, time=market.now if when is None else when,
                      haircuts=[(u, h) for u, (h, _) in tiers], quantum=quantum or 0.0)
    for name in _presets.preset_names():
        _presets.apply_preset(eng, name, thresholds=False)
    eng.set_thresholds(**_presets.PRESETS[cross_preset]["thresholds"])
    if market.rate is not None:
        eng.rate = market.rate[0]
    for sym, (spec, ref) in specs.items():
        extra = market.instruments.get(sym, _Instrument())
        model = extra.model or _default_model(spec, cross_preset)
        if model is None:
            where = extra.ref or ref
            raise where.error("model" if extra.ref else None,
                              f"no margin model for {sym!r} in preset {cross_preset!r} (or "
                              f"deribit): name one in the 'model' column of an 'instrument' "
                              f"row of {market.source}")
        eng.add_instrument(sym, model=model, contract_size=extra.contract_size or 1.0,
                           taker_fee=extra.taker_fee or 0.0)
    for (asset, expiry), (fwd, when, ref) in market.forwards.items():
        _engine_call(ref, "value", eng.set_forward, asset, expiry, fwd,
                     market.now if when is None else when)
    for sym, (mark, when, ref) in market.marks.items():
        _engine_call(ref, "value", eng.set_mark, sym, mark, market.now if when is None else when)
    vols = dict(market.vols)
    if market.strike_vols:
        for sym, (spec, _) in specs.items():
            if spec.kind is InstrumentKind.OPTION and sym not in vols and sym not in market.marks:
                key = (spec.base, int(spec.expiry.timestamp()), spec.strike)  # type: ignore[union-attr]
                if key in market.strike_vols:
                    vols[sym] = market.strike_vols[key]  # type: ignore[index]
    for sym, (vol, when, ref) in vols.items():
        _engine_call(ref, "value", eng.set_vol, sym, vol, market.now if when is None else when)
    for sym, (_, ref) in book.symbols.items():
        if not math.isfinite(eng.mark(sym)):
            raise ref.error(None, f"no market price for {sym!r} in {market.source} "
                                          "(give a mark row, or a vol row and a forward or "
                                          "dated future mark for its expiry)")
    modes = {a.name: mode or a.mode or "cross" for a in book.accounts.values()}
    if "portfolio" in modes.values():
        eng.add_scenario_set(scen_preset, **SCENARIO_PRESETS[scen_preset]())
        for u in sorted({spec.base for spec, _ in specs.values()}):
            eng.set_scenarios(u, scen_preset)
    return Venue(eng, _load_accounts(eng, book, modes, mode), cross_preset, scen_preset,
                 book.source, market.source)


def _load_accounts(eng: Engine, book: Book, modes: dict[str, str],
                   forced: str | None) -> list[AccountInfo]:
    infos: list[AccountInfo] = []
    acc_ids: list[int] = []
    ins_ids: list[int] = []
    sizes: list[float] = []
    entries: list[float] = []
    refs: list[_Ref] = []
    orders: list[tuple[int, str, float, float, _Ref]] = []
    instruments = {name: k for k, name in enumerate(eng.instruments)}
    for a in book.accounts.values():
        aid = eng.add_account(a.name, a.margin_asset)
        mode = modes[a.name]
        infos.append(AccountInfo(a.name, mode, a.margin_asset))
        for asset, (amount, _) in a.balances.items():
            if amount > 0:
                eng.deposit(aid, asset, amount)
        if mode == "portfolio":
            eng.set_mode(aid, "portfolio")
        # Isolated instruments: all of them in isolated mode, else those with an
        # isolated row (none when a mode is forced on every account).
        traded = list(dict.fromkeys([*a.positions, *(o[0] for o in a.orders), *a.isolated]))
        isolated = traded if mode == "isolated" else ([] if forced else list(a.isolated))
        children = _open_isolated(eng, a, isolated)
        for child in children.values():
            infos.append(AccountInfo(eng.accounts[child], "isolated", a.margin_asset, a.name))
        for sym, (size, entry, ref) in a.positions.items():
            acc_ids.append(children.get(sym, aid))
            ins_ids.append(instruments[sym])
            sizes.append(size)
            entries.append(entry)
            refs.append(ref)
        for sym, size, price, ref in a.orders:
            orders.append((children.get(sym, aid), sym, size, price, ref))
    try:
        eng.set_positions(acc_ids, ins_ids, sizes, entries)
    except ValueError as exc:  # pragma: no cover - everything was checked above
        raise refs[0].error(None, f"the engine refused the positions: {exc}") from None
    for aid, sym, size, price, ref in orders:
        _engine_call(ref, "price", eng.place_order, aid, sym, size, price)
    return infos


def _open_isolated(eng: Engine, a: _Account, instruments: list[str]) -> dict[str, int]:
    if not instruments:
        return {}
    explicit = {s: a.isolated[s][0] for s in instruments if s in a.isolated}
    rest = [s for s in instruments if s not in explicit]
    share = 0.0
    if rest:
        balance = a.balances.get(a.margin_asset, (0.0, None))[0]
        left = balance - sum(explicit.values())
        if not left > 0:
            raise a.ref.error("margin_asset", f"isolated account {a.name!r}: no "
                                              f"{a.margin_asset} balance left to fund "
                                              f"{rest[0]!r} (give 'isolated' rows)")
        share = left / len(rest)
    children = {}
    for sym in instruments:
        amount = explicit.get(sym, share)
        ref = a.isolated[sym][1] if sym in a.isolated else a.ref
        col = "amount" if sym in a.isolated else "margin_asset"
        children[sym] = _engine_call(ref, col, eng.open_isolated, a.name, sym, amount)
    return children


def _engine_call(ref: _Ref, column: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Calls the engine; its refusal (ValueError) is reported at the row."""
    try:
        return fn(*args)
    except ValueError as exc:
        raise ref.error(column, str(exc)) from None


def _no_index(asset: str, market: Market) -> str:
    return f"an index price for {asset!r}, and {market.source} has none (add an 'index' row)"


def _default_model(spec: InstrumentSpec, preset: str) -> str | None:
    kind = "option" if spec.kind is InstrumentKind.OPTION else "future"
    for p in (preset, "deribit"):
        rules = _DEFAULT_MODELS.get(p, {})
        model = rules.get((kind, spec.base)) or rules.get((kind, None))
        if model:
            return model
    return None


# ---- results ----------------------------------------------------------------------------

ACCOUNT_COLUMNS = ("account", "parent", "mode", "margin_asset", "equity", "im", "mm",
                   "available", "margin_ratio", "state", "stale", "liquidation_underlying",
                   "liquidation_below", "liquidation_above")
POSITION_COLUMNS = ("account", "instrument", "size", "entry", "mark", "im", "mm", "equity")


def account_results(venue: Venue, *, liquidation_prices: bool = True,
                    progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """One row per account (isolated sub-accounts included, ``parent`` set):
    equity, IM, MM, available, margin ratio (equity / MM; inf without MM), health
    state and staleness from :meth:`Engine.summary`, all in the account's margin
    asset; with ``liquidation_prices``, the prices of the account's largest
    exposure at which it reaches liquidation, below and above (NaN where none;
    :meth:`Engine.liquidation_prices_all`, on the thread pool, about 0.15 ms of
    CPU per account on the demo book). ``progress(k)`` is called after each
    account."""
    eng = venue.engine
    rows = []
    ids = {name: i for i, name in enumerate(eng.accounts)}
    lp = eng.liquidation_prices_all() if liquidation_prices else None
    for k, info in enumerate(venue.accounts):
        s = eng.summary(info.name)
        underlying, below, above = None, math.nan, math.nan
        if lp is not None:
            i = ids[info.name]
            underlying, below, above = lp[0][i], float(lp[1][i]), float(lp[2][i])
        rows.append({"account": info.name, "parent": info.parent, "mode": info.mode,
                     "margin_asset": info.margin_asset, "equity": s.equity, "im": s.im,
                     "mm": s.mm, "available": s.available, "margin_ratio": s.margin_ratio,
                     "state": s.state, "stale": s.stale, "liquidation_underlying": underlying,
                     "liquidation_below": below, "liquidation_above": above})
        if progress is not None:
            progress(k + 1)
    return rows


def position_results(venue: Venue) -> list[dict[str, Any]]:
    """One row per position: account, instrument, size, entry, mark, and the
    position's IM, MM and equity contribution in the account's margin asset
    (:meth:`Engine.attribution`)."""
    eng = venue.engine
    names = eng.instruments
    return [{"account": info.name, "instrument": names[r.instrument], "size": r.size,
             "entry": r.entry, "mark": r.mark, "im": r.im, "mm": r.mm, "equity": r.equity}
            for info in venue.accounts for r in eng.attribution(info.name)]


def totals(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Book totals from :func:`account_results` rows: per margin asset the
    number of accounts and the sums of equity, IM, MM and available; and the
    number of accounts in each health state."""
    from .engine import HEALTH_STATES

    by_asset: dict[str, dict[str, float]] = {}
    states = dict.fromkeys(HEALTH_STATES, 0)
    for r in rows:
        t = by_asset.setdefault(r["margin_asset"], {"accounts": 0, "equity": 0.0, "im": 0.0,
                                                    "mm": 0.0, "available": 0.0})
        t["accounts"] += 1
        for key in ("equity", "im", "mm", "available"):
            t[key] += r[key]
        states[r["state"]] += 1
    return {"by_margin_asset": dict(sorted(by_asset.items())), "states": states}


def write_table(rows: Sequence[Mapping[str, Any]], path: Any,
                columns: Sequence[str] | None = None) -> None:
    """Writes rows to ``.csv``, ``.json`` (a list of records; non-finite numbers
    as null) or ``.parquet``, chosen by the extension. Floats are written
    exactly (shortest round-trip form)."""
    target = os.fspath(path)
    cols = list(columns or (rows[0].keys() if rows else ()))
    ext = os.path.splitext(target)[1].lower()
    if ext == ".csv":
        with open(target, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for r in rows:
                w.writerow([_csv_cell(r.get(c)) for c in cols])
    elif ext == ".json":
        with open(target, "w", encoding="utf-8") as f:
            json.dump([{c: json_safe(r.get(c)) for c in cols} for r in rows], f, indent=1)
            f.write("\n")
    elif ext in (".parquet", ".pq"):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ValueError("writing Parquet needs pyarrow: pip install 'marginkit[io]'") \
                from None
        data = {c: [r.get(c) for r in rows] for c in cols}
        pq.write_table(pa.table(data), target)
    else:
        raise ValueError(f"{target}: unknown output file type {ext or '(none)'!r}: use .csv, "
                         ".json or .parquet")


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return value


def json_safe(value: Any) -> Any:
    """A value for JSON: non-finite floats become None (null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
