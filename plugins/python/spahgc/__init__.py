"""spahgc: predict spatial gene expression from H&E slides, from Python.

A ctypes binding of libspahgc's C ABI (include/spahgc.h) with NumPy arrays in and out::

    import spahgc

    with spahgc.Engine("bundle") as engine:
        pred = engine.predict_region("slide.svs", region=(0, 0, 4000, 4000))
        erbb2 = pred.values[:, pred.genes.index("ERBB2")]
"""

from ._engine import (
    CancelToken,
    Engine,
    PixelFormat,
    Prediction,
    Progress,
    RegionTuple,
    load_library,
)
from ._native import ABI_VERSION, SpahgcError, Status

__version__ = "0.1.0"

__all__ = [
    "ABI_VERSION",
    "CancelToken",
    "Engine",
    "PixelFormat",
    "Prediction",
    "Progress",
    "RegionTuple",
    "SpahgcError",
    "Status",
    "load_library",
]
