// Portfolio margin: scenario sets, risk arrays and per-account scenario P&L.
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "marginkit/engine.hpp"
#include "marginkit/parallel.hpp"
#include "marginkit/pricing.hpp"
#include "kernels/kernel_table.hpp"

namespace marginkit {

namespace {

constexpr std::size_t kNoRow = static_cast<std::size_t>(-1);
// Options per thread task of the risk-array build (each about 30 revaluations).
constexpr std::size_t kRiskGrain = 128;
// Risk-array rows (and group scenario vectors) are padded with zeros to a
// multiple of this many doubles, so the SIMD kernels read whole vectors.
constexpr std::size_t kRowPad = 8;
constexpr std::size_t padded(std::size_t ns) { return (ns + kRowPad - 1) / kRowPad * kRowPad; }
// Scenario vectors the batch fast path keeps on the stack (larger sets take the
// general path).
constexpr std::size_t kMaxBatchScenarios = 256;

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument(what); }

bool finite_nonneg(double x) { return std::isfinite(x) && x >= 0.0; }

}  // namespace

double VolShockModel::dte_scale(double dte_days) const noexcept {
  if (!scale_by_dte) return 1.0;
  const double p = dte_days <= pivot_days ? p_short : p_long;
  return std::pow(pivot_days / std::max(dte_days, floor_days), p);
}

double VolShockModel::shocked_by(double vol, int direction, double g) const noexcept {
  if (direction == 0) return vol;
  if (direction > 0) {
    const double v = relative ? vol * (1.0 + up * g) : vol + up * g;
    return std::max(v, min_vol_up);
  }
  const double v = relative ? vol * (1.0 - down * g) : vol - down * g;
  return std::max(v, 0.0);
}

double VolShockModel::shocked(double vol, int direction, double dte_days) const noexcept {
  return direction == 0 ? vol : shocked_by(vol, direction, dte_scale(dte_days));
}

double ScenarioSet::move(int underlying, std::size_t s) const noexcept {
  for (std::size_t j = 0; j < joint_underlyings.size(); ++j) {
    if (joint_underlyings[j] == underlying) return joint_moves[j * scenarios.size() + s];
  }
  return scenarios[s].move;
}

double ScenarioSet::loss(const double* pnl, int* at) const {
  const std::size_t n = scenarios.size();
  if (measure == LossMeasure::worst && !at) {  // branch-free, four chains
    double w0 = 0.0, w1 = 0.0, w2 = 0.0, w3 = 0.0;
    std::size_t s = 0;
    for (; s + 4 <= n; s += 4) {
      w0 = std::min(w0, scenarios[s].weight * pnl[s]);
      w1 = std::min(w1, scenarios[s + 1].weight * pnl[s + 1]);
      w2 = std::min(w2, scenarios[s + 2].weight * pnl[s + 2]);
      w3 = std::min(w3, scenarios[s + 3].weight * pnl[s + 3]);
    }
    for (; s < n; ++s) w0 = std::min(w0, scenarios[s].weight * pnl[s]);
    return -std::min(std::min(w0, w1), std::min(w2, w3));
  }
  if (measure == LossMeasure::worst) {
    double worst = 0.0;
    int where = 0;
    double least = std::numeric_limits<double>::infinity();
    for (std::size_t s = 0; s < n; ++s) {
      const double x = scenarios[s].weight * pnl[s];
      if (x < least) {
        least = x;
        where = static_cast<int>(s);
      }
      worst = std::min(worst, x);
    }
    if (at) *at = where;
    return -worst;
  }
  // Losses sorted from the largest; VaR is the k-th largest with k = the number
  // of scenarios in the tail (rounded up: conservative), ES their mean.
  thread_local std::vector<std::pair<double, int>> losses;
  losses.resize(n);
  for (std::size_t s = 0; s < n; ++s) losses[s] = {-pnl[s], static_cast<int>(s)};
  const auto tail = static_cast<std::size_t>(
      std::max(1.0, std::ceil((1.0 - confidence) * static_cast<double>(n) - 1e-9)));
  std::partial_sort(losses.begin(), losses.begin() + static_cast<std::ptrdiff_t>(tail),
                    losses.end(), [](const auto& x, const auto& y) { return x > y; });
  if (at) *at = losses[tail - 1].second;
  if (measure == LossMeasure::var) return std::max(0.0, losses[tail - 1].first);
  double sum = 0.0;
  for (std::size_t i = 0; i < tail; ++i) sum += losses[i].first;
  return std::max(0.0, sum / static_cast<double>(tail));
}

void ScenarioSet::validate() const {
  if (name.empty()) bad("scenario set name must not be empty");
  if (scenarios.empty()) bad("scenario set '" + name + "' has no scenarios");
  for (std::size_t i = 0; i < scenarios.size(); ++i) {
    const Scenario& s = scenarios[i];
    const std::string at = "scenario set '" + name + "', scenario " + std::to_string(i) + ": ";
    if (!(std::isfinite(s.move) && s.move > -1.0)) bad(at + "move must be finite and > -1");
    if (s.vol < -1 || s.vol > 1) bad(at + "vol direction must be -1, 0 or +1");
    if (!finite_nonneg(s.weight)) bad(at + "weight must be finite and >= 0");
  }
  const VolShockModel& v = vol;
  if (!(finite_nonneg(v.up) && finite_nonneg(v.down) && finite_nonneg(v.min_vol_up) &&
        v.pivot_days > 0.0 && v.floor_days > 0.0 && std::isfinite(v.p_short) &&
        std::isfinite(v.p_long) && std::isfinite(v.pivot_days) && std::isfinite(v.floor_days))) {
    bad("scenario set '" + name + "': invalid volatility shock parameters");
  }
  if (!(std::isfinite(im_factor) && im_factor >= 1.0)) {
    bad("scenario set '" + name + "': im_factor must be >= 1 (IM >= MM)");
  }
  if (!finite_nonneg(short_option_charge) || !finite_nonneg(delta_charge)) {
    bad("scenario set '" + name + "': charges must be finite and >= 0");
  }
  if (measure != LossMeasure::worst) {
    if (!(confidence > 0.0 && confidence < 1.0)) {
      bad("scenario set '" + name + "': confidence must be in (0, 1)");
    }
    for (const auto& sc : scenarios) {
      if (sc.weight != 1.0) bad("scenario set '" + name + "': VaR/ES scenarios have weight 1");
    }
  }
  if (joint()) {
    if (joint_moves.size() != joint_underlyings.size() * scenarios.size()) {
      bad("scenario set '" + name + "': joint moves must be underlyings x scenarios");
    }
    for (double m : joint_moves) {
      if (!(std::isfinite(m) && m > -1.0)) {
        bad("scenario set '" + name + "': joint moves must be finite and > -1");
      }
    }
    if (short_option_charge != 0.0 || delta_charge != 0.0) {
      bad("scenario set '" + name + "': add-on charges are per underlying, not for joint sets");
    }
  }
}

