"""Scale-aware counting: estimate the nucleus size, bring the image to the size the network
learnt, and map the labels back to the uploaded pixel grid.

The U-Net sees a 256-px window with a receptive field of about 180 px; nuclei four times the
training size fall apart into fragments, and nuclei four times smaller merge. So each image is
resized by ``scale = training diameter / estimated diameter`` before the forward pass.

The estimate cannot come from a first network pass at native scale: that pass has already
fragmented large nuclei and reads them as small. It comes from the image itself: an Otsu
foreground of a lightly smoothed, size-capped copy; per bright component its equivalent
diameter, or for a clump of touching nuclei its inscribed circle (so it reads as one nucleus,
not as the clump); and a contrast-weighted median over the components. On the DSB2018
validation and test images, rescaled from 0.25x to 4x, it lands within a factor 1.5 of the true
median diameter on 87-97 % of the images (``bench/size_estimate_accuracy.py``,
``docs/counting.md``), in a few milliseconds: a small fraction of one forward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.filters import threshold_otsu

from model_training.counting import label_max, remove_small

_CROSS = ndimage.generate_binary_structure(2, 1)

ESTIMATE_MAX_SIDE = 768  # the estimate works on a copy at most this long (cost bound)
SMALL_NUCLEI_PX = 10.0  # estimates below this are repeated on a copy enlarged 2x
MIN_SIGNAL_TO_NOISE = 4.0  # foreground median above background, in background noise units
MIN_COMPONENT_AREA = 4  # pixels of the working copy: smaller bright specks are noise
MIN_SCALE = 1 / 8  # nuclei up to 8x the training size are brought down to it
# Bounded work: whatever the size says, the network sees at most this many times the upload's
# pixels (and never more than max_pixels). A 512x512 upload thus costs at most one 1024x1024
# pass, whatever the estimate; an estimate of 1.5 px once enlarged it to 2048x2048 (a 504).
MAX_PIXEL_GROWTH = 4.0
MAX_SCALE = MAX_PIXEL_GROWTH**0.5  # tiny nuclei are enlarged at most 2x (linear)
# A pinned diameter may still ask for up to 4x (the range the API accepted before the cap);
# the plan then says how much it wanted and the count is warned.
PINNED_MAX_SCALE = 4.0
CLUMP_RATIO = 1.6  # equivalent / inscribed diameter above which a component is a clump
CLUMP_WEIGHT = 4.0  # most nuclei a clump counts for in the median
SINGLE_RATIO = 1.15  # equivalent / inscribed diameter of a single nucleus (ellipse ~1.3:1)
BAND_BELOW, BAND_ABOVE = 1.7, 2.0  # nuclei within this band of the training size stay as-is
# A resized image whose cells the network segments at under this share of the training size
# (or over its inverse) was resized wrongly: it gets a second pass at the size the network saw.
REFINE_RATIO = 0.7


@dataclass(frozen=True)
class SizeEstimate:
    """The typical nucleus diameter of an image, in its own pixels."""

    diameter_px: float | None  # None: nothing bright enough to measure
    objects: int  # bright components the estimate rests on
    # Set by an estimate that took the image statistics as a prior (the network's): their own
    # reading, so that ``plan_scale`` enlarges only where both see small nuclei.
    from_network: bool = False
    statistics_px: float | None = None


def resize_plane(image: np.ndarray, scale: float) -> np.ndarray:
    """float32 image resized by ``scale`` (bilinear; antialiased when shrinking)."""
    if scale == 1.0:
        return np.asarray(image, dtype=np.float32)
    height, width = image.shape
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    plane = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F")
    return np.asarray(plane.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def estimate_diameter(image: np.ndarray) -> SizeEstimate:
    """Median nucleus diameter of a normalized image (see the module docstring).

    Nuclei only a few pixels across are measured again, on a copy enlarged 2x and at half
    height: at the Otsu level, blur widens them by a halo as wide as the blur, while the
    half-height contour of a blurred disc stays near its edge (and touching nuclei, joined at
    the Otsu level, part at half height). Larger nuclei keep the Otsu level: their texture
    (nucleoli, chromatin) would fragment them at half height.
    """
    image = np.asarray(image, dtype=np.float32)
    first = _estimate(image, min(1.0, ESTIMATE_MAX_SIDE / max(image.shape)), half_height=False)
    if first.diameter_px is not None and first.diameter_px < SMALL_NUCLEI_PX:
        return _estimate(image, min(2.0, ESTIMATE_MAX_SIDE / max(image.shape)), half_height=True)
    return first


def _estimate(image: np.ndarray, shrink: float, half_height: bool) -> SizeEstimate:
    work = resize_plane(image, shrink) if shrink != 1.0 else image
    smooth = ndimage.gaussian_filter(work, 0.7)
    if not np.isfinite(smooth).all() or float(smooth.max() - smooth.min()) < 1e-6:
        return SizeEstimate(None, 0)
    threshold = threshold_otsu(smooth)
    above = smooth > threshold
    if not above.any() or above.all():
        return SizeEstimate(None, 0)
    background = float(np.median(smooth[~above]))
    if not _has_signal(smooth, above, background):
        return SizeEstimate(None, 0)
    coarse, count = ndimage.label(above, structure=_CROSS)
    foreground = coarse > 0
    labels = coarse
    if half_height:  # each component at half its height above the background
        peaks = label_max(smooth, coarse, count)[1:]
        half = np.concatenate([[np.inf], background + 0.5 * (peaks - background)])
        foreground &= smooth > np.maximum(half[coarse], threshold)
        labels, count = ndimage.label(foreground, structure=_CROSS)
        if count == 0:
            return SizeEstimate(None, 0)
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    # Euclidean, not a cheaper chamfer transform: taxicab distances run long along diagonals,
    # read packed nuclei as larger, and cost the dense validation set 15 points of F1.
    depth = ndimage.distance_transform_edt(foreground)
    inscribed = label_max(depth, labels, count)[1:]
    # Bright signal of each component above the threshold: nuclei are bright, while faint
    # texture and fibres, which Otsu also lets through, are barely above it.
    mass = np.bincount(labels.ravel(), weights=(smooth - threshold).ravel(), minlength=count + 1)
    keep = areas >= MIN_COMPONENT_AREA
    if not keep.any():
        return SizeEstimate(None, 0)
    equivalent = 2 * np.sqrt(areas[keep] / np.pi)
    inscribed_diameter = 2 * (inscribed[keep] + 0.5)
    # A component much wider than its inscribed circle is a clump (or a long streak): read it
    # by its inscribed circle, scaled by the typical equivalent/inscribed ratio of a single
    # slightly elliptic nucleus; a single nucleus keeps its equivalent diameter.
    clump = equivalent > CLUMP_RATIO * inscribed_diameter
    diameters = np.where(clump, SINGLE_RATIO * inscribed_diameter, equivalent)
    # Each component counts by how bright it is above the threshold (its mean, so that size
    # does not bias the median), a clump by the nuclei it holds, up to CLUMP_WEIGHT: a whole
    # embryo or tissue patch above the Otsu level must not outweigh every nucleus in it.
    held = np.clip((equivalent / diameters) ** 2, 1.0, CLUMP_WEIGHT)
    weights = (mass[1:][keep] / areas[keep]) ** 2 * held
    return SizeEstimate(_weighted_median(diameters, weights) / shrink, int(keep.sum()))


def _has_signal(smooth: np.ndarray, above: np.ndarray, background: float) -> bool:
    """Whether what Otsu split off stands out of the background noise (``background``: the
    median below the threshold). On an empty field Otsu splits the noise itself, and its
    "nuclei" of a pixel or two would make the image be enlarged 4x, noise and all."""
    noise = 1.4826 * float(np.median(np.abs(smooth[~above] - background)))
    return float(np.median(smooth[above])) - background > MIN_SIGNAL_TO_NOISE * max(noise, 1e-6)


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    if cumulative[-1] <= 0:
        return float(np.median(values))
    return float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def choose_scale(
    diameter_px: float | None, trained_diameter_px: float | None, max_scale: float = MAX_SCALE
) -> float:
    """Resize factor that brings ``diameter_px`` to the training size.

    1.0 (no resize) when either size is unknown, or when the diameter lies within
    ``[trained / BAND_BELOW, trained * BAND_ABOVE]``: the network handles those as they are,
    and resampling would cost detail and time. The band was chosen on validation
    (``docs/counting.md``): narrower bands lose F1 on DSB2018 validation images, wider ones
    on nuclei enlarged 3x.
    """
    if not diameter_px or not trained_diameter_px:
        return 1.0
    if trained_diameter_px / BAND_BELOW <= diameter_px <= trained_diameter_px * BAND_ABOVE:
        return 1.0
    scale = trained_diameter_px / diameter_px
    return float(min(max(scale, MIN_SCALE), max_scale))


@dataclass(frozen=True)
class ScalePlan:
    diameter_px: float | None  # in the image's own pixels
    source: str  # "auto" (estimated), "given" or "pixel_size" (from the pixel sizes)
    scale: float  # network pixels per image pixel
    refined: bool = False  # from a second pass, at the size the first pass's cells had
    wanted_scale: float | None = None  # what the size asked for, when the work cap gave less

    @property
    def capped(self) -> bool:
        """Whether the nuclei were enlarged less than their size asked for."""
        return self.wanted_scale is not None

    @property
    def asked_scale(self) -> float:
        """The resize the nucleus size asked for (before the work cap)."""
        return self.scale if self.wanted_scale is None else self.wanted_scale


def capped_plan(
    diameter_px: float | None,
    source: str,
    trained_diameter_px: float | None,
    cap: float,
    refined: bool = False,
) -> ScalePlan:
    """The plan for ``diameter_px``, its enlargement limited to ``cap`` (and saying so)."""
    wanted = choose_scale(diameter_px, trained_diameter_px, max_scale=np.inf)
    scale = min(wanted, cap)
    return ScalePlan(diameter_px, source, scale, refined, wanted if wanted > scale else None)


def plan_scale(
    plane: np.ndarray,
    diameter: float | str,
    trained_diameter_px: float | None,
    max_pixels: int | None = None,
    source: str = "given",
    estimator: Callable[[np.ndarray], SizeEstimate] | None = None,
    max_scale: float = np.inf,
) -> ScalePlan:
    """The resize of one normalized image: from a known diameter (``source`` says where it
    came from), or from the estimate when ``diameter`` is "auto" (``estimator``, by default
    the image statistics of ``estimate_diameter``; ``size_model`` gives the network's).

    Enlarging is capped by ``scale_cap`` (bounded work) and by ``max_scale`` (the service's
    time budget); a capped plan records the scale its size asked for in ``wanted_scale``.
    """
    if isinstance(diameter, str):
        found = second_witness((estimator or estimate_diameter)(plane), trained_diameter_px)
        source = "auto"
    else:
        found = float(diameter)
    cap = min(scale_cap(plane.shape, max_pixels), max(1.0, max_scale))
    return capped_plan(found, source, trained_diameter_px, cap)


def second_witness(estimate: SizeEstimate, trained_diameter_px: float | None) -> float | None:
    """The estimated diameter to plan with: the network's, except that it may not enlarge the
    image alone.

    Enlarging is the costly direction (up to 4x the pixels) and the risky one: on textured
    tissue the network's probe at 2x reads the texture as small nuclei (synthetic tissue: 9 of
    24 images read at 4-9 px, one empty field then counted as 117 cells). Where the image
    statistics do not see nuclei that small (or none at all), the network's reading is raised
    to the lower edge of the no-resize band: counted as it is, the nearest size to what the
    network read. Shrinking needs no second witness: there the statistics are what fails
    (grainy chromatin, packed fields, defocus).
    """
    found, witness = estimate.diameter_px, estimate.statistics_px
    if not estimate.from_network or found is None or trained_diameter_px is None:
        return found
    smallest = trained_diameter_px / BAND_BELOW
    if found >= smallest or (witness is not None and witness < smallest):
        return found
    return smallest


def scale_cap(shape: tuple[int, ...], max_pixels: int | None) -> float:
    """The most an image of ``shape`` may be enlarged: the network sees at most
    MAX_PIXEL_GROWTH times its pixels, and never more than ``max_pixels`` (an image already
    past that is not enlarged at all). Checked on the rounded size ``resize_plane`` makes."""
    height, width = int(shape[0]), int(shape[1])
    budget = MAX_PIXEL_GROWTH * height * width
    if max_pixels is not None:
        budget = min(budget, float(max_pixels))
    cap = max(1.0, (budget / (height * width)) ** 0.5)
    while cap > 1.0 and max(1, round(height * cap)) * max(1, round(width * cap)) > budget:
        cap = max(1.0, cap * (1 - 1e-4))  # rounding up a side may overshoot by a row
    return cap


def refine_plan(
    plan: ScalePlan,
    network_diameter_px: float | None,
    trained_diameter_px: float | None,
    max_scale: float = MAX_SCALE,
) -> ScalePlan | None:
    """The plan of a second pass, or None when the first one stands.

    The estimate reads a patch of nuclei packed edge to edge as one clump and shrinks the
    image: the network then segments cells at half the training size and merges them. Its own
    median cell diameter, taken back to the image's pixels, is the better size. Only estimated
    sizes that shrank the image get a second look, and only once: on the validation suite this
    took the dense set from F1 0.779 to 0.848 and nuclei 4x the training size from 0.989 to
    1.0, changed no other set by more than 0.001, and the same rule for enlarged images helped
    one DSB group (+0.006) as much as it cost another (-0.003), so it is not applied there
    (docs/counting.md).
    """
    if plan.source != "auto" or plan.scale >= 1.0 or not trained_diameter_px:
        return None
    if network_diameter_px is None:
        return None
    ratio = network_diameter_px / trained_diameter_px
    if REFINE_RATIO <= ratio <= 1 / REFINE_RATIO:
        return None
    diameter = network_diameter_px / plan.scale
    second = capped_plan(diameter, "auto", trained_diameter_px, max_scale, refined=True)
    if abs(np.log(second.scale / plan.scale)) < np.log(1.1):
        return None
    return second


def diameter_bounds(trained_diameter_px: float | None) -> tuple[float, float]:
    """The nucleus diameters (px) a model trained at ``trained_diameter_px`` can be rescaled
    to serve: the limits of a pinned ``diameter``."""
    if trained_diameter_px is None:
        return (1.0, 10_000.0)
    return (
        round(trained_diameter_px / PINNED_MAX_SCALE, 2),
        round(trained_diameter_px / MIN_SCALE, 2),
    )


def labels_to_shape(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Instance labels resampled (nearest, pixel centres) onto a grid of ``shape``.

    Every cell survives the trip: a cell too small to own a pixel centre of the target grid
    (possible when the network saw the image enlarged) is given the pixel under its centroid,
    so the count of the returned labels equals the count of the input labels.
    """
    if labels.shape == tuple(shape):
        return labels
    rows = _centre_indices(shape[0], labels.shape[0])
    cols = _centre_indices(shape[1], labels.shape[1])
    out = labels[rows[:, None], cols[None, :]]
    count = int(labels.max(initial=0))
    if count == 0:
        return out
    present = np.zeros(count + 1, dtype=bool)
    present[np.unique(out)] = True
    missing = np.flatnonzero(~present[1:]) + 1
    if missing.size:
        centres = ndimage.center_of_mass(np.ones_like(labels), labels, missing)
        fy, fx = shape[0] / labels.shape[0], shape[1] / labels.shape[1]
        for cell, (y, x) in zip(missing, centres, strict=True):
            row = min(shape[0] - 1, int((y + 0.5) * fy))
            col = min(shape[1] - 1, int((x + 0.5) * fx))
            if out[row, col] == 0:
                out[row, col] = cell
    return remove_small(out, 1)  # renumbered 1..N should a cell have been lost


def _centre_indices(target: int, source: int) -> np.ndarray:
    """For each target pixel, the source pixel whose area holds its centre."""
    positions = (np.arange(target) + 0.5) * (source / target)
    return np.minimum(positions.astype(np.intp), source - 1)
