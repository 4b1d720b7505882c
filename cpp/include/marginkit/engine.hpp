// The margin engine: assets, instruments, market prices, accounts and their
// positions, cross-margin requirements, incremental pre-trade checks and batch
// evaluation. Plain C++; ids are dense integers (names are kept for lookups).
//
// Units. Every asset has a price in one numeraire (USD). Linear instruments are
// quoted and settled in their settlement asset; their index is
// price(underlying) / price(settle). Inverse instruments are quoted in the
// numeraire and settled in the underlying coin. Option marks are per unit of
// underlying, in the settlement currency (coin for inverse options). An account
// measures everything in its margin asset; amounts in other settlement assets
// convert at price(settle) / price(margin asset).
//
// Equity = collateral value (haircut tiers, debts in full) + unrealised P&L of
// futures and perpetuals + the mark value of options (long positive, short
// negative). Requirements: per position by the instrument's model (margin.hpp),
// including its resting orders at their worst case, summed (cross margin).
// Health: margin_ratio = equity / MM; states by configurable multiples of MM.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <unordered_map>
#include <vector>

#include "marginkit/aligned.hpp"
#include "marginkit/flat_book.hpp"
#include "marginkit/instrument_state.hpp"
#include "marginkit/liquidation.hpp"
#include "marginkit/margin.hpp"
#include "marginkit/scenarios.hpp"
#include "marginkit/simd/grid.hpp"

namespace marginkit {

namespace simd {
struct KernelTable;
struct PortfolioBlock;
}

enum class Reason : std::int8_t {
  ok = 0,
  insufficient_margin,
  reduce_only,
  stale_price,
  unknown_account,
  unknown_instrument,
  invalid_quantity,
  invalid_price,
  instrument_expired,
  no_price,
  insufficient_balance,
  not_isolated_instrument,  // an isolated account trades only its own instrument
};
const char* reason_name(Reason r) noexcept;

enum class MarginMode : std::int8_t { cross = 0, portfolio = 1 };

enum class Health : std::int8_t { healthy = 0, warning, reduce_only, liquidation, bankrupt };
const char* health_name(Health h) noexcept;

struct Thresholds {
  // Multiples of MM: equity below warning x MM is "warning", and so on.
  double warning = 1.5;
  double reduce_only = 1.2;
  double liquidation = 1.0;
};

struct AssetSpec {
  std::string name;
  std::vector<HaircutTier> tiers;  // empty: no haircut
  double quantum = 0.0;            // money rounding step in this asset (0: none)
  AssetWeights weights;            // liability weight, IMF size weights (margin.hpp)
  // Spot liquidation: the liquidator's fee on this asset (a deposit is handed
  // over at 1 + fee, a borrow taken over at 1 - fee), in [0, 1).
  double liquidator_fee = 0.0;
};

struct InstrumentSpec {
  std::string name;
  InstrumentKind kind = InstrumentKind::perpetual;
  int underlying = -1;  // asset id
  int settle = -1;      // asset id
  InstrumentTerms terms;
  std::int64_t expiry = 0;  // unix seconds; 0 = none (spot, perpetual)
  int model = -1;           // margin model id
  double taker_fee = 0.0;   // fraction of traded notional
};

struct Position {
  int instrument = -1;
  double size = 0.0;   // signed, contracts
  double entry = 0.0;  // average entry price (harmonic for inverse futures)
  double bids = 0.0;   // resting buy quantity
  double asks = 0.0;   // resting sell quantity
};

// One position's share of its account's figures, in the margin asset.
struct PositionRisk {
  int instrument;
  double size, entry, mark, im, mm, equity;  // equity: unrealised P&L or option value
};

// Net Greeks of an account on one underlying, of the positions' USD value:
// delta in units of the underlying, gamma per unit per USD, vega in USD per 1.00
// of volatility, theta in USD per year. Futures count delta only (linear: size x
// contract; inverse: face / entry); options use Black-76 at the volatility
// implied by their mark.
struct UnderlyingGreeks {
  int underlying;
  double delta, gamma, vega, theta;
};

// Portfolio margin of one underlying in one account (margin asset units).
struct PortfolioGroup {
  int underlying;                      // -1 for a joint (historical) set
  int set;
  int worst;                           // scenario index of the largest weighted loss
  double loss, short_charge, delta_charge, mm, im;
  std::vector<double> pnl;             // weighted P&L per scenario
  std::vector<int> instruments;        // positions in this group
  std::vector<double> contribution;    // each position's weighted P&L at the worst
};

struct AccountSummary {
  double equity = 0.0, im = 0.0, mm = 0.0, available = 0.0;
  double margin_ratio = std::numeric_limits<double>::infinity();
  Health state = Health::healthy;
  bool stale = false;  // some price it used is older than the max age
};

struct OrderCheck {
  bool accepted = false;
  Reason reason = Reason::ok;
  double im_after = 0.0, mm_after = 0.0, equity_after = 0.0, available_after = 0.0;
};

class Engine {
 public:
  // ---- static data ------------------------------------------------------
  int add_asset(const AssetSpec& spec);
  int add_model(MarginModel model);  // finalizes (validates) it; names are unique
  int model_id(const std::string& name) const;
  std::size_t num_models() const noexcept { return models_.size(); }
  int add_instrument(const InstrumentSpec& spec);
  int add_account(const std::string& name, int margin_asset);

  int asset_id(const std::string& name) const;  // -1 if unknown
  int instrument_id(const std::string& name) const;
  int account_id(const std::string& name) const;
  std::size_t num_assets() const noexcept { return assets_.size(); }
  std::size_t num_instruments() const noexcept { return instruments_.size(); }
  std::size_t num_accounts() const noexcept { return accounts_.size(); }
  const AssetSpec& asset(int id) const { return assets_.at(id).spec; }
  const InstrumentSpec& instrument(int id) const { return instruments_.at(id); }
  const MarginModel& model(int id) const { return models_.at(id); }
  const std::string& account_name(int id) const { return accounts_.at(id).name; }
  int account_margin_asset(int id) const { return accounts_.at(id).margin_asset; }

