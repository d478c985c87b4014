"""The guard's arithmetic: distances are Mahalanobis distances to the nearest class mean."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import mahalanobis

from greenlens.core.ood import Gaussian


def test_distances_are_mahalanobis_to_the_nearest_class_mean():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 200)
    features = rng.normal(size=(400, 12)) * rng.uniform(0.5, 3, 12) + labels[:, None] * 4.0
    gaussian = Gaussian.fit(features, labels)
    queries = rng.normal(size=(25, 12)) * 3 + 2
    z = (queries - gaussian.center) / gaussian.scale
    expected = [min(mahalanobis(row, mean, gaussian.precision) for mean in gaussian.means) for row in z]
    # In float32 (a survey scores every tile): to float32's precision (measured: 3e-7).
    np.testing.assert_allclose(gaussian.distances(queries), expected, rtol=1e-6)
    # Points at a class mean are at distance zero, to within 0.01: at a mean other than the first, the expanded
    # form's terms cancel in float32 (thresholds are several units); the far queries are not.
    class_mean = gaussian.means[1] * gaussian.scale + gaussian.center
    assert gaussian.distances(class_mean[None])[0] < 0.01 < gaussian.distances(queries).min()
