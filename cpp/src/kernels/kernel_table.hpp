// The table of SIMD kernels that one instruction-set level provides.
// Internal to the core: callers use the functions in pricing.hpp and friends.
#pragma once

#include <cstddef>
#include <cstdint>

#include "marginkit/flat_book.hpp"
#include "marginkit/instrument_state.hpp"
#include "marginkit/pricing.hpp"
#include "marginkit/simd/grid.hpp"
#include "marginkit/simd/isa.hpp"

namespace marginkit::simd {

// Risk-array rows of options: option k's row (its grid's n entries at risk +
// offset[k]) is contract_size x (Black-76 value in scenario s - mark), the
// forward moved to forward x mult[s] (log_mult[s] = ln mult[s]), the
// volatility vol_down / vol / vol_up as dir[s] is -1 / 0 / +1; inverse options
// in coin at the shocked forward. grids[grid[k]] is option k's scenario grid.
// The kernel writes the whole padded row (n rounded up to a multiple of 8),
// the padding as zeros.
struct RiskGridInputs {
  const ScenarioGrid* grids = nullptr;
  const int* grid = nullptr;
  const std::int8_t* cp = nullptr;
  const std::int8_t* inverse = nullptr;
  const double *forward = nullptr, *strike = nullptr, *tau = nullptr;
  const double *vol_down = nullptr, *vol = nullptr, *vol_up = nullptr;
  const double *contract_size = nullptr, *mark = nullptr;
  const std::size_t* offset = nullptr;
  double rate = 0.0;
  double* risk = nullptr;
};

// A block of flat-book accounts (at most 64), for portfolio_block: their
// records, the book's position columns (instrument ids, signed sizes; a
// portfolio account's positions laid out by group, runs[g] in group g, each
// group's in account order), the instruments' states, the risk array
// (instrument i's row, its state's row, at risk + i x stride), the groups'
// terms by group key, and each asset's price, by id.
inline constexpr int kOptionGroupVectors = 8;
struct PortfolioBlock {
  const FlatAccount* accounts = nullptr;
  std::size_t n = 0;
  const std::int32_t* inst = nullptr;
  const double* size = nullptr;
  const InstrumentState* state = nullptr;  // per instrument id
  const double* risk = nullptr;
  std::size_t stride = 0;
  const BatchGroup* groups = nullptr;  // per group key
  const double* asset_price = nullptr;
};

// A block's figures (Engine::figures, to the bit) from its accounts' totals:
// collateral, IM, MM and position equity of account k at [k], its margin
// asset's id and whether it has positions (1.0, else 0.0) (arrays of at least
// n rounded up to the vector width, any asset id past n); the outputs at the
// block's first account.
struct FigureBlock {
  std::size_t n = 0;
  const double *collateral = nullptr, *im = nullptr, *mm = nullptr, *eq = nullptr;
  const std::int32_t* margin = nullptr;
  const double* has_risk = nullptr;
  const Quantum* quantum = nullptr;  // by asset id
  double warning = 0.0, reduce_only = 0.0, liquidation = 0.0;  // Engine's thresholds
  double *equity_out = nullptr, *im_out = nullptr, *mm_out = nullptr, *available_out = nullptr;
  std::int8_t* state_out = nullptr;
};

// A cross account's positions in the flat book (no resting orders), for
// cross_curve_sums; asset_price: each asset's price, by id.
struct CrossAccount {
  const InstrumentState* state = nullptr;  // per instrument id
  const double* asset_price = nullptr;
  const std::int32_t* inst = nullptr;
  const double* size = nullptr;
  const double* entry = nullptr;
  std::size_t n = 0;
  int margin = 0;
};
struct CrossSums {
  double im, mm, eq;  // no initialisers: the kernel writes all three
};

struct KernelTable {
  Isa isa;
  int width;  // doubles per vector
  // Both check their inputs as they go: black76 returns false, implied_vol
  // SIZE_MAX, if any element was invalid (pricing.cpp then finds which).
  // stream: write the outputs with non-temporal stores (batches larger than
  // the caches; the call ends with a store fence).
  bool (*black76)(const Black76Inputs&, const Black76Outputs&, Settlement, std::size_t begin,
                  std::size_t end, bool stream);
  std::size_t (*implied_vol)(const ImpliedVolInputs&, double* out, Settlement, std::size_t begin,
                             std::size_t end);
  void (*risk_grid)(const RiskGridInputs&, std::size_t begin, std::size_t end);
  // out[s] = sum_j w[j] rows[j][s] for s < len (a multiple of 8; rows padded to
  // it), added in the order of j.
  void (*weighted_rows)(std::size_t len, std::size_t count, const double* const* rows,
                        const double* w, double* out);
  // min(0, min_s weights[s] x out[s]) of the out weighted_rows would give (the
  // weights padded with zeros to len): ScenarioSet::loss of it, negated, to the
  // bit, without storing out.
  double (*weighted_worst)(std::size_t len, std::size_t count, const double* const* rows,
                           const double* w, const double* weights);
  // Engine::flat_portfolio_sums, to the bit, for the block's portfolio accounts
  // whose positions are all options settled in the margin asset (both shape
  // bits) and whose groups are all measured by their worst loss on grids of
  // one padded length of at most kOptionGroupVectors vectors: their totals
  // into im[k], mm[k] and eq[k]; returns the mask of the accounts covered (bit
  // k: account k). Each group's scenario sums are held in registers across its
  // positions.
  std::uint64_t (*portfolio_block)(const PortfolioBlock& b, double* im, double* mm, double* eq);
  // Each account's rounded figures, health state and available margin, as
  // Engine::figures gives them (NaN figures where a total is not finite), a
  // vector of accounts at a time.
  void (*block_figures)(const FigureBlock& b);
  // Engine::standard_sums' loop over a cross account's positions, from the
  // first while they are on their curves (nonzero size, a curve that is not
  // general), to the bit: their sums into s; returns how many it took.
  std::size_t (*cross_curve_sums)(const CrossAccount& a, CrossSums& s);
};

// One per compiled level; defined in kernels_<isa>.cpp.
const KernelTable& kernels_baseline();
#if defined(MARGINKIT_HAVE_X86_KERNELS)
const KernelTable& kernels_avx2();
const KernelTable& kernels_avx512();
#endif

// The table of the active level (isa_active()).
const KernelTable& active_kernels() noexcept;

}  // namespace marginkit::simd
