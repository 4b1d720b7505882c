// Engine::save / Engine::load: a versioned little-endian binary format.
//   "MKENGINE" | u32 version | sections in a fixed order (see save()).
// Every read is bounds-checked; a bad payload raises, never crashes.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>
#include <stdexcept>
#include <type_traits>

#include "marginkit/engine.hpp"

namespace marginkit {

namespace {

constexpr char kMagic[8] = {'M', 'K', 'E', 'N', 'G', 'I', 'N', 'E'};

class Writer {
 public:
  template <class T>
  void put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    out_.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  void str(const std::string& s) {
    put<std::uint64_t>(s.size());
    out_.append(s);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

// Names are UTF-8 text: anything else is a corrupt state.
bool valid_utf8(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n;
    if (c < 0x80) {
      n = 0;
    } else if ((c >> 5) == 0x6) {
      n = 1;
    } else if ((c >> 4) == 0xe) {
      n = 2;
    } else if ((c >> 3) == 0x1e) {
      n = 3;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return false;
    }
    i += n + 1;
  }
  return true;
}

class Reader {
 public:
  explicit Reader(const std::string& in) : in_(in) {}
  template <class T>
  T get() {
    static_assert(std::is_trivially_copyable_v<T>);
    need(sizeof(T));
    T v;
    std::memcpy(&v, in_.data() + pos_, sizeof v);
    pos_ += sizeof v;
    return v;
  }
  std::string str() {
    const auto n = get<std::uint64_t>();
    need(n);
    std::string s = in_.substr(pos_, n);
    pos_ += n;
    if (!valid_utf8(s)) fail();
    return s;
  }
  std::size_t count() {  // a length that must fit in what is left
    const auto n = get<std::uint64_t>();
    if (n > in_.size() - pos_) fail();
    return static_cast<std::size_t>(n);
  }
  bool done() const { return pos_ == in_.size(); }
  [[noreturn]] static void fail() {
    throw std::invalid_argument("engine state is truncated or corrupt");
  }

