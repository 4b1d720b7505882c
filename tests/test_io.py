"""marginkit.io: books and markets from CSV, JSON, Parquet, DataFrames and
records give the engine the venue built by hand; bad data is named by file,
row and column; results write and read back exactly."""

from __future__ import annotations

import json
import math

import io_cases as cases
import pandas as pd
import pytest
from marginkit import demo_book, io


def numbers(rows):
    return [(r["account"], r["equity"], r["im"], r["mm"], r["available"], r["state"])
            for r in rows]


def reference(eng):
    out = []
    for name in eng.accounts:
        s = eng.summary(name)
        out.append((name, s.equity, s.im, s.mm, s.available, s.state))
    return out


@pytest.fixture
def files(tmp_path):
    """The small venue as CSV, JSON and Parquet files."""
    paths = {}
    cases.write_csv(cases.BOOK, cases.BOOK_COLUMNS, tmp_path / "book.csv")
    cases.write_csv(cases.MARKET, cases.MARKET_COLUMNS, tmp_path / "market.csv")
    (tmp_path / "book.json").write_text(json.dumps(cases.BOOK))
    (tmp_path / "market.json").write_text(json.dumps({"records": cases.MARKET}))
    pd.read_csv(tmp_path / "book.csv").to_parquet(tmp_path / "book.parquet")
    pd.read_csv(tmp_path / "market.csv").to_parquet(tmp_path / "market.parquet")
    for ext in ("csv", "json", "parquet"):
        paths[ext] = (tmp_path / f"book.{ext}", tmp_path / f"market.{ext}")
    return paths


@pytest.mark.parametrize("mode", [None, "cross", "portfolio", "isolated"])
@pytest.mark.parametrize("ext", ["csv", "json", "parquet"])
def test_files_give_the_engine_built_by_hand(files, ext, mode):
    venue = io.load(*files[ext], mode=mode)
    ref = cases.direct_engine(mode)
    rows = io.account_results(venue)
    assert numbers(rows) == reference(ref)
    for r in rows:  # liquidation prices are the engine's for the largest exposure
        if r["liquidation_underlying"] is not None:
            want = ref.liquidation_prices(r["account"], r["liquidation_underlying"])
            got = (r["liquidation_below"], r["liquidation_above"])
            assert [x if math.isfinite(x) else None for x in got] == \
                   [x if math.isfinite(x) else None for x in want]
    assert [(p["account"], p["instrument"], p["im"], p["mm"], p["equity"])
            for p in io.position_results(venue)] == \
           [(a, ref.instruments[p.instrument], p.im, p.mm, p.equity)
            for a in ref.accounts for p in ref.attribution(a)]


def test_the_small_venue_holds_what_the_book_says():
    venue = io.load(cases.BOOK, cases.MARKET)
    eng = venue.engine
    assert [(a.name, a.mode, a.parent) for a in venue.accounts] == [
        ("alice", "cross", None), ("bob", "portfolio", None), ("carol", "isolated", None),
        ("carol/BTC_USDC-PERPETUAL", "isolated", "carol"),
        ("carol/ETH-USDT-SWAP", "isolated", "carol"), ("dave", "cross", None),
        ("erin", "cross", None), ("erin/BTC_USDC-PERPETUAL", "isolated", "erin")]
    assert eng.mode("bob") == "portfolio" and eng.mode("alice") == "cross"
    assert eng.balance("carol", "USDC") == 0.0  # all of it funds the isolated positions
    assert eng.balance("carol/ETH-USDT-SWAP", "USDC") == 15000.0
    assert eng.balance("erin", "USDC") == 8000.0
    assert eng.positions("alice")[0]["bids"] == 0.5  # the resting order
    assert eng.now == cases.NOW and eng.rate == 0.01
    # The vol by expiry and strike prices the call like set_vol on the option.
    call = "BTC-31JAN25-100000-C"
    assert eng.mark(call) == cases.direct_engine().mark(call) > 0
    rows = io.account_results(venue)
    dave = next(r for r in rows if r["account"] == "dave")
    assert dave["state"] == "liquidation" and dave["margin_ratio"] < 1
    # already past it: the liquidation price is today's price
    assert dave["liquidation_underlying"] == "ETH" and dave["liquidation_below"] == 3400.0


