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

// Requirement curves. Once the prices are known, every model is a function of
// the position's size alone, of one form: with x = |q| x scale (base size,
// notional or option units) and the piece k whose floor is the last <= x,
//   IM = x (im_a[k] + im_b x) value - im_c[k],   MM likewise,
// linear_rate: one piece with slopes, value = the index (1 when inverse);
// tiered: one piece per bracket (value 1, no slopes); option_standard: one
// piece per side (a short pays the standard margin, a long its premium, MM 0).
// Evaluating a curve takes no branch on the model, so a book mixing models
// costs no mispredictions; every requirement (batch, checks, liquidation) is
// computed from one, so all agree to the bit.
inline constexpr std::size_t kMaxBrackets = 64;  // curve tables are padded to this
inline constexpr std::size_t kShortCurve = 16;   // pieces eval_curve16 covers

// The IM and MM constants side by side (im_a, mm_a, then im_c, mm_c): a
// position's two requirements are then evaluated as one pair, each constant
// pair loaded as it lies.
struct CurvePiece {
  double im_a = 0.0, mm_a = 0.0, im_c = 0.0, mm_c = 0.0;
};

// Floors of a one-piece curve: 0, then +inf.
const double* single_piece_floors() noexcept;

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

  // Derived by finalize(): the curve tables (kMaxBrackets floors, +inf padded,
  // and pieces; empty for option_standard, whose pieces depend on the prices).
  std::vector<double> curve_floors;
  std::vector<CurvePiece> curve_pieces;

  // Validates and derives the cums and curve tables; throws
  // std::invalid_argument with a reason.
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

// A model's requirement curve at fixed prices (see above).
struct RequirementCurve {
  const double* floors = nullptr;             // kMaxBrackets, ascending, +inf padded
  const CurvePiece* pieces[2] = {nullptr, nullptr};  // [0]: short (q < 0), [1]: long
  double scale = 0.0, value = 1.0, im_b = 0.0, mm_b = 0.0;
};

// The curve of model m for an instrument at these prices (arguments as for
// position_requirement). Option pieces depend on the prices: they are written to
// own[0..1], which must outlive the curve.
RequirementCurve requirement_curve(const MarginModel& m, const InstrumentTerms& t, double mark,
                                   double index, CurvePiece own[2]) noexcept;

// The piece of x: the last padded floor <= x, counted without branches and with
// few instructions (a batch pass is bound by their number): count16 counts
// floors f[1..15] <= x, the piece of a curve of at most 16 pieces, in two
// steps. Floors ascend, so if f[8] <= x so do f[1..8] and the rest is among
// f[9..15], else it is among f[1..7]; either way one block of 8 is compared,
// two at a time (GCC/Clang vector extensions: SSE2, NEON), summed as a tree.
// curve_piece adds the block of 16 for longer curves. A NaN x gives piece 0.
inline std::size_t count16(const double* f, double x) noexcept {
  typedef double v2 __attribute__((vector_size(16)));
  typedef long long m2 __attribute__((vector_size(16)));
  const std::size_t hi = f[8] <= x ? 8 : 0;
  const double* g = f + hi;  // g[0] <= x unless x is NaN (f[0] = 0, or f[8] <= x)
  const v2 xx = {x, x};
  m2 c[4];
  for (int i = 0; i < 4; ++i) {
    v2 v;
    __builtin_memcpy(&v, g + 2 * i, sizeof v);
    c[i] = v <= xx;  // -1 where g <= x
  }
  const m2 s = (c[0] + c[1]) + (c[2] + c[3]);
  const auto n = static_cast<std::size_t>(-(s[0] + s[1]));  // g[0..7] <= x
  return hi + n - (n != 0 ? 1 : 0);
}
inline std::size_t curve_piece(const double* floors, double x) noexcept {
  static_assert(kMaxBrackets == 64, "four blocks of 16");
  const std::size_t block = (floors[16] <= x ? 1 : 0) + (floors[32] <= x ? 1 : 0) +
                            (floors[48] <= x ? 1 : 0);
  return 16 * block + count16(floors + 16 * block, x);
}

// The requirement of a position of signed size q != 0 on a curve (no
// open-interest adjustment), given its piece k.
inline Requirement eval_piece(const RequirementCurve& c, double q, double x,
                              std::size_t k) noexcept {
  const CurvePiece& p = c.pieces[q > 0.0 ? 1 : 0][k];
  return {x * (p.im_a + c.im_b * x) * c.value - p.im_c,
          x * (p.mm_a + c.mm_b * x) * c.value - p.mm_c};
}
inline Requirement eval_curve(const RequirementCurve& c, double q) noexcept {
  const double x = std::fabs(q) * c.scale;
  return eval_piece(c, q, x, curve_piece(c.floors, x));
}
// The same for a curve of at most 16 pieces (one level of the search).
inline Requirement eval_curve16(const RequirementCurve& c, double q) noexcept {
  const double x = std::fabs(q) * c.scale;
  return eval_piece(c, q, x, count16(c.floors, x));
}

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
// A quantum with its derived constants: batch passes round every account with
// one multiplication and one division instead of three divisions.
struct Quantum {
  double q = 0.0;
  double inv = 0.0;       // 1 / q
  bool decimal = false;   // 1 / q is an integer (q = 10^-k): multiples print as decimals
  Quantum() = default;
  explicit Quantum(double quantum) noexcept : q(quantum) {
    if (q > 0.0) {
      inv = 1.0 / q;
      decimal = inv == std::nearbyint(inv);
    }
  }
};

