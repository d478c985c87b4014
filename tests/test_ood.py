"""The guard's arithmetic (distances are Mahalanobis distances to the nearest class mean) and what it is fitted against."""

from __future__ import annotations

import numpy as np
import pytest
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


def test_the_guards_outlier_photos_come_with_installed_libraries():
    """The guard is fitted against crops of photos that scikit-learn, matplotlib and Gradio ship: an upgrade that
    drops one must fail here, not change the next guard silently."""
    from greenlens.core.tasks import TileStudent
    from greenlens.training.guard import BUNDLED_PHOTOS, bundled_photo, sample_photo_crops

    for name in BUNDLED_PHOTOS + TileStudent().photos:
        photo = bundled_photo(name)
        assert photo.dtype == np.uint8, name
        assert photo.shape[2] == 3, name
        assert min(photo.shape[:2]) >= 256, name
    crops = sample_photo_crops(40, 32)
    assert [crop.shape for crop in crops] == [(32, 32, 3)] * 40
    assert len({crop.tobytes() for crop in crops}) == 40
    with pytest.raises(ValueError, match="not installed"):
        bundled_photo("no-such-library:photo.jpg")