def test_dataframes_give_the_same_numbers_as_files(files):
    by_file = io.account_results(io.load(*files["csv"], mode="portfolio"))
    book, market = pd.DataFrame(cases.BOOK), pd.DataFrame(cases.MARKET)
    by_frame = io.account_results(io.load(book, market, mode="portfolio"))
    assert numbers(by_frame) == numbers(by_file)
    with pytest.raises(io.InputError, match=r"^book DataFrame, row 4, column 'size'"):
        io.read_book(book.assign(size=book["size"].astype(object).where(book.index != 3, "x")))


def test_the_shipped_example_is_the_demo_venue():
    ref = demo_book.build_engine(n_accounts=40)
    for ext in ("csv", "json"):
        venue = io.load(f"examples/book.{ext}", f"examples/market.{ext}")
        assert numbers(io.account_results(venue, liquidation_prices=False)) == reference(ref)


@pytest.mark.parametrize("preset, cross, scen", [
    (None, "deribit", "deribit"), ("bybit", "bybit", "deribit"),
    ("simple_grid", "deribit", "simple_grid"), ("bybit,simple_grid", "bybit", "simple_grid"),
    ("deribit", "deribit", "deribit")])
def test_presets_by_name(preset, cross, scen):
    assert io.resolve_preset(preset) == (cross, scen)
    venue = io.load(cases.BOOK, cases.MARKET, mode="portfolio", preset=preset)
    assert (venue.preset, venue.scenario_preset) == (cross, scen)
    ref = cases.direct_engine("portfolio", cross_preset=cross, scenario_preset=scen)
    assert numbers(io.account_results(venue, liquidation_prices=False)) == reference(ref)


def test_a_preset_changes_the_models():
    deribit = io.account_results(io.load(cases.BOOK, cases.MARKET), liquidation_prices=False)
    bybit = io.account_results(io.load(cases.BOOK, cases.MARKET, preset="bybit"),
                               liquidation_prices=False)
    assert deribit[0]["mm"] != bybit[0]["mm"]  # alice's short call: 3 % vs 7.5 % of the index
    assert numbers(bybit) == reference(cases.direct_engine(cross_preset="bybit"))


@pytest.mark.parametrize("preset, message", [
    ("nope", "unknown preset 'nope'"), ("span,bybit", "'span' is not a cross preset"),
    ("a,b,c", "at most two names")])
def test_bad_presets(preset, message):
    with pytest.raises(ValueError, match=message):
        io.resolve_preset(preset)


@pytest.mark.parametrize("ext", ["csv", "json", "parquet"])
def test_results_write_and_read_back_exactly(tmp_path, ext):
    venue = io.load(cases.BOOK, cases.MARKET)
    rows = io.account_results(venue)
    positions = io.position_results(venue)
    io.write_table(rows, tmp_path / f"a.{ext}", io.ACCOUNT_COLUMNS)
    io.write_table(positions, tmp_path / f"p.{ext}", io.POSITION_COLUMNS)
    read = {"csv": pd.read_csv, "parquet": pd.read_parquet,
            "json": lambda p: pd.read_json(p, precise_float=True)}[ext]
    back = read(tmp_path / f"a.{ext}")
    assert list(back.columns) == list(io.ACCOUNT_COLUMNS)
    assert back["account"].tolist() == [r["account"] for r in rows]
    for col in ("equity", "im", "mm", "available"):
        assert back[col].tolist() == [r[col] for r in rows]
    assert back["state"].tolist() == [r["state"] for r in rows]
    ratio = back["margin_ratio"].tolist()
    assert ratio[0] == rows[0]["margin_ratio"]
    carol = [r["account"] for r in rows].index("carol")  # no MM: ratio inf (null in JSON)
    assert (ratio[carol] is None or math.isnan(ratio[carol])) if ext == "json" \
        else ratio[carol] == math.inf
    pos = read(tmp_path / f"p.{ext}")
    assert pos[["account", "instrument", "size", "im", "mm", "equity"]].values.tolist() == \
        [[p["account"], p["instrument"], p["size"], p["im"], p["mm"], p["equity"]]
         for p in positions]


def test_unknown_output_type(tmp_path):
    with pytest.raises(ValueError, match=r"unknown output file type '\.xlsx'"):
        io.write_table([{"a": 1}], tmp_path / "x.xlsx")


def bad(rows, index, **changes):
    rows = [dict(r) for r in rows]
    rows[index].update(changes)
    return rows


