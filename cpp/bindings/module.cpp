// The extension module marginkit._core: assembles the per-area bindings.
#include <pybind11/pybind11.h>

#include "bindings.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "marginkit's compiled core. Use the documented API in the marginkit package.";
  marginkit::bindings::register_system(m);
  marginkit::bindings::register_pricing(m);
  marginkit::bindings::register_engine(m);
  marginkit::bindings::register_scenarios(m);
  marginkit::bindings::register_derive(m);
  marginkit::bindings::register_liquidation(m);
}
