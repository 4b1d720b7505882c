// Venue liquidation formulas (pure functions of liquidation.hpp / margin.hpp):
// the engine applies them to accounts; these expose them on plain numbers.
#include "bindings.hpp"
#include "marginkit/liquidation.hpp"
#include "marginkit/margin.hpp"

namespace marginkit::bindings {

void register_liquidation(py::module_& m) {
  m.def("margin_implied_fee", &margin_implied_fee, py::arg("mm_rate"), py::arg("liquidator_fee"),
        py::arg("shortage"), py::arg("notional"), py::arg("max_fee"), py::arg("factor"));
  m.def("spot_implied_fee", &spot_implied_fee, py::arg("shortage"), py::arg("liability_value"),
        py::arg("asset_weight"), py::arg("asset_multiplier"), py::arg("liability_weight"),
        py::arg("liability_multiplier"), py::arg("max_fee"));
  m.def("liability_transfer_to_cover", &liability_transfer_to_cover, py::arg("shortage"),
        py::arg("liability_price"), py::arg("liability_weight"), py::arg("asset_weight"),
        py::arg("asset_multiplier"), py::arg("liability_multiplier"), py::arg("if_fee"));
  m.def("ramped_fee", &ramped_fee, py::arg("base"), py::arg("max_fee"), py::arg("inactive"),
        py::arg("grace"), py::arg("per_unit"));
  m.def("fillable_adjustment", &fillable_adjustment, py::arg("tnc"), py::arg("tmmr"),
        py::arg("position_mm"), py::arg("ba"), py::arg("spread_to_mm"));
  m.def("asset_size_weight", &asset_size_weight, py::arg("weight"), py::arg("imf_factor"),
        py::arg("size"));
  m.def("liability_size_weight", &liability_size_weight, py::arg("weight"),
        py::arg("imf_factor"), py::arg("size"));
}

}  // namespace marginkit::bindings