# (which table, the records, the error's row, column, and text). Data rows are
# numbered from 1, as a user counts them.
BAD = [
    ("book", [{k: v for k, v in r.items() if k != "size"} for r in cases.BOOK], 4, "size",
     "missing required column 'size'"),
    ("book", bad(cases.BOOK, 3, size="1.5x"), 4, "size", "unparseable number '1.5x'"),
    ("book", bad(cases.BOOK, 3, entry="nan"), 4, "entry", "the entry price is NaN"),
    ("book", bad(cases.BOOK, 3, entry=-5.0), 4, "entry", "must be > 0"),
    ("book", bad(cases.BOOK, 3, instrument="BTC-32DEC24"), 4, "instrument",
     "unknown instrument symbol: invalid expiry '32DEC24'"),
    ("book", bad(cases.BOOK, 3, instrument="btc-perpetual"), 4, "instrument",
     "did you mean 'BTC-PERPETUAL'"),
    ("book", bad(cases.BOOK, 3, instrument="BTC_USDC"), 4, "instrument", "is a spot pair"),
    ("book", bad(cases.BOOK, 0, mode="crosss"), 1, "mode", "unknown margin mode 'crosss'"),
    ("book", bad(cases.BOOK, 4, instrument="BTC_USDC-PERPETUAL"), 5, "instrument",
     "duplicate position of 'alice' in 'BTC_USDC-PERPETUAL' (first at record 4)"),
    ("book", bad(cases.BOOK, 6, account="alice"), 7, "account", "duplicate account 'alice'"),
    ("book", bad(cases.BOOK, 1, account="zoe"), 2, "account", "unknown account 'zoe'"),
    ("book", bad(cases.BOOK, 1, type="deposit"), 2, "type", "unknown row type 'deposit'"),
    ("book", bad(cases.BOOK, 1, amount=-1.0), 2, "amount", "the balance must be >= 0"),
    ("book", bad(cases.BOOK, 3, instrument="BTC-28MAR25"), 4, "instrument",
     "no market price for 'BTC-28MAR25'"),
    ("book", bad(cases.BOOK, 3, instrument="SOL_USDC-PERPETUAL"), 4, "instrument",
     "'SOL_USDC-PERPETUAL' needs an index price for 'SOL'"),
    ("book", bad(cases.BOOK, 0, margin_asset="EUR"), 1, "margin_asset",
     "an index price for 'EUR'"),
    ("market", bad(cases.MARKET, 2, value="abc"), 3, "value", "unparseable number 'abc'"),
    ("market", bad(cases.MARKET, 2, value=float("nan")), 3, "value", "missing value"),
    ("market", bad(cases.MARKET, 8, value="NaN"), 9, "value", "the mark price is NaN"),
    ("market", bad(cases.MARKET, 8, value=-97010.0), 9, "value",
     "the mark price must be > 0"),
    ("market", bad(cases.MARKET, 9, name="BTC_USDC-PERPETUAL"), 10, "name",
     "duplicate mark of 'BTC_USDC-PERPETUAL' (first at record 9)"),
    ("market", bad(cases.MARKET, 1, name="USDC"), 2, "name", "duplicate index price"),
    ("market", bad(cases.MARKET, 8, time="yesterday"), 9, "time", "unparseable time"),
    ("market", bad(cases.MARKET, 8, name="FOO"), 9, "name",
     "unknown instrument symbol: unrecognised symbol format 'FOO'"),
    ("market", bad(cases.MARKET, 14, name="BTC-31JAN25"), 15, "name", "is not an option"),
    ("market", bad(cases.MARKET, 7, model="nope"), 8, "model", "unknown margin model 'nope'"),
    ("market", bad(cases.MARKET, 4, value=1.5), 5, "value", "a haircut is a fraction"),
    ("market", bad(cases.MARKET, 12, expiry="2025-02-30"), 13, "expiry",
     "unparseable time '2025-02-30'"),
]


@pytest.mark.parametrize("which, rows, row, column, message", BAD)
def test_bad_data_is_named_by_source_row_and_column(which, rows, row, column, message):
    book, market = (rows, cases.MARKET) if which == "book" else (cases.BOOK, rows)
    with pytest.raises(io.InputError) as err:
        io.load(book, market)
    e = err.value
    assert (e.source, e.row, e.column) == (f"{which} records", row, column), str(e)
    assert message in str(e)
    assert str(e).startswith(f"{which} records, record {row}, column {column!r}: ")


