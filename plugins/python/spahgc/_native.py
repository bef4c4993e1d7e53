"""The C ABI of libspahgc (include/spahgc.h) declared for ctypes: finding and loading the library,
its status codes, and the exception that carries its messages."""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import functools
import os
from pathlib import Path
from typing import Any

#: The ABI major version this binding was written for (`SPAHGC_ABI_VERSION` of the header).
ABI_VERSION = 0


class Status(enum.IntEnum):
    """The header's `spahgc_status` codes: what a fallible call returns."""

    OK = 0
    NULL_ARGUMENT = 1
    INVALID_ARGUMENT = 2
    INVALID_UTF8 = 3
    BUFFER_TOO_SMALL = 4
    INVALID_HANDLE = 5
    BUNDLE = 100
    ENCODER = 101
    EMBED = 102
    BANK = 103
    MODEL = 104
    SLIDE = 105
    CACHE = 106
    CANCELLED = 200
    INTERNAL = 900


class SpahgcError(Exception):
    """A libspahgc call failed: `status` says the kind of failure (a `Status`, or the plain
    int of a code newer than this binding), the message is the library's `spahgc_last_error()`."""

    def __init__(self, status: Status | int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        name = self.status.name if isinstance(self.status, Status) else str(self.status)
        return f"{self.message} (spahgc status {name})"


# Opaque handles: distinct types so that ctypes refuses to pass one where another is expected.
class EngineHandle(ctypes.c_void_p):
    """A `spahgc_engine *`."""


class ResultHandle(ctypes.c_void_p):
    """A `spahgc_result *`."""


class TokenHandle(ctypes.c_void_p):
    """A `spahgc_cancel_token *`."""


class EngineOptions(ctypes.Structure):
    """`spahgc_engine_options`."""

    _fields_ = [
        ("device", ctypes.c_uint32),
        ("threads", ctypes.c_uint32),
        ("cache_dir", ctypes.c_char_p),
        ("cache_max_bytes", ctypes.c_uint64),
        ("runtime_dir", ctypes.c_char_p),
    ]


class Region(ctypes.Structure):
    """`spahgc_region`: a rectangle in level-0 pixels."""

    _fields_ = [
        ("x", ctypes.c_double),
        ("y", ctypes.c_double),
        ("width", ctypes.c_double),
        ("height", ctypes.c_double),
    ]


#: `spahgc_progress_callback`: `(user, done, total)`.
ProgressCallback = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t)


class Request(ctypes.Structure):
    """`spahgc_request`: a request's cancel token and progress callback (each may be NULL)."""

    _fields_ = [
        ("cancel", TokenHandle),
        ("progress", ProgressCallback),
        ("progress_user", ctypes.c_void_p),
    ]


_status = ctypes.c_uint32
_size_p = ctypes.POINTER(ctypes.c_size_t)
_double_p = ctypes.POINTER(ctypes.c_double)
_str_p = ctypes.POINTER(ctypes.c_char_p)

#: Every function of the header: name → (restype, argtypes).
_SIGNATURES: dict[str, tuple[object, list[object]]] = {
    "spahgc_abi_version": (ctypes.c_uint32, []),
    "spahgc_version": (ctypes.c_char_p, []),
    "spahgc_last_error": (ctypes.c_char_p, []),
    "spahgc_engine_options_default": (EngineOptions, []),
    "spahgc_engine_open": (
        _status,
        [ctypes.c_char_p, ctypes.POINTER(EngineOptions), ctypes.POINTER(EngineHandle)],
    ),
    "spahgc_engine_close": (None, [EngineHandle]),
    "spahgc_engine_gene_count": (_status, [EngineHandle, _size_p]),
    "spahgc_engine_gene_name": (_status, [EngineHandle, ctypes.c_size_t, _str_p]),
    "spahgc_engine_pixel_context": (
        _status,
        [EngineHandle, ctypes.POINTER(Region), ctypes.c_double, ctypes.POINTER(Region)],
    ),
    "spahgc_cancel_token_new": (TokenHandle, []),
    "spahgc_cancel_token_cancel": (_status, [TokenHandle]),
    "spahgc_cancel_token_free": (None, [TokenHandle]),
    "spahgc_predict_region": (
        _status,
        [
            EngineHandle,
            ctypes.c_char_p,
            ctypes.POINTER(Region),
            ctypes.c_double,
            ctypes.c_bool,
            ctypes.POINTER(Request),
            ctypes.POINTER(ResultHandle),
        ],
    ),
    "spahgc_predict_pixels": (
        _status,
        [
            EngineHandle,
            ctypes.c_void_p,  # const uint8_t *pixels: a NumPy array's address
            ctypes.c_size_t,
            ctypes.c_uint32,
            ctypes.c_uint32,
            ctypes.c_size_t,
            ctypes.c_uint32,
            ctypes.c_double,
            ctypes.c_uint64,
            ctypes.c_uint64,
            ctypes.POINTER(Region),
            ctypes.c_bool,
            ctypes.POINTER(Request),
            ctypes.POINTER(ResultHandle),
        ],
    ),
    "spahgc_result_spot_count": (_status, [ResultHandle, _size_p]),
    "spahgc_result_gene_count": (_status, [ResultHandle, _size_p]),
    "spahgc_result_grid": (_status, [ResultHandle, _double_p, _double_p]),
    "spahgc_result_spot_id": (_status, [ResultHandle, ctypes.c_size_t, _str_p]),
    "spahgc_result_centres": (_status, [ResultHandle, _double_p, ctypes.c_size_t]),
    "spahgc_result_in_tissue": (_status, [ResultHandle, ctypes.POINTER(ctypes.c_bool), ctypes.c_size_t]),
    "spahgc_result_values": (_status, [ResultHandle, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t]),
    "spahgc_result_free": (None, [ResultHandle]),
}


