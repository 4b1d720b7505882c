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

* Drift ``drift_spot_liquidation_size`` / spot ``drift_insurance_fund_fee``:
  :meth:`Engine.plan_spot_liquidation` on an account that borrowed SOL (sold
  spot) against a USDC deposit, weights from the assets' haircut and
  ``liability_weight``, multipliers from their ``liquidator_fee``.
* Drift perp ``drift_insurance_fund_fee``: ``fee_policy="margin_implied"``;
  ``drift_liquidation_fee_ramp``: the fee ramp over engine-clock units since
  :meth:`Engine.last_active` (one per slot); ``drift_spot_imf_size_weight``:
  ``imf_factor`` and ``weight_quantum=1e-4`` of an asset.
* dYdX ``dydx_v4_fillable_price``: ``fill_policy="fillable"``; maintenance
  fraction and open-interest IMF: ``mm_fraction``, ``oi_lower`` / ``oi_upper``
  and ``rate_quantum=1e-6`` of the model, the open interest as market data.
  Inputs an engine cannot hold (a zero price, an asset weight above 1, a zero
  multiplier) go through :mod:`marginkit.venue_formulas`, the same core formulas.

Cases whose mechanism the engine lacks would be skipped with the reason
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

# Mechanisms the engine does not have: methodology -> reason (none left).
UNSUPPORTED: dict[str, str] = {}
# Cases of a supported methodology whose mechanism the engine lacks: id -> reason.
UNSUPPORTED_CASES: dict[str, str] = {}

DRIFT_SIZE = sorted(k for k, c in DRIFT.items()
                    if c["methodology"] == "drift_perp_liquidation_size")
DYDX_BP = sorted(k for k, c in DYDX.items() if c["methodology"] == "dydx_v4_bankruptcy_price")
DYDX_IF = sorted(k for k, c in DYDX.items()
                 if c["methodology"] == "dydx_v4_liquidation_insurance_fund_delta")
DYDX_IM = ["dydx_initial_margin_quote_quantums_im10_round_up_to_1"]


def _of(cases: dict[str, dict], methodology: str) -> list[str]:
    return sorted(k for k, c in cases.items() if c["methodology"] == methodology)


DRIFT_SPOT = _of(DRIFT, "drift_spot_liquidation_size")
DRIFT_IF = _of(DRIFT, "drift_insurance_fund_fee")
DRIFT_RAMP = _of(DRIFT, "drift_liquidation_fee_ramp")
DRIFT_WEIGHT = _of(DRIFT, "drift_spot_imf_size_weight")
DYDX_FILL = _of(DYDX, "dydx_v4_fillable_price")
DYDX_MF = sorted(k for k in DYDX if k.startswith("dydx_maintenance_margin_ppm_"))
DYDX_OIMF = sorted(k for k in DYDX if k.startswith(("dydx_initial_margin_quote_quantums_oimf",
                                                    "dydx_adjusted_imf_ppm_")))
REPRODUCED = (set(DRIFT_SIZE) | set(DYDX_BP) | set(DYDX_IF) | set(DYDX_IM) | set(DRIFT_SPOT)
              | set(DRIFT_IF) | set(DRIFT_RAMP) | set(DRIFT_WEIGHT) | set(DYDX_FILL)
              | set(DYDX_MF) | set(DYDX_OIMF))
SKIPPED = sorted(k for k, c in {**DRIFT, **DYDX}.items()
                 if c["methodology"] in UNSUPPORTED or k in UNSUPPORTED_CASES)


def test_every_case_is_reproduced_or_skipped_with_a_reason():
    ids = set(DRIFT) | set(DYDX)
    assert REPRODUCED.isdisjoint(SKIPPED)
    assert REPRODUCED | set(SKIPPED) == ids
    assert {"drift_base_to_cover_margin_shortage_zero_fee",
            "drift_base_to_cover_margin_shortage_one_pct_fee"} <= set(DRIFT_SIZE)
    assert len(DYDX_BP) == 5 and len(DYDX_IF) == 4
    assert (len(DRIFT_SPOT), len(DRIFT_IF), len(DRIFT_RAMP), len(DRIFT_WEIGHT)) == (3, 5, 1, 3)
    assert (len(DYDX_FILL), len(DYDX_MF), len(DYDX_OIMF)) == (5, 3, 4)


