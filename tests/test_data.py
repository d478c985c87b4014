"""Kaggle layouts -> labelled files; bad data; leaf-grouped splits. Real files throughout."""

from __future__ import annotations

import numpy as np
import pytest

from greenlens import data
from greenlens.tasks import CACTUS, LEAF


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
    assert len(examples) == 17 and len(examples.images) == 17
    assert all(image.shape == (32, 32, 3) and image.dtype == np.uint8 for image in examples.images)


def test_wrong_layout_says_what_was_expected(tmp_path):
    (tmp_path / "cats").mkdir()
    with pytest.raises(data.DataError, match="expected Strawberry___healthy, Strawberry___Leaf_scorch"):
        data.find_examples(LEAF, [tmp_path])
    with pytest.raises(data.DataError, match="expected train.csv"):
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
    train, validation = data.split(examples, 0.34, seed=3)
    again = data.split(examples, 0.34, seed=3)
    assert np.array_equal(train, again[0]) and np.array_equal(validation, again[1])
    assert not {examples.groups[i] for i in train} & {examples.groups[i] for i in validation}
    assert set(examples.labels[validation]) == {0, 1}


def test_real_leaf_split_never_shares_a_leaf(leaf_dir):
    examples = data.find_examples(LEAF, [leaf_dir / "color", leaf_dir / "segmented"])
    assert len(examples) == 2 * 1362
    assert all(not group.startswith("Strawberry") for group in examples.groups)  # every photo found in leaf_groups.csv
    train, validation = data.split(examples, 0.2, seed=0)
    train_leaves = {examples.groups[i] for i in train}
    validation_leaves = {examples.groups[i] for i in validation}
    assert not train_leaves & validation_leaves
    assert 0.15 < len(validation) / len(examples) < 0.25
    # The colour and segmented versions of one photo stay on one side.
    validation_names = {examples.files[i].name.replace("_final_masked.jpg", "") for i in validation}
    train_names = {examples.files[i].name.replace("_final_masked.jpg", "") for i in train}
    assert not {n.rsplit(".", 1)[0] for n in validation_names} & {n.rsplit(".", 1)[0] for n in train_names}


def test_real_cactus_layout(cactus_dir):
    examples = data.find_examples(CACTUS, [cactus_dir])
    assert data.class_balance(CACTUS, examples.labels) == {"cactus": 11259, "no cactus": 3741}
