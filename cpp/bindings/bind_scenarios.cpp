// Scenario helpers: the EWMA dynamic range.
#include <pybind11/stl.h>

#include <stdexcept>

#include "bindings.hpp"
#include "marginkit/dynamic.hpp"

namespace marginkit::bindings {

void register_scenarios(py::module_& m) {
  py::class_<EwmaRange>(m, "EwmaRange")
      .def(py::init([](double half_life, double multiplier, double floor, double cap,
                       double max_step, double horizon, std::optional<double> initial_vol) {
             try {
               return EwmaRange(half_life, multiplier, floor, cap, max_step, horizon,
                                initial_vol);
             } catch (const std::invalid_argument& e) {
               throw py::value_error(e.what());
             }
           }),
           py::arg("half_life"), py::arg("multiplier"), py::arg("floor"), py::arg("cap"),
           py::arg("max_step"), py::arg("horizon"), py::arg("initial_vol"))
      .def("update",
           [](EwmaRange& r, double price) {
             try {
               return r.update(price);
             } catch (const std::invalid_argument& e) {
               throw py::value_error(e.what());
             }
           })
      .def_property_readonly("range", &EwmaRange::range)
      .def_property_readonly("vol", &EwmaRange::vol);
}

}  // namespace marginkit::bindings
