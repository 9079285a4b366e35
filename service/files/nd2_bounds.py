"""Nikon ND2 chunks read within the sizes the file's header allows.

The ``nd2`` package inflates compressed CLX-lite metadata (``ImageAttributesLV!`` and the
rest) and losslessly compressed frames with ``zlib.decompress``, which has no limit: a 2.6 MB
chunk that inflates to 2.5 GiB took the service's memory with it. Here:

- metadata inflates through a bounded ``zlib`` stand-in given to nd2's CLX-lite parser
  (:func:`bound_metadata`), at most :data:`METADATA_LIMIT` bytes per compressed item;
- a lossless frame is read from its chunk here, inflated to exactly the frame size that the
  attributes declare (height x row bytes), never more; a frame longer or shorter than that is
  refused, naming the frame;
- the frames the loops declare must exist in the chunk map before any per-frame list is built.
"""

from __future__ import annotations

import importlib
import struct
import zlib
from typing import Any

import numpy as np

from service.files.bounded_codecs import Overlong, inflate

# Inflated CLX-lite metadata per compressed item: real files hold kilobytes to a few MB.
METADATA_LIMIT = 16 * 1024**2
_CHUNK_HEAD = struct.Struct("<IIQ")  # magic, name length, data length
_ND2_MAGIC = 0x0ABECEDA


class _BoundedZlib:
    """What nd2's CLX-lite parser uses of ``zlib``, with ``decompress`` bounded."""

    error = zlib.error

    @staticmethod
    def decompress(data: bytes, *args: Any, **kwargs: Any) -> bytes:
        try:
            return inflate(bytes(data), METADATA_LIMIT)
        except Overlong as error:
            raise ValueError(
                f"a compressed metadata chunk inflates past {METADATA_LIMIT // 1024**2} MiB"
            ) from error

    def __getattr__(self, name: str) -> Any:
        return getattr(zlib, name)


def bound_metadata() -> None:
    """Point nd2's CLX-lite parser at the bounded ``zlib`` (once per process; idempotent)."""
    try:
        module = importlib.import_module("nd2._parse._clx_lite")
    except ImportError:  # another layout: metadata stays as nd2 reads it
        return
    if getattr(module, "zlib", None) is zlib:
        module.zlib = _BoundedZlib()  # type: ignore[attr-defined]


def frame_count(chunkmap: dict[bytes, Any]) -> int:
    return sum(1 for name in chunkmap if name.startswith(b"ImageDataSeq|"))


def read_lossless_frame(
    data: bytes, chunkmap: dict[bytes, Any], index: int, frame_bytes: int, plane: str
) -> bytes:
    """The inflated pixels of frame ``index``: exactly ``frame_bytes``, or ValueError naming
    ``plane`` (the decoder stops one byte past the size)."""
    name = f"ImageDataSeq|{index}!".encode()
    if name not in chunkmap:
        raise ValueError(f"the frame of {plane} is not in the file")
    offset = int(chunkmap[name][0])
    if offset + _CHUNK_HEAD.size > len(data):
        raise ValueError(f"the frame of {plane} lies past the end of the file")
    magic, name_length, length = _CHUNK_HEAD.unpack_from(data, offset)
    start = offset + _CHUNK_HEAD.size + name_length
    if magic != _ND2_MAGIC or start + length > len(data) or length < 8:
        raise ValueError(f"the frame chunk of {plane} is damaged or past the end of the file")
    stream = data[start + 8 : start + length]  # 8 bytes of acquisition time, then zlib
    try:
        pixels = inflate(stream, frame_bytes)
    except Overlong as error:
        raise ValueError(
            f"the frame of {plane} is longer than its header declares ({error})"
        ) from error
    if len(pixels) != frame_bytes:
        raise ValueError(
            f"the frame of {plane} is shorter than its header declares ({len(pixels)} of "
            f"{frame_bytes} bytes)"
        )
    return pixels


def frame_array(
    pixels: bytes,
    dtype: np.dtype,
    height: int,
    width: int,
    row_bytes: int,
    in_frame: int,
    components: int,
) -> np.ndarray:
    """(channels in the frame, Y, X, components) from rows of ``row_bytes`` (padding dropped),
    as nd2 shapes a frame."""
    used = width * in_frame * components * dtype.itemsize
    if row_bytes == used:  # no row padding: a view of the inflated bytes, no copy
        values = np.frombuffer(pixels, dtype).reshape(height, width, in_frame, components)
    else:
        rows = np.frombuffer(pixels, np.uint8).reshape(height, row_bytes)[:, :used]
        values = np.ascontiguousarray(rows).view(dtype)
        values = values.reshape(height, width, in_frame, components)
    return values.transpose(2, 0, 1, 3)
