#include "marginkit/dynamic.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace marginkit {

namespace {
void positive(const char* name, double x) {
  if (!(std::isfinite(x) && x > 0.0)) {
    throw std::invalid_argument(std::string(name) + " must be finite and > 0");
  }
}
}  // namespace

EwmaRange::EwmaRange(double half_life, double multiplier, double floor, double cap,
                     double max_step, double horizon, std::optional<double> initial_vol) {
  positive("half_life", half_life);
  positive("multiplier", multiplier);
  positive("floor", floor);
  positive("cap", cap);
  positive("max_step", max_step);
  positive("horizon", horizon);
  if (floor > cap) throw std::invalid_argument("floor must not exceed cap");
  lambda_ = std::pow(0.5, 1.0 / half_life);
  multiplier_ = multiplier;
  floor_ = floor;
  cap_ = cap;
  max_step_ = max_step;
  horizon_ = horizon;
  last_ = std::numeric_limits<double>::quiet_NaN();
  variance_ = std::numeric_limits<double>::quiet_NaN();
  range_ = floor;
  if (initial_vol) {
    if (!(std::isfinite(*initial_vol) && *initial_vol >= 0.0)) {
      throw std::invalid_argument("initial_vol must be finite and >= 0");
    }
    variance_ = *initial_vol * *initial_vol;
    range_ = target();
  }
}

double EwmaRange::vol() const noexcept { return std::sqrt(variance_); }

double EwmaRange::target() const noexcept {
  const double v = std::isnan(variance_) ? 0.0 : std::sqrt(variance_);
  return std::clamp(multiplier_ * v * std::sqrt(horizon_), floor_, cap_);
}

double EwmaRange::update(double price) {
  positive("price", price);
  if (!std::isnan(last_)) {
    const double r = std::log(price / last_);
    variance_ = std::isnan(variance_) ? r * r : lambda_ * variance_ + (1.0 - lambda_) * r * r;
    const double step = max_step_ * range_;
    range_ = std::clamp(std::clamp(target(), range_ - step, range_ + step), floor_, cap_);
  }
  last_ = price;
  return range_;
}

}  // namespace marginkit