def test_csv_errors_give_the_row_and_the_line(tmp_path):
    path = tmp_path / "book.csv"
    cases.write_csv(bad(cases.BOOK, 3, size="?"), cases.BOOK_COLUMNS, path)
    text = path.read_text().splitlines()
    path.write_text("\n".join([text[0], "", *text[1:]]) + "\n")  # a blank line counts as a line
    with pytest.raises(io.InputError, match=rf"^{path}, row 4 \(line 6\), column 'size': "
                                            r"unparseable number '\?'$"):
        io.read_book(path)


def test_vol_and_mark_for_one_option_conflict():
    market = [*cases.MARKET, {"type": "mark", "name": "BTC-31JAN25-90000-P", "value": 0.03}]
    with pytest.raises(io.InputError, match=r"record 15, column 'name': both a mark \(record "
                                            r"16\) and a vol"):
        io.read_market(market)


def test_an_option_priced_by_vol_needs_a_forward():
    market = [r for r in cases.MARKET if r["type"] != "forward"
              and r.get("name") != "BTC-31JAN25"]
    book = [r for r in cases.BOOK if r.get("instrument") != "BTC-31JAN25"]
    with pytest.raises(io.InputError, match=r"^market records, record 13, column 'value': "
                                            r"no forward for 'BTC-31JAN25-90000-P'"):
        io.load(book, market)


def test_isolated_without_collateral_left():
    book = bad(cases.BOOK, 15, amount=20000.0)  # carol's explicit allocation takes it all
    with pytest.raises(io.InputError, match=r"record 12, column 'margin_asset': isolated "
                                            r"account 'carol': no USDC balance left"):
        io.load(book, cases.MARKET)
    book = bad(cases.BOOK, 15, amount=25000.0)
    book.append({"type": "isolated", "account": "carol", "instrument": "ETH-USDT-SWAP",
                 "amount": 1.0})
    with pytest.raises(io.InputError, match=r"record 16, column 'amount': cannot fund the "
                                            r"isolated position: insufficient_balance"):
        io.load(book, cases.MARKET)


