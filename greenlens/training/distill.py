"""The survey's small tile model, distilled from the classifier (Hinton et al. 2015, arXiv:1503.02531).

The classifier (the teacher) upsamples every 32 x 32 tile to 128 x 128 for an ImageNet backbone: that is
most of a survey's time. A small CNN at the tiles' own resolution (greenlens.core.backbones.tile_cnn) learns
from the teacher's probabilities as soft targets, on the training tiles, the task's unlabelled tiles and
augmented views of both, so it learns the teacher's answers where the labels say nothing. It also learns to
predict principal components of the teacher's guard features (on those tiles and on made-up outliers, crops of
natural photos among them): trained on probabilities alone, its features told a leaf shrunk to a tile from ground
far less well than the teacher's. Its own guard is fitted on its own features, that prediction among them.
It becomes the survey's model only where it keeps the teacher's accuracy and guard and is much faster
(`SHIP_RULE`), measured here, not assumed; otherwise surveys keep the teacher's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import keras
import numpy as np

from greenlens.core.backbones import (
    MIMIC,
    PROBABILITIES,
    TILE_CNN,
    build_classifier,
    feature_model,
    parts,
    tile_cnn,
)
from greenlens.core.batches import predict_images
from greenlens.core.litert import LiteRTModel, convert
from greenlens.core.ood import DistributionGuard
from greenlens.core.runtimes import INT8_TOLERANCE
from greenlens.core.tasks import Augmentation, TileStudent
from greenlens.training import guard as guard_fitting
from greenlens.training.finetune import augment

# The student replaces the teacher's tile model only when all of these hold (issue 21).
SHIP_RULE = {"max_accuracy_drop": 0.001, "min_accuracy": 0.996, "min_roc_auc": 0.9995, "min_speedup": 10.0}
SPEED_TILES = 4096  # tiles timed per model and round, after a warm-up batch
SPEED_ROUNDS = 5  # rounds of timing each model in turn; the rule reads the medians
SPEED_SECONDS = 1.0  # each model's turn in a round runs the tiles again until this long has passed


@dataclass
class Student:
    model: keras.Model
    guard: DistributionGuard
    report: dict  # what the card's section shows: accuracy, agreement, guard, tiles/s, the verdict
    tile_model: bytes  # the LiteRT tile model (probabilities and guard features), as written into the repo


def distill(teacher: keras.Model, recipe: TileStudent, augmentation: Augmentation, splits: dict, *, tile: int,
            positive_index: int, unlabelled: list[np.ndarray], teacher_layers: list[str], teacher_guard: dict,
            other_images: dict, seed: int = 0, log=print) -> Student:
    """Trains the student on `splits["train"]` and `unlabelled` tiles with the teacher's soft targets, stops early
    on the validation tiles' labels, fits its guard, and measures it against the teacher on the test split."""
    keras.utils.set_random_seed(seed)
    train, validation, test = splits["train"], splits["validation"], splits["test"]
    # The teacher the rule compares with is the tile model the student would replace in surveys: the classifier on one
    # view of each tile. The soft targets come from the classifier on `recipe.teacher_views` views of each tile.
    teacher_tile = convert(feature_model(teacher, teacher_layers, tile, views=1)[0])
    classes = int(teacher.output.shape[-1])
    outliers = guard_fitting.outlier_images(augmentation, tile, photo_crops=recipe.photo_crops,
                                            photos=recipe.photos)
    started = time.perf_counter()
    views, targets, features = soft_targets(target_teacher(teacher, teacher_layers, tile, views=recipe.teacher_views,
                                                           tile_model=teacher_tile),
                                            recipe, augmentation, list(train.images), train.labels,
                                            list(unlabelled) + outliers, classes=classes, seed=seed)
    mimic = MimicTargets.fit(features[0], recipe.mimic) if recipe.mimic else None
    if mimic is not None:
        targets[MIMIC] = mimic(features)
    del features
    validation_targets = {PROBABILITIES: keras.utils.to_categorical(validation.labels, classes)}
    if mimic is not None:
        validation_targets[MIMIC] = mimic(_run(teacher_tile, list(validation.images))[0])
    target_seconds = time.perf_counter() - started
    started = time.perf_counter()
    student = build_student(recipe, tile, classes)
    history = fit_student(student, recipe, views, targets, np.stack(validation.images), validation_targets, seed=seed)
    train_seconds = time.perf_counter() - started
    guard, _, guard_report, probabilities = guard_fitting.fit_and_measure(
        student, list(TILE_CNN.guard_layers), list(views[0, : len(train)]) + list(views[2, : len(train)]),
        np.concatenate([train.labels, train.labels]), list(validation.images), list(test.images), other_images, tile,
        threshold_images=[augment(image, augmentation, np.random.default_rng(seed + 7), 2) for image in validation.images],
        outlier_images=outliers,
    )
    teacher_test = _run(teacher_tile, list(test.images))[1]
    # The tile model in float32, and in full-integer int8 (post-training, calibrated on training tiles), from one graph.
    tile_graph = feature_model(student, list(TILE_CNN.guard_layers), tile)[0]
    tile_model = convert(tile_graph)
    quantized = convert(tile_graph, np.stack(train.images[:300]).astype(np.float32))
    rounds = tiles_per_second({"teacher": teacher_tile, "student": tile_model, "int8": quantized}, tile=tile)
    speed = {name: float(np.median(rates)) for name, rates in rounds.items()}
    float_validation = float((probabilities["validation"].argmax(1) == validation.labels).mean())
    # Made-up outliers from another seed than those the guard was fitted against: they check that int8's features
    # keep the guard's refusals (fitted on float32's), which validation accuracy says nothing about.
    fresh_outliers = guard_fitting.outlier_images(augmentation, tile, seed=guard_fitting.OUTLIER_SEED + 1,
                                                  photo_crops=recipe.photo_crops, photos=recipe.photos)
    int8 = int8_check(quantized, validation, positive_index=positive_index, speed=speed.pop("int8"),
                      float_accuracy=float_validation, float_speed=speed["student"],
                      guard=guard, outliers=fresh_outliers, float_refused=_refused(tile_model, guard, fresh_outliers))
    if int8["used"]:
        tile_model, speed["student"] = quantized, int8["tiles_per_s"]
    # Measured as surveys will run it: the LiteRT tile model that is written (int8 where it was chosen).
    features, student_test = _run(tile_model, list(test.images))
    guard_report = {**guard_report, "test_flagged": float(guard.flags(features).mean()),
                    "out_of_distribution_flagged": tile_refusals(tile_model, guard, other_images, tile=tile)}
    report = measure(student_test, teacher_test, test.labels, guard_report, teacher_guard, speed,
                     positive_index=positive_index)
    report["int8"] = int8
    report["tiles_per_s_rounds"] = rounds
    report.update(recipe=dict(vars(recipe)), history=history,
                  tiles={"train": len(train), "unlabelled": len(unlabelled), "outliers": len(outliers), "views": recipe.views},
                  teacher_views=target_views(teacher, recipe.teacher_views),
                  timings={"teacher_targets": target_seconds, "training": train_seconds})
    log(summary(report))
    return Student(student, guard, report, tile_model)


