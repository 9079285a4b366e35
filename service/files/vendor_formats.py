"""Zeiss CZI, Nikon ND2 and Leica LIF uploads as an :class:`~service.files.stack.ImageStack`.

The readers are the optional extra ``pip install 'cellcount[formats]'``: czifile, nd2 and
readlif, chosen over bioio and pylibCZIrw for install size (about 23 MiB added to the service's
environment against 84 MiB for pylibCZIrw alone and over 400 MiB for bioio with its three
plugins) at a per-plane decode time no slower (docs/benchmarks.md, "Vendor readers"). Each is
imported only when such a file arrives, so the service runs without them and answers 415.

All three read from an in-memory ``io.BytesIO``: nothing is written to disk, and
``read_plane`` decodes only the subblocks (CZI), the frame (ND2) or the plane (LIF) asked for.
The pixel count is checked from the header before any plane is decoded. czifile reads
uncompressed subblocks itself and JPEG/LZW/JPEG XR ones only with imagecodecs installed; a CZI
compressed otherwise (zstd) is refused with 422 before any decoding.
"""

from __future__ import annotations

import importlib
import io
import math
import struct
import warnings
import xml.etree.ElementTree as ET
from dataclasses import replace
from typing import Any

import numpy as np

from service.files import nd2_bounds
from service.files.imaging import FORMATS, ImageError, check_pixels, truncated
from service.files.stack import ImageStack

# The module each format needs, imported on first use.
LIBRARIES = {"czi": "czifile", "nd2": "nd2", "lif": "readlif.reader"}

# What the axes a counted plane cannot have are called, for the 422 message.
_CZI_AXES = {
    "H": "phases",
    "I": "illumination directions",
    "R": "rotations",
    "V": "views",
    "B": "acquisition blocks",
}
_ND2_AXES = {"U": "custom-loop points"}
_LIF_DIMS = {
    5: "λ (detection wavelengths)",
    6: "dimension 6",
    7: "dimension 7",
    8: "dimension 8",
    9: "Λ (illumination wavelengths)",
    10: "M (mosaic tiles)",
}


def read_vendor(kind: str, data: bytes, max_pixels: int, position: int = 0) -> ImageStack:
    """The stack of one position of a CZI, ND2 or LIF upload (its scene, XY point or series;
    the first when ``position`` is out of range); raises :class:`ImageError` otherwise.

    415 ``format_needs_extra`` without the optional readers, 413 ``image_too_large`` from the
    header, 422 ``unsupported_axes`` for mosaic tiles or other axes, 400 ``invalid_image`` for
    a broken or truncated file (also from ``read_plane``).
    """
    if kind not in LIBRARIES:
        raise ValueError(f"not a vendor format: {kind!r}")
    try:
        library = importlib.import_module(LIBRARIES[kind])
    except ImportError as error:
        raise ImageError(
            415,
            "format_needs_extra",
            f"{FORMATS[kind]} files need the optional readers: pip install 'cellcount[formats]' "
            "(or the Docker image built with them)",
        ) from error
    reader = {"czi": _read_czi, "nd2": _read_nd2, "lif": _read_lif}[kind]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # readers warn about what they then raise or skip
            stack = reader(library, data, max_pixels, position)
    except ImageError:
        raise
    except Exception as error:  # the readers raise many types for broken files
        raise _invalid(kind, error) from error
    return _guarded(stack, kind)


def _invalid(kind: str, error: BaseException) -> ImageError:
    return ImageError(400, "invalid_image", f"cannot decode the {FORMATS[kind]} file: {error}")


def _guarded(stack: ImageStack, kind: str) -> ImageStack:
    """The same stack whose ``read_plane`` turns a reader's failure into a 400 as well."""
    read = stack.read_plane

    def read_plane(t: int, c: int, z: int) -> np.ndarray:
        try:
            return read(t, c, z)
        except ImageError:
            raise
        except Exception as error:
            raise _invalid(kind, error) from error

    return replace(stack, read_plane=read_plane)


