"""Fixtures: the real libspahgc, test bundle, CLI and shared data, found through environment
variables with source-tree defaults; one engine shared by the session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import spahgc

REPO = Path(__file__).resolve().parents[3]


BUILT = "scripts/test.sh builds it"


def _require(variable: str, default: Path, hint: str = BUILT) -> Path:
    """The path `$variable` names (else `default`); a missing one fails the test when
    `SPAHGC_REQUIRE_DATA=1` (CI) and skips it otherwise."""
    path = Path(os.environ.get(variable) or default)
    if not path.exists():
        message = f"{path} is missing (set {variable}; {hint})"
        if os.environ.get("SPAHGC_REQUIRE_DATA") == "1":
            pytest.fail(message + " and SPAHGC_REQUIRE_DATA=1")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def library() -> Path:
    return _require("SPAHGC_LIBRARY", REPO / "target" / "release" / "libspahgc.so")


@pytest.fixture(scope="session")
def bundle() -> Path:
    return _require("SPAHGC_TEST_BUNDLE", REPO / "target" / "test-bundle" / "bundle")


@pytest.fixture(scope="session")
def cli() -> Path:
    return _require("SPAHGC_CLI", REPO / "target" / "release" / "spahgc")


@pytest.fixture(scope="session")
def data() -> Path:
    return _require("SPAHGC_DATA", REPO.parent / "shared" / "data", "the shared data set, ../shared/data")


@pytest.fixture(scope="session")
def engine(library: Path, bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[spahgc.Engine]:
    """The CPU engine the tests share, with a disk cache of its own."""
    cache = tmp_path_factory.mktemp("cache")
    with spahgc.Engine(bundle, device="cpu", cache_dir=cache, library=library) as engine:
        yield engine