int Engine::add_scenario_set(const ScenarioSet& set) {
  set.validate();
  for (int u : set.joint_underlyings) check_asset(u);
  for (const auto& s : sets_) {
    if (s.name == set.name) bad("duplicate scenario set '" + set.name + "'");
  }
  sets_.push_back(set);
  std::vector<double>& weights = set_weights_.emplace_back(padded(set.scenarios.size()), 0.0);
  for (std::size_t s = 0; s < set.scenarios.size(); ++s) weights[s] = set.scenarios[s].weight;
  ++stamp_;
  return static_cast<int>(sets_.size()) - 1;
}

void Engine::set_underlying_scenarios(int underlying, int scenario_set) {
  check_asset(underlying);
  if (scenario_set < -1 || scenario_set >= static_cast<int>(sets_.size())) {
    bad("unknown scenario set id " + std::to_string(scenario_set));
  }
  if (scenario_set >= 0 && sets_[scenario_set].joint()) {
    const auto& us = sets_[scenario_set].joint_underlyings;
    if (std::find(us.begin(), us.end(), underlying) == us.end()) {
      bad("scenario set '" + sets_[scenario_set].name + "' has no moves for asset '" +
          assets_[underlying].spec.name + "'");
    }
  }
  underlying_set_[underlying] = scenario_set;
  ++stamp_;
  ++layout_epoch_;  // positions may join other groups: the flat book is rebuilt
}

int Engine::underlying_scenarios(int underlying) const {
  check_asset(underlying);
  return underlying_set_[underlying];
}

void Engine::set_mode(int account, MarginMode mode) {
  Account& a = acct(account);
  if (mode != MarginMode::cross && mode != MarginMode::portfolio) bad("unknown margin mode");
  a.mode = mode;
  a.groups.clear();
  touch(a);
}

MarginMode Engine::mode(int account) const {
  if (account < 0 || account >= static_cast<int>(accounts_.size())) {
    bad("unknown account id " + std::to_string(account));
  }
  return accounts_[account].mode;
}

// Rebuilds every instrument's row once per market state. Futures: P&L per
// contract of the mark moving with the underlying (inverse: in coin at the
// shocked price). Options: Black-76 on the shocked forward at the shocked
// volatility (in coin at the shocked forward for inverse options), minus the mark.
void Engine::ensure_risk() {
  if (risk_stamp_ == stamp_ && risk_offset_.size() == instruments_.size()) return;
  const std::size_t n = instruments_.size();
  risk_offset_.assign(n, kNoRow);
  risk_delta_.assign(n, 0.0);
  // Rows at one stride, the longest padded set in use: instrument i's at i x
  // stride, so that a batch kernel finds a row from the instrument's id alone
  // (no load of its address to wait for). Every row is written below (values,
  // NaN rows, zero padding) to its padded length: no clearing.
  std::size_t stride = 0;
  for (const int set : underlying_set_) {
    if (set >= 0) stride = std::max(stride, padded(sets_[set].scenarios.size()));
  }
  for (std::size_t i = 0; i < n; ++i) {
    const int set = underlying_set_[instruments_[i].underlying];
    if (set < 0 || instruments_[i].kind == InstrumentKind::spot) continue;
    risk_offset_[i] = i * stride;
  }
  risk_stride_ = stride;
  risk_.resize(n * stride);
  // Each underlying's scenario grid (1 + move, its log, the vol direction),
  // padded to the row length with a scenario that moves nothing: the grid
  // kernel reads whole vectors.
  RiskScratch& b = risk_scratch_;
  b.grids.assign(assets_.size(), {});
  b.mult.resize(assets_.size());
  b.log_mult.resize(assets_.size());
  b.dir.resize(assets_.size());
  for (std::size_t u = 0; u < assets_.size(); ++u) {
    b.mult[u].clear();
    b.log_mult[u].clear();
    b.dir[u].clear();
    if (underlying_set_[u] < 0) continue;
    const ScenarioSet& set = sets_[underlying_set_[u]];
    const std::size_t ns = set.scenarios.size();
    for (std::size_t s = 0; s < padded(ns); ++s) {
      const double mult = s < ns ? 1.0 + set.move(static_cast<int>(u), s) : 1.0;
      b.mult[u].push_back(mult);
      b.log_mult[u].push_back(s < ns ? std::log(mult) : 0.0);
      b.dir[u].push_back(s < ns ? set.scenarios[s].vol : 0.0);
    }
    b.grids[u] = {ns, b.mult[u].data(), b.log_mult[u].data(), b.dir[u].data()};
  }
  // Per-option inputs, indexed like the instruments: a chunk of instruments
  // [from, to) gathers its options into [from, from + its option count).
  for (auto* v : {&b.fwd, &b.strike, &b.tau, &b.vol, &b.vol_down, &b.vol_up, &b.cs, &b.mark,
                  &b.price, &b.delta}) {
    v->resize(n);
  }
  b.ids.resize(n);
  b.cp.resize(n);
  b.inverse.resize(n);
  b.offset.resize(n);
  b.grid_of.resize(n);
  simd::RiskGridInputs gi;
  gi.grids = b.grids.data();
  gi.grid = b.grid_of.data();
  gi.cp = b.cp.data();
  gi.inverse = b.inverse.data();
  gi.forward = b.fwd.data();
  gi.strike = b.strike.data();
  gi.tau = b.tau.data();
  gi.vol_down = b.vol_down.data();
  gi.vol = b.vol.data();
  gi.vol_up = b.vol_up.data();
  gi.contract_size = b.cs.data();
  gi.mark = b.mark.data();
  gi.offset = b.offset.data();
  gi.rate = rate_;
  gi.risk = risk_.data();
  const auto grid = simd::active_kernels().risk_grid;
  // On the thread pool, each chunk of instruments: futures' rows in closed
  // form, NaN rows for instruments without a price, and its options gathered
  // (forward, volatility, the days-to-expiry vol-shock factor once per
  // expiry), their deltas priced at today's forward and their rows written by
  // the grid kernel.
  parallel_for(n, kRiskGrain, [&](std::size_t from, std::size_t to) {
    const ScenarioSet* g_set = nullptr;
    double g_dte = -1.0, g = 1.0;
    // The forward depends only on the underlying, the expiry, the settlement
    // asset and the inverse flag: looked up (a hash lookup, or a scan for a
    // future) once per run of options sharing them.
    const InstrumentSpec* f_of = nullptr;
    double f_value = 0.0;
    std::size_t m = from;
    for (std::size_t i = from; i < to; ++i) {
      if (risk_offset_[i] == kNoRow) continue;
      const InstrumentSpec& in = instruments_[i];
      const double mark = marks_[i].value, cs = in.terms.contract_size;
      double* row = &risk_[risk_offset_[i]];
      const ScenarioSet& set = sets_[underlying_set_[in.underlying]];
      std::fill(row + set.scenarios.size(), row + padded(set.scenarios.size()), 0.0);
      if (!std::isfinite(mark) || !std::isfinite(index_of(in))) {  // no price: a NaN row
        std::fill(row, row + set.scenarios.size(), std::numeric_limits<double>::quiet_NaN());
        continue;
      }
      if (in.kind != InstrumentKind::option) {
        for (std::size_t s = 0; s < set.scenarios.size(); ++s) {
          const double move = set.move(in.underlying, s);
          // Inverse: 1/mark - 1/(mark (1 + move)) = move / (mark (1 + move)), without cancellation.
          row[s] = in.terms.inverse ? cs * move / (mark * (1.0 + move)) : cs * mark * move;
        }
        risk_delta_[i] = in.terms.inverse ? cs / mark : cs;
        continue;
      }
      const int id = static_cast<int>(i);
      const double vol = implied_vol_of(id), tau = years_to_expiry(in), dte = tau * 365.0;
      if (&set != g_set || dte != g_dte) {
        g_set = &set;
        g_dte = dte;
        g = set.vol.dte_scale(dte);
      }
      const std::size_t k = m++;
      b.ids[k] = id;
      b.grid_of[k] = in.underlying;
      b.cp[k] = in.terms.cp;
      b.inverse[k] = in.terms.inverse ? 1 : 0;
      if (f_of == nullptr || in.underlying != f_of->underlying || in.expiry != f_of->expiry ||
          in.settle != f_of->settle || in.terms.inverse != f_of->terms.inverse) {
        f_of = &in;
        f_value = option_forward(in);
      }
      b.fwd[k] = f_value;
      b.strike[k] = in.terms.strike;
      b.tau[k] = tau;
      b.vol[k] = vol;
      b.vol_down[k] = set.vol.shocked_by(vol, -1, g);
      b.vol_up[k] = set.vol.shocked_by(vol, 1, g);
      b.cs[k] = cs;
      b.mark[k] = mark;
      b.offset[k] = risk_offset_[i];
    }
    if (m == from) return;
    // Deltas (per contract, units of the underlying) at today's forward.
    Black76Inputs bi;
    bi.n = m - from;
    bi.cp = {b.cp.data() + from, false};
    bi.forward = {b.fwd.data() + from, false};
    bi.strike = {b.strike.data() + from, false};
    bi.expiry = {b.tau.data() + from, false};
    bi.vol = {b.vol.data() + from, false};
    bi.rate = {&rate_, true};
    Black76Outputs bo;
    bo.price = b.price.data() + from;
    bo.delta = b.delta.data() + from;
    black76(bi, bo, Settlement::linear);
    for (std::size_t k = from; k < m; ++k) risk_delta_[b.ids[k]] = b.delta[k] * b.cs[k];
    grid(gi, from, m);
  });
  risk_stamp_ = stamp_;
}

