"""The adapt loop end to end on a synthetic new flight (synthetic_flight.py: real held-out Kaggle tiles seen
through another camera): how long `python train.py adapt` takes for a few hundred annotated tiles on this CPU,
base vs adapted model on the held-out blocks, and a survey of a second flight of the same camera with each
model and two management units, against the true counts.

    python benchmarks/adapt_flight.py [--side 24] [--annotated-cols 20] [--model models/cactus]
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

import synthetic_flight as flights
from common import ROOT, report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "cactus")
    parser.add_argument("--side", type=int, default=24, help="flight A is SIDE x SIDE tiles")
    parser.add_argument("--annotated-cols", type=int, default=20, help="columns of flight A whose cacti are marked")
    parser.add_argument("--survey-side", type=int, default=16, help="flight B (surveyed) is this many tiles a side")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="adapt-flight-"))
    tiles, labels = flights.held_out_tiles(flights.data_dir(), args.model)
    a_count, b_count = args.side ** 2, args.survey_side ** 2
    a = flights.make_flight(folder / "flight_a.tif", tiles[:a_count], labels[:a_count], cols=args.side)
    b = flights.make_flight(folder / "flight_b.tif", tiles[a_count : a_count + b_count],
                            labels[a_count : a_count + b_count], cols=args.survey_side, origin=(690_000.0, 2_040_000.0))
    points = flights.write_layer(folder / "cacti.geojson", a, flights.cactus_points(a),
                                 {"n": list(range(int(a.labels.sum())))}, geometry_type="Point")
    half = args.side // 2
    areas = flights.write_layer(folder / "annotated.gpkg", a, [flights.tile_box(a, 0, half, 0, args.annotated_cols),
                                                               flights.tile_box(a, half, args.side, 0, args.annotated_cols)],
                                {"n": [1, 2]}, crs="EPSG:3857")
    units = [("north", 0, args.survey_side // 2), ("south", args.survey_side // 2, args.survey_side)]
    unit_layer = flights.write_layer(folder / "units.geojson", b, [flights.tile_box(b, r0, r1, 0, args.survey_side, grow=-2.0)
                                                                   for _, r0, r1 in units], {"unit": [u[0] for u in units]})
    out = folder / "adapted"
    command = [sys.executable, str(ROOT / "train.py"), "adapt", "--from", str(args.model), str(a.path), "--points",
               str(points), "--areas", str(areas), "--tile-size", str(a.tile), "--out", str(out)]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    record = json.loads((out / "metrics.json").read_text())
    adaptation = record["adaptation"]
    rows = []
    for name, model, key in (("base", args.model, "base_model"), ("adapted", out, "adapted_model")):
        survey_dir = folder / f"survey-{name}"
        subprocess.run([sys.executable, str(ROOT / "predict.py"), str(model), str(b.path), "--survey", "--aoi",
                        str(unit_layer), "--tile-size", str(b.tile), "--out", str(survey_dir)], check=True, cwd=ROOT,
                       capture_output=True)
        with open(survey_dir / "areas.csv", newline="") as handle:
            counted = {row["unit"]: int(row["cactus_tiles"]) for row in csv.DictReader(handle)}
        held = adaptation[key]
        row = {"model": name, "held_out_accuracy": held["accuracy"], "held_out_roc_auc": held["roc_auc"],
               "held_out_flagged": held["flagged"], "held_out_count_error": held["count_error"]}
        for unit, r0, r1 in units:
            truth = int(b.labels[r0:r1].sum())
            row[f"{unit}_counted"], row[f"{unit}_true"] = counted[unit], truth
            row[f"{unit}_error"] = (counted[unit] - truth) / truth
        rows.append(row)
    annotated = sum(part["tiles"] for part in adaptation["rasters"])
    print(f"adapt: {annotated} annotated tiles, {seconds:.0f} s ({record['timings']})")
    report("adapt_flight", rows, {
        "annotated_tiles": annotated, "held_out_tiles": adaptation["held_out"]["tiles"],
        "held_out_blocks": adaptation["held_out"]["blocks"], "adapt_seconds": round(seconds, 1),
        "timings": record["timings"], "survey_tiles": b_count, "flight": flights.__doc__.split("\n\n")[1].strip(),
        "command": " ".join(["python benchmarks/adapt_flight.py", *sys.argv[1:]]),
    })


if __name__ == "__main__":
    main()
