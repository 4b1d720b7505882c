"""The command line, driven as a user would: a subprocess, real output."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import marginkit as mk
import pytest


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "marginkit.cli", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_demo_runs_and_shows_the_book():
    out = run("demo")
    assert out.returncode == 0, out.stderr
    for text in ("BTC options", "Demo venue, cross margin", "Riskiest accounts",
                 "Pre-trade check"):
        assert text in out.stdout


def test_demo_json_matches_the_api():
    out = run("demo", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    opt = data["options"][0]
    ref = mk.black76(opt["type"], opt["forward"], opt["strike"], opt["expiry_days"] / 365,
                     opt["vol"])
    assert opt["price_usd"] == pytest.approx(float(ref.price[0]), rel=1e-12)
    assert opt["implied_vol"] == pytest.approx(opt["vol"], abs=1e-10)
    book = data["book"]
    assert sum(book["states"].values()) == book["accounts"]
    from marginkit import demo_book

    engine = demo_book.build_engine()
    first = book["riskiest"][0]
    summary = engine.summary(first["account"])
    assert first["equity"] == summary.equity and first["mm"] == summary.mm
    p = book["pretrade"]
    check = engine.check_order(p["account"], p["instrument"], p["qty"], p["price"])
    assert check.accepted == p["accepted"] and check.im_after == p["im_after"]
    assert math.isfinite(p["max_buy"]) and p["max_buy"] > 0


def test_info_json():
    out = run("info", "--json")
    assert out.returncode == 0
    info = json.loads(out.stdout)
    assert info["isa"] in info["isa_available"]


def test_no_command_prints_help_and_fails():
    out = run()
    assert out.returncode == 2
    assert "usage" in out.stdout


def test_unknown_command_fails():
    out = run("nonsense")
    assert out.returncode == 2
    assert "invalid choice" in out.stderr
