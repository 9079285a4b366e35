import io

import numpy as np
import pytest
import tifffile

from service.files.imaging import ImageError
from service.files.tiff_stack import length_um, open_tiff_stack
from tests.service.microscopy_files import imagej_tiff, multipage_tiff, ome_tiff

RNG = np.random.default_rng(3)
STACK = RNG.integers(0, 4000, (2, 5, 3, 24, 32), dtype=np.uint16)  # T, Z, C, Y, X
LIMIT = 10**7


def read(data: bytes, t: int, c: int, z: int) -> np.ndarray:
    with open_tiff_stack(data, LIMIT) as stack:
        return stack.read_plane(t, c, z)


def test_ome_tiff_gives_axes_names_pixel_size_and_each_plane():
    data = ome_tiff(STACK, "TZCYX", ["GFP", "DAPI", "Cy5"], pixel_size_um=0.325)
    with open_tiff_stack(data, LIMIT) as stack:
        assert stack.format == "ome-tiff"
        assert stack.sizes == {"T": 2, "C": 3, "Z": 5}
        assert (stack.height, stack.width) == (24, 32)
        assert stack.channel_names == ("GFP", "DAPI", "Cy5")
        assert stack.pixel_size_um == pytest.approx(0.325)
        for t, c, z in [(0, 0, 0), (1, 2, 4), (0, 1, 3), (1, 0, 2)]:
            assert np.array_equal(stack.read_plane(t, c, z), STACK[t, z, c])


def test_ome_pixel_size_units_are_converted():
    buffer = io.BytesIO()
    metadata = {"axes": "YX", "PhysicalSizeX": 650, "PhysicalSizeXUnit": "nm"}
    tifffile.imwrite(buffer, STACK[0, 0, 0], ome=True, metadata=metadata)
    with open_tiff_stack(buffer.getvalue(), LIMIT) as stack:
        assert stack.pixel_size_um == pytest.approx(0.65)
    assert length_um(2.0, "mm") == 2000.0
    assert length_um(1.0, "parsec") is None
    assert length_um(-1.0, "um") == -1.0  # converted as it is; service.pixel_sizes judges it


def test_imagej_hyperstack_axes_labels_as_channel_names_and_resolution():
    labels = [name for _ in range(5) for name in ("Hoechst", "GFP", "RFP")]
    data = imagej_tiff(STACK[:1], "TZCYX", pixel_size_um=0.5, labels=labels)
    with open_tiff_stack(data, LIMIT) as stack:
        assert stack.format == "imagej-tiff"
        assert stack.sizes == {"T": 1, "C": 3, "Z": 5}
        assert stack.channel_names == ("Hoechst", "GFP", "RFP")
        assert stack.pixel_size_um == pytest.approx(0.5)
        assert np.array_equal(stack.read_plane(0, 2, 3), STACK[0, 3, 2])


def test_imagej_labels_that_differ_within_a_channel_name_nothing():
    labels = [f"z{z}-c{c}" for z in range(5) for c in range(3)]
    data = imagej_tiff(STACK[:1], "TZCYX", labels=labels)
    with open_tiff_stack(data, LIMIT) as stack:
        assert stack.channel_names == (None, None, None)
        assert stack.pixel_size_um is None


def test_plain_multipage_pages_are_z_planes_without_metadata():
    data = multipage_tiff(STACK[0, :, 0])
    with open_tiff_stack(data, LIMIT) as stack:
        assert stack.sizes == {"T": 1, "C": 1, "Z": 5} and stack.format == "tiff"
        assert np.array_equal(stack.read_plane(0, 0, 4), STACK[0, 4, 0])
        assert stack.pixel_size_um is None  # the 72 dpi of a plain TIFF is not a pixel size


def test_gray_extra_samples_are_channels_but_rgb_stays_colour():
    buffer = io.BytesIO()
    planar = STACK[0, 0]  # (3, Y, X)
    tifffile.imwrite(
        buffer, planar, photometric="minisblack", planarconfig="separate", extrasamples=[0, 0]
    )
    with open_tiff_stack(buffer.getvalue(), LIMIT) as stack:
        assert stack.sizes["C"] == 3
        assert np.array_equal(stack.read_plane(0, 2, 0), planar[2])
    rgb = io.BytesIO()
    colour = RNG.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    tifffile.imwrite(rgb, colour, photometric="rgb")
    with open_tiff_stack(rgb.getvalue(), LIMIT) as stack:
        assert stack.sizes == {"T": 1, "C": 1, "Z": 1}
        assert np.array_equal(stack.read_plane(0, 0, 0), colour)


