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


def tiff_is_short(page: tifffile.TiffPage, size: int) -> bool:
    """True when a strip or tile lies past the end of the file, or uncompressed pixel data is
    smaller than the image it declares."""
    ends = (
        offset + count for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False)
    )
    if any(end > size for end in ends):
        return True
    if page.compression != 1:  # a short compressed stream fails in its decoder
        return False
    row_bytes = (page.imagewidth * page.samplesperpixel * page.bitspersample + 7) // 8
    return sum(page.databytecounts) < row_bytes * page.imagelength
