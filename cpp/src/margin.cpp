#include "marginkit/margin.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace marginkit {

namespace {

bool finite_nonneg(double x) { return std::isfinite(x) && x >= 0.0; }

void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}

double notional(const InstrumentTerms& t, double aq, double mark) noexcept {
  return t.inverse ? aq * t.contract_size / mark : aq * t.contract_size * mark;
}

// Per unit of underlying, settlement currency: the standard margin of a short
// option (IM, MM). Quote amounts scale by 1/U when inverse.
CurvePiece option_short_piece(const MarginModel& m, const InstrumentTerms& t, double mark,
                              double index) noexcept {
  const double scale = t.inverse ? 1.0 / index : 1.0;
  const double u = index * scale;  // U in settlement units (1 coin when inverse)
  const double otm = (t.cp > 0 ? std::max(t.strike - index, 0.0)
                               : std::max(index - t.strike, 0.0)) * scale;
  const double mm_mark = t.cp > 0 ? m.mm_mark_call : m.mm_mark_put;
  const double mm = std::max(m.mm * u, mm_mark * mark) + mark + m.liq_fee * u;
  const double im = std::max(std::max(m.im_otm * u - otm, m.im_min * u) + mark, mm);
  CurvePiece p;
  p.im_a = im;
  p.mm_a = mm;
  return p;
}

constexpr double kInfinity = std::numeric_limits<double>::infinity();

struct SingleFloors {
  double v[kMaxBrackets];
  SingleFloors() noexcept {
    v[0] = 0.0;
    for (std::size_t i = 1; i < kMaxBrackets; ++i) v[i] = kInfinity;
  }
};

}  // namespace

const double* single_piece_floors() noexcept {
  static const SingleFloors floors;
  return floors.v;
}

void MarginModel::finalize() {
  const bool rates = kind == ModelKind::linear_rate || kind == ModelKind::tiered;
  require(finite_nonneg(rate_quantum) && rate_quantum < 1.0, "rate_quantum must be in [0, 1)");
  require(mm_fraction < 0.0 || (std::isfinite(mm_fraction) && mm_fraction <= 1.0),
          "mm_fraction must be in [0, 1] (or < 0: MM rates given)");
  require(finite_nonneg(oi_lower) && finite_nonneg(oi_upper) &&
              (oi_upper == 0.0 || oi_upper > oi_lower),
          "open-interest caps: finite, >= 0, oi_upper > oi_lower (oi_upper = 0: off)");
  require(rates || (mm_fraction < 0.0 && oi_upper == 0.0),
          "mm_fraction and open-interest caps apply to linear_rate and tiered models");
  if (mm_fraction >= 0.0) {  // MM derived from IM (dYdX: floor(IMF ppm x MF ppm / 1e6))
    // Never above the IM rate: rounding "down" to the quantum settles a product
    // within float error of a multiple on that multiple, which may be an ulp up.
    auto derive = [&](double im_rate) {
      return std::min(im_rate, round_down(im_rate * mm_fraction, rate_quantum));
    };
    mm_base = derive(im_base);
    mm_slope = derive(im_slope);
    for (auto& b : brackets) b.mmr = derive(b.imr);
  }
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
  require(brackets.size() <= kMaxBrackets,
          "tiered: at most " + std::to_string(kMaxBrackets) + " brackets");
  curve_floors.clear();
  curve_pieces.clear();
  if (kind == ModelKind::option_standard) return;  // pieces depend on the prices
  curve_floors.assign(kMaxBrackets, kInfinity);
  curve_floors[0] = 0.0;
  curve_pieces.assign(1, CurvePiece{});
  if (kind == ModelKind::linear_rate) {
    curve_pieces[0].im_a = im_base;
    curve_pieces[0].mm_a = mm_base;
  } else if (kind == ModelKind::tiered) {
    curve_pieces.resize(brackets.size());
    for (std::size_t i = 0; i < brackets.size(); ++i) {
      curve_floors[i] = brackets[i].floor;
      curve_pieces[i] = {brackets[i].imr, brackets[i].mmr, brackets[i].cum_im, brackets[i].cum_mm};
    }
  }
}

