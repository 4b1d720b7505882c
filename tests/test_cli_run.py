"""``marginkit run`` driven as a user would: the console script in a subprocess,
real files in a temp dir, the JSON output checked against the API."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import io_cases as cases
import pandas as pd
import pytest
from marginkit import demo_book

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SCRIPT = Path(sys.executable).with_name("marginkit")


def marginkit(*args, cwd=None) -> subprocess.CompletedProcess:
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "marginkit.cli"]
    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True,
                          timeout=300, check=False, cwd=cwd)


def run_json(*args, cwd=None) -> dict:
    out = marginkit("run", *args, "--json", cwd=cwd)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture
def small(tmp_path):
    """The small venue of io_cases as CSV files."""
    cases.write_csv(cases.BOOK, cases.BOOK_COLUMNS, tmp_path / "book.csv")
    cases.write_csv(cases.MARKET, cases.MARKET_COLUMNS, tmp_path / "market.csv")
    return tmp_path / "book.csv", tmp_path / "market.csv"


def test_the_example_matches_the_demo_venue():
    data = run_json("--book", "examples/book.csv", "--market", "examples/market.csv",
                    "--top", "5", cwd=ROOT)
    eng = demo_book.build_engine(n_accounts=40)
    assert data["num_accounts"] == len(eng.accounts) == 40
    assert data["as_of"] == "2025-01-02T08:00:00+00:00"
    for row in data["accounts"]:
        s = eng.summary(row["account"])
        assert (row["equity"], row["im"], row["mm"], row["available"], row["state"]) == \
               (s.equity, s.im, s.mm, s.available, s.state)
    usdc = [row for row in data["accounts"] if row["margin_asset"] == "USDC"]
    assert data["totals"]["USDC"]["accounts"] == len(usdc)
    assert data["totals"]["USDC"]["im"] == pytest.approx(sum(r["im"] for r in usdc), rel=1e-12)
    assert sum(data["states"].values()) == 40
    ratios = {r["account"]: r["margin_ratio"] for r in data["accounts"]}
    worst = sorted((r for r in ratios.items() if r[1] is not None), key=lambda x: (x[1], x[0]))
    assert data["riskiest"] == [a for a, _ in worst[:5]]
    first = data["riskiest"][0]
    row = next(r for r in data["accounts"] if r["account"] == first)
    below, above = eng.liquidation_prices(first, row["liquidation_underlying"])
    assert row["liquidation_below"] == (below if math.isfinite(below) else None)
    assert row["liquidation_above"] == (above if math.isfinite(above) else None)


def test_csv_json_and_parquet_inputs_give_the_same_output(tmp_path):
    pd.read_csv(EXAMPLES / "book.csv").to_parquet(tmp_path / "book.parquet")
    pd.read_csv(EXAMPLES / "market.csv").to_parquet(tmp_path / "market.parquet")
    outputs = [run_json("--book", book, "--market", market)
               for book, market in ((EXAMPLES / "book.csv", EXAMPLES / "market.csv"),
                                    (EXAMPLES / "book.json", EXAMPLES / "market.json"),
                                    (tmp_path / "book.parquet", tmp_path / "market.parquet"))]
    for data in outputs:
        del data["book"], data["market"]
    assert outputs[0] == outputs[1] == outputs[2]
    assert outputs[0]["accounts"][0]["equity"] > 0


@pytest.mark.parametrize("mode", [None, "cross", "portfolio", "isolated"])
def test_every_mode_matches_the_engine_built_by_hand(small, mode):
    book, market = small
    data = run_json("--book", book, "--market", market,
                    *(("--mode", mode) if mode else ()))
    assert data["mode"] == mode
    ref = cases.direct_engine(mode)
    assert [r["account"] for r in data["accounts"]] == ref.accounts
    for row in data["accounts"]:
        s = ref.summary(row["account"])
        assert (row["equity"], row["im"], row["mm"], row["state"]) == \
               (s.equity, s.im, s.mm, s.state), row["account"]
        assert row["parent"] == ref.parent(row["account"])
    expected_flagged = [a for a in ref.accounts
                        if ref.summary(a).state not in ("healthy",)]
    assert data["flagged"] == expected_flagged and "dave" in "".join(expected_flagged)


def test_preset_by_name(small):
    book, market = small
    data = run_json("--book", book, "--market", market, "--mode", "portfolio",
                    "--preset", "bybit,simple_grid")
    assert (data["preset"], data["scenario_preset"]) == ("bybit", "simple_grid")
    ref = cases.direct_engine("portfolio", cross_preset="bybit", scenario_preset="simple_grid")
    assert [(r["account"], r["im"], r["mm"]) for r in data["accounts"]] == \
           [(a, ref.summary(a).im, ref.summary(a).mm) for a in ref.accounts]


def test_no_liquidation_prices_skips_only_them(small):
    book, market = small
    full = run_json("--book", book, "--market", market)
    lean = run_json("--book", book, "--market", market, "--no-liquidation-prices")
    assert any(r["liquidation_below"] is not None or r["liquidation_above"] is not None
               for r in full["accounts"])
    for a, b in zip(full["accounts"], lean["accounts"], strict=True):
        assert (b["liquidation_below"], b["liquidation_above"]) == (None, None)
        assert {k: v for k, v in a.items() if not k.startswith("liquidation_")} == \
               {k: v for k, v in b.items() if not k.startswith("liquidation_")}


@pytest.mark.parametrize("ext", ["csv", "json", "parquet"])
def test_results_files(small, tmp_path, ext):
    book, market = small
    out, pos = tmp_path / f"accounts.{ext}", tmp_path / f"positions.{ext}"
    data = run_json("--book", book, "--market", market, "--out", out, "--positions-out", pos)
    read = {"csv": pd.read_csv, "parquet": pd.read_parquet,
            "json": lambda p: pd.read_json(p, precise_float=True)}[ext]
    accounts = read(out)
    assert accounts["account"].tolist() == [r["account"] for r in data["accounts"]]
    assert accounts["im"].tolist() == [r["im"] for r in data["accounts"]]
    assert accounts["state"].tolist() == [r["state"] for r in data["accounts"]]
    positions = read(pos)
    ref = cases.direct_engine()
    want = [(a, ref.instruments[p.instrument], p.size, p.im, p.mm)
            for a in ref.accounts for p in ref.attribution(a)]
    assert list(positions[["account", "instrument", "size", "im", "mm"]]
                .itertuples(index=False, name=None)) == want


def test_human_output_shows_the_tables(small, tmp_path):
    book, market = small
    out = marginkit("run", "--book", book, "--market", market, "--top", "3",
                    "--out", tmp_path / "a.csv")
    assert out.returncode == 0, out.stderr
    for text in ("Book totals by margin asset", "Riskiest accounts", "top 3",
                 "Accounts in warning, reduce-only, liquidation or bankrupt", "dave",
                 "liquidation", f"wrote {tmp_path / 'a.csv'} (8 rows)", "USDT"):
        assert text in out.stdout
    assert out.stderr == ""


def test_help_documents_the_exit_codes():
    out = marginkit("run", "--help")
    assert out.returncode == 0
    assert "exit codes" in out.stdout and "--positions-out" in out.stdout


def test_the_example_notes_how_to_write_parquet(tmp_path):
    out = subprocess.run([sys.executable, EXAMPLES / "make_example.py", "--parquet", "--out",
                          tmp_path], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    for name in ("book.csv", "market.csv", "book.json", "market.json"):
        assert (tmp_path / name).read_text() == (EXAMPLES / name).read_text()
    data = run_json("--book", tmp_path / "book.parquet", "--market", tmp_path / "market.parquet")
    assert data["num_accounts"] == 40


def edit_csv(path, row, column, value):
    """Sets a cell of data row ``row`` (1-based) of a CSV file."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[row - 1, column] = value
    frame.to_csv(path, index=False)


