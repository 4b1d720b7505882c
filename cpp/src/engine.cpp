#include "marginkit/engine.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <stdexcept>

#include "marginkit/parallel.hpp"
#include "marginkit/pricing.hpp"
#include "kernels/kernel_table.hpp"

namespace marginkit {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument(what); }

bool positive(double x) { return std::isfinite(x) && x > 0.0; }

bool is_future_like(InstrumentKind k) {
  return k == InstrumentKind::perpetual || k == InstrumentKind::future;
}

}  // namespace

const char* reason_name(Reason r) noexcept {
  switch (r) {
    case Reason::ok: return "ok";
    case Reason::insufficient_margin: return "insufficient_margin";
    case Reason::reduce_only: return "reduce_only";
    case Reason::stale_price: return "stale_price";
    case Reason::unknown_account: return "unknown_account";
    case Reason::unknown_instrument: return "unknown_instrument";
    case Reason::invalid_quantity: return "invalid_quantity";
    case Reason::invalid_price: return "invalid_price";
    case Reason::instrument_expired: return "instrument_expired";
    case Reason::no_price: return "no_price";
    case Reason::insufficient_balance: return "insufficient_balance";
    case Reason::not_isolated_instrument: return "not_isolated_instrument";
  }
  return "unknown";
}

const char* health_name(Health h) noexcept {
  switch (h) {
    case Health::healthy: return "healthy";
    case Health::warning: return "warning";
    case Health::reduce_only: return "reduce_only";
    case Health::liquidation: return "liquidation";
    case Health::bankrupt: return "bankrupt";
  }
  return "unknown";
}

// ---- static data -----------------------------------------------------------

int Engine::add_asset(const AssetSpec& spec) {
  if (spec.name.empty()) bad("asset name must not be empty");
  if (asset_ids_.count(spec.name)) bad("duplicate asset '" + spec.name + "'");
  double prev = 0.0;
  for (const auto& t : spec.tiers) {
    if (!(t.upto > prev)) bad("asset '" + spec.name + "': haircut tiers must increase");
    if (!(t.haircut >= 0.0 && t.haircut <= 1.0)) {
      bad("asset '" + spec.name + "': haircuts must be in [0, 1]");
    }
    prev = t.upto;
  }
  if (!(std::isfinite(spec.quantum) && spec.quantum >= 0.0)) {
    bad("asset '" + spec.name + "': quantum must be finite and >= 0");
  }
  const AssetWeights& w = spec.weights;
  if (!(std::isfinite(w.liability_weight) && w.liability_weight >= 1.0)) {
    bad("asset '" + spec.name + "': liability_weight must be finite and >= 1");
  }
  if (!(std::isfinite(w.imf_factor) && w.imf_factor >= 0.0)) {
    bad("asset '" + spec.name + "': imf_factor must be finite and >= 0");
  }
  if (!(std::isfinite(w.weight_quantum) && w.weight_quantum >= 0.0 && w.weight_quantum < 1.0)) {
    bad("asset '" + spec.name + "': weight_quantum must be in [0, 1)");
  }
  if (!(spec.liquidator_fee >= 0.0 && spec.liquidator_fee < 1.0)) {
    bad("asset '" + spec.name + "': liquidator_fee must be in [0, 1)");
  }
  Asset a;
  a.spec = spec;
  a.quantum = Quantum(spec.quantum);
  if (a.spec.tiers.empty()) a.spec.tiers.push_back(HaircutTier{kInf, 0.0});
  a.plain = a.spec.tiers.size() == 1 && a.spec.tiers[0].haircut == 0.0 &&
            a.spec.tiers[0].upto == kInf && w.liability_weight == 1.0 &&
            !(w.imf_factor > 0.0) && !(w.weight_quantum > 0.0);
  assets_.push_back(a);
  const int id = static_cast<int>(assets_.size()) - 1;
  asset_ids_[spec.name] = id;
  for (auto& acc : accounts_) acc.balances.resize(assets_.size(), 0.0);
  underlying_set_.push_back(-1);
  fund_.push_back(0.0);
  market_pnl_.push_back(0.0);
  socialized_.push_back(0.0);
  ++stamp_;  // the per-asset tables ensure_state() builds grow
  return id;
}

int Engine::add_model(MarginModel model) {
  if (model.name.empty()) bad("model name must not be empty");
  if (model_ids_.count(model.name)) bad("duplicate model '" + model.name + "'");
  model.finalize();
  istate_stamp_.value = 0;  // instrument states point into the models' curve tables
  const int id = static_cast<int>(models_.size());
  model_ids_[model.name] = id;
  models_.push_back(std::move(model));
  return id;
}

int Engine::add_instrument(const InstrumentSpec& spec) {
  if (spec.name.empty()) bad("instrument name must not be empty");
  if (instrument_ids_.count(spec.name)) bad("duplicate instrument '" + spec.name + "'");
  const std::string at = "instrument '" + spec.name + "': ";
  check_asset(spec.underlying);
  check_asset(spec.settle);
  if (spec.model < 0 || spec.model >= static_cast<int>(models_.size())) bad(at + "unknown model");
  if (!positive(spec.terms.contract_size)) bad(at + "contract_size must be > 0");
  if (!(std::isfinite(spec.taker_fee) && spec.taker_fee >= 0.0)) bad(at + "taker_fee must be >= 0");
  if (spec.kind != spec.terms.kind) bad(at + "kind and terms.kind differ");
  if (spec.kind == InstrumentKind::option) {
    if (!positive(spec.terms.strike)) bad(at + "strike must be > 0");
    if (spec.terms.cp != 1 && spec.terms.cp != -1) bad(at + "cp must be +1 or -1");
    if (spec.expiry <= 0) bad(at + "an option needs an expiry");
  }
  if (spec.kind == InstrumentKind::future && spec.expiry <= 0) bad(at + "a future needs an expiry");
  if (spec.terms.inverse && spec.settle != spec.underlying) {
    bad(at + "an inverse instrument settles in its underlying");
  }
  if (spec.expiry > 0 && static_cast<double>(spec.expiry) <= now_) bad(at + "already expired");
  const ModelKind mk = models_[spec.model].kind;
  if (spec.kind == InstrumentKind::option && mk != ModelKind::option_standard) {
    bad(at + "options need an option_standard model");
  }
  if (spec.kind != InstrumentKind::option && mk == ModelKind::option_standard) {
    bad(at + "option_standard is for options");
  }
  instruments_.push_back(spec);
  marks_.emplace_back();
  vols_.push_back(std::numeric_limits<double>::quiet_NaN());
  liquidity_.emplace_back();
  open_interest_.push_back(0.0);
  const int id = static_cast<int>(instruments_.size()) - 1;
  instrument_ids_[spec.name] = id;
  return id;
}

int Engine::add_account(const std::string& name, int margin_asset) {
  if (name.empty()) bad("account name must not be empty");
  if (account_ids_.count(name)) bad("duplicate account '" + name + "'");
  check_asset(margin_asset);
  Account a;
  a.name = name;
  a.margin_asset = margin_asset;
  a.balances.assign(assets_.size(), 0.0);
  a.last_active = now_;
  accounts_.push_back(std::move(a));
  const int id = static_cast<int>(accounts_.size()) - 1;
  account_ids_[name] = id;
  return id;
}

namespace {
template <class Map>
int lookup(const Map& m, const std::string& name) {
  auto it = m.find(name);
  return it == m.end() ? -1 : it->second;
}
}  // namespace

