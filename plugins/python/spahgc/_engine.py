"""Engines, requests and predictions: the Python face of libspahgc, with NumPy arrays in and out."""

from __future__ import annotations

import contextlib
import ctypes
import enum
import operator
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ._native import (
    EngineHandle,
    Library,
    ProgressCallback,
    Region,
    Request,
    ResultHandle,
    Status,
    TokenHandle,
    load,
)

if TYPE_CHECKING:  # annotations only: typing.Self is Python 3.11+
    from typing_extensions import Self

#: A level-0 rectangle `(x, y, width, height)` in pixels.
RegionTuple = Sequence[float]
#: Told `(done, total)`: spots embedded so far and spots to embed, after each encoder batch.
Progress = Callable[[int, int], None]

_DEVICES = {"auto": 0, "cpu": 1, "cuda": 2, "directml": 3}


class PixelFormat(enum.IntEnum):
    """The header's `spahgc_pixel_format`: the layout of a pixel array's last axis."""

    RGB8 = 0
    """red, green, blue"""
    RGBA8 = 1
    """red, green, blue, alpha (straight alpha)"""
    BGRA8_PREMULTIPLIED = 2
    """blue, green, red, alpha, colours premultiplied by alpha (OpenSlide, Cairo, Qt's ARGB32
    premultiplied on little-endian machines)"""

    @property
    def channels(self) -> int:
        """Bytes per pixel."""
        return 3 if self is PixelFormat.RGB8 else 4


@dataclass
class Prediction:
    """Predicted expression for the grid spots of a region, in the engine's gene order."""

    ids: list[str]
    """Spot ids, `<column>x<row>` of the slide-global grid."""
    centres: np.ndarray
    """Spot centres, (n, 2) float64, `(x, y)` in level-0 pixels."""
    in_tissue: np.ndarray
    """Whether each spot lies on tissue, (n,) bool."""
    diameter_px: float
    """Spot diameter in level-0 pixels."""
    microns_per_pixel: float
    """Level-0 resolution the grid was laid at (µm per pixel)."""
    genes: list[str]
    """Gene names: the columns of `values`."""
    values: np.ndarray
    """Expression, (n, len(genes)) float32, ln(1 + counts per 10k)."""

    def to_anndata(self) -> Any:
        """The prediction as an `anndata.AnnData` (spots × genes; `obsm["spatial"]` the centres,
        `obs` the in-tissue flags and coordinates, `uns` the grid). Needs the optional anndata."""
        try:
            import anndata
            import pandas as pd
        except ImportError as e:
            raise ImportError("Prediction.to_anndata needs anndata: pip install anndata") from e
        obs = pd.DataFrame(
            {"in_tissue": self.in_tissue, "x": self.centres[:, 0], "y": self.centres[:, 1]},
            index=pd.Index(self.ids, name="spot"),
        )
        return anndata.AnnData(
            X=self.values,
            obs=obs,
            var=pd.DataFrame(index=pd.Index(self.genes, name="gene")),
            obsm={"spatial": self.centres},
            uns={"spot_diameter_px": self.diameter_px, "microns_per_pixel": self.microns_per_pixel},
        )


class CancelToken:
    """A flag that ends the predictions it is passed to with `SpahgcError` of status
    `Status.CANCELLED`: soon for those running, at once for later ones. Thread-safe: call
    `cancel()` from any thread. Holds no native resource, so one token serves any engine."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        # The native tokens of the requests running with this token, each with its library.
        self._native: list[tuple[Library, TokenHandle]] = []

    def cancel(self) -> None:
        """Raises the flag."""
        with self._lock:
            self._cancelled = True
            for lib, token in self._native:
                lib.check(lib.spahgc_cancel_token_cancel(token))

    @property
    def cancelled(self) -> bool:
        """Whether `cancel()` was called."""
        return self._cancelled

    @contextlib.contextmanager
    def _attached(self, lib: Library, token: TokenHandle) -> Iterator[None]:
        """Forwards this flag to a request's native token while the request runs."""
        with self._lock:
            self._native.append((lib, token))
            if self._cancelled:
                lib.check(lib.spahgc_cancel_token_cancel(token))
        try:
            yield
        finally:
            with self._lock:
                self._native.remove((lib, token))