class Library:
    """A loaded libspahgc whose functions are declared (`lib.spahgc_engine_open(...)`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._dll = ctypes.CDLL(path)
        # First the version, which every ABI has: another ABI may lack the other functions.
        self._dll.spahgc_abi_version.restype = ctypes.c_uint32
        abi = self._dll.spahgc_abi_version()
        if abi != ABI_VERSION:
            raise RuntimeError(
                f"{path} has C ABI version {abi}, this spahgc Python binding was written for "
                f"version {ABI_VERSION}: install the binding that matches the library"
            )
        for name, (restype, argtypes) in _SIGNATURES.items():
            function = getattr(self._dll, name)
            function.restype = restype
            function.argtypes = argtypes

    def __getattr__(self, name: str) -> Any:
        """The declared C function `name` (ctypes keeps one function object per name)."""
        if name not in _SIGNATURES:
            raise AttributeError(f"libspahgc has no declared function {name}")
        return getattr(self._dll, name)

    @property
    def version(self) -> str:
        """The library's version, e.g. "0.1.0"."""
        return self._dll.spahgc_version().decode()

    def check(self, status: int) -> None:
        """Raises `failure(status)`, if any."""
        error = self.failure(status)
        if error is not None:
            raise error

    def failure(self, status: int) -> SpahgcError | None:
        """The error a call that returned `status` failed with, None if it succeeded. Call it
        right after that call, on the same thread: every call replaces the thread's message."""
        if status == Status.OK:
            return None
        message = self._dll.spahgc_last_error().decode("utf-8", "replace")
        try:
            code: Status | int = Status(status)
        except ValueError:
            code = status
        return SpahgcError(code, message)


def _locate(library: str | os.PathLike[str] | None) -> str | None:
    """The first of: the argument, `$SPAHGC_LIBRARY`, the source tree's release build, the
    system's library (a name the dynamic loader resolves)."""
    if library is not None:
        return os.fspath(library)
    if os.environ.get("SPAHGC_LIBRARY"):
        return os.environ["SPAHGC_LIBRARY"]
    # plugins/python/spahgc/_native.py → the repository root, when run from the source tree.
    built = Path(__file__).resolve().parents[3] / "target" / "release" / "libspahgc.so"
    if built.is_file():
        return str(built)
    return ctypes.util.find_library("spahgc")


def load(library: str | os.PathLike[str] | None = None) -> Library:
    """Loads libspahgc from `library` (a path), else `$SPAHGC_LIBRARY`, else the source tree's
    `target/release/libspahgc.so`, else the system's (`ctypes.util.find_library("spahgc")`).
    A library is loaded once per path and process. Raises `OSError` when none loads and
    `RuntimeError` when its ABI version is not the binding's."""
    path = _locate(library)
    if path is None:
        raise OSError(
            "libspahgc not found: pass library=PATH, set SPAHGC_LIBRARY to the path of "
            "libspahgc.so, or install it (scripts/install-capi.sh) where the loader finds it"
        )
    return _load_path(path)


@functools.cache
def _load_path(path: str) -> Library:
    try:
        return Library(path)
    except OSError as e:
        raise OSError(f"loading libspahgc from {path}: {e}") from e
