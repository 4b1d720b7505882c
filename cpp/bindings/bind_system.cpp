// Build information, instruction-set dispatch and the thread pool.
#include <pybind11/stl.h>

#include <stdexcept>

#include "bindings.hpp"
#include "marginkit/parallel.hpp"
#include "marginkit/simd/isa.hpp"

#ifndef MARGINKIT_VERSION
#define MARGINKIT_VERSION "0+unknown"
#endif

namespace marginkit::bindings {

namespace {

std::vector<std::string> names(const std::vector<simd::Isa>& v) {
  std::vector<std::string> out;
  for (auto isa : v) out.emplace_back(simd::isa_name(isa));
  return out;
}

std::string compiler() {
#if defined(__clang__)
  return "clang " __clang_version__;
#elif defined(__GNUC__)
  return "gcc " __VERSION__;
#else
  return "unknown";
#endif
}

}  // namespace

void register_system(py::module_& m) {
  m.attr("__version__") = MARGINKIT_VERSION;
  m.def("isa_active", [] { return std::string(simd::isa_name(simd::isa_active())); });
  m.def("isa_best", [] { return std::string(simd::isa_name(simd::isa_best())); });
  m.def("isa_available", [] { return names(simd::isa_available()); });
  m.def("isa_compiled", [] { return names(simd::isa_compiled()); });
  m.def("set_isa", [](const std::string& name) {
    if (name == "auto") {
      simd::reset_isa();
      return;
    }
    try {
      simd::set_isa(simd::isa_from_name(name));
    } catch (const std::invalid_argument& e) {
      throw py::value_error(e.what());
    }
  });
  m.def("num_threads", &num_threads);
  m.def("set_num_threads", [](int n) {
    py::gil_scoped_release release;
    set_num_threads(n);
  });
  m.def("compiler", &compiler);
}

}  // namespace marginkit::bindings
