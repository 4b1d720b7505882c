// Scenario sets for portfolio margin: price moves x volatility moves per
// underlying, as data. Presets (Deribit-style, SPAN 16, the simple grid) are
// parameter sets built in Python (marginkit.scenarios); the core only applies them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace marginkit {

// How an option's volatility moves in an "up" or "down" scenario.
//   g = (pivot_days / max(DTE, floor_days))^(DTE <= pivot_days ? p_short : p_long)
//       when scale_by_dte, else 1
// (At DTE == pivot_days the power only matters when floor_days > pivot_days;
// Derive's PMRM takes the short-term power there.)
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

  // g above: the days-to-expiry scale of the shock (1 unless scale_by_dte).
  double dte_scale(double dte_days) const noexcept;
  double shocked(double vol, int direction, double dte_days) const noexcept;
  // The shocked vol for a given g (dte_scale once per expiry, then each direction).
  double shocked_by(double vol, int direction, double g) const noexcept;
};

struct Scenario {
  double move = 0.0;       // the underlying moves to S (1 + move)
  std::int8_t vol = 0;     // -1 down, 0 unchanged, +1 up
  double weight = 1.0;     // scenario P&L counts at this weight (damping, SPAN 35 %)
};

// How a set turns scenario P&L into a loss: the largest weighted loss (grids),
// or value-at-risk / expected shortfall at `confidence` over equally likely
// scenarios (historical sets; weights must be 1).
enum class LossMeasure : std::int8_t { worst = 0, var = 1, es = 2 };

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
  LossMeasure measure = LossMeasure::worst;
  double confidence = 0.99;
  // Joint (historical) sets move several underlyings together: scenario s moves
  // joint_underlyings[j] by joint_moves[j * size + s] (scenarios[s].move is then
  // unused), and positions on all of them are margined as one group. Add-on
  // charges are per underlying and must be 0 for joint sets.
  std::vector<int> joint_underlyings;
  std::vector<double> joint_moves;

  bool joint() const noexcept { return !joint_underlyings.empty(); }
  // The move of `underlying` in scenario s.
  double move(int underlying, std::size_t s) const noexcept;
  // The loss (>= 0) of the P&L vector under this set's measure; `at` receives
  // the scenario the loss is read at (worst, or the VaR quantile).
  double loss(const double* pnl, int* at = nullptr) const;

  // Throws std::invalid_argument with a reason.
  void validate() const;
};

}  // namespace marginkit
