#include "marginkit/pricing.hpp"

#include <atomic>
#include <cmath>

#include "kernels/kernel_table.hpp"
#include "marginkit/parallel.hpp"

namespace marginkit {
namespace {

// Below this many options a batch stays on the calling thread.
constexpr std::size_t kGrain = 16384;
// Outputs larger than this (about half the L3 of the machines we measure on)
// are written with streaming stores: they would not stay in the caches anyway,
// and normal stores read every line before writing it.
constexpr std::size_t kStreamBytes = std::size_t{16} << 20;

enum Rule { kFinite, kPositive, kNonNegative };

const char* check(double v, Rule rule) noexcept {
  if (!std::isfinite(v)) return "must be finite";
  if (rule == kPositive && !(v > 0.0)) return "must be > 0";
  if (rule == kNonNegative && !(v >= 0.0)) return "must be >= 0";
  return nullptr;
}

std::optional<InvalidInput> check_column(const char* name, const Column& c, std::size_t n,
                                         Rule rule) noexcept {
  const std::size_t m = c.broadcast ? 1 : n;
  for (std::size_t i = 0; i < m; ++i) {
    if (const char* why = check(c.data[i], rule)) return InvalidInput{name, i, why};
  }
  return std::nullopt;
}

std::optional<InvalidInput> check_cp(const Col<std::int8_t>& c, std::size_t n) noexcept {
  const std::size_t m = c.broadcast ? 1 : n;
  for (std::size_t i = 0; i < m; ++i) {
    if (c.data[i] != 1 && c.data[i] != -1) {
      return InvalidInput{"cp", i, "must be +1 (call) or -1 (put)"};
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<InvalidInput> validate(const Black76Inputs& in) noexcept {
  if (auto e = check_cp(in.cp, in.n)) return e;
  if (auto e = check_column("forward", in.forward, in.n, kPositive)) return e;
  if (auto e = check_column("strike", in.strike, in.n, kPositive)) return e;
  if (auto e = check_column("expiry", in.expiry, in.n, kNonNegative)) return e;
  if (auto e = check_column("vol", in.vol, in.n, kNonNegative)) return e;
  return check_column("rate", in.rate, in.n, kFinite);
}

std::optional<InvalidInput> validate(const ImpliedVolInputs& in) noexcept {
  if (auto e = check_column("price", in.price, in.n, kNonNegative)) return e;
  if (auto e = check_cp(in.cp, in.n)) return e;
  if (auto e = check_column("forward", in.forward, in.n, kPositive)) return e;
  if (auto e = check_column("strike", in.strike, in.n, kPositive)) return e;
  if (auto e = check_column("expiry", in.expiry, in.n, kNonNegative)) return e;
  return check_column("rate", in.rate, in.n, kFinite);
}

std::optional<InvalidInput> black76(const Black76Inputs& in, const Black76Outputs& out,
                                    Settlement settlement) {
  const auto& k = simd::active_kernels();
  const std::size_t outputs = (out.price != nullptr) + (out.delta != nullptr) +
                              (out.gamma != nullptr) + (out.vega != nullptr) +
                              (out.theta != nullptr);
  const bool stream = in.n * outputs * sizeof(double) > kStreamBytes;
  std::atomic<bool> ok{true};
  parallel_for(in.n, kGrain, [&](std::size_t b, std::size_t e) {
    if (!k.black76(in, out, settlement, b, e, stream)) ok.store(false, std::memory_order_relaxed);
  });
  if (ok.load()) return std::nullopt;
  return validate(in);  // rare: find the first invalid element for the message
}

std::optional<InvalidInput> implied_vol(const ImpliedVolInputs& in, double* out,
                                        Settlement settlement, std::size_t& n_invalid) {
  const auto& k = simd::active_kernels();
  constexpr auto kBad = static_cast<std::size_t>(-1);
  std::atomic<std::size_t> invalid{0};
  std::atomic<bool> ok{true};
  // Newton iterations make each element ~20x dearer than a price: smaller grain.
  parallel_for(in.n, kGrain / 16, [&](std::size_t b, std::size_t e) {
    std::size_t r = k.implied_vol(in, out, settlement, b, e);
    if (r == kBad) {
      ok.store(false, std::memory_order_relaxed);
    } else {
      invalid.fetch_add(r, std::memory_order_relaxed);
    }
  });
  n_invalid = invalid.load();
  if (ok.load()) return std::nullopt;
  return validate(in);
}

Black76Value black76_one(std::int8_t cp, double forward, double strike, double expiry,
                         double vol, double rate, Settlement settlement) {
  Black76Inputs in;
  in.n = 1;
  in.cp = {&cp, false};
  in.forward = {&forward, false};
  in.strike = {&strike, false};
  in.expiry = {&expiry, false};
  in.vol = {&vol, false};
  in.rate = {&rate, false};
  Black76Value v;
  black76(in, Black76Outputs{&v.price, &v.delta, &v.gamma, &v.vega, &v.theta}, settlement);
  return v;
}

double implied_vol_one(double price, std::int8_t cp, double forward, double strike,
                       double expiry, double rate, Settlement settlement) {
  if (!(expiry > 0.0)) return 0.0;
  ImpliedVolInputs in;
  in.n = 1;
  in.cp = {&cp, false};
  in.price = {&price, false};
  in.forward = {&forward, false};
  in.strike = {&strike, false};
  in.expiry = {&expiry, false};
  in.rate = {&rate, false};
  double vol = 0.0;
  std::size_t n_bad = 0;
  if (implied_vol(in, &vol, settlement, n_bad) || n_bad != 0) return 0.0;
  return vol;
}

}  // namespace marginkit
