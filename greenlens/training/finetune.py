"""Two-stage transfer learning behind one call, `fine_tune`: like fastai's `fine_tune`, a policy behind one
function (frozen first, then the top unfrozen), though not its schedule (no one-cycle learning rates: Adam at a
fixed rate per stage, early stopping on the validation loss).

Stage 1 trains a new head on a frozen ImageNet backbone; stage 2 unfreezes the backbone's top
blocks and trains them with the head at a low learning rate. Both stages run on activations
of the frozen bottom of the backbone computed once per image (and per augmented view): the
frozen layers give the same output every epoch, so recomputing them, as the original
notebooks did, spends most of a CPU's time on work already done.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import keras
import numpy as np

from greenlens.core.backbones import answering_on_views, build_backbone, build_classifier, get_backbone, parts
from greenlens.core.batches import predict_images
from greenlens.core.tasks import Augmentation, Recipe
from greenlens.training import augment as augmenting


@dataclass(frozen=True)
class TrainConfig:
    """A run: the task's recipe (what to train), how its views vary the images, and what varies
    between runs of it."""

    recipe: Recipe
    augmentation: Augmentation = field(default_factory=lambda: Augmentation("flips", "random flips"))
    weights: str | None = "imagenet"
    seed: int = 0


@dataclass
class TrainResult:
    model: keras.Model
    history: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def fine_tune(config: TrainConfig, num_classes: int, train_images, train_labels, val_images, val_labels, *,
              start: keras.Model | None = None) -> TrainResult:
    """Builds the classifier and trains it in two stages; returns it, answering on the recipe's views, with curves
    and timings. With `start`
    (a trained classifier, e.g. adapting it to a new flight) that model is trained further, in place, by
    the same two stages instead of a new one on `config.weights`."""
    keras.utils.set_random_seed(config.seed)
    recipe = config.recipe
    timings = {}

    started = time.perf_counter()
    model, head, backbone = build_model(config, num_classes) if start is None else reuse_model(start)
    stem, top = split_backbone(model, recipe.fine_tune_after)
    timings["build"] = time.perf_counter() - started

    started = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    train_views = np.stack([
        cache_activations(stem, [augment(image, config.augmentation, rng, view, plain_share=recipe.plain_share)
                                 for image in train_images],
                          f"Frozen layers, view {view + 1}/{recipe.views}")
        for view in range(recipe.views)
    ])
    val_activations = cache_activations(stem, val_images, "Frozen layers, validation")
    timings["cache_activations"] = time.perf_counter() - started

    started = time.perf_counter()
    data = dict(train_views=train_views, train_labels=train_labels, val_activations=val_activations, val_labels=val_labels)
    head_history = train_head(recipe, config.seed, top, head, **data)
    timings["stage1_head"] = time.perf_counter() - started

    started = time.perf_counter()
    fine_tune_history = train_top_blocks(recipe, config.seed, top, head, **data)
    timings["stage2_fine_tune"] = time.perf_counter() - started

    freeze(backbone)
    model = answering_on_views(model, recipe.answer_views)
    return TrainResult(model, {"stage1_head": head_history, "stage2_fine_tune": fine_tune_history}, timings)


def build_model(config: TrainConfig, num_classes: int) -> tuple[keras.Model, list, keras.Model]:
    """A new classifier on the backbone's `config.weights` (ImageNet): its model, head layers and backbone."""
    recipe = config.recipe
    spec = get_backbone(recipe.backbone)
    backbone = build_backbone(spec, config.weights, recipe.alpha)
    model, head = build_classifier(backbone, spec, recipe.image_size, num_classes, recipe.dropout)
    return model, head, backbone


def reuse_model(model: keras.Model) -> tuple[keras.Model, list, keras.Model]:
    """A trained classifier's model, head layers and backbone, to train further: its head is trained on,
    not replaced, so stage 1 starts from what the model already knows. It trains on each image's own view, as a
    new model does (`fine_tune` makes it answer on the recipe's views afterwards): a model that answers on 8 views
    would otherwise be trained on the mean of its 8 answers, at 8 backbone passes per image."""
    model = answering_on_views(model, 1)
    p = parts(model)
    return model, [p.dropout, p.dense], p.backbone


def split_backbone(model: keras.Model, cut_layer: str) -> tuple[keras.Model, keras.Model]:
    """Splits the classifier at `cut_layer`: `stem` (raw image -> activations of the frozen
    blocks, preprocessing included) and `top` (those activations -> pooled features).

    Both share their layers, and so their weights, with `model`: training `top` trains the model.
    """
    p = parts(model)
    cut = p.backbone.get_layer(cut_layer).output
    frozen_part = keras.Model(p.backbone.input, cut, name="frozen_blocks")
    top = keras.Model(cut, p.backbone.output, name="top_blocks")
    stem = keras.Model(model.input, frozen_part(p.preprocess(model.input)), name="stem")
    return stem, top