def _refuse_axes(kind: str, axes: list[str]) -> None:
    if axes:
        raise ImageError(
            422,
            "unsupported_axes",
            f"the {FORMATS[kind]} file has {', '.join(axes)}; this service reads one image "
            "(T, C and Z planes of one scene or position): export that one, e.g. to OME-TIFF",
        )


def _names(found: list[str | None], channels: int) -> tuple[str | None, ...]:
    """The names when there is one per channel, else None for each (no guessing which is which)."""
    if len(found) != channels or not any(found):
        return (None,) * channels
    return tuple(name or None for name in found)


# ---- Zeiss CZI (czifile) ----------------------------------------------------------------------


def _czi_metadata(xml: str | None) -> tuple[list[str | None], float | None]:
    """Channel names (Name, else Fluor, else DyeName) and the X scaling in µm."""
    if not xml:
        return [], None
    root = ET.fromstring(xml)
    channels = root.findall("./Metadata/Information/Image/Dimensions/Channels/Channel")
    names = [
        channel.get("Name") or channel.findtext("Fluor") or channel.findtext("DyeName")
        for channel in channels
    ]
    value = root.findtext("./Metadata/Scaling/Items/Distance[@Id='X']/Value")
    if value is None or not value.strip():
        return names, None
    try:
        metres = float(value)
    except ValueError:
        metres = math.nan  # ignored as implausible, and the result says so
    return names, metres * 1e6


def _czi_complete(czi: Any, entries: list[Any], size: int, data: bytes) -> bool:
    """Whether the directory and every subblock lie wholly inside the file.

    czifile falls back to scanning for subblocks when the directory is missing, which turns a
    cut file into one with fewer planes; the segment headers say how long each part is.
    """
    positions = [czi.header.directory_position, *(e.file_position for e in entries)]
    for position in positions:
        if not 0 < position <= size - 32:
            return False
        used = struct.unpack_from("<16sqq", data, position)[2]
        if position + 32 + used > size:
            return False
    return True


def _read_czi(czifile: Any, data: bytes, max_pixels: int, position: int) -> ImageStack:
    czi = czifile.CziFile(io.BytesIO(data), multifile=False)
    entries = [e for e in czi.filtered_subblock_directory if e.pyramid_type == 0]
    sizes = dict(zip(czi.axes, czi.shape, strict=True))
    origin = dict(zip(czi.axes, czi.start, strict=True))
    scenes = sizes.get("S", 1)
    scene = position if position < scenes else 0
    if scenes > 1:  # one scene: its subblocks, and its own box (scenes lie apart on the slide)
        entries = [e for e in entries if _start(e).get("S", origin["S"]) - origin["S"] == scene]
        for axis in "YX":
            low = min(_start(e)[axis] for e in entries)
            high = max(_start(e)[axis] + _extent(e)[axis] for e in entries)
            origin[axis], sizes[axis] = low, high - low
    height, width = sizes.get("Y", 1), sizes.get("X", 1)
    check_pixels(height, width, max_pixels)
    _refuse_axes(
        "czi",
        [
            f"{axis} ({_CZI_AXES.get(axis, 'dimension ' + axis)})={size}"
            for axis, size in sizes.items()
            if axis not in "STCZYX0" and size > 1
        ],
    )
    # Only uncompressed subblocks: their size is their stored shape, read from the file as is.
    # czifile's other codecs (imagecodecs' JPEG, LZW, JPEG XR) inflate without a limit.
    compressions = {e.compression for e in entries} - {0}
    if compressions:
        names = [czifile.czifile.COMPRESSION.get(c, f"code {c}") for c in sorted(compressions)]
        raise ImageError(
            415,
            "unsupported_compression",
            f"the Zeiss CZI file is compressed with {', '.join(names)}, which this service does "
            "not decode (its output size cannot be bounded); save it uncompressed or export it "
            "to OME-TIFF",
        )
    if not _czi_complete(czi, entries, len(data), data):
        raise truncated("czi", width, height)
    _czi_check_declared(sizes, len(entries))
    dtype = np.dtype(czi.dtype)
    samples = sizes.get("0", 1)
    names, pixel_size = _czi_metadata(czi.metadata())

    def read_plane(t: int, c: int, z: int) -> np.ndarray:
        plane = np.zeros((height, width, samples), dtype=dtype.base)
        want = {"T": t, "C": c, "Z": z}
        found = False
        for entry in entries:
            start = _start(entry)
            if any(
                start.get(axis, origin.get(axis, 0)) - origin.get(axis, 0) != index
                for axis, index in want.items()
            ):
                continue
            found = True
            tile = entry.data_segment().data()
            shape = dict(zip(entry.axes, tile.shape, strict=True))
            tile = tile.reshape(shape["Y"], shape["X"], samples)
            y, x = start["Y"] - origin["Y"], start["X"] - origin["X"]
            plane[y : y + shape["Y"], x : x + shape["X"]] = tile
        if not found:  # a size the directory declares, and no subblock holds this plane
            raise ImageError(
                400,
                "invalid_image",
                f"the Zeiss CZI file holds no subblock for the plane t={t}, c={c}, z={z}, "
                "although its directory declares it: the file is inconsistent",
            )
        return plane[..., 0] if samples == 1 else plane

    return ImageStack(
        format="czi",
        sizes={axis: sizes.get(axis, 1) for axis in "TCZ"},
        height=height,
        width=width,
        read_plane=read_plane,
        channel_names=_names(names, sizes.get("C", 1)),
        pixel_size_um=pixel_size,
        positions=scenes,
        plane_bytes=height * width * samples * dtype.itemsize,
    )


