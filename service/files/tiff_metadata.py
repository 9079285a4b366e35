"""A TIFF's OME-XML and ImageJ metadata checked against the file, before tifffile acts on it.

tifffile builds an OME series from the sizes the XML declares: ``SizeZ="1000000000"`` over two
pages is a list of 10^9 entries (8 GiB) before any check of ours runs. ``TiffData IFD="-1"``
is a Python index, so a channel is read from the last page; OME-XML that does not parse, or
ImageJ sizes that do not add up, make tifffile fall back to a plain stack without a word.
Here, before ``TiffFile.series`` is touched:

- the OME-XML must parse, its ``Pixels`` sizes must be positive integers, and the planes all
  images declare must fit the IFDs the file holds;
- every ``TiffData`` must point inside the file (0 <= IFD, IFD + PlaneCount <= IFDs) and at
  planes its ``Pixels`` has;

and after it, a file tifffile calls OME or ImageJ must have been read as such (else the
metadata is inconsistent). Each failure is a 400 that says what the metadata claims.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import tifffile

from service.files.imaging import ImageError


def _inconsistent(what: str, detail: str) -> ImageError:
    return ImageError(
        400,
        "invalid_image",
        f"the file's {what} metadata is inconsistent with the file: {detail}; re-export it",
    )


def _local(element: ElementTree.Element) -> str:
    return element.tag.rsplit("}", 1)[-1]


def _integer(element: ElementTree.Element, name: str, default: int | None) -> int:
    value = element.get(name)
    if value is None:
        if default is None:
            raise _inconsistent("OME-XML", f"{_local(element)} has no {name}")
        return default
    try:
        return int(value)
    except ValueError:
        raise _inconsistent(
            "OME-XML", f"{_local(element)} {name}={value!r} is not an integer"
        ) from None


def check_before_series(tif: tifffile.TiffFile) -> None:
    """What must hold before tifffile builds series from the metadata."""
    if tif.is_ome:
        check_ome(tif.ome_metadata or "", len(tif.pages))
        return
    description = tif.pages.first.description if len(tif.pages) else ""
    if description.lstrip().startswith("<?xml") and "<OME" in description[:4096]:
        check_ome(description, len(tif.pages))  # OME-XML tifffile did not recognise: broken


def check_ome(xml: str, ifds: int) -> None:
    """OME-XML that parses, whose declared planes and TiffData lie inside ``ifds`` IFDs."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as error:
        raise _inconsistent("OME-XML", f"it does not parse ({error})") from None
    own = root.get("UUID")
    declared = 0
    for pixels in (element for element in root.iter() if _local(element) == "Pixels"):
        sizes = {axis: _integer(pixels, f"Size{axis}", None) for axis in "XYZCT"}
        if min(sizes.values()) < 1:
            raise _inconsistent(
                "OME-XML",
                "a size is not positive: " + ", ".join(f"{a}={s}" for a, s in sizes.items()),
            )
        channels = [child for child in pixels if _local(child) == "Channel"]
        samples = sum(_integer(channel, "SamplesPerPixel", 1) for channel in channels)
        # Channels of several samples (RGB) are one plane each.
        per_zt = len(channels) if channels and samples == sizes["C"] else sizes["C"]
        declared += sizes["Z"] * sizes["T"] * per_zt
        if declared > ifds:
            raise _inconsistent(
                "OME-XML",
                f"it declares {declared} planes (SizeZ={sizes['Z']}, SizeC={sizes['C']}, "
                f"SizeT={sizes['T']}, ...) but the file holds {ifds} IFDs",
            )
        for data in (child for child in pixels if _local(child) == "TiffData"):
            _check_tiff_data(data, sizes, ifds, own)


def _check_tiff_data(
    data: ElementTree.Element, sizes: dict[str, int], ifds: int, own: str | None
) -> None:
    uuid = next((child for child in data if _local(child) == "UUID"), None)
    if uuid is not None and own and (uuid.text or "").strip() != own:
        return  # planes of another file of a multi-file dataset: missing here, refused on read
    first = _integer(data, "IFD", 0)
    count = _integer(data, "PlaneCount", 1 if data.get("IFD") is not None else ifds - first)
    if first < 0 or count < 0 or first + count > ifds:
        raise _inconsistent(
            "OME-XML",
            f'TiffData IFD="{data.get("IFD")}" PlaneCount="{data.get("PlaneCount")}" points '
            f"outside the file's {ifds} IFDs (0-{ifds - 1})",
        )
    for axis in "ZCT":
        index = _integer(data, f"First{axis}", 0)
        if not 0 <= index < sizes[axis]:
            raise _inconsistent(
                "OME-XML", f"TiffData First{axis}={index} is outside Size{axis}={sizes[axis]}"
            )


def check_series(tif: tifffile.TiffFile, series: tifffile.TiffPageSeries) -> None:
    """tifffile falls back to a plain stack when OME or ImageJ metadata does not fit the
    pages; a file that says it is one must be read as one."""
    # An OME-XML without Pixels (a BinaryOnly file of a companion-file dataset) declares
    # nothing here: its pages are read as they are.
    if tif.is_ome and series.kind != "ome" and "Pixels" in (tif.ome_metadata or ""):
        raise _inconsistent("OME-XML", "its images, sizes and planes do not match the pages")
    if tif.is_imagej and series.kind != "imagej":
        metadata = tif.imagej_metadata or {}
        claims = ", ".join(
            f"{key}={metadata[key]}"
            for key in ("images", "channels", "slices", "frames")
            if key in metadata
        )
        raise _inconsistent(
            "ImageJ", f"it declares {claims or 'a hyperstack'} over {len(tif.pages)} pages"
        )
