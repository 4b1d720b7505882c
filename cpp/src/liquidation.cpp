// Liquidation plans, bankruptcy, the insurance fund, auto-deleveraging and
// cascades (Engine members; data types in liquidation.hpp).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <tuple>

#include "marginkit/engine.hpp"
#include "marginkit/parallel.hpp"
#include "marginkit/pricing.hpp"

namespace marginkit {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument(what); }

bool finite_nonneg(double x) { return std::isfinite(x) && x >= 0.0; }

std::string fmt(const char* f, double a, double b = 0.0, double c = 0.0) {
  char buf[256];
  std::snprintf(buf, sizeof buf, f, a, b, c);
  return buf;
}

}  // namespace

// ---- venue formulas ----------------------------------------------------------------

double margin_implied_fee(double mm_rate, double liquidator_fee, double shortage,
                          double notional, double max_fee, double factor) noexcept {
  if (!(notional > 0.0) || !(mm_rate > liquidator_fee) || !std::isfinite(notional)) return 0.0;
  const double implied = factor * (mm_rate - liquidator_fee - std::max(0.0, shortage) / notional);
  return std::isfinite(implied) ? std::clamp(implied, 0.0, std::max(0.0, max_fee)) : 0.0;
}

double spot_implied_fee(double shortage, double liability_value, double asset_weight,
                        double asset_multiplier, double liability_weight,
                        double liability_multiplier, double max_fee) noexcept {
  if (asset_weight >= liability_weight || !(liability_value > 0.0) ||
      !(liability_multiplier > 0.0) || !(liability_weight > 0.0)) {
    return 0.0;
  }
  const double implied = (liability_weight - asset_weight * asset_multiplier / liability_multiplier -
                          std::max(0.0, shortage) / liability_value) /
                         liability_weight;
  return std::isfinite(implied) ? std::clamp(implied, 0.0, std::max(0.0, max_fee)) : 0.0;
}

double liability_transfer_to_cover(double shortage, double liability_price,
                                   double liability_weight, double asset_weight,
                                   double asset_multiplier, double liability_multiplier,
                                   double if_fee) noexcept {
  constexpr double inf = std::numeric_limits<double>::infinity();
  if (!(liability_multiplier > 0.0) || !(liability_price > 0.0)) return inf;
  const double asset_part = asset_weight * asset_multiplier / liability_multiplier;
  if (!(asset_part < liability_weight)) return inf;  // the transfer cannot help
  const double per_unit = liability_price * (liability_weight - asset_part) -
                          liability_price * if_fee * liability_weight;
  if (!(per_unit > 0.0)) return inf;
  return std::max(0.0, shortage) / per_unit;
}

double ramped_fee(double base, double max_fee, double inactive, double grace,
                  double per_unit) noexcept {
  if (!(per_unit > 0.0) || !(inactive >= grace)) return base;
  return std::min(base + inactive * per_unit, std::max(base, max_fee));
}

double fillable_adjustment(double tnc, double tmmr, double position_mm, double ba,
                           double spread_to_mm) noexcept {
  if (!(tmmr > 0.0) || !(position_mm > 0.0)) return 0.0;
  const double abr = std::clamp(ba * (1.0 - tnc / tmmr), 0.0, 1.0);
  return std::isfinite(abr) ? abr * spread_to_mm * position_mm : 0.0;
}

// ---- parameters and ledgers -------------------------------------------------------

void Engine::set_liquidity(int instrument, const LiquidityModel& model) {
  instr(instrument);
  if (!finite_nonneg(model.spread) || !finite_nonneg(model.impact) ||
      !finite_nonneg(model.max_step) || model.spread >= 1.0) {
    bad("liquidity: spread in [0, 1), impact and max_step finite and >= 0");
  }
  liquidity_[instrument] = model;
}

void Engine::set_liquidation_params(const LiquidationParams& p) {
  if (p.target != LiquidationTarget::maintenance && p.target != LiquidationTarget::initial) {
    bad("liquidation target must be maintenance or initial");
  }
  if (!finite_nonneg(p.buffer) || !finite_nonneg(p.fee_rate) || p.fee_rate >= 1.0) {
    bad("liquidation buffer >= 0 and fee_rate in [0, 1)");
  }
  if (p.fee_policy != FeePolicy::fixed && p.fee_policy != FeePolicy::margin_implied) {
    bad("fee policy must be fixed or margin_implied");
  }
  if (!finite_nonneg(p.max_if_fee) || p.max_if_fee >= 1.0 || !finite_nonneg(p.if_factor) ||
      p.if_factor > 1.0) {
    bad("max_if_fee in [0, 1) and if_factor in [0, 1]");
  }
  if (!finite_nonneg(p.ramp_per_second) || !finite_nonneg(p.ramp_grace) ||
      !finite_nonneg(p.max_fee_rate) || p.max_fee_rate >= 1.0) {
    bad("ramp_per_second, ramp_grace >= 0 and max_fee_rate in [0, 1)");
  }
  if (p.fill_policy != FillPolicy::liquidity && p.fill_policy != FillPolicy::fillable) {
    bad("fill policy must be liquidity or fillable");
  }
  if (!finite_nonneg(p.bankruptcy_adjustment) || !finite_nonneg(p.spread_to_mm) ||
      p.spread_to_mm > 1.0) {
    bad("bankruptcy_adjustment >= 0 and spread_to_mm in [0, 1]");
  }
  if (!finite_nonneg(p.spot_dust)) bad("spot_dust must be finite and >= 0");
  liq_ = p;
}

