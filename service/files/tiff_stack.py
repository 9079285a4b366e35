"""TIFF, OME-TIFF, ImageJ hyperstacks and multi-page TIFF as an :class:`ImageStack` (tifffile).

What is read, and what is decided here (``docs/operations.md`` has the user's side):

- the axes come from tifffile's first series: OME and ImageJ name T, C and Z; the pages of a
  plain multi-page TIFF carry no meaning, so they become Z (choose one with ``z``, or
  ``z=max``), and so do equal one-page series (tifffile's page-by-page writes). The images of
  an OME-TIFF that holds several (positions, wells) are its positions; other series of a plain
  TIFF (thumbnails, slide labels) are ignored;
- colour samples (RGB, YCbCr, palette) stay one stain, as for PNG; extra samples of a gray
  image (tifffile writes a (3, Y, X) array that way) are channels;
- channel names: OME ``Channel@Name`` (else ``Fluor``); ImageJ slice labels when every plane
  of a channel carries the same one;
- the pixel size: OME ``PhysicalSizeX`` with its unit, or an ImageJ file's resolution with its
  ``unit``. A plain TIFF's resolution tags are not used: they are nearly always the writer's
  72 dpi default, not the microscope's (a 352 um pixel);
- the pixel limit is checked on the page shape from the header before any plane is decoded,
  and each plane is decoded only when it is asked for.
"""

from __future__ import annotations

import io
import math
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import tifffile

from service.files import bounded_codecs
from service.files.imaging import ImageError, check_pixels, truncated
from service.files.stack import ImageStack
from service.files.tiff_metadata import check_before_series, check_series
from service.files.truncation import tiff_chain_is_short, tiff_data_past_end, tiff_is_short

bounded_codecs.install()  # tifffile inflates no segment past the size its header declares

# TIFF Photometric values whose samples are colours of one picture, not channels.
COLOUR_PHOTOMETRIC = {2, 3, 5, 6}  # RGB, palette, separated (CMYK), YCbCr
# Axes tifffile gives pages of a file that does not say what they are.
UNNAMED_PAGE_AXES = {"I", "Q"}
# Length units of OME and ImageJ metadata, in micrometres.
UNIT_UM = {
    "um": 1.0,
    "µm": 1.0,
    "μm": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "\\u00b5m": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "mm": 1e3,
    "millimeter": 1e3,
    "cm": 1e4,
    "m": 1e6,
    "å": 1e-4,
    "angstrom": 1e-4,
}


def length_um(value: float, unit: str | None) -> float | None:
    """A length in micrometres; None for an unknown unit. The value is converted as it is
    (NaN, 0 or 1e300 included): whether it is plausible is decided in ``service.pixel_sizes``,
    which says why it is not used."""
    factor = UNIT_UM.get((unit or "µm").strip().lower())
    if factor is None:
        return None
    return value * factor if math.isfinite(value) else value


@contextmanager
def open_tiff_stack(data: bytes, max_pixels: int, position: int = 0) -> Iterator[ImageStack]:
    """The stack of one image of the file (an OME-TIFF may hold several); planes can be read
    while the block is open."""
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            yield _stack(tif, data, max_pixels, position)
    except ImageError:
        raise
    except Exception as error:  # tifffile raises many types for broken files
        raise ImageError(400, "invalid_image", f"cannot decode the TIFF file: {error}") from error


