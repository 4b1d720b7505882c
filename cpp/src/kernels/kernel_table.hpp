// The table of SIMD kernels that one instruction-set level provides.
// Internal to the core: callers use the functions in pricing.hpp and friends.
#pragma once

#include <cstddef>
#include <cstdint>

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

// A flat-book portfolio account whose positions are all options settled in
// its margin asset (Engine::flat_portfolio_sums), its scenario groups all of
// one padded length len (at most kOptionGroupVectors vectors) and measured by
// their worst loss: its positions (instrument ids, signed sizes, each one's
// index in the account), laid out by group (runs[g] positions in group g, whose
// set's weights are weights[g]), and their instruments' states.
inline constexpr int kOptionGroupVectors = 8;
struct OptionAccount {
  const InstrumentState* state = nullptr;  // per instrument id
  const std::int32_t* inst = nullptr;
  const double* size = nullptr;
  const std::uint8_t* index = nullptr;
  const std::uint8_t* runs = nullptr;
  const double* const* weights = nullptr;
  std::size_t ngroups = 0, len = 0;
};
// What option_account gives of each group, each sum in position order as the
// engine forms it: the worst weighted loss (weighted_worst of the rows
// weighted by the sizes), short units max(0, -q) short_cs (as (|q| - q) 0.5
// short_cs) and delta units q delta.
struct OptionGroupSums {
  double worst, shorts, delta;  // no initialisers: the kernel writes every group's
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
  // Each group's sums (sums[g]) and each position's value q cs em at
  // value[index], in one pass over the positions, a group's scenario sums held
  // in registers: the same bits as the engine's loop and weighted_worst.
  void (*option_account)(const OptionAccount& a, OptionGroupSums* sums, double* value);
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