void Engine::fund_insurance(int asset, double amount) {
  check_asset(asset);
  if (!(std::isfinite(amount) && amount > 0.0)) bad("fund amount must be finite and > 0");
  fund_[asset] += amount;
}

double Engine::insurance_fund(int asset) const {
  check_asset(asset);
  return fund_[asset];
}

double Engine::market_pnl(int asset) const {
  check_asset(asset);
  return market_pnl_[asset];
}

double Engine::socialized(int asset) const {
  check_asset(asset);
  return socialized_[asset];
}

// ---- building blocks -----------------------------------------------------------------

double Engine::exec_price(int instrument, double qty) const noexcept {
  const LiquidityModel& l = liquidity_[instrument];
  const double adj = std::min(l.spread + l.impact * std::fabs(qty), 0.999999);
  const double mark = marks_[instrument].value;
  return qty < 0.0 ? mark * (1.0 - adj) : mark * (1.0 + adj);
}

double Engine::liquidation_requirement(const Account& a) const noexcept {
  return liq_.target == LiquidationTarget::maintenance ? a.sum_mm : a.sum_im;
}

// Equity must reach this (rounded as the health state rounds) to be restored:
// MM x the liquidation threshold x (1 + buffer), or IM.
double Engine::liquidation_target(const Account& a) const noexcept {
  const Quantum& q = quantum(a);
  if (liq_.target == LiquidationTarget::initial) return round_up(a.sum_im, q);
  return round_up(a.sum_mm, q) * thresholds_.liquidation * (1.0 + liq_.buffer);
}

double Engine::apply_trade(Account& a, const InstrumentSpec& in, int instrument, double qty,
                           double price, double fee, bool to_fund) {
  Position& p = slot(a, instrument);
  const double cash = fill_cash(a, in, p, qty, price);
  a.balances[in.settle] += cash - fee;
  if (to_fund) fund_[in.settle] += fee;
  drop_empty(a);
  touch(a);
  return cash;
}

// Equity after trading qty at p is affine in p (linear futures, options) or in
// 1/p (inverse futures), as long as cash lands on a balance without haircut
// tiers being crossed; solve it from two evaluations, then settle the last bits
// on the exact function.
double Engine::zero_equity_price(Account& a, const InstrumentSpec& in, int instrument,
                                 double qty, bool with_fee) {
  refresh(a);
  const double e0 = a.collateral + a.sum_pos_equity;
  const bool inv = in.terms.inverse && in.kind != InstrumentKind::option;
  const double mark = marks_[instrument].value;
  auto equity_at = [&](double p) {
    const double fee = with_fee ? taker_fee(in, qty, p) : 0.0;
    return e0 + trade_effect(a, in, instrument, qty, p, fee).d_equity;
  };
  auto var = [&](double p) { return inv ? 1.0 / p : p; };
  const double p1 = mark, p2 = mark * 1.5;
  const double y1 = equity_at(p1), y2 = equity_at(p2);
  const double slope = (y2 - y1) / (var(p2) - var(p1));
  if (!(std::fabs(slope) > 0.0) || !std::isfinite(slope)) return kNaN;
  const double v = var(p1) - y1 / slope;
  if (!(v > 0.0) || !std::isfinite(v)) return kNaN;
  const double p = inv ? 1.0 / v : v;
  // Settle on the exact function (haircut tiers make it piecewise affine):
  // bracket a sign change around p, then bisect to the last bit.
  double lo = p * (1.0 - 1e-9), hi = p * (1.0 + 1e-9);
  double ylo = equity_at(lo), yhi = equity_at(hi);
  for (int i = 0; i < 100 && (ylo > 0.0) == (yhi > 0.0); ++i) {
    lo *= 0.99;
    hi *= 1.01;
    ylo = equity_at(lo);
    yhi = equity_at(hi);
  }
  if ((ylo > 0.0) == (yhi > 0.0)) return p;
  while (true) {
    const double mid = lo + (hi - lo) / 2.0;
    if (mid <= lo || mid >= hi) break;
    ((equity_at(mid) > 0.0) == (ylo > 0.0) ? lo : hi) = mid;
  }
  return std::fabs(equity_at(lo)) < std::fabs(equity_at(hi)) ? lo : hi;
}

double Engine::bankruptcy_price(int account, int instrument) {
  Account& a = acct(account);
  const InstrumentSpec& in = instr(instrument);
  double q = 0.0;
  for (const Position& p : a.positions) {
    if (p.instrument == instrument) q = p.size;
  }
  if (q == 0.0 || in.kind == InstrumentKind::spot) return kNaN;
  return zero_equity_price(a, in, instrument, -q, true);
}