def target_views(teacher: keras.Model, views: int | None) -> int:
    """The views whose probabilities the soft targets average: `views`, or the classifier's own (None)."""
    return parts(teacher).views if views is None else views


def target_teacher(teacher: keras.Model, layers: list[str], tile: int, *, views: int | None, tile_model: bytes):
    """What the soft targets come from: the classifier on `target_views` of each tile, with its guard features
    (the tile's own view's), run in LiteRT: a batch -> (features, probabilities). For 8 views LiteRT ran 4x Keras'
    predict here (49 against 12 tiles/s on two cores). `tile_model`: its one-view tile model, already converted."""
    views = target_views(teacher, views)
    return LiteRTModel(tile_model if views == 1 else convert(feature_model(teacher, layers, tile, views=views)[0]))


def soft_targets(teacher, recipe: TileStudent, augmentation: Augmentation, images: list[np.ndarray],
                 labels: np.ndarray, unlabelled: list[np.ndarray], *, classes: int,
                 seed: int) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """(views, N, t, t, 3) uint8 tiles; their targets by output: (views, N, classes) probabilities, each view's
    teacher probabilities mixed with the label for labelled tiles (`recipe.label_weight`); and the teacher's
    guard features of each view, (views, N, features), from the same pass (`teacher`: a batch -> (features,
    probabilities), `target_teacher`)."""
    rng = np.random.default_rng(seed)
    tiles = images + list(unlabelled)
    onehot = np.zeros((len(tiles), classes), np.float32)
    onehot[np.arange(len(images)), labels] = 1.0
    weight = np.where(np.arange(len(tiles)) < len(images), recipe.label_weight, 0.0)[:, None].astype(np.float32)
    views, targets, features = [], [], []
    for view in range(recipe.views):
        batch = np.stack([augment(tile, augmentation, rng, view) for tile in tiles])
        guard_features, teacher_probabilities = predict_images(teacher, list(batch), batch_size=1024,
                                                               desc=f"Teacher's targets, view {view + 1}/{recipe.views}")
        views.append(batch)
        targets.append(weight * onehot + (1 - weight) * teacher_probabilities)
        features.append(guard_features)
    return np.stack(views), {PROBABILITIES: np.stack(targets)}, np.stack(features)