  // ---- market ------------------------------------------------------------
  // Prices must be finite and > 0 (throws std::invalid_argument). An update
  // older than the price it would replace is ignored (returns false).
  bool set_price(int asset, double price, double time);
  bool set_mark(int instrument, double mark, double time);
  // Option marks from the market's forwards and volatilities: the forward of an
  // (underlying, expiry) pair, set directly or taken from the mark of a dated
  // future on that underlying and expiry; an option's implied volatility; and
  // the rate (continuously compounded) for discounting. set_vol prices the
  // option with Black-76 (in coin for inverse options) and sets its mark, timed
  // by the older of the volatility and the forward.
  bool set_forward(int underlying, std::int64_t expiry, double forward, double time);
  bool set_vol(int instrument, double vol, double time);
  void set_rate(double rate);
  double rate() const noexcept { return rate_; }
  double forward(int underlying, std::int64_t expiry) const;  // NaN if unknown
  double price(int asset) const { return assets_.at(asset).price; }
  double mark(int instrument) const { return marks_.at(instrument).value; }
  // The clock moves option times to expiry: risk arrays follow it.
  void set_now(double now) noexcept {
    if (now != now_) ++stamp_;
    now_ = now;
  }
  double now() const noexcept { return now_; }
  void set_max_age(double seconds) noexcept { max_age_ = seconds; }
  double max_age() const noexcept { return max_age_; }
  void set_thresholds(const Thresholds& t);
  const Thresholds& thresholds() const noexcept { return thresholds_; }
  // The venue's open interest in an instrument, in contracts (finite, >= 0):
  // market data for models with open-interest caps (their IMF rises with its
  // notional at the mark).
  void set_open_interest(int instrument, double contracts);
  double open_interest(int instrument) const { return open_interest_.at(instrument); }

  // ---- account operations (throw std::invalid_argument on bad ids/values) ---
  void deposit(int account, int asset, double amount);
  // Refused (insufficient_balance / insufficient_margin) if it would overdraw
  // the asset or leave initial margin uncovered; nothing changes then.
  Reason withdraw(int account, int asset, double amount);
  // A trade of signed qty at price; fee (>= 0, in the settlement asset) or, if
  // negative, the instrument's taker fee.
  void fill(int account, int instrument, double qty, double price, double fee = -1.0);
  // Resting orders: they count toward initial margin at their worst case.
  std::int64_t place_order(int account, int instrument, double qty, double price);
  void cancel_order(std::int64_t order_id);
  // Fills qty (> 0, at most the remainder) of a resting order at price.
  void fill_order(std::int64_t order_id, double qty, double price, double fee = -1.0);
  std::size_t num_orders() const noexcept { return orders_.size(); }

  const std::vector<Position>& positions(int account) const { return accounts_.at(account).positions; }
  // When the account last acted (engine clock): set by deposits, withdrawals,
  // fills and orders, or directly. Drives the liquidation fee ramp.
  void set_last_active(int account, double time);
  double last_active(int account) const { return accounts_.at(account).last_active; }
  double balance(int account, int asset) const;

  // ---- isolated margin -----------------------------------------------------
  // An isolated position is a sub-account ("parent/instrument") that trades one
  // instrument on its own collateral: its losses never reach the parent's pool.
  // Funding moves `amount` of the parent's margin asset, refused (returns -1
  // and changes nothing) if that would uncover the parent's initial margin.
  int open_isolated(int parent, int instrument, double amount, Reason* why = nullptr);
  // Moves margin-asset collateral between a parent and its isolated child
  // (either way); refused if it would uncover the sender's initial margin.
  Reason transfer(int from, int to, double amount);
  int parent_of(int account) const;                // -1 for a cross account
  int isolated_instrument(int account) const;      // -1 for a cross account

  // ---- portfolio margin ------------------------------------------------------
  // Scenario sets apply per underlying; a portfolio-mode account is margined by
  // scenario on every underlying that has one (standard margin elsewhere).
  // Risk arrays (instrument x scenario P&L per contract, settlement currency) are
  // rebuilt lazily once per market state: accounts never reprice.
  int add_scenario_set(const ScenarioSet& set);
  void set_underlying_scenarios(int underlying, int scenario_set);  // -1: none
  void set_mode(int account, MarginMode mode);
  MarginMode mode(int account) const;
  std::size_t num_scenario_sets() const noexcept { return sets_.size(); }
  const ScenarioSet& scenario_set(int id) const { return sets_.at(id); }
  int underlying_scenarios(int underlying) const;
  // Offset between underlyings (0 <= offset <= 1, default 0): in a portfolio
  // account, the summed loss of the grid groups (non-joint worst-loss sets of
  // one scenario count) is reduced by offset x (summed loss - loss of the summed
  // scenario P&L), so the requirement stays between the joint loss (offset 1)
  // and the plain sum (0). IM is reduced by the credit x the smallest IM factor,
  // the credit taken from the least favourable of the resting-order cases.
  void set_portfolio_offset(double offset);
  double portfolio_offset() const noexcept { return offset_; }
  // The account's offset credit (MM, IM), margin asset.
  std::pair<double, double> portfolio_credit(int account);
  // The instrument's row of the risk array (empty if its underlying has no set).
  std::vector<double> risk_row(int instrument);
  std::vector<PortfolioGroup> portfolio(int account);

