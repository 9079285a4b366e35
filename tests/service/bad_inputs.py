"""The bad-input corpus: every case is built here from code, so the bytes are reviewable.

Each case names what it sends and the answer it must get: a status (4xx with an error code, or
200 where the image is legitimate, e.g. a 1x1 pixel or an all-black image).
"""

from __future__ import annotations

import importlib.util
import io
import lzma
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import tifffile
from PIL import Image

from service.files.vendor_formats import LIBRARIES
from tests.service.conftest import synthetic_png
from tests.service.microscopy_files import ome_tiff
from tests.service.vendor_files import clx_compressed, make_czi, make_lif, make_nd2, nd2_attributes


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    filename: str
    status: int
    code: str | None = None  # error code for 4xx answers
    says: str = ""  # words the error message must contain
    in_pixels: bool = False  # the fault lies in pixel data: /inspect (header only) answers 200


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
        *hostile_cases(),
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


# ---- hostile files (issue 17): bombs, lying metadata, implausible sizes ---------------------

BOMB_BYTES = 2560 * 1024**2  # what a 2.6 MB Deflate stream of zeros inflates to


@lru_cache(maxsize=4)
def zlib_bomb(size: int = BOMB_BYTES, chunk: int = 1 << 20) -> bytes:
    """A valid zlib stream of ``size`` zero bytes, about size / 1000 long, built in 0.1 s:
    one chunk compressed after a full flush (which resets the compressor, so every further
    chunk compresses to the same bytes) is repeated, and the Adler-32 of the zeros appended."""
    compressor = zlib.compressobj(9)
    zeros = bytes(chunk)
    head = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    piece = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    count = size // chunk
    adler = ((count * chunk) % 65521) << 16 | 1  # Adler-32 of zeros: a stays 1, b counts them
    return head + piece * (count - 1) + compressor.flush()[:-4] + struct.pack(">I", adler)


@lru_cache(maxsize=1)
def lzma_bomb(size: int = 32 * 1024**2) -> bytes:
    return lzma.compress(bytes(size), preset=0)


def tiff_pages(
    width: int,
    height: int,
    strip: bytes,
    compression: int = 1,
    pages: int = 1,
    bits: int = 8,
    sample_format: int = 1,
    byte_count: int | None = None,
) -> bytes:
    """A hand-laid TIFF of ``pages`` gray pages whose one strip each is ``strip`` (stored once,
    every page points at it), with any compression code and any strip byte count."""
    entries = 11
    ifd_size = 2 + 12 * entries + 4
    strip_at = 8
    body = bytearray(b"II*\x00" + struct.pack("<I", strip_at + len(strip)) + strip)
    for page in range(pages):
        at = len(body)
        following = at + ifd_size if page + 1 < pages else 0
        tags = [
            (256, 4, width),
            (257, 4, height),
            (258, 3, bits),
            (259, 3, compression),
            (262, 3, 1),
            (273, 4, strip_at),
            (277, 3, 1),
            (278, 4, height),
            (279, 4, len(strip) if byte_count is None else byte_count),
            (284, 3, 1),
            (339, 3, sample_format),
        ]
        body += struct.pack("<H", entries)
        for tag, kind, value in tags:
            packed = struct.pack("<I", value) if kind == 4 else struct.pack("<HH", value, 0)
            body += struct.pack("<HHI", tag, kind, 1) + packed
        body += struct.pack("<I", following)
    return bytes(body)


def ome_with_tiff_data(planes: np.ndarray, *edits: tuple[str, str]) -> bytes:
    """An OME-TIFF of ``planes`` (Z, Y, X) with one TiffData per plane (as Bio-Formats writes
    them) whose OME-XML has each ``old`` of ``edits`` replaced by its ``new``: written page by
    page, so the XML keeps whatever the edits say."""
    xml = _ome_xml(planes)
    for old, new in edits:
        assert old in xml, old
        xml = xml.replace(old, new)
    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as writer:
        for index, plane in enumerate(planes):
            description = xml if index == 0 else None
            writer.write(plane, description=description, metadata=None, contiguous=False)
    return buffer.getvalue()