def test_files_that_are_not_tables(tmp_path):
    (tmp_path / "b.json").write_text("{not json")
    with pytest.raises(io.InputError, match=r"b.json: invalid JSON at line 1"):
        io.read_book(tmp_path / "b.json")
    (tmp_path / "b.parquet").write_text("not parquet")
    with pytest.raises(io.InputError, match=r"b.parquet: not a readable Parquet file"):
        io.read_book(tmp_path / "b.parquet")
    (tmp_path / "b.txt").write_text("")
    with pytest.raises(io.InputError, match=r"unknown book file type '.txt'"):
        io.read_book(tmp_path / "b.txt")
    (tmp_path / "b.csv").write_text("")
    with pytest.raises(io.InputError, match=r"b.csv: empty file"):
        io.read_book(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_text("type,account\naccount,a,extra\n")
    with pytest.raises(io.InputError, match=r"c.csv, row 1 \(line 2\): 3 fields but the header "
                                            r"has 2"):
        io.read_book(tmp_path / "c.csv")


# ---- the columnar reader gives what the row-by-row reader gives --------------------------

def _plain_value(v):
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    return v


def _plain_ref(ref):
    t = ref.table
    return (t.source, tuple(t.columns), t.label, t.lines, ref.index, ref.column,
            t.where(ref.index))


def _plain_book(book):
    """A Book as plain values (references as where they point, not identity)."""
    tables = {id(r.table): r.table for a in book.accounts.values()
              for r in (a.ref, *(x[-1] for x in (*a.balances.values(), *a.positions.values(),
                                                  *a.orders, *a.isolated.values())))}
    rows = [[{k: _plain_value(v) for k, v in row.items()} for row in t.rows]
            for t in tables.values()]
    accounts = [(k, a.name, a.mode, a.margin_asset, _plain_ref(a.ref),
                 [(s, x, _plain_ref(r)) for s, (x, r) in a.balances.items()],
                 [(s, x, e, _plain_ref(r)) for s, (x, e, r) in a.positions.items()],
                 [(s, x, p, _plain_ref(r)) for s, x, p, r in a.orders],
                 [(s, x, _plain_ref(r)) for s, (x, r) in a.isolated.items()])
                for k, a in book.accounts.items()]
    symbols = [(s, spec, _plain_ref(r)) for s, (spec, r) in book.symbols.items()]
    return book.source, accounts, symbols, rows


def _both(source, *, fast=True):
    """read_book's result (or error) and the row-by-row reader's, as plain values."""
    out = []
    for read in (io.read_book, lambda s: io._read_book_rows(s, None)):
        try:
            out.append(_plain_book(read(source)))
        except Exception as exc:  # compared below
            out.append((type(exc), str(exc)))
    if fast:  # the columnar reader took it (no fall-back)
        io._read_book_columns(source, None)
    return out


@pytest.fixture
def book_inputs(tmp_path):
    """The small book and the shipped example as CSV, JSON, Parquet, a DataFrame
    and records."""
    inputs = {}
    cases.write_csv(cases.BOOK, cases.BOOK_COLUMNS, tmp_path / "small.csv")
    (tmp_path / "small.json").write_text(json.dumps(cases.BOOK))
    pd.read_csv(tmp_path / "small.csv").to_parquet(tmp_path / "small.parquet")
    pd.read_csv("examples/book.csv").to_parquet(tmp_path / "example.parquet")
    for ext in ("csv", "json", "parquet"):
        inputs[f"small.{ext}"] = tmp_path / f"small.{ext}"
    inputs["small records"] = cases.BOOK
    inputs["small DataFrame"] = pd.DataFrame(cases.BOOK)
    inputs["small DataFrame from CSV"] = pd.read_csv(tmp_path / "small.csv")
    inputs["example.csv"] = "examples/book.csv"
    inputs["example.json"] = "examples/book.json"
    inputs["example.parquet"] = tmp_path / "example.parquet"
    inputs["example DataFrame"] = pd.read_csv("examples/book.csv")
    with open("examples/book.json") as f:
        inputs["example records"] = json.load(f)
    return inputs


@pytest.mark.parametrize("which", ["small.csv", "small.json", "small.parquet", "small records",
                                   "small DataFrame", "small DataFrame from CSV",
                                   "example.csv", "example.json", "example.parquet",
                                   "example DataFrame", "example records"])
def test_the_columnar_reader_gives_the_same_book(book_inputs, which):
    fast, rows = _both(book_inputs[which])
    assert fast == rows
    assert fast[1]  # accounts were read


@pytest.mark.parametrize("text, fast", [
    ("type,account,margin_asset\naccount,a,USDC\n", True),
    ("\ufefftype,account,margin_asset\r\naccount,a,USDC\r\naccount, b ,BTC", True),
    ("type,account,margin_asset\n\naccount,a,USDC\n", False),          # a blank line
    ("type,account,margin_asset\n,,\naccount,a,USDC\n", False),        # blank cells only
    ('type,account,margin_asset\naccount,"a,1",USDC\n', False),        # quoted
    ("type,account,margin_asset\naccount,a\n", False),                 # a short row
    ("type,account,margin_asset\naccount,a,USDC,x\n", False),          # a long row
    ("type,account,account\naccount,a,USDC\n", False),                 # duplicate column
    ("type,account,margin_asset\n", True),                             # no rows
    ("account,margin_asset\n", False),                                 # no 'type' column
    ("", False),
    ("type,account,margin_asset,asset,amount\naccount,a,USDC,,\nbalance,a,,USDC,1_000\n"
     "balance,a,,BTC, 2e-3 \n", True),
    ("type,account,margin_asset,asset,amount\naccount,a,USDC,,\nbalance,a,,USDC,inf\n", False),
    ("type,account,margin_asset,asset,amount\naccount,a,USDC,,\nbalance,a,,USDC,-0.0\n", True),
])
def test_csv_files_the_columnar_reader_takes_or_leaves(tmp_path, text, fast):
    path = tmp_path / "b.csv"
    path.write_bytes(text.encode("utf-8"))
    if not fast:
        with pytest.raises(io._Fallback):
            io._read_book_columns(path, None)
    got, want = _both(path, fast=fast)
    assert got == want


@pytest.mark.parametrize("change", [
    {"amount": True}, {"amount": "12"}, {"amount": 12}, {"amount": None}, {"amount": ""},
    {"amount": float("nan")}, {"amount": "nan"}, {"amount": -0.0}, {"asset": 5},
    {"asset": 5.0}, {"asset": None}, {"account": " alice "}, {"type": "BALANCE"},
    {"type": 3}])
def test_records_cells_of_any_type(change):
    """Each cell, whatever its type, gives the same value or the same error."""
    got, want = _both(bad(cases.BOOK, 1, **change), fast=False)
    assert got == want


@pytest.mark.parametrize("which, rows, row, column, message",
                         [b for b in BAD if b[0] == "book"])
def test_bad_books_fall_back_to_the_same_error(which, rows, row, column, message):
    got, want = _both(rows, fast=False)
    assert got == want