int Engine::asset_id(const std::string& name) const { return lookup(asset_ids_, name); }
int Engine::model_id(const std::string& name) const { return lookup(model_ids_, name); }
int Engine::instrument_id(const std::string& name) const { return lookup(instrument_ids_, name); }
int Engine::account_id(const std::string& name) const { return lookup(account_ids_, name); }

void Engine::check_asset(int id) const {
  if (id < 0 || id >= static_cast<int>(assets_.size())) bad("unknown asset id " + std::to_string(id));
}

Engine::Account& Engine::acct(int id) {
  if (id < 0 || id >= static_cast<int>(accounts_.size())) {
    bad("unknown account id " + std::to_string(id));
  }
  return accounts_[id];
}

const InstrumentSpec& Engine::instr(int id) const {
  if (id < 0 || id >= static_cast<int>(instruments_.size())) {
    bad("unknown instrument id " + std::to_string(id));
  }
  return instruments_[id];
}

// ---- market ------------------------------------------------------------------

bool Engine::set_price(int asset, double price, double time) {
  check_asset(asset);
  if (!positive(price)) bad("price of '" + assets_[asset].spec.name + "' must be finite and > 0");
  if (std::isnan(time)) bad("time must not be NaN");
  Asset& a = assets_[asset];
  if (time < a.time) return false;  // out of order: never replace a newer price
  a.price = price;
  a.time = time;
  ++stamp_;
  return true;
}

bool Engine::set_mark(int instrument, double mark, double time) {
  const InstrumentSpec& in = instr(instrument);
  const bool ok = in.kind == InstrumentKind::option ? (std::isfinite(mark) && mark >= 0.0)
                                                    : positive(mark);
  if (!ok) bad("mark of '" + in.name + "' must be finite and " +
               (in.kind == InstrumentKind::option ? ">= 0" : "> 0"));
  if (std::isnan(time)) bad("time must not be NaN");
  Mark& m = marks_[instrument];
  if (time < m.time) return false;
  m.value = mark;
  m.time = time;
  vols_[instrument] = std::numeric_limits<double>::quiet_NaN();  // implied from the mark
  ++stamp_;
  return true;
}

bool Engine::set_forward(int underlying, std::int64_t expiry, double forward, double time) {
  check_asset(underlying);
  if (expiry <= 0) bad("expiry must be a unix time > 0");
  if (!positive(forward)) bad("forward must be finite and > 0");
  if (std::isnan(time)) bad("time must not be NaN");
  Mark& m = forwards_[forward_key(underlying, expiry)];
  if (time < m.time) return false;
  m = Mark{forward, time};
  ++stamp_;
  return true;
}

double Engine::forward(int underlying, std::int64_t expiry) const {
  check_asset(underlying);
  auto it = forwards_.find(forward_key(underlying, expiry));
  return it == forwards_.end() ? std::numeric_limits<double>::quiet_NaN() : it->second.value;
}

void Engine::set_rate(double rate) {
  if (!std::isfinite(rate)) bad("rate must be finite");
  if (rate != rate_) ++stamp_;
  rate_ = rate;
}

// In the option's quote currency: USD for inverse options, the settlement asset
// for linear ones. Forwards set with set_forward are in USD; a future's mark is
// in its own quote currency (USD if inverse, else its settlement asset).
Engine::Mark Engine::forward_for(const InstrumentSpec& option) const noexcept {
  auto usd_per_quote = [&](const InstrumentSpec& x) {
    return x.terms.inverse ? 1.0 : assets_[x.settle].price;
  };
  auto it = forwards_.find(forward_key(option.underlying, option.expiry));
  if (it != forwards_.end()) {
    return Mark{it->second.value / usd_per_quote(option), it->second.time};
  }
  for (std::size_t i = 0; i < instruments_.size(); ++i) {
    const InstrumentSpec& f = instruments_[i];
    if (f.kind == InstrumentKind::future && f.underlying == option.underlying &&
        f.expiry == option.expiry && std::isfinite(marks_[i].value)) {
      return Mark{marks_[i].value * usd_per_quote(f) / usd_per_quote(option), marks_[i].time};
    }
  }
  return Mark{};
}

bool Engine::set_vol(int instrument, double vol, double time) {
  const InstrumentSpec& in = instr(instrument);
  if (in.kind != InstrumentKind::option) bad("'" + in.name + "' is not an option");
  if (!(std::isfinite(vol) && vol >= 0.0)) bad("vol of '" + in.name + "' must be finite and >= 0");
  if (std::isnan(time)) bad("time must not be NaN");
  const Mark fwd = forward_for(in);
  if (!std::isfinite(fwd.value)) {
    bad("no forward for '" + in.name + "': set_forward() or mark a dated future first");
  }
  const double price = black76_one(in.terms.cp, fwd.value, in.terms.strike, years_to_expiry(in),
                                   vol, rate_, in.terms.inverse ? Settlement::inverse
                                                                : Settlement::linear)
                           .price;
  if (!set_mark(instrument, price, std::min(time, fwd.time))) return false;
  vols_[instrument] = vol;
  return true;
}

void Engine::set_open_interest(int instrument, double contracts) {
  const InstrumentSpec& in = instr(instrument);
  if (!(std::isfinite(contracts) && contracts >= 0.0)) {
    bad("open interest of '" + in.name + "' must be finite and >= 0");
  }
  if (open_interest_[instrument] != contracts) ++stamp_;
  open_interest_[instrument] = contracts;
}

void Engine::set_last_active(int account, double time) {
  Account& a = acct(account);
  if (std::isnan(time)) bad("time must not be NaN");
  a.last_active = time;
}

void Engine::set_thresholds(const Thresholds& t) {
  if (!(t.warning >= t.reduce_only && t.reduce_only >= t.liquidation && t.liquidation > 0.0 &&
        std::isfinite(t.warning))) {
    bad("thresholds must satisfy warning >= reduce_only >= liquidation > 0");
  }
  thresholds_ = t;
}

double Engine::index_of(const InstrumentSpec& in) const noexcept {
  const double u = assets_[in.underlying].price;
  return in.terms.inverse ? u : u / assets_[in.settle].price;
}

double Engine::to_margin(const Account& a, int settle) const noexcept {
  return settle == a.margin_asset ? 1.0 : assets_[settle].price / assets_[a.margin_asset].price;
}

// ---- evaluation --------------------------------------------------------------

Engine::Contribution Engine::contribution_at(const InstrumentSpec& in, double size, double bids,
                                             double asks, double entry, double mark,
                                             double index, double f) const noexcept {
  const std::size_t id = static_cast<std::size_t>(&in - instruments_.data());
  const double oi = id < open_interest_.size() ? open_interest_[id] : 0.0;
  const Requirement r = requirement_with_orders(models_[in.model], in.terms, size, bids, asks,
                                                mark, index, entry, oi);
  return {r.im * f, r.mm * f, equity_of(in, size, entry, mark) * f};
}

__attribute__((noinline)) Engine::Contribution Engine::general_contribution(
    const Position& p) const noexcept {
  const InstrumentSpec& in = instruments_[p.instrument];
  return contribution_at(in, p.size, p.bids, p.asks, p.entry, marks_[p.instrument].value,
                         index_of(in), 1.0);
}

double Engine::equity_of(const InstrumentSpec& in, double size, double entry,
                         double mark) noexcept {
  if (size == 0.0) return 0.0;
  const double cs = in.terms.contract_size;
  if (in.kind == InstrumentKind::option) return size * cs * mark;
  if (in.kind != InstrumentKind::perpetual && in.kind != InstrumentKind::future) return 0.0;
  return in.terms.inverse ? size * cs * (1.0 / entry - 1.0 / mark) : size * cs * (mark - entry);
}