def test_pixel_limit_is_checked_from_the_header_before_decoding():
    data = ome_tiff(STACK, "TZCYX")
    with pytest.raises(ImageError) as caught, open_tiff_stack(data, max_pixels=24 * 32 - 1):
        pass
    assert caught.value.status == 413


def test_a_stack_cut_short_is_a_400_naming_the_truncation():
    data = multipage_tiff(STACK[0, :, 0])
    cut = data[: len(data) - 600]  # the last page's pixels are gone
    with pytest.raises(ImageError) as caught:
        for z in range(5):
            read(cut, 0, 0, z)
    assert caught.value.status == 400 and "truncated" in caught.value.message


def test_an_axis_that_is_not_t_c_or_z_is_refused():
    buffer = io.BytesIO()
    positions = STACK[:, 0, :2].copy()  # (2 positions, 2 channels, Y, X)
    tifffile.imwrite(buffer, positions, metadata={"axes": "RCYX"}, photometric="minisblack")
    with pytest.raises(ImageError) as caught, open_tiff_stack(buffer.getvalue(), LIMIT):
        pass
    assert (caught.value.status, caught.value.code) == (422, "unsupported_axes")
    assert "'R' of 2 planes" in caught.value.message


def test_equal_one_page_series_are_one_stack_and_ome_images_are_positions():
    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as writer:  # shaped metadata: one series per write
        for plane in STACK[0, :, 0]:
            writer.write(plane)
    with open_tiff_stack(buffer.getvalue(), LIMIT) as stack:
        assert stack.sizes == {"T": 1, "C": 1, "Z": 5} and stack.positions == 1
        assert np.array_equal(stack.read_plane(0, 0, 3), STACK[0, 3, 0])
    wells = io.BytesIO()
    with tifffile.TiffWriter(wells, ome=True) as writer:
        for well, names in enumerate((["DAPI", "GFP"], ["GFP", "Hoechst"])):
            metadata = {"axes": "CYX", "Channel": {"Name": names}, "PhysicalSizeX": 0.2 + well}
            writer.write(STACK[0, well, :2], metadata=metadata)
    for well in (0, 1):
        with open_tiff_stack(wells.getvalue(), LIMIT, well) as stack:
            assert stack.positions == 2 and stack.sizes["C"] == 2
            assert stack.channel_names == (("DAPI", "GFP"), ("GFP", "Hoechst"))[well]
            assert stack.pixel_size_um == pytest.approx(0.2 + well)
            assert np.array_equal(stack.read_plane(0, 1, 0), STACK[0, well, 1])
            assert "P=2" in stack.describe_axes()


@pytest.mark.parametrize("size", [1e300, float("nan"), -0.5, 0.0, 1e-9, 2e4])
def test_an_implausible_ome_pixel_size_is_ignored_saying_why(size: float) -> None:
    data = ome_tiff(STACK[0, 0, :2], "CYX", ["DAPI", "GFP"], pixel_size_um=size)
    with open_tiff_stack(data, LIMIT) as stack:
        assert stack.pixel_size_um is None
        assert "it is ignored" in stack.pixel_size_ignored


def test_an_implausible_imagej_resolution_is_ignored_saying_why() -> None:
    data = imagej_tiff(STACK[:1, :1, :1], "TZCYX", pixel_size_um=1e6)  # 1 m per pixel
    with open_tiff_stack(data, LIMIT) as stack:
        assert stack.pixel_size_um is None
        assert "outside the plausible" in stack.pixel_size_ignored


def test_a_binary_only_ome_tiff_is_read_as_its_pages() -> None:
    """A companion-file dataset's TIFF names its metadata file and declares no Pixels: its
    pages are Z planes, not an inconsistency."""
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/'
        'Schemas/OME/2016-06" UUID="urn:uuid:1"><BinaryOnly MetadataFile="a.companion.ome" '
        'UUID="urn:uuid:2"/></OME>'
    )
    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as writer:
        for z in range(3):
            description = xml if z == 0 else None
            writer.write(STACK[0, z, 0], description=description, metadata=None, contiguous=False)
    with open_tiff_stack(buffer.getvalue(), LIMIT) as stack:
        assert stack.sizes["Z"] == 3
        assert np.array_equal(stack.read_plane(0, 0, 2), STACK[0, 2, 0])
