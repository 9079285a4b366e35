"""Open and per-plane decode time of the vendor readers that happen to be installed.

    python bench/vendor_readers.py [--repeats 15] [--channels 4 --z 5 --size 512]

Writes one Zeiss CZI, Nikon ND2 and Leica LIF file (uint16, C x Z planes of size x size,
uncompressed, by the writers of tests/service/vendor_files.py; CZI also by pylibCZIrw when it is
installed) and times, for each reader it can import: opening the file and reading its header
(``open``), and reading one plane (``plane``: the median over every plane of the median of
``--repeats`` reads). The direct readers get the bytes in memory (io.BytesIO) where they accept
it, as the service hands them; pylibCZIrw and bioio get a file path. Prints a markdown table.
docs/benchmarks.md ("Vendor readers") has the figures and the choice they led to.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from timing import median_ms  # bench/timing.py, beside this script

from tests.service.vendor_files import make_czi, make_lif, make_nd2

Opener = Callable[[], object]
PlaneReader = Callable[[object, int, int], np.ndarray]


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def czifile_reader(data: bytes) -> tuple[Opener, PlaneReader]:
    import czifile

    def open_() -> object:
        czi = czifile.CziFile(io.BytesIO(data))
        czi.filtered_subblock_directory  # noqa: B018 - the header parse being timed
        return czi

    def plane(czi, c: int, z: int) -> np.ndarray:
        axes = czi.axes
        for entry in czi.filtered_subblock_directory:
            start = dict(zip(axes, entry.start, strict=True))
            if start.get("C", 0) == c and start.get("Z", 0) == z:
                return entry.data_segment().data().squeeze()
        raise KeyError((c, z))

    return open_, plane


def pylibczirw_reader(path: str) -> tuple[Opener, PlaneReader]:
    from pylibCZIrw import czi as pyczi

    def open_() -> object:
        handle = pyczi.CziReader(path)
        handle.total_bounding_box  # noqa: B018
        return handle

    def plane(handle, c: int, z: int) -> np.ndarray:
        return handle.read(plane={"C": c, "Z": z, "T": 0})[..., 0]

    return open_, plane


def nd2_reader(data: bytes) -> tuple[Opener, PlaneReader]:
    import nd2

    def open_() -> object:
        handle = nd2.ND2File(io.BytesIO(data))
        handle.sizes  # noqa: B018
        return handle

    def plane(handle, c: int, z: int) -> np.ndarray:
        return handle.read_frame(z)[c]  # one frame holds every channel of a z

    return open_, plane


def readlif_reader(data: bytes) -> tuple[Opener, PlaneReader]:
    from readlif.reader import LifFile

    def open_() -> object:
        return LifFile(io.BytesIO(data)).get_image(0)

    def plane(image, c: int, z: int) -> np.ndarray:
        return np.asarray(image.get_frame(z=z, c=c))

    return open_, plane


def bioio_reader(path: str, plugin: str) -> tuple[Opener, PlaneReader]:
    from bioio import BioImage

    reader = importlib.import_module(plugin).Reader

    def open_() -> object:
        image = BioImage(path, reader=reader)
        image.dims  # noqa: B018
        return image

    def plane(image, c: int, z: int) -> np.ndarray:
        return image.get_image_dask_data("YX", T=0, C=c, Z=z).compute()

    return open_, plane


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--z", type=int, default=5)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    names = tuple(f"ch{i}" for i in range(args.channels))
    shape = {"height": args.size, "width": args.size, "channels": names}
    files = {
        "czi": make_czi({"Z": args.z}, **shape),
        "nd2": make_nd2({"Z": args.z}, **shape),
        "lif": make_lif({"Z": args.z}, **shape),
    }
    workdir = Path(tempfile.mkdtemp(prefix="vendor-bench-"))
    paths = {}
    for kind, data in files.items():
        paths[kind] = str(workdir / f"bench.{kind}")
        Path(paths[kind]).write_bytes(data)

    candidates: list[tuple[str, str, Callable[[], tuple[Opener, PlaneReader]]]] = []
    if have("czifile"):
        candidates.append(("czifile", "czi", lambda: czifile_reader(files["czi"])))
    if have("pylibCZIrw"):
        from pylibCZIrw import czi as pyczi

        zeiss = str(workdir / "pylibczirw.czi")
        with pyczi.create_czi(zeiss, exist_ok=True) as out:
            for c in range(args.channels):
                for z in range(args.z):
                    plane = np.full((args.size, args.size), 1000 * c + z, np.uint16)
                    out.write(plane, plane={"C": c, "Z": z, "T": 0})
        candidates.append(("pylibCZIrw", "czi", lambda: pylibczirw_reader(paths["czi"])))
        if have("czifile"):
            data = Path(zeiss).read_bytes()
            candidates.append(("czifile (pylibCZIrw file)", "czi", lambda: czifile_reader(data)))
    if have("nd2"):
        candidates.append(("nd2", "nd2", lambda: nd2_reader(files["nd2"])))
    if have("readlif"):
        candidates.append(("readlif", "lif", lambda: readlif_reader(files["lif"])))
    for plugin, kind in (("bioio_czi", "czi"), ("bioio_nd2", "nd2"), ("bioio_lif", "lif")):
        if have("bioio") and have(plugin):
            candidates.append(
                (
                    f"bioio + {plugin.replace('_', '-')}",
                    kind,
                    lambda p=plugin, k=kind: bioio_reader(paths[k], p),
                )
            )

    print(
        f"{args.channels} C x {args.z} Z x {args.size}x{args.size} uint16, uncompressed; "
        f"medians of {args.repeats} repeats\n"
    )
    print("| reader | format | open + header (ms) | one plane (ms) |")
    print("| --- | --- | ---: | ---: |")
    for label, kind, build in candidates:
        open_, read = build()
        handle = open_()
        expected = read(handle, 1, 2)
        assert expected.shape == (args.size, args.size), (label, expected.shape)
        opened = median_ms(open_, args.repeats)
        planes = [
            median_ms(lambda c=c, z=z, r=read, h=handle: r(h, c, z), args.repeats)
            for c in range(args.channels)
            for z in range(args.z)
        ]
        print(f"| {label} | {kind} | {opened:.2f} | {statistics.median(planes):.3f} |")
    if not candidates:
        print("| (no vendor reader installed) | | | |")


if __name__ == "__main__":
    main()