Engine::Contribution Engine::contribution(const Account& a, const InstrumentSpec& in, double size,
                                          double bids, double asks,
                                          double entry) const noexcept {
  const int id = static_cast<int>(&in - instruments_.data());
  return contribution_at(in, size, bids, asks, entry, marks_[id].value, index_of(in),
                         to_margin(a, in.settle));
}

double Engine::collateral_of(const Account& a, double* oldest) const noexcept {
  double value = 0.0, old = oldest ? *oldest : 0.0;
  for (std::size_t i = 0; i < a.balances.size(); ++i) {
    const double b = a.balances[i];
    if (b != 0.0) add_balance(static_cast<int>(i), b, value, old);
  }
  if (oldest) *oldest = old;
  return value / assets_[a.margin_asset].price;
}

void Engine::refresh(Account& a) {
  const bool portfolio = a.mode == MarginMode::portfolio;
  if (a.stamp == stamp_ && (!portfolio || a.groups_stamp == stamp_)) return;
  ensure_state();
  const int margin = a.margin_asset;
  const double margin_price = assets_[margin].price;
  double oldest = assets_[margin].time;
  a.collateral = collateral_of(a, &oldest);
  double im = 0.0, mm = 0.0, eq = 0.0;
  bool priced = std::isfinite(a.collateral);
  if (!portfolio) {
    const Sums sums = standard_sums(a.positions.size(), positions_of(a), margin, &oldest);
    im = sums.im;
    mm = sums.mm;
    eq = sums.eq;
  } else {
    PortfolioScratch& sc = portfolio_scratch();
    sc.reset(a.positions.size());
    std::vector<Group>& groups = a.groups;
    for (Group& g : groups) g.used = false;
    int ranks = 0;
    double eq_standard = 0.0;
    for (const Position& p : a.positions) {
      const InstrumentState& st = istate_[p.instrument];
      oldest = std::min(oldest, st.time);
      const double f = st.settle == margin ? 1.0 : assets_[st.settle].price / margin_price;
      if (st.row) {  // its requirement comes from its scenario group
        Group& g = group_for(groups, st);
        if (g.rank < 0) g.rank = ranks++;
        g.equity += state_value(st, p) * f;
        add_to_group(groups, sc, g, st, p, f);
      } else {
        const Contribution c = standard_contribution(p, st).in(f);
        im += c.im;
        mm += c.mm;
        eq_standard += c.equity;
      }
    }
    eq = portfolio_equity(groups, ranks) + eq_standard;
    finish_portfolio(a, groups, sc, im, mm);
    a.groups_stamp = stamp_;
  }
  priced = priced && std::isfinite(im + mm + eq);
  a.sum_im = im;
  a.sum_mm = mm;
  a.sum_pos_equity = eq;
  a.oldest = oldest;
  a.priced = priced;
  a.stamp = stamp_;
}

Engine::Figures Engine::figures(const Account& a) const noexcept {
  Totals t;
  t.collateral = a.collateral;
  t.im = a.sum_im;
  t.mm = a.sum_mm;
  t.eq = a.sum_pos_equity;
  t.priced = a.priced;
  return figures(a.margin_asset, t, !a.positions.empty());
}

AccountSummary Engine::summarize(const Account& a) const noexcept {
  const Figures f = figures(a);
  AccountSummary s;
  s.equity = f.equity;
  s.im = f.im;
  s.mm = f.mm;
  s.available = f.equity - f.im;
  s.margin_ratio = !a.priced   ? std::numeric_limits<double>::quiet_NaN()
                   : f.mm > 0.0 ? f.equity / f.mm
                                : kInf;
  s.state = f.state;
  s.stale = a.oldest < now_ - max_age_;
  return s;
}

AccountSummary Engine::summary(int account) {
  Account& a = acct(account);
  refresh_sums(a);
  return summarize(a);
}

std::vector<PositionRisk> Engine::attribution(int account) {
  Account& a = acct(account);
  std::vector<PositionRisk> out;
  out.reserve(a.positions.size());
  const Quantum& q = quantum(a);
  for (const Position& p : a.positions) {
    const InstrumentSpec& in = instruments_[p.instrument];
    const Contribution c = contribution(a, in, p.size, p.bids, p.asks, p.entry);
    out.push_back({p.instrument, p.size, p.entry, marks_[p.instrument].value, round_up(c.im, q),
                   round_up(c.mm, q), c.equity});
  }
  return out;
}

std::vector<UnderlyingGreeks> Engine::net_greeks(int account) {
  Account& a = acct(account);
  std::vector<UnderlyingGreeks> out;
  auto entry_for = [&](int u) -> UnderlyingGreeks& {
    for (auto& g : out) {
      if (g.underlying == u) return g;
    }
    out.push_back({u, 0.0, 0.0, 0.0, 0.0});
    return out.back();
  };
  for (const Position& p : a.positions) {
    if (p.size == 0.0) continue;
    const InstrumentSpec& in = instruments_[p.instrument];
    UnderlyingGreeks& g = entry_for(in.underlying);
    const double cs = in.terms.contract_size;
    if (in.kind != InstrumentKind::option) {
      g.delta += in.terms.inverse ? p.size * cs / p.entry : p.size * cs;
      continue;
    }
    // Option: Black-76 on the expiry's forward at the engine's rate, at the
    // option's own volatility (set, or implied from its mark).
    const double index = index_of(in);
    const double usd_per_quote = in.terms.inverse ? 1.0 : assets_[in.settle].price;
    const Black76Value v = black76_one(in.terms.cp, option_forward(in), in.terms.strike,
                                       years_to_expiry(in), implied_vol_of(p.instrument), rate_,
                                       Settlement::linear);
    const double units = p.size * cs * usd_per_quote;
    g.delta += units * v.delta;
    g.gamma += units * v.gamma;
    g.vega += units * v.vega;
    g.theta += units * v.theta;
  }
  return out;
}

// ---- the flat book -------------------------------------------------------------------

void Engine::classify_flat(std::size_t i) {
  const Account& a = accounts_[i];
  FlatAccount& fa = flat_[i];
  fa.margin = a.margin_asset;
  const bool orders = std::any_of(a.positions.begin(), a.positions.end(), [](const Position& p) {
    return p.bids > 0.0 || p.asks > 0.0;
  });
  const bool portfolio = a.mode == MarginMode::portfolio;
  // The batch portfolio paths do not cover orders; counts must fit the record.
  std::size_t nb = 0;
  for (double b : a.balances) nb += b != 0.0 ? 1 : 0;
  const std::size_t n = a.positions.size();
  fa.kind = (portfolio && orders) || n >= UINT32_MAX / 2 || nb >= UINT16_MAX / 2 ? FlatKind::other
            : portfolio                                                          ? FlatKind::portfolio
            : orders ? FlatKind::cross_orders
                     : FlatKind::cross;
  fa.npos = static_cast<std::uint32_t>(n);
  fa.nbal = static_cast<std::uint16_t>(nb);
}