std::vector<double> Engine::risk_row(int instrument) {
  instr(instrument);
  ensure_risk();
  const std::size_t off = risk_offset_[instrument];
  if (off == kNoRow) return {};
  const auto& set = sets_[underlying_set_[instruments_[instrument].underlying]];
  return std::vector<double>(risk_.begin() + off, risk_.begin() + off + set.scenarios.size());
}

Requirement Engine::group_requirement(int set_id, int underlying, const double* pnl,
                                      double short_units, double delta_units,
                                      double margin_price) const {
  return loss_requirement(set_id, underlying, sets_[set_id].loss(pnl), short_units, delta_units,
                          margin_price);
}

GroupTerms Engine::group_terms(int set_id, int underlying) const noexcept {
  const ScenarioSet& set = sets_[set_id];
  GroupTerms t;
  t.joint = set.joint();
  t.price = t.joint ? 0.0 : assets_[underlying].price;
  t.short_charge = set.short_option_charge;
  t.delta_charge = set.delta_charge;
  t.im_factor = set.im_factor;
  return t;
}

// Scenario P&L per group of the positions whose underlying has a set (the
// caller adds standard requirements for the rest). Groups keep their vectors
// between refreshes; the all-bids / all-asks vectors exist only where some
// position has resting orders.
Engine::PortfolioScratch& Engine::portfolio_scratch() {
  thread_local PortfolioScratch scratch;
  return scratch;
}

Engine::Group& Engine::group_for(std::vector<Group>& groups, const InstrumentState& st) {
  Group* g = nullptr;
  Group* spare = nullptr;  // an unused group (its vectors' capacity is reused)
  for (auto& x : groups) {
    if (x.key == st.group) g = &x;
    if (!x.used && !spare) spare = &x;
  }
  if (!g && spare) {
    g = spare;
    g->key = st.group;
  }
  if (!g) {
    groups.emplace_back();
    g = &groups.back();
    g->key = st.group;
  }
  if (!g->used) {  // first position of the group in this pass
    g->used = true;
    g->set = st.group >= 0 ? underlying_set_[st.group] : -1 - st.group;
    g->orders = false;
    g->short_units = g->short_bids = g->short_asks = 0.0;
    g->delta_units = g->delta_bids = g->delta_asks = 0.0;
    g->equity = 0.0;
    g->rank = -1;
  }
  return *g;
}