@dataclass
class MimicTargets:
    """What the student's mimic head learns: the teacher's guard features, standardised, in their first
    `components` principal components, each scaled to unit variance. Fitted on the tiles and the made-up
    outliers together, so the components include the directions in which the outliers differ from tiles,
    which the teacher's guard reads and which a fit on tiles alone would leave out."""

    center: np.ndarray
    scale: np.ndarray
    pca: object  # sklearn.decomposition.PCA, whitened

    @classmethod
    def fit(cls, features: np.ndarray, components: int) -> MimicTargets:
        from sklearn.decomposition import PCA

        center, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
        pca = PCA(components, whiten=True, random_state=0).fit((features - center) / scale)
        return cls(center, scale, pca)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """Targets of features (..., features) -> (..., components), float32."""
        flat = features.reshape(-1, features.shape[-1])
        projected = self.pca.transform((flat - self.center) / self.scale)  # type: ignore[attr-defined]
        return projected.reshape(*features.shape[:-1], -1).astype(np.float32)


def build_student(recipe: TileStudent, tile: int, classes: int) -> keras.Model:
    """Raw RGB tile -> probabilities, with the classifier's layer names (so its guard features, tile model
    and runtimes come from the same code as the teacher's)."""
    model, _ = build_classifier(tile_cnn(recipe.widths, recipe.mimic, recipe.depths), TILE_CNN, tile, classes, recipe.dropout)
    return model


def training_outputs(model: keras.Model, names: list[str]) -> keras.Model:
    """The student with the outputs it is trained on, by name: its probabilities and, where it has one, its
    mimic head's prediction (the same layers and weights: training this trains the student)."""
    p = parts(model)
    others = [name for name in names if name != PROBABILITIES]
    inner = keras.Model(p.backbone.input, [p.backbone.output, *(p.backbone.get_layer(name).output for name in others)])
    pooled, *outputs = inner(p.preprocess(model.input))
    return keras.Model(model.input, {PROBABILITIES: p.head(pooled), **dict(zip(others, outputs))})