def _czi_check_declared(sizes: dict[str, int], subblocks: int) -> None:
    """Every T, C, Z plane the directory spans needs a subblock of its own (mosaic tiles make
    more, never fewer): T = 10^9 over one subblock is a file that lies."""
    declared = math.prod(sizes.get(axis, 1) for axis in "TCZ")
    if declared > subblocks:
        raise ImageError(
            400,
            "invalid_image",
            f"the Zeiss CZI file's directory spans {declared} planes ("
            + ", ".join(f"{axis}={sizes.get(axis, 1)}" for axis in "TCZ")
            + f") but it holds {subblocks} subblocks: the file is inconsistent",
        )


def _start(entry: Any) -> dict[str, int]:
    return dict(zip(entry.axes, entry.start, strict=True))


def _extent(entry: Any) -> dict[str, int]:
    """The stored size of a subblock along each axis."""
    return dict(zip(entry.axes, entry.stored_shape, strict=True))


# ---- Nikon ND2 (nd2) --------------------------------------------------------------------------


def _read_nd2(nd2: Any, data: bytes, max_pixels: int, position: int) -> ImageStack:
    nd2_bounds.bound_metadata()  # compressed metadata inflates at most METADATA_LIMIT bytes
    handle = nd2.ND2File(io.BytesIO(data))
    attributes = handle.attributes  # the header: no frame is read before the pixel check
    height, width = int(attributes.heightPx), int(attributes.widthPx or 0)
    check_pixels(height, width, max_pixels)
    sizes = dict(handle.sizes)
    chunkmap = _nd2_chunkmap(handle)
    in_frame = int(attributes.channelCount or 1)  # channels stored side by side in a frame
    _nd2_check_declared(sizes, in_frame, chunkmap)
    _refuse_axes(
        "nd2",
        [
            f"{axis} ({_ND2_AXES.get(axis, 'dimension ' + axis)})={size}"
            for axis, size in sizes.items()
            if axis not in "PTCZYXS" and size > 1
        ],
    )
    points = sizes.get("P", 1)
    point = position if position < points else 0
    components = int(attributes.componentCount) // in_frame  # 3 for RGB
    loops = handle.loop_indices
    channel_loop = any("C" in frame for frame in loops)  # then one channel per frame
    frames: dict[tuple[int, int, int], int] = {}
    for index, frame in enumerate(loops):
        if frame.get("P", 0) != point:
            continue
        key = (frame.get("T", 0), frame.get("C", 0), frame.get("Z", 0))
        frames.setdefault(key, index)
    channels = handle.metadata.channels or []
    names = [channel.channel.name for channel in channels]
    calibrated = bool(channels) and channels[0].volume.axesCalibrated[0]
    pixel_size = _nd2_calibration(handle) if calibrated else None
    if not _nd2_frames_complete(handle, len(data), height * int(attributes.widthBytes or 0)):
        raise truncated("nd2", width, height)

    row_bytes = int(attributes.widthBytes or 0)
    itemsize = np.dtype(handle.dtype).itemsize
    lossless = attributes.compressionType == "lossless"
    if attributes.compressionType not in (None, "none", "lossless"):
        raise ImageError(
            415,
            "unsupported_compression",
            f"the Nikon ND2 file is compressed with {attributes.compressionType!r}, which this "
            "service does not decode; export it uncompressed or to OME-TIFF",
        )

    def read_plane(t: int, c: int, z: int) -> np.ndarray:
        plane_name = f"t={t}, c={c}, z={z}"
        index = frames.get((t, c if channel_loop else 0, z))
        if index is None:
            raise ImageError(
                400, "invalid_image", f"the Nikon ND2 file holds no frame for {plane_name}"
            )
        if lossless and chunkmap is not None:  # inflated here, bounded by the frame size
            pixels = nd2_bounds.read_lossless_frame(
                data, chunkmap, index, height * row_bytes, plane_name
            )
            frame = nd2_bounds.frame_array(
                pixels, np.dtype(handle.dtype), height, width, row_bytes, in_frame, components
            )
        elif lossless:
            raise ImageError(415, "unsupported_compression", "lossless ND2 of an unknown layout")
        else:
            frame = np.asarray(handle.read_frame(index))
        frame = frame.reshape(-1, height, width, components)
        plane = frame[0 if channel_loop else c]
        return plane[..., 0] if components == 1 else plane

    return ImageStack(
        format="nd2",
        sizes={axis: sizes.get(axis, 1) for axis in "TCZ"},
        height=height,
        width=width,
        read_plane=read_plane,
        channel_names=_names(names, sizes.get("C", 1)),
        pixel_size_um=pixel_size,
        positions=points,
        plane_bytes=height * max(row_bytes, width * int(attributes.componentCount) * itemsize),
    )


