"""Is an image file's pixel data complete? Checks for what the decoders let through.

Pillow fills PNG rows that a short (but well-formed) zlib stream never delivered with zeros, and
tifffile pads an uncompressed strip whose byte count is too small; either way a partial upload
would be counted as an image with dark rows. These checks compare what the header promises with
what the file holds, without decoding pixels a second time.
"""

from __future__ import annotations

import struct
import zlib

import tifffile

PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by IHDR colour type
ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
INFLATE_STEP = 1 << 20  # bytes of inflated output held at once while counting


def _png_raw_bytes(width: int, height: int, bits_per_pixel: int, interlaced: bool) -> int:
    """Bytes the inflated IDAT stream must hold: every row of every pass plus its filter byte."""
    passes = ADAM7 if interlaced else ((0, 0, 1, 1),)
    total = 0
    for x0, y0, dx, dy in passes:
        columns = -(-(width - x0) // dx) if width > x0 else 0
        rows = -(-(height - y0) // dy) if height > y0 else 0
        if columns and rows:
            total += rows * (1 + (columns * bits_per_pixel + 7) // 8)
    return total


def png_is_short(data: bytes) -> bool:
    """True when the IDAT stream inflates to fewer bytes than the IHDR's rows need.

    Runs only after Pillow decoded the file, so the chunks are known to be well-formed; any
    surprise here is left to Pillow's own verdict (False).
    """
    try:
        width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
        needed = _png_raw_bytes(width, height, depth * PNG_CHANNELS[colour], interlace == 1)
        inflater, inflated, offset = zlib.decompressobj(), 0, 8
        while offset + 8 <= len(data) and inflated < needed:
            length, kind = struct.unpack(">I4s", data[offset : offset + 8])
            if kind == b"IEND":
                break
            if kind == b"IDAT":
                pending = data[offset + 8 : offset + 8 + length]
                while pending and inflated < needed:
                    inflated += len(inflater.decompress(pending, INFLATE_STEP))
                    pending = inflater.unconsumed_tail
            offset += 12 + length
    except (KeyError, struct.error, zlib.error):
        return False
    return inflated < needed


def tiff_data_past_end(page: tifffile.TiffPage | tifffile.TiffFrame, size: int) -> bool:
    """True when a strip or tile of the page lies past the end of a file of ``size`` bytes."""
    return any(
        offset + count > size
        for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False)
    )


def tiff_is_short(page: tifffile.TiffPage, size: int) -> bool:
    """True when a strip or tile lies past the end of the file, or uncompressed pixel data is
    smaller than the image it declares."""
    if tiff_data_past_end(page, size):
        return True
    if page.compression != 1:  # a short compressed stream fails in its decoder
        return False
    row_bytes = (page.imagewidth * page.samplesperpixel * page.bitspersample + 7) // 8
    return sum(page.databytecounts) < row_bytes * page.imagelength


# Bytes per value of each TIFF field type (TIFF 6.0 and BigTIFF); unknown types are skipped.
_TIFF_TYPE_BYTES = {
    1: 1,
    2: 1,
    3: 2,
    4: 4,
    5: 8,
    6: 1,
    7: 1,
    8: 2,
    9: 4,
    10: 8,
    11: 4,
    12: 8,
    13: 4,
}
_TIFF_TYPE_BYTES.update({16: 8, 17: 8, 18: 8})


def tiff_chain_is_short(data: bytes) -> bool:
    """True when an IFD, a tag's values, or the next-IFD link points past the end of the file.

    A TIFF cut short can keep its first page whole while losing the rest, and tifffile then
    quietly reads fewer pages (and no OME-XML, whose tag sits at the end): a stack would be
    counted as a single plane of whatever survived. Walks the IFD chain from the header only,
    reading no pixels; a chain that loops ends the walk.
    """
    size = len(data)
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"\x2b\x00", b"\x00\x2b")
    head, count_fmt, entry_fmt, link_fmt, inline = (
        (16, "Q", "HHQQ", "Q", 8) if big else (8, "H", "HHII", "I", 4)
    )
    if size < head:
        return True
    offset = struct.unpack_from(order + link_fmt, data, 8 if big else 4)[0]
    entry_size = struct.calcsize(order + entry_fmt)
    seen: set[int] = set()
    while offset and offset not in seen:
        seen.add(offset)
        count_size = struct.calcsize(order + count_fmt)
        if offset + count_size > size:
            return True
        count = struct.unpack_from(order + count_fmt, data, offset)[0]
        entries = offset + count_size
        link = entries + count * entry_size
        if link + struct.calcsize(order + link_fmt) > size:
            return True
        for _, kind, values, where in struct.iter_unpack(order + entry_fmt, data[entries:link]):
            length = _TIFF_TYPE_BYTES.get(kind, 0) * values
            if length > inline and where + length > size:
                return True
        offset = struct.unpack_from(order + link_fmt, data, link)[0]
        if offset >= size:
            return True
    return False