// ---- plans -----------------------------------------------------------------------------

namespace {
// Closing x of a position whose size is q: the signed trade.
double closing(double q, double x) { return q > 0.0 ? -x : x; }
}  // namespace

double Engine::liquidation_fee(const InstrumentSpec& in, double x, double price,
                               double rate) const noexcept {
  return rate * x * in.terms.contract_size *
         (in.terms.inverse && in.kind != InstrumentKind::option ? 1.0 / price : price);
}

namespace {
// The position of an account in an instrument (nullptr: none).
const Position* position_in(const std::vector<Position>& ps, int instrument) {
  for (const Position& p : ps) {
    if (p.instrument == instrument && p.size != 0.0) return &p;
  }
  return nullptr;
}
}  // namespace

std::pair<double, double> Engine::penalty_rates(Account& a, int instrument) {
  const double base = ramped_fee(liq_.fee_rate, liq_.max_fee_rate, now_ - a.last_active,
                                 liq_.ramp_grace, liq_.ramp_per_second);
  if (liq_.fee_policy != FeePolicy::margin_implied) return {base, 0.0};
  const Position* p = position_in(a.positions, instrument);
  if (!p) return {base, 0.0};
  refresh(a);
  const InstrumentSpec& in = instruments_[instrument];
  const Contribution c = contribution(a, in, p->size, 0.0, 0.0, p->entry);
  const double mark = marks_[instrument].value;
  const double notional = std::fabs(p->size) * in.terms.contract_size *
                          (in.terms.inverse && in.kind != InstrumentKind::option ? 1.0 / mark
                                                                                 : mark) *
                          to_margin(a, in.settle);
  const double shortage = std::max(0.0, a.sum_mm - (a.collateral + a.sum_pos_equity));
  const double mm_rate = notional > 0.0 ? c.mm / notional : 0.0;
  const double if_fee =
      margin_implied_fee(mm_rate, base, shortage, notional, liq_.max_if_fee, liq_.if_factor);
  return {base + if_fee, if_fee};
}

double Engine::fill_price(Account& a, int instrument, double qty) {
  if (liq_.fill_policy != FillPolicy::fillable) return exec_price(instrument, qty);
  const double mark = marks_[instrument].value;
  const Position* p = position_in(a.positions, instrument);
  if (!p) return mark;
  refresh(a);
  const InstrumentSpec& in = instruments_[instrument];
  const Contribution c = contribution(a, in, p->size, 0.0, 0.0, p->entry);
  const double notional = std::fabs(p->size) * in.terms.contract_size *
                          (in.terms.inverse && in.kind != InstrumentKind::option ? 1.0 / mark
                                                                                 : mark) *
                          to_margin(a, in.settle);
  if (!(notional > 0.0)) return mark;
  const double adj = fillable_adjustment(a.collateral + a.sum_pos_equity, a.sum_mm, c.mm,
                                         liq_.bankruptcy_adjustment, liq_.spread_to_mm);
  const double frac = std::min(adj / notional, 0.999999);
  return qty < 0.0 ? mark * (1.0 - frac) : mark * (1.0 + frac);
}

double Engine::liquidation_fill_price(int account, int instrument, double qty) {
  Account& a = acct(account);
  instr(instrument);
  if (!std::isfinite(qty)) bad("qty must be finite");
  const Position* p = position_in(a.positions, instrument);
  if (!p) return kNaN;
  if (qty == 0.0) qty = -p->size;
  return fill_price(a, instrument, qty);
}

std::pair<double, double> Engine::liquidation_fee_rate(int account, int instrument) {
  Account& a = acct(account);
  instr(instrument);
  return penalty_rates(a, instrument);
}

// One liquidation fill on an account, exactly as execution will do it: the fill
// at the expected price and the penalty (settlement asset), capped so that it
// never takes equity below zero. Returns the penalty in the margin asset.
double Engine::liquidation_fill(Account& a, int instrument, double qty, bool to_fund) {
  const InstrumentSpec& in = instruments_[instrument];
  const double px = fill_price(a, instrument, qty);
  const double rate = penalty_rates(a, instrument).first;
  refresh(a);
  const double e0 = a.collateral + a.sum_pos_equity;
  const double free = trade_effect(a, in, instrument, qty, px, 0.0).d_equity;
  const double f = to_margin(a, in.settle);
  double fee = std::min(liquidation_fee(in, std::fabs(qty), px, rate) * f,
                        std::max(0.0, e0 + free));
  // One application, as a fill with this fee would do it (replays agree to the bit).
  apply_trade(a, in, instrument, qty, px, fee / f, to_fund);
  refresh(a);
  // The cap came from a prediction of the equity the fill leaves, which can
  // differ from the account's own in the last bits: a penalty must not make an
  // account bankrupt, so a shortfall it caused goes back.
  const double short_by = -(a.collateral + a.sum_pos_equity);
  if (fee > 0.0 && short_by > 0.0) {
    const double back = std::min(fee, short_by);
    a.balances[in.settle] += back / f;
    if (to_fund) fund_[in.settle] -= back / f;
    fee -= back;
    touch(a);
    refresh(a);
  }
  return fee;
}

