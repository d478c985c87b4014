"""Aerial survey speed: tiles/s of a whole survey of a 2,000 x 2,000 image vs bare Keras
model.predict on the same tiles, and vs the repo's LiteRT tile model alone
(targets: the survey within about 2x of bare predict; >= 500 tiles/s).

    python benchmarks/survey_speed.py [--model models/cactus] [--size 2000]
"""

from __future__ import annotations

import argparse

import numpy as np
from common import report, timed

from greenlens import survey
from greenlens.inference import Classifier


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="models/cactus")
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    classifier = Classifier.load(args.model)
    repo = classifier.repo
    rng = np.random.default_rng(0)
    # Ground-like texture: smooth colour fields plus noise (the content does not change the cost).
    image = np.clip(rng.normal(150, 30, (args.size, args.size, 3)), 0, 255).astype(np.uint8)
    tiles, _ = survey.cut_tiles(image)
    batch = tiles.astype(np.float32)
    repo.model.predict(batch[:512], batch_size=512, verbose=0)  # trace once
    bare = min(timed(lambda: repo.model.predict(batch, batch_size=512, verbose=0), args.repeat))
    lite = min(timed(lambda: classifier.tile_classifier(batch), args.repeat))
    whole = min(timed(lambda: survey.overlay(image, survey.survey(
        classifier.tile_classifier, image, classifier.labels, classifier.positive_label)), args.repeat))
    rows = [
        {"what": "bare Keras model.predict", "tiles": len(tiles), "seconds": bare, "tiles_per_s": len(tiles) / bare},
        {"what": "LiteRT tile model alone", "tiles": len(tiles), "seconds": lite, "tiles_per_s": len(tiles) / lite},
        {"what": "survey + overlay", "tiles": len(tiles), "seconds": whole, "tiles_per_s": len(tiles) / whole},
    ]
    report("survey_speed", rows, {"image": f"{args.size}x{args.size}", "survey_over_bare": whole / bare,
                                  "target_tiles_per_s": 500, "model": args.model})
    print(f"survey / bare predict: {whole / bare:.2f}x")


if __name__ == "__main__":
    main()
