"""The bad-input corpus: every case is built here from code, so the bytes are reviewable.

Each case names what it sends and the answer it must get: a status (4xx with an error code, or
200 where the image is legitimate, e.g. a 1x1 pixel or an all-black image).
"""

from __future__ import annotations

import importlib.util
import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
import tifffile
from PIL import Image

from service.files.vendor_formats import LIBRARIES
from tests.service.conftest import synthetic_png
from tests.service.microscopy_files import ome_tiff
from tests.service.vendor_files import make_czi, make_lif, make_nd2


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    filename: str
    status: int
    code: str | None = None  # error code for 4xx answers
    says: str = ""  # words the error message must contain


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(array)
    (image.convert(mode) if mode else image).save(buffer, format="PNG")
    return buffer.getvalue()


def _tiff(array: np.ndarray, **options: object) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **options)
    return buffer.getvalue()


def _jpeg(array: np.ndarray, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _corrupt_png_chunk(data: bytes) -> bytes:
    """Flip bytes inside the first IDAT chunk, keeping its (now wrong) CRC."""
    start = data.index(b"IDAT") + 4
    body = bytearray(data)
    for offset in range(start + 10, start + 40):
        body[offset] ^= 0xFF
    return bytes(body)


def _tiff_with_bogus_ifd() -> bytes:
    """A TIFF header whose first IFD offset points far past the end of the file."""
    return b"II*\x00" + struct.pack("<I", 0x7FFFFFF0) + b"\x00" * 64


def tiff_claiming(width: int, height: int) -> bytes:
    """A 200-byte TIFF whose header claims a huge 8-bit image (a decompression bomb)."""
    tags = [
        (256, 4, width),
        (257, 4, height),
        (258, 3, 8),
        (259, 3, 1),
        (262, 3, 1),
        (273, 4, 200),
        (277, 3, 1),
        (278, 4, height),
        (279, 4, 0xFFFFFFF0),
    ]
    ifd = struct.pack("<H", len(tags))
    for tag, kind, value in tags:
        if kind == 4:
            ifd += struct.pack("<HHII", tag, kind, 1, value)
        else:
            ifd += struct.pack("<HHIHH", tag, kind, 1, value, 0)
    body = b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)
    return body + b"\x00" * (200 - len(body))