LiquidationPlan Engine::plan_liquidation(int account) {
  acct(account);
  ensure_risk();
  Account sim = accounts_[account];  // plans on a copy: nothing changes
  sim.stamp = 0;
  refresh(sim);
  LiquidationPlan plan;
  plan.account = account;
  auto equity = [](const Account& x) { return x.collateral + x.sum_pos_equity; };
  auto gap_of = [&](const Account& x) {
    return round_down(equity(x), quantum(x)) - liquidation_target(x);
  };
  plan.equity_before = equity(sim);
  plan.requirement_before = liquidation_requirement(sim);
  plan.target_before = liquidation_target(sim);
  // 1. Resting orders first: they only add requirement.
  for (Position& p : sim.positions) {
    if (p.bids <= 0.0 && p.asks <= 0.0) continue;
    const double before = liquidation_requirement(sim);
    p.bids = p.asks = 0.0;
    sim.stamp = 0;
    refresh(sim);
    LiquidationStep st;
    st.kind = "cancel_orders";
    st.instrument = p.instrument;
    st.released = before - liquidation_requirement(sim);
    st.reason = "resting orders are cancelled before any position is touched";
    plan.steps.push_back(st);
  }
  drop_empty(sim);
  sim.stamp = 0;
  refresh(sim);
  // The state after closing x of an instrument, computed the way execution will.
  auto after = [&](int instrument, double q, double x) {
    Account t = sim;
    liquidation_fill(t, instrument, closing(q, x), false);
    return t;
  };
  // 2. Positions: the most requirement released per unit of cost first. Each
  // candidate is tried at fractions of its step limit, because in portfolio mode
  // a partial close can release requirement where a whole one adds some.
  const std::size_t max_iter = 64 + 16 * sim.positions.size();
  for (std::size_t it = 0; it < max_iter && gap_of(sim) < 0.0 && !sim.positions.empty(); ++it) {
    struct Cand {
      int instrument = -1;
      double q = 0.0, size = 0.0, limit = 0.0, score = -1.0;
    } best;
    int considered = 0;
    const double req0 = liquidation_requirement(sim), e0 = equity(sim);
    for (const Position& p : sim.positions) {
      if (p.size == 0.0) continue;
      ++considered;
      const double step = liquidity_[p.instrument].max_step;
      const double limit = step > 0.0 ? std::min(std::fabs(p.size), step) : std::fabs(p.size);
      // Scored at its step limit; smaller sizes are tried only when the whole
      // step releases nothing (a hedge leg in portfolio mode can release
      // requirement in part and add it in whole). A bankrupt account is not
      // nursed back in small pieces.
      const bool bankrupt = e0 < 0.0;
      bool whole_releases = false;
      for (double frac : {1.0, 0.5, 0.25, 0.125, 0.0625}) {
        if (frac < 1.0 && (bankrupt || whole_releases)) break;
        const double x = limit * frac;
        const Account t = after(p.instrument, p.size, x);
        const double released = req0 - liquidation_requirement(t);
        if (!(released > 0.0)) continue;  // never a step that raises the requirement
        if (frac == 1.0) whole_releases = true;
        const double cost = std::max(0.0, e0 - equity(t));
        const double score = cost > 0.0 ? released / cost : std::numeric_limits<double>::infinity();
        // Larger sizes come first and keep ties (within rounding); then lower ids.
        const bool clearly = score > best.score * (1.0 + 1e-9) ||
                             (best.score < 0.0 && score > best.score);
        const bool tie = !clearly && score >= best.score * (1.0 - 1e-9) &&
                         p.instrument < best.instrument;
        if (clearly || tie) best = {p.instrument, p.size, x, limit, score};
      }
    }
    if (best.instrument < 0) break;  // nothing left that releases requirement
    // The smallest quantity up to the step limit that restores the target: the
    // first of 32 even sizes that does, then bisection below it; if none does,
    // the best-scoring size (progress, and the next step continues).
    double x = best.size;
    double prev = 0.0;
    for (int k = 1; k <= 32; ++k) {
      const double xk = best.limit * k / 32.0;
      if (gap_of(after(best.instrument, best.q, xk)) >= 0.0) {
        double lo = prev, hi = xk;
        while (true) {
          const double mid = lo + (hi - lo) / 2.0;
          if (mid <= lo || mid >= hi) break;
          (gap_of(after(best.instrument, best.q, mid)) >= 0.0 ? hi : lo) = mid;
        }
        x = hi;
        break;
      }
      prev = xk;
    }
    LiquidationStep st;
    st.instrument = best.instrument;
    st.qty = closing(best.q, x);
    st.price = fill_price(sim, best.instrument, st.qty);
    std::tie(st.fee_rate, st.if_fee_rate) = penalty_rates(sim, best.instrument);
    Account next = sim;
    const InstrumentSpec& in = instruments_[best.instrument];
    st.slippage = std::max(
        0.0, -trade_effect(next, in, best.instrument, st.qty, st.price, 0.0).d_equity);
    st.penalty = liquidation_fill(next, best.instrument, st.qty, false);
    st.released = req0 - liquidation_requirement(next);
    st.kind = x >= std::fabs(best.q) ? "close" : "reduce";
    st.score = best.score;
    st.reason = fmt("best of %.0f positions: releases %.6g of requirement per unit of cost "
                    "(score %.6g)",
                    static_cast<double>(considered), st.released, best.score);
    const bool exact = gap_of(next) >= 0.0;
    st.reason += exact && x < std::fabs(best.q)
                     ? "; sized exactly to restore the target"
                     : (x < std::fabs(best.q) ? "; limited by the step size or the best size"
                                              : "; partial steps cannot restore the target");
    plan.steps.push_back(st);
    sim = next;
  }
  // 3. A bankrupt account that cannot be restored is flattened: what is left
  // (long options, say) is sold for what it brings.
  if (gap_of(sim) < 0.0 && equity(sim) < 0.0) {
    while (!sim.positions.empty()) {
      const Position p = sim.positions.front();
      LiquidationStep st;
      const double step = liquidity_[p.instrument].max_step;
      const double x = step > 0.0 ? std::min(std::fabs(p.size), step) : std::fabs(p.size);
      st.kind = x >= std::fabs(p.size) ? "close" : "reduce";
      st.instrument = p.instrument;
      st.qty = closing(p.size, x);
      st.price = fill_price(sim, p.instrument, st.qty);
      std::tie(st.fee_rate, st.if_fee_rate) = penalty_rates(sim, p.instrument);
      const double req0 = liquidation_requirement(sim);
      st.slippage = std::max(0.0, -trade_effect(sim, instruments_[p.instrument], p.instrument,
                                                st.qty, st.price, 0.0).d_equity);
      if (p.size == 0.0) {
        sim.positions.erase(sim.positions.begin());
        continue;
      }
      st.penalty = liquidation_fill(sim, p.instrument, st.qty, false);
      st.released = req0 - liquidation_requirement(sim);
      st.reason = "the account is bankrupt: every remaining position is closed";
      plan.steps.push_back(st);
    }
  }
  plan.equity_after = equity(sim);
  plan.requirement_after = liquidation_requirement(sim);
  plan.restored = gap_of(sim) >= 0.0 || sim.positions.empty();
  if (gap_of(sim) < 0.0) {
    bool borrow = false, deposit = false;
    for (std::size_t i = 0; i < sim.balances.size(); ++i) {
      if (!(assets_[i].price > 0.0)) continue;
      borrow = borrow || sim.balances[i] < 0.0;
      deposit = deposit || sim.balances[i] > 0.0;
    }
    // A borrow and a deposit in one asset cannot be: a balance has one sign.
    plan.needs_spot = borrow && deposit;
  }
  return plan;
}

