"""Running a Keras model over images of any sizes: equal shapes are stacked into batches and go
through Keras' compiled predict path (calling a model eagerly is several times slower on a CPU)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from tqdm.auto import tqdm


def predict_images(model, images: list[np.ndarray], batch_size: int = 64, desc: str | None = None):
    """`model.predict_on_batch` over `images`, in their order; a tuple of arrays for a model
    with several outputs. `desc` shows a progress bar."""
    by_shape = defaultdict(list)
    for index, image in enumerate(images):
        by_shape[image.shape].append(index)
    batches = [indices[i : i + batch_size] for indices in by_shape.values() for i in range(0, len(indices), batch_size)]
    outputs = None
    with tqdm(total=len(images), desc=desc, unit="img", disable=desc is None) as bar:
        for batch in batches:
            result = model.predict_on_batch(np.stack([images[i] for i in batch]).astype(np.float32))
            parts = [np.asarray(part) for part in (result if isinstance(result, (list, tuple)) else [result])]
            if outputs is None:
                outputs = [np.empty((len(images), *part.shape[1:]), part.dtype) for part in parts]
            for output, part in zip(outputs, parts):
                output[batch] = part
            bar.update(len(batch))
    if outputs is None:
        raise ValueError("no images to predict")
    return outputs[0] if len(outputs) == 1 else tuple(outputs)
