"""Type stubs of marginkit's compiled core (bindings in cpp/bindings/)."""


import numpy as np
import numpy.typing as npt

__version__: str

F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]

# system (bind_system.cpp)
def isa_active() -> str: ...
def isa_best() -> str: ...
def isa_available() -> list[str]: ...
def isa_compiled() -> list[str]: ...
def set_isa(name: str) -> None: ...
def num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def compiler() -> str: ...

# pricing (bind_pricing.cpp)
def black76(
    n: int,
    cp: I8,
    forward: F64,
    strike: F64,
    expiry: F64,
    vol: F64,
    rate: F64,
    inverse: bool,
    price: F64 | None,
    delta: F64 | None,
    gamma: F64 | None,
    vega: F64 | None,
    theta: F64 | None,
) -> None: ...
def implied_vol(
    n: int,
    price: F64,
    cp: I8,
    forward: F64,
    strike: F64,
    expiry: F64,
    rate: F64,
    inverse: bool,
    out: F64,
) -> int: ...