void Engine::fill_flat(std::size_t i) {
  const Account& a = accounts_[i];
  FlatAccount& fa = flat_[i];
  std::uint8_t slot[kBatchPositions];  // portfolio: each position's place, by group
  if (fa.kind == FlatKind::portfolio && !flat_groups(a, fa, slot)) fa.kind = FlatKind::other;
  const bool by_group = fa.kind == FlatKind::portfolio;
  for (std::size_t k = 0; k < fa.npos; ++k) {
    const Position& p = a.positions[k];
    const std::size_t at = fa.pos + (by_group ? slot[k] : k);
    flat_inst_[at] = p.instrument;
    flat_size_[at] = p.size;
    flat_entry_[at] = p.entry;
    flat_bids_[at] = p.bids;  // read for cross_orders accounts only
    flat_asks_[at] = p.asks;
  }
  std::size_t k = fa.bal;
  for (std::size_t asset = 0; asset < a.balances.size(); ++asset) {
    if (a.balances[asset] == 0.0) continue;
    flat_asset_[k] = static_cast<std::int32_t>(asset);
    flat_amount_[k++] = a.balances[asset];
  }
}

// Columns grown to the given lengths (positions, balances).
void Engine::size_flat(std::size_t positions, std::size_t balances) {
  for (auto* v : {&flat_size_, &flat_entry_, &flat_bids_, &flat_asks_}) v->resize(positions);
  flat_inst_.resize(positions);
  flat_asset_.resize(balances);
  flat_amount_.resize(balances);
}

void Engine::pack_flat(std::size_t i) {
  classify_flat(i);
  FlatAccount& fa = flat_[i];
  flat_portfolio_ = flat_portfolio_ || fa.kind == FlatKind::portfolio;
  if (fa.kind == FlatKind::other) {  // its slots, if any, are given up
    flat_garbage_ += fa.pcap;
    fa.pcap = fa.bcap = 0;
    return;
  }
  const bool grow_pos = fa.npos > fa.pcap, grow_bal = fa.nbal > fa.bcap;
  if (grow_pos || grow_bal) {  // new slots at the end, with room to grow
    std::size_t positions = flat_inst_.size(), balances = flat_asset_.size();
    if (grow_pos) {
      flat_garbage_ += fa.pcap;
      fa.pcap = fa.npos + fa.npos / 2 + 1;
      fa.pos = static_cast<std::uint32_t>(positions);
      positions += fa.pcap;
    }
    if (grow_bal) {
      fa.bcap = static_cast<std::uint16_t>(fa.nbal + 1);
      fa.bal = static_cast<std::uint32_t>(balances);
      balances += fa.bcap;
    }
    if (positions > UINT32_MAX || balances > UINT32_MAX) {
      fa.kind = FlatKind::other;
      fa.pcap = fa.bcap = 0;
      return;
    }
    size_flat(positions, balances);
  }
  fill_flat(i);
}

void Engine::sync_flat() {
  const std::size_t n = accounts_.size();
  const std::size_t used = flat_inst_.size();
  const bool rebuild = flat_.size() > n || (flat_dirty_.size() + (n - flat_.size())) * 4 > n ||
                       flat_garbage_ * 3 > used || flat_epoch_ != layout_epoch_;
  if (rebuild) {
    // Each account's kind and counts, then slots side by side, then the copies:
    // columns are sized once (no growth: at 1,000,000 accounts that is
    // hundreds of MB of page faults and copies), both passes on the pool.
    flat_.assign(n, FlatAccount{});
    std::atomic<bool> portfolio{false};
    parallel_for(n, 4096, [&](std::size_t b, std::size_t e) {
      bool any = false;
      for (std::size_t i = b; i < e; ++i) {
        classify_flat(i);
        any = any || flat_[i].kind == FlatKind::portfolio;
      }
      if (any) portfolio.store(true, std::memory_order_relaxed);
    });
    flat_portfolio_ = portfolio.load();
    std::size_t positions = 0, balances = 0;
    for (FlatAccount& fa : flat_) {
      if (fa.kind == FlatKind::other) continue;
      if (positions + fa.npos > UINT32_MAX || balances + fa.nbal > UINT32_MAX) {
        fa.kind = FlatKind::other;
        continue;
      }
      fa.pos = static_cast<std::uint32_t>(positions);
      fa.pcap = fa.npos;
      positions += fa.npos;
      fa.bal = static_cast<std::uint32_t>(balances);
      fa.bcap = fa.nbal;
      balances += fa.nbal;
    }
    // Room for accounts that outgrow their slots until the next rebuild (a
    // column that grows is copied whole): reserved, not written, so free.
    for (auto* v : {&flat_size_, &flat_entry_, &flat_bids_, &flat_asks_}) {
      v->reserve(positions + positions / 2 + 1024);
    }
    flat_inst_.reserve(positions + positions / 2 + 1024);
    flat_asset_.reserve(balances + balances / 2 + 1024);
    flat_amount_.reserve(balances + balances / 2 + 1024);
    size_flat(positions, balances);
    parallel_for(n, 4096, [&](std::size_t b, std::size_t e) {
      for (std::size_t i = b; i < e; ++i) {
        if (flat_[i].kind != FlatKind::other) fill_flat(i);
      }
    });
    flat_garbage_ = 0;
    flat_epoch_ = layout_epoch_;
  } else {
    const std::size_t old = flat_.size();
    flat_.resize(n);
    for (std::uint32_t i : flat_dirty_) pack_flat(i);
    for (std::size_t i = old; i < n; ++i) pack_flat(i);
  }
  flat_dirty_.clear();
  flat_dirty_.reserve(n);  // flat_stale() never allocates: each account is listed once
}

void Engine::evaluate_all(double* equity, double* im, double* mm, double* available,
                          std::int8_t* state) {
  ensure_state();  // once, here: refreshing accounts on many threads only reads it
  sync_flat();
  // 32 chunks a thread (a 1,000,000-account book: ~2 ms each): a thread that
  // runs slower (a VM's second vCPU may) leaves the other at most one short
  // chunk to wait for. A/B against 4 a thread: 2-8 % faster, within the noise.
  // Accounts go in blocks of 64: first their totals, then their figures. One
  // account's figures wait on a long chain (its sums, then rounding and
  // state); apart, the core overlaps the figures of many accounts (A/B
  // against one loop: the portfolio pass 12 % faster, the cross pass 6-8 %;
  // 64 against 32: 3-5 % more; 16, 128 and 256 no better).
  const bool block = flat_portfolio_ && offset_ <= 0.0;  // (flat_portfolio_totals: no offset)
  parallel_for(accounts_.size(), 4096, [&](std::size_t b, std::size_t e) {
    constexpr std::size_t kBlock = 64;  // portfolio_block's mask has 64 bits
    // The block's totals, by column (lanes past its end stay zero).
    alignas(64) double col[kBlock] = {}, tim[kBlock] = {}, tmm[kBlock] = {}, teq[kBlock] = {};
    alignas(64) double risk[kBlock] = {};
    std::int32_t margin[kBlock] = {};
    bool flat[kBlock];
    const simd::KernelTable& kernels = simd::active_kernels();
    simd::FigureBlock fb;
    fb.collateral = col;
    fb.im = tim;
    fb.mm = tmm;
    fb.eq = teq;
    fb.margin = margin;
    fb.has_risk = risk;
    fb.quantum = asset_quantum_.data();
    fb.warning = thresholds_.warning;
    fb.reduce_only = thresholds_.reduce_only;
    fb.liquidation = thresholds_.liquidation;
    for (std::size_t i0 = b; i0 < e; i0 += kBlock) {
      const std::size_t n = std::min(kBlock, e - i0);
      // The block's plain portfolio accounts in one kernel call (flat_totals'
      // results for them, to the bit), then the others and every collateral.
      const std::uint64_t done =
          block ? kernels.portfolio_block(portfolio_block(&flat_[i0], n), tim, tmm, teq) : 0;
      for (std::size_t k = 0; k < n; ++k) {
        const FlatAccount& fa = flat_[i0 + k];
        margin[k] = fa.margin;
        risk[k] = fa.npos > 0 ? 1.0 : 0.0;
        if (done >> k & 1) {
          col[k] = flat_collateral(fa, nullptr);
          flat[k] = true;
          continue;
        }
        Totals t;
        flat[k] = flat_totals(fa, t);
        col[k] = t.collateral;
        tim[k] = t.im;
        tmm[k] = t.mm;
        teq[k] = t.eq;
      }
      // Every account's figures a vector at a time (figures(), to the bit),
      // then those of the accounts the flat book does not cover.
      fb.n = n;
      fb.equity_out = equity + i0;
      fb.im_out = im + i0;
      fb.mm_out = mm + i0;
      fb.available_out = available + i0;
      fb.state_out = state + i0;
      kernels.block_figures(fb);
      for (std::size_t k = 0; k < n; ++k) {
        if (flat[k]) continue;
        const std::size_t i = i0 + k;
        const Figures s = refreshed_figures(i);
        equity[i] = s.equity;
        im[i] = s.im;
        mm[i] = s.mm;
        available[i] = s.equity - s.im;
        state[i] = static_cast<std::int8_t>(s.state);
      }
    }
  }, 32);
}