def _stack(tif: tifffile.TiffFile, data: bytes, max_pixels: int, position: int) -> ImageStack:
    if tiff_chain_is_short(data):
        raise ImageError(
            400,
            "invalid_image",
            "the TIFF file is truncated: its directory points past the end of the file, so "
            "planes or metadata are missing; send the complete file",
        )
    check_before_series(tif)  # declared planes and IFD references, before tifffile uses them
    if not tif.series:
        raise ImageError(400, "invalid_image", "the TIFF file holds no image")
    positions = len(tif.series) if tif.is_ome else 1  # OME images: positions, wells, fields
    image = position if position < positions else 0
    series = tif.series[image]
    check_series(tif, series)
    axes, shape = series.get_axes(False), tuple(series.get_shape(False))
    pages = list(series.pages)
    # tifffile's page-by-page writes: one series per page, all alike
    if len(tif.series) > 1 and not tif.is_ome and _same_planes(tif.series):
        axes, shape = "I" + axes, (len(tif.series), *shape)
        pages = [one.pages[0] for one in tif.series]
    sizes = dict(zip(axes, shape, strict=True))
    height, width = sizes.get("Y", 1), sizes.get("X", 1)
    check_pixels(height, width, max_pixels)
    keyframe = series.keyframe
    check_compression(keyframe)
    if tiff_is_short(keyframe, len(data)):
        raise truncated("tiff", width, height)

    colour = keyframe.photometric in COLOUR_PHOTOMETRIC
    samples = sizes.get("S", 1)
    leading = [(axis, size) for axis, size in zip(axes, shape, strict=True) if axis not in "YXS"]
    named = _plane_axes(leading)
    samples_are_channels = samples > 1 and not colour and named.get("C", 1) == 1
    if samples_are_channels:
        named["C"] = samples

    page_shape = [size for _, size in leading]
    if math.prod(page_shape) != len(pages):
        raise ImageError(
            400,
            "invalid_image",
            f"the TIFF holds {len(pages)} pages, not the stack its metadata declares (axes "
            f"{series.axes}, shape {series.shape}): the file is truncated or inconsistent",
        )
    order = [axis for axis, _ in leading]

    def read_plane(t: int, c: int, z: int) -> np.ndarray:
        wanted = {"T": t, "C": 0 if samples_are_channels else c, "Z": z}
        index = [wanted.get(_role(axis), 0) for axis in order]
        page = pages[int(np.ravel_multi_index(index, page_shape))] if page_shape else pages[0]
        if page is None or tiff_data_past_end(page, len(data)):
            raise ImageError(
                400,
                "invalid_image",
                f"the TIFF file is truncated: the plane t={t}, c={c}, z={z} is missing or ends "
                "past the end of the file; send the complete file",
            )
        array = read_page(page, f"t={t}, c={c}, z={z}")
        page_axes = keyframe.axes
        if "S" in page_axes and page_axes.index("S") != len(page_axes) - 1:
            array = np.moveaxis(array, page_axes.index("S"), -1)  # planar: samples last
        if samples_are_channels:
            return array[..., c]
        return array

    pixels = _ome_pixels(tif.ome_metadata, image) if tif.is_ome else None  # parsed once: MBs
    names = _channel_names(tif, pixels, named.get("C", 1), order, page_shape)
    return ImageStack(
        format="ome-tiff" if tif.is_ome else "imagej-tiff" if tif.is_imagej else "tiff",
        sizes={axis: named.get(axis, 1) for axis in "TCZ"},
        height=height,
        width=width,
        read_plane=read_plane,
        channel_names=names,
        pixel_size_um=_pixel_size_um(tif, pixels),
        positions=positions,
        plane_bytes=int(keyframe.nbytes),  # a page holds every sample (channels included)
    )


def check_compression(page: tifffile.TiffPage | tifffile.TiffFrame) -> None:
    """415 for a codec that is not decoded through a bounded decoder (``bounded_codecs``)."""
    code = int(page.compression)
    if code in bounded_codecs.BOUNDED_TIFF and (code == 1 or bounded_codecs.installed()):
        return
    try:
        name = tifffile.COMPRESSION(code).name
    except ValueError:
        name = f"code {code}"
    accepted = ", ".join(sorted(set(bounded_codecs.BOUNDED_TIFF.values()) - {"none"}))
    raise ImageError(
        415,
        "unsupported_compression",
        f"the TIFF is compressed with {name}, which this service does not decode (it decodes "
        f"uncompressed, {accepted} planes, each bounded by the size its header declares); "
        "save it uncompressed or with Deflate",
    )


def _segment_bytes(page: tifffile.TiffPage | tifffile.TiffFrame) -> int:
    """Bytes of one full strip or tile as the header declares it."""
    keyframe = page.keyframe
    samples = keyframe.samplesperpixel if keyframe.planarconfig == 1 else 1
    if keyframe.is_tiled:
        pixels = keyframe.tilewidth * keyframe.tilelength * max(keyframe.tiledepth, 1)
        return (pixels * samples * keyframe.bitspersample + 7) // 8
    row = (keyframe.imagewidth * samples * keyframe.bitspersample + 7) // 8
    return row * min(keyframe.rowsperstrip, keyframe.imagelength) * max(keyframe.imagedepth, 1)


def read_page(page: tifffile.TiffPage | tifffile.TiffFrame, plane: str) -> np.ndarray:
    """The page's pixels, refused with a 400 naming ``plane`` when its data is longer or
    shorter than its header declares (the decoders stop at that size: ``bounded_codecs``)."""
    check_compression(page)
    if page.compression == 1 and any(count > _segment_bytes(page) for count in page.databytecounts):
        raise _wrong_length(plane, "longer than", "its strips or tiles hold more bytes")
    try:
        return page.asarray(maxworkers=1)  # one thread: one segment in memory at a time
    except bounded_codecs.Overlong as error:
        raise _wrong_length(plane, "longer than", str(error)) from error
    except tifffile.TiffFileError as error:
        if "cannot be reshaped" not in str(error):
            raise
        raise _wrong_length(plane, "shorter than", str(error)) from error


