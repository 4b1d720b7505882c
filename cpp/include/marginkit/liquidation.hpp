// Liquidation: the parameters and results of liquidation plans, bankruptcy,
// the insurance fund and auto-deleveraging. The algorithms are Engine members
// (cpp/src/liquidation.cpp); this header holds their data.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace marginkit {

// Execution cost of closing x contracts of an instrument in one go: the average
// fill is mark x (1 -/+ (spread + impact x)) for a sell / buy. impact is the
// fraction of the price per contract (a linear order book); both >= 0.
struct LiquidityModel {
  double spread = 0.0;
  double impact = 0.0;
  double max_step = 0.0;  // contracts per liquidation step (0: no limit)
};

enum class LiquidationTarget : std::int8_t {
  maintenance = 0,  // equity >= MM x (1 + buffer)
  initial = 1,      // equity >= IM
};

// The penalty of a liquidation fill, as a rate of its notional:
//   fixed:          fee_rate (possibly ramped, below).
//   margin_implied: fee_rate + an insurance-fund fee implied by the margin the
//                   account has left (Drift): min(max_if_fee, if_factor x
//                   (mm_rate - fee_rate - shortage / notional)), >= 0, where
//                   mm_rate is the position's MM / notional and shortage =
//                   MM - equity of the account, taken before each step.
enum class FeePolicy : std::int8_t { fixed = 0, margin_implied = 1 };

// The price of a liquidation fill:
//   liquidity: the instrument's LiquidityModel, mark -/+ (spread + impact x).
//   fillable:  dYdX's fillable price, from the account before each step:
//              mark -/+ ABR x spread_to_mm x MM_position / notional, with
//              ABR = clamp(bankruptcy_adjustment x (1 - TNC / TMMR), 0, 1)
//              (TNC: equity, TMMR: the account's MM; a sell fills below the
//              mark, a buy above).
enum class FillPolicy : std::int8_t { liquidity = 0, fillable = 1 };

struct LiquidationParams {
  LiquidationTarget target = LiquidationTarget::maintenance;
  double buffer = 0.0;
  double fee_rate = 0.0;  // penalty on traded notional, paid to the insurance fund
  FeePolicy fee_policy = FeePolicy::fixed;
  double max_if_fee = 0.0;  // margin_implied: cap of the insurance-fund fee rate
  double if_factor = 0.95;  // margin_implied: share of the implied rate taken
  // Fee ramp (Drift): once an account has been inactive for ramp_grace seconds
  // (now - last active), its fee_rate becomes min(fee_rate + ramp_per_second x
  // inactive seconds, max_fee_rate). ramp_per_second = 0: no ramp.
  double ramp_per_second = 0.0, ramp_grace = 0.0, max_fee_rate = 0.0;
  FillPolicy fill_policy = FillPolicy::liquidity;
  double bankruptcy_adjustment = 1.0;  // fillable: BA (>= 1 at dYdX)
  double spread_to_mm = 0.0;           // fillable: SMMR
  // Spot liquidation: a deposit left worth less than this (USD) after a
  // liability transfer is handed over whole (Drift: $1); 0: never.
  double spot_dust = 0.0;
};

// ---- venue formulas (pure; the engine applies them to accounts) ----------------

// Drift's margin-implied insurance-fund fee rate of a perpetual liquidation:
// min(max_fee, factor x (mm_rate - liquidator_fee - shortage / notional)),
// never < 0; 0 when notional <= 0 or mm_rate <= liquidator_fee.
double margin_implied_fee(double mm_rate, double liquidator_fee, double shortage,
                          double notional, double max_fee, double factor) noexcept;
// Drift's insurance-fund fee rate of a spot liability transfer:
// min(max_fee, (lw - aw am / lm - shortage / liability_value) / lw), never < 0;
// 0 when aw >= lw, liability_value <= 0 or lm <= 0.
double spot_implied_fee(double shortage, double liability_value, double asset_weight,
                        double asset_multiplier, double liability_weight,
                        double liability_multiplier, double max_fee) noexcept;
