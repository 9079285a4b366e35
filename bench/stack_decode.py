"""What reading a microscope file costs on the request path: ``service.files.decoding.decode_image``
(sniff, reader, plane choice, intensity plane), against a plain decode of the same bytes.

    python bench/stack_decode.py [--size 1024] [--channels 4] [--z 10] [--repeats 15]

Cases, each timed as the median of ``--repeats`` calls after one warm-up:

- PNG, one 8-bit plane: the service's path against Pillow + numpy alone (the floor), and
  against the PNG reader without the stack layer (what the new layer itself costs);
- OME-TIFF, C channels of one plane, DAPI picked by name, uncompressed and zlib;
- OME-TIFF z-stack (Z x C), ``z=max``: the service reads the Z planes of one channel one at a
  time, against ``tifffile.imread`` of the whole stack and a max over Z (what a script does);
- OME-TIFF z-stack, ``z=<one plane>``;
- CZI, ND2 and LIF z-stacks, ``z=max``, when their readers are installed (files written by
  tests/service/vendor_files.py).

Prints a markdown table; docs/benchmarks.md ("Reading microscope files") has the figures.

A second table times the checks of issue 17 (hostile files) on the same path: decode_image of
a Deflate and an LZMA OME-TIFF and a PackBits TIFF through the bounded decoders
(service.files.bounded_codecs) against the same call with tifffile's own unbounded decoders
put back;
a lossless ND2 z-stack through the bounded frame inflate against ``zlib.decompress`` in its
place (and against nd2's ``read_frame``, what a script does); and the metadata
checks alone (service.files.tiff_metadata on the OME-XML, service.pixel_sizes, channel-name
folding), each against the decode they sit in front of.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import statistics
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tifffile import _imagecodecs as tifffile_fallback  # tifffile's decoders sans imagecodecs
from timing import median_ms  # bench/timing.py, beside this script

from service.files import bounded_codecs, nd2_bounds
from service.files.decoding import decode_image
from service.files.imaging import decode_pil, integer_plane
from service.files.planes import PlaneRequest, normalized
from service.files.tiff_metadata import check_ome
from service.files.vendor_formats import LIBRARIES
from service.pixel_sizes import checked
from tests.service.bad_inputs import ome_with_tiff_data, tiff_pages
from tests.service.vendor_files import make_czi, make_lif, make_nd2

LIMIT = 2**31
NAMES = ("Alexa Fluor 488", "DAPI", "Cy3", "Cy5", "Cy7", "BF")


def ome(array: np.ndarray, axes: str, names: tuple[str, ...], compression: str | None) -> bytes:
    buffer = io.BytesIO()
    metadata = {"axes": axes, "Channel": {"Name": list(names)}, "PhysicalSizeX": 0.325}
    tifffile.imwrite(buffer, array, ome=True, metadata=metadata, compression=compression)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--z", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    size, channels, depth = args.size, args.channels, args.z
    names = NAMES[:channels]
    stack = rng.integers(0, 4000, (depth, channels, size, size), dtype=np.uint16)
    rows: list[tuple[str, str, float, str, float]] = []

    def case(label: str, data: bytes, request: PlaneRequest, baseline: str, floor) -> None:
        service = median_ms(lambda: decode_image(data, LIMIT, request), args.repeats)
        base = median_ms(floor, args.repeats) if floor is not None else float("nan")
        rows.append((label, f"{len(data) / 2**20:.1f}", service, baseline, base))

    png = io.BytesIO()
    Image.fromarray((stack[0, 0] >> 4).astype(np.uint8)).save(png, format="PNG")
    png_bytes = png.getvalue()
    case(
        f"PNG {size}x{size} 8-bit",
        png_bytes,
        PlaneRequest(),
        "Pillow + numpy",
        lambda: np.asarray(Image.open(io.BytesIO(png_bytes))),
    )
    case(
        f"PNG {size}x{size} 8-bit",
        png_bytes,
        PlaneRequest(),
        "imaging.decode_pil (with its truncation check)",
        lambda: integer_plane(decode_pil(png_bytes, "png", LIMIT)),
    )
    for compression in (None, "zlib"):
        data = ome(stack[0], "CYX", names, compression)
        case(
            f"OME-TIFF C={channels}, DAPI by name, {compression or 'uncompressed'}",
            data,
            PlaneRequest(),
            "tifffile.imread()[1]",
            lambda data=data: tifffile.imread(io.BytesIO(data))[1],
        )
    data = ome(stack, "ZCYX", names, None)
    case(
        f"OME-TIFF Z={depth} C={channels}, z=max",
        data,
        PlaneRequest(z="max"),
        "tifffile.imread().max(0)[1]",
        lambda: tifffile.imread(io.BytesIO(data))[:, 1].max(axis=0),
    )
    case(
        f"OME-TIFF Z={depth} C={channels}, z={depth // 2}",
        data,
        PlaneRequest(z=depth // 2),
        "tifffile.imread()[z, 1]",
        lambda: tifffile.imread(io.BytesIO(data))[depth // 2, 1],
    )
    vendor_names = ("DAPI", *NAMES[:channels][2:], "GFP")[:channels]
    for kind, writer in (("czi", make_czi), ("nd2", make_nd2), ("lif", make_lif)):
        if importlib.util.find_spec(LIBRARIES[kind].split(".")[0]) is None:
            continue
        data = writer(sizes={"Z": depth}, height=size, width=size, channels=vendor_names)
        case(f"{kind.upper()} Z={depth} C={channels}, z=max", data, PlaneRequest(z="max"), "", None)

    print(f"{size}x{size} uint16 planes, medians of {args.repeats} calls\n")
    print("| file | MiB | service decode (ms) | baseline | baseline (ms) | ratio |")
    print("| --- | ---: | ---: | --- | ---: | ---: |")
    for label, mib, service, baseline, base in rows:
        ratio = f"{service / base:.2f}" if base == base else ""
        shown = f"{base:.2f}" if base == base else ""
        print(f"| {label} | {mib} | {service:.2f} | {baseline} | {shown} | {ratio} |")
    hostile_checks(stack, names, args.repeats)


def unbounded_tifffile() -> contextlib.AbstractContextManager[None]:
    """tifffile's own decoders (no size limit) in place of service.files.bounded_codecs'."""

    @contextlib.contextmanager
    def swapped() -> Iterator[None]:
        codecs = tifffile.TIFF.DECOMPRESSORS._codecs
        saved = dict(codecs)
        for code in (8, 32946, 50013):
            codecs[code] = tifffile_fallback.zlib_decode
        codecs[34925] = tifffile_fallback.lzma_decode
        codecs[32773] = tifffile_fallback.packbits_decode
        original = bounded_codecs.installed
        bounded_codecs.installed = lambda: True  # let check_compression pass the swap
        try:
            yield
        finally:
            codecs.update(saved)
            bounded_codecs.installed = original

    return swapped()


def literal_packbits(data: bytes) -> bytes:
    """PackBits of literal runs only (tifffile writes PackBits only with imagecodecs; random
    pixels hardly repeat, so this is what an encoder would make of them)."""
    return b"".join(bytes([len(run) - 1]) + run for run in _runs(data, 128))


def _runs(data: bytes, length: int) -> Iterator[bytes]:
    for start in range(0, len(data), length):
        yield data[start : start + length]


def interleaved_ms(
    first: Callable[[], object], second: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Median milliseconds of two tasks timed in turn, call by call, so that load from other
    processes on a shared machine falls on both alike (one warm-up call each)."""
    first(), second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for task, spent in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            task()
            spent.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[0]), 1000 * statistics.median(times[1])