double Engine::balance(int account, int asset) const {
  if (account < 0 || account >= static_cast<int>(accounts_.size())) {
    bad("unknown account id " + std::to_string(account));
  }
  check_asset(asset);
  return accounts_[account].balances[asset];
}

// ---- account operations --------------------------------------------------------

void Engine::deposit(int account, int asset, double amount) {
  Account& a = acct(account);
  check_asset(asset);
  if (!positive(amount)) bad("deposit amount must be finite and > 0");
  a.balances[asset] += amount;
  a.last_active = std::max(a.last_active, now_);
  touch(a);
}

Reason Engine::withdraw(int account, int asset, double amount) {
  Account& a = acct(account);
  check_asset(asset);
  if (!positive(amount)) bad("withdrawal amount must be finite and > 0");
  if (a.parent >= 0) bad("an isolated account releases collateral with transfer()");
  if (a.balances[asset] < amount) return Reason::insufficient_balance;
  refresh(a);
  if (!a.priced || !std::isfinite(assets_[asset].price)) return Reason::no_price;
  const double before = a.balances[asset];
  const double d_cv = asset_value(asset, before - amount, assets_[asset].price) -
                      asset_value(asset, before, assets_[asset].price);
  const Quantum& q = quantum(a);
  const double equity_after =
      round_down(a.collateral + d_cv / assets_[a.margin_asset].price + a.sum_pos_equity, q);
  if (equity_after - round_up(a.sum_im, q) < 0.0) return Reason::insufficient_margin;
  a.balances[asset] = before - amount;
  a.last_active = std::max(a.last_active, now_);
  touch(a);
  return Reason::ok;
}

// ---- isolated margin --------------------------------------------------------------

int Engine::open_isolated(int parent, int instrument, double amount, Reason* why) {
  Account& p = acct(parent);
  const InstrumentSpec& in = instr(instrument);
  if (p.parent >= 0) bad("an isolated account cannot open isolated positions");
  if (in.kind == InstrumentKind::spot) bad("spot is not margined in isolation");
  if (!positive(amount)) bad("isolated margin must be finite and > 0");
  const std::string name = p.name + "/" + in.name;
  if (account_ids_.count(name)) bad("isolated account '" + name + "' exists already");
  Reason r = withdraw(parent, p.margin_asset, amount);
  if (why) *why = r;
  if (r != Reason::ok) return -1;
  const int child = add_account(name, accounts_[parent].margin_asset);
  accounts_[child].parent = parent;
  accounts_[child].isolated = instrument;
  accounts_[child].balances[accounts_[child].margin_asset] = amount;
  return child;
}

Reason Engine::transfer(int from, int to, double amount) {
  Account& a = acct(from);
  Account& b = acct(to);
  if (!(a.parent == to || b.parent == from)) {
    bad("transfers go between an account and its isolated sub-account");
  }
  if (!positive(amount)) bad("transfer amount must be finite and > 0");
  const int asset = a.margin_asset;
  if (a.balances[asset] < amount) return Reason::insufficient_balance;
  refresh(a);
  if (!a.priced) return Reason::no_price;
  const Quantum& q = quantum(a);
  const double d_cv = asset_value(asset, a.balances[asset] - amount, assets_[asset].price) -
                      asset_value(asset, a.balances[asset], assets_[asset].price);
  const double equity_after =
      round_down(a.collateral + d_cv / assets_[asset].price + a.sum_pos_equity, q);
  if (equity_after - round_up(a.sum_im, q) < 0.0) return Reason::insufficient_margin;
  a.balances[asset] -= amount;
  b.balances[asset] += amount;
  touch(a);
  touch(b);
  return Reason::ok;
}

int Engine::parent_of(int account) const {
  if (account < 0 || account >= static_cast<int>(accounts_.size())) {
    bad("unknown account id " + std::to_string(account));
  }
  return accounts_[account].parent;
}

int Engine::isolated_instrument(int account) const {
  if (account < 0 || account >= static_cast<int>(accounts_.size())) {
    bad("unknown account id " + std::to_string(account));
  }
  return accounts_[account].isolated;
}

// ---- bulk loading -------------------------------------------------------------------

int Engine::add_accounts(const std::vector<std::string>& names, int margin_asset) {
  check_asset(margin_asset);
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (names[i].empty()) bad("account name " + std::to_string(i) + " is empty");
    if (account_ids_.count(names[i])) bad("duplicate account '" + names[i] + "'");
  }
  const int first = static_cast<int>(accounts_.size());
  accounts_.reserve(accounts_.size() + names.size());
  account_ids_.reserve(account_ids_.size() + names.size());
  for (const auto& name : names) {
    if (account_ids_.count(name)) {
      // A duplicate inside `names`: undo this call's additions, then refuse.
      for (std::size_t i = first; i < accounts_.size(); ++i) account_ids_.erase(accounts_[i].name);
      accounts_.resize(first);
      bad("duplicate account '" + name + "'");
    }
    add_account(name, margin_asset);
  }
  return first;
}

void Engine::deposit_many(std::size_t n, const int* accounts, int asset, const double* amounts) {
  check_asset(asset);
  for (std::size_t i = 0; i < n; ++i) {
    if (accounts[i] < 0 || accounts[i] >= static_cast<int>(accounts_.size())) {
      bad("accounts[" + std::to_string(i) + "] is not an account id");
    }
    if (!positive(amounts[i])) bad("amounts[" + std::to_string(i) + "] must be finite and > 0");
  }
  for (std::size_t i = 0; i < n; ++i) {
    accounts_[accounts[i]].balances[asset] += amounts[i];
    touch(accounts_[accounts[i]]);
  }
}

