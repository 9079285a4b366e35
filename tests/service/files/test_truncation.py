"""service.files.truncation: files cut short are told from whole ones by their headers alone."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile

from service.files.truncation import tiff_chain_is_short

STACK = np.random.default_rng(1).integers(0, 4000, (3, 4, 48, 40), dtype=np.uint16)


def written(**options) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, STACK, photometric="minisblack", **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "options",
    [{}, {"bigtiff": True}, {"ome": True}, {"imagej": True}, {"compression": "zlib"}],
    ids=["plain", "bigtiff", "ome", "imagej", "zlib"],
)
def test_whole_files_pass_and_files_cut_in_half_do_not(options):
    data = written(**options)
    assert not tiff_chain_is_short(data)
    assert tiff_chain_is_short(data[: len(data) // 2])


def test_an_ome_tiff_that_lost_its_metadata_tag_is_short():
    """The OME-XML is written last: cut it and tifffile would read a plain first page."""
    data = written(ome=True)
    assert tiff_chain_is_short(data[: len(data) - 200])


def test_a_header_alone_and_a_looping_chain_end_the_walk():
    assert tiff_chain_is_short(b"II*\x00")
    header = b"II*\x00" + (8).to_bytes(4, "little")
    ifd = (0).to_bytes(2, "little") + (8).to_bytes(4, "little")  # no tags, links to itself
    assert not tiff_chain_is_short(header + ifd)