def _nd2_chunkmap(handle: Any) -> dict[bytes, Any] | None:
    """nd2's private chunk map (name -> (offset, length)); None for a release without it."""
    chunkmap = getattr(getattr(handle, "_rdr", None), "chunkmap", None)
    return chunkmap if isinstance(chunkmap, dict) else None


def _nd2_check_declared(
    sizes: dict[str, int], in_frame: int, chunkmap: dict[bytes, Any] | None
) -> None:
    """The frames the loops declare must be in the file before nd2 lists them one by one (a
    T loop of 10^9 over 3 frames would be a list of 10^9 entries)."""
    if chunkmap is None:
        return
    held = nd2_bounds.frame_count(chunkmap)
    loops = {axis: size for axis, size in sizes.items() if axis not in "YXS"}
    if loops.get("C", 1) <= in_frame:  # channels side by side in each frame, not a loop
        loops.pop("C", None)
    declared = math.prod(loops.values())
    if declared > held:
        raise ImageError(
            400,
            "invalid_image",
            f"the Nikon ND2 file's metadata declares {declared} frames ("
            + ", ".join(f"{axis}={size}" for axis, size in loops.items())
            + f") but it holds {held}: the file is truncated or its metadata inconsistent",
        )


def _nd2_calibration(handle: Any) -> float:
    """µm per pixel as the file says it: nd2's ``voxel_size`` turns a NaN ``dCalibration`` into
    1.0, a made-up size, so the raw metadata is read where this release has it."""
    raw = getattr(getattr(handle, "_rdr", None), "_cached_raw_metadata", None)
    value = raw().get("dCalibration") if callable(raw) else None
    if isinstance(value, int | float):
        return float(value)
    return float(handle.voxel_size().x)


