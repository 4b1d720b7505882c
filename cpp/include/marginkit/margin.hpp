// Per-position requirement models ("presets are data"), and tiered collateral.
//
// Every model maps one position (signed size in contracts, the instrument's
// constants and the current prices) to an initial and a maintenance requirement
// in the instrument's settlement currency. Models are parameter sets, never code
// paths per venue:
//   * linear_rate  (Deribit futures): rate = base + slope * size_in_base_units,
//                  requirement = size_base * rate, valued at the index price.
//   * tiered       (Binance brackets): by notional, MM = notional * mmr - cum,
//                  IM = notional * imr - cum_im; cums make both continuous.
//   * option_standard (Deribit / bit.com / Bybit standard option margin), per
//                  unit of underlying, U = index, OTM amount in quote currency:
//                  MM = max(mm * U, mm_mark * mark) + mark + liq_fee * U
//                  IM = max(max(im_otm * U - OTM, im_min * U) + mark, MM)
//                  (mm_mark is 0 for Deribit calls and 0.075 for its puts). Long
//                  options: IM = their value at mark (the premium), MM = 0.
// Two venue mechanisms are parameters of linear_rate and tiered models:
//   * a maintenance fraction (dYdX liquidity tiers): MM rates = IM rates x
//     mm_fraction, derived once in finalize() (rounded down to rate_quantum, the
//     venue's ppm, when set);
//   * an open-interest IMF (dYdX OIMF): with the venue's open interest notional
//     OI (market data, settlement currency), the IM rate r becomes
//     r + (1 - r) (OI - oi_lower) / (oi_upper - oi_lower), clamped to [r, 1]
//     (the increase rounded down to rate_quantum when set; oi_upper = 0: off).
// Amounts are rounded conservatively by the caller (never in the account's favour).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace marginkit {

enum class InstrumentKind : std::int8_t { spot = 0, perpetual = 1, future = 2, option = 3 };

enum class ModelKind : std::int8_t { linear_rate = 0, tiered = 1, option_standard = 2, none = 3 };

struct Bracket {
  double floor = 0.0;  // notional from which the bracket applies
  double mmr = 0.0;
  double imr = 0.0;
  double cum_mm = 0.0;  // derived: keeps MM continuous at the floors
  double cum_im = 0.0;  // derived: keeps IM continuous at the floors
};

struct MarginModel {
  std::string name;
  ModelKind kind = ModelKind::none;
  // linear_rate
  double im_base = 0.0, im_slope = 0.0, mm_base = 0.0, mm_slope = 0.0;
  // tiered (sorted by floor, first floor 0)
  std::vector<Bracket> brackets;
  // tiered: value the position at its average entry price instead of the mark
  // (Bybit's isolated margin: IM and MM on the entry value); orders at the mark.
  bool value_at_entry = false;
  // option_standard
  double im_otm = 0.15, im_min = 0.10, mm = 0.075, mm_mark_call = 0.0, mm_mark_put = 0.075,
         liq_fee = 0.0;
  // linear_rate, tiered: MM rates derived from IM rates (< 0: MM rates as given).
  double mm_fraction = -1.0;
  // Step to which derived or adjusted rates round down (0: exact).
  double rate_quantum = 0.0;
  // Open-interest caps (notional, settlement currency); oi_upper = 0: no adjustment.
  double oi_lower = 0.0, oi_upper = 0.0;

  // Validates and derives the cums; throws std::invalid_argument with a reason.
  void finalize();
};

// The constants of one instrument that requirements depend on.
struct InstrumentTerms {
  InstrumentKind kind = InstrumentKind::perpetual;
  bool inverse = false;
  double contract_size = 1.0;  // linear: base units per contract; inverse: quote face value
  double strike = 0.0;
  std::int8_t cp = 0;  // options: +1 call, -1 put
};

struct Requirement {
  double im = 0.0;
  double mm = 0.0;
};

// Requirement of a position of signed size q (contracts) in settlement currency.
// mark: the instrument's mark (quote per base unit for linear futures and linear
// options; for inverse options the mark is in coin per unit); index: the
// underlying's index price in quote currency.
// open_interest: the venue's open interest in the instrument, in contracts (its
// notional at the mark drives the model's open-interest IMF, if any).
Requirement position_requirement(const MarginModel& m, const InstrumentTerms& t, double q,
                                 double mark, double index, double open_interest = 0.0) noexcept;

