// Derive (Lyra v2) PMRM_2 portfolio margin of one subaccount on one underlying,
// evaluated in float64 as the venue's risk manager does it in 18-decimal fixed
// point. Plain C++; options are priced with black76_one (pricing.hpp) and the
// volatility shocks use VolShockModel (scenarios.hpp).
//
// Method (tau = seconds / (365 x 86400); every amount in the quote currency):
// * Each expiry: forward = variable + fixed portion (inside the last
//   kSettlementWindow seconds the fixed part is forward (window - sec) / window,
//   unless given), rate r = max(rate, 0), discount exp(-r tau). Option vols come
//   from the expiry's SVI slice (or are given per option):
//     k = clamp(ln(K / F_svi), -B, B), B = 4 sqrt(a + b sigma)
//     w = min(a + b (rho (k - m) + sqrt((k - m)^2 + sigma^2)), 20), vol = sqrt(w / tau_svi)
// * mtm of an expiry = sum amount x Black-76 at the forward; static discounts
//     pos = BASE_STATIC_DISCOUNT exp(-tau (r LONG_RATE_MULTSCALE + LONG_RATE_ADDSCALE))
//     neg = min(1 / discount, BASE_STATIC_DISCOUNT_NEG / exp(-tau (r SHORT_RATE_MULTSCALE + SHORT_RATE_ADDSCALE)))
// * Scenario (spot shock s, vol direction, dampening d): per expiry, the shocked
//   value V (forward variable portion x s; vols x up / down multiplier, up floored
//   at MIN_VOL_EVAL_SHOCKED) times pos (V >= 0) or neg (V < 0), P&L (V' - mtm) d.
//   Skew scenarios (LINEAR / ABS) reprice at the unshocked forward with each vol
//   scaled by 1 + clamp(k cap / k_star, -cap, cap) (k = ln(K/F), |k| for ABS;
//   cap = CBASE sqrt(tau) + SCALE_CAP; k_star = max(MIN_K_STAR,
//   sqrt(tau) MIN_WIDTH_SCALE (VOL_PARAM_STATIC + sqrt(tau) VOL_PARAM_SCALE)))
//   and count -|P&L| per expiry. Perps add amount (s - 1) perp_price d and
//   risk-cancelling collateral value (s - 1) d, in every scenario.
// * Basis contingency = sum over expiries of min(V(up) - mtm, V(down) - mtm, 0)
//   x (ADD_FACTOR + MULT_FACTOR tau), V at the basis spot shocks, vols unshocked.
// * worst = min(basis contingency, every scenario P&L) (<= 0 unless all gain).
//   MM = worst x MM_LOSS_FACTOR - MM contingencies + MtM + cash
//   IM = worst x (IM_LOSS_FACTOR + peg loss) - IM contingencies - MM contingencies
//        + MtM + cash
//   Both are *surplus* amounts, as Derive reports them: equity minus the
//   requirement; negative means the requirement is not met. Adding cash raises
//   both by exactly that cash.
// * Contingencies: perps |amount| spot x MM/IM_PERP_PERCENT; naked shorts
//   (per expiry and strike, max(0, -(sum of amounts))) x spot x
//   MM/IM_OPTION_PERCENT; collateral value x MM/IM haircut; IM only: confidence
//   (1 - c) CONF_MARGIN notional where c < CONF_THRESHOLD, for the perp notional
//   (c = min(spot, perp confidences)), each expiry's gross option notional
//   (c also min of forward, rate and vol confidences) and each collateral value
//   (c = min(own, spot confidence)); peg loss (PEG_LOSS_THRESHOLD - stable price)
//   x PEG_LOSS_FACTOR added to the IM factor when the stable price is below the
//   threshold.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace marginkit::derive {

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// Derive's forward feed fixes the settlement price over the last 30 minutes.
inline constexpr double kSettlementWindow = 1800.0;

enum class VolShock : std::int8_t { none = 0, up = 1, down = 2, linear = 3, abs = 4 };

// How a scenario is reported: skew (LINEAR / ABS), tail (any other scenario
// whose dampening factor is not 1: Derive's extended moves) or regular.
enum class ScenarioKind : std::int8_t { regular = 0, tail = 1, skew = 2 };

struct Scenario {
  double spot_shock = 1.0;  // multiplies the spot (forward variable portion)
  VolShock vol = VolShock::none;
  double dampening = 1.0;   // the scenario's P&L counts at this factor

  ScenarioKind kind() const noexcept;
};

struct SkewShockParams {
  double linear_scale_cap = 0.15, linear_cbase = -0.05;
  double abs_scale_cap = 0.15, abs_cbase = -0.05;
  double min_k_star = 0.01, width_scale = 4.0;
  double vol_param_static = 0.6, vol_param_scale = -0.1;
};

struct VolShockParams {
  double vol_range_up = 0.5, vol_range_down = 0.275;
  double short_term_power = 0.3, long_term_power = 0.13;
  double dte_floor_days = 1.0;
  double min_vol_up = 0.45;  // MIN_VOL_EVAL_SHOCKED
};

struct MarginParams {
  double mm_loss_factor = 0.8, im_loss_factor = 1.0;
  double short_rate_mult_scale = 0.5, long_rate_mult_scale = 1.0;
  double short_rate_add_scale = 0.08, long_rate_add_scale = 0.08;
  double base_static_discount = 0.95;      // positive expiry values
  double base_static_discount_neg = 1.04;  // negative expiry values
};

struct BasisContingencyParams {
  double scenario_spot_up = 1.045, scenario_spot_down = 0.955;
  double add_factor = 0.5, mult_factor = 2.0;
};

