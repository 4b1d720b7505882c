// What the engine's passes read of an instrument, gathered once per market
// state (Engine::ensure_state). Plain data: the SIMD kernels read it too
// (kernels/kernel_table.hpp), so it has no member functions, and the kernels
// use none of margin.hpp's.
#pragma once

#include "marginkit/margin.hpp"

namespace marginkit {

// The requirement curve at today's prices; general: the model needs more
// than eval_curve16 (an open-interest IMF in force, values at entry, or more
// than 16 brackets).
struct alignas(64) InstrumentCurve {
  RequirementCurve curve;
  bool general;
};

struct alignas(64) InstrumentState {  // two cache lines: the first, then the curve
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
  // Standard margin's curve, in the same entry as the rest: a cross pass
  // reads both from one base and offset, which leaves its loop a register.
  InstrumentCurve curve;
};

}  // namespace marginkit