class Engine:
    """A model bundle opened for prediction. Thread-safe: threads may predict with one engine
    at once (calls into the library release the GIL). Close it with `close()` or a `with`
    block; `close()` waits for running predictions, and later calls raise `RuntimeError`."""

    def __init__(
        self,
        bundle: str | os.PathLike[str],
        device: str = "auto",
        threads: int = 0,
        cache_dir: str | os.PathLike[str] | None = None,
        runtime_dir: str | os.PathLike[str] | None = None,
        library: str | os.PathLike[str] | None = None,
    ) -> None:
        """Opens and verifies the bundle directory `bundle`; the encoder loads on the first
        prediction.

        - `device`: "auto" (the GPU this build and machine have, else the CPU), "cpu", "cuda"
          or "directml"; a GPU that cannot start fails the first prediction.
        - `threads`: encoder threads; 0: ONNX Runtime's default (one per core).
        - `cache_dir`: directory of the on-disk embedding cache (created if missing, shareable
          between processes); None: no disk cache.
        - `runtime_dir`: directory holding `onnxruntime/libonnxruntime.so`; None: found beside
          the library, else `$SPAHGC_ORT_LIB`, else the source tree's `.spahgc/`.
        - `library`: path of libspahgc.so; None: see `spahgc.load_library`.

        Raises `SpahgcError` (status `BUNDLE`, `CACHE`, `INVALID_ARGUMENT`, ...)."""
        if device not in _DEVICES:
            raise ValueError(f"device is {device!r}, not one of {', '.join(_DEVICES)}")
        if threads < 0:
            raise ValueError(f"threads is {threads}, must be 0 (the default) or more")
        self._lib = load(library)
        options = self._lib.spahgc_engine_options_default()
        options.device = _DEVICES[device]
        options.threads = threads
        options.cache_dir = _path_bytes(cache_dir)
        options.runtime_dir = _path_bytes(runtime_dir)
        handle = EngineHandle()
        self._lib.check(self._lib.spahgc_engine_open(_path_bytes(bundle), ctypes.byref(options), ctypes.byref(handle)))
        self._handle: EngineHandle | None = handle
        self._running = 0
        self._idle = threading.Condition()
        self.genes: list[str] = [self._gene_name(i) for i in range(self._gene_count())]
        """The genes the engine predicts: the columns of `Prediction.values`."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_handle", None) is not None:
            self.close()

    def close(self) -> None:
        """Frees the engine once the predictions running on it end (so never call it from a
        progress callback: it would wait for itself); closing twice is a no-op."""
        with self._idle:
            handle, self._handle = self._handle, None
            self._idle.wait_for(lambda: self._running == 0)
        if handle is not None:
            self._lib.spahgc_engine_close(handle)

    @contextlib.contextmanager
    def _engine(self) -> Iterator[EngineHandle]:
        """The live handle, kept open until the block ends."""
        with self._idle:
            if self._handle is None:
                raise RuntimeError("the spahgc Engine is closed")
            self._running += 1
            handle = self._handle
        try:
            yield handle
        finally:
            with self._idle:
                self._running -= 1
                self._idle.notify_all()

    def _gene_count(self) -> int:
        count = ctypes.c_size_t()
        with self._engine() as engine:
            self._lib.check(self._lib.spahgc_engine_gene_count(engine, ctypes.byref(count)))
        return count.value

    def _gene_name(self, index: int) -> str:
        name = ctypes.c_char_p()
        with self._engine() as engine:
            self._lib.check(self._lib.spahgc_engine_gene_name(engine, index, ctypes.byref(name)))
        return (name.value or b"").decode()

    def pixel_context(self, region: RegionTuple, microns_per_pixel: float) -> tuple[float, float, float, float]:
        """The level-0 rectangle `(x, y, width, height)` whose pixels `predict_pixels` needs for
        its prediction of `region` to equal `predict_region`'s: the grid blocks that hold the
        region's spots, their margin spots and all their patches, at `microns_per_pixel` (> 0). Coordinates may be fractional or reach past
        the slide's edges: read whole pixels (floor x and y, ceil the far edges) inside the slide."""
        out = Region()
        with self._engine() as engine:
            status = self._lib.spahgc_engine_pixel_context(
                engine, ctypes.byref(_region(region)), microns_per_pixel, ctypes.byref(out)
            )
            self._lib.check(status)
        return (out.x, out.y, out.width, out.height)

    def predict_region(
        self,
        slide: str | os.PathLike[str],
        region: RegionTuple | None = None,
        microns_per_pixel: float = 0.0,
        tissue_only: bool = True,
        cancel: CancelToken | None = None,
        progress: Progress | None = None,
    ) -> Prediction:
        """Predicts expression for the grid spots of a region of the slide file `slide` (SVS,
        NDPI, MRXS, tiled TIFF, JPEG, PNG, ...).

        - `region`: `(x, y, width, height)` in level-0 pixels; None: the whole slide.
        - `microns_per_pixel`: level-0 resolution; 0: from the slide's metadata.
        - `tissue_only`: leave out spots on glass.
        - `cancel`: a token that ends the prediction with status `CANCELLED`.
        - `progress`: called `(done, total)` on this thread after each encoder batch; an
          exception it raises cancels the prediction and is raised here.

        Raises `SpahgcError` (status `SLIDE`, `INVALID_ARGUMENT`, `CANCELLED`, ...)."""
        path = _path_bytes(slide)
        area = None if region is None else ctypes.byref(_region(region))

        def call(engine: EngineHandle, request: Any, out: Any) -> int:
            return self._lib.spahgc_predict_region(engine, path, area, microns_per_pixel, tissue_only, request, out)

        return self._predict(call, cancel, progress)

    def predict_pixels(
        self,
        pixels: np.ndarray,
        microns_per_pixel: float,
        origin: tuple[int, int] = (0, 0),
        region: RegionTuple | None = None,
        tissue_only: bool = True,
        format: PixelFormat | None = None,
        cancel: CancelToken | None = None,
        progress: Progress | None = None,
    ) -> Prediction:
        """Predicts expression for the grid spots of pixels held in memory.

        - `pixels`: uint8 array of shape (height, width, 3) RGB or (height, width, 4) RGBA,
          or of the layout `format` names (`PixelFormat.BGRA8_PREMULTIPLIED` for OpenSlide's or
          Qt's tiles). Any strides: rows are passed as they lie, other layouts are copied.
        - `microns_per_pixel`: level-0 resolution (> 0).
        - `origin`: level-0 pixel `(x, y)` of the array's top-left pixel.
        - `region`: `(x, y, width, height)` in level-0 pixels to predict; None: the whole array.
          Only the array's pixels are seen: pass the pixels of `pixel_context(region, mpp)` for
          the prediction to equal `predict_region`'s.
        - `tissue_only`, `cancel`, `progress`: as for `predict_region`.

        Raises `TypeError`/`ValueError` for an array of another dtype or shape, before calling
        the library, and `SpahgcError` for what the library refuses."""
        if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8:
            found = pixels.dtype if isinstance(pixels, np.ndarray) else type(pixels).__name__
            raise TypeError(f"pixels must be a uint8 NumPy array, got {found}")
        if pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
            raise ValueError(f"pixels must have shape (height, width, 3 or 4), got {pixels.shape}")
        default = PixelFormat.RGB8 if pixels.shape[2] == 3 else PixelFormat.RGBA8
        layout = PixelFormat(format) if format is not None else default
        if pixels.shape[2] != layout.channels:
            raise ValueError(f"{layout.name} pixels have {layout.channels} channels, the array has {pixels.shape[2]}")
        height, width, channels = pixels.shape
        if height == 0 or width == 0:
            raise ValueError(f"pixels is empty: shape {pixels.shape}")
        if width > 0xFFFF_FFFF or height > 0xFFFF_FFFF:
            raise ValueError(f"pixels of shape {pixels.shape} exceed the library's 32-bit sizes")
        x, y = (operator.index(v) for v in origin)
        if x < 0 or y < 0:
            raise ValueError(f"origin {origin} is negative: level-0 pixels start at (0, 0)")
        row_stride, pixel_stride, channel_stride = pixels.strides
        if not (channel_stride == 1 and pixel_stride == channels and row_stride >= width * channels):
            # Pixels not packed within rows, or rows upside down: the library takes rows of
            # packed pixels only.
            pixels = np.ascontiguousarray(pixels)
            row_stride = pixels.strides[0]
        length = row_stride * (height - 1) + width * channels
        area = None if region is None else ctypes.byref(_region(region))

        def call(engine: EngineHandle, request: Any, out: Any) -> int:
            return self._lib.spahgc_predict_pixels(
                engine, pixels.ctypes.data, length, width, height, row_stride, layout,
                microns_per_pixel, x, y, area, tissue_only, request, out,
            )  # fmt: skip

        return self._predict(call, cancel, progress)

    def _predict(
        self,
        call: Callable[[EngineHandle, Any, Any], int],
        cancel: CancelToken | None,
        progress: Progress | None,
    ) -> Prediction:
        """Runs a prediction `call(engine, request, out)` with a native token (raised by
        `cancel` or by an exception in `progress`) and reads its result."""
        lib = self._lib
        token = lib.spahgc_cancel_token_new()
        if not token:
            lib.check(Status.INTERNAL)
        raised: list[BaseException] = []

        def report(_user: object, done: int, total: int) -> None:
            if raised or progress is None:
                return
            try:
                progress(done, total)
            except BaseException as e:  # noqa: BLE001 -- ctypes would print it and go on: keep it for the caller
                raised.append(e)
                lib.spahgc_cancel_token_cancel(token)

        # Kept referenced until the call returns: the library calls it during the call only.
        callback = ProgressCallback(report) if progress is not None else ProgressCallback()
        request = Request(cancel=token, progress=callback)
        result = ResultHandle()
        try:
            with self._engine() as engine, cancel._attached(lib, token) if cancel else contextlib.nullcontext():
                failure = lib.failure(call(engine, ctypes.byref(request), ctypes.byref(result)))
        finally:
            lib.spahgc_cancel_token_free(token)
        try:
            if raised:
                raise raised[0]
            if failure is not None:
                raise failure
            return self._read(result)
        finally:
            lib.spahgc_result_free(result)  # NULL, a no-op, unless the call succeeded

    def _read(self, result: ResultHandle) -> Prediction:
        """Copies a native result into a `Prediction`."""
        lib = self._lib
        spots, genes = ctypes.c_size_t(), ctypes.c_size_t()
        lib.check(lib.spahgc_result_spot_count(result, ctypes.byref(spots)))
        lib.check(lib.spahgc_result_gene_count(result, ctypes.byref(genes)))
        n, g = spots.value, genes.value
        diameter, mpp = ctypes.c_double(), ctypes.c_double()
        lib.check(lib.spahgc_result_grid(result, ctypes.byref(diameter), ctypes.byref(mpp)))
        ids = []
        name = ctypes.c_char_p()
        for i in range(n):
            lib.check(lib.spahgc_result_spot_id(result, i, ctypes.byref(name)))
            ids.append((name.value or b"").decode())
        centres = np.empty((n, 2), dtype=np.float64)
        lib.check(lib.spahgc_result_centres(result, _pointer(centres, ctypes.c_double), centres.size))
        in_tissue = np.empty(n, dtype=np.bool_)  # one byte, as C99's bool
        lib.check(lib.spahgc_result_in_tissue(result, _pointer(in_tissue, ctypes.c_bool), in_tissue.size))
        values = np.empty((n, g), dtype=np.float32)
        lib.check(lib.spahgc_result_values(result, _pointer(values, ctypes.c_float), values.size))
        return Prediction(
            ids=ids,
            centres=centres,
            in_tissue=in_tissue,
            diameter_px=diameter.value,
            microns_per_pixel=mpp.value,
            genes=list(self.genes),
            values=values,
        )


def load_library(library: str | os.PathLike[str] | None = None) -> str:
    """Loads libspahgc and returns its version. `library`: a path; None: `$SPAHGC_LIBRARY`,
    else the source tree's `target/release/libspahgc.so`, else the system's. Raises `OSError`
    when it is not found and `RuntimeError` when its ABI is not the one this binding speaks."""
    return load(library).version


def _path_bytes(path: str | os.PathLike[str] | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def _region(region: RegionTuple) -> Region:
    if len(region) != 4:
        raise ValueError(f"a region is (x, y, width, height), got {region!r}")
    return Region(*(float(v) for v in region))


def _pointer(array: np.ndarray, ctype: Any) -> Any:
    return array.ctypes.data_as(ctypes.POINTER(ctype))