RequirementCurve requirement_curve(const MarginModel& m, const InstrumentTerms& t, double mark,
                                   double index, CurvePiece own[2]) noexcept {
  RequirementCurve c;
  const double cs = t.contract_size;
  switch (m.kind) {
    case ModelKind::linear_rate:  // x: size in base units; valued at the index
      c.scale = t.inverse ? cs / index : cs;
      c.value = t.inverse ? 1.0 : index;
      c.im_b = m.im_slope;
      c.mm_b = m.mm_slope;
      break;
    case ModelKind::tiered:  // x: notional at the mark
      c.scale = t.inverse ? cs / mark : cs * mark;
      break;
    case ModelKind::option_standard:  // x: units of underlying
      c.scale = cs;
      c.floors = single_piece_floors();
      own[0] = option_short_piece(m, t, mark, index);
      own[1] = CurvePiece{};
      own[1].im_a = mark;  // a long option needs its premium
      c.pieces[0] = own;
      c.pieces[1] = own + 1;
      return c;
    case ModelKind::none:
      break;
  }
  c.floors = m.curve_floors.data();
  c.pieces[0] = c.pieces[1] = m.curve_pieces.data();
  return c;
}

double oi_adjusted_rate(const MarginModel& m, double rate, double oi_notional) noexcept {
  if (!(m.oi_upper > 0.0) || !(oi_notional > m.oi_lower)) return rate;
  if (oi_notional >= m.oi_upper) return std::max(rate, 1.0);
  const double frac = (oi_notional - m.oi_lower) / (m.oi_upper - m.oi_lower);
  const double increase = round_down(std::max(0.0, 1.0 - rate) * frac, m.rate_quantum);
  return std::min(std::max(rate, 1.0), rate + increase);
}

Requirement position_requirement(const MarginModel& m, const InstrumentTerms& t, double q,
                                 double mark, double index, double open_interest) noexcept {
  if (q == 0.0) return {};
  CurvePiece own[2];
  const RequirementCurve c = requirement_curve(m, t, mark, index, own);
  Requirement r = eval_curve(c, q);
  if (m.oi_upper > 0.0 && open_interest > 0.0) {  // the open-interest IMF raises the IM rate
    const double oi = notional(t, open_interest, mark);
    const double x = std::fabs(q) * c.scale;
    if (m.kind == ModelKind::linear_rate) {
      const CurvePiece& p = c.pieces[1][0];
      r.im = x * oi_adjusted_rate(m, p.im_a + c.im_b * x, oi) * c.value - p.im_c;
    } else if (m.kind == ModelKind::tiered && x > 0.0) {
      r.im = x * oi_adjusted_rate(m, r.im / x, oi);
    }
  }
  return r;
}

Requirement requirement_with_orders(const MarginModel& m, const InstrumentTerms& t, double q,
                                    double bids, double asks, double mark, double index,
                                    double entry, double open_interest) noexcept {
  const bool at_entry = m.kind == ModelKind::tiered && m.value_at_entry && entry > 0.0;
  Requirement r = position_requirement(m, t, q, at_entry ? entry : mark, index, open_interest);
  if (bids > 0.0) {
    Requirement b = position_requirement(m, t, q + bids, mark, index, open_interest);
    if (b.im > r.im) r.im = b.im;
  }
  if (asks > 0.0) {
    Requirement a = position_requirement(m, t, q - asks, mark, index, open_interest);
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

double asset_size_weight(double w, double imf_factor, double n) noexcept {
  if (!(imf_factor > 0.0) || !(n > 0.0)) return w;
  return std::min(w, 1.1 / (1.0 + imf_factor * std::sqrt(n)));
}

double liability_size_weight(double w, double imf_factor, double n) noexcept {
  if (!(imf_factor > 0.0) || !(n > 0.0)) return w;
  return std::max(w, 0.8 * w + imf_factor * std::sqrt(n));
}

double weighted_value(const std::vector<HaircutTier>& tiers, const AssetWeights& w,
                      double amount, double price) noexcept {
  const bool plain = !(w.imf_factor > 0.0) && !(w.weight_quantum > 0.0);
  if (amount > 0.0) {
    const double value = collateral_value(tiers, amount, price);
    if (plain) return value;  // bit for bit the haircut tiers alone
    const double tiered = collateral_value(tiers, amount, 1.0) / amount;  // average weight
    const double weight =
        round_down(asset_size_weight(tiered, w.imf_factor, amount), w.weight_quantum);
    return amount * weight * price;
  }
  if (amount == 0.0) return 0.0;
  if (plain && w.liability_weight == 1.0) return amount * price;  // debts in full
  const double weight =
      round_up(liability_size_weight(w.liability_weight, w.imf_factor, -amount),
               w.weight_quantum);
  return amount * weight * price;
}

}  // namespace marginkit