// ---- spot liquidation: liability transfer ---------------------------------------------

SpotLiquidation Engine::plan_spot_liquidation(int account, int liability, int asset) {
  Account& a = acct(account);
  check_asset(liability);
  check_asset(asset);
  if (liability == asset) bad("the liability and the asset must differ");
  SpotLiquidation s;
  s.account = account;
  s.liability = liability;
  s.asset = asset;
  const double borrow = -a.balances[liability], held = a.balances[asset];
  const double pl = assets_[liability].price, pa = assets_[asset].price;
  if (!(borrow > 0.0) || !(held > 0.0)) return s;  // nothing to transfer
  if (!(pl > 0.0) || !(pa > 0.0)) bad("the liability and the asset need prices");
  refresh(a);
  const double mp = assets_[a.margin_asset].price;
  s.shortage = std::max(0.0, (liquidation_target(a) -
                              round_down(a.collateral + a.sum_pos_equity, quantum(a))) * mp);
  // Weights at the holdings (the average weight, exact for flat weights).
  s.liability_weight = -asset_value(liability, -borrow, pl) / (borrow * pl);
  s.asset_weight = asset_value(asset, held, pa) / (held * pa);
  s.asset_multiplier = 1.0 + assets_[asset].spec.liquidator_fee;
  s.liability_multiplier = 1.0 - assets_[liability].spec.liquidator_fee;
  if (liq_.fee_policy == FeePolicy::margin_implied) {
    s.if_fee = spot_implied_fee(s.shortage, borrow * pl, s.asset_weight, s.asset_multiplier,
                                s.liability_weight, s.liability_multiplier, liq_.max_if_fee);
  }
  if (!(s.shortage > 0.0)) return s;
  s.to_cover = liability_transfer_to_cover(s.shortage, pl, s.liability_weight, s.asset_weight,
                                           s.asset_multiplier, s.liability_multiplier, s.if_fee);
  // Units of the asset paid per unit of liability taken over.
  const double rate = pl * s.asset_multiplier / (s.liability_multiplier * pa);
  s.liability_transfer = std::min({s.to_cover, borrow, held / rate});
  s.asset_transfer = std::min(held, s.liability_transfer * rate);
  if (held - s.asset_transfer < held * 1e-12 ||
      (held - s.asset_transfer) * pa < liq_.spot_dust) {
    s.asset_transfer = held;  // dust is handed over with the rest
  }
  s.fund_fee = s.liability_transfer * s.if_fee;
  return s;
}

