"""One upload's bytes -> the plane that is counted: the reader by format, then the plane choice.

Every file goes the same way: its format from its leading bytes (``imaging.sniff_format``), a
reader that yields an :class:`~service.files.stack.ImageStack` (PIL, tifffile or a vendor reader),
the plane the request asks for (``planes.choose_plane``), then one intensity plane in the
file's own units (colour averaged, as for any RGB picture).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from model_training.image_io import to_grayscale
from service.files.imaging import (
    VENDOR_FORMATS,
    DecodedImage,
    ImageError,
    check_pixels,
    decode_pil,
    describe_unknown,
    integer_plane,
    sniff_format,
)
from service.files.planes import PlaneRequest, choose_plane
from service.files.stack import ImageStack, single_plane
from service.files.tiff_stack import open_tiff_stack
from service.files.vendor_formats import read_vendor
from service.settings import DEFAULT_MAX_DECODED_BYTES


@contextmanager
def open_stack(data: bytes, max_pixels: int, position: int | None = None) -> Iterator[ImageStack]:
    """The stack of one position of the file (the first when ``position`` is None or out of
    range), readable inside the block; ImageError (4xx) for what cannot be read."""
    position = position or 0
    if not data:
        raise ImageError(400, "empty_file", "the uploaded file is empty")
    kind = sniff_format(data)
    if kind is None:
        raise ImageError(
            415,
            "unsupported_media_type",
            f"the upload is {describe_unknown(data)}, not a PNG, JPEG, TIFF, BMP, OME-TIFF, "
            "CZI, ND2 or LIF image",
        )
    if kind == "tiff":
        with open_tiff_stack(data, max_pixels, position) as stack:
            yield stack
    elif kind in VENDOR_FORMATS:
        yield read_vendor(kind, data, max_pixels, position)
    else:
        yield single_plane(decode_pil(data, kind, max_pixels), kind)


def intensity_plane(array: np.ndarray) -> np.ndarray:
    """(Y, X) intensities of a plane as stored: integers kept, colour averaged."""
    if array.dtype.kind not in "uifb":
        raise ImageError(
            422, "unsupported_pixel_type", f"pixels of type {array.dtype} are not supported"
        )
    try:
        plane = integer_plane(array)
        if plane is None:
            plane = to_grayscale(array.astype(np.float32) if array.dtype == bool else array)
    except ValueError as error:
        raise ImageError(422, "not_a_2d_image", str(error)) from error
    return plane


def decode_image(
    data: bytes,
    max_pixels: int,
    request: PlaneRequest | None = None,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> DecodedImage:
    """Bytes of an upload -> the one plane to count; raises ImageError with the reason."""
    request = request or PlaneRequest()
    with open_stack(data, max_pixels, request.position) as stack:
        chosen = choose_plane(stack, request, max_pixels, max_decoded_bytes)
    plane = intensity_plane(chosen.array)
    check_pixels(plane.shape[0], plane.shape[1], max_pixels)
    return DecodedImage(
        plane=plane,
        format=stack.format,
        axes=stack.describe_axes(),
        channel=chosen.channel,
        channel_name=chosen.channel_name,
        channel_source=chosen.channel_source,
        z=chosen.z,
        t=chosen.t,
        position=chosen.position,
        pixel_size_um=stack.pixel_size_um,
        pixel_size_ignored=stack.pixel_size_ignored,
    )
