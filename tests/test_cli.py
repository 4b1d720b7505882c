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



def test_plan_outcome_says_what_a_plan_leaves():
    """A plan that closes everything and leaves negative equity is not shown as
    'restored': the words name the bad debt the insurance fund takes."""
    from marginkit import demo_book
    from marginkit.demo import plan_outcome

    engine = demo_book.build_engine()
    ev = engine.evaluate_all()
    bankrupt = [k for k in range(len(ev.state)) if mk.HEALTH_STATES[int(ev.state[k])] == "bankrupt"]
    assert bankrupt, "the demo book has bankrupt accounts"
    plan = engine.plan_liquidation(bankrupt[0])
    assert plan["equity_after"] < 0.0 and plan["requirement_after"] == 0.0
    text = plan_outcome(plan)
    assert text.startswith(f"flat: {-plan['equity_after']:,.4f} of bad debt")
    restored = dict(plan, equity_after=12.5, requirement_after=10.0)
    assert plan_outcome(restored) == ("restored (equity after 12.5000, "
                                      "requirement after 10.0000)")
    short = dict(restored, restored=False)
    assert plan_outcome(short).startswith("not restored: still below the target")


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


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    """The demo venue saved by ``marginkit demo --save``."""
    path = tmp_path_factory.mktemp("cli") / "venue.mk"
    out = run("demo", "--json", "--save", str(path))
    assert out.returncode == 0, out.stderr
    return path


def test_check_matches_the_api_and_sets_the_exit_code(state):
    eng = mk.Engine.load(state)
    px = eng.mark("BTC_USDC-PERPETUAL")
    out = run("check", "acct01206", "BTC_USDC-PERPETUAL", "1.0", repr(px), "--state", str(state),
              "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    c = eng.check_order("acct01206", "BTC_USDC-PERPETUAL", 1.0, px)
    assert (data["accepted"], data["reason"], data["im_after"]) == (True, "ok", c.im_after)
    assert data["max_buy"] == eng.max_order_size("acct01206", "BTC_USDC-PERPETUAL", "buy", px)
    too_big = run("check", "acct01206", "BTC_USDC-PERPETUAL", repr(data["max_buy"] * 2),
                  repr(px), "--state", str(state), "--json")
    assert too_big.returncode == 1
    assert json.loads(too_big.stdout)["reason"] == "insufficient_margin"


def test_liquidate_plans_and_executes_into_the_state_file(state, tmp_path):
    copy = tmp_path / "venue.mk"
    copy.write_bytes(state.read_bytes())
    eng = mk.Engine.load(copy)
    victim = next(p["account"] for p in eng.plan_all())
    out = run("liquidate", victim, "--state", str(copy), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == json.loads(json.dumps(eng.plan_liquidation(victim)))
    assert mk.Engine.load(copy).to_bytes() == eng.to_bytes()  # a plan changes nothing
    out = run("liquidate", victim, "--state", str(copy), "--execute", "--json")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    after = mk.Engine.load(copy)
    expected = eng.liquidate(victim)
    assert res["fees_to_fund"] == expected["fees_to_fund"]
    assert after.to_bytes() == eng.to_bytes()  # the executed state was written back


def test_stress_matches_a_cascade_on_the_api(state):
    out = run("stress", "--underlying", "BTC", "--shock", "-0.2", "--impact", "2e-6",
              "--state", str(state), "--json")
    assert out.returncode == 0, out.stderr
    rounds = json.loads(out.stdout)["rounds"]
    want = mk.Engine.load(state).cascade("BTC", -0.2, impact=2e-6)
    assert rounds == json.loads(json.dumps(want))
    assert rounds[0]["liquidated"] > 0 and rounds[-1]["liquidated"] == 0


@pytest.mark.parametrize("args, message", [
    (("check", "nobody", "BTC_USDC-PERPETUAL", "1", "1"), "unknown account 'nobody'"),
    (("check", "acct00001", "NOPE", "1", "1"), "unknown instrument 'NOPE'"),
    (("liquidate", "nobody"), "unknown account 'nobody'"),
    (("stress", "--underlying", "XYZ", "--shock", "-0.1"), "unknown underlying 'XYZ'"),
])
def test_bad_input_exits_2_naming_it(state, args, message):
    out = run(*args, "--state", str(state))
    assert out.returncode == 2
    assert message in out.stderr


def test_missing_state_file_exits_2(tmp_path):
    out = run("check", "a", "b", "1", "1", "--state", str(tmp_path / "missing.mk"))
    assert out.returncode == 2 and "missing.mk" in out.stderr


@pytest.mark.parametrize("command", ["demo", "info", "check", "liquidate", "stress", "run",
                                     "report"])
def test_help_everywhere(command):
    out = run(command, "--help")
    assert out.returncode == 0 and "usage" in out.stdout