SpotLiquidation Engine::liquidate_spot(int account, int liability, int asset) {
  SpotLiquidation s = plan_spot_liquidation(account, liability, asset);
  if (!(s.liability_transfer > 0.0)) return s;
  Account& a = accounts_[account];
  const double pl = assets_[liability].price, pa = assets_[asset].price;
  const double mp = assets_[a.margin_asset].price;
  a.balances[liability] += s.liability_transfer - s.fund_fee;
  a.balances[asset] -= s.asset_transfer;
  fund_[liability] += s.fund_fee;
  // The liquidator took on the debt and received the deposit: its gain at the prices.
  market_pnl_[a.margin_asset] += (s.asset_transfer * pa - s.liability_transfer * pl) / mp;
  touch(a);
  return s;
}

std::vector<SpotLiquidation> Engine::spot_cure(int account) {
  acct(account);
  std::vector<SpotLiquidation> done;
  const std::size_t n = assets_.size();
  std::vector<char> used(n * n, 0);  // each (liability, asset) pair at most once
  while (true) {
    const std::vector<double>& bal = accounts_[account].balances;
    // Borrows, largest USD value first (ties: lower asset id).
    std::vector<std::pair<double, int>> borrows;
    for (std::size_t i = 0; i < n; ++i) {
      const double p = assets_[i].price;
      if (bal[i] < 0.0 && p > 0.0) borrows.emplace_back(-bal[i] * p, static_cast<int>(i));
    }
    std::stable_sort(borrows.begin(), borrows.end(),
                     [](const auto& x, const auto& y) { return x.first > y.first; });
    SpotLiquidation best;
    for (const auto& [usd, liability] : borrows) {
      for (std::size_t j = 0; j < n; ++j) {
        if (static_cast<int>(j) == liability || used[liability * n + j] || !(bal[j] > 0.0) ||
            !(assets_[j].price > 0.0)) {
          continue;
        }
        const SpotLiquidation s = plan_spot_liquidation(account, liability, static_cast<int>(j));
        if (s.liability_transfer > best.liability_transfer) best = s;  // ties: lower id
      }
      if (best.liability_transfer > 0.0) break;  // else the next borrow
    }
    if (!(best.liability_transfer > 0.0)) break;  // restored, or nothing to transfer
    used[best.liability * n + best.asset] = 1;
    done.push_back(liquidate_spot(account, best.liability, best.asset));
    // A transfer sized to cure the shortage restores the account (to rounding).
    if (best.liability_transfer >= best.to_cover) break;
  }
  return done;
}

// ---- auto-deleveraging ----------------------------------------------------------------

std::vector<int> Engine::adl_ranking(int instrument, int side) {
  const InstrumentSpec& in = instr(instrument);
  if (side != 1 && side != -1) bad("side must be +1 (long) or -1 (short)");
  struct Rank {
    double key;
    int id;
  };
  std::vector<Rank> ranks;
  for (std::size_t i = 0; i < accounts_.size(); ++i) {
    Account& a = accounts_[i];
    for (const Position& p : a.positions) {
      if (p.instrument != instrument || p.size == 0.0 || (p.size > 0) == (side > 0)) continue;
      refresh(a);
      const Contribution c = contribution(a, in, p.size, 0.0, 0.0, p.entry);
      const double cost = std::fabs(p.size) * in.terms.contract_size *
                          (in.terms.inverse && in.kind != InstrumentKind::option
                               ? 1.0 / p.entry
                               : p.entry) *
                          to_margin(a, in.settle);
      const double pnl_pct = cost > 0.0 ? c.equity / cost : 0.0;
      const double notional = std::fabs(p.size) * in.terms.contract_size *
                              (in.terms.inverse && in.kind != InstrumentKind::option
                                   ? 1.0 / marks_[instrument].value
                                   : marks_[instrument].value) *
                              to_margin(a, in.settle);
      const double eq = a.collateral + a.sum_pos_equity;
      const double lev = eq > 0.0 ? notional / eq : std::numeric_limits<double>::infinity();
      const double key = pnl_pct > 0.0 ? pnl_pct * lev : (lev > 0.0 ? pnl_pct / lev : pnl_pct);
      ranks.push_back({key, static_cast<int>(i)});
    }
  }
  std::stable_sort(ranks.begin(), ranks.end(), [](const Rank& x, const Rank& y) {
    return x.key > y.key || (x.key == y.key && x.id < y.id);
  });
  std::vector<int> out;
  for (const auto& r : ranks) out.push_back(r.id);
  return out;
}

// ---- execution -------------------------------------------------------------------------

LiquidationResult Engine::liquidate(int account, bool spot) {
  acct(account);
  return execute_plan(plan_liquidation(account), spot);
}