void Engine::add_to_group(std::vector<Group>& groups, PortfolioScratch& sc, Group& g,
                          const InstrumentState& st, const Position& p, double f) {
  if (p.bids > 0.0 || p.asks > 0.0) g.orders = true;  // keep the order cases apart
  const double qb = p.size + p.bids, qa = p.size - p.asks;
  const std::size_t k = sc.count++;
  sc.rows[k] = st.row;
  sc.w_now[k] = p.size * f;
  sc.w_bids[k] = qb * f;
  sc.w_asks[k] = qa * f;
  sc.group[k] = static_cast<int>(&g - groups.data());
  g.short_units += short_units(p.size, st.short_cs);  // 0 but for options
  g.short_bids += short_units(qb, st.short_cs);
  g.short_asks += short_units(qa, st.short_cs);
  g.delta_units += p.size * st.delta;
  g.delta_bids += qb * st.delta;
  g.delta_asks += qa * st.delta;
}

void Engine::finish_portfolio(Account& a, std::vector<Group>& groups, PortfolioScratch& sc,
                              double& im, double& mm) {
  const double margin_price = assets_[a.margin_asset].price;
  const auto weighted_rows = simd::active_kernels().weighted_rows;
  std::size_t used = 0;
  for (const Group& g : groups) used += g.used ? 1 : 0;
  for (std::size_t gi = 0; gi < groups.size(); ++gi) {
    Group& g = groups[gi];
    if (!g.used) continue;
    const double *const *rows = sc.rows.data();
    const double *w_now = sc.w_now.data(), *w_bids = sc.w_bids.data(),
                 *w_asks = sc.w_asks.data();
    std::size_t count = sc.count;
    if (used > 1) {  // this group's positions only
      if (sc.g_rows.size() < count) {
        sc.g_rows.resize(count);
        sc.g_now.resize(count);
        sc.g_bids.resize(count);
        sc.g_asks.resize(count);
      }
      std::size_t m = 0;
      for (std::size_t k = 0; k < count; ++k) {
        if (sc.group[k] != static_cast<int>(gi)) continue;
        sc.g_rows[m] = sc.rows[k];
        sc.g_now[m] = sc.w_now[k];
        sc.g_bids[m] = sc.w_bids[k];
        sc.g_asks[m] = sc.w_asks[k];
        ++m;
      }
      rows = sc.g_rows.data();
      w_now = sc.g_now.data();
      w_bids = sc.g_bids.data();
      w_asks = sc.g_asks.data();
      count = m;
    }
    const std::size_t len = padded(sets_[g.set].scenarios.size());
    g.pnl.resize(len);
    weighted_rows(len, count, rows, w_now, g.pnl.data());
    if (g.orders) {
      g.pnl_bids.resize(len);
      g.pnl_asks.resize(len);
      weighted_rows(len, count, rows, w_bids, g.pnl_bids.data());
      weighted_rows(len, count, rows, w_asks, g.pnl_asks.data());
    }
  }
  groups.erase(std::remove_if(groups.begin(), groups.end(),
                              [](const Group& g) { return !g.used; }),
               groups.end());
  for (Group& g : groups) {
    const Requirement now = group_requirement(g.set, g.key, g.pnl.data(), g.short_units,
                                              g.delta_units, margin_price);
    g.mm = now.mm;
    g.im = now.im;
    if (g.orders) {
      const Requirement b = group_requirement(g.set, g.key, g.pnl_bids.data(), g.short_bids,
                                              g.delta_bids, margin_price);
      const Requirement s = group_requirement(g.set, g.key, g.pnl_asks.data(), g.short_asks,
                                              g.delta_asks, margin_price);
      g.im = std::max({now.im, b.im, s.im});
    }
    im += g.im;
    mm += g.mm;
  }
  const auto credit = offset_credit(groups, -1, nullptr, nullptr, nullptr);
  a.credit_mm = credit.first;
  a.credit_im = credit.second;
  mm -= credit.first;
  im -= credit.second;
}

// The batch fast path of refresh_sums() for the common portfolio account: every
// position scenario-margined on a grid (non-joint) set, no resting orders, no
// offset between underlyings. Each group's rows and weights are gathered on the
// stack and summed by the same kernel in the same order as refresh(), so the
// sums are those refresh() gives (tests/test_portfolio.py checks it); any
// other account returns false untouched and takes the general path.
bool Engine::refresh_batch(Account& a) {
  if (a.stamp == stamp_) return true;
  if (a.mode != MarginMode::portfolio || offset_ > 0.0) return false;
  ensure_state();  // batch callers built it before their threads started
  Totals t;
  t.oldest = assets_[a.margin_asset].time;
  if (!portfolio_totals(a, t)) return false;
  t.collateral = collateral_of(a, &t.oldest);
  a.collateral = t.collateral;
  a.sum_im = t.im;
  a.sum_mm = t.mm;
  a.sum_pos_equity = t.eq;
  a.oldest = t.oldest;
  a.priced = t.all_finite();
  a.credit_mm = a.credit_im = 0.0;
  a.groups_stamp = 0;
  a.stamp = stamp_;
  return true;
}

bool Engine::portfolio_totals(const Account& a, Totals& t) const {
  constexpr int kGroups = static_cast<int>(kBatchGroups);
  constexpr std::size_t kRows = kBatchPositions;
  const std::size_t n = a.positions.size();
  const int margin = a.margin_asset;
  if (n > kRows) return false;
  // Positions join their group with no branch and no memory round trip on
  // which group (a random book mispredicts the one, and the other chains each
  // position to the last): the keys, counts and units of the groups live in
  // registers (fixed-size arrays indexed by constants only), updated by selects.
  int keys[kGroups] = {-1, -1, -1, -1};
  std::size_t count[kGroups] = {0, 0, 0, 0};
  double shorts[kGroups] = {0.0, 0.0, 0.0, 0.0}, delta[kGroups] = {0.0, 0.0, 0.0, 0.0};
  double value[kGroups] = {0.0, 0.0, 0.0, 0.0};  // portfolio_equity's, per group
  const double* rows[kGroups * kRows];
  double w[kGroups * kRows];
  int groups = 0;
  const double margin_price = assets_[margin].price;
  double eq = 0.0, oldest = t.oldest;
  for (const Position& p : a.positions) {
    const InstrumentState& st = istate_[p.instrument];
    if (!st.row || st.group < 0 || p.bids > 0.0 || p.asks > 0.0) return false;
    const int key = st.group;
    int g = groups;  // a new group unless the key has one
    for (int j = kGroups - 1; j >= 0; --j) g = keys[j] == key ? j : g;
    if (g == kGroups) return false;  // a fifth underlying
    groups += g == groups ? 1 : 0;
    std::size_t at = 0;
    const double units = short_units(p.size, st.short_cs), du = p.size * st.delta;
    const double f = st.settle == margin ? 1.0 : assets_[st.settle].price / margin_price;
    const double v = state_value(st, p) * f;
    for (int j = 0; j < kGroups; ++j) {  // (a sum from +0.0 is never -0.0: x + 0.0 is x)
      const bool mine = j == g;
      keys[j] = mine ? key : keys[j];
      at = mine ? count[j] : at;
      count[j] += mine ? 1 : 0;
      shorts[j] += mine ? units : 0.0;
      delta[j] += mine ? du : 0.0;
      value[j] += mine ? v : 0.0;
    }
    oldest = std::min(oldest, st.time);
    rows[g * kRows + at] = st.row;
    w[g * kRows + at] = p.size * f;
  }
  for (int g = 0; g < groups; ++g) eq += value[g];  // groups in order of first appearance
  Requirement req;  // the groups' sums
  const simd::KernelTable& kernels = simd::active_kernels();
  for (int g = 0; g < groups; ++g) {
    if (!add_group(batch_groups_[keys[g]], kernels, count[g], rows + g * kRows, w + g * kRows,
                   shorts[g], delta[g], margin_price, req)) {
      return false;
    }
  }
  t.im = req.im;
  t.mm = req.mm;
  t.eq = eq;
  t.oldest = oldest;
  return true;
}

