"""What a survey's output files cost once its tiles are classified: a large survey writes them on one core after
the last tile, so they add to its time whatever the model's speed. Surveys SIZE x SIZE pixels of real tiles (the
raster of survey_speed.py) once, in this process, then times, in turn, round after round:

- the patches (the summary's count, the GeoPackage's layer);
- each writer alone, the patches worked out;
- write_outputs, every file as a survey writes it (the patches not yet worked out);

and the peak memory of write_outputs in a fresh process that only loads the survey's result and writes its files.

    python benchmarks/survey_outputs.py [--size 20000] [--rounds 3] [--candidate]

`--candidate` surveys with the repo's distilled candidate tile model (quicker to classify; its calls differ in a
few tiles, so the files do too). JSON: results/survey_outputs.json.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, report
from survey_speed import orthomosaic, with_candidate


def writers(outputs) -> dict:
    """Each output file's writer and a file name for it, by what it writes, as write_outputs calls it."""
    return {"tiles.csv": (outputs.write_tiles_csv, "tiles.csv"),
            "GeoPackage (tiles, patches)": (lambda result, path: outputs.write_geopackage(result, result.patches, path),
                                            "tiles.gpkg"),
            "GeoJSON": (outputs.write_geojson, "tiles.geojson"),
            "probability.tif": (outputs.write_probability_tif, "probability.tif"),
            "overlay.png": (outputs.write_overlay, "overlay.png")}


# The child reads its peak from /proc (VmHWM, Linux): ru_maxrss would count this large process's memory at the fork.
MEMORY = """
import pickle, re, sys
from pathlib import Path
from greenlens.survey import outputs
def peak_mb():
    return int(re.search(r"VmHWM:\\s*(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1024
result = pickle.loads(Path(sys.argv[1]).read_bytes())
loaded = peak_mb()
outputs.write_outputs(result, Path(sys.argv[2]))
print(loaded, peak_mb())
"""


def write_outputs_memory(result, scratch: Path) -> dict:
    """Peak memory (MB) of a fresh process once it has loaded `result`, and once it has written its files."""
    import pickle

    (scratch / "result.pickle").write_bytes(pickle.dumps(result))
    done = subprocess.run([sys.executable, "-c", MEMORY, str(scratch / "result.pickle"), str(scratch / "memory")],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    loaded, written = map(float, done.stdout.split())
    return {"result_loaded": loaded, "after_write_outputs": written}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/cactus")
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--candidate", action="store_true", help="survey with the repo's distilled candidate tile model")
    parser.add_argument("--results", default="survey_outputs", help="name of the JSON in benchmarks/results/")
    args = parser.parse_args()
    model = with_candidate(Path(args.model)) if args.candidate else Path(args.model)
    scratch = Path(tempfile.mkdtemp(prefix="survey-outputs-"))
    try:
        measure(args, model, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # every round's files: about 2 GB


def measure(args, model: Path, scratch: Path) -> None:
    """Surveys once into `scratch`, then times each step and measures the peak memory (the module's docstring)."""
    from greenlens.survey import outputs, survey_raster

    started = time.perf_counter()
    result = survey_raster(orthomosaic(args.size), str(model), scratch / "survey")
    print(f"surveyed in {time.perf_counter() - started:.1f} s (its files included): {int(result.classified.sum()):,} "
          f"tiles, {int(result.hits.sum()):,} positive, {len(result.patches):,} patches")

    def fresh():
        """The result as a survey hands it to write_outputs: patches and summary not yet worked out."""
        for cached in ("patches", "summary", "area_rows"):
            result.__dict__.pop(cached, None)

    def patches():
        fresh()
        return result.patches

    def write_all():
        fresh()
        outputs.write_outputs(result, Path(tempfile.mkdtemp(dir=scratch)))

    alone = writers(outputs)
    timings = {"patches": patches,
               **{name: (lambda w=write, f=file: w(result, Path(tempfile.mkdtemp(dir=scratch)) / f))
                  for name, (write, file) in alone.items()},
               "every file (write_outputs)": write_all}
    seconds: dict[str, list[float]] = {name: [] for name in timings}
    for _ in range(args.rounds):
        for name, run in timings.items():
            if name in alone:
                patches()  # every writer finds them worked out, as in write_outputs
            begun = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - begun)
    rows = [{"step": name, "median seconds": statistics.median(values), "each": [round(v, 2) for v in values]}
            for name, values in seconds.items()]
    fresh()
    memory = write_outputs_memory(result, scratch)
    report(args.results, rows, {"raster": f"{args.size:,} x {args.size:,}", "model": str(model),
                                "tiles": int(result.classified.sum()), "positive_tiles": int(result.hits.sum()),
                                "patches": len(result.patches), "rounds": args.rounds, "peak_mb": memory})
    print(f"peak memory of a process that loads the result: {memory['result_loaded']:.0f} MB; after write_outputs: "
          f"{memory['after_write_outputs']:.0f} MB")


if __name__ == "__main__":
    main()