LiquidationResult Engine::execute_plan(LiquidationPlan plan, bool spot) {
  LiquidationResult res;
  res.plan = std::move(plan);
  const int account = res.plan.account;
  Account& a = accounts_[account];
  const int margin = a.margin_asset;
  for (const LiquidationStep& st : res.plan.steps) {
    if (st.kind == "cancel_orders") {
      for (auto it = orders_.begin(); it != orders_.end();) {
        if (it->second.account == account && it->second.instrument == st.instrument) {
          it = orders_.erase(it);
        } else {
          ++it;
        }
      }
      Position& p = slot(a, st.instrument);
      p.bids = p.asks = 0.0;
      drop_empty(a);
      touch(a);
      refresh(a);
      continue;
    }
    const InstrumentSpec& in = instruments_[st.instrument];
    // Deleveraging in an earlier step may have closed part of it already.
    double held = 0.0;
    for (const Position& p : a.positions) {
      if (p.instrument == st.instrument) held = p.size;
    }
    if (held == 0.0 || (held > 0.0) == (st.qty > 0.0)) continue;
    const double qty = st.qty > 0.0 ? std::min(st.qty, -held) : std::max(st.qty, -held);
    refresh(a);
    const double e0 = a.collateral + a.sum_pos_equity;
    const double free = trade_effect(a, in, st.instrument, qty, fill_price(a, st.instrument, qty),
                                     0.0).d_equity;
    const double deficit = -(e0 + free);  // bad debt a market fill would leave
    const int side = qty < 0.0 ? 1 : -1;  // the side being closed
    double left = std::fabs(qty);
    if (deficit > 0.0 && fund_[margin] < deficit) {
      // The fund cannot pay: deleverage opposite positions at the bankruptcy price.
      const double bp = zero_equity_price(a, in, st.instrument, qty, false);
      if (std::isfinite(bp) && bp > 0.0) {
        for (int c : adl_ranking(st.instrument, side)) {
          if (left <= 0.0 || c == account) continue;
          Account& other = accounts_[c];
          double theirs = 0.0;
          for (const Position& p : other.positions) {
            if (p.instrument == st.instrument) theirs = p.size;
          }
          const double y = std::min(left, std::fabs(theirs));
          if (y <= 0.0) continue;
          // Both sides trade y at the bankruptcy price, between themselves.
          apply_trade(a, in, st.instrument, side > 0 ? -y : y, bp, 0.0, false);
          apply_trade(other, in, st.instrument, theirs > 0 ? -y : y, bp, 0.0, false);
          res.adl_volume += y;
          res.adl_notional += in.terms.inverse && in.kind != InstrumentKind::option
                                  ? y * in.terms.contract_size
                                  : y * in.terms.contract_size * bp * assets_[in.settle].price;
          if (std::find(res.adl_accounts.begin(), res.adl_accounts.end(), c) ==
              res.adl_accounts.end()) {
            res.adl_accounts.push_back(c);
          }
          left -= y;
        }
      }
    }
    if (left > 0.0) {  // the rest goes to the market, exactly as planned
      const double q_mkt = side > 0 ? -left : left;
      refresh(a);
      const double gain = -trade_effect(a, in, st.instrument, q_mkt,
                                        fill_price(a, st.instrument, q_mkt), 0.0).d_equity;
      res.fees_to_fund += liquidation_fill(a, st.instrument, q_mkt, true);
      market_pnl_[margin] += gain;  // the market's gain against the mark
      res.market_fills.emplace_back(st.instrument, q_mkt);
    }
  }
  if (spot) res.spot = spot_cure(account);
  // Settlement: negative equity is bad debt; the fund pays what it can, and
  // what is left, once nothing remains to deleverage, is written off.
  refresh(a);
  const double eq = a.collateral + a.sum_pos_equity;
  if (eq < 0.0) {
    res.bad_debt = -eq;
    const double pay = std::min(res.bad_debt, fund_[margin]);
    fund_[margin] -= pay;
    a.balances[margin] += pay;
    res.fund_paid = pay;
    const double rest = res.bad_debt - pay;
    if (rest > 0.0) {
      res.socialized = rest;
      socialized_[margin] += rest;
      a.balances[margin] += rest;
    }
    touch(a);
  }
  return res;
}

std::vector<LiquidationPlan> Engine::plan_all() {
  ensure_state();  // once, here: the threads only read it (and the flat book)
  sync_flat();
  std::vector<std::vector<LiquidationPlan>> per_chunk;
  std::mutex m;
  parallel_for(accounts_.size(), 2048, [&](std::size_t b, std::size_t e) {
    std::vector<LiquidationPlan> local;
    for (std::size_t i = b; i < e; ++i) {
      if (account_figures(i).state < Health::liquidation) continue;
      local.push_back(plan_liquidation(static_cast<int>(i)));
    }
    std::lock_guard<std::mutex> lock(m);
    per_chunk.push_back(std::move(local));
  });
  std::vector<LiquidationPlan> out;
  for (auto& chunk : per_chunk) {
    for (auto& p : chunk) out.push_back(std::move(p));
  }
  std::sort(out.begin(), out.end(),
            [](const LiquidationPlan& x, const LiquidationPlan& y) { return x.account < y.account; });
  return out;
}

