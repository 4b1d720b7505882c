// Black-76 pricing and implied volatility over NumPy arrays.
#include <pybind11/stl.h>

#include "bindings.hpp"

namespace marginkit::bindings {

namespace {

void check_or_raise(const std::optional<InvalidInput>& bad,
                    std::initializer_list<std::pair<const char*, const Column*>> cols,
                    const Col<std::int8_t>& cp) {
  if (!bad) return;
  const std::string arg = bad->argument;
  if (arg == "cp") raise_invalid(*bad, nullptr, &cp);
  for (const auto& [name, col] : cols) {
    if (arg == name) raise_invalid(*bad, col, nullptr);
  }
  throw py::value_error(arg + " is invalid");
}

void py_black76(std::size_t n, const i8_array& cp, const f64_array& forward,
                const f64_array& strike, const f64_array& expiry, const f64_array& vol,
                const f64_array& rate, bool inverse, const std::optional<f64_array>& price,
                const std::optional<f64_array>& delta, const std::optional<f64_array>& gamma,
                const std::optional<f64_array>& vega, const std::optional<f64_array>& theta) {
  Black76Inputs in;
  in.n = n;
  in.cp = column(cp, n, "cp");
  in.forward = column(forward, n, "forward");
  in.strike = column(strike, n, "strike");
  in.expiry = column(expiry, n, "expiry");
  in.vol = column(vol, n, "vol");
  in.rate = column(rate, n, "rate");
  Black76Outputs out{output(price, n, "price"), output(delta, n, "delta"),
                     output(gamma, n, "gamma"), output(vega, n, "vega"),
                     output(theta, n, "theta")};
  std::optional<InvalidInput> bad;
  {
    py::gil_scoped_release release;
    bad = black76(in, out, inverse ? Settlement::inverse : Settlement::linear);
  }
  check_or_raise(bad,
                 {{"forward", &in.forward}, {"strike", &in.strike}, {"expiry", &in.expiry},
                  {"vol", &in.vol}, {"rate", &in.rate}},
                 in.cp);
}

std::size_t py_implied_vol(std::size_t n, const f64_array& price, const i8_array& cp,
                           const f64_array& forward, const f64_array& strike,
                           const f64_array& expiry, const f64_array& rate, bool inverse,
                           const f64_array& out) {
  ImpliedVolInputs in;
  in.n = n;
  in.price = column(price, n, "price");
  in.cp = column(cp, n, "cp");
  in.forward = column(forward, n, "forward");
  in.strike = column(strike, n, "strike");
  in.expiry = column(expiry, n, "expiry");
  in.rate = column(rate, n, "rate");
  double* o = output(out, n, "vol");
  std::optional<InvalidInput> bad;
  std::size_t invalid = 0;
  {
    py::gil_scoped_release release;
    bad = implied_vol(in, o, inverse ? Settlement::inverse : Settlement::linear, invalid);
  }
  check_or_raise(bad,
                 {{"price", &in.price}, {"forward", &in.forward}, {"strike", &in.strike},
                  {"expiry", &in.expiry}, {"rate", &in.rate}},
                 in.cp);
  return invalid;
}

}  // namespace

void register_pricing(py::module_& m) {
  m.def("black76", &py_black76, py::arg("n"), py::arg("cp").noconvert(),
        py::arg("forward").noconvert(), py::arg("strike").noconvert(),
        py::arg("expiry").noconvert(), py::arg("vol").noconvert(), py::arg("rate").noconvert(),
        py::arg("inverse"), py::arg("price").noconvert(), py::arg("delta").noconvert(),
        py::arg("gamma").noconvert(), py::arg("vega").noconvert(),
        py::arg("theta").noconvert(),
        "Black-76 price and Greeks into the given outputs (None = not computed).");
  m.def("implied_vol", &py_implied_vol, py::arg("n"), py::arg("price").noconvert(),
        py::arg("cp").noconvert(), py::arg("forward").noconvert(),
        py::arg("strike").noconvert(), py::arg("expiry").noconvert(),
        py::arg("rate").noconvert(), py::arg("inverse"), py::arg("out").noconvert(),
        "Implied volatility into out; returns the number of NaN results.");
}

}  // namespace marginkit::bindings