  // ---- liquidation prices ---------------------------------------------------
  // The prices of `underlying` (everything else fixed) at which equity falls to
  // the liquidation threshold x MM: the nearest below and above today's price,
  // NaN where there is none between 1e-6x and 1e6x (the walk out steps 1 %
  // within a factor of 2 of today's price, 25 % beyond, so a liquidation window
  // narrower than the step there can be stepped over). Futures marks keep their
  // basis ratio; options are repriced with Black-76 at the volatility implied by
  // their mark; collateral in the underlying is revalued. Tiers are exact: the
  // crossing is found on the exact piecewise function, to the last bit. An
  // account already at or below the threshold gets today's price.
  struct LiquidationPrices {
    double below, above;
  };
  LiquidationPrices liquidation_prices(int account, int underlying);
  // The underlying with the largest absolute notional in the account (-1: none).
  int dominant_underlying(int account);
  // Every account at once (threads): its dominant underlying (-1: none) and the
  // liquidation prices along it (NaN without one); arrays of num_accounts().
  void liquidation_prices_all(int* underlying, double* below, double* above);

  // ---- liquidation (cpp/src/liquidation.cpp) -----------------------------------
  void set_liquidity(int instrument, const LiquidityModel& model);
  const LiquidityModel& liquidity(int instrument) const { return liquidity_.at(instrument); }
  void set_liquidation_params(const LiquidationParams& params);
  const LiquidationParams& liquidation_params() const noexcept { return liq_; }
  // The insurance fund per asset; what the market gained against the mark on
  // liquidation fills (per margin asset of the liquidated accounts); losses
  // written off (socialised) when neither the fund nor ADL could cover. With
  // these, total equity at marks + fund + market gains - socialised is
  // conserved by every liquidation.
  void fund_insurance(int asset, double amount);
  double insurance_fund(int asset) const;
  double market_pnl(int asset) const;
  double socialized(int asset) const;
  // The fill price of the whole position at which the account's equity after
  // closing it, and paying the instrument's taker fee on the close, is exactly 0
  // (NaN if there is none, or no position).
  double bankruptcy_price(int account, int instrument);
  // The price at which a liquidation of qty (0: the whole position, closed)
  // would fill now, under the fill policy (NaN without a position).
  double liquidation_fill_price(int account, int instrument, double qty);
  // The penalty rate of a liquidation fill of the position now: (total, the
  // insurance-fund part), under the fee policy and ramp.
  std::pair<double, double> liquidation_fee_rate(int account, int instrument);
  // Spot liquidation (Drift's liability transfer): the account's borrow of
  // `liability` (a negative balance) is taken over by a liquidator for its
  // deposit of `asset`, sized to cure the shortage (target - equity) at the
  // assets' weights and liquidation multipliers, limited by the borrow and by
  // what the deposit pays; the insurance-fund fee (margin_implied policy,
  // capped by max_if_fee) is kept from the transfer. plan_ changes nothing.
  SpotLiquidation plan_spot_liquidation(int account, int liability, int asset);
  // Executes it: the borrow shrinks by the transfer less the fee (to the fund,
  // in the liability asset), the deposit by asset_transfer; the liquidator's
  // gain against the prices is booked to market_pnl.
  SpotLiquidation liquidate_spot(int account, int liability, int asset);
  // An ordered plan that brings the account back to the target at the least
  // cost: cancel resting orders, then reduce (or close) positions, each step
  // chosen for the requirement it releases per unit of expected cost (slippage
  // from the liquidity model + penalty), sized exactly to the target, limited by
  // max_step; never a step that raises the requirement. Nothing is changed.
  LiquidationPlan plan_liquidation(int account);
  // Executes the plan. Penalties go to the insurance fund (never more than the
  // equity left). A step that would leave negative equity is paid by the fund;
  // when the fund cannot, the step is taken by auto-deleveraging: opposite
  // positions, ranked by adl_ranking, close against it at its bankruptcy price;
  // what nobody covers is written off as socialised loss.
  // With `spot`, the steps are followed by spot_cure before settlement.
  LiquidationResult liquidate(int account, bool spot = false);
  // Executes a plan made by plan_liquidation for the account's current state.
  LiquidationResult execute_plan(LiquidationPlan plan, bool spot = false);
  // Spot liquidations of an account below its target, one at a time: the
  // largest borrow first (USD value; ties: lower asset id) that some deposit
  // can pay, with the deposit whose planned transfer takes over the most of it
  // (ties: lower asset id), each sized by plan_spot_liquidation and executed
  // by liquidate_spot, until a transfer sized to cure the shortage (to_cover)
  // restores the account, or nothing more can be transferred; each
  // (liability, asset) pair is used at most once (no tails of rounding-sized
  // or fee-sized transfers). Returns them in order.
  std::vector<SpotLiquidation> spot_cure(int account);
  // Accounts holding the side opposite to `side` (+1 long, -1 short) of the
  // instrument, best ADL candidates first: profitable ones by P&L% x effective
  // leverage (BitMEX), then losing ones by P&L% / leverage; ties by id.
  std::vector<int> adl_ranking(int instrument, int side);
  // Every account below the liquidation threshold, with its plan (threads);
  // an account whose steps cannot restore it but whose borrows and deposits
  // can be transferred says so (needs_spot): cascade does the transfers.
  std::vector<LiquidationPlan> plan_all();
  struct CascadeRound {
    int round;
    int liquidated;
    double volume;  // contracts liquidated on the underlying, in underlying units
    double price;   // the underlying's price after the round's impact
    double bad_debt, fund, adl_volume, socialized;  // USD: bad debt, fund, ADL notional
    int spot_transfers = 0;   // spot liquidations (liability transfers) executed
    double spot_value = 0.0;  // USD: the liabilities they took over, at the prices
  };
  // Shock an underlying by `shock` (fraction), liquidate everything in breach
  // (the plan's steps, then spot_cure, then settlement), move the price by
  // impact x net liquidated units, repeat to a fixed point (spot transfers do
  // not move the price).
  std::vector<CascadeRound> cascade(int underlying, double shock, double impact,
                                    int max_rounds);
  // Moves an underlying's price and the marks that follow it (futures keep
  // their basis ratio, options are repriced at their volatility).
  void move_underlying(int underlying, double price);

