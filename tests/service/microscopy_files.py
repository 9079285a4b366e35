"""Microscope-style files made with tifffile, the writer labs' own pipelines use: OME-TIFF with
channel names and pixel size, ImageJ hyperstacks, plain multi-page TIFF."""

from __future__ import annotations

import io

import numpy as np
import tifffile

from model_training.synthetic import SyntheticConfig, generate_sample

CHANNELS = ("Alexa Fluor 488", "DAPI", "Cy3", "Cy5")


def nuclei(seed: int, size: int = 256) -> tuple[np.ndarray, int]:
    """A 16-bit plane of generated nuclei and its true count."""
    sample = generate_sample(seed, SyntheticConfig(height=size, width=size, bit_depth=16))
    return sample.image, sample.count


def stains(seed: int, nuclear: np.ndarray, names: tuple[str, ...] = CHANNELS) -> np.ndarray:
    """(C, Y, X): the nuclei in the channel named DAPI, noise with a few blobs elsewhere."""
    rng = np.random.default_rng(seed)
    planes = []
    for name in names:
        if name == "DAPI":
            planes.append(nuclear)
        else:
            planes.append((rng.random(nuclear.shape) * 4000).astype(np.uint16))
    return np.stack(planes)


def ome_tiff(array: np.ndarray, axes: str, names=None, pixel_size_um=None) -> bytes:
    metadata: dict = {"axes": axes}
    if names is not None:
        metadata["Channel"] = {"Name": list(names)}
    if pixel_size_um is not None:
        metadata.update(PhysicalSizeX=pixel_size_um, PhysicalSizeY=pixel_size_um)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, ome=True, metadata=metadata)
    return buffer.getvalue()


def imagej_tiff(array: np.ndarray, axes: str, pixel_size_um=None, labels=None) -> bytes:
    metadata: dict = {"axes": axes}
    resolution = None
    if pixel_size_um is not None:
        metadata["unit"] = "um"
        resolution = (1 / pixel_size_um, 1 / pixel_size_um)
    if labels is not None:
        metadata["Labels"] = list(labels)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, imagej=True, resolution=resolution, metadata=metadata)
    return buffer.getvalue()


def multipage_tiff(planes: np.ndarray) -> bytes:
    """One page per plane and no metadata saying what the pages are."""
    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as writer:
        for plane in planes:
            writer.write(plane, metadata=None)
    return buffer.getvalue()
