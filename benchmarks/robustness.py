"""How the models hold up outside their datasets: the test split through the 15 ImageNet-C corruptions
(Hendrycks & Dietterich 2019, the `imagecorruptions` package) at severities 1-5 and through framing
changes, and the guard on images that are not the task's subject.

For each condition: the share answered right, refused as out of distribution, refused as too poor to
judge, and answered wrong, for the old models (a git revision, before robust training) and the new
ones (models/). None of these corruption implementations is used in training (the AugMix protocol:
greenlens.training.augment), and the test split set nothing in training or selection.

    python benchmarks/robustness.py [--old REV] [--tasks leaf cactus] [--images N | TASK=N ...] [--old-from JSON]

Writes benchmarks/results/robustness.json and prints the tables the README and the cards quote.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from io import BytesIO
from pathlib import Path

import numpy as np
from common import DATA_DIR, ROOT, report
from tqdm.auto import tqdm

# The commit whose bundled models came before robust training (issue 18).
OLD_REVISION = "40ceb56"
CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
               "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
               "jpeg_compression")
# Kinds of change that training's augmentations include in some form of their own; the rest are unseen.
SEEN_IN_KIND = {"gaussian_noise", "shot_noise", "defocus_blur", "motion_blur", "brightness", "contrast",
                "jpeg_compression"}
FRAMINGS = ("rotated 90 degrees", "rotated 30 degrees", "closer crop (70%)", "subject at half size", "4x larger photo")
SEVERITIES = (1, 2, 3, 4, 5)


def _compatible_imagecorruptions():
    """imagecorruptions 1.1.2 as released, on today's NumPy and scikit-image: `np.float_` (fog) and
    `gaussian(multichannel=...)` (glass and Gaussian blur) were renamed since."""
    import skimage.filters

    np.float_ = np.float64  # type: ignore[attr-defined]
    original = skimage.filters.gaussian

    def gaussian(*args, multichannel=None, **kwargs):
        if multichannel:
            kwargs.setdefault("channel_axis", -1)
        return original(*args, **kwargs)

    import imagecorruptions.corruptions as corruptions

    corruptions.gaussian = gaussian
    return corruptions


def corrupt(job):
    """(images, corruption, severity, seed) -> corrupted uint8 images, in a worker process."""
    images, name, severity, seed = job
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _compatible_imagecorruptions()
        from imagecorruptions import corrupt as apply

        np.random.seed(seed)  # imagecorruptions draws from NumPy's global generator
        out = []
        for image in images:
            result = apply(image, corruption_name=name, severity=severity)
            out.append(np.asarray(result)[: image.shape[0], : image.shape[1]].astype(np.uint8))
        return out


def reframe(image: np.ndarray, framing: str) -> np.ndarray:
    """The same subject framed differently, as another photo of it would be."""
    from PIL import Image

    picture = Image.fromarray(image)
    height, width = image.shape[:2]
    if framing == "rotated 90 degrees":
        return np.ascontiguousarray(np.rot90(image))
    if framing == "rotated 30 degrees":
        border = tuple(int(v) for v in np.median(_border(image), axis=0))
        return np.asarray(picture.rotate(30, resample=Image.Resampling.BILINEAR, fillcolor=border))
    if framing == "closer crop (70%)":
        w, h = round(width * 0.7), round(height * 0.7)
        left, top = (width - w) // 2, (height - h) // 2
        return np.asarray(picture.crop((left, top, left + w, top + h)).resize((width, height), Image.Resampling.BILINEAR))
    if framing == "subject at half size":
        canvas = Image.new("RGB", (width, height), tuple(int(v) for v in np.median(_border(image), axis=0)))
        canvas.paste(picture.resize((width // 2, height // 2), Image.Resampling.BILINEAR), (width // 4, height // 4))
        return np.asarray(canvas)
    if framing == "4x larger photo":
        return np.asarray(picture.resize((width * 4, height * 4), Image.Resampling.BICUBIC))
    raise ValueError(framing)


def _border(image: np.ndarray) -> np.ndarray:
    return np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])


def held_out_split(task: str, limit: int, seed: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """Up to `limit` images of the model's test split (stratified by label), with their labels."""
    from greenlens.core.images import decode_image
    from greenlens.core.tasks import TASKS

    root = DATA_DIR / Path(TASKS[task].data_folders[0]).parent  # test.csv names files from the data folder's parent
    with open(ROOT / "models" / task / "test.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rng = np.random.default_rng(seed)
    chosen = []
    for label in sorted({row["label"] for row in rows}):
        of_label = [row for row in rows if row["label"] == label]
        share = max(1, round(limit * len(of_label) / len(rows)))
        chosen += [of_label[i] for i in sorted(rng.permutation(len(of_label))[:share])]
    return [decode_image(root / row["file"]) for row in chosen], [row["label"] for row in chosen]


def out_of_distribution_sets(task: str, side: int) -> dict[str, list[np.ndarray]]:
    """Images no model of this task should take for its subject: made-up ones, the other task's,
    and the natural photos bundled with scikit-image."""
    import skimage.data

    from greenlens.training.guard import read_other_images, synthetic_images

    sets = {f"synthetic {kind}": images for kind, images in synthetic_images(40, side, seed=7).items()}
    other = DATA_DIR / ("aerial-cactus/test" if task == "leaf" else "strawberry-leaf/color")
    sets.update(read_other_images(other, limit=200, name="the other task's images"))
    photos = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
                 "cell", "colorwheel", "logo", "skin", "motorcycle_left", "motorcycle_right"):
        try:
            image = np.asarray(getattr(skimage.data, name)())
        except Exception:
            continue
        image = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]
        photos += _crops(image.astype(np.uint8), side)
    sets["scikit-image sample photos"] = photos
    return sets