void Engine::set_positions(std::size_t n, const int* accounts, const int* instruments,
                           const double* sizes, const double* entries) {
  for (std::size_t i = 0; i < n; ++i) {
    const std::string at = "[" + std::to_string(i) + "]";
    if (accounts[i] < 0 || accounts[i] >= static_cast<int>(accounts_.size())) {
      bad("accounts" + at + " is not an account id");
    }
    if (instruments[i] < 0 || instruments[i] >= static_cast<int>(instruments_.size())) {
      bad("instruments" + at + " is not an instrument id");
    }
    const auto& in = instruments_[instruments[i]];
    if (in.kind == InstrumentKind::spot) bad("instruments" + at + " is spot: use deposits");
    if (!std::isfinite(sizes[i])) bad("sizes" + at + " must be finite");
    const bool opt = in.kind == InstrumentKind::option;
    if (!(std::isfinite(entries[i]) && (opt ? entries[i] >= 0.0 : entries[i] > 0.0))) {
      bad("entries" + at + " must be finite and " + (opt ? ">= 0" : "> 0"));
    }
    const int iso = accounts_[accounts[i]].isolated;
    if (iso >= 0 && iso != instruments[i]) bad("accounts" + at + " is isolated on another instrument");
  }
  for (std::size_t i = 0; i < n; ++i) {
    Account& a = accounts_[accounts[i]];
    Position& p = slot(a, instruments[i]);
    p.size = sizes[i];
    p.entry = sizes[i] == 0.0 ? 0.0 : entries[i];
    touch(a);
  }
  for (std::size_t i = 0; i < n; ++i) drop_empty(accounts_[accounts[i]]);
}

Position& Engine::slot(Account& a, int instrument) {
  for (Position& p : a.positions) {
    if (p.instrument == instrument) return p;
  }
  Position p;
  p.instrument = instrument;
  a.positions.push_back(p);
  return a.positions.back();
}

void Engine::drop_empty(Account& a) {
  a.positions.erase(std::remove_if(a.positions.begin(), a.positions.end(),
                                   [](const Position& p) {
                                     return p.size == 0.0 && p.bids <= 0.0 && p.asks <= 0.0;
                                   }),
                    a.positions.end());
}

// Applies a trade to the position and returns the cash flow to the settlement
// balance (realised P&L for futures, premium for options), before fees.
double Engine::fill_cash(Account& a, const InstrumentSpec& in, Position& p, double qty,
                         double price) {
  const double cs = in.terms.contract_size;
  const double q = p.size;
  const double q_new = q + qty;
  double cash = 0.0;
  if (in.kind == InstrumentKind::option) {
    cash = -qty * cs * price;  // premium paid (buy) or received (sell)
    if (q_new == 0.0) {
      p.entry = 0.0;
    } else if (q == 0.0) {
      p.entry = price;  // opening: exactly the trade price (q x price / q may not be)
    } else if ((q > 0) == (qty > 0)) {
      p.entry = (q * p.entry + qty * price) / q_new;
    } else if ((q > 0) != (q_new > 0)) {
      p.entry = price;
    }
  } else if (in.kind == InstrumentKind::spot) {
    a.balances[in.underlying] += qty * cs;
    cash = -qty * cs * price;
  } else {
    const bool inverse = in.terms.inverse;
    if (q == 0.0) {
      p.entry = price;  // opening: exactly the trade price (q / (q / price) may not be)
    } else if ((q > 0) == (qty > 0)) {
      // Adding: average entry (harmonic for inverse: equal P&L per contract).
      p.entry = inverse ? q_new / (q / p.entry + qty / price)
                        : (q * p.entry + qty * price) / q_new;
    } else {
      const double closed = std::min(std::fabs(qty), std::fabs(q)) * (q > 0 ? 1.0 : -1.0);
      cash = inverse ? closed * cs * (1.0 / p.entry - 1.0 / price)
                     : closed * cs * (price - p.entry);
      if (q_new == 0.0) {
        p.entry = 0.0;
      } else if ((q > 0) != (q_new > 0)) {
        p.entry = price;  // flipped: the rest opens at the trade price
      }
    }
  }
  if (in.kind != InstrumentKind::spot) p.size = q_new;
  return cash;
}

double Engine::taker_fee(const InstrumentSpec& in, double qty, double price) noexcept {
  const double cs = in.terms.contract_size;
  const double n = (in.terms.inverse && in.kind != InstrumentKind::option)
                       ? std::fabs(qty) * cs / price
                       : std::fabs(qty) * cs * price;
  return in.taker_fee * n;
}


void Engine::fill(int account, int instrument, double qty, double price, double fee) {
  Account& a = acct(account);
  const InstrumentSpec& in = instr(instrument);
  if (!(std::isfinite(qty) && qty != 0.0)) bad("fill quantity must be finite and non-zero");
  const bool opt = in.kind == InstrumentKind::option;
  if (!(std::isfinite(price) && (opt ? price >= 0.0 : price > 0.0))) {
    bad("fill price must be finite and " + std::string(opt ? ">= 0" : "> 0"));
  }
  if (std::isnan(fee) || std::isinf(fee)) bad("fee must be finite");
  if (a.isolated >= 0 && a.isolated != instrument) {
    bad("account '" + a.name + "' is isolated on another instrument");
  }
  if (fee < 0.0) fee = taker_fee(in, qty, price);
  if (in.kind == InstrumentKind::spot) {
    Position tmp;
    a.balances[in.settle] += fill_cash(a, in, tmp, qty, price) - fee;
  } else {
    Position& p = slot(a, instrument);
    a.balances[in.settle] += fill_cash(a, in, p, qty, price) - fee;
    drop_empty(a);
  }
  a.last_active = std::max(a.last_active, now_);
  touch(a);
}

std::int64_t Engine::place_order(int account, int instrument, double qty, double price) {
  Account& a = acct(account);
  const InstrumentSpec& in = instr(instrument);
  if (!(std::isfinite(qty) && qty != 0.0)) bad("order quantity must be finite and non-zero");
  if (!(std::isfinite(price) && price >= 0.0)) bad("order price must be finite and >= 0");
  if (in.kind == InstrumentKind::spot) bad("resting spot orders are not margined");
  if (a.isolated >= 0 && a.isolated != instrument) {
    bad("account '" + a.name + "' is isolated on another instrument");
  }
  Position& p = slot(a, instrument);
  (qty > 0 ? p.bids : p.asks) += std::fabs(qty);
  const std::int64_t id = next_order_++;
  orders_[id] = Order{account, instrument, qty, price};
  a.last_active = std::max(a.last_active, now_);
  touch(a);
  return id;
}

void Engine::cancel_order(std::int64_t order_id) {
  auto it = orders_.find(order_id);
  if (it == orders_.end()) bad("unknown order id " + std::to_string(order_id));
  const Order o = it->second;
  Account& a = accounts_[o.account];
  Position& p = slot(a, o.instrument);
  double& side = o.qty > 0 ? p.bids : p.asks;
  const double rest = side - std::fabs(o.qty);
  // Float residue of adding and removing orders is not a resting order.
  side = rest > 1e-12 * (side + std::fabs(o.qty)) ? rest : 0.0;
  orders_.erase(it);
  drop_empty(a);
  touch(a);
}

void Engine::fill_order(std::int64_t order_id, double qty, double price, double fee) {
  auto it = orders_.find(order_id);
  if (it == orders_.end()) bad("unknown order id " + std::to_string(order_id));
  Order& o = it->second;
  if (!(std::isfinite(qty) && qty > 0.0 && qty <= std::fabs(o.qty))) {
    bad("fill quantity must be > 0 and at most the order's remaining quantity");
  }
  const double signed_qty = o.qty > 0 ? qty : -qty;
  const int account = o.account, instrument = o.instrument;
  // Validate the trade before changing the order, so a bad price changes nothing.
  const InstrumentSpec& in = instr(instrument);
  const bool opt = in.kind == InstrumentKind::option;
  if (!(std::isfinite(price) && (opt ? price >= 0.0 : price > 0.0))) bad("fill price is invalid");
  Position& p = slot(accounts_[account], instrument);
  double& side = o.qty > 0 ? p.bids : p.asks;
  const double rest = side - qty;
  side = rest > 1e-12 * (side + qty) ? rest : 0.0;
  o.qty -= signed_qty;
  if (o.qty == 0.0) orders_.erase(it);
  fill(account, instrument, signed_qty, price, fee);
}

