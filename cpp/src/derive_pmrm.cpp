// Derive (Lyra v2) PMRM_2 portfolio margin: see derive_pmrm.hpp for the method.
#include "marginkit/derive_pmrm.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>

#include "marginkit/pricing.hpp"
#include "marginkit/scenarios.hpp"

namespace marginkit::derive {

namespace {

constexpr double kYear = 365.0 * 86400.0;
constexpr double kDay = 86400.0;
constexpr double kMaxTotalVariance = 20.0;

[[noreturn]] void bad(const std::string& field, const char* reason) {
  throw std::invalid_argument(field + " " + reason);
}

std::string at(const char* list, std::size_t i, const char* field) {
  return std::string(list) + "[" + std::to_string(i) + "]." + field;
}

void finite(const std::string& field, double x) {
  if (!std::isfinite(x)) bad(field, "must be finite");
}
void nonneg(const std::string& field, double x) {
  if (!(std::isfinite(x) && x >= 0.0)) bad(field, "must be finite and >= 0");
}
void positive(const std::string& field, double x) {
  if (!(std::isfinite(x) && x > 0.0)) bad(field, "must be finite and > 0");
}
void unit(const std::string& field, double x) {
  if (!(std::isfinite(x) && x >= 0.0 && x <= 1.0)) bad(field, "must be in [0, 1]");
}

bool is_skew(VolShock v) { return v == VolShock::linear || v == VolShock::abs; }

// Derive's vol shock as the engine's volatility-shock model: relative, scaled by
// (30 days / max(DTE, floor))^p, up floored at MIN_VOL_EVAL_SHOCKED.
VolShockModel vol_model(const VolShockParams& v) {
  VolShockModel m;
  m.up = v.vol_range_up;
  m.down = v.vol_range_down;
  m.relative = true;
  m.scale_by_dte = true;
  m.pivot_days = 30.0;
  m.floor_days = v.dte_floor_days;
  m.p_short = v.short_term_power;
  m.p_long = v.long_term_power;
  m.min_vol_up = v.min_vol_up;
  return m;
}

double price(bool is_call, double forward, double strike, double tau, double vol, double rate) {
  return black76_one(is_call ? 1 : -1, forward, strike, tau, vol, rate, Settlement::linear)
      .price;
}

// Working state of one expiry.
struct Slice {
  const Expiry* in = nullptr;
  ExpiryResult* out = nullptr;
  double rate = 0.0;
  std::vector<std::size_t> options;  // indices into the portfolio's options
};

}  // namespace

ScenarioKind Scenario::kind() const noexcept {
  if (is_skew(vol)) return ScenarioKind::skew;
  return dampening == 1.0 ? ScenarioKind::regular : ScenarioKind::tail;
}

bool Svi::present() const noexcept {
  return !(std::isnan(a) && std::isnan(b) && std::isnan(rho) && std::isnan(m) &&
           std::isnan(sigma) && std::isnan(forward) && std::isnan(tau));
}

double Svi::vol(double strike) const noexcept {
  const double bound = 4.0 * std::sqrt(a + b * sigma);
  const double k = std::clamp(std::log(strike / forward), -bound, bound);
  const double x = k - m;
  const double w = std::min(a + b * (rho * x + std::sqrt(x * x + sigma * sigma)), kMaxTotalVariance);
  if (!(w >= 0.0)) return std::numeric_limits<double>::quiet_NaN();
  return std::sqrt(w / tau);
}

void Params::validate() const {
  if (scenarios.empty()) throw std::invalid_argument("scenarios must not be empty");
  for (std::size_t i = 0; i < scenarios.size(); ++i) {
    const Scenario& s = scenarios[i];
    positive(at("scenarios", i, "spot_shock"), s.spot_shock);
    nonneg(at("scenarios", i, "dampening"), s.dampening);
    const int v = static_cast<int>(s.vol);
    if (v < 0 || v > 4) bad(at("scenarios", i, "vol"), "must be none, up, down, linear or abs");
  }
  finite("skew.linear_scale_cap", skew.linear_scale_cap);
  finite("skew.linear_cbase", skew.linear_cbase);
  finite("skew.abs_scale_cap", skew.abs_scale_cap);
  finite("skew.abs_cbase", skew.abs_cbase);
  nonneg("skew.min_k_star", skew.min_k_star);
  nonneg("skew.width_scale", skew.width_scale);
  finite("skew.vol_param_static", skew.vol_param_static);
  finite("skew.vol_param_scale", skew.vol_param_scale);
  nonneg("vol.vol_range_up", vol.vol_range_up);
  nonneg("vol.vol_range_down", vol.vol_range_down);
  finite("vol.short_term_power", vol.short_term_power);
  finite("vol.long_term_power", vol.long_term_power);
  positive("vol.dte_floor_days", vol.dte_floor_days);
  nonneg("vol.min_vol_up", vol.min_vol_up);
  nonneg("margin.mm_loss_factor", margin.mm_loss_factor);
  nonneg("margin.im_loss_factor", margin.im_loss_factor);
  nonneg("margin.short_rate_mult_scale", margin.short_rate_mult_scale);
  nonneg("margin.long_rate_mult_scale", margin.long_rate_mult_scale);
  nonneg("margin.short_rate_add_scale", margin.short_rate_add_scale);
  nonneg("margin.long_rate_add_scale", margin.long_rate_add_scale);
  nonneg("margin.base_static_discount", margin.base_static_discount);
  nonneg("margin.base_static_discount_neg", margin.base_static_discount_neg);
  positive("basis.scenario_spot_up", basis.scenario_spot_up);
  positive("basis.scenario_spot_down", basis.scenario_spot_down);
  nonneg("basis.add_factor", basis.add_factor);
  nonneg("basis.mult_factor", basis.mult_factor);
  nonneg("other.peg_loss_threshold", other.peg_loss_threshold);
  nonneg("other.peg_loss_factor", other.peg_loss_factor);
  unit("other.conf_threshold", other.conf_threshold);
  nonneg("other.conf_margin", other.conf_margin);
  nonneg("other.mm_perp_percent", other.mm_perp_percent);
  nonneg("other.im_perp_percent", other.im_perp_percent);
  nonneg("other.mm_option_percent", other.mm_option_percent);
  nonneg("other.im_option_percent", other.im_option_percent);
}

void Portfolio::validate() const {
  finite("cash", cash);
  positive("spot", spot);
  unit("spot_confidence", spot_confidence);
  positive("stable_price", stable_price);
  finite("perp_amount", perp_amount);
  nonneg("perp_price", perp_price);
  unit("perp_confidence", perp_confidence);
  finite("unrealised_perp_pnl", unrealised_perp_pnl);
  finite("unrealised_funding", unrealised_funding);
  std::vector<bool> needs_svi(expiries.size(), false);
  for (std::size_t i = 0; i < options.size(); ++i) {
    const Option& o = options[i];
    if (o.expiry >= expiries.size()) {
      bad(at("options", i, "expiry"), ("must index expiries (there are " +
                                       std::to_string(expiries.size()) + ")").c_str());
    }
    positive(at("options", i, "strike"), o.strike);
    finite(at("options", i, "amount"), o.amount);
    if (std::isnan(o.vol)) {
      needs_svi[o.expiry] = true;
    } else {
      nonneg(at("options", i, "vol"), o.vol);
    }
  }
  for (std::size_t i = 0; i < expiries.size(); ++i) {
    const Expiry& e = expiries[i];
    nonneg(at("expiries", i, "seconds"), e.seconds);
    positive(at("expiries", i, "forward"), e.forward);
    if (!std::isnan(e.forward_fixed)) {
      if (!(std::isfinite(e.forward_fixed) && e.forward_fixed >= 0.0 &&
            e.forward_fixed <= e.forward)) {
        bad(at("expiries", i, "forward_fixed"), "must be in [0, forward]");
      }
    }
    unit(at("expiries", i, "forward_confidence"), e.forward_confidence);
    finite(at("expiries", i, "rate"), e.rate);
    unit(at("expiries", i, "rate_confidence"), e.rate_confidence);
    unit(at("expiries", i, "vol_confidence"), e.vol_confidence);
    const Svi& s = e.svi;
    if (!s.present()) {
      if (needs_svi[i]) {
        bad(at("expiries", i, "svi"), "is required: an option of this expiry has no vol");
      }
      continue;
    }
    finite(at("expiries", i, "svi.a"), s.a);
    nonneg(at("expiries", i, "svi.b"), s.b);
    if (!(std::isfinite(s.rho) && s.rho >= -1.0 && s.rho <= 1.0)) {
      bad(at("expiries", i, "svi.rho"), "must be in [-1, 1]");
    }
    finite(at("expiries", i, "svi.m"), s.m);
    nonneg(at("expiries", i, "svi.sigma"), s.sigma);
    positive(at("expiries", i, "svi.forward"), s.forward);
    positive(at("expiries", i, "svi.tau"), s.tau);
    if (!(s.a + s.b * s.sigma >= 0.0)) {
      bad(at("expiries", i, "svi.a"), "must make a + b sigma >= 0 (the minimum variance)");
    }
  }
  for (std::size_t i = 0; i < collaterals.size(); ++i) {
    const Collateral& c = collaterals[i];
    nonneg(at("collaterals", i, "amount"), c.amount);
    nonneg(at("collaterals", i, "price"), c.price);
    unit(at("collaterals", i, "confidence"), c.confidence);
    unit(at("collaterals", i, "mm_haircut"), c.mm_haircut);
    unit(at("collaterals", i, "im_haircut"), c.im_haircut);
  }
}

Result evaluate(const Params& params, const Portfolio& pf) {
  params.validate();
  pf.validate();
  const MarginParams& mp = params.margin;
  const OtherContingencyParams& oc = params.other;
  const SkewShockParams& sk = params.skew;
  const VolShockModel shock = vol_model(params.vol);

  Result r;
  const auto confidence_charge = [&](double c, double notional) {
    return c < oc.conf_threshold ? (1.0 - c) * oc.conf_margin * notional : 0.0;
  };

  // Portfolio confidence: spot, and the perp's when a perp is held.
  double min_conf = pf.spot_confidence;
  if (pf.perp_amount != 0.0) min_conf = std::min(min_conf, pf.perp_confidence);

  // Perps.
  r.perp_mtm = pf.unrealised_perp_pnl + pf.unrealised_funding;
  const double perp_notional = std::abs(pf.perp_amount) * pf.spot;
  r.mm_perp = perp_notional * oc.mm_perp_percent;
  r.im_perp = perp_notional * oc.im_perp_percent;
  r.confidence += confidence_charge(min_conf, perp_notional);

  // Expiries: forward portions, discounts, marks, shocks.
  r.expiries.resize(pf.expiries.size());
  r.options.resize(pf.options.size());
  std::vector<Slice> slices(pf.expiries.size());
  for (std::size_t i = 0; i < pf.expiries.size(); ++i) {
    const Expiry& e = pf.expiries[i];
    Slice& s = slices[i];
    ExpiryResult& x = r.expiries[i];
    s.in = &e;
    s.out = &x;
    s.rate = std::max(e.rate, 0.0);
    x.tau = e.seconds / kYear;
    if (!std::isnan(e.forward_fixed)) {
      x.forward_fixed = e.forward_fixed;
      x.forward_variable = e.forward - e.forward_fixed;
    } else if (e.seconds < kSettlementWindow) {
      x.forward_fixed = e.forward * (kSettlementWindow - e.seconds) / kSettlementWindow;
      x.forward_variable = e.forward * e.seconds / kSettlementWindow;
    } else {
      x.forward_variable = e.forward;
    }
    x.discount = std::exp(-s.rate * x.tau);
    x.min_confidence = std::min({e.forward_confidence, e.rate_confidence, min_conf});
    x.static_discount_pos = mp.base_static_discount *
                            std::exp(-x.tau * (s.rate * mp.long_rate_mult_scale +
                                               mp.long_rate_add_scale));
    x.static_discount_neg =
        std::min(1.0 / x.discount,
                 mp.base_static_discount_neg /
                     std::exp(-x.tau * (s.rate * mp.short_rate_mult_scale +
                                        mp.short_rate_add_scale)));
    const double dte_days = e.seconds / kDay;
    const double g = shock.dte_scale(dte_days);
    x.vol_shock_up = 1.0 + shock.up * g;
    x.vol_shock_down = std::max(0.0, 1.0 - shock.down * g);
    const double sqrt_tau = std::sqrt(x.tau);
    x.linear_cap = sk.linear_cbase * sqrt_tau + sk.linear_scale_cap;
    x.abs_cap = sk.abs_cbase * sqrt_tau + sk.abs_scale_cap;
    x.k_star = std::max(sk.min_k_star, sqrt_tau * sk.width_scale *
                                           (sk.vol_param_static + sqrt_tau * sk.vol_param_scale));
  }
  for (std::size_t j = 0; j < pf.options.size(); ++j) {
    const Option& o = pf.options[j];
    Slice& s = slices[o.expiry];
    ExpiryResult& x = *s.out;
    s.options.push_back(j);
    OptionResult& y = r.options[j];
    y.vol = std::isnan(o.vol) ? s.in->svi.vol(o.strike) : o.vol;
    if (std::isnan(y.vol)) {
      bad(at("expiries", o.expiry, "svi"),
          ("gives a negative total variance at options[" + std::to_string(j) + "].strike")
              .c_str());
    }
    const double dte_days = s.in->seconds / kDay;
    y.vol_up = shock.shocked(y.vol, +1, dte_days);
    y.vol_down = shock.shocked(y.vol, -1, dte_days);
    y.price = price(o.is_call, s.in->forward, o.strike, x.tau, y.vol, s.rate);
    y.k = std::log(o.strike / s.in->forward);
    // NaN when k_star is not positive; a skew scenario then reports it.
    const auto multiplier = [&](double k, double cap) {
      if (!(x.k_star > 0.0)) return std::numeric_limits<double>::quiet_NaN();
      return 1.0 + (k >= 0.0 ? std::min(cap, k * cap / x.k_star)
                             : std::max(-cap, k * cap / x.k_star));
    };
    y.linear_multiplier = multiplier(y.k, x.linear_cap);
    y.abs_multiplier = multiplier(std::abs(y.k), x.abs_cap);
    x.min_confidence = std::min(x.min_confidence, s.in->vol_confidence);
    x.gross_options += std::abs(o.amount);
    x.mtm += o.amount * y.price;
  }

  // Value of one expiry under a spot shock and vol direction (or skew).
  const auto value = [&](const Slice& s, double spot_shock, VolShock v) {
    const ExpiryResult& x = *s.out;
    double total = 0.0;
    if (is_skew(v)) {
      if (!s.options.empty() && !(x.k_star > 0.0)) {
        bad(at("expiries", static_cast<std::size_t>(s.out - r.expiries.data()), "k_star"),
            "of the skew scenarios must be > 0 (raise skew.min_k_star)");
      }
      const bool linear = v == VolShock::linear;
      const double forward = x.forward_variable + x.forward_fixed;
      for (std::size_t j : s.options) {
        const Option& o = pf.options[j];
        const OptionResult& y = r.options[j];
        const double mult = linear ? y.linear_multiplier : y.abs_multiplier;
        total += o.amount * price(o.is_call, forward, o.strike, x.tau,
                                  y.vol * std::max(mult, 0.0), s.rate);
      }
      return total;
    }
    const double forward = x.forward_variable * spot_shock + x.forward_fixed;
    for (std::size_t j : s.options) {
      const Option& o = pf.options[j];
      const OptionResult& y = r.options[j];
      const double vol = v == VolShock::up ? y.vol_up : v == VolShock::down ? y.vol_down : y.vol;
      total += o.amount * price(o.is_call, forward, o.strike, x.tau, vol, s.rate);
    }
    return total;
  };

  const BasisContingencyParams& bc = params.basis;
  for (Slice& s : slices) {
    ExpiryResult& x = *s.out;
    r.option_mtm += x.mtm;
    x.discounted_mtm = x.mtm * (x.mtm >= 0.0 ? x.static_discount_pos : x.static_discount_neg);
    // Basis contingency.
    const double up = value(s, bc.scenario_spot_up, VolShock::none) - x.mtm;
    const double down = value(s, bc.scenario_spot_down, VolShock::none) - x.mtm;
    x.basis_contingency = std::min({up, down, 0.0}) * (bc.add_factor + bc.mult_factor * x.tau);
    r.basis_contingency += x.basis_contingency;
    // Naked shorts: per strike, shorts not offset by longs at that strike.
    std::map<double, double> by_strike;
    for (std::size_t j : s.options) by_strike[pf.options[j].strike] += pf.options[j].amount;
    for (const auto& [strike, net] : by_strike) x.naked_shorts += std::max(0.0, -net);
    const double naked_notional = x.naked_shorts * pf.spot;
    r.mm_option += naked_notional * oc.mm_option_percent;
    r.im_option += naked_notional * oc.im_option_percent;
    x.confidence_contingency = confidence_charge(x.min_confidence, x.gross_options * pf.spot);
    r.confidence += x.confidence_contingency;
  }

  // Collateral.
  r.collateral_values.reserve(pf.collaterals.size());
  for (const Collateral& c : pf.collaterals) {
    const double v = c.amount * c.price / pf.stable_price;
    r.collateral_values.push_back(v);
    r.collateral_mtm += v;
    r.mm_collateral += v * c.mm_haircut;
    r.im_collateral += v * c.im_haircut;
    r.confidence += confidence_charge(std::min(c.confidence, pf.spot_confidence), v);
  }

  // Scenarios.
  const std::size_t n = params.scenarios.size();
  r.scenario_pnl.resize(n);
  r.scenario_kind.resize(n);
  r.worst = r.basis_contingency;
  const double inf = std::numeric_limits<double>::infinity();
  double least[3] = {inf, inf, inf};
  long where[3] = {-1, -1, -1};
  for (std::size_t i = 0; i < n; ++i) {
    const Scenario& sc = params.scenarios[i];
    const bool skew = is_skew(sc.vol);
    double pnl = 0.0;
    if (pf.perp_amount != 0.0) {
      pnl += pf.perp_amount * ((sc.spot_shock - 1.0) * pf.perp_price) * sc.dampening;
    }
    for (const Slice& s : slices) {
      const ExpiryResult& x = *s.out;
      double v = value(s, sc.spot_shock, sc.vol);
      v *= v >= 0.0 ? x.static_discount_pos : x.static_discount_neg;
      const double expiry_pnl = (v - x.mtm) * sc.dampening;
      pnl += skew ? -std::abs(expiry_pnl) : expiry_pnl;
    }
    for (std::size_t c = 0; c < pf.collaterals.size(); ++c) {
      if (pf.collaterals[c].risk_cancelling) {
        pnl += r.collateral_values[c] * (sc.spot_shock - 1.0) * sc.dampening;
      }
    }
    r.scenario_pnl[i] = pnl;
    const ScenarioKind kind = sc.kind();
    r.scenario_kind[i] = kind;
    if (pnl < r.worst) {
      r.worst = pnl;
      r.worst_scenario = static_cast<long>(i);
    }
    const int k = static_cast<int>(kind);
    if (pnl < least[k]) {
      least[k] = pnl;
      where[k] = static_cast<long>(i);
    }
  }
  r.worst_regular = where[0] < 0 ? 0.0 : least[0];
  r.worst_tail = where[1] < 0 ? 0.0 : least[1];
  r.worst_skew = where[2] < 0 ? 0.0 : least[2];
  r.worst_regular_scenario = where[0];
  r.worst_tail_scenario = where[1];
  r.worst_skew_scenario = where[2];

  // Margins.
  r.im_factor = mp.im_loss_factor;
  if (pf.stable_price < oc.peg_loss_threshold) {
    r.im_factor += (oc.peg_loss_threshold - pf.stable_price) * oc.peg_loss_factor;
  }
  r.mm_contingency = r.mm_perp + r.mm_option + r.mm_collateral;
  r.im_contingency = r.im_perp + r.im_option + r.im_collateral + r.confidence;
  r.mtm = r.perp_mtm + r.option_mtm + r.collateral_mtm + pf.cash;
  r.mm = r.worst * mp.mm_loss_factor - r.mm_contingency + r.mtm;
  r.im = r.worst * r.im_factor - r.im_contingency - r.mm_contingency + r.mtm;
  return r;
}

}  // namespace marginkit::derive
