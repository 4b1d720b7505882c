// The margin engine: accounts, instruments, market data, checks, batch evaluation.
#include <pybind11/stl.h>

#include <stdexcept>

#include "bindings.hpp"
#include "marginkit/engine.hpp"

namespace marginkit::bindings {

namespace {

// Core argument errors become ValueError with the core's message.
template <class F>
auto guarded(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  } catch (const std::out_of_range& e) {
    throw py::value_error(e.what());
  }
}

MarginModel linear_rate(double im_base, double im_slope, double mm_base, double mm_slope) {
  MarginModel m;
  m.kind = ModelKind::linear_rate;
  m.im_base = im_base;
  m.im_slope = im_slope;
  m.mm_base = mm_base;
  m.mm_slope = mm_slope;
  return m;
}

MarginModel tiered(const std::vector<double>& floors, const std::vector<double>& mmr,
                   const std::vector<double>& imr, bool value_at_entry) {
  if (floors.size() != mmr.size() || floors.size() != imr.size()) {
    throw py::value_error("tiered: floors, mmr and imr must have the same length");
  }
  MarginModel m;
  m.kind = ModelKind::tiered;
  m.value_at_entry = value_at_entry;
  for (std::size_t i = 0; i < floors.size(); ++i) {
    Bracket b;
    b.floor = floors[i];
    b.mmr = mmr[i];
    b.imr = imr[i];
    m.brackets.push_back(b);
  }
  return m;
}

MarginModel option_standard(double im_otm, double im_min, double mm, double mm_mark_call,
                            double mm_mark_put, double liq_fee) {
  MarginModel m;
  m.kind = ModelKind::option_standard;
  m.im_otm = im_otm;
  m.im_min = im_min;
  m.mm = mm;
  m.mm_mark_call = mm_mark_call;
  m.mm_mark_put = mm_mark_put;
  m.liq_fee = liq_fee;
  return m;
}

py::dict plan_dict(const LiquidationPlan& p) {
  py::dict d;
  d["account"] = p.account;
  d["equity_before"] = p.equity_before;
  d["requirement_before"] = p.requirement_before;
  d["target_before"] = p.target_before;
  d["equity_after"] = p.equity_after;
  d["requirement_after"] = p.requirement_after;
  d["restored"] = p.restored;
  d["needs_spot"] = p.needs_spot;
  py::list steps;
  for (const auto& s : p.steps) {
    py::dict st;
    st["kind"] = s.kind;
    st["instrument"] = s.instrument;
    st["qty"] = s.qty;
    st["price"] = s.price;
    st["penalty"] = s.penalty;
    st["fee_rate"] = s.fee_rate;
    st["if_fee_rate"] = s.if_fee_rate;
    st["slippage"] = s.slippage;
    st["released"] = s.released;
    st["score"] = s.score;
    st["reason"] = s.reason;
    steps.append(st);
  }
  d["steps"] = steps;
  return d;
}

MarginModel named(const std::string& name, MarginModel m) {
  m.name = name;
  return m;
}

// The venue mechanisms of linear_rate and tiered models (margin.hpp).
MarginModel with_rates(MarginModel m, double mm_fraction, double rate_quantum, double oi_lower,
                       double oi_upper) {
  m.mm_fraction = mm_fraction;
  m.rate_quantum = rate_quantum;
  m.oi_lower = oi_lower;
  m.oi_upper = oi_upper;
  return m;
}

py::dict spot_dict(const SpotLiquidation& s) {
  py::dict d;
  d["account"] = s.account;
  d["liability"] = s.liability;
  d["asset"] = s.asset;
  d["shortage"] = s.shortage;
  d["asset_weight"] = s.asset_weight;
  d["liability_weight"] = s.liability_weight;
  d["asset_multiplier"] = s.asset_multiplier;
  d["liability_multiplier"] = s.liability_multiplier;
  d["if_fee"] = s.if_fee;
  d["to_cover"] = s.to_cover;
  d["liability_transfer"] = s.liability_transfer;
  d["asset_transfer"] = s.asset_transfer;
  d["fund_fee"] = s.fund_fee;
  return d;
}

}  // namespace

