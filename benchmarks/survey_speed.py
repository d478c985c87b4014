"""Orthomosaic survey speed and memory, end to end through the command line (reading, classifying,
writing every output), each run a fresh process whose peak memory is measured:

- a SIZE x SIZE GeoTIFF (default 20,000, JPEG-compressed tiles like a drone orthomosaic) made of real
  aerial tiles: targets >= 1,000 tiles/s and peak memory < 1.5 GB;
- a 30,000 x 30,000 GeoTIFF that is 99% nodata: target well under a minute;
- the first raster with `--scheduler local:2`: target no slower than one process;
- the floor: only reading the first raster in the survey's windows, resampled to the model's tile as a survey
  reads them (rasterio, GDAL decoding the JPEG tiles), in a fresh process; and the ratios.

    python benchmarks/survey_speed.py [--size 20000] [--model models/cactus] [--results survey_speed]
    python benchmarks/survey_speed.py --candidate --results survey_speed_distilled   # the distilled candidate

The rasters are made once and kept in $TMPDIR/greenlens-benchmarks (a few hundred MB).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import DATA_DIR, ROOT, report

CACHE = Path(tempfile.gettempdir()) / "greenlens-benchmarks"
CRS, PIXEL = "EPSG:32614", 0.05


def real_tiles(count: int = 2000) -> np.ndarray:
    from greenlens.core.images import decode_image

    rows = list(csv.DictReader(Path(DATA_DIR / "aerial-cactus" / "train.csv").read_text().splitlines()))[:count]
    return np.stack([decode_image(DATA_DIR / "aerial-cactus" / "train" / row["id"]) for row in rows])


def orthomosaic(size: int) -> Path:
    """SIZE x SIZE pixels of real tiles in random order, tiled and JPEG-compressed, a 64-pixel nodata margin."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    path = CACHE / f"ortho-{size}.tif"
    if path.is_file():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    tiles, rng = real_tiles(), np.random.default_rng(0)
    partial = path.with_suffix(".partial.tif")
    with rasterio.open(partial, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs=CRS,
                       transform=from_origin(500_000, 2_000_000, PIXEL, PIXEL), nodata=0, tiled=True, blockxsize=512,
                       blockysize=512, compress="jpeg", jpeg_quality=90, BIGTIFF="YES") as out:
        band = 512
        for top in range(0, size, band):
            height = min(band, size - top)
            rows = -(-height // 32)
            strip = tiles[rng.integers(len(tiles), size=(rows, -(-size // 32)))]  # (rows, cols, 32, 32, 3)
            strip = strip.transpose(0, 2, 1, 3, 4).reshape(rows * 32, -1, 3)[:height, :size]
            strip[:, :64] = 0
            strip[:, size - 64 :] = 0
            if top == 0:
                strip[:64] = 0
            if top + height == size:
                strip[height - 64 :] = 0
            out.write(strip.transpose(2, 0, 1), window=Window(0, top, size, height))
    partial.rename(path)
    return path


def sparse(size: int = 30_000, data_share: float = 0.01) -> Path:
    """SIZE x SIZE pixels, nodata but for a square of real tiles covering `data_share` of it."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    path = CACHE / f"sparse-{size}.tif"
    if path.is_file():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    side = int(size * data_share ** 0.5) // 32 * 32
    tiles = real_tiles()
    block = tiles[np.random.default_rng(1).integers(len(tiles), size=(side // 32, side // 32))]
    block = block.transpose(0, 2, 1, 3, 4).reshape(side, side, 3)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs=CRS,
                       transform=from_origin(500_000, 2_000_000, PIXEL, PIXEL), nodata=0, tiled=True, blockxsize=512,
                       blockysize=512, compress="deflate", sparse_ok=True, BIGTIFF="YES") as out:
        out.write(block.transpose(2, 0, 1), window=Window((size - side) // 2, (size - side) // 2, side, side))
    return path


def run_survey(model: str, raster: Path, *extra: str) -> dict:
    """predict.py --survey in a fresh process: wall seconds, peak memory of it and its children, summary."""
    out = Path(tempfile.mkdtemp(prefix="survey-", dir=CACHE))
    probe = ("import resource, subprocess, sys, time\n"
             "started = time.perf_counter()\n"
             "run = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)\n"
             "print(run.returncode, time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
             "print(run.stderr[-3000:], file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", probe, sys.executable, str(ROOT / "predict.py"), model, str(raster),
                           "--survey", "--out", str(out), *extra], cwd=ROOT, capture_output=True, text=True)
    code, seconds, peak_kb = done.stdout.split()
    if int(code) != 0:
        raise SystemExit(f"survey of {raster} failed:\n{done.stderr}")
    summary = json.loads((out / "summary.json").read_text())
    # ru_maxrss of the children: the largest single process (with local:2, the largest worker or the client).
    return {"seconds": float(seconds), "peak_mb": int(peak_kb) / 1024, "summary": summary}


READ_ONLY = """
import sys, time
from greenlens.survey.grid import Grid, read_chunk
from greenlens.survey.rasters import open_raster
started = time.perf_counter()
with open_raster(sys.argv[1]) as raster:
    grid = Grid(raster.width, raster.height, 32, 32, 32)
    cells = 0
    for chunk in grid.chunks():
        read = read_chunk(raster, grid, chunk)
        cells += int((read.share(read.valid) > 0.5).sum())
print(cells, time.perf_counter() - started)
"""


def read_floor(raster: Path) -> dict:
    """Seconds to only read `raster` in the survey's windows (and find the tiles in the data), nothing else."""
    done = subprocess.run([sys.executable, "-c", READ_ONLY, str(raster)], cwd=ROOT, capture_output=True, text=True,
                          check=True)
    tiles, seconds = done.stdout.split()
    return {"tiles": int(tiles), "seconds": float(seconds)}


def with_candidate(model: Path) -> Path:
    """A copy of `model` whose distilled candidate tile model is in place of the shipped one."""
    import shutil

    CACHE.mkdir(parents=True, exist_ok=True)  # a fresh machine has no rasters made yet either
    copy = Path(tempfile.mkdtemp(prefix="candidate-", dir=CACHE)) / model.name
    shutil.copytree(model, copy)
    for kind in ("", "_ood"):
        suffix = ".npz" if kind else ".tflite"
        (copy / f"tiles_small_candidate{kind}{suffix}").rename(copy / f"tiles_small{kind}{suffix}")
    return copy


def in_turn_arguments(description: str, results: str) -> tuple[argparse.Namespace, str, str, Path]:
    """For the benchmarks that run one survey several ways in turn: their arguments, the model folder to survey
    with and its name for the JSON, and survey_speed's orthomosaic of real tiles at --size."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/cactus")
    parser.add_argument("--size", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--candidate", action="store_true", help="with the repo's distilled candidate tile model in "
                        "place (as survey_speed.py --candidate)")
    parser.add_argument("--results", default=results, help="name of the JSON in benchmarks/results/")
    args = parser.parse_args()
    model, name = args.model, args.model
    if args.candidate:
        model, name = str(with_candidate(Path(args.model))), f"{args.model} with its distilled candidate"
    return args, model, name, orthomosaic(args.size)


def in_turn(labels: dict[str, str], survey, rounds: int) -> dict[str, list[tuple]]:
    """survey(mode) for each mode of `labels`, in turn, round after round: these machines' speed drifts within a
    session, so the modes share its drift. The first field of each result is the wall seconds."""
    runs: dict[str, list[tuple]] = {mode: [] for mode in labels}
    for round_ in range(rounds):
        for mode in runs:
            runs[mode].append(survey(mode))
            print(f"round {round_ + 1}, {labels[mode]}: {runs[mode][-1][0]:.1f} s", flush=True)
    return runs


def timing_columns(values: list[tuple]) -> dict:
    """A row's timing of the runs `in_turn` made of one mode, each (wall seconds, CPU seconds, ...)."""
    return {"mean seconds": float(np.mean([run[0] for run in values])),
            "each": " / ".join(f"{run[0]:.1f}" for run in values),
            "mean CPU seconds": float(np.mean([run[1] for run in values]))}


def survey_in_child(child: str, model: str, raster: Path, *extra: str, env: dict[str, str]) -> list[str]:
    """`predict.py MODEL RASTER --survey` run by `child` (Python source that runs sys.argv[1:] as a script and
    prints its measures as the last line of stderr) in a fresh process: those measures."""
    out = Path(tempfile.mkdtemp(prefix="survey-", dir=CACHE))
    done = subprocess.run([sys.executable, "-c", child, str(ROOT / "predict.py"), model, str(raster), "--survey",
                           "--out", str(out), *extra], cwd=ROOT, capture_output=True, text=True, env=env)
    if done.returncode != 0 or not (out / "summary.json").is_file():
        raise SystemExit(f"survey failed:\n{done.stderr[-3000:]}")
    return done.stderr.strip().splitlines()[-1].split()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="models/cactus")
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--sparse-size", type=int, default=30_000)
    parser.add_argument("--results", default="survey_speed", help="name of the JSON in benchmarks/results/")
    parser.add_argument("--candidate", action="store_true", help="survey with the repo's distilled candidate tile "
                        "model in place (a copy with tiles_small_candidate* renamed to tiles_small*, which surveys run)")
    args = parser.parse_args()
    model_name = args.model
    if args.candidate:
        args.model, model_name = str(with_candidate(Path(args.model))), f"{args.model} with its distilled candidate"
    started = time.perf_counter()
    dense, empty = orthomosaic(args.size), sparse(args.sparse_size)
    print(f"rasters ready in {time.perf_counter() - started:.0f} s: {dense}, {empty}")
    rows = []
    for name, raster, extra in ((f"{args.size:,} x {args.size:,} GeoTIFF, one process", dense, ()),
                                (f"{args.sparse_size:,} x {args.sparse_size:,}, 99% nodata", empty, ()),
                                (f"{args.size:,} x {args.size:,} GeoTIFF, --scheduler local:2", dense,
                                 ("--scheduler", "local:2"))):
        result = run_survey(args.model, raster, *extra)
        summary = result["summary"]
        cells = summary["tiles"] + summary["nodata_tiles"]
        rows.append({"survey": name, "tiles": summary["tiles"], "nodata_tiles": summary["nodata_tiles"],
                     "seconds": result["seconds"], "tiles_per_s": summary["tiles"] / result["seconds"],
                     "cells_per_s": cells / result["seconds"], "peak_mb": result["peak_mb"]})
        print(rows[-1])
    floor = read_floor(dense)
    rows.append({"survey": f"{args.size:,} x {args.size:,} GeoTIFF, read only (the floor)", "tiles": floor["tiles"],
                 "nodata_tiles": rows[0]["nodata_tiles"], "seconds": floor["seconds"],
                 "tiles_per_s": floor["tiles"] / floor["seconds"],
                 "cells_per_s": (floor["tiles"] + rows[0]["nodata_tiles"]) / floor["seconds"], "peak_mb": None})
    one, two = rows[0]["seconds"], rows[2]["seconds"]
    ratios = {"one_process_share_of_floor": rows[0]["tiles_per_s"] / rows[3]["tiles_per_s"],
              "local2_speedup_over_one_process": one / two}
    report(args.results, rows, {"model": model_name, "ratios": ratios,
                                  "targets": {"tiles_per_s": 15_520, "share_of_floor": 0.2, "peak_mb": 1536,
                                              "sparse_seconds": 30, "local2_speedup": 1.0}})
    print(f"one process: {ratios['one_process_share_of_floor']:.1%} of the read-only floor's tiles/s; "
          f"local:2: {ratios['local2_speedup_over_one_process']:.2f}x one process's speed")


if __name__ == "__main__":
    main()
