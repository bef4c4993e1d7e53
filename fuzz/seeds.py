"""Writes the fuzz targets' seed corpora from small pieces of real files.

Usage: python3 fuzz/seeds.py REPO_ROOT OUT_DIR

For each target that reads files, OUT_DIR/<target>/ gets a few seeds cut from the shared data
(../shared/data), the set-up encoder, the test bundle and the committed gene panel; the
structure-aware targets (bank, cache entry, engine, C ABI, component) get a few random byte
strings, long enough for every field of their input (libFuzzer rejects shorter inputs, and
grows its inputs slowly from nothing). Multi-file inputs join their files with the separator line the targets
split at. Nothing here is committed: the data stays in ../shared.
"""

import gzip
import random
import sys
from pathlib import Path

SEPARATOR = "\n--8<--\n"


def put(out: Path, target: str, name: str, text: str) -> None:
    folder = out / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


def her2st_seeds(data: Path, out: Path) -> None:
    """A few spots of each section: 12 gene columns of their counts and their spot-file rows."""
    for counts_file in sorted((data / "her2st" / "ST-cnts").glob("*.tsv.gz")):
        name = counts_file.name.removesuffix(".tsv.gz")
        with gzip.open(counts_file, "rt") as f:
            lines = [next(f) for _ in range(6)]
        counts = "".join("\t".join(line.rstrip("\n").split("\t")[:13]) + "\n" for line in lines)
        wanted = {tuple(line.split("\t")[0].split("x")) for line in lines[1:]}
        spots = (data / "her2st" / "ST-spotfiles" / f"{name}_selection.tsv").read_text().splitlines()
        kept = [spots[0]] + [row for row in spots[1:] if tuple(row.split("\t")[:2]) in wanted]
        put(out, "her2st_section", name, counts + SEPARATOR + "\n".join(kept) + "\n")


def visium_seeds(data: Path, out: Path) -> None:
    """The fixture's first positions and its scale factors, with a small matrix over them."""
    spatial = data / "visium-tiny" / "spatial"
    positions = spatial.joinpath("tissue_positions_list.csv").read_text().splitlines()[:8]
    scale = spatial.joinpath("scalefactors_json.json").read_text()
    barcodes = [row.split(",")[0] for row in positions[:5]]
    features = [f"ENSG0000000{i}\tGENE{i}\tGene Expression" for i in range(4)]
    entries = [(g + 1, b + 1, (g * 3 + b) % 5 + 1) for g in range(4) for b in range(5) if (g + b) % 2 == 0]
    matrix = "%%MatrixMarket matrix coordinate integer general\n%\n"
    matrix += f"{len(features)} {len(barcodes)} {len(entries)}\n"
    matrix += "".join(f"{g} {b} {v}\n" for g, b, v in entries)
    files = ["\n".join(positions) + "\n", scale, "\n".join(barcodes) + "\n", "\n".join(features) + "\n", matrix]
    put(out, "visium_outs", "headerless", SEPARATOR.join(files))
    header = "barcode,in_tissue,array_row,array_col,pxl_row_in_fullres,pxl_col_in_fullres\n"
    put(out, "visium_outs", "header-no-scale", SEPARATOR.join([header + files[0], ""] + files[2:]))


def image_seeds(data: Path, out: Path) -> None:
    """The first three block rows of a her2st image as a JPEG of their own, restart markers on
    every row as in the whole image (its APP segments left out), and the same without its
    restart-interval segment (so decoded whole)."""
    raw = (data / "her2st" / "ST-imgs" / "C5.jpg").read_bytes()
    header, at, height_at, rows = bytearray(b"\xff\xd8"), 2, None, 3
    while True:
        marker, length = raw[at + 1], int.from_bytes(raw[at + 2 : at + 4], "big")
        segment = raw[at : at + 2 + length]
        if marker in (0xC0, 0xC1):
            height_at = len(header) + 5
        if not 0xE0 <= marker <= 0xEF:
            header += segment
        at += 2 + length
        if marker == 0xDA:
            break
    frame = header[height_at - 5 :]
    sampling = [frame[11 + 3 * c] for c in range(frame[9])]
    block_rows = 8 * max(s & 15 for s in sampling)
    header[height_at : height_at + 2] = (rows * block_rows).to_bytes(2, "big")
    end, found = at, 0
    while found < rows:
        end = raw.index(b"\xff", end)
        if 0xD0 <= raw[end + 1] <= 0xD7 or raw[end + 1] == 0xD9:
            found += 1
        end += 2
    scan = raw[at : end - 2] + b"\xff\xd9"
    folder = out / "image_slide"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "banded").write_bytes(bytes(header) + scan)
    dri = header.index(b"\xff\xdd")
    (folder / "no-restart-segment").write_bytes(bytes(header[:dri] + header[dri + 6 :]) + scan)


STRUCTURED = ["bank_file", "cache_entry", "engine_pixels", "engine_region", "capi_pixels", "component_pixels"]


def random_seeds(out: Path) -> None:
    for target in STRUCTURED:
        rng = random.Random(target)
        folder = out / target
        folder.mkdir(parents=True, exist_ok=True)
        for i, length in enumerate([96, 160, 256, 512, 1024, 2048]):
            (folder / f"random-{i}").write_bytes(bytes(rng.randrange(256) for _ in range(length)))


def main() -> None:
    root, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
    data = root.parent / "shared" / "data"
    for panel in sorted((root / "panels").glob("*.txt")):
        put(out, "gene_panel", panel.name, panel.read_text())
    encoder = root / ".spahgc" / "models" / "efficientnet-lite0" / "manifest.json"
    if encoder.is_file():
        put(out, "model_manifest", "efficientnet-lite0", encoder.read_text())
    bundle = root / "target" / "test-bundle" / "bundle" / "manifest.json"
    if bundle.is_file():
        put(out, "bundle_manifest", "test-bundle", bundle.read_text())
        put(out, "bundle_manifest", "test-bundle-as-is", "!" + bundle.read_text())
    random_seeds(out)
    if data.is_dir():
        her2st_seeds(data, out)
        visium_seeds(data, out)
        image_seeds(data, out)


if __name__ == "__main__":
    main()