 private:
  void need(std::uint64_t n) const {
    if (n > in_.size() - pos_) fail();
  }
  const std::string& in_;
  std::size_t pos_ = 0;
};

}  // namespace

std::string Engine::save() const {
  Writer w;
  for (char c : kMagic) w.put(c);
  w.put<std::uint32_t>(kFormatVersion);
  w.put(now_);
  w.put(max_age_);
  w.put(thresholds_);
  w.put(next_order_);
  w.put(rate_);
  w.put(offset_);
  w.put<std::uint64_t>(assets_.size());
  for (const Asset& a : assets_) {
    w.str(a.spec.name);
    w.put(a.spec.quantum);
    w.put<std::uint64_t>(a.spec.tiers.size());
    for (const auto& t : a.spec.tiers) w.put(t);
    for (double x : {a.spec.weights.liability_weight, a.spec.weights.imf_factor,
                     a.spec.weights.weight_quantum, a.spec.liquidator_fee}) {
      w.put(x);  // version 2
    }
    w.put(a.price);
    w.put(a.time);
  }
  w.put<std::uint64_t>(models_.size());
  for (const MarginModel& m : models_) {
    w.str(m.name);
    w.put(m.kind);
    for (double x : {m.im_base, m.im_slope, m.mm_base, m.mm_slope, m.im_otm, m.im_min, m.mm,
                     m.mm_mark_call, m.mm_mark_put, m.liq_fee}) {
      w.put(x);
    }
    w.put<std::uint64_t>(m.brackets.size());
    for (const auto& b : m.brackets) w.put(b);
    w.put(m.value_at_entry);
    for (double x : {m.mm_fraction, m.rate_quantum, m.oi_lower, m.oi_upper}) w.put(x);  // v2
  }
  w.put<std::uint64_t>(sets_.size());
  for (const ScenarioSet& set : sets_) {
    w.str(set.name);
    w.put<std::uint64_t>(set.scenarios.size());
    for (const Scenario& sc : set.scenarios) {
      w.put(sc.move);
      w.put(sc.vol);
      w.put(sc.weight);
    }
    const VolShockModel& v = set.vol;
    for (double x : {v.up, v.down, v.pivot_days, v.floor_days, v.p_short, v.p_long,
                     v.min_vol_up, set.im_factor, set.short_option_charge, set.delta_charge}) {
      w.put(x);
    }
    w.put(v.relative);
    w.put(v.scale_by_dte);
    w.put(set.measure);
    w.put(set.confidence);
    w.put<std::uint64_t>(set.joint_underlyings.size());
    for (int u : set.joint_underlyings) w.put(u);
    w.put<std::uint64_t>(set.joint_moves.size());
    for (double m : set.joint_moves) w.put(m);
  }
  for (int s : underlying_set_) w.put(s);
  w.put<std::uint64_t>(instruments_.size());
  for (std::size_t i = 0; i < instruments_.size(); ++i) {
    const InstrumentSpec& in = instruments_[i];
    w.str(in.name);
    w.put(in.kind);
    w.put(in.underlying);
    w.put(in.settle);
    w.put(in.terms.kind);
    w.put(in.terms.inverse);
    w.put(in.terms.contract_size);
    w.put(in.terms.strike);
    w.put(in.terms.cp);
    w.put(in.expiry);
    w.put(in.model);
    w.put(in.taker_fee);
    w.put(marks_[i].value);
    w.put(marks_[i].time);
    w.put(vols_[i]);
    w.put(open_interest_[i]);  // version 2
  }
  w.put<std::uint64_t>(accounts_.size());
  for (const Account& a : accounts_) {
    w.str(a.name);
    w.put(a.margin_asset);
    w.put(a.parent);
    w.put(a.isolated);
    w.put(a.mode);
    w.put(a.last_active);  // version 2
    for (double b : a.balances) w.put(b);
    w.put<std::uint64_t>(a.positions.size());
    for (const Position& p : a.positions) {
      w.put(p.instrument);
      for (double x : {p.size, p.entry, p.bids, p.asks}) w.put(x);
    }
  }
  std::vector<std::pair<std::int64_t, Order>> orders(orders_.begin(), orders_.end());
  std::sort(orders.begin(), orders.end(),
            [](const auto& x, const auto& y) { return x.first < y.first; });
  w.put<std::uint64_t>(orders.size());
  for (const auto& [id, o] : orders) {
    w.put(id);
    w.put(o.account);
    w.put(o.instrument);
    w.put(o.qty);
    w.put(o.price);
  }
  std::vector<std::pair<std::int64_t, Mark>> fwds(forwards_.begin(), forwards_.end());
  std::sort(fwds.begin(), fwds.end(),
            [](const auto& x, const auto& y) { return x.first < y.first; });
  w.put<std::uint64_t>(fwds.size());
  for (const auto& [key, m] : fwds) {
    w.put(key);
    w.put(m.value);
    w.put(m.time);
  }
  for (const LiquidityModel& l : liquidity_) {
    w.put(l.spread);
    w.put(l.impact);
    w.put(l.max_step);
  }
  w.put(liq_.target);
  w.put(liq_.buffer);
  w.put(liq_.fee_rate);
  w.put(liq_.fee_policy);  // version 2
  w.put(liq_.fill_policy);
  for (double x : {liq_.max_if_fee, liq_.if_factor, liq_.ramp_per_second, liq_.ramp_grace,
                   liq_.max_fee_rate, liq_.bankruptcy_adjustment, liq_.spread_to_mm,
                   liq_.spot_dust}) {
    w.put(x);
  }
  for (std::size_t i = 0; i < assets_.size(); ++i) {
    w.put(fund_[i]);
    w.put(market_pnl_[i]);
    w.put(socialized_[i]);
  }
  return w.take();
}

Engine Engine::load(const std::string& bytes) {
  Reader r(bytes);
  for (char c : kMagic) {
    if (r.get<char>() != c) throw std::invalid_argument("not a marginkit engine state");
  }
  const auto version = r.get<std::uint32_t>();
  if (version != 1 && version != kFormatVersion) {  // version 1: before venue mechanisms
    throw std::invalid_argument("engine state version " + std::to_string(version) +
                                " is not supported (this build reads version " +
                                std::to_string(kFormatVersion) + ")");
  }
  Engine e;
  e.now_ = r.get<double>();
  e.max_age_ = r.get<double>();
  e.thresholds_ = r.get<Thresholds>();
  e.next_order_ = r.get<std::int64_t>();
  e.rate_ = r.get<double>();
  e.offset_ = r.get<double>();
  if (!(e.offset_ >= 0.0 && e.offset_ <= 1.0)) r.fail();
  // Static data goes through the public adders, so it is validated again.
  for (std::size_t i = 0, n = r.count(); i < n; ++i) {
    AssetSpec spec;
    spec.name = r.str();
    spec.quantum = r.get<double>();
    for (std::size_t k = 0, m = r.count(); k < m; ++k) spec.tiers.push_back(r.get<HaircutTier>());
    if (version >= 2) {
      for (double* x : {&spec.weights.liability_weight, &spec.weights.imf_factor,
                        &spec.weights.weight_quantum, &spec.liquidator_fee}) {
        *x = r.get<double>();
      }
    }
    const double price = r.get<double>(), time = r.get<double>();
    e.add_asset(spec);
    e.assets_.back().price = price;
    e.assets_.back().time = time;
  }
  for (std::size_t i = 0, n = r.count(); i < n; ++i) {
    MarginModel m;
    m.name = r.str();
    m.kind = r.get<ModelKind>();
    for (double* x : {&m.im_base, &m.im_slope, &m.mm_base, &m.mm_slope, &m.im_otm, &m.im_min,
                      &m.mm, &m.mm_mark_call, &m.mm_mark_put, &m.liq_fee}) {
      *x = r.get<double>();
    }
    for (std::size_t k = 0, b = r.count(); k < b; ++k) m.brackets.push_back(r.get<Bracket>());
    m.value_at_entry = r.get<bool>();
    if (version >= 2) {
      for (double* x : {&m.mm_fraction, &m.rate_quantum, &m.oi_lower, &m.oi_upper}) {
        *x = r.get<double>();
      }
    }
    e.add_model(m);
  }
  for (std::size_t i = 0, n = r.count(); i < n; ++i) {
    ScenarioSet set;
    set.name = r.str();
    for (std::size_t k = 0, m = r.count(); k < m; ++k) {
      Scenario sc;
      sc.move = r.get<double>();
      sc.vol = r.get<std::int8_t>();
      sc.weight = r.get<double>();
      set.scenarios.push_back(sc);
    }
    VolShockModel& v = set.vol;
    for (double* x : {&v.up, &v.down, &v.pivot_days, &v.floor_days, &v.p_short, &v.p_long,
                      &v.min_vol_up, &set.im_factor, &set.short_option_charge,
                      &set.delta_charge}) {
      *x = r.get<double>();
    }
    v.relative = r.get<bool>();
    v.scale_by_dte = r.get<bool>();
    set.measure = r.get<LossMeasure>();
    if (static_cast<int>(set.measure) < 0 || static_cast<int>(set.measure) > 2) r.fail();
    set.confidence = r.get<double>();
    for (std::size_t k = 0, m = r.count(); k < m; ++k) set.joint_underlyings.push_back(r.get<int>());
    for (std::size_t k = 0, m = r.count(); k < m; ++k) set.joint_moves.push_back(r.get<double>());
    e.add_scenario_set(set);
  }
  for (std::size_t i = 0; i < e.assets_.size(); ++i) {
    e.set_underlying_scenarios(static_cast<int>(i), r.get<int>());
  }
  const double now = e.now_;
  e.now_ = -std::numeric_limits<double>::infinity();  // expired instruments reload too
  for (std::size_t i = 0, n = r.count(); i < n; ++i) {
    InstrumentSpec in;
    in.name = r.str();
    in.kind = r.get<InstrumentKind>();
    in.underlying = r.get<int>();
    in.settle = r.get<int>();
    in.terms.kind = r.get<InstrumentKind>();
    in.terms.inverse = r.get<bool>();
    in.terms.contract_size = r.get<double>();
    in.terms.strike = r.get<double>();
    in.terms.cp = r.get<std::int8_t>();
    in.expiry = r.get<std::int64_t>();
    in.model = r.get<int>();
    in.taker_fee = r.get<double>();
    const double mark = r.get<double>(), time = r.get<double>();
    const double vol = r.get<double>();
    const double oi = version >= 2 ? r.get<double>() : 0.0;
    e.add_instrument(in);
    e.marks_.back() = Mark{mark, time};
    e.vols_.back() = vol;
    e.set_open_interest(static_cast<int>(e.instruments_.size()) - 1, oi);
  }
  e.now_ = now;
  for (std::size_t i = 0, n = r.count(); i < n; ++i) {
    const std::string name = r.str();
    const int margin = r.get<int>(), parent = r.get<int>(), isolated = r.get<int>();
    const int id = e.add_account(name, margin);
    Account& a = e.accounts_[id];
    a.parent = parent;
    a.isolated = isolated;
    const auto mode = r.get<MarginMode>();
    if (mode != MarginMode::cross && mode != MarginMode::portfolio) r.fail();
    a.mode = mode;
    a.last_active = version >= 2 ? r.get<double>() : now;
    if (std::isnan(a.last_active)) r.fail();
    for (double& b : a.balances) b = r.get<double>();
    for (std::size_t k = 0, m = r.count(); k < m; ++k) {
      Position p;
      p.instrument = r.get<int>();
      for (double* x : {&p.size, &p.entry, &p.bids, &p.asks}) *x = r.get<double>();
      if (p.instrument < 0 || p.instrument >= static_cast<int>(e.instruments_.size()) ||
          e.instruments_[p.instrument].kind == InstrumentKind::spot) {
        r.fail();  // no API call can put a position on spot
      }
      a.positions.push_back(p);
    }
  }
  for (const Account& a : e.accounts_) {
    if (a.parent >= static_cast<int>(e.accounts_.size()) ||
        a.isolated >= static_cast<int>(e.instruments_.size())) {
      r.fail();
    }
  }
  for (std::size_t i = 0, n = r.count(); i < n; ++i) {
    const auto id = r.get<std::int64_t>();
    Order o;
    o.account = r.get<int>();
    o.instrument = r.get<int>();
    o.qty = r.get<double>();
    o.price = r.get<double>();
    if (o.account < 0 || o.account >= static_cast<int>(e.accounts_.size()) || o.instrument < 0 ||
        o.instrument >= static_cast<int>(e.instruments_.size()) ||
        e.instruments_[o.instrument].kind == InstrumentKind::spot) {
      r.fail();
    }
    e.orders_[id] = o;
  }
  for (std::size_t i = 0, n = r.count(); i < n; ++i) {
    const auto key = r.get<std::int64_t>();
    Mark m;
    m.value = r.get<double>();
    m.time = r.get<double>();
    e.forwards_[key] = m;
  }
  for (std::size_t i = 0; i < e.instruments_.size(); ++i) {
    LiquidityModel l;
    l.spread = r.get<double>();
    l.impact = r.get<double>();
    l.max_step = r.get<double>();
    e.set_liquidity(static_cast<int>(i), l);
  }
  LiquidationParams lp;
  lp.target = r.get<LiquidationTarget>();
  lp.buffer = r.get<double>();
  lp.fee_rate = r.get<double>();
  if (version >= 2) {
    lp.fee_policy = r.get<FeePolicy>();
    lp.fill_policy = r.get<FillPolicy>();
    for (double* x : {&lp.max_if_fee, &lp.if_factor, &lp.ramp_per_second, &lp.ramp_grace,
                      &lp.max_fee_rate, &lp.bankruptcy_adjustment, &lp.spread_to_mm,
                      &lp.spot_dust}) {
      *x = r.get<double>();
    }
  }
  e.set_liquidation_params(lp);
  for (std::size_t i = 0; i < e.assets_.size(); ++i) {
    e.fund_[i] = r.get<double>();
    e.market_pnl_[i] = r.get<double>();
    e.socialized_[i] = r.get<double>();
  }
  if (!r.done()) r.fail();
  return e;
}

}  // namespace marginkit
