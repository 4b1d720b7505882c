// Derive (Lyra v2) PMRM_2 portfolio margin: the core's parameter, portfolio and
// result structs as plain attribute classes, and the evaluation.
#include <pybind11/stl.h>

#include <stdexcept>

#include "bindings.hpp"
#include "marginkit/derive_pmrm.hpp"

namespace marginkit::bindings {

namespace {

template <class T>
py::array_t<double> to_array(const std::vector<T>& v) {
  py::array_t<double> out(static_cast<py::ssize_t>(v.size()));
  double* p = out.mutable_data();
  for (std::size_t i = 0; i < v.size(); ++i) p[i] = static_cast<double>(v[i]);
  return out;
}

}  // namespace

void register_derive(py::module_& m) {
  namespace d = marginkit::derive;

  py::class_<d::Scenario>(m, "DeriveScenario")
      .def(py::init<>())
      .def_readwrite("spot_shock", &d::Scenario::spot_shock)
      .def_property(
          "vol", [](const d::Scenario& s) { return static_cast<int>(s.vol); },
          [](d::Scenario& s, int v) {
            if (v < 0 || v > 4) throw py::value_error("vol must be 0 (none) ... 4 (abs)");
            s.vol = static_cast<d::VolShock>(v);
          })
      .def_readwrite("dampening", &d::Scenario::dampening);

  py::class_<d::SkewShockParams>(m, "DeriveSkewShockParams")
      .def(py::init<>())
      .def_readwrite("linear_scale_cap", &d::SkewShockParams::linear_scale_cap)
      .def_readwrite("linear_cbase", &d::SkewShockParams::linear_cbase)
      .def_readwrite("abs_scale_cap", &d::SkewShockParams::abs_scale_cap)
      .def_readwrite("abs_cbase", &d::SkewShockParams::abs_cbase)
      .def_readwrite("min_k_star", &d::SkewShockParams::min_k_star)
      .def_readwrite("width_scale", &d::SkewShockParams::width_scale)
      .def_readwrite("vol_param_static", &d::SkewShockParams::vol_param_static)
      .def_readwrite("vol_param_scale", &d::SkewShockParams::vol_param_scale);

  py::class_<d::VolShockParams>(m, "DeriveVolShockParams")
      .def(py::init<>())
      .def_readwrite("vol_range_up", &d::VolShockParams::vol_range_up)
      .def_readwrite("vol_range_down", &d::VolShockParams::vol_range_down)
      .def_readwrite("short_term_power", &d::VolShockParams::short_term_power)
      .def_readwrite("long_term_power", &d::VolShockParams::long_term_power)
      .def_readwrite("dte_floor_days", &d::VolShockParams::dte_floor_days)
      .def_readwrite("min_vol_up", &d::VolShockParams::min_vol_up);

  py::class_<d::MarginParams>(m, "DeriveMarginParams")
      .def(py::init<>())
      .def_readwrite("mm_loss_factor", &d::MarginParams::mm_loss_factor)
      .def_readwrite("im_loss_factor", &d::MarginParams::im_loss_factor)
      .def_readwrite("short_rate_mult_scale", &d::MarginParams::short_rate_mult_scale)
      .def_readwrite("long_rate_mult_scale", &d::MarginParams::long_rate_mult_scale)
      .def_readwrite("short_rate_add_scale", &d::MarginParams::short_rate_add_scale)
      .def_readwrite("long_rate_add_scale", &d::MarginParams::long_rate_add_scale)
      .def_readwrite("base_static_discount", &d::MarginParams::base_static_discount)
      .def_readwrite("base_static_discount_neg", &d::MarginParams::base_static_discount_neg);

  py::class_<d::BasisContingencyParams>(m, "DeriveBasisContingencyParams")
      .def(py::init<>())
      .def_readwrite("scenario_spot_up", &d::BasisContingencyParams::scenario_spot_up)
      .def_readwrite("scenario_spot_down", &d::BasisContingencyParams::scenario_spot_down)
      .def_readwrite("add_factor", &d::BasisContingencyParams::add_factor)
      .def_readwrite("mult_factor", &d::BasisContingencyParams::mult_factor);

  py::class_<d::OtherContingencyParams>(m, "DeriveOtherContingencyParams")
      .def(py::init<>())
      .def_readwrite("peg_loss_threshold", &d::OtherContingencyParams::peg_loss_threshold)
      .def_readwrite("peg_loss_factor", &d::OtherContingencyParams::peg_loss_factor)
      .def_readwrite("conf_threshold", &d::OtherContingencyParams::conf_threshold)
      .def_readwrite("conf_margin", &d::OtherContingencyParams::conf_margin)
      .def_readwrite("mm_perp_percent", &d::OtherContingencyParams::mm_perp_percent)
      .def_readwrite("im_perp_percent", &d::OtherContingencyParams::im_perp_percent)
      .def_readwrite("mm_option_percent", &d::OtherContingencyParams::mm_option_percent)
      .def_readwrite("im_option_percent", &d::OtherContingencyParams::im_option_percent);

  py::class_<d::Params>(m, "DeriveParams")
      .def(py::init<>())
      .def_readwrite("scenarios", &d::Params::scenarios)
      .def_readwrite("skew", &d::Params::skew)
      .def_readwrite("vol", &d::Params::vol)
      .def_readwrite("margin", &d::Params::margin)
      .def_readwrite("basis", &d::Params::basis)
      .def_readwrite("other", &d::Params::other);

  py::class_<d::Svi>(m, "DeriveSvi")
      .def(py::init<>())
      .def_readwrite("a", &d::Svi::a)
      .def_readwrite("b", &d::Svi::b)
      .def_readwrite("rho", &d::Svi::rho)
      .def_readwrite("m", &d::Svi::m)
      .def_readwrite("sigma", &d::Svi::sigma)
      .def_readwrite("forward", &d::Svi::forward)
      .def_readwrite("tau", &d::Svi::tau);

  py::class_<d::Expiry>(m, "DeriveExpiry")
      .def(py::init<>())
      .def_readwrite("seconds", &d::Expiry::seconds)
      .def_readwrite("forward", &d::Expiry::forward)
      .def_readwrite("forward_fixed", &d::Expiry::forward_fixed)
      .def_readwrite("forward_confidence", &d::Expiry::forward_confidence)
      .def_readwrite("rate", &d::Expiry::rate)
      .def_readwrite("rate_confidence", &d::Expiry::rate_confidence)
      .def_readwrite("svi", &d::Expiry::svi)
      .def_readwrite("vol_confidence", &d::Expiry::vol_confidence);

  py::class_<d::Option>(m, "DeriveOption")
      .def(py::init<>())
      .def_readwrite("expiry", &d::Option::expiry)
      .def_readwrite("strike", &d::Option::strike)
      .def_readwrite("is_call", &d::Option::is_call)
      .def_readwrite("amount", &d::Option::amount)
      .def_readwrite("vol", &d::Option::vol);

  py::class_<d::Collateral>(m, "DeriveCollateral")
      .def(py::init<>())
      .def_readwrite("name", &d::Collateral::name)
      .def_readwrite("amount", &d::Collateral::amount)
      .def_readwrite("price", &d::Collateral::price)
      .def_readwrite("confidence", &d::Collateral::confidence)
      .def_readwrite("mm_haircut", &d::Collateral::mm_haircut)
      .def_readwrite("im_haircut", &d::Collateral::im_haircut)
      .def_readwrite("risk_cancelling", &d::Collateral::risk_cancelling);

  py::class_<d::Portfolio>(m, "DerivePortfolio")
      .def(py::init<>())
      .def_readwrite("cash", &d::Portfolio::cash)
      .def_readwrite("spot", &d::Portfolio::spot)
      .def_readwrite("spot_confidence", &d::Portfolio::spot_confidence)
      .def_readwrite("stable_price", &d::Portfolio::stable_price)
      .def_readwrite("perp_amount", &d::Portfolio::perp_amount)
      .def_readwrite("perp_price", &d::Portfolio::perp_price)
      .def_readwrite("perp_confidence", &d::Portfolio::perp_confidence)
      .def_readwrite("unrealised_perp_pnl", &d::Portfolio::unrealised_perp_pnl)
      .def_readwrite("unrealised_funding", &d::Portfolio::unrealised_funding)
      .def_readwrite("expiries", &d::Portfolio::expiries)
      .def_readwrite("options", &d::Portfolio::options)
      .def_readwrite("collaterals", &d::Portfolio::collaterals);

  py::class_<d::ExpiryResult>(m, "DeriveExpiryResult")
      .def_readonly("tau", &d::ExpiryResult::tau)
      .def_readonly("forward_fixed", &d::ExpiryResult::forward_fixed)
      .def_readonly("forward_variable", &d::ExpiryResult::forward_variable)
      .def_readonly("discount", &d::ExpiryResult::discount)
      .def_readonly("mtm", &d::ExpiryResult::mtm)
      .def_readonly("discounted_mtm", &d::ExpiryResult::discounted_mtm)
      .def_readonly("static_discount_pos", &d::ExpiryResult::static_discount_pos)
      .def_readonly("static_discount_neg", &d::ExpiryResult::static_discount_neg)
      .def_readonly("vol_shock_up", &d::ExpiryResult::vol_shock_up)
      .def_readonly("vol_shock_down", &d::ExpiryResult::vol_shock_down)
      .def_readonly("k_star", &d::ExpiryResult::k_star)
      .def_readonly("linear_cap", &d::ExpiryResult::linear_cap)
      .def_readonly("abs_cap", &d::ExpiryResult::abs_cap)
      .def_readonly("naked_shorts", &d::ExpiryResult::naked_shorts)
      .def_readonly("gross_options", &d::ExpiryResult::gross_options)
      .def_readonly("min_confidence", &d::ExpiryResult::min_confidence)
      .def_readonly("basis_contingency", &d::ExpiryResult::basis_contingency)
      .def_readonly("confidence_contingency", &d::ExpiryResult::confidence_contingency);

  py::class_<d::OptionResult>(m, "DeriveOptionResult")
      .def_readonly("vol", &d::OptionResult::vol)
      .def_readonly("vol_up", &d::OptionResult::vol_up)
      .def_readonly("vol_down", &d::OptionResult::vol_down)
      .def_readonly("price", &d::OptionResult::price)
      .def_readonly("k", &d::OptionResult::k)
      .def_readonly("linear_multiplier", &d::OptionResult::linear_multiplier)
      .def_readonly("abs_multiplier", &d::OptionResult::abs_multiplier);

  py::class_<d::Result>(m, "DeriveResult")
      .def_readonly("im", &d::Result::im)
      .def_readonly("mm", &d::Result::mm)
      .def_readonly("mtm", &d::Result::mtm)
      .def_readonly("option_mtm", &d::Result::option_mtm)
      .def_readonly("collateral_mtm", &d::Result::collateral_mtm)
      .def_readonly("perp_mtm", &d::Result::perp_mtm)
      .def_readonly("worst", &d::Result::worst)
      .def_readonly("worst_scenario", &d::Result::worst_scenario)
      .def_readonly("worst_regular", &d::Result::worst_regular)
      .def_readonly("worst_tail", &d::Result::worst_tail)
      .def_readonly("worst_skew", &d::Result::worst_skew)
      .def_readonly("worst_regular_scenario", &d::Result::worst_regular_scenario)
      .def_readonly("worst_tail_scenario", &d::Result::worst_tail_scenario)
      .def_readonly("worst_skew_scenario", &d::Result::worst_skew_scenario)
      .def_readonly("basis_contingency", &d::Result::basis_contingency)
      .def_readonly("im_factor", &d::Result::im_factor)
      .def_readonly("mm_perp", &d::Result::mm_perp)
      .def_readonly("im_perp", &d::Result::im_perp)
      .def_readonly("mm_option", &d::Result::mm_option)
      .def_readonly("im_option", &d::Result::im_option)
      .def_readonly("mm_collateral", &d::Result::mm_collateral)
      .def_readonly("im_collateral", &d::Result::im_collateral)
      .def_readonly("confidence", &d::Result::confidence)
      .def_readonly("mm_contingency", &d::Result::mm_contingency)
      .def_readonly("im_contingency", &d::Result::im_contingency)
      .def_property_readonly("scenario_pnl",
                             [](const d::Result& r) { return to_array(r.scenario_pnl); })
      .def_property_readonly("scenario_kind",
                             [](const d::Result& r) {
                               std::vector<int> k(r.scenario_kind.size());
                               for (std::size_t i = 0; i < k.size(); ++i) {
                                 k[i] = static_cast<int>(r.scenario_kind[i]);
                               }
                               return k;
                             })
      .def_readonly("expiries", &d::Result::expiries)
      .def_readonly("options", &d::Result::options)
      .def_property_readonly("collateral_values",
                             [](const d::Result& r) { return to_array(r.collateral_values); });

  m.def(
      "derive_pmrm",
      [](const d::Params& params, const d::Portfolio& portfolio) {
        try {
          py::gil_scoped_release release;
          return d::evaluate(params, portfolio);
        } catch (const std::invalid_argument& e) {
          throw py::value_error(e.what());
        }
      },
      py::arg("params"), py::arg("portfolio"));
}

}  // namespace marginkit::bindings
