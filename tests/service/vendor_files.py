"""Small Zeiss CZI, Nikon ND2 and Leica LIF files, written here from code (no vendor software).

No public writer exists for ND2 or LIF, and pylibCZIrw (the one CZI writer) pulls 100 MB, so
each file is laid out byte by byte the way its reader parses it: CZI as czifile reads ZISRAW
segments, ND2 as ``nd2`` reads its chunk map and CLX-lite metadata, LIF as readlif reads its
UTF-16 XML header and memory blocks. Every plane is distinct (see :func:`plane_value`), so a
test can tell which plane a reader returned.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Callable, Sequence

import numpy as np

CHANNELS = ("DAPI", "GFP", "Cy5")
PIXEL_SIZE_UM = 0.325


# (t, c, z, height, width) -> the uint16 plane a writer stores there.
PlaneWriter = Callable[[int, int, int, int, int], np.ndarray]


def plane_value(t: int, c: int, z: int) -> int:
    """The fill value of plane (t, c, z): unique per plane, and fits uint16."""
    return 1000 + 10000 * t + 1000 * c + 10 * z


def make_plane(t: int, c: int, z: int, height: int, width: int) -> np.ndarray:
    """A uint16 plane filled with :func:`plane_value`, plus a ramp so rows and columns differ."""
    ramp = (np.arange(height)[:, None] + 2 * np.arange(width)[None, :]) % 7
    return (plane_value(t, c, z) + ramp).astype(np.uint16)


def make_rgb_plane(height: int, width: int) -> np.ndarray:
    """A (Y, X, 3) uint8 plane whose R, G and B differ (10, 20, 30 plus a ramp)."""
    ramp = (np.arange(height)[:, None] + np.arange(width)[None, :]) % 5
    return np.stack([10 + ramp, 20 + ramp, 30 + ramp], axis=-1).astype(np.uint8)


# ---- Zeiss CZI (ZISRAW) -----------------------------------------------------------------------

_CZI_PIXEL_TYPES = {"gray16": 1, "bgr24": 3}


def _czi_segment(sid: bytes, body: bytes) -> bytes:
    """One ZISRAW segment: 16-byte id, allocated and used size, body padded to 32 bytes."""
    padded = body + b"\0" * (-len(body) % 32)
    return struct.pack("<16sqq", sid, len(padded), len(body)) + padded


def _czi_entry(
    pixel_type: int, position: int, dims: Sequence[tuple[str, int, int]], compression: int = 0
) -> bytes:
    """DirectoryEntryDV: schema, pixel type, file position, part, compression, pyramid, dims."""
    head = struct.pack(
        "<2siqiiBB4si", b"DV", pixel_type, position, 0, compression, 0, 0, b"", len(dims)
    )
    return head + b"".join(
        struct.pack("<4siifi", name.encode(), start, size, float(start), size)
        for name, start, size in dims
    )


def _czi_metadata(
    sizes: dict[str, int], channels: Sequence[str] | None, pixel_size_um: float | None
) -> bytes:
    names = channels or [None] * sizes["C"]
    channel_xml = "".join(
        f'<Channel Id="Channel:{i}"' + (f' Name="{name}"' if name else "") + "/>"
        for i, name in enumerate(names)
    )
    scaling = (
        f'<Scaling><Items><Distance Id="X"><Value>{pixel_size_um * 1e-6!r}</Value></Distance>'
        f'<Distance Id="Y"><Value>{pixel_size_um * 1e-6!r}</Value></Distance></Items></Scaling>'
        if pixel_size_um
        else ""
    )
    image = "".join(f"<Size{axis}>{size}</Size{axis}>" for axis, size in sizes.items())
    return (
        f"<ImageDocument><Metadata><Information><Image>{image}<Dimensions><Channels>"
        f"{channel_xml}</Channels></Dimensions></Image></Information>{scaling}</Metadata>"
        "</ImageDocument>"
    ).encode()


def make_czi(
    sizes: dict[str, int] | None = None,
    height: int = 64,
    width: int = 64,
    channels: Sequence[str] | None = CHANNELS,
    pixel_size_um: float | None = PIXEL_SIZE_UM,
    rgb: bool = False,
    compression: int = 0,
    planes: PlaneWriter = make_plane,
    scene_step: tuple[int, int] = (0, 0),
    declared: dict[str, int] | None = None,
) -> bytes:
    """A CZI with one subblock per (scene, t, c, z) plane; ``sizes`` may hold S.

    For hostile files, ``declared`` writes another extent for an axis in every directory
    entry (e.g. ``{"T": 10**9}``: each subblock claims to span 10^9 time points).

    ``compression`` only labels the subblocks (5 is zstd): their pixels stay uncompressed.
    Scene s lies at ``s * scene_step`` (x, y) pixels on the slide, as scenes of a slide scan do.
    """
    sizes = {"S": 1, "T": 1, "C": len(channels or (None,)), "Z": 3, **(sizes or {})}
    pixel_type = _CZI_PIXEL_TYPES["bgr24" if rgb else "gray16"]
    header_size = 32 + 512
    blocks: list[tuple[bytes, list[tuple[str, int, int]]]] = []
    for s in range(sizes["S"]):
        for t in range(sizes["T"]):
            for c in range(sizes["C"]):
                for z in range(sizes["Z"]):
                    if rgb:
                        plane = make_rgb_plane(height, width)[..., ::-1]  # stored as BGR
                    else:
                        plane = planes(t, c, z + 100 * s, height, width)
                    x, y = s * scene_step[0], s * scene_step[1]
                    dims = [("X", x, width), ("Y", y, height), ("C", c, 1), ("Z", z, 1)]
                    dims += [("T", t, 1), ("S", s, 1)]
                    dims = [(n, at, (declared or {}).get(n, size)) for n, at, size in dims]
                    blocks.append((plane.tobytes(), dims))
    body, entries, position = b"", [], header_size
    for pixels, dims in blocks:
        entry = _czi_entry(pixel_type, position, dims, compression)
        fixed = struct.pack("<iiq", 0, 0, len(pixels)) + entry + b"\0" * max(240 - len(entry), 0)
        segment = _czi_segment(b"ZISRAWSUBBLOCK", fixed + pixels)
        entries.append(entry)
        body += segment
        position += len(segment)
    directory = _czi_segment(
        b"ZISRAWDIRECTORY", struct.pack("<i", len(entries)) + b"\0" * 124 + b"".join(entries)
    )
    xml = _czi_metadata({"X": width, "Y": height, **sizes}, channels, pixel_size_um)
    metadata = _czi_segment(b"ZISRAWMETADATA", struct.pack("<ii", len(xml), 0) + b"\0" * 248 + xml)
    directory_at, metadata_at = position, position + len(directory)
    guid = uuid.UUID(int=1).bytes
    file_header = struct.pack(
        "<iiii16s16siqqiq", 1, 0, 0, 0, guid, guid, 0, directory_at, metadata_at, 0, 0
    )
    head = struct.pack("<16sqq", b"ZISRAWFILE", 512, len(file_header)) + file_header
    return head.ljust(header_size, b"\0") + body + directory + metadata


# ---- Nikon ND2 (v3 chunks, CLX-lite metadata) ---------------------------------------------------

_ND2_MAGIC = 0x0ABECEDA
_ND2_FRAME_NAME_LENGTH = 4072  # nd2 reads frame pixels 4096 bytes past the chunk start (+ 8)
_ND2_TIMING = {"dStart": 0.0, "dPeriod": 1000.0, "dDuration": 0.0}


def _clx_name(name: str) -> bytes:
    return (name + "\0").encode("utf-16-le")


def _clx_item(name: str, value: object) -> bytes:
    """One CLX-lite item: type byte, name length (UTF-16 units with the NUL), name, value."""
    encoded = _clx_name(name)
    head = struct.pack("BB", 0, len(encoded) // 2) + encoded
    if isinstance(value, dict):
        children = b"".join(_clx_item(key, child) for key, child in value.items())
        length = len(head) + 12 + len(children)
        level = struct.pack("<IQ", len(value), length) + children + b"\0" * (8 * len(value))
        return bytes([11]) + head[1:] + level
    if isinstance(value, bool):
        return bytes([1]) + head[1:] + struct.pack("B", value)
    if isinstance(value, int):
        return bytes([3]) + head[1:] + struct.pack("<I", value)
    if isinstance(value, float):
        return bytes([6]) + head[1:] + struct.pack("<d", value)
    if isinstance(value, str):
        return bytes([8]) + head[1:] + _clx_name(value)
    raise TypeError(f"no CLX-lite encoding for {type(value).__name__}")


def _nd2_probe(channel: int) -> dict:
    """Excitation and emission peaks (nd2 reads a channel's wavelengths from its probe)."""

    def peak(nm: float) -> dict:
        return {"uiCount": 1, "pPoint": {"Point0": {"dWavelength": nm, "dTValue": 1.0}}}

    excitation = 405.0 + 100.0 * channel
    return {"m_ExcitationSpectrum": peak(excitation), "m_EmissionSpectrum": peak(excitation + 50)}


def _nd2_chunk(name: bytes, data: bytes, name_length: int | None = None) -> bytes:
    name_length = name_length or len(name) + 20  # nd2 leaves room after the name
    return (
        struct.pack("<IIQ", _ND2_MAGIC, name_length, len(data))
        + name.ljust(name_length, b"\0")
        + data
    )


def make_nd2(
    sizes: dict[str, int] | None = None,
    height: int = 64,
    width: int = 64,
    channels: Sequence[str] = CHANNELS,
    pixel_size_um: float = PIXEL_SIZE_UM,
    planes: PlaneWriter = make_plane,
    lossless: bool = False,
    declared: dict[str, int] | None = None,
    chunks: dict[bytes, bytes] | None = None,
) -> bytes:
    """An ND2 (v3.0) with T/P/Z loops as asked; each frame holds all channels interleaved.

    ``sizes`` may hold T, P (XY positions) and Z; frames run Z fastest, then P, then T, as
    NIS-Elements nests its loops. ``lossless`` stores each frame zlib-compressed (as
    NIS-Elements' lossless option does). For hostile files: ``declared`` writes other loop
    counts than the frames written, ``chunks`` replaces the data of named chunks.
    """
    sizes = {"T": 1, "P": 1, "Z": 3, **(sizes or {})}
    n_c = len(channels)
    frames = sizes["T"] * sizes["P"] * sizes["Z"]
    attributes = {
        "SLxImageAttributes": {
            "uiWidth": width,
            "uiWidthBytes": width * 2 * n_c,
            "uiHeight": height,
            "uiComp": n_c,
            "uiBpcInMemory": 16,
            "uiBpcSignificant": 16,
            "uiSequenceCount": frames,
            "eCompression": 0 if lossless else 2,
        }
    }
    plane_meta = {
        f"a{i}": {"sDescription": name, "uiCompCount": 1, "pFluorescentProbe": _nd2_probe(i)}
        for i, name in enumerate(channels)
    }
    metadata = {
        "SLxPictureMetadata": {
            "bCalibrated": True,
            "dCalibration": pixel_size_um,
            "sPicturePlanes": {"uiCount": n_c, "sPlaneNew": plane_meta},
        }
    }
    counts = {**sizes, **(declared or {})}
    loops = []  # outermost first, as NIS-Elements nests them
    if sizes["T"] > 1:
        loops.append({"eType": 1, "uLoopPars": {"uiCount": counts["T"], **_ND2_TIMING}})
    if sizes["P"] > 1:
        points = {f"i{i:010}": {"dPosX": float(i), "dPosY": 0.0} for i in range(sizes["P"])}
        loops.append({"eType": 2, "uLoopPars": {"uiCount": counts["P"], "Points": points}})
    if sizes["Z"] > 1:
        loops.append({"eType": 4, "uLoopPars": {"uiCount": counts["Z"], "dZStep": 1.0}})
    experiment: dict = {}
    for loop in reversed(loops):
        experiment = {
            **loop,
            **({"ppNextLevelEx": {"i0000000000": experiment}} if experiment else {}),
        }

    written: list[tuple[bytes, bytes, int | None]] = [
        (b"ImageAttributesLV!", _clx_top(attributes), None),
        (b"ImageMetadataSeqLV|0!", _clx_top(metadata), None),
    ]
    if experiment:
        written.append((b"ImageMetadataLV!", _clx_top({"SLxExperiment": experiment}), None))
    written.append((b"CustomData|AcqTimesCache!", np.zeros(frames).tobytes(), None))
    index = 0
    for t in range(sizes["T"]):
        for p in range(sizes["P"]):
            for z in range(sizes["Z"]):
                frame = np.stack(
                    [planes(t, c, z + 100 * p, height, width) for c in range(n_c)], axis=-1
                )
                name = f"ImageDataSeq|{index}!".encode()
                pixels = zlib.compress(frame.tobytes()) if lossless else frame.tobytes()
                written.append((name, struct.pack("<d", 0.0) + pixels, -1))
                index += 1

    head = struct.pack("<IIQ", _ND2_MAGIC, 32, 64) + b"ND2 FILE SIGNATURE CHUNK NAME01!"
    out = bytearray(head + b"Ver3.0".ljust(64, b"\0"))
    chunk_map = b""
    for name, data, name_length in written:
        data = (chunks or {}).get(name, data)
        if name_length == -1:  # frames: pixels must start exactly 4096 + 8 bytes in
            name_length = _ND2_FRAME_NAME_LENGTH
        offset = len(out)
        out += _nd2_chunk(name, data, name_length)
        chunk_map += name + struct.pack("<QQ", offset, len(data))
    map_at = len(out)
    signature = b"ND2 CHUNK MAP SIGNATURE 0000001!"
    chunk_map += signature + struct.pack("<Q", map_at)
    out += _nd2_chunk(b"ND2 FILEMAP SIGNATURE NAME 0001!", chunk_map, 32)
    out += signature + struct.pack("<Q", map_at)
    return bytes(out)


def clx_compressed(stream: bytes) -> bytes:
    """A CLX-lite chunk body holding one compressed item: type 76, 10 bytes nd2 skips, zlib."""
    return bytes([76, 0]) + b"\0" * 10 + stream


def nd2_attributes(width: int = 64, height: int = 64, channels: int = 3) -> bytes:
    """The ``ImageAttributesLV!`` body :func:`make_nd2` writes, to compress or replace."""
    return _clx_top(
        {
            "SLxImageAttributes": {
                "uiWidth": width,
                "uiWidthBytes": width * 2 * channels,
                "uiHeight": height,
                "uiComp": channels,
                "uiBpcInMemory": 16,
                "uiBpcSignificant": 16,
                "uiSequenceCount": 3,
                "eCompression": 2,
            }
        }
    )


def _clx_top(value: dict) -> bytes:
    """A chunk's CLX-lite body: its single top-level item (nd2 decodes one at the top)."""
    ((name, child),) = value.items()
    return _clx_item(name, child)


# ---- Leica LIF ----------------------------------------------------------------------------------


def _lif_block(payload: bytes) -> bytes:
    """A LIF block: 0x70 magic, block length, 0x2A, payload."""
    return struct.pack("<ii", 0x70, len(payload) + 1) + b"\x2a" + payload


def make_lif(
    sizes: dict[str, int] | None = None,
    height: int = 64,
    width: int = 64,
    channels: Sequence[str] | None = CHANNELS,
    pixel_size_um: float | None = PIXEL_SIZE_UM,
    images: int = 1,
    planes: PlaneWriter = make_plane,
    declared: dict[str, int] | None = None,
) -> bytes:
    """A LIF (version 2 memory blocks) holding ``images`` images of T x Z x C planes.

    For hostile files, ``declared`` writes another NumberOfElements for Z or T than the planes
    stored (e.g. ``{"Z": 10**9}``).

    Channel names go where LAS X writes dye names for a confocal scan (the MultiBand entries of
    ATLConfocalSettingDefinition); planes are stored C fastest, then Z, then T.
    """
    sizes = {"T": 1, "Z": 3, **(sizes or {})}
    n_c = len(channels or CHANNELS)
    plane_bytes = height * width * 2
    dims = [(1, width, 2), (2, height, 2 * width)]
    if sizes["Z"] > 1:
        dims.append((3, sizes["Z"], plane_bytes * n_c))
    if sizes["T"] > 1:
        dims.append((4, sizes["T"], plane_bytes * n_c * sizes["Z"]))
    for extra, size in sizes.items():  # e.g. {"M": 4}: mosaic tiles, DimID 10
        if extra == "M":
            dims.append((10, size, plane_bytes * n_c * sizes["Z"] * sizes["T"]))

    def dim_xml(dim_id: int, count: int, step: int) -> str:
        extent = (count - 1) * pixel_size_um * 1e-6 if pixel_size_um else 0  # 0: uncalibrated
        length = f' Length="{extent!r}"'
        unit = ' Unit="m"' if dim_id in (1, 2, 3) else ' Unit="s"'
        count = (declared or {}).get({3: "Z", 4: "T"}.get(dim_id, ""), count)
        return (
            f'<DimensionDescription DimID="{dim_id}" NumberOfElements="{count}" Origin="0"'
            f'{length}{unit} BitInc="0" BytesInc="{step}"/>'
        )

    channel_xml = "".join(
        f'<ChannelDescription DataType="0" ChannelTag="0" Resolution="16" Min="0" Max="65535"'
        f' NameOfMeasuredQuantity="" Unit="" LUTName="Gray" IsLUTInverted="0"'
        f' BytesInc="{c * plane_bytes}" BitInc="0"/>'
        for c in range(n_c)
    )
    bands = "".join(
        f'<MultiBand Channel="{c + 1}" DyeName="{name}" LeftWorld="400" RightWorld="500"/>'
        for c, name in enumerate(channels or ())
    )
    confocal = (
        f"<ATLConfocalSettingDefinition><Spectro>{bands}</Spectro></ATLConfocalSettingDefinition>"
    )
    settings = f'<Attachment Name="HardwareSetting">{confocal}</Attachment>' if channels else ""
    total = plane_bytes * n_c * sizes["Z"] * sizes["T"] * sizes.get("M", 1)
    elements = "".join(
        f'<Element Name="image{i}"><Data><Image><ImageDescription><Channels>{channel_xml}'
        f"</Channels><Dimensions>{''.join(dim_xml(*d) for d in dims)}</Dimensions>"
        f"</ImageDescription>{settings}</Image></Data>"
        f'<Memory Size="{total}" MemoryBlockID="MemBlock_{i + 1}"/><Children/></Element>'
        for i in range(images)
    )
    xml = (
        '<LMSDataContainerHeader Version="2"><Element Name="project"><Data><Experiment/></Data>'
        f'<Memory Size="0" MemoryBlockID="MemBlock_0"/><Children>{elements}</Children>'
        "</Element></LMSDataContainerHeader>"
    )
    out = _lif_block(struct.pack("<i", len(xml)) + xml.encode("utf-16-le"))
    for i in range(images):
        pixels = b"".join(
            planes(t, c, z + 100 * (m + i), height, width).tobytes()
            for m in range(sizes.get("M", 1))
            for t in range(sizes["T"])
            for z in range(sizes["Z"])
            for c in range(n_c)
        )
        block_id = f"MemBlock_{i + 1}".encode("utf-16-le")
        payload = struct.pack("<q", len(pixels)) + b"\x2a" + struct.pack("<i", len(block_id) // 2)
        out += struct.pack("<ii", 0x70, 0) + b"\x2a" + payload + block_id + pixels
    return out