struct OtherContingencyParams {
  double peg_loss_threshold = 0.98, peg_loss_factor = 2.0;
  double conf_threshold = 0.55, conf_margin = 1.0;
  double mm_perp_percent = 0.015, im_perp_percent = 0.005;
  double mm_option_percent = 0.003, im_option_percent = 0.002;
};

struct Params {
  std::vector<Scenario> scenarios;
  SkewShockParams skew;
  VolShockParams vol;
  MarginParams margin;
  BasisContingencyParams basis;
  OtherContingencyParams other;

  // Throws std::invalid_argument naming the field (and scenario index).
  void validate() const;
};

// One expiry slice of the SVI volatility surface (raw SVI in log-moneyness).
struct Svi {
  double a = kNaN, b = kNaN, rho = kNaN, m = kNaN, sigma = kNaN;
  double forward = kNaN;  // the forward the slice is quoted on
  double tau = kNaN;      // the slice's time to expiry, years
  bool present() const noexcept;  // false when all parameters are NaN (no slice)
  // Volatility at strike K (see the method above); NaN if the slice gives a
  // negative total variance there.
  double vol(double strike) const noexcept;
};

struct Expiry {
  double seconds = 0.0;  // seconds to expiry (0 when expired)
  double forward = kNaN;
  double forward_fixed = kNaN;  // fixed portion; NaN: Derive's settlement-window rule
  double forward_confidence = 1.0;
  double rate = 0.0;  // continuously compounded; floored at 0 as Derive does
  double rate_confidence = 1.0;
  Svi svi;  // used for options without their own vol
  double vol_confidence = 1.0;
};

struct Option {
  std::size_t expiry = 0;  // index into Portfolio::expiries
  double strike = kNaN;
  bool is_call = true;
  double amount = 0.0;  // signed contracts, long > 0
  double vol = kNaN;    // NaN: from the expiry's SVI slice
};

struct Collateral {
  std::string name;
  double amount = 0.0;  // units held (>= 0)
  double price = kNaN;  // quote-currency price of one unit
  double confidence = 1.0;
  double mm_haircut = 0.0, im_haircut = 0.0;
  bool risk_cancelling = false;  // moves with the underlying in scenarios
};

struct Portfolio {
  double cash = 0.0;
  double spot = kNaN;
  double spot_confidence = 1.0;
  double stable_price = 1.0;  // value of the cash asset's stable coin
  double perp_amount = 0.0;
  double perp_price = 0.0;
  double perp_confidence = 1.0;
  double unrealised_perp_pnl = 0.0, unrealised_funding = 0.0;
  std::vector<Expiry> expiries;
  std::vector<Option> options;
  std::vector<Collateral> collaterals;

  // Throws std::invalid_argument naming the field and index.
  void validate() const;
};

struct ExpiryResult {
  double tau = 0.0;
  double forward_fixed = 0.0, forward_variable = 0.0;
  double discount = 1.0;
  double mtm = 0.0;             // sum amount x Black-76 value
  double discounted_mtm = 0.0;  // mtm x the static discount of its sign
  double static_discount_pos = 0.0, static_discount_neg = 0.0;
  double vol_shock_up = 1.0, vol_shock_down = 1.0;  // vol multipliers
  double k_star = 0.0, linear_cap = 0.0, abs_cap = 0.0;
  double naked_shorts = 0.0, gross_options = 0.0;
  double min_confidence = 1.0;
  double basis_contingency = 0.0;       // this expiry's share (<= 0)
  double confidence_contingency = 0.0;  // IM, on its gross option notional
};

struct OptionResult {
  double vol = 0.0;                     // mark volatility
  double vol_up = 0.0, vol_down = 0.0;  // evaluated in up / down scenarios
  double price = 0.0;                   // Black-76 value of one contract
  double k = 0.0;                       // ln(K / F)
  double linear_multiplier = 1.0, abs_multiplier = 1.0;  // skew vol multipliers
};

struct Result {
  double im = 0.0, mm = 0.0;  // surplus: MtM + cash - requirement
  double mtm = 0.0;           // portfolio MtM including cash
  double option_mtm = 0.0, collateral_mtm = 0.0, perp_mtm = 0.0;
  double worst = 0.0;         // min(basis contingency, scenario P&Ls)
  long worst_scenario = -1;   // index into Params::scenarios; -1: the basis contingency
  double worst_regular = 0.0, worst_tail = 0.0, worst_skew = 0.0;
  long worst_regular_scenario = -1, worst_tail_scenario = -1, worst_skew_scenario = -1;
  double basis_contingency = 0.0;  // <= 0
  double im_factor = 1.0;          // IM loss factor including the peg loss
  // Contingencies (amounts >= 0 subtracted from the surplus).
  double mm_perp = 0.0, im_perp = 0.0;
  double mm_option = 0.0, im_option = 0.0;
  double mm_collateral = 0.0, im_collateral = 0.0;
  double confidence = 0.0;  // IM: perps + expiries + collaterals
  double mm_contingency = 0.0, im_contingency = 0.0;
  std::vector<double> scenario_pnl;  // one per scenario (dampened; <0 is a loss)
  std::vector<ScenarioKind> scenario_kind;
  std::vector<ExpiryResult> expiries;
  std::vector<OptionResult> options;
  std::vector<double> collateral_values;
};

// Evaluates the portfolio; validates both arguments first.
Result evaluate(const Params& params, const Portfolio& portfolio);

}  // namespace marginkit::derive