bool Engine::add_group(const BatchGroup& g, const simd::KernelTable& k, std::size_t count,
                       const double* const* rows, const double* w, double short_units,
                       double delta_units, double margin_price, Requirement& sum) const {
  double loss;
  if (g.worst) {  // the worst loss, the P&L never stored
    loss = -k.weighted_worst(g.len, count, rows, w, g.weights);
  } else {
    if (g.len > kMaxBatchScenarios) return false;
    alignas(64) double pnl[kMaxBatchScenarios];
    k.weighted_rows(g.len, count, rows, w, pnl);
    loss = sets_[g.set].loss(pnl);
  }
  const Requirement r = g.terms.requirement(loss, short_units, delta_units, margin_price);
  sum.im += r.im;
  sum.mm += r.mm;
  return true;
}

bool Engine::flat_groups(const Account& a, FlatAccount& fa, std::uint8_t* slot) const {
  constexpr std::size_t kGroups = kBatchGroups, kRows = kBatchPositions;
  int keys[kGroups];
  std::size_t ng = 0, runs[kGroups] = {0, 0, 0, 0}, group[kRows];
  std::uint8_t shape = kMarginSettled | kOptionsOnly;
  if (a.positions.size() > kRows) return false;  // as portfolio_totals
  for (std::size_t k = 0; k < a.positions.size(); ++k) {
    const InstrumentSpec& in = instruments_[a.positions[k].instrument];
    if (in.kind == InstrumentKind::spot || underlying_set_[in.underlying] < 0) return false;
    const int key = group_key(in);
    if (key < 0) return false;  // joint sets: the general path
    std::size_t g = 0;
    while (g < ng && keys[g] != key) ++g;
    if (g == ng) {
      if (ng == kGroups) return false;
      keys[ng++] = key;
    }
    ++runs[g];
    group[k] = g;
    if (in.settle != a.margin_asset) shape &= ~kMarginSettled;
    if (in.kind != InstrumentKind::option || a.positions[k].size == 0.0) shape &= ~kOptionsOnly;
  }
  fa.shape = shape;
  std::size_t start[kGroups] = {0, 0, 0, 0};
  for (std::size_t g = 1; g < ng; ++g) start[g] = start[g - 1] + runs[g - 1];
  for (std::size_t k = 0; k < a.positions.size(); ++k) {
    slot[k] = static_cast<std::uint8_t>(start[group[k]]++);
  }
  fa.ngroups = static_cast<std::uint8_t>(ng);
  for (std::size_t g = 0; g < kGroups; ++g) fa.runs[g] = static_cast<std::uint8_t>(runs[g]);
  return true;
}

// The positions come by group (fill_flat), and the layout is valid for the
// scenario sets as they are: a set change bumps layout_epoch_ and sync_flat()
// rebuilds the book, so every position has a row and its run's grid set.
// Flattened: the shape's pass and the requirement arithmetic inline here (5 %
// fewer instructions an account than as calls).
[[gnu::flatten]] bool Engine::flat_portfolio_totals(const FlatAccount& fa, Totals& t) const {
  if (offset_ > 0.0) return false;
  switch (fa.shape) {
    case 0:
      return flat_portfolio_sums<0>(fa, t);
    case kMarginSettled:
      return flat_portfolio_sums<kMarginSettled>(fa, t);
    case kOptionsOnly:
      return flat_portfolio_sums<kOptionsOnly>(fa, t);
    default:
      return flat_portfolio_sums<kMarginSettled | kOptionsOnly>(fa, t);
  }
}

simd::PortfolioBlock Engine::portfolio_block(const FlatAccount* accounts, std::size_t n) const {
  return {accounts,       n,           flat_inst_.data(),    flat_size_.data(), istate_.data(),
          risk_.data(),   risk_stride_, batch_groups_.data(), asset_price_.data()};
}

template <std::uint8_t kShape>
bool Engine::flat_portfolio_sums(const FlatAccount& fa, Totals& t) const {
  constexpr std::size_t kSlots = kBatchPositions;
  const std::int32_t* inst = flat_inst_.data() + fa.pos;
  const double* size = flat_size_.data() + fa.pos;
  const double* entry = flat_entry_.data() + fa.pos;
  const double* rows[kSlots];
  double w[kSlots];
  const simd::KernelTable& kernels = simd::active_kernels();
  const int margin = fa.margin;
  const double margin_price = assets_[margin].price;
  if constexpr (kShape == (kMarginSettled | kOptionsOnly)) {  // the kernels' pass, if it covers it
    if (kernels.portfolio_block(portfolio_block(&fa, 1), &t.im, &t.mm, &t.eq) != 0) return true;
  }
  Requirement req;  // the groups' sums, in order of first appearance
  double eq = 0.0;  // portfolio_equity
  for (std::size_t g = 0, b = 0; g < fa.ngroups; b += fa.runs[g++]) {
    const std::size_t e = b + fa.runs[g];
    const BatchGroup& bg = batch_groups_[istate_[inst[b]].group];
    double shorts = 0.0, delta = 0.0, value = 0.0;
    for (std::size_t s = b; s < e; ++s) {
      const InstrumentState& st = istate_[inst[s]];
      const double q = size[s];
      rows[s] = st.row;
      // The kernel reads the row after the group's loop: its lines (4 for up
      // to 32 scenarios; past a shorter row, the next row's) start coming now.
      for (int l = 0; l < 4; ++l) __builtin_prefetch(st.row + 8 * l);
      shorts += short_units(q, st.short_cs);
      delta += q * st.delta;
      // Options: ek = 0, so state_value() is q cs (em - 0 h) = q cs em.
      const double v =
          (kShape & kOptionsOnly) ? q * st.cs * st.em : state_value(st, {-1, q, entry[s]});
      if constexpr ((kShape & kMarginSettled) != 0) {  // f = 1: x f = x
        w[s] = q;
        value += v;
      } else {
        const double f = st.settle == margin ? 1.0 : assets_[st.settle].price / margin_price;
        w[s] = q * f;
        value += v * f;
      }
    }
    if (!add_group(bg, kernels, e - b, rows + b, w + b, shorts, delta, margin_price, req)) {
      return false;
    }
    eq += value;
  }
  t.im = req.im;
  t.mm = req.mm;
  t.eq = eq;
  return true;
}