// The IM rate `rate` raised by the model's open-interest IMF at an open interest
// notional `oi_notional` (settlement currency): `rate` itself when the model has
// no caps or oi_notional <= oi_lower, 1 (or `rate` if larger) from oi_upper on.
double oi_adjusted_rate(const MarginModel& m, double rate, double oi_notional) noexcept;

// The requirement of a position together with its resting orders: the worst of
// all bids filling (q + bids) and all asks filling (q - asks), both including q.
// `entry` is the position's average entry (used by value_at_entry models).
Requirement requirement_with_orders(const MarginModel& m, const InstrumentTerms& t, double q,
                                    double bids, double asks, double mark, double index,
                                    double entry, double open_interest = 0.0) noexcept;

// Breakpoints of the model in |q| (contracts) at these prices: where the
// requirement's formula changes (bracket floors). Used by exact solvers.
std::vector<double> size_breakpoints(const MarginModel& m, const InstrumentTerms& t,
                                     double mark);

// Tiered (marginal, like income tax) haircuts of a collateral asset, by amount.
struct HaircutTier {
  double upto = std::numeric_limits<double>::infinity();  // amount up to which it applies
  double haircut = 0.0;                                     // in [0, 1]
};

// Value in quote currency of `amount` units at `price`: debts (amount < 0) count
// in full, holdings tier by tier at (1 - haircut). Tiers must be increasing.
double collateral_value(const std::vector<HaircutTier>& tiers, double amount,
                        double price) noexcept;

// Weights of one asset beyond its haircut tiers (Drift-style spot margin).
//   liability_weight (>= 1): a debt counts at amount x price x weight.
//   imf_factor (>= 0): size weights shrinking with sqrt(size) (Drift's IMF):
//     a holding of n units counts at most n x 1.1 / (1 + imf sqrt(n)) (the
//     whole holding, not marginally); a debt of n units at
//     max(liability_weight, 0.8 liability_weight + imf sqrt(n)).
//   weight_quantum (>= 0): the average weight of a holding rounds down, that of
//     a debt up, to this step (Drift: 1e-4); 0: exact.
struct AssetWeights {
  double liability_weight = 1.0;
  double imf_factor = 0.0;
  double weight_quantum = 0.0;
};

// Drift's size-discounted asset weight of a holding of n units (base weight w).
double asset_size_weight(double w, double imf_factor, double n) noexcept;
// Drift's size-premium liability weight of a debt of n units (base weight w).
double liability_size_weight(double w, double imf_factor, double n) noexcept;

// Value in quote currency of `amount` units at `price` with haircut tiers and
// weights: holdings by collateral_value() capped by the size weight, debts at
// their liability weight; average weights rounded conservatively.
double weighted_value(const std::vector<HaircutTier>& tiers, const AssetWeights& w,
                      double amount, double price) noexcept;

// Round a requirement up / an asset value down to `quantum` (0 = no rounding).
namespace detail {
// Multiples of the quantum, printed as the decimal they stand for: with
// quantum = 10^-k, n / 10^k is the double nearest to that decimal (n * q is not).
inline double scale_back(double n, double quantum) noexcept {
  const double inv = 1.0 / quantum;
  return inv == std::nearbyint(inv) ? n / inv : n * quantum;
}
// A result within float error of a multiple is that multiple: a few ulps of
// error in an exact amount must not cost (or give) a whole cent. The slack is
// relative (1e-14), so a tiny but real requirement still rounds up to a quantum.
inline double slack(double n) noexcept { return std::fabs(n) * 1e-14; }
}  // namespace detail

inline double round_up(double x, double quantum) noexcept {
  if (!(quantum > 0.0) || !std::isfinite(x)) return x;
  const double n = x / quantum;
  return detail::scale_back(std::ceil(n - detail::slack(n)), quantum) + 0.0;  // never -0
}

inline double round_down(double x, double quantum) noexcept {
  if (!(quantum > 0.0) || !std::isfinite(x)) return x;
  const double n = x / quantum;
  return detail::scale_back(std::floor(n + detail::slack(n)), quantum) + 0.0;
}

}  // namespace marginkit
