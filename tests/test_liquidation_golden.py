"""Liquidation test vectors of two open-source perpetual venues
(``../shared/golden/drift.json`` and ``dydx_v4.json``) reproduced through the
engine where the engine's method is the venue's.

The venues compute in fixed point; their inputs are converted with the precisions
the cases give (Drift: ``*_PRECISION``; dYdX: a base quantum is ``10^atomic_resolution``
of a coin, a quote quantum ``1 / usdc_quote_quantums_per_usd`` USD, a fill's quote
quantums are ``subticks x base quantums x 10^clob_pair_quantum_conversion_exponent``),
and the engine's floating-point figures are compared "within the venue's rounding":
one unit of the venue's last fixed-point digit (one base quantum of Drift's
``BASE_PRECISION``, one dYdX quote quantum), besides the floating-point slack.

The engine's money quantum is 0 in these setups (raw figures are compared), the
margin asset is USDC at 1 USD, and the perpetuals are linear, USDC-settled, with a
flat ``linear_rate`` model (MM rate = the venue's maintenance ratio).

Mapping of the methods:

* Drift ``drift_perp_liquidation_size``: the base amount that covers a margin
  shortage, ``shortage / (oracle (margin_ratio - liquidation_fee - if_fee))``: an
  account with equity ``MM - shortage`` whose plan reduces the position by exactly
  the quantity that restores ``equity >= MM``, the penalty (``fee_rate``) taking
  the venue's liquidation fee (Drift pays it to the liquidator, the engine to the
  insurance fund; for the size the difference is immaterial).
* dYdX ``dydx_v4_bankruptcy_price``: the quote quantums at which a delta leaves the
  subaccount with zero total net collateral (TNC). For a *full close of a single
  position* this is :meth:`Engine.bankruptcy_price` times the delta. For a partial
  delta dYdX apportions the TNC to the delta by its share of the maintenance
  requirement (``TNC x |DMMR| / TMMR``); with one position that share is the
  delta's share of the position (the MMR is linear in size), so the per-unit price
  is again the whole-position bankruptcy price. With several positions the engine
  has no such apportioning: there the engine's own definition is asserted and the
  discrepancy recorded (see :func:`test_dydx_bankruptcy_price_several_positions`).
* dYdX ``dydx_v4_liquidation_insurance_fund_delta``: fill value minus bankruptcy
  value, ``> 0``: ``min(fee cap, delta)`` to the fund, ``<= 0``: the fund pays.
  Expressed through :meth:`Engine.liquidate` of the whole position at the case's
  fill price with ``fee_rate = max_liquidation_fee``: the engine's penalty is
  capped by the equity left after the fill, which for a full close is exactly
  dYdX's delta, and bad debt is paid by the fund (``fund_paid``).

Cases whose mechanism the engine lacks are skipped with the reason
(:data:`UNSUPPORTED`); every case of both files is either reproduced or skipped.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import marginkit as mk
import pytest

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "golden"
if not (GOLDEN / "drift.json").is_file() or not (GOLDEN / "dydx_v4.json").is_file():
    pytest.skip(f"golden liquidation vectors not found in {GOLDEN}", allow_module_level=True)


def _load(name: str) -> dict[str, dict]:
    with open(GOLDEN / name, encoding="utf-8") as f:
        return {c["id"]: c for c in json.load(f)}


DRIFT = _load("drift.json")
DYDX = _load("dydx_v4.json")
NOW = 1_735_776_000.0
REL = 1e-12  # floating-point slack on top of the venue's rounding

# Mechanisms the engine does not have: methodology -> reason.
UNSUPPORTED = {
    "drift_spot_liquidation_size":
        "Drift spot liability transfer (a borrow repaid with a deposit at liquidation "
        "multipliers and weights): the engine liquidates positions by trading them, it has "
        "no spot borrow / deposit transfer between a liquidator and the account",
    "drift_insurance_fund_fee":
        "Drift's insurance-fund fee implied by the margin left "
        "(min(max_if_fee, 0.95 (margin_ratio - liquidator_fee - shortage / notional))): the "
        "engine's penalty is a fixed fee_rate on traded notional, capped by the equity left",
    "drift_liquidation_fee_ramp":
        "Drift's liquidation fee ramp over slots since the user was last active: the engine "
        "has one fixed fee_rate and no notion of slots or user activity",
    "drift_spot_imf_size_weight":
        "Drift's IMF size weights (asset / liability weights shrinking with sqrt(size)): the "
        "engine's collateral haircuts are marginal tiers, not an IMF size discount",
    "dydx_v4_fillable_price":
        "dYdX's fillable price (bankruptcy-adjusted spread to the maintenance requirement): "
        "the engine fills liquidations at a liquidity model's price, mark -/+ (spread + "
        "impact x size), not at a price derived from the account's TNC",
}
# Cases of a supported methodology whose mechanism the engine lacks: id -> reason.
UNSUPPORTED_CASES = {
    "dydx_maintenance_margin_ppm_150000_800000":
        "dYdX's maintenance fraction (MMR ppm = floor(IMF ppm x MF ppm / 1e6)): the engine "
        "takes MM and IM rates as separate parameters, there is no fraction to derive one from",
    "dydx_maintenance_margin_ppm_1000000_1000000":
        "dYdX's maintenance fraction (MMR ppm = floor(IMF ppm x MF ppm / 1e6)): the engine "
        "takes MM and IM rates as separate parameters, there is no fraction to derive one from",
    "dydx_maintenance_margin_ppm_1000000_0":
        "dYdX's maintenance fraction (MMR ppm = floor(IMF ppm x MF ppm / 1e6)): the engine "
        "takes MM and IM rates as separate parameters, there is no fraction to derive one from",
    "dydx_initial_margin_quote_quantums_oimf_half":
        "dYdX's open-interest IMF (the initial rate raised linearly between open-interest "
        "caps): the engine's rates do not depend on the venue's open interest",
    "dydx_initial_margin_quote_quantums_oimf_realistic":
        "dYdX's open-interest IMF (the initial rate raised linearly between open-interest "
        "caps): the engine's rates do not depend on the venue's open interest",
    "dydx_adjusted_imf_ppm_within_rounded":
        "dYdX's open-interest IMF (the initial rate raised linearly between open-interest "
        "caps): the engine's rates do not depend on the venue's open interest",
    "dydx_adjusted_imf_ppm_above_upper":
        "dYdX's open-interest IMF (the initial rate raised linearly between open-interest "
        "caps): the engine's rates do not depend on the venue's open interest",
}

DRIFT_SIZE = sorted(k for k, c in DRIFT.items()
                    if c["methodology"] == "drift_perp_liquidation_size")
DYDX_BP = sorted(k for k, c in DYDX.items() if c["methodology"] == "dydx_v4_bankruptcy_price")
DYDX_IF = sorted(k for k, c in DYDX.items()
                 if c["methodology"] == "dydx_v4_liquidation_insurance_fund_delta")
DYDX_IM = ["dydx_initial_margin_quote_quantums_im10_round_up_to_1"]
REPRODUCED = set(DRIFT_SIZE) | set(DYDX_BP) | set(DYDX_IF) | set(DYDX_IM)
SKIPPED = sorted(k for k, c in {**DRIFT, **DYDX}.items()
                 if c["methodology"] in UNSUPPORTED or k in UNSUPPORTED_CASES)


def test_every_case_is_reproduced_or_skipped_with_a_reason():
    ids = set(DRIFT) | set(DYDX)
    assert REPRODUCED.isdisjoint(SKIPPED)
    assert REPRODUCED | set(SKIPPED) == ids
    assert {"drift_base_to_cover_margin_shortage_zero_fee",
            "drift_base_to_cover_margin_shortage_one_pct_fee"} <= set(DRIFT_SIZE)
    assert len(DYDX_BP) == 5 and len(DYDX_IF) == 4


@pytest.mark.parametrize("case_id", SKIPPED)
def test_unsupported_mechanism(case_id):
    case = {**DRIFT, **DYDX}[case_id]
    pytest.skip(UNSUPPORTED_CASES.get(case_id) or UNSUPPORTED[case["methodology"]])


# ---- Drift: base amount to cover a margin shortage -------------------------------------------

def _drift_account(price: float, mm_rate: float, size: float, shortage: float,
                   fee_rate: float) -> mk.Engine:
    """A linear perpetual at ``price`` with a flat MM rate, one account holding
    ``size`` (signed) bought at the price, with equity ``MM - shortage``."""
    eng = mk.Engine()
    eng.now = NOW
    eng.add_asset("USDC", price=1.0, time=NOW)
    eng.add_asset("SOL", price=price, time=NOW)
    eng.add_model("flat", "linear_rate", im_base=2 * mm_rate, im_slope=0.0, mm_base=mm_rate,
                  mm_slope=0.0)
    eng.add_instrument("SOL-PERP", kind="perpetual", underlying="SOL", settle="USDC",
                       model="flat", mark=price, time=NOW)
    eng.add_account("user", "USDC")
    eng.deposit("user", "USDC", abs(size) * price * mm_rate - shortage)
    eng.fill("user", "SOL-PERP", size, price, fee=0.0)
    eng.set_liquidation_params(fee_rate=fee_rate)
    return eng


@pytest.mark.parametrize("side", [1.0, -1.0])
@pytest.mark.parametrize("case_id", DRIFT_SIZE)
def test_drift_base_to_cover_margin_shortage(case_id, side):
    """$10 shortage, 10 % margin ratio, $100 oracle: 1 base without fee, 10/9 base
    with a 1 % liquidation fee; the account holds 10 base (long or short)."""
    case = DRIFT[case_id]
    inp = case["inputs"]
    prec = inp["precisions"]
    assert inp["quote_oracle_price"] == prec["PRICE_PRECISION"]  # quote at $1
    shortage = Fraction(inp["margin_shortage_quote"], prec["QUOTE_PRECISION"])
    margin_ratio = Fraction(inp["margin_ratio"], prec["MARGIN_PRECISION"])
    fee = Fraction(inp["liquidation_fee"] + inp["if_liquidation_fee"],
                   prec["LIQUIDATION_FEE_PRECISION"])
    oracle = Fraction(inp["oracle_price"], prec["PRICE_PRECISION"])
    expected = Fraction(case["expected"]["base_asset_amount"], prec["BASE_PRECISION"])
    # the published figure is the fixed-point value of the method's exact result
    exact = shortage / (oracle * (margin_ratio - fee))
    assert abs(exact - expected) < Fraction(1, prec["BASE_PRECISION"])

    size = 10.0 * side
    eng = _drift_account(float(oracle), float(margin_ratio), size, float(shortage), float(fee))
    s = eng.summary("user")
    assert s.state == "liquidation"
    assert s.mm - s.equity == pytest.approx(float(shortage), rel=REL)
    plan = eng.plan_liquidation("user")
    (step,) = plan["steps"]
    assert step["kind"] == "reduce" and step["instrument"] == "SOL-PERP"
    assert math.copysign(1.0, step["qty"]) == -side
    assert step["price"] == float(oracle)  # no liquidity cost: fills at the oracle
    qty = abs(step["qty"])
    # within one base quantum of the venue, and the engine's own float result exact
    assert abs(Fraction(qty) - expected) <= Fraction(1, prec["BASE_PRECISION"])
    assert qty == pytest.approx(float(exact), rel=REL)
    assert step["penalty"] == pytest.approx(float(fee * oracle) * qty, rel=REL, abs=1e-15)
    assert plan["restored"]
    # executed: the account ends exactly at its maintenance requirement
    fund0 = eng.insurance_fund("USDC")
    res = eng.liquidate("user")
    after = eng.summary("user")
    assert after.state != "liquidation"
    assert after.equity == pytest.approx(after.mm, rel=1e-12)
    assert after.mm == pytest.approx(float(margin_ratio * oracle) * (10.0 - qty), rel=REL)
    assert eng.insurance_fund("USDC") - fund0 == pytest.approx(res["fees_to_fund"], rel=REL,
                                                               abs=1e-15)
    assert res["fees_to_fund"] == pytest.approx(float(fee * oracle * exact), rel=REL, abs=1e-15)


# ---- dYdX: bankruptcy price -------------------------------------------------------------------

def _dydx_env(case: dict) -> tuple[dict, dict]:
    env = case["inputs"]["env"]
    prices = {c: float(p["price_usd"]) for c, p in env["perpetuals"].items()}
    resolution = {c: p["atomic_resolution"] for c, p in env["perpetuals"].items()}
    return prices, resolution


def _dydx_units(case: dict, coin: str, base_quantums: int) -> float:
    _, resolution = _dydx_env(case)
    return float(Fraction(base_quantums) * Fraction(10) ** resolution[coin])


def _dydx_account(case: dict, *, marks: dict | None = None) -> tuple[mk.Engine, float]:
    """The case's subaccount: USDC balance and perpetual positions at the oracle
    prices (the env's liquidity tier: MM rate = IMF x maintenance fraction). dYdX's
    balance may be negative; the engine's is a deposit, so the position of the
    last perpetual is entered at the price that gives the same total net
    collateral ``TNC = usdc + sum size x oracle``. Returns (engine, TNC)."""
    inp = case["inputs"]
    env = inp["env"]
    prices, _ = _dydx_env(case)
    tier = env["liquidity_tier"]
    imf = tier["initial_margin_ppm"] / 1e6
    mmf = imf * tier["maintenance_fraction_ppm"] / 1e6
    marks = marks or prices
    eng = mk.Engine()
    eng.now = NOW
    eng.add_asset("USDC", price=1.0, time=NOW)
    eng.add_model("tier", "linear_rate", im_base=imf, im_slope=0.0, mm_base=mmf, mm_slope=0.0)
    for coin in prices:
        eng.add_asset(coin, price=marks[coin], time=NOW)
        eng.add_instrument(f"{coin}-USD", kind="perpetual", underlying=coin, settle="USDC",
                           model="tier", mark=marks[coin], time=NOW)
    eng.add_account("sub", "USDC")
    sizes = {c: _dydx_units(case, c, q) for c, q in inp["perp_positions_base_quantums"].items()}
    tnc = inp["usdc_balance_usd"] + sum(s * prices[c] for c, s in sizes.items())
    cash = 1.0
    eng.deposit("sub", "USDC", cash)
    coins = list(sizes)
    for k, coin in enumerate(coins):
        entry = prices[coin]
        if k == len(coins) - 1:  # cash + sum s (oracle - entry) = TNC
            entry = prices[coin] - (tnc - cash) / sizes[coin]
        assert entry > 0
        eng.fill("sub", f"{coin}-USD", sizes[coin], entry, fee=0.0)
    return eng, tnc


def _dydx_bp_quote_quantums(case: dict, price: float) -> float:
    """The quote quantums dYdX reports for the case's delta closed at ``price`` per
    coin (positive for sells, negative for buys)."""
    inp = case["inputs"]
    delta = _dydx_units(case, inp["perpetual"], inp["delta_quantums"])
    return -delta * price * inp["env"]["usdc_quote_quantums_per_usd"]


SINGLE_POSITION_BP = [k for k in DYDX_BP
                      if len(DYDX[k]["inputs"]["perp_positions_base_quantums"]) == 1]
SEVERAL_POSITIONS_BP = [k for k in DYDX_BP if k not in SINGLE_POSITION_BP]


@pytest.mark.parametrize("case_id", SINGLE_POSITION_BP)
def test_dydx_bankruptcy_price_single_position(case_id):
    """One position: the engine's whole-position bankruptcy price, times the delta,
    is dYdX's bankruptcy quote quantums within one quote quantum (dYdX rounds the
    signed value toward +inf), for full closes and for partial deltas alike."""
    case = DYDX[case_id]
    inp = case["inputs"]
    coin = inp["perpetual"]
    eng, tnc = _dydx_account(case)
    assert eng.summary("sub").equity == pytest.approx(tnc, rel=REL, abs=1e-9)
    bp = eng.bankruptcy_price("sub", f"{coin}-USD")
    size = _dydx_units(case, coin, inp["perp_positions_base_quantums"][coin])
    prices, _ = _dydx_env(case)
    assert bp == pytest.approx(prices[coin] - tnc / size, rel=REL)
    got = _dydx_bp_quote_quantums(case, bp)
    want = case["expected"]["bankruptcy_price_quote_quantums"]
    # dYdX rounds the signed value toward +inf: want = ceil(exact value)
    assert want - 1.0 < got <= want + 1e-12 * abs(want), (got, want)
    # the definition: closing the whole position at bp leaves zero equity
    eng.fill("sub", f"{coin}-USD", -size, bp, fee=0.0)
    assert eng.positions("sub") == []
    assert abs(eng.summary("sub").equity) <= 1e-10 * abs(size) * prices[coin]


@pytest.mark.parametrize("case_id", SEVERAL_POSITIONS_BP)
def test_dydx_bankruptcy_price_several_positions(case_id):
    """Discrepancy (recorded, not "fixed"): ``dydx_bankruptcy_multi_short_close_eth``
    closes a 0.1 ETH short of an account that is also 0.004 BTC short, with TNC =
    510 - 200 - 300 = 10 USD. dYdX gives the ETH close only its share of the TNC by
    maintenance requirement, 10 x 30 / 50 = 6 USD, so its bankruptcy value is
    -(300 + 6) = -306 USD (3,060 per ETH). The engine's bankruptcy price is the
    price at which closing the whole ETH position leaves the *account* at zero
    equity, i.e. all 10 USD of TNC: 3,100 per ETH (-310 USD). The engine's own
    definition is asserted; the published figure is checked to be dYdX's
    apportioned one."""
    case = DYDX[case_id]
    inp = case["inputs"]
    coin = inp["perpetual"]
    prices, _ = _dydx_env(case)
    eng, tnc = _dydx_account(case)
    size = _dydx_units(case, coin, inp["perp_positions_base_quantums"][coin])
    delta = _dydx_units(case, coin, inp["delta_quantums"])
    assert delta == -size  # a full close of one of several positions
    bp = eng.bankruptcy_price("sub", f"{coin}-USD")
    assert bp == pytest.approx(prices[coin] - tnc / size, rel=REL)
    assert (tnc, bp) == (pytest.approx(10.0), pytest.approx(3_100.0, rel=REL))
    eng.fill("sub", f"{coin}-USD", delta, bp, fee=0.0)
    assert abs(eng.summary("sub").equity) <= 1e-10 * abs(size) * prices[coin]
    # dYdX's figure: TNC apportioned by the closed position's share of the MMR
    sizes = {c: _dydx_units(case, c, q) for c, q in inp["perp_positions_base_quantums"].items()}
    tier = inp["env"]["liquidity_tier"]
    mmr = {c: abs(s) * prices[c] * tier["initial_margin_ppm"] / 1e6
           * tier["maintenance_fraction_ppm"] / 1e6 for c, s in sizes.items()}
    apportioned = prices[coin] - tnc * mmr[coin] / sum(mmr.values()) / size
    assert _dydx_bp_quote_quantums(case, apportioned) == pytest.approx(
        case["expected"]["bankruptcy_price_quote_quantums"], abs=1.0)
    assert abs(_dydx_bp_quote_quantums(case, bp)
               - case["expected"]["bankruptcy_price_quote_quantums"]) > 1e6  # $4 apart


# ---- dYdX: insurance fund delta ----------------------------------------------------------------

SPREAD = 0.01
FUND = 1_000.0


@pytest.mark.parametrize("case_id", DYDX_IF)
def test_dydx_insurance_fund_delta(case_id):
    """The whole position is liquidated at the case's fill price; the fund's change
    is dYdX's insurance-fund delta (within one quote quantum: dYdX floors the fee).

    Every case fills at a price *better* than the $50,000 oracle for the account
    (sells above, buys below). The engine's liquidity model fills worse than the
    mark (``mark (1 -/+ spread)``), so the mark is set past the fill price
    (``fill / (1 -/+ 1 %)``) with a 1 % spread; the delta does not depend on the
    mark (a full close's bankruptcy value is the account's cash per unit). dYdX's
    vector fills the whole position; the engine closes a whole position at once
    only when no partial step restores its target, so the target is made
    unattainable for a partial close (``buffer=1e30``)."""
    case = DYDX[case_id]
    inp = case["inputs"]
    coin = inp["perpetual"]
    env = inp["env"]
    qq = env["usdc_quote_quantums_per_usd"]
    fill_units = _dydx_units(case, coin, inp["fill_amount_base_quantums"])
    fill_qq = Fraction(inp["subticks"]) * inp["fill_amount_base_quantums"] \
        * Fraction(10) ** env["clob_pair_btc_quantum_conversion_exponent"]
    fill_price = float(fill_qq / qq / Fraction(fill_units))
    size = _dydx_units(case, coin, inp["perp_positions_base_quantums"][coin])
    assert fill_units == abs(size) and (size > 0) == (not inp["is_buy"])
    mark = fill_price / (1.0 - SPREAD) if size > 0 else fill_price / (1.0 + SPREAD)
    eng, _ = _dydx_account(case, marks={**_dydx_env(case)[0], coin: mark})
    fee_rate = inp["max_liquidation_fee_ppm"] / 1e6
    eng.set_liquidity(f"{coin}-USD", spread=SPREAD)
    eng.set_liquidation_params(fee_rate=fee_rate, buffer=1e30)
    eng.fund_insurance("USDC", FUND)
    # dYdX's method on the engine's bankruptcy price: delta = fill value - bankruptcy
    # value; > 0: min(fee cap, delta) to the fund, else the fund pays -delta
    bp = eng.bankruptcy_price("sub", f"{coin}-USD")
    delta = size * (fill_price - bp)
    cap = fee_rate * abs(size) * fill_price
    method = min(cap, delta) if delta > 0 else delta
    res = eng.liquidate("sub")
    (step,) = res["plan"]["steps"]
    assert step["kind"] == "close" and step["qty"] == -size
    assert step["price"] == pytest.approx(fill_price, rel=REL)
    assert eng.positions("sub") == []
    fund_delta = eng.insurance_fund("USDC") - FUND
    want = case["expected"]["insurance_fund_delta_quote_quantums"] / qq
    assert abs(fund_delta - want) <= 1.0 / qq + 1e-9, (fund_delta, want)
    assert abs(method - want) <= 1.0 / qq + 1e-9, (method, want)
    assert fund_delta == pytest.approx(method, rel=1e-9, abs=1e-9)
    if want > 0:  # the account pays min(fee cap, delta): never bad debt
        assert res["fees_to_fund"] == pytest.approx(fund_delta, rel=1e-9)
        assert (res["bad_debt"], res["fund_paid"]) == (0.0, 0.0)
        assert eng.summary("sub").equity == pytest.approx(delta - method, abs=1e-9)
    else:  # the fund pays the bad debt; the account ends at zero
        assert res["fees_to_fund"] == 0.0
        assert res["fund_paid"] == pytest.approx(-want, rel=1e-9)
        assert res["bad_debt"] == pytest.approx(-want, rel=1e-9)
        assert (res["adl_volume"], res["socialized"]) == (0.0, 0.0)
        assert eng.summary("sub").equity == pytest.approx(0.0, abs=1e-9)


# ---- dYdX: initial margin rounded up to a quote quantum ----------------------------------------

@pytest.mark.parametrize("case_id", DYDX_IM)
def test_dydx_initial_margin_rounds_up_to_one_quote_quantum(case_id):
    """Without open-interest caps dYdX's IM is ``ceil(notional x IMF)`` in quote
    quantums: a one-quantum notional at 10 % needs one quantum. The engine rounds
    requirements up to the margin asset's quantum (1e-6 USDC = one quote quantum)."""
    case = DYDX[case_id]
    inp = case["inputs"]
    assert inp["open_interest_upper_cap"] == 0  # no open-interest adjustment
    eng = mk.Engine()
    eng.now = NOW
    eng.add_asset("USDC", price=1.0, time=NOW, quantum=1e-6)
    eng.add_asset("BTC", price=50_000.0, time=NOW)
    imf = inp["initial_margin_ppm"] / 1e6
    eng.add_model("tier", "linear_rate", im_base=imf, im_slope=0.0, mm_base=imf / 2,
                  mm_slope=0.0)
    eng.add_instrument("BTC-USD", kind="perpetual", underlying="BTC", settle="USDC",
                       model="tier", mark=50_000.0, time=NOW)
    eng.add_account("sub", "USDC")
    eng.deposit("sub", "USDC", 1.0)
    notional = inp["position_notional_quote_quantums"] / 1e6
    eng.fill("sub", "BTC-USD", notional / 50_000.0, 50_000.0, fee=0.0)
    im_qq = eng.summary("sub").im * 1e6
    assert im_qq == pytest.approx(case["expected"]["initial_margin_quote_quantums"], rel=1e-9)