  // ---- bulk loading (books of millions of accounts) ---------------------------
  int add_accounts(const std::vector<std::string>& names, int margin_asset);  // first id
  void deposit_many(std::size_t n, const int* accounts, int asset, const double* amounts);
  // Sets positions as loaded state (no cash flows): size and average entry.
  void set_positions(std::size_t n, const int* accounts, const int* instruments,
                     const double* sizes, const double* entries);

  // ---- persistence -----------------------------------------------------------
  // The whole state (static data, market, accounts, orders, settings) as bytes
  // in a versioned binary format, and back. load() throws std::invalid_argument
  // on a wrong magic, an unknown version or a truncated/corrupt payload.
  std::string save() const;
  static Engine load(const std::string& bytes);
  static constexpr std::uint32_t kFormatVersion = 2;  // reads 1 and 2

  // ---- evaluation ---------------------------------------------------------
  AccountSummary summary(int account);
  std::vector<PositionRisk> attribution(int account);
  std::vector<UnderlyingGreeks> net_greeks(int account);
  // Every account at once (threads): into arrays of num_accounts() entries each.
  void evaluate_all(double* equity, double* im, double* mm, double* available,
                    std::int8_t* state);

  // Pre-trade check of a signed qty at price; incremental: it touches only the
  // order's instrument (the account's sums are cached per market state).
  OrderCheck check_order(int account, int instrument, double qty, double price);
  // The largest quantity (>= 0) of a buy (side +1) or sell (-1) at price that
  // check_order accepts; exact across tier boundaries.
  double max_order_size(int account, int instrument, int side, double price);

 private:
  struct Asset {
    AssetSpec spec;
    Quantum quantum;  // spec.quantum's rounding constants
    bool plain = false;  // no haircut, default weights: asset_value = amount x price
    double price = std::numeric_limits<double>::quiet_NaN();
    double time = -std::numeric_limits<double>::infinity();
  };
  struct Mark {
    double value = std::numeric_limits<double>::quiet_NaN();
    double time = -std::numeric_limits<double>::infinity();
  };
  // Cached scenario P&L of one underlying (unweighted, margin asset), as the
  // positions stand and with all resting bids / all resting asks filled.
  struct Group {
    int key = -1;  // the underlying, or -1 - set id for a joint (historical) set
    int set = -1;
    bool used = false;    // refreshed in this pass (groups are reused, not reallocated)
    bool orders = false;  // some position has resting orders: pnl_bids/asks are kept
    std::vector<double> pnl, pnl_bids, pnl_asks;
    const double* bids_pnl() const noexcept { return orders ? pnl_bids.data() : pnl.data(); }
    const double* asks_pnl() const noexcept { return orders ? pnl_asks.data() : pnl.data(); }
    double short_units = 0.0, short_bids = 0.0, short_asks = 0.0;
    double delta_units = 0.0, delta_bids = 0.0, delta_asks = 0.0;
    double mm = 0.0, im = 0.0;
    // Its positions' value (margin asset, in account order) and its place in
    // the order of first appearance (portfolio_equity).
    double equity = 0.0;
    int rank = -1;
  };
  struct Account {
    // Hot fields first (batch passes read them for every account).
    int margin_asset = -1;
    MarginMode mode = MarginMode::cross;
    bool priced = true;   // every price it needs is set
    // Cache, valid while stamp == engine stamp.
    std::uint64_t stamp = 0;
    std::uint64_t groups_stamp = 0;  // groups hold this market state's vectors
    double collateral = 0.0, sum_im = 0.0, sum_mm = 0.0, sum_pos_equity = 0.0;
    double oldest = 0.0;  // oldest price time used
    std::vector<double> balances;  // per asset id
    std::vector<Position> positions;
    std::vector<Group> groups;  // portfolio mode: per underlying with a scenario set
    double credit_mm = 0.0, credit_im = 0.0;  // offset between groups
    double last_active = 0.0;  // engine clock of its last action
    int parent = -1;      // isolated: the cross account that funds it
    int isolated = -1;    // isolated: its one instrument
    std::string name;
  };
  struct Order {
    int account, instrument;
    double qty, price;
  };
  // Per position: IM, MM and equity (value or unrealised P&L).
  struct Contribution {
    double im, mm, equity;
    // In another asset, f of it per unit. x 1 is exact, so a position that
    // settles in the margin asset skips this and keeps its bits.
    Contribution in(double f) const noexcept { return {im * f, mm * f, equity * f}; }
  };
  // What a trade would change (margin asset).
  struct TradeEffect {
    double d_equity = 0.0, gain = 0.0, d_im = 0.0, d_mm = 0.0;
  };
  TradeEffect trade_effect(Account& a, const InstrumentSpec& in, int instrument, double qty,
                           double price, double fee);

  Account& acct(int id);
  const InstrumentSpec& instr(int id) const;
  void check_asset(int id) const;
  double index_of(const InstrumentSpec& in) const noexcept;
  double to_margin(const Account& a, int settle) const noexcept;
  Contribution contribution(const Account& a, const InstrumentSpec& in, double size, double bids,
                            double asks, double entry) const noexcept;
  Contribution contribution_at(const InstrumentSpec& in, double size, double bids, double asks,
                               double entry, double mark, double index,
                               double f) const noexcept;
  // Unrealised P&L (futures) or value (options) of a position, settlement asset.
  static double equity_of(const InstrumentSpec& in, double size, double entry,
                          double mark) noexcept;

