"""The binding against the real library, test bundle and her2st section C3: agreement with the
CLI, pixel buffers of every layout, errors, cancellation and progress."""

from __future__ import annotations

import csv
import json
import subprocess
import threading
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import spahgc
from spahgc import CancelToken, Engine, PixelFormat, Prediction, SpahgcError, Status

REGION = (2500, 2500, 3000, 3000)
"""A region of C3 (level-0 px) of 100 grid spots, most on tissue."""
MPP = 0.69
"""her2st's resolution (µm/px, from data/README.md) where only a plausible value is needed."""
RegionRun = tuple[Prediction, list[tuple[int, int, int]]]
"""A prediction and the `(done, total, thread id)` progress calls it made."""


@pytest.fixture(scope="session")
def c3(data: Path) -> Path:
    return data / "her2st" / "ST-imgs" / "C3.jpg"


@pytest.fixture(scope="session")
def region_run(engine: Engine, c3: Path) -> RegionRun:
    """REGION of C3 predicted first in the session (so every spot is embedded: progress is
    reported), with the progress calls it made."""
    calls: list[tuple[int, int, int]] = []

    def progress(done: int, total: int) -> None:
        calls.append((done, total, threading.get_ident()))

    prediction = engine.predict_region(c3, REGION, MPP, tissue_only=False, progress=progress)
    return prediction, calls