@pytest.mark.parametrize("which, row, column, value, message", [
    ("book", 4, "size", "lots", "unparseable number 'lots'"),
    ("book", 4, "entry", "-1", "the entry price must be > 0"),
    ("book", 4, "instrument", "BTC-32DEC24", "unknown instrument symbol: invalid expiry"),
    ("book", 1, "mode", "hedged", "unknown margin mode 'hedged'"),
    ("book", 5, "instrument", "BTC_USDC-PERPETUAL", "duplicate position"),
    ("book", 4, "instrument", "ETH-31JAN25", "no market price for 'ETH-31JAN25'"),
    ("market", 9, "value", "nan", "the mark price is NaN"),
    ("market", 9, "value", "-3", "the mark price must be > 0"),
    ("market", 10, "name", "BTC_USDC-PERPETUAL", "duplicate mark"),
])
def test_bad_input_exits_2_naming_file_row_and_column(small, which, row, column, value,
                                                      message):
    book, market = small
    path = book if which == "book" else market
    edit_csv(path, row, column, value)
    out = marginkit("run", "--book", book, "--market", market, "--json")
    assert out.returncode == 2, out.stdout
    assert out.stdout == ""
    assert out.stderr.startswith(f"marginkit: error: {path}, row {row} (line {row + 1}), "
                                 f"column {column!r}: ")
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_required_column_exits_2(small):
    book, market = small
    frame = pd.read_csv(book, dtype=str, keep_default_na=False).drop(columns=["entry"])
    frame.to_csv(book, index=False)
    out = marginkit("run", "--book", book, "--market", market)
    assert out.returncode == 2
    assert f"{book}, row 4 (line 5), column 'entry': missing required column 'entry'" \
        in out.stderr


@pytest.mark.parametrize("args, message", [
    (("--preset", "nope"), "unknown preset 'nope'"),
    (("--out", "results.xlsx"), "unknown output file type"),
    (("--mode", "hedged"), "invalid choice: 'hedged'"),
])
def test_bad_options_exit_2(small, args, message):
    book, market = small
    out = marginkit("run", "--book", book, "--market", market, *args)
    assert out.returncode == 2 and message in out.stderr


def test_missing_files_exit_2(small, tmp_path):
    book, market = small
    out = marginkit("run", "--book", tmp_path / "nope.csv", "--market", market)
    assert out.returncode == 2 and "nope.csv" in out.stderr and "Traceback" not in out.stderr
    out = marginkit("run", "--book", book)
    assert out.returncode == 2 and "--market" in out.stderr
