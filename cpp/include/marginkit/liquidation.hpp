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

struct LiquidationParams {
  LiquidationTarget target = LiquidationTarget::maintenance;
  double buffer = 0.0;
  double fee_rate = 0.0;  // penalty on traded notional, paid to the insurance fund
};

// One step of a plan. kind: "cancel_orders" (of `instrument`), "reduce" (a
// partial close), "close" (the whole position).
struct LiquidationStep {
  std::string kind;
  int instrument = -1;
  double qty = 0.0;    // signed trade (opposite to the position)
  double price = 0.0;  // expected average fill (liquidity model)
  double penalty = 0.0;         // fee to the insurance fund, margin asset
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
};

}  // namespace marginkit
