"""The distilled rule's speed check, again, on this machine: LiteRT tiles/s of a cactus repo's survey tile model
(`tiles.tflite`, the classifier on one view: the teacher) and its distilled one (`tiles_small.tflite` where it ships,
else `tiles_small_candidate.tflite`), timed in turn over several rounds as `train.py distill` times them, and the
ratio of the medians against the rule's 10x. Speed only: accuracy and the guard are the card's.

    python benchmarks/tile_speed.py [--model models/cactus] [--rounds 5] [--threads N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import report

from greenlens.core.litert import SMALL_CANDIDATE, SMALL_TILE_MODEL, TILE_MODEL
from greenlens.training.distill import SHIP_RULE, SPEED_ROUNDS, SPEED_TILES, tiles_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/cactus"))
    parser.add_argument("--rounds", type=int, default=SPEED_ROUNDS)
    parser.add_argument("--threads", type=int, help="LiteRT threads (default: LiteRT's own choice, as surveys run it)")
    args = parser.parse_args()
    small = next((args.model / name for name in (SMALL_TILE_MODEL, SMALL_CANDIDATE) if (args.model / name).is_file()), None)
    if small is None:
        parser.error(f"{args.model} has no distilled tile model ({SMALL_TILE_MODEL} or {SMALL_CANDIDATE})")
    rates = tiles_per_second({"teacher": (args.model / TILE_MODEL).read_bytes(), "student": small.read_bytes()},
                             tile=32, threads=args.threads, rounds=args.rounds)
    medians = {name: float(np.median(values)) for name, values in rates.items()}
    files = {"teacher": TILE_MODEL, "student": small.name}
    rows = [{"tile model": files[name], "median tiles/s": round(medians[name]), "lowest": round(min(values)),
             "highest": round(max(values))}
            for name, values in rates.items()]
    speedup = medians["student"] / medians["teacher"]
    each_round = [s / t for s, t in zip(rates["student"], rates["teacher"])]
    report("tile_speed", rows, {"model": str(args.model), "rounds": args.rounds, "tiles_per_round": SPEED_TILES,
                                "threads": args.threads, "speedup": speedup, "speedup_each_round": each_round,
                                "min_speedup": SHIP_RULE["min_speedup"], "rates": rates})
    print(f"speedup (medians): {speedup:.2f}x, each round {min(each_round):.2f}-{max(each_round):.2f}x; "
          f"the rule asks for {SHIP_RULE['min_speedup']:g}x: {'passed' if speedup >= SHIP_RULE['min_speedup'] else 'missed'}")


if __name__ == "__main__":
    main()