  // The account's cached sums for the current market state. refresh() also
  // keeps the portfolio groups' scenario vectors (pre-trade checks, attribution
  // and liquidation read them); refresh_sums() needs the sums only (summaries,
  // batch passes): plain portfolio accounts take refresh_batch(), which keeps no
  // group state, and the rest refresh().
  void refresh(Account& a);
  // The standard-margin sums (IM, MM, position equity, margin asset) of a
  // cross account's positions, and the oldest price time they use.
  struct Sums {
    double im = 0.0, mm = 0.0, eq = 0.0;
  };
  // pos(k) gives the k-th of n positions (an Account's, or the flat book's);
  // oldest (in and out) may be null where it is not wanted (batch passes).
  // The positions on their curve (all, commonly) run through a loop with no
  // call in it and no variable whose address is taken, which keeps its sums
  // in registers; from the first that is not, general_sums takes the rest.
  // Positions are added in their order either way, so the sums keep their bits.
  // The kernels' cross_curve_sums restates the first loop for the flat book's
  // cross accounts (tests/test_flat_book.py holds them equal): change both.
  template <class PositionAt>
  Sums standard_sums(std::size_t n, PositionAt pos, int margin, double* oldest) const noexcept {
    const double margin_price = assets_[margin].price;
    const InstrumentState* const states = istate_.data();
    Sums s;
    double old = oldest ? *oldest : 0.0;
    std::size_t k = 0;
    for (; k < n; ++k) {
      const Position p = pos(k);
      const InstrumentState& st = states[p.instrument];
      if (!on_curve(p, st.curve)) break;
      if (oldest) old = std::min(old, st.time);
      add_contribution(s, st, curve_contribution(p, st), margin, margin_price);
    }
    if (oldest) *oldest = old;
    return k < n ? general_sums(k, n, pos, margin, s, oldest) : s;
  }
  template <class PositionAt>
  __attribute__((noinline)) Sums general_sums(std::size_t k, std::size_t n, PositionAt pos,
                                              int margin, Sums s,
                                              double* oldest) const noexcept {
    const double margin_price = assets_[margin].price;
    for (; k < n; ++k) {
      const Position p = pos(k);
      const InstrumentState& st = istate_[p.instrument];
      if (oldest) *oldest = std::min(*oldest, st.time);
      add_contribution(s, st, standard_contribution(p, st), margin, margin_price);
    }
    return s;
  }
  // The position source of an account's vector (flat_positions: the flat book's).
  static auto positions_of(const Account& a) noexcept {
    return [ps = a.positions.data()](std::size_t k) -> const Position& { return ps[k]; };
  }
  void refresh_sums(Account& a) {
    if (!refresh_batch(a)) refresh(a);
  }
  // What a batch pass computes of an account: collateral and the sums of its
  // positions (margin asset), the oldest price time, and whether all are priced.
  struct Totals {
    double collateral = 0.0, im = 0.0, mm = 0.0, eq = 0.0, oldest = 0.0;
    bool priced = true;
    // Every price the figures use is set (a missing one makes a sum NaN).
    bool all_finite() const noexcept {
      return std::isfinite(collateral) && std::isfinite(im + mm + eq);
    }
  };
  // The sums (im, mm, eq, oldest: it comes in set) of a plain portfolio
  // account's positions (grid sets, at most 4 groups and 64 positions, no
  // resting orders; the caller checks there is no offset), without group
  // state; false for any other account.
  bool portfolio_totals(const Account& a, Totals& t) const;
  // refresh_sums() for a plain portfolio account (portfolio_totals into its
  // cache); false, with nothing changed, for any other account.
  bool refresh_batch(Account& a);
  double collateral_of(const Account& a, double* oldest) const noexcept;
  // One balance's share of collateral_of (value before the division by the
  // margin asset's price); every path adds balances in asset order with it.
  void add_balance(int asset, double amount, double& value, double& oldest) const noexcept {
    value += asset_value(asset, amount, assets_[asset].price);
    oldest = std::min(oldest, assets_[asset].time);
  }
  AccountSummary summarize(const Account& a) const noexcept;
  // What summarize() rounds and classifies (NaN figures for an unpriced account).
  struct Figures {
    double equity, im, mm;
    Health state;
  };
  Figures figures(const Account& a) const noexcept;
  // Inline, so that a batch pass keeps its totals in registers. The kernels'
  // block_figures restates it (and health) for a vector of accounts: change both.
  Figures figures(int margin, const Totals& t, bool has_risk) const noexcept {
    const Quantum& q = assets_[margin].quantum;
    Figures f;
    const MoneyFigures r = round_figures(t.collateral + t.eq, t.im, t.mm, q);
    f.equity = r.equity;
    f.im = r.im;
    f.mm = r.mm;
    f.state = health(f.equity, f.mm, has_risk);
    if (!t.priced) f.equity = f.im = f.mm = std::numeric_limits<double>::quiet_NaN();
    return f;
  }
  // Without branches (a book's states are data, and mispredicted): with
  // warning >= reduce_only >= liquidation > 0 and mm > 0, the number of
  // thresholds x MM that equity is below is the state's level.
  Health health(double equity, double mm, bool has_risk) const noexcept {
    const bool bankrupt = equity < 0.0 || (has_risk && equity == 0.0 && mm > 0.0);
    const int below = (equity < thresholds_.warning * mm ? 1 : 0) +
                      (equity < thresholds_.reduce_only * mm ? 1 : 0) +
                      (equity < thresholds_.liquidation * mm ? 1 : 0);
    const int level = mm > 0.0 ? below : 0;
    return static_cast<Health>(bankrupt ? static_cast<int>(Health::bankrupt) : level);
  }
  Position& slot(Account& a, int instrument);
  void drop_empty(Account& a);
  // An account changed: its cached sums and its flat-book copy are stale.
  void touch(Account& a) noexcept {
    a.stamp = 0;
    flat_stale(a);
  }
  double fill_cash(Account& a, const InstrumentSpec& in, Position& p, double qty, double price);
  const Quantum& quantum(const Account& a) const noexcept {
    return assets_[a.margin_asset].quantum;
  }