if SKIPPED:  # a mechanism the engine lacks is listed, with its reason, as a skip
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
    marks = marks or prices
    eng = mk.Engine()
    eng.now = NOW
    eng.add_asset("USDC", price=1.0, time=NOW)
    eng.add_model("tier", "linear_rate", im_base=tier["initial_margin_ppm"] / 1e6, im_slope=0.0,
                  mm_fraction=tier["maintenance_fraction_ppm"] / 1e6, rate_quantum=1e-6)
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


# ---- Drift: spot liquidation (liability transfer) ----------------------------------------------

def _drift_spot(*, shortage: float, aw: float, am: float, lw: float, lm: float, price: float,
                borrow: float = 1.0, asset_price: float = 1.0) -> mk.Engine:
    """An account that borrowed ``borrow`` SOL (sold spot) against a USDC deposit,
    weighted equity ``-shortage``: USDC weight ``aw`` (haircut ``1 - aw``),
    liquidator fees giving the multipliers ``am = 1 + fee_usdc``, ``lm = 1 - fee_sol``."""
    eng = mk.Engine()
    eng.now = NOW
    eng.add_asset("USDC", price=asset_price, time=NOW, haircuts=[(math.inf, 1.0 - aw)],
                  liquidator_fee=am - 1.0)
    eng.add_asset("SOL", price=price, time=NOW, liability_weight=lw, liquidator_fee=1.0 - lm)
    eng.add_model("none", "linear_rate", im_base=0.0, im_slope=0.0, mm_base=0.0, mm_slope=0.0)
    eng.add_instrument("SOL/USDC", kind="spot", underlying="SOL", settle="USDC", model="none")
    eng.add_account("user", "USDC")
    deposit_value = (lw * price * borrow - shortage) / aw  # weighted: aw D - lw p L = -shortage
    units = deposit_value / asset_price
    assert units > 0.0
    # the borrow is sold (off market) for half the deposit; the rest is deposited
    eng.deposit("user", "USDC", units / 2.0)
    eng.fill("user", "SOL/USDC", -borrow, units / 2.0 / borrow, fee=0.0)
    return eng


def _spot_inputs(inp: dict) -> dict:
    w, m = 1e4, 1e6
    return {"aw": inp["asset_weight"] / w, "am": inp["asset_liquidation_multiplier"] / m,
            "lw": inp["liability_weight"] / w, "lm": inp["liability_liquidation_multiplier"] / m,
            "price": inp["liability_price"] / 1e6}


