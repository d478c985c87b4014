"""Kaggle layouts -> labelled files; bad data; leaf-grouped splits. Real files throughout."""

from __future__ import annotations

import numpy as np
import pytest

from greenlens.core.tasks import CACTUS, LEAF
from greenlens.training import data


def test_class_folder_layout_reads_labels_and_leaf_groups(generated_leaf_dir):
    examples = data.find_examples(LEAF, [generated_leaf_dir / "color"])
    assert len(examples) == 18
    assert data.class_balance(LEAF, examples.labels) == {"healthy": 9, "leaf scorch": 9}
    assert len(set(examples.groups)) == 6  # 3 photos per leaf share its leaf_id
    assert set(examples.sources) == {"color"}


def test_corrupt_images_are_skipped_and_named(generated_leaf_dir):
    bad = generated_leaf_dir / "color" / "Strawberry___healthy" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    truncated = generated_leaf_dir / "color" / "Strawberry___healthy" / "hl0_0.jpg"
    truncated.write_bytes(truncated.read_bytes()[:60])
    examples, skipped = data.read_images(data.find_examples(LEAF, [generated_leaf_dir / "color"]), progress=False)
    assert sorted(p.rsplit("/", 1)[-1] for p in skipped) == ["broken.jpg", "hl0_0.jpg"]
    assert len(examples) == 17
    assert len(examples.images) == 17
    assert all(image.shape == (32, 32, 3) and image.dtype == np.uint8 for image in examples.images)


def test_wrong_layout_says_what_was_expected(tmp_path):
    (tmp_path / "cats").mkdir()
    with pytest.raises(data.DataError, match="expected Strawberry___healthy, Strawberry___Leaf_scorch"):
        data.find_examples(LEAF, [tmp_path])
    with pytest.raises(data.DataError, match=r"expected train\.csv"):
        data.find_examples(CACTUS, [tmp_path])


def test_empty_class_stops_with_clear_message(generated_leaf_dir):
    for image in (generated_leaf_dir / "color" / "Strawberry___Leaf_scorch").iterdir():
        image.unlink()
    with pytest.raises(data.DataError, match="Strawberry___Leaf_scorch is missing or holds no images"):
        data.find_examples(LEAF, [generated_leaf_dir / "color"])


def test_csv_layout_and_missing_file_rows(generated_cactus_dir):
    examples = data.find_examples(CACTUS, [generated_cactus_dir])
    assert data.class_balance(CACTUS, examples.labels) == {"cactus": 20, "no cactus": 20}
    (generated_cactus_dir / "train" / "tile007.jpg").unlink()
    with pytest.raises(data.DataError, match=r"1 row\(s\) of .*train.csv name files missing .*tile007.jpg"):
        data.find_examples(CACTUS, [generated_cactus_dir])


def test_csv_with_wrong_columns(generated_cactus_dir):
    (generated_cactus_dir / "train.csv").write_text("image,label\na.jpg,1\n")
    with pytest.raises(data.DataError, match="expected id,has_cactus"):
        data.find_examples(CACTUS, [generated_cactus_dir])


def test_split_is_seeded_stratified_and_grouped(generated_leaf_dir):
    examples = data.find_examples(LEAF, [generated_leaf_dir / "color"])
    split = data.split(examples, 0.34, 0.34, seed=3)
    again = data.split(examples, 0.34, 0.34, seed=3)
    parts = (split.train, split.validation, split.test)
    assert all(np.array_equal(a, b) for a, b in zip(parts, (again.train, again.validation, again.test)))
    assert sorted(np.concatenate(parts)) == list(range(len(examples)))  # every image in exactly one split
    leaves = [{examples.groups[i] for i in part} for part in parts]
    assert not (leaves[0] & leaves[1])
    assert not (leaves[0] & leaves[2])
    assert not (leaves[1] & leaves[2])
    assert all(set(examples.labels[part]) == {0, 1} for part in parts)
    with pytest.raises(ValueError, match="leave images to train on"):
        data.split(examples, 0.5, 0.5)


def test_real_leaf_split_never_shares_a_leaf(leaf_dir):
    examples = data.find_examples(LEAF, [leaf_dir / "color", leaf_dir / "segmented"])
    assert len(examples) == 2 * 1362
    assert all(not group.startswith("Strawberry") for group in examples.groups)  # every photo found in leaf_groups.csv
    split = data.split(examples, seed=0)
    parts = {"train": split.train, "validation": split.validation, "test": split.test}
    leaves = {name: {examples.groups[i] for i in part} for name, part in parts.items()}
    assert not leaves["train"] & leaves["validation"]
    assert not leaves["train"] & leaves["test"]
    assert not leaves["validation"] & leaves["test"]
    for name in ("validation", "test"):
        assert 0.11 < len(parts[name]) / len(examples) < 0.19
        share = examples.labels[parts[name]].mean()
        assert abs(share - examples.labels.mean()) < 0.05  # stratified
    # The colour and segmented versions of one photo stay in one split.
    stems = {name: {examples.files[i].name.replace("_final_masked.jpg", "").rsplit(".", 1)[0] for i in part}
             for name, part in parts.items()}
    assert not stems["train"] & stems["test"]
    assert not stems["validation"] & stems["test"]


def test_real_cactus_layout(cactus_dir):
    examples = data.find_examples(CACTUS, [cactus_dir])
    assert data.class_balance(CACTUS, examples.labels) == {"cactus": 11259, "no cactus": 3741}