  std::vector<Asset> assets_;
  std::vector<MarginModel> models_;
  std::vector<InstrumentSpec> instruments_;
  std::vector<Mark> marks_;
  std::vector<double> vols_;  // set_vol's volatility per instrument (NaN: implied from mark)
  std::vector<LiquidityModel> liquidity_;
  LiquidationParams liq_;
  std::vector<double> fund_, market_pnl_, socialized_;  // per asset
  double exec_price(int instrument, double qty) const noexcept;
  double liquidation_target(const Account& a) const noexcept;
  double liquidation_requirement(const Account& a) const noexcept;
  // Applies a trade to an account, the fee (settlement asset) to the fund if
  // to_fund; returns the cash the trade credited.
  double apply_trade(Account& a, const InstrumentSpec& in, int instrument, double qty,
                     double price, double fee, bool to_fund);
  double liquidation_fee(const InstrumentSpec& in, double x, double price,
                         double rate) const noexcept;
  // Penalty rates (total, insurance-fund part) and fill price of a liquidation
  // of `instrument` from the account's state now (a step's start).
  std::pair<double, double> penalty_rates(Account& a, int instrument);
  double fill_price(Account& a, int instrument, double qty);
  // Value of `amount` of an asset at `price` with its haircuts and weights.
  double asset_value(int asset, double amount, double price) const noexcept {
    const Asset& x = assets_[asset];
    if (x.plain) return amount * price;  // weighted_value's result, to the bit
    return weighted_value(x.spec.tiers, x.spec.weights, amount, price);
  }
  std::vector<double> open_interest_;  // per instrument, contracts
  double liquidation_fill(Account& a, int instrument, double qty, bool to_fund);
  // The price at which trading qty (with the instrument's taker fee if
  // with_fee) leaves equity exactly 0 (NaN if none).
  double zero_equity_price(Account& a, const InstrumentSpec& in, int instrument, double qty,
                           bool with_fee);
  // The instrument's taker fee on a trade, in its settlement asset.
  static double taker_fee(const InstrumentSpec& in, double qty, double price) noexcept;
  // An option's volatility: set with set_vol, else implied by its mark on its
  // forward at the engine's rate (0 if none fits).
  double implied_vol_of(int instrument) const;
  double years_to_expiry(const InstrumentSpec& in) const noexcept {
    return in.expiry > 0 ? std::max(0.0, (static_cast<double>(in.expiry) - now_) / (365.0 * 86400.0))
                         : 0.0;
  }
  // The forward an option is priced on: forward_for, else the index.
  double option_forward(const InstrumentSpec& in) const noexcept {
    const Mark f = forward_for(in);
    return std::isfinite(f.value) ? f.value : index_of(in);
  }
  std::vector<ScenarioSet> sets_;
  // Per set: its scenarios' weights, padded with zeros to whole vectors (the
  // batch worst-loss kernel reads them as rows).
  std::vector<std::vector<double>> set_weights_;
  std::vector<int> underlying_set_;       // per asset: scenario set id or -1
  CacheAlignedVector<double> risk_;       // risk array rows (64-byte lines), one stride apart
  std::vector<std::size_t> risk_offset_;  // per instrument: i x risk_stride_; npos: no row
  std::size_t risk_stride_ = 0;
  std::vector<double> risk_delta_;        // per instrument: delta per contract, units
  std::uint64_t risk_stamp_ = 0;
  // Batch buffers of the risk-array build, kept to avoid reallocating per market update.
  struct RiskScratch {
    std::vector<int> ids;  // the options, in instrument order
    std::vector<std::int8_t> cp, inverse;
    std::vector<double> fwd, strike, tau, vol, vol_down, vol_up, cs, mark, price, delta;
    std::vector<std::size_t> offset;
    std::vector<int> grid_of;  // per option: its underlying (index of its grid)
    // Per underlying with a scenario set: 1 + move, ln(1 + move), vol direction.
    std::vector<std::vector<double>> mult, log_mult, dir;
    std::vector<simd::ScenarioGrid> grids;
  };
  RiskScratch risk_scratch_;
  void ensure_risk();
  bool in_portfolio(const Account& a, const InstrumentSpec& in) const noexcept {
    return a.mode == MarginMode::portfolio && in.kind != InstrumentKind::spot &&
           underlying_set_[in.underlying] >= 0;
  }
  // MM and IM of one underlying from scenario P&L, short units and delta units.
  Requirement group_requirement(int set, int underlying, const double* pnl, double short_units,
                                double delta_units, double margin_price) const;
  // The same from the set's loss of the group's P&L.
  Requirement loss_requirement(int set, int underlying, double loss, double short_units,
                               double delta_units, double margin_price) const {
    return group_terms(set, underlying).requirement(loss, short_units, delta_units, margin_price);
  }
  GroupTerms group_terms(int set, int underlying) const noexcept;
  // Per underlying (flat_book.hpp's BatchGroup), rebuilt by ensure_state().
  std::vector<BatchGroup> batch_groups_;
  int group_key(const InstrumentSpec& in) const noexcept {
    const int set = underlying_set_[in.underlying];
    return sets_[set].joint() ? -1 - set : in.underlying;
  }
  // Short option units of a position of q contracts: max(0, -q) x short_cs,
  // to the bit ((|q| - q) / 2 is exact), without a branch on q's sign (a random
  // book mispredicts it). The kernels' portfolio_block computes it alike.
  static double short_units(double q, double short_cs) noexcept {
    return (std::fabs(q) - q) * 0.5 * short_cs;
  }
  // A position's value (as equity_of(), to the bit) from its instrument's state.
  static double state_value(const InstrumentState& st, const Position& p) noexcept {
    if (p.size == 0.0) return 0.0;  // an order-only position, priced or not
    const double h = st.ek < 0.0 ? 1.0 / p.entry : p.entry;
    return p.size * st.cs * (st.em - st.ek * h);
  }
  // contribution_at() for a position of a cross (standard-margin) refresh, in
  // its settlement asset (out of line: the uncommon case).
  Contribution general_contribution(const Position& p) const noexcept;
  // A position whose contribution its instrument's curve c gives (the common one).
  static bool on_curve(const Position& p, const InstrumentCurve& c) noexcept {
    return p.size != 0.0 && !(p.bids > 0.0) && !(p.asks > 0.0) && !c.general;
  }
  static Contribution curve_contribution(const Position& p, const InstrumentState& st) noexcept {
    const Requirement r = eval_curve16(st.curve.curve, p.size);
    return {r.im, r.mm, state_value(st, p)};
  }
  // contribution_at() of a position in its settlement asset (st: its
  // instrument's state): from the curve if on_curve, else by
  // general_contribution. Callers convert it with Contribution::in.
  Contribution standard_contribution(const Position& p, const InstrumentState& st) const noexcept {
    return on_curve(p, st.curve) ? curve_contribution(p, st) : general_contribution(p);
  }
  // Adds a position's contribution c (settlement asset) to s in the margin asset.
  void add_contribution(Sums& s, const InstrumentState& st, Contribution c, int margin,
                        double margin_price) const noexcept {
    if (st.settle != margin) c = c.in(assets_[st.settle].price / margin_price);
    s.im += c.im;
    s.mm += c.mm;
    s.eq += c.equity;
  }
  std::vector<InstrumentState> istate_;
  std::vector<double> asset_price_;  // each asset's price, by id (the kernels read it)
  std::vector<Quantum> asset_quantum_;  // and its rounding quantum
  std::vector<CurvePiece> curve_pieces_;  // per instrument: an option's pieces (2)
  // The stamp of the tables above. They point into this engine (risk rows,
  // models' curve tables, curve_pieces_), so a copy of the engine does not
  // inherit it and rebuilds them on first use.
  struct OwnStamp {
    std::uint64_t value = 0;
    OwnStamp() = default;
    OwnStamp(const OwnStamp&) noexcept {}
    OwnStamp& operator=(const OwnStamp&) noexcept {
      value = 0;
      return *this;
    }
  };
  OwnStamp istate_stamp_;
  void ensure_state();
  // Per-thread buffers of portfolio refreshes.
  struct PortfolioScratch {
    // Per scenario-margined position: its risk row, weights (size, size + bids,
    // size - asks, in the margin asset) and group index.
    std::vector<const double*> rows;
    std::vector<double> w_now, w_bids, w_asks;
    std::vector<int> group;
    std::size_t count = 0;  // entries in use (the vectors only grow)
    // One group's share of the above when an account has several groups.
    std::vector<const double*> g_rows;
    std::vector<double> g_now, g_bids, g_asks;
    void reset(std::size_t positions) {
      count = 0;
      if (rows.size() < positions) {
        rows.resize(positions);
        w_now.resize(positions);
        w_bids.resize(positions);
        w_asks.resize(positions);
        group.resize(positions);
      }
    }
  };
  static PortfolioScratch& portfolio_scratch();
  // The group of `groups` for a scenario-margined instrument (reset on its
  // first position of a pass; unused groups are reused before new ones).
  Group& group_for(std::vector<Group>& groups, const InstrumentState& st);
  // A portfolio account's scenario-margined positions' value: each group's
  // (its positions in account order), the groups' added in the order they
  // first appear among the positions (ranks of them). Every path sums it so
  // (the batch passes group by group, as the flat book lays them out): the
  // same bits.
  static double portfolio_equity(const std::vector<Group>& groups, int ranks) noexcept {
    double eq = 0.0;
    for (int r = 0; r < ranks; ++r) {
      for (const Group& g : groups) eq += g.used && g.rank == r ? g.equity : 0.0;
    }
    return eq;
  }
  // A position's share of its group: units, and its risk row and weights for
  // the group's scenario vectors (f: settlement to margin asset).
  static void add_to_group(std::vector<Group>& groups, PortfolioScratch& sc, Group& g,
                           const InstrumentState& st, const Position& p, double f);
  // Each used group's scenario vectors (weighted sums of risk rows), its
  // requirement, and the offset credit; adds them to im and mm. Unused groups
  // are dropped.
  void finish_portfolio(Account& a, std::vector<Group>& groups, PortfolioScratch& sc,
                        double& im, double& mm);
  double offset_ = 0.0;
  // The offset credits (MM, IM) of an account's groups, with one group's three
  // vectors replaced by `now`, `bids`, `asks` (changed = nullptr: as cached).
  std::pair<double, double> offset_credit(const std::vector<Group>& groups, int changed_key,
                                          const double* now,
                                          const double* bids, const double* asks) const;
  // Change of the account's IM and MM if `qty` of a portfolio instrument traded:
  // its group's scenario vectors plus qty x row, no revaluation.
  // max_order_size in portfolio mode, solved in closed form: NaN if the case
  // is not covered (the caller then uses the general search).
  double portfolio_max_size(Account& a, const InstrumentSpec& in, int instrument, int side,
                            double price, double q, double bids, double asks);
  void portfolio_delta(const Account& a, const InstrumentSpec& in, int instrument, double q,
                       double bids, double asks, double qty, double& d_im,
                       double& d_mm) const;
  std::unordered_map<std::int64_t, Mark> forwards_;  // key: underlying x expiry
  double rate_ = 0.0;
  std::int64_t forward_key(int underlying, std::int64_t expiry) const noexcept {
    return expiry * 4096 + underlying;
  }
  // The forward for an option: set directly, else a dated future's mark.
  Mark forward_for(const InstrumentSpec& option) const noexcept;
  std::vector<Account> accounts_;