// ---- liquidation prices ------------------------------------------------------------

int Engine::dominant_underlying(int account) {
  Account& a = acct(account);
  std::vector<double> exposure(assets_.size(), 0.0);
  for (const Position& p : a.positions) {
    const InstrumentSpec& in = instruments_[p.instrument];
    // Notional in USD: |size| x contract in underlying units x underlying price.
    const double units = in.terms.inverse && in.kind != InstrumentKind::option
                             ? std::fabs(p.size) * in.terms.contract_size /
                                   assets_[in.underlying].price
                             : std::fabs(p.size) * in.terms.contract_size;
    const double usd = units * assets_[in.underlying].price;
    if (std::isfinite(usd)) exposure[in.underlying] += usd;
  }
  int best = -1;
  double most = 0.0;
  for (std::size_t i = 0; i < exposure.size(); ++i) {
    if (exposure[i] > most) {
      most = exposure[i];
      best = static_cast<int>(i);
    }
  }
  return best;
}

void Engine::liquidation_prices_all(int* underlying, double* below, double* above) {
  ensure_state();  // once, here: the threads only read it
  const double nan = std::numeric_limits<double>::quiet_NaN();
  parallel_for(accounts_.size(), 64, [&](std::size_t b, std::size_t e) {
    for (std::size_t i = b; i < e; ++i) {
      const int id = static_cast<int>(i);
      const int u = dominant_underlying(id);
      const LiquidationPrices lp = u >= 0 ? liquidation_prices(id, u) : LiquidationPrices{nan, nan};
      underlying[i] = u;
      below[i] = lp.below;
      above[i] = lp.above;
    }
  });
}

Engine::LiquidationPrices Engine::liquidation_prices(int account, int underlying) {
  Account& a = acct(account);
  check_asset(underlying);
  refresh(a);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double p0 = assets_[underlying].price;
  if (!a.priced || !std::isfinite(p0)) return {nan, nan};
  // Per position: how its mark follows the underlying's price P.
  struct Leg {
    const Position* pos;
    const InstrumentSpec* in;
    bool moves;       // depends on P
    double ratio;     // futures: mark / index (basis kept)
    double vol, tau;  // options: implied vol and years to expiry
  };
  std::vector<Leg> legs;
  for (const Position& p : a.positions) {
    const InstrumentSpec& in = instruments_[p.instrument];
    Leg leg{&p, &in, in.underlying == underlying || in.settle == underlying, 0.0, 0.0, 0.0};
    const double mark = marks_[p.instrument].value, index = index_of(in);
    if (in.kind == InstrumentKind::option) {
      // Repriced as the market priced it: its own volatility (set, or implied
      // on the expiry's forward at the engine's rate); the forward keeps its
      // ratio to the index.
      leg.tau = years_to_expiry(in);
      leg.vol = implied_vol_of(p.instrument);
      leg.ratio = option_forward(in) / index;
    } else {
      leg.ratio = mark / index;
    }
    legs.push_back(leg);
  }
  const double thr = thresholds_.liquidation;
  const double margin_price0 = assets_[a.margin_asset].price;
  // equity - thr x MM with the underlying at P, in the margin asset.
  auto gap = [&](double P) {
    auto price_of = [&](int asset) { return asset == underlying ? P : assets_[asset].price; };
    const double margin_price = a.margin_asset == underlying ? P : margin_price0;
    double value = 0.0;
    for (std::size_t i = 0; i < a.balances.size(); ++i) {
      if (a.balances[i] != 0.0) {
        value += asset_value(static_cast<int>(i), a.balances[i], price_of(static_cast<int>(i)));
      }
    }
    double equity = value / margin_price, mm = 0.0;
    for (const Leg& leg : legs) {
      const InstrumentSpec& in = *leg.in;
      const int id = leg.pos->instrument;
      double mark = marks_[id].value;
      const double index = in.terms.inverse ? price_of(in.underlying)
                                            : price_of(in.underlying) / price_of(in.settle);
      if (leg.moves) {
        if (in.kind == InstrumentKind::option) {
          mark = black76_one(in.terms.cp, leg.ratio * index, in.terms.strike, leg.tau, leg.vol,
                             rate_, in.terms.inverse ? Settlement::inverse : Settlement::linear)
                     .price;
        } else {
          mark = leg.ratio * index;
        }
      }
      const double f = in.settle == a.margin_asset ? 1.0 : price_of(in.settle) / margin_price;
      const Contribution c = contribution_at(in, leg.pos->size, leg.pos->bids, leg.pos->asks,
                                             leg.pos->entry, mark, index, f);
      equity += c.equity;
      mm += c.mm;
    }
    return equity - thr * mm;
  };
  if (!(gap(p0) > 0.0)) return {p0, p0};
  // Walk out to the first sign change, in 1% steps within a factor of 2 of
  // today's price and 25% steps beyond it (to 1e-6x / 1e6x), then bisect to the
  // last bit.
  auto search = [&](double dir) {
    double good = p0, x = 0.0;  // x: ln(P / p0) x dir
    const double near = std::log(2.0), far = std::log(1e6);
    while (x < far) {
      x = std::min(far, x + (x < near ? std::log(1.01) : std::log(1.25)));
      const double P = p0 * std::exp(dir * x);
      if (gap(P) <= 0.0) {
        double lo = good, hi = P;  // gap(lo) > 0 >= gap(hi)
        while (true) {
          const double mid = lo + (hi - lo) / 2.0;
          if (mid == lo || mid == hi) break;
          (gap(mid) > 0.0 ? lo : hi) = mid;
        }
        return hi;  // the first price at which the account is liquidatable
      }
      good = P;
    }
    return nan;
  };
  return {search(-1.0), search(1.0)};
}

// ---- pre-trade -----------------------------------------------------------------