@pytest.fixture(scope="session")
def cli_run(cli: Path, bundle: Path, data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CLI's prediction of REGION of C3 (expression.csv and expression.h5ad)."""
    out = tmp_path_factory.mktemp("cli") / "out"
    region = ",".join(str(v) for v in REGION)
    command = [
        str(cli), "predict", "--bundle", str(bundle), "--her2st", str(data / "her2st"), "--section", "C3",
        "--region", region, "--keep-background", "--no-cache", "--device", "cpu", "--quiet", "--out", str(out),
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    return out


def test_genes(engine: Engine) -> None:
    assert len(engine.genes) == 250
    assert len(set(engine.genes)) == 250
    assert "ERBB2" in engine.genes


def test_library_version_and_lookup(library: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert spahgc.ABI_VERSION == 0
    assert spahgc.load_library(library) == spahgc.__version__
    with pytest.raises(OSError, match="/nonexistent/libspahgc.so"):
        spahgc.load_library("/nonexistent/libspahgc.so")
    monkeypatch.setattr(spahgc._native, "ABI_VERSION", 1)  # a binding for a later ABI
    with pytest.raises(RuntimeError, match="C ABI version 0.*written for version 1"):
        spahgc._native.Library(str(library))


def test_region_matches_cli(cli_run: Path, bundle: Path, region_run: RegionRun) -> None:
    anndata = pytest.importorskip("anndata")
    with open(cli_run / "expression.csv", newline="") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    prediction, _ = region_run
    assert header[:4] == ["spot", "x", "y", "in_tissue"]
    assert header[4:] == prediction.genes
    assert [r[0] for r in rows] == prediction.ids
    expected = np.array([[float(v) for v in r[4:]] for r in rows])
    assert np.abs(prediction.values - expected).max() <= 1e-4
    assert prediction.in_tissue.tolist() == [r[3] == "1" for r in rows]
    # The CLI uses the her2st loader's resolution, which neither its CSV nor its summary states:
    # the full-precision centres of its h5ad give the grid pitch (px), and the bundle's pitch
    # (µm) over it is the resolution. The grid and centres agreeing shows both ran at it.
    cli = anndata.read_h5ad(cli_run / "expression.h5ad")
    assert np.abs(prediction.centres - cli.obsm["spatial"]).max() <= 1e-6
    columns = np.array([int(s.split("x")[0]) for s in cli.obs_names])
    pitch_px = np.polyfit(columns, cli.obsm["spatial"][:, 0], 1)[0]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert prediction.microns_per_pixel == pytest.approx(manifest["grid"]["spot_pitch_um"] / pitch_px, rel=1e-9)
    assert prediction.diameter_px == pytest.approx(float(cli.uns["spot_diameter_px"]), rel=1e-12)


def test_progress_reports_increasing_counts(region_run: RegionRun) -> None:
    _, calls = region_run
    assert calls, "no progress was reported"
    done = [d for d, _, _ in calls]
    assert done == sorted(set(done))
    total = calls[0][1]
    assert all(t == total for _, t, _ in calls)
    assert done[-1] == total
    # On the thread that called the prediction, as the header promises.
    assert {thread for _, _, thread in calls} == {threading.get_ident()}


@pytest.fixture(scope="session")
def context_pixels(engine: Engine, c3: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, Prediction]:
    """C3's pixels of REGION's context as Pillow decodes them, with top-left corner at the
    context's, and predict_region's prediction of REGION on a lossless PNG of them (PNG, not the
    JPEG: JPEG decoders differ by a few levels, enough to move predictions by ~1e-3)."""
    image = pytest.importorskip("PIL.Image")
    image.MAX_IMAGE_PIXELS = None  # her2st images are 92 Mpx: no decompression bomb
    x, y, width, height = (int(v) for v in engine.pixel_context(REGION, MPP))
    with image.open(c3) as jpeg:
        pixels = np.asarray(jpeg.convert("RGB").crop((x, y, x + width, y + height)))
    # A slide as large as the context's far corner, white (glass) outside the context.
    canvas = np.full((y + height, x + width, 3), 255, np.uint8)
    canvas[y:, x:] = pixels
    png = tmp_path_factory.mktemp("slides") / "c3-context.png"
    image.fromarray(canvas).save(png, compress_level=1)
    return pixels, engine.predict_region(png, REGION, MPP, tissue_only=False)


def _bgra_premultiplied(rgb: np.ndarray) -> np.ndarray:
    alpha = np.full(rgb.shape[:2] + (1,), 255, np.uint8)  # opaque: premultiplying keeps colours
    return np.concatenate([rgb[..., ::-1], alpha], axis=2)


# Every way a host may hold the pixels: (format, array made from packed RGB).
LAYOUTS: dict[str, tuple[PixelFormat | None, Callable[[np.ndarray], np.ndarray]]] = {
    "rgb": (None, lambda rgb: rgb),
    "rgba": (None, lambda rgb: np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)),
    "bgra-premultiplied": (PixelFormat.BGRA8_PREMULTIPLIED, _bgra_premultiplied),
    # A crop of a wider image: rows further apart than a row's bytes, passed without a copy.
    "padded-rows": (None, lambda rgb: np.pad(rgb, ((0, 0), (0, 17), (0, 0)))[:, : rgb.shape[1]]),
    # The RGB channels of an RGBA array: pixels 4 bytes apart, copied.
    "channel-view": (None, lambda rgb: np.pad(rgb, ((0, 0), (0, 0), (0, 1)))[..., :3]),
    # Rows bottom-up (negative stride), copied.
    "flipped-view": (None, lambda rgb: np.flipud(np.flipud(rgb).copy())),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_pixels_match_region(engine: Engine, context_pixels: tuple[np.ndarray, Prediction], layout: str) -> None:
    rgb, expected = context_pixels
    format, make = LAYOUTS[layout]
    pixels = make(rgb)
    x, y, _, _ = engine.pixel_context(REGION, MPP)
    prediction = engine.predict_pixels(
        pixels, MPP, origin=(int(x), int(y)), region=REGION, tissue_only=False, format=format
    )
    assert prediction.ids == expected.ids
    assert np.abs(prediction.values - expected.values).max() <= 1e-4
    assert np.array_equal(prediction.centres, expected.centres)


def test_pixel_context_holds_the_region(engine: Engine) -> None:
    x, y, width, height = engine.pixel_context(REGION, MPP)
    rx, ry, rw, rh = REGION
    assert x < rx and y < ry and x + width > rx + rw and y + height > ry + rh


def test_bad_input_raises_with_the_library_message(engine: Engine, library: Path, c3: Path) -> None:
    with pytest.raises(SpahgcError, match="/nonexistent/bundle") as e:
        Engine("/nonexistent/bundle", library=library)
    assert e.value.status is Status.BUNDLE
    with pytest.raises(SpahgcError, match="/nonexistent/slide.svs") as e:
        engine.predict_region("/nonexistent/slide.svs", REGION, MPP)
    assert e.value.status is Status.SLIDE
    with pytest.raises(SpahgcError, match="microns_per_pixel") as e:
        engine.predict_region(c3, REGION, -1.0)
    assert e.value.status is Status.INVALID_ARGUMENT
    with pytest.raises(SpahgcError, match="microns_per_pixel") as e:
        engine.pixel_context(REGION, 0.0)
    assert e.value.status is Status.INVALID_ARGUMENT
    with pytest.raises(SpahgcError, match="region") as e:
        engine.predict_region(c3, (0, 0, 0, 100), MPP)
    assert e.value.status is Status.INVALID_ARGUMENT


def test_bad_pixel_arrays_raise_before_calling_the_library(engine: Engine) -> None:
    with pytest.raises(TypeError, match="uint8"):
        engine.predict_pixels(np.zeros((64, 64, 3), np.float32), MPP)
    with pytest.raises(TypeError, match="uint8"):
        engine.predict_pixels([[[0, 0, 0]]], MPP)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        engine.predict_pixels(np.zeros((64, 64), np.uint8), MPP)
    with pytest.raises(ValueError, match="shape"):
        engine.predict_pixels(np.zeros((64, 64, 2), np.uint8), MPP)
    with pytest.raises(ValueError, match="channels"):
        engine.predict_pixels(np.zeros((64, 64, 3), np.uint8), MPP, format=PixelFormat.BGRA8_PREMULTIPLIED)
    with pytest.raises(ValueError, match="empty"):
        engine.predict_pixels(np.zeros((0, 64, 3), np.uint8), MPP)
    with pytest.raises(ValueError, match="origin"):
        engine.predict_pixels(np.zeros((64, 64, 3), np.uint8), MPP, origin=(-1, 0))
    with pytest.raises(ValueError, match="region"):
        engine.predict_pixels(np.zeros((64, 64, 3), np.uint8), MPP, region=(0, 0, 64))


def test_bad_engine_options_raise(bundle: Path, library: Path) -> None:
    with pytest.raises(ValueError, match="device"):
        Engine(bundle, device="tpu", library=library)
    with pytest.raises(ValueError, match="threads"):
        Engine(bundle, threads=-1, library=library)


def test_close_is_idempotent_and_use_after_close_raises(bundle: Path, library: Path, c3: Path) -> None:
    engine = Engine(bundle, device="cpu", library=library)
    assert engine.genes
    engine.close()
    engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        engine.predict_region(c3, REGION, MPP)
    with pytest.raises(RuntimeError, match="closed"):
        engine.pixel_context(REGION, MPP)
    with Engine(bundle, library=library) as scoped:
        assert scoped.genes == engine.genes
    with pytest.raises(RuntimeError, match="closed"):
        scoped.pixel_context(REGION, MPP)


def test_a_raised_token_cancels_at_once(engine: Engine, c3: Path) -> None:
    token = CancelToken()
    token.cancel()
    assert token.cancelled
    with pytest.raises(SpahgcError) as e:
        engine.predict_region(c3, (6000, 2500, 2000, 2000), MPP, cancel=token)
    assert e.value.status is Status.CANCELLED


def test_cancel_from_another_thread(engine: Engine, c3: Path) -> None:
    token = CancelToken()
    started, raised = threading.Event(), threading.Event()

    def cancel_when_started() -> None:
        started.wait(60)
        token.cancel()
        raised.set()

    def progress(done: int, total: int) -> None:
        started.set()
        raised.wait(60)  # hold the first batch until the other thread has cancelled

    canceller = threading.Thread(target=cancel_when_started)
    canceller.start()
    try:
        with pytest.raises(SpahgcError) as e:
            engine.predict_region(c3, (6000, 6000, 2500, 2500), MPP, tissue_only=False, cancel=token, progress=progress)
    finally:
        started.set()
        canceller.join()
    assert e.value.status is Status.CANCELLED


def test_an_exception_in_progress_ends_the_prediction(engine: Engine, c3: Path) -> None:
    def progress(done: int, total: int) -> None:
        raise KeyError("stop")

    with pytest.raises(KeyError, match="stop"):
        engine.predict_region(c3, (2500, 6500, 2500, 2500), MPP, tissue_only=False, progress=progress)


def test_threads_share_an_engine(engine: Engine, c3: Path, region_run: RegionRun) -> None:
    expected, _ = region_run
    results: list[Prediction] = []

    def predict() -> None:
        results.append(engine.predict_region(c3, REGION, MPP, tissue_only=False))

    threads = [threading.Thread(target=predict) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3
    for prediction in results:
        assert prediction.ids == expected.ids
        assert np.array_equal(prediction.values, expected.values)


def test_to_anndata(region_run: RegionRun) -> None:
    pytest.importorskip("anndata")
    prediction, _ = region_run
    adata = prediction.to_anndata()
    assert adata.shape == (len(prediction.ids), 250)
    assert list(adata.obs_names) == prediction.ids
    assert list(adata.var_names) == prediction.genes
    assert np.array_equal(adata.obsm["spatial"], prediction.centres)
    assert adata.obs["in_tissue"].tolist() == prediction.in_tissue.tolist()