def hostile_checks(stack: np.ndarray, names: tuple[str, ...], repeats: int) -> None:
    """The cost of issue 17's checks, each against what it sits in front of."""
    depth, channels, size = stack.shape[0], stack.shape[1], stack.shape[2]
    rows: list[tuple[str, float, str, float]] = []
    request = PlaneRequest(z="max")
    packbits = literal_packbits(stack[0, 1].tobytes())
    files = {
        f"OME-TIFF Deflate Z=4 C={channels}": ome(stack[:4], "ZCYX", names, "zlib"),
        f"OME-TIFF LZMA Z=4 C={channels}": ome(stack[:4], "ZCYX", names, "lzma"),
        "TIFF PackBits Z=4 (one strip a page)": tiff_pages(size, size, packbits, 32773, 4, 16),
    }
    for label, data in files.items():

        def bounded(data: bytes = data) -> object:
            return decode_image(data, LIMIT, request)

        def loose(data: bytes = data) -> object:
            with unbounded_tifffile():
                return decode_image(data, LIMIT, request)

        ours, theirs = interleaved_ms(bounded, loose, repeats)
        rows.append((f"{label}, z=max: bounded decoders", ours, "unbounded", theirs))
    if importlib.util.find_spec("nd2") is not None:
        import nd2

        vendor = ("DAPI", *names[2:], "GFP")[:channels]
        data = make_nd2({"Z": 4}, height=size, width=size, channels=vendor, lossless=True)

        def by_nd2() -> np.ndarray:
            with nd2.ND2File(io.BytesIO(data)) as handle:
                return np.max([handle.read_frame(z)[0] for z in range(4)], axis=0)

        def frames_bounded() -> object:
            return decode_image(data, LIMIT, request)

        def frames_loose() -> object:
            bounded_inflate = nd2_bounds.inflate
            nd2_bounds.inflate = lambda stream, limit: zlib.decompress(stream)
            try:
                return decode_image(data, LIMIT, request)
            finally:
                nd2_bounds.inflate = bounded_inflate

        ours, theirs = interleaved_ms(frames_bounded, frames_loose, repeats)
        label = f"ND2 lossless Z=4 C={channels}, z=max: bounded frame inflate"
        rows.append((label, ours, "zlib.decompress in its place", theirs))
        ours, theirs = interleaved_ms(frames_bounded, by_nd2, repeats)
        label = "the same file: the service's whole decode"
        rows.append((label, ours, "nd2 read_frame + max (a script)", theirs))
    planes = max(depth, 1) * 100
    big = ome_with_tiff_data(np.zeros((planes, 32, 32), np.uint16))
    with tifffile.TiffFile(io.BytesIO(big)) as tif:
        xml, ifds = tif.ome_metadata or "", len(tif.pages)
    ours, theirs = interleaved_ms(
        lambda: check_ome(xml, ifds),
        lambda: decode_image(big, LIMIT, PlaneRequest(z=planes - 1)),
        repeats,
    )
    label = f"OME-XML check, {planes} planes, a TiffData each ({len(xml) // 1024} KiB)"
    rows.append((label, ours, f"decode_image of that file, z={planes - 1}", theirs))
    small = ome(stack[0], "CYX", names, None)
    with tifffile.TiffFile(io.BytesIO(small)) as tif:
        xml, ifds = tif.ome_metadata or "", len(tif.pages)
    ours, theirs = interleaved_ms(
        lambda: check_ome(xml, ifds), lambda: decode_image(small, LIMIT, PlaneRequest()), repeats
    )
    label = f"OME-XML check, C={channels} planes"
    rows.append((label, ours, f"decode_image of that file ({size}x{size}, DAPI)", theirs))
    rows.append(
        (
            "pixel size check + NFKC folding of 6 channel names",
            median_ms(lambda: (checked(0.325), [normalized(n) for n in NAMES]), repeats * 100),
            "",
            float("nan"),
        )
    )
    print(f"\nChecks of issue 17 (hostile files), medians of {repeats} interleaved calls\n")
    print("| step | service (ms) | against | against (ms) | ratio |")
    print("| --- | ---: | --- | ---: | ---: |")
    for label, service, baseline, base in rows:
        ratio = f"{service / base:.2f}" if base == base else ""
        shown = f"{base:.2f}" if base == base else ""
        print(f"| {label} | {service:.3f} | {baseline} | {shown} | {ratio} |")


if __name__ == "__main__":
    main()
