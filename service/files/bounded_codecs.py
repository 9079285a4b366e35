"""Decoders that never produce more bytes than the header says a strip, tile or frame holds.

A 2.6 MB Deflate strip can inflate to 2.5 GiB, and ``zlib.decompress`` (tifffile's fallback
without imagecodecs, and nd2's) inflates all of it before anyone looks at the size: one upload
took a 4-8 GiB container down with every request in flight. The decoders here are given the
size the header allows and stop one byte past it:

- zlib/Deflate through ``zlib.decompressobj().decompress(data, max_length)``;
- LZMA through ``lzma.LZMADecompressor().decompress(data, max_length)``;
- PackBits, decoded here run by run with the output length checked before each run.

Any other codec cannot be bounded with what is installed (LZW, JPEG and the rest need
imagecodecs, whose output size this service does not control) and is refused by name
(``service.files.tiff_stack``). :func:`install` puts these decoders in tifffile's codec table:
tifffile hands each decoder the expected size of the segment as ``out``, and the wrappers honour it.
"""

from __future__ import annotations

import lzma
import zlib
from collections.abc import Callable
from typing import Any

import tifffile

# TIFF Compression values decoded here (1: none), by name for messages.
BOUNDED_TIFF = {1: "none", 8: "Deflate", 32946: "Deflate", 50013: "Deflate", 34925: "LZMA"}
BOUNDED_TIFF[32773] = "PackBits"


class Overlong(ValueError):
    """A compressed segment holds more than the header allows: the decoder stopped."""

    def __init__(self, codec: str, limit: int) -> None:
        super().__init__(
            f"its {codec} data decodes to more than the {limit} bytes the header declares"
        )
        self.codec, self.limit = codec, limit


def inflate(data: bytes, limit: int) -> bytes:
    """zlib data, at most ``limit`` bytes of it; :class:`Overlong` if there is more."""
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, limit)
    if inflater.unconsumed_tail and inflater.decompress(inflater.unconsumed_tail, 1):
        raise Overlong("Deflate", limit)
    if not inflater.eof:
        if len(out) == limit and inflater.decompress(b"", 1):
            raise Overlong("Deflate", limit)
        raise zlib.error("the Deflate stream is incomplete or truncated")
    return out


def unlzma(data: bytes, limit: int) -> bytes:
    """LZMA/XZ data, at most ``limit`` bytes of it; :class:`Overlong` if there is more."""
    decoder = lzma.LZMADecompressor()
    out = decoder.decompress(data, limit)
    if not decoder.eof:
        if len(out) >= limit and decoder.decompress(b"", 1):
            raise Overlong("LZMA", limit)
        if not decoder.eof:
            raise lzma.LZMAError("the LZMA stream is incomplete or truncated")
    return out


def unpackbits(data: bytes, limit: int) -> bytes:
    """PackBits (TIFF 6.0, section 9), at most ``limit`` bytes; :class:`Overlong` past it."""
    out = bytearray()
    position, end = 0, len(data)
    while position < end:
        header = data[position]
        position += 1
        if header < 128:  # a literal run of header + 1 bytes
            run = data[position : position + header + 1]
            position += header + 1
        elif header > 128:  # the next byte 257 - header times
            run = data[position : position + 1] * (257 - header)
            position += 1
        else:  # 128: no operation
            continue
        if len(out) + len(run) > limit:
            raise Overlong("PackBits", limit)
        out += run
    return bytes(out)


def _tifffile_decoder(decode: Callable[[bytes, int], bytes]) -> Callable[..., bytes]:
    def decoder(data: bytes, /, *, out: Any = None, **_: Any) -> bytes:
        if isinstance(out, int):
            limit = out
        elif out is not None:
            limit = memoryview(out).nbytes
        else:  # tifffile always passes the size; a caller that does not is refused
            raise ValueError("a compressed segment of unknown size is not decoded")
        return decode(bytes(data), limit)

    decoder.__name__ = f"bounded_{decode.__name__}"
    return decoder


def install() -> None:
    """Make tifffile decode Deflate, LZMA and PackBits through the bounded decoders.

    tifffile keeps one table of decoders per process and fills it on first use; the entries
    set here replace its unbounded fallbacks (``zlib.decompress``, ``lzma.decompress`` and a
    PackBits decoder without a limit) for every reader in this process.
    """
    table = tifffile.TIFF.DECOMPRESSORS
    codecs = getattr(table, "_codecs", None)
    if not isinstance(codecs, dict):  # a tifffile release without the table: refuse all codecs
        return
    for code in (8, 32946, 50013):
        codecs[code] = _tifffile_decoder(inflate)
    codecs[34925] = _tifffile_decoder(unlzma)
    codecs[32773] = _tifffile_decoder(unpackbits)


def installed() -> bool:
    """Whether tifffile decodes through these decoders (else compressed TIFFs are refused)."""
    codecs = getattr(tifffile.TIFF.DECOMPRESSORS, "_codecs", {})
    return all(
        getattr(codecs.get(code), "__name__", "").startswith("bounded_")
        for code in BOUNDED_TIFF
        if code != 1
    )