def _wrong_length(plane: str, how: str, detail: str) -> ImageError:
    return ImageError(
        400,
        "invalid_image",
        f"the TIFF plane {plane} is corrupt: its data is {how} its header declares ({detail}); "
        "re-export the image",
    )


def _same_planes(series: list) -> bool:
    """Series of one page each, all of one shape and type: the pages of one stack. Anything
    else beside the first series (a thumbnail, a slide label) is not part of the image."""
    first = series[0]
    return all(
        len(one.pages) == 1 and one.shape == first.shape and one.dtype == first.dtype
        for one in series
    )


def _role(axis: str) -> str:
    return "Z" if axis in UNNAMED_PAGE_AXES else axis


def _plane_axes(leading: list[tuple[str, int]]) -> dict[str, int]:
    """T, C and Z sizes of the series; any other axis with several planes is refused."""
    named: dict[str, int] = {}
    for axis, size in leading:
        role = _role(axis)
        if role in "TCZ" and role not in named:
            named[role] = size
        elif size > 1:
            raise ImageError(
                422,
                "unsupported_axes",
                f"the TIFF has an axis {axis!r} of {size} planes that is not time (T), channel "
                "(C) or depth (Z), e.g. positions or tiles; save one position per file",
            )
    return named


def _channel_names(
    tif: tifffile.TiffFile,
    pixels: ElementTree.Element | None,
    channels: int,
    order: list[str],
    page_shape: list[int],
) -> tuple[str | None, ...]:
    if tif.is_ome:
        return _ome_channel_names(pixels, channels)
    if tif.is_imagej:
        return _imagej_channel_names(tif.imagej_metadata or {}, channels, order, page_shape)
    return (None,) * channels


def _ome_pixels(xml: str | None, image: int) -> ElementTree.Element | None:
    """The ``Pixels`` element of image number ``image``, whatever the schema's namespace."""
    if not xml:
        return None
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None
    found = [element for element in root.iter() if element.tag.rsplit("}", 1)[-1] == "Pixels"]
    return found[image] if image < len(found) else None


def _ome_channel_names(pixels: ElementTree.Element | None, channels: int) -> tuple[str | None, ...]:
    if pixels is None:
        return (None,) * channels
    found = [
        element.get("Name") or element.get("Fluor") or None
        for element in pixels
        if element.tag.rsplit("}", 1)[-1] == "Channel"
    ]
    return tuple(found) if len(found) == channels else (None,) * channels


def _imagej_channel_names(
    metadata: dict, channels: int, order: list[str], page_shape: list[int]
) -> tuple[str | None, ...]:
    """ImageJ keeps a label per plane (Fiji writes the channel name there); a channel is named
    only when all its planes agree, so a per-slice label such as a z position is not taken."""
    labels = metadata.get("Labels")
    if channels < 2 or "C" not in order or not isinstance(labels, list):
        return (None,) * channels
    if len(labels) != math.prod(page_shape):
        return (None,) * channels
    axis = order.index("C")
    by_channel: list[set[str]] = [set() for _ in range(channels)]
    for page, label in enumerate(labels):
        by_channel[np.unravel_index(page, page_shape)[axis]].add(str(label).strip())
    return tuple(next(iter(s)) if len(s) == 1 and next(iter(s)) else None for s in by_channel)


def _pixel_size_um(tif: tifffile.TiffFile, pixels: ElementTree.Element | None) -> float | None:
    if tif.is_ome:
        if pixels is None or pixels.get("PhysicalSizeX") is None:
            return None
        try:
            value = float(pixels.get("PhysicalSizeX", ""))
        except ValueError:
            value = math.nan  # text that is not a number: ignored, and the result says so
        return length_um(value, pixels.get("PhysicalSizeXUnit"))
    if tif.is_imagej:
        unit = (tif.imagej_metadata or {}).get("unit")
        tag = tif.pages.first.tags.get("XResolution")
        if not unit or tag is None:
            return None
        numerator, denominator = tag.value
        if not numerator:
            return math.inf if denominator else None  # 0/0: no resolution written
        return length_um(denominator / numerator, str(unit))
    return None
