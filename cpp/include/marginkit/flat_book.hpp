// The flat book's records and the scenario groups' terms: plain data that the
// engine builds and that its batch passes and the SIMD kernels both read
// (kernels/kernel_table.hpp). The kernels call none of the member functions
// here: inline code compiled for another instruction set must not be shared.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "marginkit/margin.hpp"

namespace marginkit {

// The most positions and scenario groups a portfolio account's batch path covers.
inline constexpr std::size_t kBatchPositions = 64, kBatchGroups = 4;

// One account of the flat book (Engine: "the flat book").
enum class FlatKind : std::uint8_t { stale = 0, other, cross, cross_orders, portfolio };
struct FlatAccount {
  std::uint32_t pos = 0, npos = 0, pcap = 0;  // positions: first slot, count, capacity
  std::uint32_t bal = 0;
  std::uint16_t nbal = 0, bcap = 0;  // nonzero balances: first slot, count, capacity
  std::int32_t margin = 0;
  FlatKind kind = FlatKind::stale;
  // Portfolio: scenario groups in order of first appearance, positions each.
  std::uint8_t ngroups = 0;
  std::uint8_t runs[kBatchGroups] = {0, 0, 0, 0};
  std::uint8_t shape = 0;  // portfolio: kMarginSettled | kOptionsOnly, if they hold
};
// Portfolio accounts whose positions all settle in the margin asset (f = 1)
// or are all options of nonzero size (value = size cs mark) take a pass
// specialised for them: the same results, to the bit, with less work.
inline constexpr std::uint8_t kMarginSettled = 1, kOptionsOnly = 2;

// What a group's requirement takes of its set and its underlying's price
// (every engine path computes a group's requirement with requirement(); the
// kernels' portfolio_block restates it, operation for operation).
struct GroupTerms {
  double price = 0.0;  // the underlying's, in USD
  double short_charge = 0.0, delta_charge = 0.0, im_factor = 1.0;
  bool joint = false;  // historical sets: no per-underlying charges
  Requirement requirement(double loss, double short_units, double delta_units,
                          double margin_price) const noexcept {
    double mm = loss;
    if (!joint) {
      const double usd = price / margin_price;  // one unit, margin asset
      mm += short_charge * usd * short_units + delta_charge * usd * std::fabs(delta_units);
    }
    return {mm * im_factor, mm};
  }
};

// Per underlying with a grid set, what the flat portfolio pass needs of its
// group (Engine::ensure_state() builds them; len 0: no grid set).
struct BatchGroup {
  GroupTerms terms;
  const double* weights = nullptr;  // the set's, padded to len
  std::size_t len = 0;              // padded scenario count
  int set = -1;
  bool worst = false;  // the worst-loss measure (else the set's loss of the P&L vector)
};

}  // namespace marginkit
