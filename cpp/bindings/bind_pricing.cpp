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

// A NumPy array argument of element type T (native byte order, C-contiguous),
// read straight from the array object: pybind11's array_t caster takes ~0.3 us
// an argument (it converts through PyArray_FromAny), as much as pricing 50
// options. TypeError for anything else (marginkit.black76 passes exactly these;
// its fast path falls back to its general one on TypeError).
template <class T>
struct ArrayArg {
  T* data;
  int ndim;
  py::ssize_t size;  // shape[0] if 1-D
  bool writeable;
};

template <class T>
ArrayArg<T> array_arg(py::handle h, const char* name) {
  namespace pd = py::detail;
  const auto& api = pd::npy_api::get();
  if (api.PyArray_Check_(h.ptr())) {
    const pd::PyArray_Proxy* a = pd::array_proxy(h.ptr());
    const pd::PyArrayDescr_Proxy* d = pd::array_descriptor_proxy(a->descr);
    constexpr int num = pd::npy_format_descriptor<T>::value;
    if (d->type_num == num && d->byteorder != '>' &&
        (a->flags & pd::npy_api::NPY_ARRAY_C_CONTIGUOUS_) != 0) {
      return {reinterpret_cast<T*>(a->data), a->nd, a->nd == 1 ? a->dimensions[0] : 0,
              (a->flags & pd::npy_api::NPY_ARRAY_WRITEABLE_) != 0};
    }
  }
  throw py::type_error(std::string(name) + ": expected a C-contiguous array of " +
                       (std::is_same_v<T, double> ? "float64" : "int8"));
}

template <class T>
Col<T> column_arg(py::handle h, std::size_t n, const char* name) {
  const ArrayArg<T> a = array_arg<T>(h, name);
  if (a.ndim != 1) throw py::value_error(std::string(name) + " must be 1-D");
  const auto size = static_cast<std::size_t>(a.size);
  if (size != n && size != 1) {
    std::ostringstream msg;
    msg << name << " has length " << size << ", expected " << n << " (or 1 to broadcast)";
    throw py::value_error(msg.str());
  }
  return Col<T>{a.data, size == 1 && n != 1};
}

double* output_arg(py::handle h, std::size_t n, const char* name) {
  if (h.is_none()) return nullptr;
  const ArrayArg<double> a = array_arg<double>(h, name);
  if (a.ndim != 1 || static_cast<std::size_t>(a.size) != n) {
    std::ostringstream msg;
    msg << "out['" << name << "'] must have shape (" << n << ",)";
    throw py::value_error(msg.str());
  }
  if (!a.writeable) throw py::value_error(std::string("out['") + name + "'] is read-only");
  return a.data;
}

void py_black76(std::size_t n, py::handle cp, py::handle forward, py::handle strike,
                py::handle expiry, py::handle vol, py::handle rate, bool inverse,
                py::handle price, py::handle delta, py::handle gamma, py::handle vega,
                py::handle theta) {
  Black76Inputs in;
  in.n = n;
  in.cp = column_arg<std::int8_t>(cp, n, "cp");
  in.forward = column_arg<double>(forward, n, "forward");
  in.strike = column_arg<double>(strike, n, "strike");
  in.expiry = column_arg<double>(expiry, n, "expiry");
  in.vol = column_arg<double>(vol, n, "vol");
  in.rate = column_arg<double>(rate, n, "rate");
  Black76Outputs out{output_arg(price, n, "price"), output_arg(delta, n, "delta"),
                     output_arg(gamma, n, "gamma"), output_arg(vega, n, "vega"),
                     output_arg(theta, n, "theta")};
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
  m.def("black76", &py_black76, py::arg("n"), py::arg("cp"), py::arg("forward"),
        py::arg("strike"), py::arg("expiry"), py::arg("vol"), py::arg("rate"),
        py::arg("inverse"), py::arg("price"), py::arg("delta"), py::arg("gamma"),
        py::arg("vega"), py::arg("theta"),
        "Black-76 price and Greeks into the given outputs (None = not computed).");
  m.def("implied_vol", &py_implied_vol, py::arg("n"), py::arg("price").noconvert(),
        py::arg("cp").noconvert(), py::arg("forward").noconvert(),
        py::arg("strike").noconvert(), py::arg("expiry").noconvert(),
        py::arg("rate").noconvert(), py::arg("inverse"), py::arg("out").noconvert(),
        "Implied volatility into out; returns the number of NaN results.");
}

}  // namespace marginkit::bindings