@pytest.mark.parametrize("case_id", DRIFT_SPOT)
def test_drift_spot_liability_transfer(case_id):
    """Drift's liability transfer sized to cure a shortage (``shortage / (price
    (lw - aw am / lm) - price if_fee lw)``), its "cannot cure" sentinel (u128::MAX:
    ``inf``), and the asset handed over for a liability transfer (``liability x
    price_l x am / (lm price_a)``), through :meth:`Engine.plan_spot_liquidation`
    and :meth:`Engine.liquidate_spot`."""
    case = DRIFT[case_id]
    inp = case["inputs"]
    want = case["expected"]
    if "liability_transfer_token_amount" in want:
        x = _spot_inputs(inp)
        shortage = inp["margin_shortage_quote"] / 1e6
        assert inp["if_liquidation_fee"] == 0
        eng = _drift_spot(shortage=shortage, **x)
        assert eng.summary("user").equity == pytest.approx(-shortage, rel=1e-12)
        plan = eng.plan_spot_liquidation("user", "SOL", "USDC")
        assert plan["shortage"] == pytest.approx(shortage, rel=1e-12)
        assert (plan["asset_weight"], plan["liability_weight"]) == (
            pytest.approx(x["aw"], rel=1e-12), pytest.approx(x["lw"], rel=1e-12))
        if want["liability_transfer_token_amount"] == "u128::MAX":
            assert plan["to_cover"] == math.inf  # no transfer can cure it
            return
        got = plan["to_cover"]
        exact = shortage / (x["price"] * (x["lw"] - x["aw"] * x["am"] / x["lm"]))
        assert got == pytest.approx(exact, rel=REL)
        published = want["liability_transfer_token_amount"] / 10 ** inp["liability_decimals"]
        assert got == pytest.approx(published, rel=1e-4)  # Drift truncates the weight term
        assert plan["liability_transfer"] == pytest.approx(got, rel=REL)
        res = eng.liquidate_spot("user", "SOL", "USDC")
        assert res["asset_transfer"] == pytest.approx(
            got * x["price"] * x["am"] / x["lm"], rel=REL)
        assert eng.summary("user").equity == pytest.approx(0.0, abs=1e-9)  # cured exactly
    else:
        # a 1-token liability transfer for the deposit; the account is set so that
        # the transfer that cures it is exactly the case's liability transfer
        price_l = inp["liability_price"] / 1e6
        price_a = inp["asset_price"] / 1e6
        am = inp["asset_liquidation_multiplier"] / 1e6
        lm = inp["liability_liquidation_multiplier"] / 1e6
        borrow = inp["liability_transfer"] / 10 ** inp["liability_decimals"]
        held = inp["asset_amount"] / 10 ** inp["asset_decimals"]
        lw = held * price_a / (borrow * price_l) + 0.5  # in breach by half the borrow
        eng = _drift_spot(shortage=(lw * price_l * borrow - held * price_a), aw=1.0, am=am,
                          lw=lw, lm=lm, price=price_l, borrow=borrow, asset_price=price_a)
        eng.set_liquidation_params(spot_dust=1.0)
        plan = eng.plan_spot_liquidation("user", "SOL", "USDC")
        assert plan["liability_transfer"] == pytest.approx(borrow, rel=REL)
        got = plan["asset_transfer"] * 10 ** inp["asset_decimals"]
        assert got == pytest.approx(want["asset_transfer"], rel=REL)
        res = eng.liquidate_spot("user", "SOL", "USDC")
        assert eng.balance("user", "USDC") == pytest.approx(0.0, abs=1e-9)
        assert eng.balance("user", "SOL") == pytest.approx(0.0, abs=1e-12)
        assert res["asset_transfer"] == plan["asset_transfer"]


# ---- Drift: insurance-fund fee ------------------------------------------------------------

def _if_ppm(rate: float) -> float:
    return rate * 1e6