// The effect of a trade of signed qty at price with `fee` (settlement asset) on
// the account, exactly as fill() + summary() would see it: the cash flow
// (premium, realised P&L, spot proceeds) and the fee land on balances, whose
// value is haircut tier by tier; the position's own equity moves too. `gain` is
// the part of the change that is an immediate profit against the mark (before
// fees): check_order reports it but, like Binance's "open loss", never counts it
// toward approving an order. Requirements: the position's model, or its
// portfolio group's scenario vectors (no revaluation).
Engine::TradeEffect Engine::trade_effect(Account& a, const InstrumentSpec& in, int instrument,
                                         double qty, double price, double fee) {
  double q = 0.0, bids = 0.0, asks = 0.0, entry = 0.0;
  for (const Position& p : a.positions) {
    if (p.instrument == instrument) {
      q = p.size;
      bids = p.bids;
      asks = p.asks;
      entry = p.entry;
      break;
    }
  }
  const double q_new = q + qty;
  const double cs = in.terms.contract_size;
  const double mp = assets_[a.margin_asset].price;
  auto cv_delta = [&](int asset, double amount) {
    const double b = a.balances[asset], px = assets_[asset].price;
    return (asset_value(asset, b + amount, px) - asset_value(asset, b, px)) / mp;
  };
  TradeEffect t;
  if (in.kind == InstrumentKind::spot) {
    const double cash = -qty * cs * price;
    const double d_base = cv_delta(in.underlying, qty * cs);
    t.d_equity = d_base + cv_delta(in.settle, cash - fee);
    t.gain = std::max(0.0, d_base + cv_delta(in.settle, cash));
    return t;
  }
  if (in_portfolio(a, in)) {
    portfolio_delta(a, in, instrument, q, bids, asks, qty, t.d_im, t.d_mm);
  } else {
    const Contribution before = contribution(a, in, q, bids, asks, entry);
    const Contribution after = contribution(a, in, q_new, bids, asks, entry);
    t.d_im = after.im - before.im;
    t.d_mm = after.mm - before.mm;
  }
  Position next;
  next.instrument = instrument;
  next.size = q;
  next.entry = entry;
  const double cash = fill_cash(a, in, next, qty, price);  // a is not touched (not spot)
  // Values only (contribution()'s equity, to the bit, without its requirement).
  const double mark = marks_[instrument].value, f = to_margin(a, in.settle);
  const double d_pos = equity_of(in, next.size, next.entry, mark) * f -
                       equity_of(in, q, entry, mark) * f;
  t.d_equity = cv_delta(in.settle, cash - fee) + d_pos;
  t.gain = std::max(0.0, cv_delta(in.settle, cash) + d_pos);
  return t;
}

OrderCheck Engine::check_order(int account, int instrument, double qty, double price) {
  OrderCheck r;
  if (account < 0 || account >= static_cast<int>(accounts_.size())) {
    r.reason = Reason::unknown_account;
    return r;
  }
  if (instrument < 0 || instrument >= static_cast<int>(instruments_.size())) {
    r.reason = Reason::unknown_instrument;
    return r;
  }
  const InstrumentSpec& in = instruments_[instrument];
  if (!(std::isfinite(qty) && qty != 0.0)) {
    r.reason = Reason::invalid_quantity;
    return r;
  }
  const bool opt = in.kind == InstrumentKind::option;
  if (!(std::isfinite(price) && (opt ? price >= 0.0 : price > 0.0))) {
    r.reason = Reason::invalid_price;
    return r;
  }
  if (in.expiry > 0 && static_cast<double>(in.expiry) <= now_) {
    r.reason = Reason::instrument_expired;
    return r;
  }
  Account& a = accounts_[account];
  if (a.isolated >= 0 && a.isolated != instrument) {
    r.reason = Reason::not_isolated_instrument;
    return r;
  }
  refresh(a);
  const Mark& mk = marks_[instrument];
  const double index = index_of(in);
  if (!a.priced || !(mk.value >= 0.0) || !std::isfinite(index) ||
      !std::isfinite(assets_[in.settle].price)) {
    r.reason = Reason::no_price;
    return r;
  }
  // The position as it stands.
  double q = 0.0;
  for (const Position& p : a.positions) {
    if (p.instrument == instrument) {
      q = p.size;
      break;
    }
  }
  const double q_new = q + qty;
  const bool increases = in.kind == InstrumentKind::spot
                             ? true
                             : (std::fabs(q_new) > std::fabs(q) || q * q_new < 0.0);
  const double oldest = std::min({a.oldest, mk.time, assets_[in.underlying].time,
                                  assets_[in.settle].time});
  if (increases && oldest < now_ - max_age_) {
    r.reason = Reason::stale_price;
    return r;
  }
  const Quantum& qm = quantum(a);
  const TradeEffect te = trade_effect(a, in, instrument, qty, price, taker_fee(in, qty, price));
  const double d_equity = te.d_equity, gain = te.gain, d_im = te.d_im, d_mm = te.d_mm;
  const double eq_now = a.collateral + a.sum_pos_equity;
  const double eq_before = round_down(eq_now, qm);
  const double im_before = round_up(a.sum_im, qm);
  r.equity_after = round_down(eq_now + d_equity, qm);
  r.im_after = round_up(a.sum_im + d_im, qm);
  r.mm_after = round_up(a.sum_mm + d_mm, qm);
  r.available_after = r.equity_after - r.im_after;
  const Health state = health(eq_before, round_up(a.sum_mm, qm), !a.positions.empty());
  if (increases && state >= Health::reduce_only) {
    r.reason = Reason::reduce_only;
    return r;
  }
  const double floor = increases ? 0.0 : std::min(0.0, eq_before - im_before);
  const double counted = gain > 0.0 ? round_down(eq_now + d_equity - gain, qm) - r.im_after
                                    : r.available_after;
  if (counted >= floor) {
    r.accepted = true;
  } else {
    r.reason = Reason::insufficient_margin;
  }
  return r;
}

double Engine::max_order_size(int account, int instrument, int side, double price) {
  Account& a = acct(account);
  const InstrumentSpec& in = instr(instrument);
  if (side != 1 && side != -1) bad("side must be +1 (buy) or -1 (sell)");
  const bool opt = in.kind == InstrumentKind::option;
  if (!(std::isfinite(price) && (opt ? price >= 0.0 : price > 0.0))) bad("price is invalid");
  auto accepted = [&](double x) {
    return x == 0.0 || check_order(account, instrument, side * x, price).accepted;
  };
  refresh(a);
  double q = 0.0, bids = 0.0, asks = 0.0;
  for (const Position& p : a.positions) {
    if (p.instrument == instrument) {
      q = p.size;
      bids = p.bids;
      asks = p.asks;
    }
  }
  // Breakpoints in x (order size) where some scenario's requirement changes its
  // formula: zero crossings and bracket floors of q + side x, q + side x + bids
  // and q + side x - asks. Between them every requirement is a quadratic in x.
  const double mark = marks_[instrument].value;
  const double index = index_of(in);
  if (!std::isfinite(mark) || !std::isfinite(index)) return 0.0;
  if (in_portfolio(a, in)) {
    const double exact = portfolio_max_size(a, in, instrument, side, price, q, bids, asks);
    if (!std::isnan(exact)) return exact;
  }
  std::vector<double> sizes = size_breakpoints(models_[in.model], in.terms, mark);
  sizes.push_back(0.0);
  std::vector<double> xs{0.0};
  for (double base : {q, q + bids, q - asks}) {
    for (double s : sizes) {
      for (double target : {s, -s}) {
        const double x = (target - base) * side;
        if (x > 0.0 && std::isfinite(x)) xs.push_back(x);
      }
    }
  }
  std::sort(xs.begin(), xs.end());
  xs.erase(std::unique(xs.begin(), xs.end()), xs.end());
  // Within a segment available(x) is concave (requirements are linear or convex
  // quadratics there, equity is linear), so acceptance is an interval and its end
  // is found on the actual predicate, to the last bit.
  for (std::size_t k = 0; k < xs.size(); ++k) {
    const double x0 = xs[k];
    double x1;
    if (k + 1 < xs.size()) {
      x1 = xs[k + 1];
      if (accepted(x1)) continue;
    } else {
      double d = std::max(x0, 1.0);
      while (accepted(x0 + d)) {
        d *= 2.0;
        if (d > 1e300) return kInf;  // never binding: price bands are the venue's job
      }
      x1 = x0 + d;
    }
    double lo = x0, hi = x1;  // accepted(lo), !accepted(hi)
    while (true) {
      const double mid = lo + (hi - lo) / 2.0;
      if (mid <= lo || mid >= hi) break;
      (accepted(mid) ? lo : hi) = mid;
    }
    return lo;
  }
  return 0.0;
}

}  // namespace marginkit