  // ---- the flat book: what batch passes read of the accounts ----
  // A compact copy of every cross and plain portfolio account's positions as
  // columns (instrument, size, entry) and of its nonzero balances as (asset,
  // amount), each account's in its own order, so a batch pass streams them and
  // computes what refresh_sums() computes, to the bit (cross accounts by the
  // same template on another position source; portfolio accounts, laid out by
  // group, by the same arithmetic in the same order). Resting orders are
  // columns too, read only for the cross accounts that have some; portfolio
  // accounts with orders are not copied (kind other: the pass refreshes them
  // from the account). touch()
  // marks an account stale; sync_flat(), called serially before a batch pass
  // goes parallel, repacks stale accounts into their slots, or at the end when
  // they outgrew them, and rebuilds the whole book when many are stale, a
  // third of it is garbage, or an underlying's scenario set changed.
  // The records, FlatKind and the shape bits are in flat_book.hpp (the kernels read them).
  std::vector<FlatAccount> flat_;
  std::vector<std::int32_t> flat_inst_, flat_asset_;
  // Portfolio accounts' positions are copied by group (groups in order of
  // first appearance, each group's positions in account order, runs[g] of
  // them), so the pass sums a group as it reads it (equity too:
  // portfolio_equity sums it group by group).
  std::uint64_t layout_epoch_ = 0;  // bumped when an underlying's scenario set changes
  std::uint64_t flat_epoch_ = 0;    // the layout_epoch_ the flat book was built for
  std::vector<double> flat_size_, flat_entry_, flat_amount_;
  std::vector<double> flat_bids_, flat_asks_;  // resting orders (read for cross_orders only)
  std::vector<std::uint32_t> flat_dirty_;  // stale accounts (each once) since the last sync
  std::size_t flat_garbage_ = 0;           // abandoned position slots
  bool flat_portfolio_ = false;  // some account was packed as portfolio since the last rebuild
  void flat_stale(const Account& a) noexcept {
    // Copies of accounts (liquidation plans work on them) are not in the book.
    const auto p = reinterpret_cast<std::uintptr_t>(&a);
    const auto b = reinterpret_cast<std::uintptr_t>(accounts_.data());
    if (p < b) return;
    const std::size_t i = (p - b) / sizeof(Account);
    // Accounts added since the last sync are beyond flat_ and picked up there.
    if (i >= flat_.size() || flat_[i].kind == FlatKind::stale) return;
    flat_[i].kind = FlatKind::stale;
    flat_dirty_.push_back(static_cast<std::uint32_t>(i));  // capacity reserved by sync_flat
  }
  auto flat_positions(const FlatAccount& fa) const noexcept {
    return [inst = flat_inst_.data() + fa.pos, size = flat_size_.data() + fa.pos,
            entry = flat_entry_.data() + fa.pos](std::size_t k) {
      Position p;
      p.instrument = inst[k];
      p.size = size[k];
      p.entry = entry[k];
      return p;
    };
  }
  auto flat_positions_orders(const FlatAccount& fa) const noexcept {
    return [at = flat_positions(fa), bids = flat_bids_.data() + fa.pos,
            asks = flat_asks_.data() + fa.pos](std::size_t k) {
      Position p = at(k);
      p.bids = bids[k];
      p.asks = asks[k];
      return p;
    };
  }
  void sync_flat();
  void classify_flat(std::size_t i);  // kind, margin asset and counts of account i
  void fill_flat(std::size_t i);      // its copy, into its slots
  void size_flat(std::size_t positions, std::size_t balances);
  void pack_flat(std::size_t i);      // classify and fill, in its slots or new ones
  // An account's totals from the flat book (all but the oldest price time: a
  // batch pass reports no staleness); false for kind other (and for a
  // portfolio account the batch path does not cover).
  bool flat_totals(const FlatAccount& fa, Totals& t) const;
  // collateral_of() of a flat account; oldest as there (null: not wanted).
  double flat_collateral(const FlatAccount& fa, double* oldest) const noexcept {
    double value = 0.0, old = oldest ? *oldest : 0.0;
    for (std::size_t k = fa.bal, e = fa.bal + fa.nbal; k < e; ++k) {
      add_balance(flat_asset_[k], flat_amount_[k], value, old);
    }
    if (oldest) *oldest = old;
    return value / assets_[fa.margin].price;
  }
  // Account i's figures in a batch pass (after sync_flat): from the flat book,
  // else refreshed from the account (thread-safe across distinct accounts).
  Figures account_figures(std::size_t i) {
    Totals t;
    return flat_totals(flat_[i], t) ? figures(flat_[i].margin, t, flat_[i].npos > 0)
                                    : refreshed_figures(i);
  }
  Figures refreshed_figures(std::size_t i) {
    refresh_sums(accounts_[i]);
    return figures(accounts_[i]);
  }
  // Adds the requirement of one group of a batch path (its positions' rows and
  // weights) to sum; false if its set is longer than the batch paths cover.
  bool add_group(const BatchGroup& g, const simd::KernelTable& k, std::size_t count,
                 const double* const* rows, const double* w, double short_units,
                 double delta_units, double margin_price, Requirement& sum) const;
  // portfolio_totals() of a flat portfolio account, to the bit, with its
  // groups laid out at pack time (no search for a position's group); all but
  // the oldest price time (batch figures have no stale flag).
  bool flat_portfolio_totals(const FlatAccount& fa, Totals& t) const;
  template <std::uint8_t kShape>
  bool flat_portfolio_sums(const FlatAccount& fa, Totals& t) const;
  // The kernels' portfolio_block view of n (<= 64) flat records from accounts.
  simd::PortfolioBlock portfolio_block(const FlatAccount* accounts, std::size_t n) const;
  // The groups of a portfolio account's positions (pack time): each position's
  // slot in group order; false if the flat pass does not cover them.
  bool flat_groups(const Account& a, FlatAccount& fa, std::uint8_t* slot) const;

  std::unordered_map<std::string, int> asset_ids_, instrument_ids_, account_ids_, model_ids_;
  std::unordered_map<std::int64_t, Order> orders_;
  std::int64_t next_order_ = 1;
  std::uint64_t stamp_ = 1;  // bumped by every price update
  double now_ = 0.0;
  double max_age_ = std::numeric_limits<double>::infinity();
  Thresholds thresholds_;
};

}  // namespace marginkit
