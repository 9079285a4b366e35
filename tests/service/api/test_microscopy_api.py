"""Microscope files through the HTTP API: channels by name, stacks, pixel sizes, 32-bit labels.

The files are written here with tifffile (OME-TIFF with channel names and a pixel size), the
nuclei by the project's generator, so every count has a known truth."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
import tifffile

from service.files.imaging import ImageError, labels_png
from service.files.vendor_formats import LIBRARIES
from tests.service.conftest import png_array
from tests.service.microscopy_files import CHANNELS, nuclei, ome_tiff, stains
from tests.service.vendor_files import PIXEL_SIZE_UM, make_czi, make_lif, make_nd2

WRITERS = {"czi": make_czi, "nd2": make_nd2, "lif": make_lif}

PIXEL_UM = 0.65


@pytest.fixture(scope="module")
def four_channels() -> tuple[np.ndarray, int]:
    plane, count = nuclei(21)
    return stains(21, plane), count


def post(client, data: bytes, name: str = "plate_A01_s1.ome.tif", **params):
    return client.post("/count", files={"files": (name, data)}, params=params)


def test_four_channel_ome_tiff_is_counted_on_dapi_with_physical_units(client, four_channels):
    array, truth = four_channels
    data = ome_tiff(array, "CYX", CHANNELS, pixel_size_um=PIXEL_UM)
    response = post(client, data, include_cells="true")
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    assert result["plane"] == {
        "format": "ome-tiff",
        "axes": "C=4, Y=256, X=256",
        "channel": 1,
        "channel_name": "DAPI",
        "channel_source": "nuclear_stain",
        "z": None,
        "t": None,
        "position": None,
    }
    assert abs(result["count"] - truth) <= 0.1 * truth
    assert result["pixel_size_um"] == PIXEL_UM and result["pixel_size_source"] == "metadata"
    area_mm2 = 256 * 256 * PIXEL_UM**2 * 1e-6
    assert result["density_per_mm2"] == pytest.approx(result["count"] / area_mm2, rel=1e-3)
    cells = result["cells"]
    assert cells[0]["area_um2"] == pytest.approx(cells[0]["area"] * PIXEL_UM**2, rel=1e-3)
    mean = np.mean([cell["area"] for cell in cells]) * PIXEL_UM**2
    assert result["mean_cell_area_um2"] == pytest.approx(mean, rel=1e-3)
    assert result["diameter_um"] == pytest.approx(result["diameter_px"] * PIXEL_UM, rel=1e-2)

    # the same plane counted through the other channels' names would differ: choosing matters
    noise = post(client, data, channel="cy 5").json()["results"][0]
    assert noise["plane"]["channel"] == 3 and noise["plane"]["channel_source"] == "given"
    assert noise["count"] != result["count"]


def test_a_z_stack_needs_z_and_z_max_counts_it(client, four_channels):
    array, truth = four_channels
    stack = np.stack([(array * (0.6 + 0.1 * z)).astype(np.uint16) for z in range(5)])
    data = ome_tiff(stack, "ZCYX", CHANNELS, pixel_size_um=PIXEL_UM)
    refused = post(client, data)
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "plane_not_chosen" and error["filename"] == "plate_A01_s1.ome.tif"
    assert "C=4, Z=5, Y=256, X=256" in error["message"] and "z=max" in error["message"]
    projected = post(client, data, z="max")
    assert projected.status_code == 200, projected.text
    result = projected.json()["results"][0]
    assert result["plane"]["z"] == "max" and result["plane"]["channel_name"] == "DAPI"
    assert abs(result["count"] - truth) <= 0.1 * truth
    one = post(client, data, z=2, channel="1").json()["results"][0]
    assert one["plane"]["z"] == 2 and one["plane"]["channel"] == 1


def test_channels_without_a_nuclear_name_get_a_422_listing_them(client, four_channels):
    array, _ = four_channels
    data = ome_tiff(array, "CYX", ("ch405", "ch488", "ch561", "ch640"))
    error = post(client, data).json()["error"]
    assert error["code"] == "plane_not_chosen"
    assert "0 (ch405), 1 (ch488), 2 (ch561), 3 (ch640)" in error["message"]
    assert post(client, data, channel="ch405").status_code == 200


def test_pixel_size_option_and_diameter_um(client, four_channels):
    array, _ = four_channels
    data = ome_tiff(array[1], "YX")  # no pixel size in the file
    plain = post(client, data).json()["results"][0]
    assert plain["pixel_size_um"] is None and plain["density_per_mm2"] is None
    given = post(client, data, pixel_size_um=0.5).json()["results"][0]
    assert given["pixel_size_um"] == 0.5 and given["pixel_size_source"] == "given"
    # a diameter in micrometres is pinned in pixels through the pixel size
    pinned = post(client, data, pixel_size_um=0.5, diameter_um=9.0).json()["results"][0]
    assert pinned["diameter_source"] == "given" and pinned["diameter_px"] == pytest.approx(18.0)
    missing = post(client, data, diameter_um=9.0)
    assert missing.status_code == 422 and missing.json()["error"]["code"] == "pixel_size_unknown"
    both = post(client, data, diameter=18, diameter_um=9.0)
    assert both.status_code == 422 and "one of them" in both.json()["error"]["message"]


def test_labels_as_32_bit_tiff_match_the_png_and_carry_the_pixel_size(client, four_channels):
    array, _ = four_channels
    data = ome_tiff(array, "CYX", CHANNELS, pixel_size_um=PIXEL_UM)
    files = {"file": ("a.ome.tif", data)}
    tiff = client.post("/segment", files=files, params={"output": "labels", "format": "tiff"})
    assert tiff.status_code == 200 and tiff.headers["content-type"] == "image/tiff"
    with tifffile.TiffFile(io.BytesIO(tiff.content)) as tif:
        labels = tif.asarray()
        numerator, denominator = tif.pages.first.tags["XResolution"].value
    assert labels.dtype == np.uint32 and labels.max() == int(tiff.headers["x-cell-count"])
    assert 1e4 * denominator / numerator == pytest.approx(PIXEL_UM, rel=1e-4)
    png = client.post("/segment", files=files, params={"output": "labels"})
    assert np.array_equal(png_array(png.content), labels)
    as_json = client.post(
        "/segment",
        files=files,
        params={"output": "mask", "format": "tiff"},
        headers={"Accept": "application/json"},
    ).json()
    assert as_json["format"] == "tiff" and as_json["png_base64"] is None
    assert as_json["tiff_base64"] and as_json["plane"]["channel_name"] == "DAPI"


def test_png_labels_refuse_more_than_65535_cells_and_point_to_tiff():
    labels = np.arange(1, 300 * 300 + 1, dtype=np.int64).reshape(300, 300)
    with pytest.raises(ImageError) as caught:
        labels_png(labels)
    assert caught.value.status == 422 and "format=tiff" in caught.value.message
    labels_png(labels.clip(max=65535))  # 65535 cells still fit


def test_model_says_the_training_pixel_size_is_unknown(client):
    info = client.get("/model").json()
    assert info["trained_pixel_size_um"] is None


@pytest.mark.parametrize("kind", ["czi", "nd2", "lif"])
def test_vendor_files_are_counted_on_dapi_or_refused_with_the_extra_named(
    client, monkeypatch, kind
):
    """With the formats extra (installed by make test) a CZI, ND2 or LIF z-stack is counted
    on its DAPI channel; without the reader library the answer is a 415 naming the extra."""
    pytest.importorskip(LIBRARIES[kind])
    plane, truth = nuclei(33)
    height, width = plane.shape

    def planes(t: int, c: int, z: int, h: int, w: int):  # DAPI (c=0) is the nuclei
        noise = np.random.default_rng(100 * c + z).integers(0, 3000, (h, w))
        return plane if c == 0 else noise.astype(np.uint16)

    data = WRITERS[kind](height=height, width=width, planes=planes)
    name = f"well_B03.{kind}"
    refused = post(client, data, name)
    assert refused.status_code == 422 and "z=max" in refused.json()["error"]["message"]
    response = post(client, data, name, z=1)
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    assert result["plane"]["format"] == kind and result["plane"]["channel_name"] == "DAPI"
    assert result["plane"]["channel_source"] == "nuclear_stain"
    assert result["pixel_size_um"] == pytest.approx(PIXEL_SIZE_UM)
    assert result["density_per_mm2"] > 0
    assert abs(result["count"] - truth) <= 0.1 * truth

    monkeypatch.setitem(sys.modules, LIBRARIES[kind], None)  # as without the extra
    missing = post(client, data, name, z=1)
    assert missing.status_code == 415
    assert "pip install 'cellcount[formats]'" in missing.json()["error"]["message"]
    assert missing.json()["error"]["code"] == "format_needs_extra"


def test_a_bad_z_says_what_z_accepts_in_one_clause(client, four_channels):
    array, _ = four_channels
    data = ome_tiff(array[1], "YX")
    response = post(client, data, z="top")
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert message.count("query.z:") == 1 and "'max'" in message and "integer" in message
    assert "(got 'top')" in message
    negative = post(client, data, t=-1).json()["error"]["message"]
    assert negative.startswith("query.t:") and "greater than or equal to 0" in negative


def test_an_ome_tiff_of_two_wells_is_counted_per_position(client, four_channels):
    array, truth = four_channels
    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer, ome=True) as writer:
        for well in range(2):
            metadata = {"axes": "CYX", "Channel": {"Name": list(CHANNELS)}}
            writer.write(array if well == 1 else array // 8, metadata=metadata)
    data = buffer.getvalue()
    refused = post(client, data).json()["error"]
    assert refused["code"] == "plane_not_chosen" and "position=<0-1>" in refused["message"]
    result = post(client, data, position=1).json()["results"][0]
    assert result["plane"]["position"] == 1 and result["plane"]["axes"].startswith("P=2, C=4")
    assert abs(result["count"] - truth) <= 0.1 * truth
