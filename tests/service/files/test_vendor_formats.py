"""The optional CZI, ND2 and LIF readers on files written by tests/service/vendor_files.py.

Each format: sizes, channel names, pixel size and the content of one chosen plane; the pixel
limit refused from the header before any plane is decoded; a cut file refused with 400; other
axes (scenes, positions, tiles, series) refused with 422; the library missing answered with a
415 that names the extra. Tests of a reader that is not installed are skipped.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from service.files.imaging import VENDOR_FORMATS, ImageError, sniff_format
from service.files.vendor_formats import LIBRARIES, read_vendor
from tests.service.vendor_files import (
    CHANNELS,
    PIXEL_SIZE_UM,
    make_czi,
    make_lif,
    make_nd2,
    make_plane,
    make_rgb_plane,
)

WRITERS = {"czi": make_czi, "nd2": make_nd2, "lif": make_lif}
NAMES = {"czi": "Zeiss CZI", "nd2": "Nikon ND2", "lif": "Leica LIF"}
# Where each reader decodes pixels: patched to fail, to show the pixel check comes first.
DECODERS = {
    "czi": ("czifile.czifile", "SubBlockSegment", "data"),
    "nd2": ("nd2", "ND2File", "read_frame"),
    "lif": ("readlif.reader", "LifImage", "get_frame"),
}


@pytest.fixture(params=sorted(VENDOR_FORMATS))
def kind(request: pytest.FixtureRequest) -> str:
    pytest.importorskip(LIBRARIES[request.param])
    return request.param


def test_every_vendor_format_has_a_reader_and_a_fixture() -> None:
    assert set(LIBRARIES) == set(VENDOR_FORMATS) == set(WRITERS)


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_sniff_format_recognises_the_files(name: str) -> None:
    assert sniff_format(WRITERS[name]()) == name


def test_reads_sizes_names_pixel_size_and_the_chosen_plane(kind: str) -> None:
    stack = read_vendor(kind, WRITERS[kind]({"T": 2, "Z": 3}, height=48, width=80), 10**6)
    assert stack.format == kind
    assert stack.sizes == {"T": 2, "C": 3, "Z": 3}
    assert (stack.height, stack.width) == (48, 80)
    assert stack.channel_names == CHANNELS
    assert stack.pixel_size_um == pytest.approx(PIXEL_SIZE_UM)
    for t, c, z in ((1, 2, 1), (0, 1, 2), (1, 0, 0)):
        plane = stack.read_plane(t, c, z)
        assert plane.dtype == np.uint16
        np.testing.assert_array_equal(plane, make_plane(t, c, z, 48, 80))


def test_a_single_plane_file(kind: str) -> None:
    stack = read_vendor(kind, WRITERS[kind]({"Z": 1}, channels=["DAPI"]), 10**6)
    assert stack.sizes == {"T": 1, "C": 1, "Z": 1}
    assert stack.channel_names == ("DAPI",)
    np.testing.assert_array_equal(stack.read_plane(0, 0, 0), make_plane(0, 0, 0, 64, 64))


def test_names_and_pixel_size_absent_are_none() -> None:
    pytest.importorskip("czifile")
    stack = read_vendor("czi", make_czi(channels=None, pixel_size_um=None), 10**6)
    assert stack.channel_names == (None,)
    assert stack.pixel_size_um is None
    pytest.importorskip("readlif")
    stack = read_vendor("lif", make_lif(channels=None, pixel_size_um=None), 10**6)
    assert stack.channel_names == (None, None, None)
    assert stack.pixel_size_um is None


def test_a_bgr_czi_becomes_rgb_samples_last() -> None:
    pytest.importorskip("czifile")
    stack = read_vendor("czi", make_czi({"Z": 1}, channels=["Brightfield"], rgb=True), 10**6)
    plane = stack.read_plane(0, 0, 0)
    assert plane.shape == (64, 64, 3)
    np.testing.assert_array_equal(plane, make_rgb_plane(64, 64))


def test_a_czi_compression_czifile_cannot_decode_is_refused_up_front() -> None:
    pytest.importorskip("czifile")
    with pytest.raises(ImageError) as refused:
        read_vendor("czi", make_czi(compression=5), 10**6)  # zstd
    assert (refused.value.status, refused.value.code) == (415, "unsupported_compression")
    assert "OME-TIFF" in refused.value.message


def test_pixel_limit_is_refused_before_any_plane_is_decoded(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module, owner, method = DECODERS[kind]

    def decoded(*args: object, **kwargs: object) -> None:
        raise AssertionError("a plane was decoded before the pixel check")

    monkeypatch.setattr(getattr(sys.modules[module], owner), method, decoded)
    with pytest.raises(ImageError) as refused:
        read_vendor(kind, WRITERS[kind](height=64, width=64), max_pixels=64 * 64 - 1)
    assert (refused.value.status, refused.value.code) == (413, "image_too_large")
    assert "64x64 = 4096 pixels" in refused.value.message
    assert "at most 4095 pixels" in refused.value.message


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_a_truncated_file_is_refused(kind: str, keep: float) -> None:
    data = WRITERS[kind]()
    with pytest.raises(ImageError) as refused:
        read_vendor(kind, data[: int(len(data) * keep)], 10**6)
    assert (refused.value.status, refused.value.code) == (400, "invalid_image")
    assert NAMES[kind] in refused.value.message


@pytest.mark.parametrize(
    ("name", "data", "says"),
    [
        ("lif", lambda: make_lif({"M": 4}), "M (mosaic tiles)=4"),
    ],
)
def test_other_axes_are_refused_by_name(name: str, data, says: str) -> None:
    pytest.importorskip(LIBRARIES[name])
    with pytest.raises(ImageError) as refused:
        read_vendor(name, data(), 10**6)
    assert (refused.value.status, refused.value.code) == (422, "unsupported_axes")
    assert says in refused.value.message


def test_missing_library_answers_415_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("czifile", "nd2", "readlif", "readlif.reader"):
        monkeypatch.setitem(sys.modules, name, None)  # `import name` now raises ImportError
    for kind in sorted(VENDOR_FORMATS):
        with pytest.raises(ImageError) as refused:
            read_vendor(kind, WRITERS[kind](), 10**6)
        assert (refused.value.status, refused.value.code) == (415, "format_needs_extra")
        assert refused.value.message.startswith(f"{NAMES[kind]} files need the optional readers")
        assert "pip install 'cellcount[formats]'" in refused.value.message


def test_the_service_imports_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("czifile", "nd2", "readlif", "readlif.reader", "service.files.vendor_formats"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "service.files.vendor_formats")
    import service.files.vendor_formats  # noqa: F401 - the readers are imported only on use


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("czi", lambda: make_czi({"S": 3})),
        ("nd2", lambda: make_nd2({"P": 3})),
        ("lif", lambda: make_lif(images=3)),
    ],
)
def test_each_position_of_a_multi_position_file_is_its_own_stack(name: str, data) -> None:
    """CZI scenes, ND2 XY points and LIF series: the writers offset z by 100 per position."""
    pytest.importorskip(LIBRARIES[name])
    blob = data()
    for position in (0, 2):
        stack = read_vendor(name, blob, 10**6, position)
        assert stack.positions == 3 and stack.sizes["Z"] == 3
        assert stack.channel_names == CHANNELS
        expected = make_plane(0, 1, 2 + 100 * position, 64, 64)
        assert np.array_equal(stack.read_plane(0, 1, 2), expected)
    assert read_vendor(name, blob, 10**6, 7).positions == 3  # out of range: the first, to refuse


def test_czi_scenes_apart_on_the_slide_each_have_their_own_box() -> None:
    pytest.importorskip("czifile")
    blob = make_czi({"S": 2}, scene_step=(500, 300))
    for scene in (0, 1):
        stack = read_vendor("czi", blob, 64 * 64, scene)  # one scene fits the pixel limit
        assert (stack.height, stack.width) == (64, 64)
        assert np.array_equal(stack.read_plane(0, 0, 1), make_plane(0, 0, 1 + 100 * scene, 64, 64))


@pytest.mark.parametrize("size", [1e300, float("nan"), -1.0])
def test_an_implausible_pixel_size_is_ignored_saying_why(kind: str, size: float) -> None:
    """CZI Scaling, ND2 dCalibration (nd2 itself turns NaN into 1.0) and LIF Length."""
    stack = read_vendor(kind, WRITERS[kind](pixel_size_um=size), 10**6)
    assert stack.pixel_size_um is None
    assert "pixel size" in stack.pixel_size_ignored and "ignored" in stack.pixel_size_ignored
