import numpy as np
import pytest

from model_training.data import (
    CropDataset,
    FixedCrops,
    folder_pairs,
    load_folder,
    parse_synthetic,
    split_names,
    synthetic_image,
)
from model_training.normalization import PercentileNormalization

NORM = PercentileNormalization()


def test_split_is_deterministic_disjoint_and_complete():
    names = [f"n{i}.png" for i in range(40)]
    split = split_names(names, (0.7, 0.1, 0.2), seed=3)
    assert split == split_names(list(reversed(names)), (0.7, 0.1, 0.2), seed=3)
    assert [len(split[k]) for k in ("train", "val", "test")] == [28, 4, 8]
    assert sorted(split["train"] + split["val"] + split["test"]) == sorted(names)
    assert split != split_names(names, (0.7, 0.1, 0.2), seed=4)
    with pytest.raises(ValueError, match="sum"):
        split_names(names, (0.5, 0.1, 0.1), 0)


def test_synthetic_spec_parsing():
    assert parse_synthetic("synthetic:12:32x48").count == 12
    assert parse_synthetic("synthetic:12:32x48").config.width == 48
    assert parse_synthetic("/data/folder") is None
    with pytest.raises(ValueError, match="synthetic:N"):
        parse_synthetic("synthetic:many")


def test_folder_loading_matches_by_name_and_normalizes(labelled_folder):
    (labelled_folder / "images" / "unmatched.png").write_bytes(b"not read")
    pairs = folder_pairs(labelled_folder)
    assert len(pairs) == 10 and all(i.stem == m.stem for i, m in pairs)
    items = load_folder(labelled_folder, NORM, names=["img00.png", "img03.png"])
    assert [i.name for i in items] == ["img00.png", "img03.png"]
    for item in items:
        assert item.image.dtype == np.float32
        assert np.percentile(item.image, 99.8) == pytest.approx(1.0, abs=1e-3)
        assert item.count == item.labels.max()


def test_synthetic_splits_never_share_images():
    spec = parse_synthetic("synthetic:2:64x64")
    val = synthetic_image(spec, "val", 0, NORM)
    test = synthetic_image(spec, "test", 0, NORM)
    assert not np.array_equal(val.image, test.image)
    assert np.array_equal(test.labels, synthetic_image(spec, "test", 0, NORM).labels)


def test_crop_dataset_is_reproducible_and_augments(labelled_folder):
    images = load_folder(labelled_folder, NORM)
    spec = parse_synthetic("synthetic:4:80x80")
    data = CropDataset(images, 8, spec, 48, NORM, seed=0)
    assert len(data) == 12
    data.set_epoch(1)
    first = [data[i] for i in (0, 9)]
    again = [data[i] for i in (0, 9)]
    data.set_epoch(2)
    other = data[0]
    for (image, target), (image2, target2) in zip(first, again, strict=True):
        assert image.shape == target.shape == (1, 48, 48)
        assert np.array_equal(image, image2) and np.array_equal(target, target2)
        assert set(np.unique(target.numpy())) <= {0.0, 1.0}
    assert not np.array_equal(first[0][0], other[0])


def test_small_images_are_padded_and_fixed_crops_are_stable(labelled_folder):
    images = load_folder(labelled_folder, NORM)[:2]
    crops = FixedCrops(images, 3, 96, seed=1)  # larger than the 64x64 images
    assert len(crops) == 6
    image, _target = crops[4]
    assert image.shape == (1, 96, 96)
    assert np.array_equal(crops[4][0], FixedCrops(images, 3, 96, seed=1)[4][0])
