"""The halo of an exported bioimage.io package (``cellcount-export``) is the margin the service
tiles with: tools that tile by the package discard what the service discards."""

from __future__ import annotations

from model_training.checkpoint import read_record
from model_training.zoo.geometry import default_halo
from service.settings import Settings


def test_package_halo_is_the_served_tile_margin(client):
    info = client.get("/model").json()
    assert Settings.model_fields["tile_margin"].default is None  # i.e. the checkpoint's
    assert default_halo(read_record(info["path"])) == info["tile_margin"]
