// Black-76 pricing on forwards: price and Greeks, linear and inverse, and implied
// volatility. Plain C++; vectorised kernels are chosen at run time (simd/isa.hpp)
// and large batches run on the thread pool (parallel.hpp).
//
// Conventions (all inputs float64, struct of arrays):
//   w = +1 call, -1 put; F forward; K strike; T years to expiry (ACT/365);
//   s volatility (1.00 = 100% a year); r continuously compounded rate; DF = exp(-rT)
//   d1 = (ln(F/K) + s^2 T / 2) / (s sqrt T), d2 = d1 - s sqrt T
//   price = DF w (F N(w d1) - K N(w d2))
//   delta = dV/dF, gamma = d2V/dF2, vega = dV/ds (per 1.00 of vol), theta = -dV/dT (per year)
// Inverse (coin-settled): the value is V / F in coin, and each Greek is the
// derivative of that coin value (delta_c = dVc/dF = (delta - Vc)/F, and so on).
// Limits: T = 0 or s = 0 gives the (discounted) intrinsic value with delta
// DF w 1{w(F-K) > 0} (DF w / 2 at F == K), gamma 0 and theta r V; vega tends to
// DF F sqrt(T) / sqrt(2 pi) at F == K and 0 elsewhere. The price is clamped to
// the no-arbitrage bounds [DF max(w(F-K), 0), DF F (call) or DF K (put)].
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

namespace marginkit {

// A read-only input column: n values, or one value broadcast to all n.
// Plain data (no member functions) so kernel translation units can use it.
template <class T>
struct Col {
  const T* data = nullptr;
  bool broadcast = false;
};
using Column = Col<double>;

enum class Settlement : int { linear = 0, inverse = 1 };

// Output selection bits.
enum Output : unsigned {
  kPrice = 1u, kDelta = 2u, kGamma = 4u, kVega = 8u, kTheta = 16u,
  kGreeks = kDelta | kGamma | kVega | kTheta,
};

struct Black76Inputs {
  std::size_t n = 0;
  Col<std::int8_t> cp;  // +1 call, -1 put
  Column forward, strike, expiry, vol, rate;
};

// Null pointers are outputs not requested.
struct Black76Outputs {
  double* price = nullptr;
  double* delta = nullptr;
  double* gamma = nullptr;
  double* vega = nullptr;
  double* theta = nullptr;
};

struct ImpliedVolInputs {
  std::size_t n = 0;
  Col<std::int8_t> cp;
  Column price, forward, strike, expiry, rate;
};

// The first invalid element found: which argument, where, and why.
struct InvalidInput {
  const char* argument;
  std::size_t index;
  const char* reason;
};

// Checks every element (finite; F, K > 0; T, vol >= 0; cp in {-1, +1}; price >= 0)
// and returns the first invalid one.
std::optional<InvalidInput> validate(const Black76Inputs& in) noexcept;
std::optional<InvalidInput> validate(const ImpliedVolInputs& in) noexcept;

// Prices in[0, n) into the requested outputs, splitting across the thread pool
// when n is large. The inputs are checked on the fly (no separate pass); if any
// is invalid, the first one is returned and the outputs are unspecified.
std::optional<InvalidInput> black76(const Black76Inputs& in, const Black76Outputs& out,
                                    Settlement settlement);

// Implied volatility from price (discounted; in coin for inverse). Elements whose
// price is outside the no-arbitrage bounds (below intrinsic, at or above the
// forward for calls or the strike for puts, undiscounted) get NaN; a price equal
// to the intrinsic value (to rounding) gives 0. n_invalid receives the number of
// NaN results. Invalid inputs are reported as by black76().
std::optional<InvalidInput> implied_vol(const ImpliedVolInputs& in, double* out,
                                        Settlement settlement, std::size_t& n_invalid);

// One option, through the same kernels (inputs must be valid): for the
// engine's per-instrument work (marks from volatilities, repricing under moves).
struct Black76Value {
  double price = 0.0, delta = 0.0, gamma = 0.0, vega = 0.0, theta = 0.0;
};
Black76Value black76_one(std::int8_t cp, double forward, double strike, double expiry,
                         double vol, double rate, Settlement settlement);
// The implied volatility of one price; 0 when it cannot be determined (price
// outside the bounds, or expiry 0), so that callers revalue at intrinsic.
double implied_vol_one(double price, std::int8_t cp, double forward, double strike,
                       double expiry, double rate, Settlement settlement);

}  // namespace marginkit