bool Engine::flat_totals(const FlatAccount& fa, Totals& t) const {
  if (fa.kind == FlatKind::other || fa.kind == FlatKind::stale) return false;
  t.collateral = flat_collateral(fa, nullptr);
  if (fa.kind == FlatKind::portfolio) {
    if (!flat_portfolio_totals(fa, t)) return false;
  } else if (fa.kind == FlatKind::cross) {
    // standard_sums, its loop in the kernels (compiled for the instruction
    // set; a cross pass is bound by its instructions' number).
    const simd::CrossAccount a{istate_.data(),
                               asset_price_.data(),
                               flat_inst_.data() + fa.pos,
                               flat_size_.data() + fa.pos,
                               flat_entry_.data() + fa.pos,
                               fa.npos,
                               fa.margin};
    simd::CrossSums c;
    const std::size_t k = simd::active_kernels().cross_curve_sums(a, c);
    Sums s{c.im, c.mm, c.eq};
    if (k < fa.npos) s = general_sums(k, fa.npos, flat_positions(fa), fa.margin, s, nullptr);
    t.im = s.im;
    t.mm = s.mm;
    t.eq = s.eq;
  } else {
    const Sums s = standard_sums(fa.npos, flat_positions_orders(fa), fa.margin, nullptr);
    t.im = s.im;
    t.mm = s.mm;
    t.eq = s.eq;
  }
  t.priced = t.all_finite();
  return true;
}

void Engine::ensure_state() {
  ensure_risk();
  if (istate_stamp_.value == stamp_ && istate_.size() == instruments_.size()) return;
  istate_.resize(instruments_.size());
  curve_pieces_.resize(2 * instruments_.size());
  for (std::size_t i = 0; i < instruments_.size(); ++i) {
    const InstrumentSpec& in = instruments_[i];
    InstrumentState& st = istate_[i];
    const double mark = marks_[i].value;
    st.time = std::min({marks_[i].time, assets_[in.underlying].time, assets_[in.settle].time});
    st.cs = in.terms.contract_size;
    st.short_cs = in.kind == InstrumentKind::option ? st.cs : 0.0;
    st.delta = risk_delta_[i];
    st.row = risk_offset_[i] == kNoRow ? nullptr : &risk_[risk_offset_[i]];
    st.settle = in.settle;
    st.group = st.row ? group_key(in) : 0;
    const bool futures = in.kind == InstrumentKind::perpetual || in.kind == InstrumentKind::future;
    const bool inverse_future = futures && in.terms.inverse;
    st.em = inverse_future ? -1.0 / mark
            : futures || in.kind == InstrumentKind::option ? mark
                                                            : 0.0;
    st.ek = inverse_future ? -1.0 : futures ? 1.0 : 0.0;
    const MarginModel& m = models_[in.model];
    InstrumentCurve& c = st.curve;
    c.curve = requirement_curve(m, in.terms, mark, index_of(in), &curve_pieces_[2 * i]);
    c.general = (m.oi_upper > 0.0 && open_interest_[i] > 0.0) ||
                (m.kind == ModelKind::tiered && m.value_at_entry) || m.brackets.size() > kShortCurve;
  }
  asset_price_.resize(assets_.size());
  asset_quantum_.resize(assets_.size());
  for (std::size_t u = 0; u < assets_.size(); ++u) {
    asset_price_[u] = assets_[u].price;
    asset_quantum_[u] = assets_[u].quantum;
  }
  batch_groups_.assign(assets_.size(), BatchGroup{});
  for (std::size_t u = 0; u < assets_.size(); ++u) {
    const int set = underlying_set_[u];
    if (set < 0 || sets_[set].joint()) continue;
    BatchGroup& g = batch_groups_[u];
    g.terms = group_terms(set, static_cast<int>(u));
    g.weights = set_weights_[set].data();
    g.len = padded(sets_[set].scenarios.size());
    g.set = set;
    g.worst = sets_[set].measure == LossMeasure::worst;
  }
  istate_stamp_.value = stamp_;
}

std::pair<double, double> Engine::offset_credit(const std::vector<Group>& groups, int changed_key,
                                                const double* now, const double* bids,
                                                const double* asks) const {
  if (offset_ <= 0.0) return {0.0, 0.0};
  // Eligible: grid groups (not joint, worst loss) of one common scenario count.
  std::vector<const Group*> gs;
  std::size_t ns = 0;
  for (const Group& g : groups) {
    const ScenarioSet& set = sets_[g.set];
    if (set.joint() || set.measure != LossMeasure::worst) continue;
    if (ns == 0) ns = set.scenarios.size();
    if (set.scenarios.size() != ns) return {0.0, 0.0};
    gs.push_back(&g);
  }
  // A group the trade would create (the account's first position on it).
  bool fresh = false;
  if (changed_key >= 0 && std::none_of(gs.begin(), gs.end(), [&](const Group* g) {
        return g->key == changed_key;
      })) {
    const ScenarioSet& set = sets_[underlying_set_[changed_key]];
    if (!set.joint() && set.measure == LossMeasure::worst) {
      if (ns == 0) ns = set.scenarios.size();
      if (set.scenarios.size() != ns) return {0.0, 0.0};
      fresh = true;
    }
  }
  if (gs.size() + (fresh ? 1 : 0) < 2) return {0.0, 0.0};
  double im_factor = std::numeric_limits<double>::infinity();
  // For each case (now, all bids, all asks): summed loss and loss of the sum.
  double credit[3];
  thread_local std::vector<double> joint;
  for (int c = 0; c < 3; ++c) {
    joint.assign(ns, 0.0);
    double summed = 0.0;
    auto add = [&](const ScenarioSet& set, const double* pnl) {
      double worst = 0.0;
      for (std::size_t s = 0; s < ns; ++s) {
        const double x = set.scenarios[s].weight * pnl[s];
        joint[s] += x;
        worst = std::min(worst, x);
      }
      summed += -worst;
      im_factor = std::min(im_factor, set.im_factor);
    };
    for (const Group* g : gs) {
      const double* v = c == 0 ? g->pnl.data() : c == 1 ? g->bids_pnl() : g->asks_pnl();
      if (g->key == changed_key) v = c == 0 ? now : c == 1 ? bids : asks;
      add(sets_[g->set], v);
    }
    if (fresh) add(sets_[underlying_set_[changed_key]], c == 0 ? now : c == 1 ? bids : asks);
    double joint_worst = 0.0;
    for (double x : joint) joint_worst = std::min(joint_worst, x);
    credit[c] = offset_ * std::max(0.0, summed + joint_worst);
  }
  return {credit[0], std::min({credit[0], credit[1], credit[2]}) * im_factor};
}