def _png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header and IHDR for a huge image, with one tiny IDAT."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def png_rows_missing(rows: int = 5, height: int = 1_000_000) -> bytes:
    """A valid 1-pixel-wide PNG of ``rows`` rows whose IHDR then claims ``height`` rows: a
    well-formed file whose pixel data stops early (Pillow would fill the rest with zeros)."""
    data = bytearray(_png(np.full((rows, 1), 200, np.uint8)))
    struct.pack_into(">I", data, 20, height)  # IHDR payload starts at byte 16: width, height
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def tiff_short_strip(array: np.ndarray) -> bytes:
    """An uncompressed one-strip TIFF whose strip byte count says a quarter of the pixels."""
    data = bytearray(_tiff(array, rowsperstrip=array.shape[0]))
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tif:
        page = tif.pages[0]
        tag = page.tags["StripByteCounts"]
        assert tag.count == 1 and tag.dtype == 4  # one LONG, stored in the tag itself
        struct.pack_into("<I", data, tag.valueoffset, page.databytecounts[0] // 4)
    return bytes(data)


def truncated_cases(plane: np.ndarray) -> list[Case]:
    """Files whose pixel data ends early, one per decoder path: all 400, saying so."""
    written = [
        ("png cut short", _png(plane), "cut.png"),
        ("jpeg cut short", _jpeg(plane), "cut.jpg"),
        ("bmp cut short", _bmp(plane), "cut.bmp"),
        ("tiff cut short", _tiff(plane), "cut.tif"),
        ("zlib tiff cut short", _tiff(plane, compression="zlib"), "cut.tif"),
    ]
    files = [(name, data[: len(data) * 2 // 3], filename) for name, data, filename in written]
    files += [
        ("png rows missing", png_rows_missing(), "rows.png"),
        ("tiff short strip", tiff_short_strip(plane), "short.tif"),
    ]
    return [Case(name, data, file, 400, "invalid_image", "truncated") for name, data, file in files]


def _bmp(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="BMP")
    return buffer.getvalue()


def corpus() -> list[Case]:
    cells, _ = synthetic_png(21, count=12)
    plane = np.asarray(Image.open(io.BytesIO(cells)))
    float_plane = plane.astype(np.float32)
    float_plane[:8, :8] = np.nan
    float_plane[-8:, -8:] = np.inf
    return [
        Case("zero bytes", b"", "empty.png", 400, "empty_file"),
        Case("plain text", b"cell count please\n" * 20, "notes.txt", 415, "unsupported_media_type"),
        Case(
            "html",
            b"<!DOCTYPE html><html><body>hi</body></html>",
            "page.png",
            415,
            "unsupported_media_type",
        ),
        Case(
            "pdf",
            b"%PDF-1.7\n1 0 obj << >> endobj\n%%EOF",
            "paper.pdf",
            415,
            "unsupported_media_type",
        ),
        Case(
            "truncated png", cells[: len(cells) // 3], "cut.png", 400, "invalid_image", "truncated"
        ),
        Case(
            "png with a corrupt chunk",
            _corrupt_png_chunk(cells),
            "corrupt.png",
            400,
            "invalid_image",
        ),
        Case("tiff with a bogus ifd", _tiff_with_bogus_ifd(), "bogus.tif", 400, "invalid_image"),
        Case(
            "tiff claiming 100000x100000",
            tiff_claiming(100_000, 100_000),
            "bomb.tif",
            413,
            "image_too_large",
        ),
        Case(
            "png claiming 100000x100000",
            _png_claiming(100_000, 100_000),
            "bomb.png",
            413,
            "image_too_large",
        ),
        Case("1x1 pixel", _png(np.full((1, 1), 200, np.uint8)), "dot.png", 200),
        Case(
            "3-d stack",
            _tiff(np.zeros((5, 64, 64), np.uint16), photometric="minisblack"),
            "stack.tif",
            422,
            "plane_not_chosen",
        ),
        Case("16-bit image", _png(plane.astype(np.uint16) * 257), "sixteen.png", 200),
        Case("float32 tiff with nan and inf", _tiff(float_plane), "float.tif", 200),
        Case("palette image", _png(plane, "P"), "palette.png", 200),
        Case("cmyk jpeg", _jpeg(plane, "CMYK"), "cmyk.jpg", 200),
        Case("all black", _png(np.zeros((128, 128), np.uint8)), "black.png", 200),
        Case("all saturated", _png(np.full((128, 128), 255, np.uint8)), "white.png", 200),
        Case("wrong extension", cells, "cells.tif", 200),
        *truncated_cases(plane),
        *microscope_cases(plane),
    ]


def microscope_cases(plane: np.ndarray) -> list[Case]:
    """Stacks and vendor files: cut short, refused for their axes, or missing a choice."""

    stack = np.stack([plane, plane[::-1], plane[:, ::-1]]).astype(np.uint16)
    ome = ome_tiff(stack, "CYX", ("DAPI", "GFP", "Cy5"), pixel_size_um=0.5)
    cases = [
        Case("ome-tiff picked by its dapi name", ome, "dapi.ome.tif", 200),
        Case(
            "ome-tiff with no nuclear channel name",
            ome_tiff(stack, "CYX", ("a", "b", "c")),
            "abc.ome.tif",
            422,
            "plane_not_chosen",
            "0 (a), 1 (b), 2 (c)",
        ),
        Case("ome-tiff cut short", ome[: len(ome) // 2], "cut.ome.tif", 400, "invalid_image"),
    ]
    for kind, writer in (("czi", make_czi), ("nd2", make_nd2), ("lif", make_lif)):
        data, cut = writer(), f"{kind} cut short"
        if importlib.util.find_spec(LIBRARIES[kind].split(".")[0]) is None:  # without the extra
            cases.append(Case(f"{kind}, no reader", data, f"a.{kind}", 415, "format_needs_extra"))
            continue
        cases.append(Case(f"{kind} z-stack, no z", data, f"a.{kind}", 422, "plane_not_chosen"))
        cases.append(Case(cut, data[: len(data) * 2 // 3], f"cut.{kind}", 400, "invalid_image"))
    return cases