def _ome_xml(planes: np.ndarray) -> str:
    with tifffile.TiffFile(io.BytesIO(ome_tiff(planes, "ZYX"))) as tif:
        xml = tif.ome_metadata or ""
    # one TiffData per plane, as Bio-Formats writes them, so each can be edited
    per_plane = "".join(
        f'<TiffData FirstZ="{z}" IFD="{z}" PlaneCount="1"/>' for z in range(len(planes))
    )
    return xml.replace(f'<TiffData IFD="0" PlaneCount="{len(planes)}"/>', per_plane)


def _imagej_claiming(planes: np.ndarray, channels: int, slices: int, frames: int) -> bytes:
    description = (
        f"ImageJ=1.54f\nimages={channels * slices * frames}\nchannels={channels}\n"
        f"slices={slices}\nframes={frames}\nhyperstack=true\nmode=grayscale\n"
    )
    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as writer:
        for index, plane in enumerate(planes):
            description_here = description if index == 0 else None
            writer.write(plane, description=description_here, metadata=None, contiguous=False)
    return buffer.getvalue()


def hostile_cases() -> list[Case]:
    """Each class of issue 17 for every format that can carry it: decompression bombs,
    segments longer or shorter than their header, codecs that cannot be bounded, declared
    sizes the file cannot hold, references outside the file, inconsistent metadata, and
    implausible pixel sizes (counted, the size ignored: 200)."""
    bomb = zlib_bomb()
    planes = np.random.default_rng(17).integers(0, 4000, (2, 64, 64), dtype=np.uint16)
    longer, shorter = "longer than its header declares", "shorter than its header declares"
    cases = [
        Case(
            "tiff deflate bomb",
            tiff_pages(64, 64, bomb, 8),
            "bomb.tif",
            400,
            "invalid_image",
            longer,
            True,
        ),
        Case(
            "tiff lzma bomb",
            tiff_pages(64, 64, lzma_bomb(), 34925),
            "lzma.tif",
            400,
            "invalid_image",
            longer,
            True,
        ),
        Case(
            "tiff packbits bomb",
            tiff_pages(64, 64, b"\x81\x00" * (1 << 20), 32773),
            "pb.tif",
            400,
            "invalid_image",
            longer,
            True,
        ),
        Case(
            "tiff strip far longer than its page",
            tiff_pages(64, 64, bytes(4096 * 1000)),
            "long.tif",
            400,
            "invalid_image",
            longer,
            True,
        ),
        Case(
            "tiff deflate strip shorter than its page",
            tiff_pages(64, 64, zlib.compress(bytes(100)), 8),
            "short.tif",
            400,
            "invalid_image",
            shorter,
            True,
        ),
        Case(
            "tiff lzw (cannot be bounded)",
            tiff_pages(64, 64, b"\x80\x00", 5),
            "lzw.tif",
            415,
            "unsupported_compression",
            "LZW",
        ),
        Case(
            "tiff jpeg (cannot be bounded)",
            tiff_pages(64, 64, b"\xff\xd8", 7),
            "jpeg.tif",
            415,
            "unsupported_compression",
            "JPEG",
        ),
        Case(
            "ome SizeZ=1e9 over 2 pages",
            ome_with_tiff_data(planes, ('SizeZ="2"', 'SizeZ="1000000000"')),
            "z.ome.tif",
            400,
            "invalid_image",
            "declares 1000000000 planes",
        ),
        Case(
            "ome SizeZ=PlaneCount=1e8",
            ome_with_tiff_data(
                planes,
                ('SizeZ="2"', 'SizeZ="100000000"'),
                (_ome_xml(planes)[_ome_xml(planes).index("<TiffData") :].split("</Pixels>")[0], ""),
                ("</Pixels>", '<TiffData PlaneCount="100000000"/></Pixels>'),
            ),
            "pc.ome.tif",
            400,
            "invalid_image",
            "declares 100000000 planes",
        ),
        Case(
            "ome TiffData IFD=-1",
            ome_with_tiff_data(planes, ('IFD="1"', 'IFD="-1"')),
            "neg.ome.tif",
            400,
            "invalid_image",
            'IFD="-1"',
        ),
        Case(
            "ome TiffData IFD past the end",
            ome_with_tiff_data(planes, ('IFD="1"', 'IFD="9"')),
            "far.ome.tif",
            400,
            "invalid_image",
            'IFD="9"',
        ),
        Case(
            "ome-xml that does not parse",
            ome_with_tiff_data(planes, ("<Channel ", "<Channel <")),
            "xml.ome.tif",
            400,
            "invalid_image",
            "does not parse",
        ),
        Case(
            "imagej 7x9x11 over 3 pages",
            _imagej_claiming(np.concatenate([planes, planes[:1]]), 7, 9, 11),
            "ij.tif",
            400,
            "invalid_image",
            "images=693",
        ),
        Case(
            "ome pixel size 1e300",
            ome_tiff(planes[:1], "ZYX", pixel_size_um=1e300),
            "big.ome.tif",
            200,
        ),
        Case(
            "ome pixel size nan",
            ome_tiff(planes[:1], "ZYX", pixel_size_um=float("nan")),
            "nan.ome.tif",
            200,
        ),
    ]
    if importlib.util.find_spec("czifile") is not None:
        cases += [
            Case(
                "czi T=1e9 over one plane",
                make_czi({"Z": 1}, channels=["DAPI"], declared={"T": 10**9}),
                "t.czi",
                400,
                "invalid_image",
                "spans 1000000000 planes",
            ),
            Case(
                "czi jpeg subblocks (cannot be bounded)",
                make_czi({"Z": 1}, channels=["DAPI"], compression=1),
                "jpg.czi",
                415,
                "unsupported_compression",
            ),
            Case(
                "czi scaling 1e300",
                make_czi({"Z": 1}, channels=["DAPI"], pixel_size_um=1e300),
                "big.czi",
                200,
            ),
        ]
    if importlib.util.find_spec("nd2") is not None:
        frame_bomb = {b"ImageDataSeq|0!": struct.pack("<d", 0.0) + bomb}
        frame_short = {b"ImageDataSeq|0!": struct.pack("<d", 0.0) + zlib.compress(bytes(100))}
        meta_bomb = {b"ImageAttributesLV!": clx_compressed(bomb)}
        cases += [
            Case(
                "nd2 metadata bomb",
                make_nd2({"Z": 1}, channels=["DAPI"], chunks=meta_bomb),
                "meta.nd2",
                400,
                "invalid_image",
                "inflates past",
            ),
            Case(
                "nd2 lossless frame bomb",
                make_nd2({"Z": 1}, channels=["DAPI"], lossless=True, chunks=frame_bomb),
                "frame.nd2",
                400,
                "invalid_image",
                longer,
                True,
            ),
            Case(
                "nd2 lossless frame short",
                make_nd2({"Z": 1}, channels=["DAPI"], lossless=True, chunks=frame_short),
                "short.nd2",
                400,
                "invalid_image",
                shorter,
                True,
            ),
            Case(
                "nd2 T=1e9 over 2 frames",
                make_nd2({"T": 2, "Z": 1}, channels=["DAPI"], declared={"T": 10**9}),
                "t.nd2",
                400,
                "invalid_image",
                "declares 1000000000 frames",
            ),
            Case(
                "nd2 compressed metadata (fine)",
                make_nd2(
                    {"Z": 1},
                    channels=["DAPI"],
                    chunks={
                        b"ImageAttributesLV!": clx_compressed(
                            zlib.compress(nd2_attributes(channels=1))
                        )
                    },
                ),
                "ok.nd2",
                200,
            ),
            Case(
                "nd2 dCalibration nan",
                make_nd2({"Z": 1}, channels=["DAPI"], pixel_size_um=float("nan")),
                "nan.nd2",
                200,
            ),
            Case(
                "nd2 dCalibration 1e300",
                make_nd2({"Z": 1}, channels=["DAPI"], pixel_size_um=1e300),
                "big.nd2",
                200,
            ),
        ]
    if importlib.util.find_spec("readlif") is not None:
        cases += [
            Case(
                "lif Z=1e9 over 3 planes",
                make_lif(channels=["DAPI"], declared={"Z": 10**9}),
                "z.lif",
                400,
                "invalid_image",
                "declares 1000000000 planes",
            ),
            Case(
                "lif length 1e300",
                make_lif({"Z": 1}, channels=["DAPI"], pixel_size_um=1e300),
                "big.lif",
                200,
            ),
        ]
    return cases