def fit_student(model: keras.Model, recipe: TileStudent, views: np.ndarray, targets: dict[str, np.ndarray],
                validation: np.ndarray, validation_targets: dict[str, np.ndarray], *, seed: int) -> dict[str, list[float]]:
    """Adam with a warm-up and cosine decay, each epoch every tile once in one of its views; early stopping on
    the validation tiles' labels (the teacher's probabilities are for training only; the mimic's loss on
    validation is logged, not monitored)."""
    sampler = SoftViewSampler(views, targets, recipe.batch_size, seed)
    steps = len(sampler)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, decay_steps=max(1, (recipe.epochs - 1) * steps),
                                                      warmup_target=recipe.learning_rate, warmup_steps=steps)
    trained = training_outputs(model, list(targets))
    losses = {PROBABILITIES: ("categorical_crossentropy", 1.0), MIMIC: ("mse", recipe.mimic_weight)}
    trained.compile(optimizer=keras.optimizers.Adam(schedule), loss={name: losses[name][0] for name in targets},
                    loss_weights={name: losses[name][1] for name in targets}, metrics={PROBABILITIES: ["accuracy"]})
    monitor = "val_loss" if len(targets) == 1 else f"val_{PROBABILITIES}_loss"
    # Watched from the second half of the schedule only: at the first half's high learning rate the validation loss
    # jumps about, and a student with a mimic head stopped at epoch 14 of 40 with the weights of epoch 6.
    stop = keras.callbacks.EarlyStopping(monitor=monitor, mode="min", patience=recipe.patience, restore_best_weights=True,
                                         start_from_epoch=recipe.epochs // 2)
    history = trained.fit(sampler, validation_data=(validation.astype(np.float32), validation_targets),
                          epochs=recipe.epochs, callbacks=[stop], verbose=2)
    return {name: [float(v) for v in values] for name, values in history.history.items()}


class SoftViewSampler(keras.utils.PyDataset):
    """Each epoch every tile once, in one of its cached views, with that view's targets (the teacher's of that
    view): `targets` by output name, each (views, N, ...)."""

    def __init__(self, views: np.ndarray, targets: dict[str, np.ndarray], batch_size: int, seed: int):
        super().__init__()
        self.views, self.targets, self.batch_size = views, targets, batch_size
        self.count = views.shape[1]
        self.rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def __len__(self) -> int:
        return -(-self.count // self.batch_size)

    def __getitem__(self, index):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        view = self.view_of[rows]
        return self.views[view, rows], {name: targets[view, rows] for name, targets in self.targets.items()}

    def on_epoch_end(self):
        self.order = self.rng.permutation(self.count)
        self.view_of = self.rng.integers(len(self.views), size=self.count)


def _run(tile_model: bytes, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(guard features, probabilities) of a LiteRT tile model on same-sized tiles."""
    return LiteRTModel(tile_model)(np.stack(images).astype(np.float32))


def _refused(tile_model: bytes, guard: DistributionGuard, images: list[np.ndarray]) -> float:
    """The share of `images` the guard flags on a LiteRT tile model's features."""
    return float(guard.flags(_run(tile_model, images)[0]).mean())


def _speed_tiles(tile: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (SPEED_TILES, tile, tile, 3)).astype(np.float32)


def tile_refusals(tile_model: bytes, guard: DistributionGuard, other_images: dict, *, tile: int) -> dict[str, float]:
    """The share of each out-of-distribution set (the synthetic kinds of the guard's report, and `other_images`
    resized to the tile) that the tile model's guard refuses."""
    from PIL import Image

    sets = {f"synthetic {kind}": images for kind, images in guard_fitting.synthetic_images(40, tile).items()}
    sets.update({name: [np.asarray(Image.fromarray(image).resize((tile, tile), Image.Resampling.BILINEAR))
                        for image in images] for name, images in other_images.items() if images})
    return {name: _refused(tile_model, guard, images) for name, images in sets.items()}


def tiles_per_second(tile_models: dict[str, bytes], *, tile: int, threads: int | None = None,
                     rounds: int = SPEED_ROUNDS) -> dict[str, list[float]]:
    """LiteRT tiles/s of each tile model by name on the same random tiles, in `rounds` rounds that time each model in
    turn, after a warm-up batch each: compare their medians. Each turn lasts at least SPEED_SECONDS: a fast model's one
    pass over the tiles took a quarter of a second, short enough for anything else on the machine to move it. One
    timing each was not enough: the same two models measured 9.0x to 13.2x apart in three runs of one session on one
    machine, so a single timing could pass or fail the rule's speed check by chance."""
    tiles = _speed_tiles(tile)
    runners = {name: LiteRTModel(model, threads=threads) for name, model in tile_models.items()}
    for runner in runners.values():
        runner(tiles[:256])
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, runner in runners.items():
            started, done = time.perf_counter(), 0
            while not done or time.perf_counter() - started < SPEED_SECONDS:
                runner(tiles)
                done += len(tiles)
            rates[name].append(done / (time.perf_counter() - started))
    return rates


def int8_check(quantized: bytes, validation, *, positive_index: int, speed: float, float_accuracy: float,
               float_speed: float, guard: DistributionGuard, outliers: list[np.ndarray], float_refused: float) -> dict:
    """The student's int8 tile model against its float32 one: validation accuracy, tiles/s (`speed`,
    measured in the same rounds as float32's) and the guard's refusals of made-up `outliers`. It replaces float32 only
    within INT8_TOLERANCE of its accuracy, faster, and refusing as many outliers (decided on validation tiles and
    made-up images: the test split and the measured out-of-distribution sets stay for the published numbers)."""
    _, probabilities = _run(quantized, list(validation.images))
    accuracy = float(((probabilities[:, positive_index] >= 0.5) == (validation.labels == positive_index)).mean())
    refused = _refused(quantized, guard, outliers)
    used = accuracy >= float_accuracy - INT8_TOLERANCE and speed > float_speed and refused >= float_refused
    return {"validation_accuracy": accuracy, "tiles_per_s": speed, "outliers_refused": refused,
            "float32_validation_accuracy": float_accuracy, "float32_tiles_per_s": float_speed,
            "float32_outliers_refused": float_refused, "outliers": len(outliers), "used": used}


def measure(student: np.ndarray, teacher: np.ndarray, labels: np.ndarray, guard: dict, teacher_guard: dict,
            speed: dict[str, float], *, positive_index: int) -> dict:
    """The student against the teacher on the test split and the rule's verdict."""
    from sklearn.metrics import roc_auc_score

    accuracy = float((student.argmax(1) == labels).mean())
    teacher_accuracy = float((teacher.argmax(1) == labels).mean())
    aucs = [float(roc_auc_score(labels == positive_index, p[:, positive_index])) for p in (student, teacher)]
    refusals = {name: (share, teacher_guard.get("out_of_distribution_flagged", {}).get(name))
                for name, share in guard["out_of_distribution_flagged"].items()}
    guard_ok = all(theirs is None or mine >= theirs for mine, theirs in refusals.values())
    speedup = speed["student"] / speed["teacher"]
    checks = {
        f"accuracy within {100 * SHIP_RULE['max_accuracy_drop']:g} point of the teacher's":
            accuracy >= teacher_accuracy - SHIP_RULE["max_accuracy_drop"],
        f"accuracy at least {SHIP_RULE['min_accuracy']}": accuracy >= SHIP_RULE["min_accuracy"],
        f"ROC AUC at least {SHIP_RULE['min_roc_auc']}": aucs[0] >= SHIP_RULE["min_roc_auc"],
        "guard refuses each out-of-distribution set as often as the teacher's": guard_ok,
        f"at least {SHIP_RULE['min_speedup']:g}x the teacher's tiles/s": speedup >= SHIP_RULE["min_speedup"],
    }
    return {
        "test_accuracy": accuracy, "teacher_test_accuracy": teacher_accuracy,
        "test_roc_auc": aucs[0], "teacher_test_roc_auc": aucs[1],
        "agreement_with_teacher": float((student.argmax(1) == teacher.argmax(1)).mean()),
        "test_tiles": len(labels), "guard": guard, "refusals_vs_teacher": refusals,
        "tiles_per_s": speed, "speedup": speedup, "checks": checks, "shipped": all(checks.values()),
    }


def summary(report: dict) -> str:
    verdict = "shipped as the survey's tile model" if report["shipped"] else "not shipped: " + "; ".join(
        name for name, ok in report["checks"].items() if not ok)
    return (f"Distilled tile model: test accuracy {report['test_accuracy']:.4f} (teacher "
            f"{report['teacher_test_accuracy']:.4f}), ROC AUC {report['test_roc_auc']:.5f}, agreement with the teacher "
            f"{report['agreement_with_teacher']:.4f}, {report['tiles_per_s']['student']:.0f} tiles/s "
            f"({report['speedup']:.1f}x the teacher's); {verdict}")
