"""Hostile microscope files (issue 17) through the real app: a clear 4xx, bounded memory, and
the service still counts a good image the same afterwards.

Memory is measured with ``tracemalloc`` in this process, where the live server's threads
decode: Python and numpy allocations are both traced. The bound (200 MiB) is far below what
the unbounded decoders took (2.5 GiB and more for the bombs here) and far above what a
bounded refusal needs.
"""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tifffile

from service.files.decoding import decode_image
from service.files.planes import PlaneRequest
from service.settings import Settings
from tests.service.bad_inputs import BOMB_BYTES, hostile_cases, tiff_pages, zlib_bomb
from tests.service.conftest import LiveServer, start_server, synthetic_png
from tests.service.microscopy_files import multipage_tiff, nuclei, ome_tiff, stains

PEAK_LIMIT = 200 * 1024**2
CASES = hostile_cases()
PINNED = {"warmup": False, "precision": "bf16", "channels_last": True}


@pytest.fixture(scope="module")
def good_count(live_server: LiveServer) -> int:
    """The count of a good image before any hostile file arrived."""
    with httpx.Client(base_url=live_server.url, timeout=120) as http:
        return _count(http)


def _count(client: httpx.Client) -> int:
    data, _ = synthetic_png(1717, count=15)
    response = client.post("/count", files={"files": ("good.png", data)})
    assert response.status_code == 200, response.text
    return response.json()["results"][0]["count"]


def _peak_of(send) -> tuple[httpx.Response, int]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        response = send()
        return response, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_bomb_really_is_one():
    assert BOMB_BYTES >= 2.5 * 1024**3 and len(zlib_bomb()) < 3 * 1024**2


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_hostile_files_get_a_clear_answer_within_bounded_memory(client, good_count, case):
    for path, field in (("/count", "files"), ("/segment", "file"), ("/inspect", "file")):
        expected = 200 if path == "/inspect" and case.in_pixels else case.status
        response, peak = _peak_of(
            lambda path=path, field=field: client.post(
                path,
                files={field: (case.filename, case.data)},
                params={"channel": 0} if path != "/inspect" else {},
            )
        )
        assert response.status_code == expected, (path, response.text)
        assert peak < PEAK_LIMIT, f"{path}: peak {peak / 2**20:.0f} MiB"
        if expected >= 400:
            error = response.json()["error"]
            assert error["code"] == case.code and case.says in error["message"], error
            assert error["filename"] == case.filename
    assert client.get("/ready").status_code == 200


def test_the_service_still_counts_a_good_image_the_same(client, good_count):
    for case in CASES[:3]:  # the bombs once more, right before
        client.post("/count", files={"files": (case.filename, case.data)})
    assert _count(client) == good_count


@pytest.mark.parametrize(
    "case",
    [case for case in CASES if case.status == 200 and "(fine)" not in case.name],
    ids=lambda case: case.name,
)
def test_an_implausible_pixel_size_is_ignored_with_a_warning(client, case):
    response = client.post("/count", files={"files": (case.filename, case.data)})
    result = response.json()["results"][0]
    assert (result["pixel_size_um"], result["pixel_size_source"]) == (None, "ignored")
    assert result["density_per_mm2"] is None and result["image_area_mm2"] is None
    warnings = {w["code"]: w["message"] for w in result["quality"]["warnings"]}
    assert "it is ignored" in warnings["pixel_size_ignored"]
    given = client.post(
        "/count", files={"files": (case.filename, case.data)}, params={"pixel_size_um": 0.5}
    ).json()["results"][0]
    assert (given["pixel_size_um"], given["pixel_size_source"]) == (0.5, "given")
    assert "pixel_size_ignored" not in {w["code"] for w in given["quality"]["warnings"]}
    info = client.post("/inspect", files={"file": (case.filename, case.data)}).json()
    assert info["pixel_size_um"] is None and "ignored" in info["pixel_size_ignored"]


@pytest.mark.parametrize("value", ["0", "5e-5", "20000", "nan", "inf", "-1"])
def test_a_pixel_size_option_outside_1e_4_to_1e4_is_a_422_naming_it(client, value):
    data, _ = synthetic_png(3)
    response = client.post(
        "/count", files={"files": ("a.png", data)}, params={"pixel_size_um": value}
    )
    assert response.status_code == 422
    assert "pixel_size_um" in response.json()["error"]["message"]


def test_channels_named_in_any_script_are_chosen_by_name(client):
    plane, _ = nuclei(41, size=128)
    names = ("細胞質", "核")
    data = ome_tiff(stains(41, plane, ("GFP", "DAPI"))[::-1], "CYX", names)
    for wanted, index in (("核", 1), ("細胞質", 0)):
        response = client.post(
            "/count", files={"files": ("jp.ome.tif", data)}, params={"channel": wanted}
        )
        assert response.status_code == 200, response.text
        assert response.json()["results"][0]["plane"]["channel_name"] == names[index]


@pytest.fixture(scope="module")
def tight_server() -> Iterator[LiveServer]:
    """A service whose ceiling on decoded bytes per upload is 64 MiB."""
    settings = Settings(
        **PINNED, max_batch_size=2, inference_workers=1, max_decoded_bytes=64 * 1024**2
    )
    live, thread = start_server(settings)
    yield live
    live.server.should_exit = True
    thread.join(timeout=30)


def test_an_upload_that_would_decode_past_the_ceiling_is_a_413_before_decoding(tight_server):
    planes = np.zeros((20, 1024, 1024), np.float64)  # 8 MiB a plane, 160 MiB for z=max
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, planes, compression="zlib", metadata=None)
    data = buffer.getvalue()
    with httpx.Client(base_url=tight_server.url, timeout=120) as http:
        response, peak = _peak_of(
            lambda: http.post("/count", files={"files": ("z.tif", data)}, params={"z": "max"})
        )
        assert response.status_code == 413, response.text
        error = response.json()["error"]
        assert error["code"] == "image_too_large"
        assert "CELLCOUNT_MAX_DECODED_BYTES" in error["message"] and "z=<index>" in error["message"]
        assert peak < 8 * 1024**2  # not one 8 MiB plane was decoded
    one = decode_image(data, 10**7, PlaneRequest(z=3), max_decoded_bytes=64 * 1024**2)
    assert one.plane.shape == (1024, 1024)  # one plane is within the ceiling


def test_the_default_ceiling_refuses_a_projection_past_2_gib(client):
    """Six 7000x7000 float64 pages (2.2 GiB decoded) whose strips are one shared 0.4 MB
    Deflate stream: a 2.4 MB upload."""
    side = 7000
    strip = zlib_bomb(side * side * 8)
    data = tiff_pages(side, side, strip, 8, pages=6, bits=64, sample_format=3)
    response, peak = _peak_of(
        lambda: client.post("/count", files={"files": ("six.tif", data)}, params={"z": "max"})
    )
    assert response.status_code == 413, response.text
    assert "2.00 GiB per upload" in response.json()["error"]["message"]
    assert peak < PEAK_LIMIT


def test_planes_that_fit_are_still_projected(client):
    plane, _ = nuclei(42, size=128)
    data = multipage_tiff(np.stack([plane, plane // 2]))
    response = client.post("/count", files={"files": ("z.tif", data)}, params={"z": "max"})
    assert response.status_code == 200, response.text