@pytest.mark.parametrize("case_id", DRIFT_IF)
def test_drift_insurance_fund_fee(case_id):
    """Perpetuals: the fee policy ``margin_implied`` takes ``min(max_if_fee, 0.95 x
    (margin_ratio - liquidator_fee - shortage / notional))`` from the account before
    the step; spot: ``(lw - aw am / lm - shortage / liability value) / lw`` in
    :meth:`Engine.plan_spot_liquidation`. Drift floors to 1e-6: the engine's
    float is within one unit. Inputs an engine cannot hold (a zero price, an asset
    weight above 1, a zero multiplier) go through :mod:`marginkit.venue_formulas`."""
    case = DRIFT[case_id]
    inp = case["inputs"]
    want = case["expected"]["if_fee"]
    vf = mk.venue_formulas
    if "user_base_asset_amount" in inp:  # perpetual
        mr = inp["margin_ratio"] / 1e4
        fee = inp["liquidator_fee"] / 1e6
        max_if = inp["max_if_fee"] / 1e6
        shortage = inp["margin_shortage"] / 1e6
        base = inp["user_base_asset_amount"] / 1e9
        price = inp["oracle_price"] / 1e6 * inp["quote_oracle_price"] / 1e6
        if price == 0.0:  # no engine has a zero price
            assert vf.margin_implied_fee(mr, fee, shortage, 0.0, max_if) == want == 0
            return
        eng = _drift_account(price, mr, base, shortage, fee)
        eng.set_liquidation_params(fee_rate=fee, fee_policy="margin_implied", max_if_fee=max_if)
        total, if_fee = eng.liquidation_fee_rate("user", "SOL-PERP")
        assert abs(_if_ppm(if_fee) - want) < 1.0 and total == pytest.approx(fee + if_fee)
        assert if_fee == pytest.approx(0.95 * (mr - fee - shortage / (base * price)), rel=REL)
        # the plan sizes the close with both fees: Drift's base to cover the shortage
        (step,) = eng.plan_liquidation("user")["steps"]
        assert step["if_fee_rate"] == if_fee and step["fee_rate"] == total
        assert abs(step["qty"]) == pytest.approx(shortage / (price * (mr - total)), rel=1e-9)
        res = eng.liquidate("user")
        assert eng.summary("user").equity == pytest.approx(eng.summary("user").mm, rel=1e-9)
        assert res["fees_to_fund"] == pytest.approx(total * abs(step["qty"]) * price, rel=1e-9)
        return
    x = _spot_inputs(inp)
    shortage = inp["margin_shortage"] / 1e6
    tokens = inp["token_amount"] / 10 ** inp["liability_decimals"]
    max_if = inp["max_if_fee"] / 1e6
    if x["aw"] > 1.0 or x["lm"] == 0.0:  # an engine's weights are <= 1, multipliers > 0
        got = vf.spot_implied_fee(shortage, tokens * x["price"], x["aw"], x["am"], x["lw"],
                                  x["lm"], max_if)
        assert got == want == 0
        return
    eng = _drift_spot(shortage=shortage, borrow=tokens, **x)
    eng.set_liquidation_params(fee_policy="margin_implied", max_if_fee=max_if)
    plan = eng.plan_spot_liquidation("user", "SOL", "USDC")
    assert 0.0 <= _if_ppm(plan["if_fee"]) - want < 1.0  # Drift floors
    assert plan["fund_fee"] == pytest.approx(plan["liability_transfer"] * plan["if_fee"])
    res = eng.liquidate_spot("user", "SOL", "USDC")
    assert eng.insurance_fund("SOL") == pytest.approx(res["fund_fee"])
    assert eng.summary("user").equity == pytest.approx(0.0, abs=1e-9)  # cured with the fee


# ---- Drift: liquidation fee ramp --------------------------------------------------------------

@pytest.mark.parametrize("case_id", DRIFT_RAMP)
def test_drift_liquidation_fee_ramp(case_id):
    """The fee rises by ``increase_per_slot`` per slot of inactivity once past the
    grace period, up to the maximum; the engine counts engine-clock units (here one
    per slot) since :meth:`Engine.last_active`."""
    inp = DRIFT[case_id]["inputs"]
    eng = _drift_account(100.0, 0.1, 10.0, 10.0, 0.0)
    eng.set_liquidation_params(fee_rate=inp["base_liquidation_fee"] / 1e6,
                               ramp_per_second=inp["increase_per_slot"] / 1e6,
                               ramp_grace=inp["grace_period_slots"],
                               max_fee_rate=inp["max_liquidation_fee"] / 1e6)
    eng.set_last_active("user", NOW - (inp["current_slot"] - inp["last_active_user_slot"]))
    total, if_fee = eng.liquidation_fee_rate("user", "SOL-PERP")
    assert if_fee == 0.0
    assert total * 1e6 == pytest.approx(DRIFT[case_id]["expected"]["liquidation_fee"], rel=1e-12)
    assert eng.plan_liquidation("user")["steps"][0]["fee_rate"] == total
    eng.set_last_active("user", NOW)  # active again: the base fee
    assert eng.liquidation_fee_rate("user", "SOL-PERP")[0] == inp["base_liquidation_fee"] / 1e6


# ---- Drift: IMF size weights --------------------------------------------------------------------

