"""``marginkit report``: one self-contained HTML file whose numbers are the API's."""

from __future__ import annotations

import base64
import json
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import marginkit as mk
import numpy as np
import pytest
from marginkit import cli, demo, demo_book, report

SCRIPT = Path(sys.executable).with_name("marginkit")


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "marginkit.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=300,
                          check=False, cwd=cwd)


class Page(HTMLParser):
    """Tables by id (rows of cells: (text, data-value or None)), images, links."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[tuple[str, str | None]]]] = {}
        self.captions: dict[str, str] = {}
        self.images: list[dict[str, str]] = []
        self.external: list[str] = []
        self.ids: set[str] = set()
        self._table: str | None = None
        self._row: list[tuple[str, str | None]] | None = None
        self._cell: list[str] | None = None
        self._value: str | None = None
        self._caption: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "table":
            self._table = a.get("id", f"table{len(self.tables)}")
            self.tables[self._table] = []
        elif tag == "caption":
            self._caption = []
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell, self._value = [], a.get("data-value")
        elif tag == "img":
            self.images.append(a)
        if tag in ("link", "script") or (tag == "img" and not a.get("src", "").startswith(
                "data:")):
            self.external.append(tag)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(("".join(self._cell).strip(), self._value))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "caption" and self._caption is not None:
            self.captions[self._table] = "".join(self._caption)
            self._caption = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._caption is not None:
            self._caption.append(data)

    def body(self, table: str) -> list[list[tuple[str, str | None]]]:
        return self.tables[table][1:]  # without the header row

    def values(self, table: str) -> dict[str, list[float | str]]:
        """First column -> the other cells (exact floats where a data-value is)."""
        return {row[0][0]: [float(v) if v is not None else t for t, v in row[1:]]
                for row in self.body(table)}


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def engine():
    return demo_book.build_engine(risk=True)


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    """``marginkit report`` on the demo venue, as a user runs it."""
    pytest.importorskip("matplotlib")
    folder = tmp_path_factory.mktemp("report")
    (folder / "tmp").mkdir()
    out = run("report", "--out", "tmp/report.html", cwd=folder)
    assert out.returncode == 0, out.stderr
    return folder / "tmp" / "report.html", out


def test_report_writes_one_self_contained_file(demo_report):
    path, out = demo_report
    assert out.stdout.startswith("wrote tmp/report.html") and "5 plots" in out.stdout
    # By default: the account portfolio margin helps most, and the riskiest.
    assert "accounts acct00431, acct00856, stress on BTC" in out.stdout
    assert out.stderr == ""
    page = parse(path)
    assert page.external == []  # no scripts, stylesheets or linked images
    text = path.read_text(encoding="utf-8")
    assert "<style>" in text and "http://" not in text and "https://" not in text
    assert len(page.images) == 5
    sizes = []
    for img in page.images:
        head, data = img["src"].split(",", 1)
        assert head == "data:image/png;base64"
        png = base64.b64decode(data, validate=True)
        assert len(png) > 10_000
        sizes.append(png_size(png))
    # Profile and heatmap (one position, 35 scenarios) of each account, then the cascade.
    assert sizes == [(900, 550), (800, 950), (900, 550), (800, 950), (900, 700)]
    assert {"fig-profile-acct00431", "fig-heatmap-acct00431", "fig-profile-acct00856",
            "fig-heatmap-acct00856", "fig-cascade"} <= page.ids


def test_report_book_tables_match_the_api(demo_report, engine):
    page = parse(demo_report[0])
    ev = engine.evaluate_all()
    totals = page.values("totals")
    for asset in ("BTC", "ETH", "USDC"):
        mine = [engine.margin_asset(i) == asset for i in range(len(engine.accounts))]
        count, equity, im, mm = totals[asset]
        assert count == sum(mine)
        assert equity == pytest.approx(float(ev.equity[mine].sum()), rel=1e-12)
        assert im == pytest.approx(float(ev.im[mine].sum()), rel=1e-12)
        assert mm == pytest.approx(float(ev.mm[mine].sum()), rel=1e-12)
    health = page.body("health")[0]
    assert [float(v) for _, v in health] == [
        float((ev.state == k).sum()) for k in range(len(mk.engine.HEALTH_STATES))]
    riskiest = page.body("riskiest")
    assert len(riskiest) == 10
    first = riskiest[0][0][0]
    ratio = np.where(ev.mm > 0, ev.equity / np.where(ev.mm > 0, ev.mm, 1.0), np.inf)
    assert first == engine.accounts[int(np.argmin(ratio))]
    s = engine.summary(first)
    assert (float(riskiest[0][2][1]), float(riskiest[0][3][1])) == (s.equity, s.mm)
    assert riskiest[0][5][0] == s.state
    pc = demo.portfolio_vs_cross(mk.Engine.from_bytes(engine.to_bytes()))
    saved = page.values("portfolio-savings")
    top = pc["largest_savings"][0]
    assert next(iter(saved)) == top["account"] == "acct00431"
    assert saved[top["account"]][1:3] == [top["cross_im"], top["portfolio_im"]]


@pytest.mark.parametrize("name", ["acct00431", "acct00856"])
def test_report_account_numbers_are_the_apis(demo_report, engine, name):
    page = parse(demo_report[0])
    summary = page.values(f"summary-{name}")
    s = engine.summary(name)
    assert summary["equity"] == [s.equity]
    assert summary["initial margin"] == [s.im]
    assert summary["maintenance margin"] == [s.mm]
    assert summary["available"] == [s.available]
    assert summary["state"] == [s.state]
    below, above = engine.liquidation_prices(name)
    assert summary["liquidation below"][0] == pytest.approx(below, rel=0, nan_ok=True)
    assert summary["liquidation above"][0] == pytest.approx(above, rel=0, nan_ok=True)
    rows = page.body(f"attribution-{name}")
    attribution = engine.attribution(name)
    assert len(rows) == len(attribution) >= 1
    for row, p in zip(rows, attribution, strict=True):
        assert row[0][0] == engine.instruments[p.instrument]
        assert [float(v) for _, v in row[1:]] == [p.size, p.entry, p.mark, p.im, p.mm, p.equity]


def test_report_liquidation_and_stress_match_the_api(demo_report, engine):
    page = parse(demo_report[0])
    victim = engine.plan_all()
    ev = engine.evaluate_all()
    ratio = np.where(ev.mm > 0, ev.equity / np.where(ev.mm > 0, ev.mm, 1.0), np.inf)
    first = next(engine.accounts[int(i)] for i in np.argsort(ratio, kind="stable")
                 if ev.state[int(i)] >= 3)
    assert first in {p["account"] for p in victim}
    plan = engine.plan_liquidation(first)
    assert page.captions["liquidation-plan"].startswith(f"Liquidation plan for {first}:")
    rows = page.body("liquidation-plan")
    assert [(r[0][0], r[1][0], float(r[2][1])) for r in rows] == [
        (st["kind"], st["instrument"], st["qty"]) for st in plan["steps"]]
    # The default stress: BTC (where most maintenance margin is), -20 %.
    rounds = mk.Engine.from_bytes(engine.to_bytes()).cascade("BTC", -0.2, impact=1e-6,
                                                             max_rounds=20)
    assert page.captions["stress"].startswith("Stress: BTC -20% from 97,000.00")
    table = page.body("stress")
    assert len(table) == len(rounds) >= 2
    for row, r in zip(table, rounds, strict=True):
        assert [float(v) for _, v in row] == [
            r["round"], r["liquidated"], r["volume"], r["price"], r["bad_debt"], r["fund"],
            r["adl_volume"], r["socialized"]]


def test_report_on_a_saved_state_with_options(engine, tmp_path):
    pytest.importorskip("matplotlib")
    state = tmp_path / "venue.mk"
    engine.save(state)
    out = run("report", "--state", str(state), "--out", str(tmp_path / "r.html"), "--account",
              "acct00001", "acct00100", "--underlying", "ETH", "--shock", "-0.1", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["accounts"] == ["acct00001", "acct00100"]
    assert summary["stress_underlying"] == "ETH" and summary["plots_skipped"] is None
    assert len(summary["figures"]) == 5
    page = parse(tmp_path / "r.html")
    assert len(page.images) == 5
    assert summary["bytes"] == (tmp_path / "r.html").stat().st_size
    # acct00100 is in breach: its own plan is in its section.
    plan = engine.plan_liquidation("acct00100")
    assert [float(r[2][1]) for r in page.body("plan-acct00100")] == [
        st["qty"] for st in plan["steps"]]
    rounds = mk.Engine.load(state).cascade("ETH", -0.1, impact=1e-6, max_rounds=20)
    assert [float(r[3][1]) for r in page.body("stress")] == [r["price"] for r in rounds]
    assert mk.Engine.load(state).to_bytes() == engine.to_bytes()  # the state is untouched


@pytest.mark.parametrize("args, message", [
    (("--account", "nobody"), "unknown account 'nobody'"),
    (("--underlying", "XYZ"), "unknown underlying 'XYZ'"),
    (("--shock", "-1.5"), "shock must be finite and > -1"),
    (("--out", "no/such/folder/r.html"), "no/such/folder"),
])
def test_report_bad_input_exits_2_naming_it(tmp_path, args, message):
    argv = ["report", "--no-plots", *args]
    if "--out" not in args:
        argv += ["--out", str(tmp_path / "r.html")]
    out = run(*argv, cwd=tmp_path)
    assert out.returncode == 2
    assert message in out.stderr
    assert not (tmp_path / "r.html").exists()


def test_report_help():
    out = run("report", "--help")
    assert out.returncode == 0 and "usage: marginkit report" in out.stdout
    assert "--account" in out.stdout and "--shock" in out.stdout


def test_report_without_matplotlib_writes_the_tables(engine, tmp_path, monkeypatch, capsys):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    path = tmp_path / "r.html"
    assert cli.main(["report", "--out", str(path), "--account", "acct00001"]) == 0
    printed = capsys.readouterr().out
    assert "0 plots" in printed and 'plots skipped: marginkit\'s plots need matplotlib' in printed
    page = parse(path)
    assert page.images == [] and "plots-skipped" in page.ids
    assert 'pip install "marginkit[plot]"' in path.read_text(encoding="utf-8")
    assert page.values("summary-acct00001")["equity"] == [engine.summary("acct00001").equity]
    assert {"totals", "riskiest", "portfolio-totals", "stress"} <= set(page.tables)


def test_build_report_leaves_the_engine_unchanged(engine):
    before = engine.to_bytes()
    text, summary = report.build_report(engine, plots=False, accounts=["acct00004"],
                                        underlying="SOL", shock=0.15, top=3)
    assert engine.to_bytes() == before
    assert summary == {"accounts": ["acct00004"], "figures": [], "plots_skipped": "not requested",
                       "stress_underlying": "SOL"}
    assert "Plots skipped: not requested." in text
    page = Page()
    page.feed(text)
    assert len(page.body("riskiest")) == 3
    assert page.captions["stress"].startswith("Stress: SOL +15% from 190.00")