void Engine::set_portfolio_offset(double offset) {
  if (!(offset >= 0.0 && offset <= 1.0)) bad("portfolio offset must be in [0, 1]");
  offset_ = offset;
  ++stamp_;
}

std::pair<double, double> Engine::portfolio_credit(int account) {
  Account& a = acct(account);
  refresh(a);
  return {a.credit_mm, a.credit_im};
}

void Engine::portfolio_delta(const Account& a, const InstrumentSpec& in, int instrument,
                             double q, double bids, double asks, double qty, double& d_im,
                             double& d_mm) const {
  const int set = underlying_set_[in.underlying];
  const std::size_t ns = sets_[set].scenarios.size();
  const Group* g = nullptr;
  const int key = group_key(in);
  for (const auto& x : a.groups) {
    if (x.key == key) g = &x;
  }
  thread_local std::vector<double> now, with_bids, with_asks;
  const double step = qty * to_margin(a, in.settle);
  const double* row = &risk_[risk_offset_[instrument]];
  const double dd = qty * risk_delta_[instrument];
  const double mp = assets_[a.margin_asset].price;
  const bool option = in.kind == InstrumentKind::option;
  const double cs = in.terms.contract_size, qn = q + qty;
  auto shorts = [cs](double x) { return short_units(x, cs); };
  if (offset_ == 0.0 && !(bids > 0.0) && !(asks > 0.0) && !(g && g->orders)) {
    // No resting orders in the group or on this instrument: the all-bids and
    // all-asks cases are the position as it stands (the same P&L, short and
    // delta units, to the bit), so the order's requirement is the one case.
    now.resize(ns);
    for (std::size_t s = 0; s < ns; ++s) now[s] = (g ? g->pnl[s] : 0.0) + step * row[s];
    double su = g ? g->short_units : 0.0;
    if (option) su += shorts(qn) - shorts(q);
    const double du = (g ? g->delta_units : 0.0) + dd;
    const Requirement r0 = group_requirement(set, key, now.data(), su, du, mp);
    d_mm = r0.mm - (g ? g->mm : 0.0);
    d_im = r0.im - (g ? g->im : 0.0);
    return;
  }
  now.assign(ns, 0.0);
  with_bids.assign(ns, 0.0);
  with_asks.assign(ns, 0.0);
  for (std::size_t s = 0; s < ns; ++s) {
    const double d = step * row[s];
    now[s] = (g ? g->pnl[s] : 0.0) + d;
    with_bids[s] = (g ? g->bids_pnl()[s] : 0.0) + d;
    with_asks[s] = (g ? g->asks_pnl()[s] : 0.0) + d;
  }
  double su = g ? g->short_units : 0.0, sb = g ? g->short_bids : 0.0,
         sa = g ? g->short_asks : 0.0;
  if (option) {
    su += shorts(qn) - shorts(q);
    sb += shorts(qn + bids) - shorts(q + bids);
    sa += shorts(qn - asks) - shorts(q - asks);
  }
  const double du = (g ? g->delta_units : 0.0) + dd, db = (g ? g->delta_bids : 0.0) + dd,
               da = (g ? g->delta_asks : 0.0) + dd;
  const Requirement r0 = group_requirement(set, key, now.data(), su, du, mp);
  const Requirement rb = group_requirement(set, key, with_bids.data(), sb, db, mp);
  const Requirement ra = group_requirement(set, key, with_asks.data(), sa, da, mp);
  d_mm = r0.mm - (g ? g->mm : 0.0);
  d_im = std::max({r0.im, rb.im, ra.im}) - (g ? g->im : 0.0);
  if (offset_ > 0.0) {  // the credit between groups moves with this group
    const auto credit = offset_credit(a.groups, key, now.data(), with_bids.data(), with_asks.data());
    d_mm -= credit.first - a.credit_mm;
    d_im -= credit.second - a.credit_im;
  }
}