def _nd2_frames_complete(handle: Any, size: int, pixel_bytes: int) -> bool:
    """Whether every frame the chunk map names lies wholly inside the file.

    nd2 would hand back zeros for a frame past the end; an uncompressed frame's pixels start
    4096 bytes after its chunk (where nd2 reads them), a compressed one is as long as its chunk.
    """
    chunkmap = getattr(getattr(handle, "_rdr", None), "chunkmap", None)  # nd2's private map
    if not isinstance(chunkmap, dict):  # a release without it: trust the reader
        return True
    compressed = handle.attributes.compressionType == "lossless"
    return all(
        offset + (length if compressed else 4096 + pixel_bytes) <= size
        for name, (offset, length) in chunkmap.items()
        if name.startswith(b"ImageDataSeq|")
    )


# ---- Leica LIF (readlif) ----------------------------------------------------------------------


def _lif_element(root: ET.Element, index: int) -> ET.Element | None:
    """The XML element of image ``index``, in the order readlif lists images (depth first)."""
    images = [e for e in root.iter("Element") if e.find("./Data/Image") is not None]
    return images[index] if index < len(images) else None


def _lif_names(element: ET.Element | None) -> list[str | None]:
    """Dye names: confocal MultiBand entries, else widefield channel infos."""
    if element is None:
        return []
    bands = [b for b in element.iter("MultiBand") if b.get("DyeName")]
    if bands:
        bands.sort(key=lambda band: int(band.get("Channel", "0") or 0))
        return [band.get("DyeName") for band in bands]
    return [
        info.get("UserDefName") or info.get("FluoCubeName")
        for info in element.iter("WideFieldChannelInfo")
    ]


def _read_lif(reader: Any, data: bytes, max_pixels: int, position: int) -> ImageStack:
    lif = reader.LifFile(io.BytesIO(data))
    series = lif.num_images
    index = position if position < series else 0
    image = lif.get_image(index)
    dims = image.dims_n
    height, width = int(dims.get(2, 1)), int(dims.get(1, 1))
    check_pixels(height, width, max_pixels)
    _refuse_axes(
        "lif",
        [
            f"{_LIF_DIMS.get(dim, f'dimension {dim}')}={size}"
            for dim, size in dims.items()
            if dim not in (1, 2, 3, 4) and size > 1
        ],
    )
    if image.display_dims != (1, 2):
        raise ImageError(
            422,
            "unsupported_axes",
            f"the Leica LIF image is a {image.display_dims} scan, not an XY image",
        )
    if any(depth > 16 for depth in image.bit_depth):
        raise ImageError(422, "unsupported_pixel_type", f"LIF pixels of {image.bit_depth[0]} bits")
    offset, length = image.offsets
    expected = height * width * image.channels * image.nz * image.nt
    expected *= 1 if max(image.bit_depth, default=8) <= 8 else 2
    if length == 0 or offset + length > len(data):
        raise truncated("lif", width, height)
    if expected > length:  # a complete block that holds fewer planes than the XML declares
        raise ImageError(
            400,
            "invalid_image",
            f"the Leica LIF image declares {image.channels * image.nz * image.nt} planes "
            f"(C={image.channels}, Z={image.nz}, T={image.nt}; {expected} bytes) but its "
            f"memory block holds {length} bytes: the file is inconsistent",
        )
    pixel_size = _lif_pixel_size(image.scale[0])

    def read_plane(t: int, c: int, z: int) -> np.ndarray:
        return np.asarray(image.get_frame(z=z, t=t, c=c))

    return ImageStack(
        format="lif",
        sizes={"T": image.nt, "C": image.channels, "Z": image.nz},
        height=height,
        width=width,
        read_plane=read_plane,
        channel_names=_names(_lif_names(_lif_element(lif.xml_root, index)), image.channels),
        pixel_size_um=pixel_size,
        positions=series,
        plane_bytes=height * width * (1 if max(image.bit_depth, default=8) <= 8 else 2),
    )


def _lif_pixel_size(scale: float | None) -> float | None:
    """µm per pixel from readlif's pixels per µm (None: no ``Length``); whatever the file says,
    including 0 or NaN, goes on to the plausibility check of ``service.pixel_sizes``."""
    if scale is None:
        return None
    try:
        return 1.0 / scale
    except (ZeroDivisionError, OverflowError):
        return math.inf
