// Scenario sets for portfolio margin: price moves x volatility moves per
// underlying, as data. Presets (Deribit-style, SPAN 16, the simple grid) are
// parameter sets built in Python (marginkit.scenarios); the core only applies them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace marginkit {

// How an option's volatility moves in an "up" or "down" scenario.
//   g = (pivot_days / max(DTE, floor_days))^(DTE < pivot_days ? p_short : p_long)
//       when scale_by_dte, else 1
//   relative: up: max(vol (1 + up g), min_vol_up); down: max(vol (1 - down g), 0)
//   absolute: up: max(vol + up g, min_vol_up);     down: max(vol - down g, 0)
struct VolShockModel {
  double up = 0.0;
  double down = 0.0;
  bool relative = true;
  bool scale_by_dte = false;
  double pivot_days = 30.0;
  double floor_days = 1.0;
  double p_short = 0.30;
  double p_long = 0.13;
  double min_vol_up = 0.0;

  double shocked(double vol, int direction, double dte_days) const noexcept;
};

struct Scenario {
  double move = 0.0;       // the underlying moves to S (1 + move)
  std::int8_t vol = 0;     // -1 down, 0 unchanged, +1 up
  double weight = 1.0;     // scenario P&L counts at this weight (damping, SPAN 35 %)
};

// Portfolio requirement of one underlying:
//   MM = max(0, -min_s weight_s x P&L_s) + short_option_charge x index x net short
//        option units + delta_charge x index x |net delta units|
//   IM = MM x im_factor
struct ScenarioSet {
  std::string name;
  std::vector<Scenario> scenarios;
  VolShockModel vol;
  double im_factor = 1.0;
  double short_option_charge = 0.0;
  double delta_charge = 0.0;

  // Throws std::invalid_argument with a reason.
  void validate() const;
};

}  // namespace marginkit