@pytest.mark.parametrize("case_id", DRIFT_WEIGHT)
def test_drift_imf_size_weight(case_id):
    """A holding (or a debt) of the case's size in an asset with the case's base
    weight and IMF factor counts at Drift's size weight; with ``weight_quantum=1e-4``
    (Drift's weight precision) exactly its figure."""
    case = DRIFT[case_id]
    inp = case["inputs"]
    size = inp["token_amount"] / 10 ** inp["token_decimals"]
    w = inp["base_weight"] / 1e4
    imf = inp["imf_factor"] / 1e6
    eng = mk.Engine()
    eng.now = NOW
    eng.add_asset("USDC", price=1.0, time=NOW)
    liability = inp["kind"].startswith("liability")
    if liability:
        eng.add_asset("TOK", price=1.0, time=NOW, liability_weight=w, imf_factor=imf,
                      weight_quantum=1e-4)
    else:
        eng.add_asset("TOK", price=1.0, time=NOW, haircuts=[(math.inf, 1.0 - w)],
                      imf_factor=imf, weight_quantum=1e-4)
    eng.add_model("none", "linear_rate", im_base=0.0, im_slope=0.0, mm_base=0.0, mm_slope=0.0)
    eng.add_instrument("TOK/USDC", kind="spot", underlying="TOK", settle="USDC", model="none")
    eng.add_account("user", "USDC")
    if liability:
        eng.deposit("user", "USDC", 1.0)
        eng.fill("user", "TOK/USDC", -size, 1.0, fee=0.0)  # borrow and sell
        weight = (1.0 + size - eng.summary("user").equity) / size
        formula = mk.venue_formulas.liability_size_weight(w, imf, size)
    else:
        eng.deposit("user", "TOK", size)
        weight = eng.summary("user").equity / size
        formula = mk.venue_formulas.asset_size_weight(w, imf, size)
    expected = case["expected"]["weight"]
    assert weight * 1e4 == pytest.approx(expected, rel=1e-12)
    assert abs(formula * 1e4 - expected) < 1.0  # the unrounded weight, within Drift's digit


# ---- dYdX: fillable price -----------------------------------------------------------------------

@pytest.mark.parametrize("case_id", DYDX_FILL)
def test_dydx_fillable_price(case_id):
    """``fill_policy="fillable"``: the liquidation fills at ``(PNNV - ABR x SMMR x
    PMMR) / PS`` with ``ABR = clamp(BA (1 - TNC / TMMR), 0, 1)``, whatever the delta;
    in quote quantums per base quantum, as an exact rational."""
    case = DYDX[case_id]
    inp = case["inputs"]
    coin = inp["perpetual"]
    eng, _ = _dydx_account(case)
    eng.set_liquidation_params(fill_policy="fillable",
                               bankruptcy_adjustment=inp["bankruptcy_adjustment_ppm"] / 1e6,
                               spread_to_mm=inp["spread_to_maintenance_margin_ratio_ppm"] / 1e6)
    _, resolution = _dydx_env(case)
    qq = inp["env"]["usdc_quote_quantums_per_usd"]
    want = Fraction(case["expected"]["fillable_price_quote_quantums_per_base_quantum"])
    delta = _dydx_units(case, coin, inp["delta_quantums"])
    for qty in (None, delta):
        price = eng.liquidation_fill_price("sub", f"{coin}-USD", qty)
        got = Fraction(price) * qq * Fraction(10) ** resolution[coin]
        assert abs(got - want) <= want * Fraction(REL), (float(got), float(want))
    plan = eng.plan_liquidation("sub")
    for step in plan["steps"][:1]:
        assert step["price"] == eng.liquidation_fill_price("sub", f"{coin}-USD", step["qty"])


# ---- dYdX: liquidity tiers (maintenance fraction, open-interest IMF) ----------------------------