void register_engine(py::module_& m) {
  // The engine's money rounding (equity down, IM and MM up: round_figures), for
  // tests against an independent formula; not public API.
  m.def("_round_figures", [](py::array_t<double, py::array::c_style | py::array::forcecast> x,
                             double quantum) {
    const auto n = x.size();
    py::array_t<double> equity(n), im(n), mm(n);
    const Quantum q(quantum);
    const double* px = x.data();
    double *pe = equity.mutable_data(), *pi = im.mutable_data(), *pm = mm.mutable_data();
    for (py::ssize_t i = 0; i < n; ++i) {
      const MoneyFigures r = round_figures(px[i], px[i], -px[i], q);
      pe[i] = r.equity;
      pi[i] = r.im;
      pm[i] = r.mm;
    }
    return py::make_tuple(equity, im, mm);
  }, py::arg("x"), py::arg("quantum"));
  py::class_<OrderCheck>(m, "OrderCheck", "Result of a pre-trade check.")
      .def_readonly("accepted", &OrderCheck::accepted)
      .def_property_readonly("reason", [](const OrderCheck& c) { return reason_name(c.reason); })
      .def_readonly("im_after", &OrderCheck::im_after)
      .def_readonly("mm_after", &OrderCheck::mm_after)
      .def_readonly("equity_after", &OrderCheck::equity_after)
      .def_readonly("available_after", &OrderCheck::available_after)
      .def("__bool__", [](const OrderCheck& c) { return c.accepted; })
      .def("__repr__", [](const OrderCheck& c) {
        return std::string("OrderCheck(accepted=") + (c.accepted ? "True" : "False") +
               ", reason='" + reason_name(c.reason) + "', im_after=" + std::to_string(c.im_after) +
               ", available_after=" + std::to_string(c.available_after) + ")";
      });

  py::class_<AccountSummary>(m, "AccountSummary")
      .def_readonly("equity", &AccountSummary::equity)
      .def_readonly("im", &AccountSummary::im)
      .def_readonly("mm", &AccountSummary::mm)
      .def_readonly("available", &AccountSummary::available)
      .def_readonly("margin_ratio", &AccountSummary::margin_ratio)
      .def_property_readonly("state", [](const AccountSummary& s) { return health_name(s.state); })
      .def_readonly("stale", &AccountSummary::stale);

  py::class_<PositionRisk>(m, "PositionRisk")
      .def_readonly("instrument", &PositionRisk::instrument)
      .def_readonly("size", &PositionRisk::size)
      .def_readonly("entry", &PositionRisk::entry)
      .def_readonly("mark", &PositionRisk::mark)
      .def_readonly("im", &PositionRisk::im)
      .def_readonly("mm", &PositionRisk::mm)
      .def_readonly("equity", &PositionRisk::equity);

  py::class_<Engine>(m, "Engine")
      .def(py::init<>())
      .def("add_asset",
           [](Engine& e, const std::string& name, const std::vector<double>& upto,
              const std::vector<double>& haircut, double quantum, double liability_weight,
              double imf_factor, double weight_quantum, double liquidator_fee) {
             if (upto.size() != haircut.size()) {
               throw py::value_error("haircut tiers: upto and haircut lengths differ");
             }
             AssetSpec s;
             s.name = name;
             s.quantum = quantum;
             s.weights = AssetWeights{liability_weight, imf_factor, weight_quantum};
             s.liquidator_fee = liquidator_fee;
             for (std::size_t i = 0; i < upto.size(); ++i) s.tiers.push_back({upto[i], haircut[i]});
             return guarded([&] { return e.add_asset(s); });
           })
      .def("add_model_linear_rate",
           [](Engine& e, const std::string& name, double a, double b, double c, double d,
              double mm_fraction, double rate_quantum, double oi_lower, double oi_upper) {
             return guarded([&] {
               return e.add_model(named(name, with_rates(linear_rate(a, b, c, d), mm_fraction,
                                                         rate_quantum, oi_lower, oi_upper)));
             });
           })
      .def("add_model_tiered",
           [](Engine& e, const std::string& name, const std::vector<double>& floors,
              const std::vector<double>& mmr, const std::vector<double>& imr,
              bool value_at_entry, double mm_fraction, double rate_quantum, double oi_lower,
              double oi_upper) {
             return guarded([&] {
               return e.add_model(named(name, with_rates(tiered(floors, mmr, imr, value_at_entry),
                                                         mm_fraction, rate_quantum, oi_lower,
                                                         oi_upper)));
             });
           })
      .def("model_rates",
           [](const Engine& e, int id) {
             return guarded([&] {
               const MarginModel& m = e.model(id);
               py::dict d;
               d["im_base"] = m.im_base;
               d["im_slope"] = m.im_slope;
               d["mm_base"] = m.mm_base;
               d["mm_slope"] = m.mm_slope;
               std::vector<double> mmr, imr;
               for (const auto& b : m.brackets) {
                 mmr.push_back(b.mmr);
                 imr.push_back(b.imr);
               }
               d["bracket_mmr"] = mmr;
               d["bracket_imr"] = imr;
               d["mm_fraction"] = m.mm_fraction;
               d["rate_quantum"] = m.rate_quantum;
               d["oi_lower"] = m.oi_lower;
               d["oi_upper"] = m.oi_upper;
               return d;
             });
           })
      .def("oi_adjusted_rate",
           [](const Engine& e, int id, double rate, double oi_notional) {
             return guarded([&] { return oi_adjusted_rate(e.model(id), rate, oi_notional); });
           })
      .def("set_open_interest", [](Engine& e, int i, double contracts) {
        guarded([&] { e.set_open_interest(i, contracts); });
      })
      .def("open_interest",
           [](const Engine& e, int i) { return guarded([&] { return e.open_interest(i); }); })
      .def("set_last_active", [](Engine& e, int a, double time) {
        guarded([&] { e.set_last_active(a, time); });
      })
      .def("last_active",
           [](const Engine& e, int a) { return guarded([&] { return e.last_active(a); }); })
      .def("add_model_option_standard",
           [](Engine& e, const std::string& name, double im_otm, double im_min, double mm,
              double call, double put, double fee) {
             return guarded([&] {
               return e.add_model(named(name, option_standard(im_otm, im_min, mm, call, put, fee)));
             });
           })
      .def("model_id", &Engine::model_id)
      .def("num_models", &Engine::num_models)
      .def("model_name",
           [](const Engine& e, int id) { return guarded([&] { return e.model(id).name; }); })
      .def("save", [](const Engine& e) {
        std::string bytes;
        {
          py::gil_scoped_release release;
          bytes = e.save();
        }
        return py::bytes(bytes);
      })
      .def_static("load", [](const py::bytes& data) {
        std::string bytes = data;
        py::gil_scoped_release release;
        return guarded([&] { return Engine::load(bytes); });
      })
      .def(py::pickle([](const Engine& e) { return py::bytes(e.save()); },
                      [](const py::bytes& data) {
                        return guarded([&] { return Engine::load(std::string(data)); });
                      }))
      .def("add_instrument",
           [](Engine& e, const std::string& name, int kind, int underlying, int settle,
              bool inverse, double contract_size, double strike, int cp, std::int64_t expiry,
              int model, double taker_fee) {
             if (kind < 0 || kind > 3) throw py::value_error("unknown instrument kind");
             InstrumentSpec s;
             s.name = name;
             s.kind = static_cast<InstrumentKind>(kind);
             s.underlying = underlying;
             s.settle = settle;
             s.terms.kind = s.kind;
             s.terms.inverse = inverse;
             s.terms.contract_size = contract_size;
             s.terms.strike = strike;
             s.terms.cp = static_cast<std::int8_t>(cp);
             s.expiry = expiry;
             s.model = model;
             s.taker_fee = taker_fee;
             return guarded([&] { return e.add_instrument(s); });
           })
      .def("add_account", [](Engine& e, const std::string& name, int margin_asset) {
        return guarded([&] { return e.add_account(name, margin_asset); });
      })
      .def("asset_id", &Engine::asset_id)
      .def("instrument_id", &Engine::instrument_id)
      .def("account_id", &Engine::account_id)
      .def("num_assets", &Engine::num_assets)
      .def("num_instruments", &Engine::num_instruments)
      .def("num_accounts", &Engine::num_accounts)
      .def("num_orders", &Engine::num_orders)
      .def("account_margin_asset",
           [](const Engine& e, int id) { return guarded([&] { return e.account_margin_asset(id); }); })
      .def("format_version", [](const Engine&) { return Engine::kFormatVersion; })
      .def("account_name", [](const Engine& e, int id) { return guarded([&] { return e.account_name(id); }); })
      .def("instrument_name",
           [](const Engine& e, int id) { return guarded([&] { return e.instrument(id).name; }); })
      .def("asset_name",
           [](const Engine& e, int id) { return guarded([&] { return e.asset(id).name; }); })
      .def("asset_spec",
           [](const Engine& e, int id) {
             return guarded([&] {
               const AssetSpec& a = e.asset(id);
               py::list tiers;
               for (const auto& t : a.tiers) tiers.append(py::make_tuple(t.upto, t.haircut));
               py::dict d;
               d["name"] = a.name;
               d["haircuts"] = tiers;
               d["quantum"] = a.quantum;
               d["liability_weight"] = a.weights.liability_weight;
               d["imf_factor"] = a.weights.imf_factor;
               d["weight_quantum"] = a.weights.weight_quantum;
               d["liquidator_fee"] = a.liquidator_fee;
               return d;
             });
           })
      .def("instrument_spec",
           [](const Engine& e, int id) {
             return guarded([&] {
               const InstrumentSpec& in = e.instrument(id);
               py::dict d;
               d["name"] = in.name;
               d["kind"] = static_cast<int>(in.kind);
               d["underlying"] = in.underlying;
               d["settle"] = in.settle;
               d["inverse"] = in.terms.inverse;
               d["contract_size"] = in.terms.contract_size;
               d["strike"] = in.terms.strike;
               d["cp"] = static_cast<int>(in.terms.cp);
               d["expiry"] = in.expiry;
               d["model"] = in.model;
               d["taker_fee"] = in.taker_fee;
               return d;
             });
           })
      .def("set_price", [](Engine& e, int asset, double price, double time) {
        return guarded([&] { return e.set_price(asset, price, time); });
      })
      .def("set_mark", [](Engine& e, int instrument, double mark, double time) {
        return guarded([&] { return e.set_mark(instrument, mark, time); });
      })
      .def("set_forward",
           [](Engine& e, int underlying, std::int64_t expiry, double fwd, double time) {
             return guarded([&] { return e.set_forward(underlying, expiry, fwd, time); });
           })
      .def("forward", [](const Engine& e, int underlying, std::int64_t expiry) {
        return guarded([&] { return e.forward(underlying, expiry); });
      })
      .def("set_vol", [](Engine& e, int instrument, double vol, double time) {
        return guarded([&] { return e.set_vol(instrument, vol, time); });
      })
      .def_property("rate", &Engine::rate, [](Engine& e, double r) {
        guarded([&] {
          e.set_rate(r);
        });
      })
      .def("net_greeks", [](Engine& e, int a) {
        return guarded([&] {
          py::list out;
          for (const auto& g : e.net_greeks(a)) {
            out.append(py::make_tuple(g.underlying, g.delta, g.gamma, g.vega, g.theta));
          }
          return out;
        });
      })
      .def("price", [](const Engine& e, int a) { return guarded([&] { return e.price(a); }); })
      .def("mark", [](const Engine& e, int i) { return guarded([&] { return e.mark(i); }); })
      .def_property("now", &Engine::now, &Engine::set_now)
      .def_property("max_age", &Engine::max_age, &Engine::set_max_age)
      .def("set_thresholds", [](Engine& e, double w, double r, double l) {
        guarded([&] {
          e.set_thresholds(Thresholds{w, r, l});
        });
      })
      .def("thresholds", [](const Engine& e) {
        const auto& t = e.thresholds();
        return py::make_tuple(t.warning, t.reduce_only, t.liquidation);
      })
      .def("deposit", [](Engine& e, int a, int asset, double amount) {
        guarded([&] {
          e.deposit(a, asset, amount);
        });
      })
      .def("withdraw", [](Engine& e, int a, int asset, double amount) {
        return guarded([&] { return std::string(reason_name(e.withdraw(a, asset, amount))); });
      })
      .def("fill", [](Engine& e, int a, int i, double qty, double price, double fee) {
        guarded([&] {
          e.fill(a, i, qty, price, fee);
        });
      })
      .def("place_order", [](Engine& e, int a, int i, double qty, double price) {
        return guarded([&] { return e.place_order(a, i, qty, price); });
      })
      .def("cancel_order", [](Engine& e, std::int64_t id) {
        guarded([&] {
          e.cancel_order(id);
        });
      })
      .def("fill_order", [](Engine& e, std::int64_t id, double qty, double price, double fee) {
        guarded([&] {
          e.fill_order(id, qty, price, fee);
        });
      })
      .def("balance", [](const Engine& e, int a, int asset) {
        return guarded([&] { return e.balance(a, asset); });
      })
      .def("positions", [](const Engine& e, int a) {
        return guarded([&] {
          py::list out;
          for (const auto& p : e.positions(a)) {
            out.append(py::make_tuple(p.instrument, p.size, p.entry, p.bids, p.asks));
          }
          return out;
        });
      })
      .def("summary", [](Engine& e, int a) { return guarded([&] { return e.summary(a); }); })
      .def("attribution", [](Engine& e, int a) { return guarded([&] { return e.attribution(a); }); })
      .def("check_order", &Engine::check_order, py::arg("account"), py::arg("instrument"),
           py::arg("qty"), py::arg("price"))
      .def("max_order_size", [](Engine& e, int a, int i, int side, double price) {
        return guarded([&] { return e.max_order_size(a, i, side, price); });
      })
      .def("open_isolated", [](Engine& e, int parent, int instrument, double amount) {
        return guarded([&] {
          Reason why = Reason::ok;
          const int child = e.open_isolated(parent, instrument, amount, &why);
          return py::make_tuple(child, reason_name(why));
        });
      })
      .def("transfer", [](Engine& e, int from, int to, double amount) {
        return guarded([&] { return std::string(reason_name(e.transfer(from, to, amount))); });
      })
      .def("parent_of", [](const Engine& e, int a) { return guarded([&] { return e.parent_of(a); }); })
      .def("isolated_instrument",
           [](const Engine& e, int a) { return guarded([&] { return e.isolated_instrument(a); }); })
      .def("liquidation_prices", [](Engine& e, int a, int underlying) {
        return guarded([&] {
          const auto lp = e.liquidation_prices(a, underlying);
          return py::make_tuple(lp.below, lp.above);
        });
      })
      .def("liquidation_prices_all",
           [](Engine& e) {
             const auto n = static_cast<py::ssize_t>(e.num_accounts());
             py::array_t<int> underlying(n);
             py::array_t<double> below(n), above(n);
             int* pu = underlying.mutable_data();
             double *pb = below.mutable_data(), *pa = above.mutable_data();
             {
               py::gil_scoped_release release;
               e.liquidation_prices_all(pu, pb, pa);
             }
             return py::make_tuple(underlying, below, above);
           })
      .def("dominant_underlying",
           [](Engine& e, int a) { return guarded([&] { return e.dominant_underlying(a); }); })
      .def("add_accounts", [](Engine& e, const std::vector<std::string>& names, int asset) {
        return guarded([&] { return e.add_accounts(names, asset); });
      })
      .def("deposit_many", [](Engine& e, const py::array_t<int, py::array::c_style>& accounts,
                              int asset, const f64_array& amounts) {
        if (accounts.ndim() != 1 || amounts.ndim() != 1 || accounts.shape(0) != amounts.shape(0)) {
          throw py::value_error("accounts and amounts must be 1-D of the same length");
        }
        guarded([&] {
          e.deposit_many(static_cast<std::size_t>(accounts.shape(0)), accounts.data(), asset,
                         amounts.data());
        });
      })
      .def("set_positions", [](Engine& e, const py::array_t<int, py::array::c_style>& accounts,
                               const py::array_t<int, py::array::c_style>& instruments,
                               const f64_array& sizes, const f64_array& entries) {
        const auto n = accounts.shape(0);
        if (accounts.ndim() != 1 || instruments.ndim() != 1 || sizes.ndim() != 1 ||
            entries.ndim() != 1 || instruments.shape(0) != n || sizes.shape(0) != n ||
            entries.shape(0) != n) {
          throw py::value_error("accounts, instruments, sizes, entries: 1-D of one length");
        }
        guarded([&] {
          e.set_positions(static_cast<std::size_t>(n), accounts.data(), instruments.data(),
                          sizes.data(), entries.data());
        });
      })
      .def("add_scenario_set",
           [](Engine& e, const std::string& name, const std::vector<double>& moves,
              const std::vector<int>& vols, const std::vector<double>& weights, double up,
              double down, bool relative, bool scale_by_dte, double pivot_days,
              double floor_days, double p_short, double p_long, double min_vol_up,
              double im_factor, double short_option_charge, double delta_charge, int measure,
              double confidence, const std::vector<int>& joint_underlyings,
              const std::vector<double>& joint_moves) {
             if (moves.size() != vols.size() || moves.size() != weights.size()) {
               throw py::value_error("scenarios: moves, vols and weights differ in length");
             }
             ScenarioSet set;
             set.name = name;
             for (std::size_t i = 0; i < moves.size(); ++i) {
               if (vols[i] < -1 || vols[i] > 1) {
                 throw py::value_error("scenario " + std::to_string(i) +
                                       ": vol direction must be -1, 0 or +1");
               }
               set.scenarios.push_back(
                   Scenario{moves[i], static_cast<std::int8_t>(vols[i]), weights[i]});
             }
             set.vol = VolShockModel{up,         down,       relative, scale_by_dte, pivot_days,
                                     floor_days, p_short,    p_long,   min_vol_up};
             set.im_factor = im_factor;
             set.short_option_charge = short_option_charge;
             set.delta_charge = delta_charge;
             if (measure < 0 || measure > 2) throw py::value_error("measure: worst, var or es");
             set.measure = static_cast<LossMeasure>(measure);
             set.confidence = confidence;
             set.joint_underlyings = joint_underlyings;
             set.joint_moves = joint_moves;
             return guarded([&] { return e.add_scenario_set(set); });
           })
      .def("set_underlying_scenarios", [](Engine& e, int underlying, int set) {
        guarded([&] {
          e.set_underlying_scenarios(underlying, set);
        });
      })
      .def("underlying_scenarios",
           [](const Engine& e, int u) { return guarded([&] { return e.underlying_scenarios(u); }); })
      .def("num_scenario_sets", &Engine::num_scenario_sets)
      .def("scenario_set_name",
           [](const Engine& e, int id) { return guarded([&] { return e.scenario_set(id).name; }); })
      .def("scenario_set",
           [](const Engine& e, int id) {
             return guarded([&] {
               const ScenarioSet& s = e.scenario_set(id);
               py::list sc;
               for (const auto& x : s.scenarios) sc.append(py::make_tuple(x.move, int(x.vol), x.weight));
               py::dict vol;
               vol["vol_up"] = s.vol.up;
               vol["vol_down"] = s.vol.down;
               vol["relative"] = s.vol.relative;
               vol["scale_by_dte"] = s.vol.scale_by_dte;
               vol["pivot_days"] = s.vol.pivot_days;
               vol["floor_days"] = s.vol.floor_days;
               vol["p_short"] = s.vol.p_short;
               vol["p_long"] = s.vol.p_long;
               vol["min_vol_up"] = s.vol.min_vol_up;
               return py::make_tuple(s.name, sc, s.im_factor, s.short_option_charge,
                                     s.delta_charge, vol, static_cast<int>(s.measure),
                                     s.confidence, s.joint_underlyings, s.joint_moves);
             });
           })
      .def_property("portfolio_offset", &Engine::portfolio_offset, [](Engine& e, double x) {
        guarded([&] {
          e.set_portfolio_offset(x);
        });
      })
      .def("portfolio_credit", [](Engine& e, int a) {
        return guarded([&] {
          const auto c = e.portfolio_credit(a);
          return py::make_tuple(c.first, c.second);
        });
      })
      .def("set_mode", [](Engine& e, int a, int mode) {
        guarded([&] {
          if (mode != 0 && mode != 1) throw std::invalid_argument("mode must be cross or portfolio");
          e.set_mode(a, static_cast<MarginMode>(mode));
        });
      })
      .def("mode", [](const Engine& e, int a) {
        return guarded([&] { return static_cast<int>(e.mode(a)); });
      })
      .def("risk_row", [](Engine& e, int i) {
        return guarded([&] {
          std::vector<double> row = e.risk_row(i);
          return py::array_t<double>(static_cast<py::ssize_t>(row.size()), row.data());
        });
      })
      .def("portfolio", [](Engine& e, int a) {
        return guarded([&] {
          py::list out;
          for (const auto& g : e.portfolio(a)) {
            py::dict d;
            d["underlying"] = g.underlying;
            d["set"] = g.set;
            d["worst"] = g.worst;
            d["loss"] = g.loss;
            d["short_charge"] = g.short_charge;
            d["delta_charge"] = g.delta_charge;
            d["mm"] = g.mm;
            d["im"] = g.im;
            d["pnl"] = py::array_t<double>(static_cast<py::ssize_t>(g.pnl.size()), g.pnl.data());
            d["instruments"] = g.instruments;
            d["contribution"] = g.contribution;
            out.append(d);
          }
          return out;
        });
      })
      .def("set_liquidity", [](Engine& e, int i, double spread, double impact, double max_step) {
        guarded([&] {
          e.set_liquidity(i, LiquidityModel{spread, impact, max_step});
        });
      })
      .def("liquidity", [](const Engine& e, int i) {
        return guarded([&] {
          const auto& l = e.liquidity(i);
          return py::make_tuple(l.spread, l.impact, l.max_step);
        });
      })
      .def("set_liquidation_params",
           [](Engine& e, int target, double buffer, double fee_rate, int fee_policy,
              double max_if_fee, double if_factor, double ramp_per_second, double ramp_grace,
              double max_fee_rate, int fill_policy, double bankruptcy_adjustment,
              double spread_to_mm, double spot_dust) {
             guarded([&] {
               if (target != 0 && target != 1) {
                 throw std::invalid_argument("target must be maintenance or initial");
               }
               if (fee_policy != 0 && fee_policy != 1) {
                 throw std::invalid_argument("fee policy must be fixed or margin_implied");
               }
               if (fill_policy != 0 && fill_policy != 1) {
                 throw std::invalid_argument("fill policy must be liquidity or fillable");
               }
               LiquidationParams p;
               p.target = static_cast<LiquidationTarget>(target);
               p.buffer = buffer;
               p.fee_rate = fee_rate;
               p.fee_policy = static_cast<FeePolicy>(fee_policy);
               p.max_if_fee = max_if_fee;
               p.if_factor = if_factor;
               p.ramp_per_second = ramp_per_second;
               p.ramp_grace = ramp_grace;
               p.max_fee_rate = max_fee_rate;
               p.fill_policy = static_cast<FillPolicy>(fill_policy);
               p.bankruptcy_adjustment = bankruptcy_adjustment;
               p.spread_to_mm = spread_to_mm;
               p.spot_dust = spot_dust;
               e.set_liquidation_params(p);
             });
           })
      .def("liquidation_params", [](const Engine& e) {
        const auto& p = e.liquidation_params();
        py::dict d;
        d["target"] = static_cast<int>(p.target);
        d["buffer"] = p.buffer;
        d["fee_rate"] = p.fee_rate;
        d["fee_policy"] = static_cast<int>(p.fee_policy);
        d["max_if_fee"] = p.max_if_fee;
        d["if_factor"] = p.if_factor;
        d["ramp_per_second"] = p.ramp_per_second;
        d["ramp_grace"] = p.ramp_grace;
        d["max_fee_rate"] = p.max_fee_rate;
        d["fill_policy"] = static_cast<int>(p.fill_policy);
        d["bankruptcy_adjustment"] = p.bankruptcy_adjustment;
        d["spread_to_mm"] = p.spread_to_mm;
        d["spot_dust"] = p.spot_dust;
        return d;
      })
      .def("liquidation_fill_price", [](Engine& e, int a, int i, double qty) {
        return guarded([&] { return e.liquidation_fill_price(a, i, qty); });
      })
      .def("liquidation_fee_rate", [](Engine& e, int a, int i) {
        return guarded([&] {
          const auto r = e.liquidation_fee_rate(a, i);
          return py::make_tuple(r.first, r.second);
        });
      })
      .def("plan_spot_liquidation", [](Engine& e, int a, int liability, int asset) {
        return guarded([&] { return spot_dict(e.plan_spot_liquidation(a, liability, asset)); });
      })
      .def("liquidate_spot", [](Engine& e, int a, int liability, int asset) {
        return guarded([&] { return spot_dict(e.liquidate_spot(a, liability, asset)); });
      })
      .def("fund_insurance", [](Engine& e, int asset, double amount) {
        guarded([&] {
          e.fund_insurance(asset, amount);
        });
      })
      .def("insurance_fund",
           [](const Engine& e, int a) { return guarded([&] { return e.insurance_fund(a); }); })
      .def("market_pnl",
           [](const Engine& e, int a) { return guarded([&] { return e.market_pnl(a); }); })
      .def("socialized",
           [](const Engine& e, int a) { return guarded([&] { return e.socialized(a); }); })
      .def("bankruptcy_price", [](Engine& e, int a, int i) {
        return guarded([&] { return e.bankruptcy_price(a, i); });
      })
      .def("plan_liquidation",
           [](Engine& e, int a) { return guarded([&] { return plan_dict(e.plan_liquidation(a)); }); })
      .def("spot_cure", [](Engine& e, int a) {
        return guarded([&] {
          py::list out;
          for (const auto& s : e.spot_cure(a)) out.append(spot_dict(s));
          return out;
        });
      })
      .def("liquidate", [](Engine& e, int a, bool spot) {
        return guarded([&] {
          const LiquidationResult r = e.liquidate(a, spot);
          py::dict d;
          d["plan"] = plan_dict(r.plan);
          d["fees_to_fund"] = r.fees_to_fund;
          d["bad_debt"] = r.bad_debt;
          d["fund_paid"] = r.fund_paid;
          d["adl_volume"] = r.adl_volume;
          d["adl_notional"] = r.adl_notional;
          d["socialized"] = r.socialized;
          d["adl_accounts"] = r.adl_accounts;
          d["market_fills"] = r.market_fills;
          py::list spot_list;
          for (const auto& s : r.spot) spot_list.append(spot_dict(s));
          d["spot"] = spot_list;
          return d;
        });
      }, py::arg("account"), py::arg("spot") = false)
      .def("adl_ranking", [](Engine& e, int i, int side) {
        return guarded([&] { return e.adl_ranking(i, side); });
      })
      .def("plan_all", [](Engine& e) {
        std::vector<LiquidationPlan> plans;
        {
          py::gil_scoped_release release;
          plans = e.plan_all();
        }
        py::list out;
        for (const auto& p : plans) out.append(plan_dict(p));
        return out;
      })
      .def("count_in_liquidation", [](Engine& e) {
        std::vector<LiquidationPlan> plans;
        {
          py::gil_scoped_release release;
          plans = e.plan_all();
        }
        return plans.size();
      })
      .def("move_underlying", [](Engine& e, int u, double price) {
        guarded([&] {
          e.move_underlying(u, price);
        });
      })
      .def("cascade", [](Engine& e, int u, double shock, double impact, int max_rounds) {
        return guarded([&] {
          py::list out;
          for (const auto& r : e.cascade(u, shock, impact, max_rounds)) {
            py::dict d;
            d["round"] = r.round;
            d["liquidated"] = r.liquidated;
            d["volume"] = r.volume;
            d["price"] = r.price;
            d["bad_debt"] = r.bad_debt;
            d["fund"] = r.fund;
            d["adl_volume"] = r.adl_volume;
            d["socialized"] = r.socialized;
            d["spot_transfers"] = r.spot_transfers;
            d["spot_value"] = r.spot_value;
            out.append(d);
          }
          return out;
        });
      })
      .def("evaluate_all", [](Engine& e) {
        const auto n = static_cast<py::ssize_t>(e.num_accounts());
        py::array_t<double> equity(n), im(n), mm(n), available(n);
        py::array_t<std::int8_t> state(n);
        double *pe = equity.mutable_data(), *pi = im.mutable_data(), *pm = mm.mutable_data(),
               *pa = available.mutable_data();
        std::int8_t* ps = state.mutable_data();
        {
          py::gil_scoped_release release;
          e.evaluate_all(pe, pi, pm, pa, ps);
        }
        return py::make_tuple(equity, im, mm, available, state);
      });
}

}  // namespace marginkit::bindings