// ---- market moves and cascades ------------------------------------------------------------

double Engine::implied_vol_of(int instrument) const {
  if (std::isfinite(vols_[instrument])) return vols_[instrument];
  const InstrumentSpec& in = instruments_[instrument];
  const double fwd = option_forward(in);
  const double mark = marks_[instrument].value;
  return implied_vol_one(in.terms.inverse ? mark * fwd : mark, in.terms.cp, fwd, in.terms.strike,
                         years_to_expiry(in), rate_, Settlement::linear);
}

void Engine::move_underlying(int underlying, double price) {
  check_asset(underlying);
  if (!(std::isfinite(price) && price > 0.0)) bad("price must be finite and > 0");
  const double old = assets_[underlying].price;
  if (!std::isfinite(old)) bad("the underlying has no price to move from");
  const double ratio = price / old;
  std::vector<double> vols(instruments_.size(), kNaN);
  for (std::size_t i = 0; i < instruments_.size(); ++i) {
    const InstrumentSpec& in = instruments_[i];
    if (in.underlying == underlying && in.kind == InstrumentKind::option &&
        std::isfinite(marks_[i].value)) {
      vols[i] = implied_vol_of(static_cast<int>(i));
    }
  }
  const double t = assets_[underlying].time;
  assets_[underlying].price = price;
  for (auto& [key, fwd] : forwards_) {
    if (key % 4096 == underlying) fwd.value *= ratio;
  }
  for (std::size_t i = 0; i < instruments_.size(); ++i) {
    const InstrumentSpec& in = instruments_[i];
    if (in.underlying != underlying || !std::isfinite(marks_[i].value)) continue;
    if (in.kind == InstrumentKind::option) {
      const double value =
          black76_one(in.terms.cp, option_forward(in), in.terms.strike, years_to_expiry(in),
                      vols[i], rate_, in.terms.inverse ? Settlement::inverse : Settlement::linear)
              .price;
      marks_[i].value = value;
    } else {
      marks_[i].value *= ratio;
    }
    marks_[i].time = std::max(marks_[i].time, t);
  }
  ++stamp_;
}

std::vector<Engine::CascadeRound> Engine::cascade(int underlying, double shock, double impact,
                                                  int max_rounds) {
  check_asset(underlying);
  if (!(std::isfinite(shock) && shock > -1.0)) bad("shock must be finite and > -1");
  if (!finite_nonneg(impact)) bad("impact must be finite and >= 0");
  if (max_rounds < 1) bad("max_rounds must be >= 1");
  move_underlying(underlying, assets_[underlying].price * (1.0 + shock));
  std::vector<CascadeRound> rounds;
  for (int r = 1; r <= max_rounds; ++r) {
    CascadeRound cr{r, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0.0};
    double net_sold = 0.0;  // units of the underlying sold by liquidations
    // Plans made in parallel are executed as they are, unless an earlier
    // liquidation of the round deleveraged the account (then it is planned again).
    std::vector<char> touched(accounts_.size(), 0);
    for (LiquidationPlan& plan : plan_all()) {
      const int id = plan.account;
      const LiquidationResult res =
          touched[id] ? liquidate(id, true) : execute_plan(std::move(plan), true);
      for (int c : res.adl_accounts) touched[c] = 1;
      ++cr.liquidated;
      for (const auto& [id, qty] : res.market_fills) {  // only what reached the market
        const InstrumentSpec& in = instruments_[id];
        if (in.underlying != underlying) continue;
        const double units = in.terms.inverse && in.kind != InstrumentKind::option
                                 ? qty * in.terms.contract_size / exec_price(id, qty)
                                 : qty * in.terms.contract_size;
        cr.volume += std::fabs(units);
        net_sold -= units;
      }
      const double usd = assets_[accounts_[plan.account].margin_asset].price;
      cr.bad_debt += res.bad_debt * usd;
      cr.adl_volume += res.adl_notional;
      cr.socialized += res.socialized * usd;
      for (const SpotLiquidation& s : res.spot) {
        ++cr.spot_transfers;
        cr.spot_value += s.liability_transfer * assets_[s.liability].price;
      }
    }
    const double p = assets_[underlying].price;
    const double moved = std::max(p * (1.0 - impact * net_sold), p * 1e-6);
    if (cr.liquidated > 0 && moved != p) move_underlying(underlying, moved);
    cr.price = assets_[underlying].price;
    double fund = 0.0;
    for (std::size_t i = 0; i < fund_.size(); ++i) {
      if (std::isfinite(assets_[i].price)) fund += fund_[i] * assets_[i].price;
    }
    cr.fund = fund;  // USD value of the insurance fund
    rounds.push_back(cr);
    if (cr.liquidated == 0 || (cr.volume == 0.0 && cr.adl_volume == 0.0)) break;  // fixed point
  }
  return rounds;
}

}  // namespace marginkit
