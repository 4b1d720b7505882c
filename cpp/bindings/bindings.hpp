// Shared helpers of the binding files (the only code that includes pybind11).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <optional>
#include <sstream>
#include <string>

#include "marginkit/pricing.hpp"

namespace marginkit::bindings {

namespace py = pybind11;

void register_system(py::module_& m);
void register_pricing(py::module_& m);
void register_engine(py::module_& m);
void register_scenarios(py::module_& m);
void register_derive(py::module_& m);
void register_liquidation(py::module_& m);

using f64_array = py::array_t<double, py::array::c_style>;
using i8_array = py::array_t<std::int8_t, py::array::c_style>;

// A read-only column of length n, or of length 1 broadcast to n.
template <class T>
Col<T> column(const py::array_t<T, py::array::c_style>& a, std::size_t n, const char* name) {
  if (a.ndim() != 1) throw py::value_error(std::string(name) + " must be 1-D");
  const auto size = static_cast<std::size_t>(a.shape(0));
  if (size != n && size != 1) {
    std::ostringstream msg;
    msg << name << " has length " << size << ", expected " << n << " (or 1 to broadcast)";
    throw py::value_error(msg.str());
  }
  return Col<T>{a.data(), size == 1 && n != 1};
}

// A writable output of length n, or nullptr for None.
inline double* output(const std::optional<f64_array>& a, std::size_t n, const char* name) {
  if (!a) return nullptr;
  if (a->ndim() != 1 || static_cast<std::size_t>(a->shape(0)) != n) {
    std::ostringstream msg;
    msg << "out['" << name << "'] must have shape (" << n << ",)";
    throw py::value_error(msg.str());
  }
  if (!a->writeable()) throw py::value_error(std::string("out['") + name + "'] is read-only");
  return const_cast<double*>(a->data());
}

// Raises ValueError for an invalid element, quoting its value.
[[noreturn]] inline void raise_invalid(const InvalidInput& bad, const Column* col, const Col<std::int8_t>* cp) {
  std::ostringstream msg;
  msg.precision(17);
  msg << bad.argument;
  const bool scalar = (col && col->broadcast) || (cp && cp->broadcast);
  if (!scalar) msg << "[" << bad.index << "]";
  msg << " " << bad.reason << " (got ";
  if (col) msg << col->data[bad.index];
  if (cp) msg << static_cast<int>(cp->data[bad.index]);
  msg << ")";
  throw py::value_error(msg.str());
}

}  // namespace marginkit::bindings