@pytest.mark.parametrize("case_id", DYDX_MF)
def test_dydx_maintenance_fraction(case_id):
    """``mm_fraction`` derives the MM rate from the IM rate, rounded down to the
    venue's ppm (``rate_quantum=1e-6``): exactly dYdX's figure; a position's MM is
    that rate of its notional."""
    case = DYDX[case_id]
    inp = case["inputs"]
    eng = mk.Engine()
    eng.now = NOW
    eng.add_asset("USDC", price=1.0, time=NOW, quantum=1e-6)
    eng.add_asset("BTC", price=50_000.0, time=NOW)
    eng.add_model("tier", "linear_rate", im_base=inp["initial_margin_ppm"] / 1e6, im_slope=0.0,
                  mm_fraction=inp["maintenance_fraction_ppm"] / 1e6, rate_quantum=1e-6)
    rates = eng.model_rates("tier")
    want = case["expected"]["maintenance_margin_ppm"]
    assert rates["mm_base"] * 1e6 == pytest.approx(want, abs=1e-9)
    assert rates["mm_base"] <= rates["im_base"]
    eng.add_instrument("BTC-USD", kind="perpetual", underlying="BTC", settle="USDC",
                       model="tier", mark=50_000.0, time=NOW)
    eng.add_account("sub", "USDC")
    eng.deposit("sub", "USDC", 1e6)
    eng.fill("sub", "BTC-USD", 1.0, 50_000.0, fee=0.0)
    assert eng.summary("sub").mm == pytest.approx(50_000.0 * want / 1e6, rel=1e-12)


@pytest.mark.parametrize("case_id", DYDX_OIMF)
def test_dydx_open_interest_imf(case_id):
    """Open-interest caps raise the IM rate linearly to 1 between ``oi_lower`` and
    ``oi_upper`` with the venue's open interest (market data); the adjusted rate in
    ppm (rounded down: ``rate_quantum=1e-6``) and the IM in quote quantums (rounded
    up by the margin asset's quantum) are dYdX's."""
    case = DYDX[case_id]
    inp = case["inputs"]
    qq = 1e6
    price = 1.0  # an instrument at $1: contracts = USD
    eng = mk.Engine()
    eng.now = NOW
    eng.add_asset("USDC", price=1.0, time=NOW, quantum=1e-6)
    eng.add_asset("X", price=price, time=NOW)
    eng.add_model("tier", "linear_rate", im_base=inp["initial_margin_ppm"] / 1e6, im_slope=0.0,
                  mm_fraction=0.5, rate_quantum=1e-6, oi_lower=inp["open_interest_lower_cap"] / qq,
                  oi_upper=inp["open_interest_upper_cap"] / qq)
    eng.add_instrument("X-USD", kind="perpetual", underlying="X", settle="USDC", model="tier",
                       mark=price, time=NOW)
    oi = inp["open_interest_notional_quote_quantums"] / qq
    eng.set_open_interest("X-USD", oi / price)
    eng.add_account("sub", "USDC")
    eng.deposit("sub", "USDC", 1e9)
    want = case["expected"]
    if "adjusted_initial_margin_ppm" in want:
        rate = eng.initial_rate("tier", inp["initial_margin_ppm"] / 1e6, oi)
        assert rate * 1e6 == pytest.approx(want["adjusted_initial_margin_ppm"], abs=1e-6)
        eng.fill("sub", "X-USD", 1.0, price, fee=0.0)  # a $1 position needs the rate
        assert eng.summary("sub").im * 1e6 == pytest.approx(want["adjusted_initial_margin_ppm"],
                                                            abs=1e-6)
        return
    notional = inp["position_notional_quote_quantums"] / qq
    eng.fill("sub", "X-USD", notional / price, price, fee=0.0)
    im_qq = eng.summary("sub").im * qq
    assert im_qq == pytest.approx(want["initial_margin_quote_quantums"], abs=1e-6)
    eng.set_open_interest("X-USD", 0.0)  # below the lower cap: the base rate
    assert eng.summary("sub").im * qq == pytest.approx(
        math.ceil(notional * inp["initial_margin_ppm"] - 1e-9), abs=1e-6)
