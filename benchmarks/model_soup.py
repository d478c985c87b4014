"""A uniform model soup (Wortsman et al. 2022): the element-wise mean of every weight of model repos trained with
one recipe from the same ImageNet start, written into a copy of the first repo. Interpolating the weights of models
fine-tuned from one start often keeps or raises their accuracy and robustness where a single retraining trades one
for the other; here it was tried on two retrainings of each task (`benchmarks/results/model_soup.json`).

The copy still holds the first repo's guard, quality check, evaluation and runtime files: make them again for
the averaged weights with `train.py views` before measuring anything.

    python benchmarks/model_soup.py REPO REPO [REPO ...] --out DIR
    python train.py views DIR --ood-data OTHER_TASK_IMAGES
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from greenlens.core import repository


def soup(weights: list[list[np.ndarray]]) -> list[np.ndarray]:
    """The mean of each variable over the models (kernels, biases and BatchNorm's statistics alike)."""
    shapes = [[array.shape for array in model] for model in weights]
    if any(each != shapes[0] for each in shapes):
        raise SystemExit("the repos' models differ in their variables: a soup needs one architecture")
    return [np.mean([model[i] for model in weights], axis=0).astype(weights[0][i].dtype) for i in range(len(weights[0]))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repos", nargs="+", type=Path, help="model repo folders of one task and recipe")
    parser.add_argument("--out", type=Path, required=True, help="the new repo folder (replaced)")
    args = parser.parse_args()
    if len(args.repos) < 2:
        parser.error("a soup needs at least two repos")
    models = [repository.load(str(folder)).model for folder in args.repos]
    weights = [model.get_weights() for model in models]
    averaged = soup(weights)
    differing = sum(any(not np.array_equal(model[i], weights[0][i]) for model in weights[1:]) for i in range(len(averaged)))
    shutil.rmtree(args.out, ignore_errors=True)
    shutil.copytree(args.repos[0], args.out)
    models[0].set_weights(averaged)
    repository.save_model(models[0], args.out)
    print(f"{args.out}: the mean of {len(models)} models; {differing} of {len(averaged)} variables differed between them")


if __name__ == "__main__":
    main()