// Units of a liability whose transfer (for a deposit, at the liquidation
// multipliers) cures `shortage` (quote currency): shortage / (price (lw - aw
// am / lm) - price if_fee lw); +inf when no transfer can (denominator <= 0).
double liability_transfer_to_cover(double shortage, double liability_price,
                                   double liability_weight, double asset_weight,
                                   double asset_multiplier, double liability_multiplier,
                                   double if_fee) noexcept;
// Drift's liquidation fee ramp: base while inactive < grace, then
// min(base + inactive x per_unit, max(base, max_fee)).
double ramped_fee(double base, double max_fee, double inactive, double grace,
                  double per_unit) noexcept;
// dYdX's adjustment of a fillable price: ABR x spread_to_mm x position_mm with
// ABR = clamp(ba x (1 - tnc / tmmr), 0, 1) (0 when tmmr <= 0).
double fillable_adjustment(double tnc, double tmmr, double position_mm, double ba,
                           double spread_to_mm) noexcept;

// A spot liquidation: a liquidator takes over part of a borrow (liability) and
// is paid with a deposit of the account (asset) at the assets' liquidation
// multipliers (asset: 1 + its liquidator fee, liability: 1 - its own).
struct SpotLiquidation {
  int account = -1, liability = -1, asset = -1;
  double shortage = 0.0;  // USD: target - weighted equity (> 0 in breach)
  double asset_weight = 0.0, liability_weight = 0.0;  // average, at the holdings
  double asset_multiplier = 1.0, liability_multiplier = 1.0;
  double if_fee = 0.0;             // insurance-fund fee rate on the transfer
  double to_cover = 0.0;           // liability units that cure the shortage (inf: none)
  double liability_transfer = 0.0; // taken over: min(to_cover, the borrow, what the asset pays)
  double asset_transfer = 0.0;     // deposit units handed over
  double fund_fee = 0.0;           // liability units to the insurance fund
};

// One step of a plan. kind: "cancel_orders" (of `instrument`), "reduce" (a
// partial close), "close" (the whole position).
struct LiquidationStep {
  std::string kind;
  int instrument = -1;
  double qty = 0.0;    // signed trade (opposite to the position)
  double price = 0.0;  // expected average fill (liquidity model)
  double penalty = 0.0;         // fee to the insurance fund, margin asset
  double fee_rate = 0.0;        // penalty rate of the step (incl. the insurance-fund fee)
  double if_fee_rate = 0.0;     // its insurance-fund fee part (margin_implied policy)
  double slippage = 0.0;        // cost against the mark, margin asset
  double released = 0.0;        // requirement released, margin asset
  double score = 0.0;           // released per unit of cost (the ranking)
  std::string reason;           // why this step, in words
};

struct LiquidationPlan {
  int account = -1;
  double equity_before = 0.0, requirement_before = 0.0, target_before = 0.0;
  double equity_after = 0.0, requirement_after = 0.0;
  bool restored = false;  // at or above the target after the steps (or flat)
  // Still below the target after the steps, with a borrow (negative balance)
  // and a deposit in another priced asset: the whole-book passes (cascade)
  // continue with spot liquidations (liability transfers) after the steps.
  bool needs_spot = false;
  std::vector<LiquidationStep> steps;
};

// What executing a plan did to the venue's books.
struct LiquidationResult {
  LiquidationPlan plan;
  double fees_to_fund = 0.0;    // penalties paid to the insurance fund
  double bad_debt = 0.0;        // negative equity left after the closes
  double fund_paid = 0.0;       // bad debt the insurance fund absorbed
  double adl_volume = 0.0;      // contracts taken from opposite positions
  double adl_notional = 0.0;    // their notional in USD
  double socialized = 0.0;      // bad debt neither the fund nor ADL covered
  std::vector<int> adl_accounts;  // counterparties deleveraged, in rank order
  std::vector<std::pair<int, double>> market_fills;  // (instrument, qty) sent to the market
  // Spot liquidations executed after the steps, before settlement (cascade, or
  // liquidate with spot), in order.
  std::vector<SpotLiquidation> spot;
};

}  // namespace marginkit
