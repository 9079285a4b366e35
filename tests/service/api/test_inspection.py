"""POST /inspect: what a file holds, from its header and metadata, and what a count needs."""

from __future__ import annotations

import numpy as np
import pytest

from service.files.vendor_formats import LIBRARIES
from tests.service.conftest import synthetic_png
from tests.service.microscopy_files import CHANNELS, ome_tiff
from tests.service.vendor_files import make_nd2

STACK = np.random.default_rng(2).integers(0, 4000, (5, 4, 32, 48), dtype=np.uint16)


def inspect(client, data: bytes, **params):
    return client.post("/inspect", files={"file": ("f", data)}, params=params)


def test_an_ome_z_stack_lists_channels_the_default_and_what_a_count_needs(client):
    info = inspect(client, ome_tiff(STACK, "ZCYX", CHANNELS, pixel_size_um=0.65)).json()
    assert info["format"] == "ome-tiff" and info["axes"] == "C=4, Z=5, Y=32, X=48"
    assert (info["positions"], info["time_points"], info["z_planes"]) == (1, 1, 5)
    assert (info["height"], info["width"]) == (32, 48)
    assert [c["name"] for c in info["channels"]] == list(CHANNELS)
    assert [c["nuclear_stain"] for c in info["channels"]] == [False, True, False, False]
    assert info["default_channel"] == 1 and info["pixel_size_um"] == 0.65
    assert info["needs"] == ["z"] and info["position"] is None


def test_no_nuclear_name_means_a_channel_is_needed_and_a_png_needs_nothing(client):
    info = inspect(client, ome_tiff(STACK[0], "CYX", ("a", "b", "c", "d"))).json()
    assert info["default_channel"] is None and info["needs"] == ["channel"]
    png, _ = synthetic_png(3, size=(64, 64), count=3)
    plain = inspect(client, png).json()
    assert plain["format"] == "png" and plain["needs"] == [] and plain["default_channel"] == 0


def test_positions_of_an_nd2_and_a_bad_position_or_file(client):
    pytest.importorskip(LIBRARIES["nd2"])
    data = make_nd2({"P": 3})
    info = inspect(client, data).json()
    assert info["positions"] == 3 and info["position"] == 0
    assert info["needs"] == ["position", "z"] and info["axes"].startswith("P=3")
    assert inspect(client, data, position=2).json()["position"] == 2
    refused = inspect(client, data, position=3)
    assert refused.status_code == 422 and "outside 0-2" in refused.json()["error"]["message"]
    broken = inspect(client, b"II*\x00" + b"\xff" * 20)
    assert broken.status_code == 400 and broken.json()["error"]["filename"] == "f"