namespace detail {
// x in multiples of the quantum (x q^-1: exact for decimal quanta, whose q is
// not a double).
inline double multiples(double x, const Quantum& q) noexcept {
  return q.decimal ? x * q.inv : x / q.q;
}
// Multiples of the quantum, printed as the decimal they stand for: with
// quantum = 10^-k, n / 10^k is the double nearest to that decimal (n * q is not).
inline double scale_back(double n, const Quantum& q) noexcept {
  return q.decimal ? n / q.inv : n * q.q;
}
// A result within float error of a multiple is that multiple: a few ulps of
// error in an exact amount must not cost (or give) a whole cent. The slack is
// relative (1e-14), so a tiny but real requirement still rounds up to a quantum.
inline double slack(double n) noexcept { return std::fabs(n) * 1e-14; }
}  // namespace detail

inline double round_up(double x, const Quantum& q) noexcept {
  if (!(q.q > 0.0) || !std::isfinite(x)) return x;
  const double n = detail::multiples(x, q);
  return detail::scale_back(std::ceil(n - detail::slack(n)), q) + 0.0;  // never -0
}

inline double round_down(double x, const Quantum& q) noexcept {
  if (!(q.q > 0.0) || !std::isfinite(x)) return x;
  const double n = detail::multiples(x, q);
  return detail::scale_back(std::floor(n + detail::slack(n)), q) + 0.0;
}

namespace detail {
typedef double f64x2 __attribute__((vector_size(16)));
typedef long long i64x2 __attribute__((vector_size(16)));
inline f64x2 abs2(f64x2 x) noexcept {
  return reinterpret_cast<f64x2>(reinterpret_cast<i64x2>(x) & ~(i64x2{1, 1} << 63));
}
// std::ceil of each lane, without a branch (the engine is built for baseline
// x86-64, which has no rounding instruction): below 2^52 in magnitude, adding
// and taking away 2^52 with n's sign rounds n to an integer (the nearest),
// raised by 1 if it fell below n; from 2^52 on, and for inf and NaN, n is its
// own ceiling. A zero ceiling may come out as +0 where std::ceil gives -0;
// round_up2 adds 0.0 at the end, which makes both +0.
inline f64x2 ceil2(f64x2 n) noexcept {
  const f64x2 big = {0x1p52, 0x1p52};
  const i64x2 sign = reinterpret_cast<i64x2>(n) & (i64x2{1, 1} << 63);
  const f64x2 magic = reinterpret_cast<f64x2>(sign | reinterpret_cast<i64x2>(big));
  f64x2 r = (n + magic) - magic;
  r += reinterpret_cast<f64x2>((r < n) & reinterpret_cast<i64x2>(f64x2{1.0, 1.0}));
  return abs2(n) < big ? r : n;
}
}  // namespace detail

// round_up of two amounts at once: each lane exactly as round_up(x, q) gives
// it, in about the instructions of one (batch passes round IM and MM together).
inline detail::f64x2 round_up2(detail::f64x2 x, const Quantum& q) noexcept {
  using detail::f64x2;
  if (!(q.q > 0.0)) return x;
  const f64x2 n = q.decimal ? x * q.inv : x / q.q;
  const f64x2 c = detail::ceil2(n - detail::abs2(n) * 1e-14);
  const f64x2 r = (q.decimal ? c / q.inv : c * q.q) + 0.0;
  const f64x2 finite = {std::numeric_limits<double>::max(), std::numeric_limits<double>::max()};
  return detail::abs2(x) <= finite ? r : x;
}

// An account's money figures, rounded so that none favours the account:
// equity down, IM and MM up (round_down, and round_up of each to the bit, the
// pair at once without a libm call). Equity as -round_up2(-e) would avoid
// floor's call too, to the bit, but measured 8 % slower on the cross pass.
// The batch pass rounds a vector of accounts at once by the same operations
// (the kernels' block_figures): change both.
struct MoneyFigures {
  double equity, im, mm;
};
inline MoneyFigures round_figures(double equity, double im, double mm, const Quantum& q) noexcept {
  const detail::f64x2 up = round_up2(detail::f64x2{im, mm}, q);
  return {round_down(equity, q), up[0], up[1]};
}

inline double round_up(double x, double quantum) noexcept {
  return round_up(x, Quantum(quantum));
}
inline double round_down(double x, double quantum) noexcept {
  return round_down(x, Quantum(quantum));
}

}  // namespace marginkit