// In portfolio mode every piece of the requirement is a maximum of lines in the
// order size x: the group's loss max(0, max_s -w_s (P_s + side x f R_s)) for each
// of the three order cases, the short-option units max(0, -(q + side x)) and the
// net delta |D + side x d|; equity is linear in x. "equity - IM >= 0" is then the
// intersection of half-lines A + B x >= 0, one per combination of lines: an
// interval whose right end is found exactly. Money rounding (equity down, IM up)
// can only pull the boundary in, by at most a few quanta; that last step is
// settled on check_order's own predicate.
double Engine::portfolio_max_size(Account& a, const InstrumentSpec& in, int instrument,
                                  int side, double price, double q, double bids, double asks) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const int account = static_cast<int>(&a - accounts_.data());
  auto check = [&](double x) { return check_order(account, instrument, side * x, price); };
  const bool reducing = q != 0.0 && (q > 0) != (side > 0);
  const double start = reducing ? std::fabs(q) : 0.0;  // risk increases beyond
  // Below `start` the position only shrinks; the engine accepts those unless they
  // make available margin worse than it is: leave that rare case to the search.
  if (start > 0.0 && !check(start).accepted) return nan;
  const OrderCheck probe = check(start + std::max(start, 1.0) * 1e-12);
  if (probe.reason == Reason::reduce_only || probe.reason == Reason::stale_price ||
      probe.reason == Reason::no_price) {
    return start;
  }
  refresh(a);
  const ScenarioSet& set = sets_[underlying_set_[in.underlying]];
  // Not piecewise linear (VaR / ES, joint sets), or coupled to other groups.
  if (set.measure != LossMeasure::worst || set.joint() || offset_ > 0.0) return nan;
  const std::size_t ns = set.scenarios.size();
  const Group* g = nullptr;
  for (const auto& x : a.groups) {
    if (x.key == in.underlying) g = &x;
  }
  const double f = to_margin(a, in.settle), cs = in.terms.contract_size;
  const bool opt = in.kind == InstrumentKind::option;
  const double mark = marks_[instrument].value;
  // Equity counted toward approval: E0 + e1 x, the fill's mark-to-market loss
  // (gains are not counted) and its fee. Linear only while cash lands on a
  // balance without haircuts; otherwise leave it to the general search.
  for (const auto& tier : assets_[in.settle].spec.tiers) {
    if (tier.haircut != 0.0) return nan;
  }
  const double per_unit_mtm = (in.terms.inverse && !opt) ? cs * (1.0 / price - 1.0 / mark)
                                                         : cs * (mark - price);
  const double per_unit_fee =
      in.taker_fee * ((in.terms.inverse && !opt) ? cs / price : cs * price);
  const double e0 = a.collateral + a.sum_pos_equity;
  const double e1 = (std::min(0.0, side * per_unit_mtm) - per_unit_fee) * f;
  const double other_im = a.sum_im - (g ? g->im : 0.0);
  const double k = set.im_factor;
  const double u = assets_[in.underlying].price / assets_[a.margin_asset].price;
  const double c_short = set.short_option_charge * u, c_delta = set.delta_charge * u;
  const double* row = &risk_[risk_offset_[instrument]];
  const double d = risk_delta_[instrument];
  double lo = start, hi = std::numeric_limits<double>::infinity();
  // Adds the half-line A + B x >= 0.
  auto need = [&](double A, double B) {
    if (B < 0.0) {
      hi = std::min(hi, -A / B);
    } else if (B > 0.0) {
      lo = std::max(lo, -A / B);
    } else if (A < 0.0) {
      hi = -std::numeric_limits<double>::infinity();
    }
  };
  const double qv[3] = {q, q + bids, q - asks};
  for (int v = 0; v < 3; ++v) {
    const double* pnl = g ? (v == 0 ? g->pnl.data() : v == 1 ? g->bids_pnl() : g->asks_pnl())
                          : nullptr;
    const double su0 = g ? (v == 0 ? g->short_units : v == 1 ? g->short_bids : g->short_asks) : 0.0;
    const double du0 = g ? (v == 0 ? g->delta_units : v == 1 ? g->delta_bids : g->delta_asks) : 0.0;
    // Short units as max of two lines in x (options only).
    double s_lines[2][2];  // {A, B}
    int n_s = 1;
    if (opt) {
      const double base = su0 - short_units(qv[v], cs);
      s_lines[0][0] = base;  // when q + side x >= 0
      s_lines[0][1] = 0.0;
      s_lines[1][0] = base - qv[v] * cs;  // -(q + side x) cs
      s_lines[1][1] = -side * cs;
      n_s = 2;
    } else {
      s_lines[0][0] = su0;
      s_lines[0][1] = 0.0;
    }
    const double d_lines[2][2] = {{du0, side * d}, {-du0, -side * d}};
    for (std::size_t s = 0; s <= ns; ++s) {
      // Loss line: 0, or -w (P + side x f R).
      double LA = 0.0, LB = 0.0;
      if (s < ns) {
        const double w = set.scenarios[s].weight;
        LA = -w * (pnl ? pnl[s] : 0.0);
        LB = -w * side * f * row[s];
      }
      for (int i = 0; i < n_s; ++i) {
        for (const auto& dl : d_lines) {
          const double reqA = k * (LA + c_short * s_lines[i][0] + c_delta * dl[0]);
          const double reqB = k * (LB + c_short * s_lines[i][1] + c_delta * dl[1]);
          need(e0 - other_im - reqA, e1 - reqB);
        }
      }
    }
  }
  if (!(hi >= lo)) return start;  // nothing beyond the reducing part
  if (std::isinf(hi)) return hi;   // never binding (a price far better than the mark)
  if (check(hi).accepted) return hi;
  // Rounding to the quantum: the accepted boundary is within a few quanta of hi.
  const double slope = std::fabs(e1) + 1.0;
  double good = std::max(start, hi - 8.0 * std::max(quantum(a).q, 1e-12) * 1e3 / slope);
  if (good > start && !check(good).accepted) good = start;
  double bad_x = hi;
  while (true) {
    const double mid = good + (bad_x - good) / 2.0;
    if (mid <= good || mid >= bad_x) break;
    (check(mid).accepted ? good : bad_x) = mid;
  }
  return good;
}

std::vector<PortfolioGroup> Engine::portfolio(int account) {
  Account& a = acct(account);
  refresh(a);
  std::vector<PortfolioGroup> out;
  const double margin_price = assets_[a.margin_asset].price;
  const Quantum& q = quantum(a);
  for (const Group& g : a.groups) {
    const ScenarioSet& set = sets_[g.set];
    PortfolioGroup pg;
    pg.underlying = set.joint() ? -1 : g.key;
    pg.set = g.set;
    pg.pnl.resize(set.scenarios.size());
    for (std::size_t s = 0; s < pg.pnl.size(); ++s) pg.pnl[s] = set.scenarios[s].weight * g.pnl[s];
    pg.loss = set.loss(g.pnl.data(), &pg.worst);
    pg.short_charge = pg.delta_charge = 0.0;
    if (!set.joint()) {
      const double usd = assets_[g.key].price / margin_price;
      pg.short_charge = set.short_option_charge * usd * g.short_units;
      pg.delta_charge = set.delta_charge * usd * std::fabs(g.delta_units);
    }
    pg.mm = round_up(g.mm, q);
    pg.im = round_up(g.im, q);
    for (const Position& p : a.positions) {
      const InstrumentSpec& in = instruments_[p.instrument];
      if (!in_portfolio(a, in) || group_key(in) != g.key) continue;
      pg.instruments.push_back(p.instrument);
      pg.contribution.push_back(set.scenarios[pg.worst].weight * p.size *
                                to_margin(a, in.settle) *
                                risk_[risk_offset_[p.instrument] + pg.worst]);
    }
    out.push_back(std::move(pg));
  }
  return out;
}

}  // namespace marginkit
