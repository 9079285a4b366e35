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
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import sys
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from timing import median_ms  # bench/timing.py, beside this script

from service.files.decoding import decode_image
from service.files.imaging import decode_pil, integer_plane
from service.files.planes import PlaneRequest
from service.files.vendor_formats import LIBRARIES
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


if __name__ == "__main__":
    main()
