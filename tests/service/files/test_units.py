import math

import numpy as np
import pytest
from pydantic import ValidationError

from model_training.checkpoint import CheckpointRecord
from service.files.imaging import DecodedImage, ImageError
from service.files.units import PixelSize, pixel_size, requested_diameter
from service.options import CountOptions

PLANE = np.zeros((100, 200), np.uint8)
RECORD = CheckpointRecord(base_channels=4, nucleus_diameter_px=16.0)
BOUNDS = (4.0, 128.0)


def test_the_option_wins_over_metadata():
    decoded = DecodedImage(plane=PLANE, format="ome-tiff", pixel_size_um=0.65)
    assert pixel_size(CountOptions(), decoded) == PixelSize(0.65, "metadata")
    assert pixel_size(CountOptions(pixel_size_um=0.1), decoded) == PixelSize(0.1, "given")
    assert pixel_size(CountOptions(), DecodedImage(plane=PLANE, format="png")).um is None


def test_an_ignored_file_pixel_size_is_reported_and_the_option_still_wins():
    decoded = DecodedImage(plane=PLANE, format="nd2", pixel_size_ignored="nan is not a size")
    assert pixel_size(CountOptions(), decoded) == PixelSize(None, "ignored", "nan is not a size")
    assert pixel_size(CountOptions(pixel_size_um=0.2), decoded) == PixelSize(0.2, "given")
    assert PixelSize(None, "ignored").density_per_mm2(5, 100) is None


@pytest.mark.parametrize("value", [0.0, 5e-5, 1.5e4, float("nan"), float("inf")])
def test_a_pixel_size_option_outside_the_plausible_range_is_refused(value):
    with pytest.raises(ValidationError, match="pixel_size_um"):
        CountOptions(pixel_size_um=value)


def test_the_largest_plausible_sizes_do_not_overflow():
    size = PixelSize(1e4, "given")
    assert math.isfinite(size.area_um2(64 * 1024**2)) and size.density_per_mm2(1, 1) > 0
    assert math.isfinite(PixelSize(1e-4, "given").density_per_mm2(10**9, 1))


def test_areas_and_density():
    size = PixelSize(0.5, "given")
    assert size.area_um2(4) == pytest.approx(1.0)
    # 200x100 px of 0.5 um = 0.005 mm^2; 10 cells -> 2000 per mm^2
    assert size.density_per_mm2(10, 200 * 100) == pytest.approx(2000.0)
    assert PixelSize(None, None).density_per_mm2(10, 100) is None


def test_diameter_um_becomes_pixels_and_needs_a_pixel_size():
    options = CountOptions(diameter_um=13.0)
    assert requested_diameter(options, PixelSize(0.65, "metadata"), RECORD, BOUNDS) == (
        pytest.approx(20.0),
        "given",
    )
    with pytest.raises(ImageError) as caught:
        requested_diameter(options, PixelSize(None, None), RECORD, BOUNDS)
    assert caught.value.code == "pixel_size_unknown" and "pixel_size_um" in caught.value.message
    with pytest.raises(ImageError) as caught:
        requested_diameter(
            CountOptions(diameter_um=500.0), PixelSize(0.65, "given"), RECORD, BOUNDS
        )
    assert caught.value.status == 422 and "outside [4, 128] px" in caught.value.message


def test_a_recorded_training_pixel_size_sets_the_scale():
    trained = RECORD.model_copy(update={"pixel_size_um": 0.5})
    # nuclei of 16 px at 0.5 um are 8 um; at 0.25 um per pixel they are 32 px
    found = requested_diameter(CountOptions(), PixelSize(0.25, "metadata"), trained, BOUNDS)
    assert found == (pytest.approx(32.0), "pixel_size")
    assert requested_diameter(CountOptions(), PixelSize(None, None), trained, BOUNDS) == (
        "auto",
        "auto",
    )
    # DSB2018 records no pixel size: the estimate decides even when the image has one
    assert requested_diameter(CountOptions(), PixelSize(0.25, "given"), RECORD, BOUNDS) == (
        "auto",
        "auto",
    )
    assert requested_diameter(
        CountOptions(diameter=20.0), PixelSize(0.25, "given"), trained, BOUNDS
    ) == (
        20.0,
        "given",
    )
