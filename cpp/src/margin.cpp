#include "marginkit/margin.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace marginkit {

namespace {

bool finite_nonneg(double x) { return std::isfinite(x) && x >= 0.0; }

void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}

// Index of the bracket that applies to `notional` (the last floor <= notional).
std::size_t bracket_of(const std::vector<Bracket>& b, double notional) noexcept {
  std::size_t lo = 0, hi = b.size();
  while (hi - lo > 1) {
    std::size_t mid = (lo + hi) / 2;
    if (b[mid].floor <= notional) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// Base-currency size (linear_rate) or notional (tiered) of |q| contracts.
double base_size(const InstrumentTerms& t, double aq, double index) noexcept {
  return t.inverse ? aq * t.contract_size / index : aq * t.contract_size;
}

double notional(const InstrumentTerms& t, double aq, double mark) noexcept {
  return t.inverse ? aq * t.contract_size / mark : aq * t.contract_size * mark;
}

Requirement option_standard(const MarginModel& m, const InstrumentTerms& t, double q, double mark,
                            double index) noexcept {
  const double units = std::fabs(q) * t.contract_size;
  if (q >= 0.0) return {units * mark, 0.0};  // long: the premium, at mark
  // Per unit, in settlement currency: quote amounts scale by 1/U when inverse.
  const double scale = t.inverse ? 1.0 / index : 1.0;
  const double u = index * scale;  // U in settlement units (1 coin when inverse)
  const double otm = (t.cp > 0 ? std::max(t.strike - index, 0.0)
                               : std::max(index - t.strike, 0.0)) * scale;
  const double mm_mark = t.cp > 0 ? m.mm_mark_call : m.mm_mark_put;
  const double mm = std::max(m.mm * u, mm_mark * mark) + mark + m.liq_fee * u;
  const double im = std::max(std::max(m.im_otm * u - otm, m.im_min * u) + mark, mm);
  return {units * im, units * mm};
}

}  // namespace

void MarginModel::finalize() {
  switch (kind) {
    case ModelKind::linear_rate:
      require(finite_nonneg(im_base) && finite_nonneg(im_slope) && finite_nonneg(mm_base) &&
                  finite_nonneg(mm_slope),
              "linear_rate parameters must be finite and >= 0");
      require(im_base >= mm_base && im_slope >= mm_slope,
              "linear_rate: im_base/im_slope must be >= mm_base/mm_slope (IM >= MM)");
      break;
    case ModelKind::tiered: {
      require(!brackets.empty(), "tiered: at least one bracket is needed");
      require(brackets.front().floor == 0.0, "tiered: the first bracket's floor must be 0");
      for (std::size_t i = 0; i < brackets.size(); ++i) {
        auto& b = brackets[i];
        const std::string at = "tiered: bracket " + std::to_string(i);
        require(finite_nonneg(b.floor) && finite_nonneg(b.mmr) && finite_nonneg(b.imr),
                at + " must have finite floor, mmr, imr >= 0");
        require(b.imr >= b.mmr, at + ": imr must be >= mmr (IM >= MM)");
        if (i == 0) {
          b.cum_mm = b.cum_im = 0.0;
          continue;
        }
        const auto& p = brackets[i - 1];
        require(b.floor > p.floor, at + ": floors must increase");
        require(b.mmr >= p.mmr && b.imr >= p.imr, at + ": rates must not decrease");
        b.cum_mm = b.floor * (b.mmr - p.mmr) + p.cum_mm;
        b.cum_im = b.floor * (b.imr - p.imr) + p.cum_im;
      }
      break;
    }
    case ModelKind::option_standard:
      require(finite_nonneg(im_otm) && finite_nonneg(im_min) && finite_nonneg(mm) &&
                  finite_nonneg(mm_mark_call) && finite_nonneg(mm_mark_put) &&
                  finite_nonneg(liq_fee),
              "option_standard parameters must be finite and >= 0");
      break;
    case ModelKind::none:
      break;
  }
}

Requirement position_requirement(const MarginModel& m, const InstrumentTerms& t, double q,
                                 double mark, double index) noexcept {
  if (q == 0.0) return {};
  const double aq = std::fabs(q);
  switch (m.kind) {
    case ModelKind::linear_rate: {
      const double size = base_size(t, aq, index);
      const double value = t.inverse ? 1.0 : index;  // coin -> settlement currency
      return {size * (m.im_base + m.im_slope * size) * value,
              size * (m.mm_base + m.mm_slope * size) * value};
    }
    case ModelKind::tiered: {
      const double n = notional(t, aq, mark);
      const Bracket& b = m.brackets[bracket_of(m.brackets, n)];
      return {n * b.imr - b.cum_im, n * b.mmr - b.cum_mm};
    }
    case ModelKind::option_standard:
      return option_standard(m, t, q, mark, index);
    case ModelKind::none:
      break;
  }
  return {};
}

Requirement requirement_with_orders(const MarginModel& m, const InstrumentTerms& t, double q,
                                    double bids, double asks, double mark, double index,
                                    double entry) noexcept {
  const bool at_entry = m.kind == ModelKind::tiered && m.value_at_entry && entry > 0.0;
  Requirement r = position_requirement(m, t, q, at_entry ? entry : mark, index);
  if (bids > 0.0) {
    Requirement b = position_requirement(m, t, q + bids, mark, index);
    if (b.im > r.im) r.im = b.im;
  }
  if (asks > 0.0) {
    Requirement a = position_requirement(m, t, q - asks, mark, index);
    if (a.im > r.im) r.im = a.im;
  }
  return r;
}

std::vector<double> size_breakpoints(const MarginModel& m, const InstrumentTerms& t,
                                     double mark) {
  std::vector<double> out;
  if (m.kind != ModelKind::tiered) return out;
  for (std::size_t i = 1; i < m.brackets.size(); ++i) {
    const double floor = m.brackets[i].floor;
    out.push_back(t.inverse ? floor * mark / t.contract_size : floor / (t.contract_size * mark));
  }
  return out;
}

double collateral_value(const std::vector<HaircutTier>& tiers, double amount,
                        double price) noexcept {
  if (amount <= 0.0) return amount * price;  // debts count in full
  double value = 0.0, from = 0.0;
  for (const auto& tier : tiers) {
    if (amount <= from) break;
    const double part = std::min(amount, tier.upto) - from;
    value += part * (1.0 - tier.haircut);
    from = tier.upto;
  }
  return value * price;  // amounts beyond the last tier count for nothing
}

namespace {
// Multiples of the quantum, printed as the decimal they stand for: with
// quantum = 10^-k, n / 10^k is the double nearest to that decimal (n * q is not).
double scale_back(double n, double quantum) noexcept {
  const double inv = 1.0 / quantum;
  return inv == std::nearbyint(inv) ? n / inv : n * quantum;
}
// A result within float error of a multiple is that multiple: a few ulps of
// error in an exact amount must not cost (or give) a whole cent. The slack is
// relative (1e-14), so a tiny but real requirement still rounds up to a quantum.
double slack(double n) noexcept { return std::fabs(n) * 1e-14; }
}  // namespace

double round_up(double x, double quantum) noexcept {
  if (!(quantum > 0.0) || !std::isfinite(x)) return x;
  const double n = x / quantum;
  return scale_back(std::ceil(n - slack(n)), quantum) + 0.0;  // + 0.0: never -0
}

double round_down(double x, double quantum) noexcept {
  if (!(quantum > 0.0) || !std::isfinite(x)) return x;
  const double n = x / quantum;
  return scale_back(std::floor(n + slack(n)), quantum) + 0.0;
}

}  // namespace marginkit