def _crops(image: np.ndarray, side: int) -> list[np.ndarray]:
    """The whole photo and four corner crops, at `side` pixels on the long side for small models."""
    from PIL import Image

    height, width = image.shape[:2]
    crops = [image, image[: height // 2, : width // 2], image[: height // 2, width // 2 :],
             image[height // 2 :, : width // 2], image[height // 2 :, width // 2 :]]
    out = []
    for crop in crops:
        picture = Image.fromarray(np.ascontiguousarray(crop))
        picture.thumbnail((side, side), Image.Resampling.BILINEAR)
        out.append(np.asarray(picture))
    return out


def old_models(revision: str) -> Path:
    """The bundled models of `revision`, unpacked from git into a temporary folder."""
    archive = subprocess.run(["git", "archive", revision, "models"], cwd=ROOT, capture_output=True, check=True).stdout
    folder = Path(tempfile.mkdtemp(prefix="old-models-"))
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder / "models"


def outcomes(classifier, images: list[np.ndarray], labels: list[str]) -> dict[str, float]:
    """Shares answered right, refused (out of distribution / too poor to judge), answered wrong."""
    predictions = classifier.classify(images)
    n = len(predictions)
    ood = sum(p.out_of_distribution for p in predictions)
    poor = sum(p.problem is not None for p in predictions)
    right = sum(not p.refused and p.label == label for p, label in zip(predictions, labels))
    wrong = n - ood - poor - right
    return {"right": right / n, "refused_ood": ood / n, "refused_quality": poor / n, "wrong": wrong / n}


def images_per_task(values: list[str]) -> dict[str, int]:
    """`--images` as a count per task: "N" sets every task, "TASK=N" one; the rest keep their defaults."""
    counts = {"leaf": 120, "cactus": 1000}
    for value in values:
        task, _, count = value.rpartition("=")
        counts.update({task: int(count)} if task else dict.fromkeys(counts, int(count)))
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", default=OLD_REVISION, help="git revision of the models to compare with")
    parser.add_argument("--tasks", nargs="+", default=["leaf", "cactus"])
    parser.add_argument("--new", type=Path, default=ROOT / "models", help="folder of the new models (default: models/)")
    parser.add_argument("--images", nargs="+", default=[], metavar="N|TASK=N",
                        help="test images per condition, for every task or per task (default: leaf=120 cactus=1000)")
    parser.add_argument("--update-cards", action="store_true",
                        help="write the results into the new models' metrics.json and model cards (How it holds up)")
    parser.add_argument("--old-from", type=Path, metavar="JSON",
                        help="take the old models' rows from an earlier run's JSON (same --old and --images) instead of "
                        "classifying again: the old models, images and corruption seeds are the same, so are their rows "
                        "(but impulse noise, which imagecorruptions draws unseeded)")
    parser.add_argument("--note", default="", help="why this run was made, kept in the JSON")
    args = parser.parse_args()
    args.per_task = images_per_task(args.images)
    from greenlens.core.inference import Classifier

    earlier = earlier_old_rows(args.old_from, args) if args.old_from else None
    old_root = None if earlier else old_models(args.old)
    rows, summary, ood_rows = [], {}, []
    for task in args.tasks:
        started = time.perf_counter()
        images, labels = held_out_split(task, args.per_task[task])
        models = {"new": Classifier.load(str(args.new / task))}
        if earlier:
            rows += [row for row in earlier["rows"] if row["task"] == task]
            ood_rows += [row for row in earlier["out_of_distribution"] if row["task"] == task]
        else:
            models = {"old": Classifier.load(str(old_root / task)), **models}
        conditions = [("clean", 0, images)]
        jobs = [(name, severity) for name in CORRUPTIONS for severity in SEVERITIES]
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            corrupted = pool.map(corrupt, [(images, name, severity, 1000 * severity + i)
                                           for i, (name, severity) in enumerate(jobs)])
            corrupted = tqdm(corrupted, total=len(jobs), desc=f"{task}: corrupting", unit="condition")
            conditions += [(name, severity, out) for (name, severity), out in zip(jobs, corrupted)]
        conditions += [(framing, 0, [reframe(image, framing) for image in images]) for framing in FRAMINGS]
        for condition, severity, variant in tqdm(conditions, desc=f"{task}: classifying", unit="condition"):
            for which, classifier in models.items():
                row = {"task": task, "model": which, "condition": condition, "severity": severity,
                       **{k: round(v, 4) for k, v in outcomes(classifier, variant, labels).items()}}
                rows.append(row)
        for which in ("old", "new"):
            for severity in SEVERITIES:
                picked = [r for r in rows if r["task"] == task and r["model"] == which and r["severity"] == severity
                          and r["condition"] in CORRUPTIONS]
                summary[f"{task}/{which}/severity {severity}"] = {
                    key: round(float(np.mean([r[key] for r in picked])), 4)
                    for key in ("right", "refused_ood", "refused_quality", "wrong")
                } | {"worst_wrong": max(r["wrong"] for r in picked),
                     "worst_wrong_condition": max(picked, key=lambda r: r["wrong"])["condition"]}
        side = int(models["new"].repo.task.get("survey_tile") or 256)
        for set_name, ood_images in out_of_distribution_sets(task, side).items():
            for which, classifier in models.items():
                predictions = classifier.classify(ood_images)
                ood_rows.append({"task": task, "model": which, "set": set_name, "images": len(ood_images),
                                 "refused": round(float(np.mean([p.refused for p in predictions])), 4)})
        print(f"{task}: {len(images)} test images, {len(conditions)} conditions, {time.perf_counter() - started:.0f} s",
              file=sys.stderr)
    rows, ood_rows = old_beside_new(rows), old_beside_new(ood_rows, ("task", "set"))
    for key, values in summary.items():
        print(f"{key}: " + ", ".join(f"{k} {v}" for k, v in values.items()))
    report("robustness", rows, {"summary": summary, "out_of_distribution": ood_rows, "old_revision": args.old,
                                "seen_in_kind": sorted(SEEN_IN_KIND),
                                "images_per_condition": {task: args.per_task[task] for task in args.tasks},
                                **({"old_rows_from": str(args.old_from)} if args.old_from else {}),
                                **({"note": args.note} if args.note else {})})
    for row in ood_rows:
        print(row)
    if args.update_cards:
        for task in args.tasks:
            update_card(args.new / task, card_section(task, rows, ood_rows, args))
    return 0


def old_beside_new(rows: list[dict], fields: tuple[str, ...] = ("task", "condition", "severity")) -> list[dict]:
    """The rows of each task and condition (`fields`) side by side, the old model's first, in the order the new
    model's ran (rows taken from an earlier run come all before the new ones)."""
    def key(row: dict) -> tuple:
        return tuple(row[field] for field in fields)

    order = {key(row): index for index, row in enumerate(rows) if row["model"] == "new"}
    return sorted(rows, key=lambda row: (order[key(row)], row["model"] != "old"))


def earlier_old_rows(path: Path, args) -> dict:
    """The old models' rows and out-of-distribution rows of an earlier run (benchmarks/results/robustness.json), after
    checking that it compared the same revision on as many images per condition."""
    import json

    earlier = json.loads(Path(path).read_text())
    if earlier["old_revision"] != args.old:
        raise SystemExit(f"{path} compared revision {earlier['old_revision']}, not {args.old}")
    for task in args.tasks:
        if earlier["images_per_condition"].get(task) != args.per_task[task]:
            raise SystemExit(f"{path} ran {earlier['images_per_condition'].get(task)} {task} images per condition, "
                             f"not {args.per_task[task]}")
    return {"rows": [row for row in earlier["rows"] if row["model"] == "old"],
            "out_of_distribution": [row for row in earlier["out_of_distribution"] if row["model"] == "old"]}


def card_section(task: str, rows: list[dict], ood_rows: list[dict], args) -> dict:
    """What the model card's "How it holds up" shows: clean, the mean over corruptions per severity,
    each framing; refusal rates on images that are not the subject; old and new side by side."""
    def shares(picked: list[dict]) -> dict:
        right, wrong = (float(np.mean([r[key] for r in picked])) for key in ("right", "wrong"))
        return {"right": right, "wrong": wrong, "refused": 1 - right - wrong}

    def both(match) -> dict:
        return {which: shares([r for r in rows if r["task"] == task and r["model"] == which and match(r)])
                for which in ("old", "new")}

    table = [{"condition": "clean", **both(lambda r: r["condition"] == "clean")}]
    table += [{"condition": f"corruptions at severity {severity} (mean of {len(CORRUPTIONS)})",
               **both(lambda r, s=severity: r["severity"] == s and r["condition"] in CORRUPTIONS)} for severity in SEVERITIES]
    table += [{"condition": framing, **both(lambda r, f=framing: r["condition"] == f)} for framing in FRAMINGS]
    ood = []
    for name in dict.fromkeys(r["set"] for r in ood_rows if r["task"] == task):
        by_model = {r["model"]: r for r in ood_rows if r["task"] == task and r["set"] == name}
        ood.append({"set": name, "images": by_model["new"]["images"], "new": by_model["new"]["refused"],
                    "old": by_model["old"]["refused"]})
    images = args.per_task[task]
    command = " ".join(["python benchmarks/robustness.py --update-cards", *(["--images", *args.images] if args.images else [])])
    return {"images": images, "old_revision": args.old, "rows": table, "out_of_distribution": ood, "command": command}


def update_card(folder: Path, section: dict) -> None:
    import json

    from greenlens.core.repository import write_json
    from greenlens.training.card import render_card

    record = json.loads((folder / "metrics.json").read_text())
    record["robustness"] = section
    write_json(folder / "metrics.json", record)
    render_card(record).save(folder / "README.md")
    print(f"updated {folder / 'metrics.json'} and {folder / 'README.md'}")


if __name__ == "__main__":
    sys.exit(main())