def augment(image: np.ndarray, augmentation: Augmentation, rng: np.random.Generator, view: int, *,
            plain_share: float = 0.0) -> np.ndarray:
    """View `view` of a training image: view 0 is the image itself, view 1 a flip or rotation of it (clean
    images stay a third of what stage 2 sees: with realistic variations only, clean accuracy fell), the
    others realistic variations (greenlens.training.augment): what users' photos and flights differ in, but for
    a `plain_share` of them that stay a flip or rotation too."""
    if view == 0:
        return image
    # No draw at a share of 0: the recipes' views stay the ones their seed gave before the share existed.
    if view == 1 or (plain_share > 0 and rng.random() < plain_share):
        return augmenting.geometric(image, augmentation, rng)
    return augmenting.view(image, augmentation, rng)


def cache_activations(stem: keras.Model, images, desc: str) -> np.ndarray:
    """Runs the frozen blocks once per image; BatchNorm is in inference mode, so the result is
    exactly what the frozen layers would give in any epoch."""
    return predict_images(stem, images, batch_size=64, desc=desc)


def freeze(backbone: keras.Model) -> None:
    backbone.trainable = False


def unfreeze_top_blocks(top: keras.Model) -> None:
    """Makes the top blocks trainable except BatchNorm.

    BatchNorm layers stay frozen (and so in inference mode): their moving statistics come
    from ImageNet, and updating them from small fine-tuning batches wrecks what the blocks learned.
    """
    top.trainable = True
    for layer in top.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def train_head(recipe: Recipe, seed: int, top, head, *, train_views, train_labels, val_activations,
               val_labels) -> dict[str, list[float]]:
    """Stage 1: a new head on frozen features, with a normal learning rate.

    The random head must be trained before the backbone is unfrozen, or its large early
    gradients would destroy the pretrained top blocks.
    """
    freeze(top)
    features = np.stack([top.predict(views, batch_size=256, verbose=0) for views in train_views])
    val_features = top.predict(val_activations, batch_size=256, verbose=0)
    head_model = keras.Sequential([keras.Input(shape=features.shape[2:]), *head], name="head")
    return _fit(
        head_model,
        ViewSampler(features, train_labels, recipe.batch_size, seed),
        (val_features, val_labels),
        recipe.head_learning_rate,
        recipe.head_epochs,
        recipe.patience,
    )


def train_top_blocks(recipe: Recipe, seed: int, top, head, *, train_views, train_labels, val_activations,
                     val_labels) -> dict[str, list[float]]:
    """Stage 2: unfreeze the top blocks and train them with the head at a low learning rate,
    so the pretrained filters adapt to the task instead of being overwritten."""
    unfreeze_top_blocks(top)
    model = keras.Sequential([keras.Input(shape=train_views.shape[2:]), top, *head], name="fine_tune")
    return _fit(
        model,
        ViewSampler(train_views, train_labels, recipe.batch_size, seed + 1),
        (val_activations, val_labels),
        recipe.fine_tune_learning_rate,
        recipe.fine_tune_epochs,
        recipe.patience,
    )


_interrupt_requested = threading.Event()


def interrupt(signum=None, frame=None):
    """Signal handler for SIGINT/SIGTERM: stop training with KeyboardInterrupt.

    Keras converts each step's logs inside a bare `except: pass`, and that is where the main thread
    waits most of the time, so the KeyboardInterrupt raised here is often swallowed. The flag lets
    `_ReraiseInterrupt` raise it again at the end of the batch.
    """
    _interrupt_requested.set()
    raise KeyboardInterrupt


class _ReraiseInterrupt(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if _interrupt_requested.is_set():
            raise KeyboardInterrupt

    on_test_batch_end = on_train_batch_end


def _fit(model, train_data, validation_data, learning_rate, epochs, patience) -> dict[str, list[float]]:
    if epochs <= 0:
        return {}
    # One epoch of linear warm-up, then cosine decay to zero: full-size steps on a freshly
    # unfrozen network wreck its pretrained filters before the gradients settle.
    steps = len(train_data)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, (epochs - 1) * steps), warmup_target=learning_rate, warmup_steps=steps
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
    callbacks = [stop, _ReraiseInterrupt()]
    history = model.fit(train_data, validation_data=validation_data, epochs=epochs, callbacks=callbacks, verbose=2)
    if _interrupt_requested.is_set():  # swallowed after the last batch
        raise KeyboardInterrupt
    return {name: [float(v) for v in values] for name, values in history.history.items()}


class ViewSampler(keras.utils.PyDataset):
    """Each epoch shows every training image once, in one of its cached augmented views."""

    def __init__(self, views: np.ndarray, labels: np.ndarray, batch_size: int, seed: int):
        super().__init__()
        self.views, self.labels, self.batch_size = views, np.asarray(labels), batch_size
        self.rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __getitem__(self, index):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        return self.views[self.view_of[rows], rows], self.labels[rows]

    def on_epoch_end(self):
        self.order = self.rng.permutation(len(self.labels))
        self.view_of = self.rng.integers(len(self.views), size=len(self.labels))
