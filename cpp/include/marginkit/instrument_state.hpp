// What the engine's passes read of an instrument, gathered once per market
// state (Engine::ensure_state). Plain data: the SIMD kernels read it too
// (kernels/kernel_table.hpp), so it has no member functions.
#pragma once

namespace marginkit {

struct alignas(64) InstrumentState {  // one cache line
  double time;       // the oldest of its mark and its assets' prices
  double delta;      // delta units per contract (risk arrays)
  double cs;         // contract size
  double short_cs;   // options: contract size (short option units), else 0
  // Position value = size cs (em - ek h), h = entry, or 1 / entry for inverse
  // futures (ek = -1): equity_of() without a branch on the kind. Options:
  // em = mark, ek = 0.
  double em, ek;
  const double* row;  // risk-array row; nullptr: no scenario set applies
  int settle, group;  // settlement asset; scenario group key
};

}  // namespace marginkit
