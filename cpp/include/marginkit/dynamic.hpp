// Dynamic margin: a price range that follows an EWMA volatility estimate.
#pragma once

#include <optional>

namespace marginkit {

// On each update with a price, the variance estimate moves to
// lambda var + (1 - lambda) r^2 (r the log return, lambda = 0.5^(1/half_life),
// half-life in updates) and the range to multiplier x vol x sqrt(horizon),
// clamped to [floor, cap] and moved at most max_step (relative to the current
// range) per update, so margin cannot jump on one print.
class EwmaRange {
 public:
  // Throws std::invalid_argument unless every parameter is finite and > 0 and
  // floor <= cap; initial_vol (optional, >= 0) seeds the estimate.
  EwmaRange(double half_life, double multiplier, double floor, double cap, double max_step,
            double horizon, std::optional<double> initial_vol);

  double update(double price);  // throws unless price is finite and > 0
  double range() const noexcept { return range_; }
  double vol() const noexcept;  // current volatility estimate per update (NaN before one)

 private:
  double target() const noexcept;
  double lambda_, multiplier_, floor_, cap_, max_step_, horizon_;
  double variance_;  // NaN until the first return (unless seeded)
  double range_;
  double last_;      // NaN before the first price
};

}  // namespace marginkit
