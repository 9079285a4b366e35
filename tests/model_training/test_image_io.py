import numpy as np
import pytest
import tifffile
from PIL import Image

from model_training.image_io import read_image, read_labels, to_grayscale

PLANE = (np.arange(12 * 10).reshape(12, 10) % 200).astype(np.uint8)


def test_8_bit_png(tmp_path):
    Image.fromarray(PLANE).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.dtype == np.float32 and np.array_equal(image, PLANE)


def test_16_bit_png_keeps_full_range(tmp_path):
    plane = PLANE.astype(np.uint16) * 300
    Image.fromarray(plane).save(tmp_path / "a.png")
    assert np.array_equal(read_image(tmp_path / "a.png"), plane)


def test_rgba_with_equal_channels_gives_the_plane(tmp_path):
    rgba = np.stack([PLANE, PLANE, PLANE, np.full_like(PLANE, 255)], axis=-1)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    assert np.array_equal(read_image(tmp_path / "a.png"), PLANE)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiff_gray_and_rgb(tmp_path, dtype):
    plane = PLANE.astype(dtype)
    tifffile.imwrite(tmp_path / "g.tif", plane)
    tifffile.imwrite(tmp_path / "c.tiff", np.stack([plane] * 3, axis=-1), photometric="rgb")
    assert np.array_equal(read_image(tmp_path / "g.tif"), plane.astype(np.float32))
    assert np.allclose(read_image(tmp_path / "c.tiff"), plane.astype(np.float32))


def test_unsupported_shapes_are_explained():
    with pytest.raises(ValueError, match="2-4 channels"):
        to_grayscale(np.zeros((4, 4, 7)))


def test_instance_and_binary_masks(tmp_path):
    instances = np.zeros((10, 10), dtype=np.uint16)
    instances[1:4, 1:4] = 1
    instances[4:7, 1:4] = 2  # touching: stays two instances
    Image.fromarray(instances).save(tmp_path / "inst.png")
    assert read_labels(tmp_path / "inst.png").max() == 2
    binary = ((instances > 0) * 255).astype(np.uint8)
    binary[8, 8] = 255
    Image.fromarray(binary).save(tmp_path / "bin.png")
    labels = read_labels(tmp_path / "bin.png")
    assert labels.dtype == np.int32 and labels.max() == 2  # touching pair merges, speck separate
