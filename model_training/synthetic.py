"""Synthetic fluorescence-nuclei images with exact instance labels, in the style of SIMCEP/BBBC005.

Benchmark images come with a count per image at best; a generator gives unlimited images whose
count and per-nucleus masks are known exactly, which a counting network can be pre-trained and
tested on. Each nucleus is rendered only inside its own small box and every whole-image effect
(texture, illumination, blur, noise) is one cheap pass, so an image costs a few milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

MIN_VISIBLE_PIXELS = 20
"""Visible pixels every nucleus keeps (fewer only when ``radius_range`` is tiny)."""

_PLACEMENT_ATTEMPTS = 20  # positions tried for one drawn nucleus before falling back
_FALLBACK_ROUNDS = 10  # fresh, progressively smaller nuclei placed on free pixels only
_CLUSTER_SPACING = (0.8, 1.1)  # neighbour centre distance, in units of the sum of radii
_FIRST_HARMONIC = 2  # boundary harmonics k = 2, 3, ...: k = 1 would only shift the nucleus
_HARMONIC_AMPLITUDES = (0.05, 0.04, 0.03)  # small: irregular outlines, never star shapes


@dataclass(frozen=True)
class SyntheticConfig:
    """Image size, nucleus population and acquisition parameters; lengths are in pixels."""

    height: int = 256
    width: int = 256
    min_cells: int = 1
    max_cells: int = 100
    radius_range: tuple[float, float] = (5.0, 10.0)
    cluster_probability: float = 0.3
    max_overlap: float = 0.25
    blur_sigma_range: tuple[float, float] = (0.0, 1.5)
    noise_level_range: tuple[float, float] = (0.005, 0.03)
    illumination_strength: float = 0.3
    bit_depth: int = 8
    # Out-of-domain options, all off by default (the default output stays bit-identical). The
    # extra random draws come from a second generator seeded by (seed, 1), so switching an
    # option on leaves every other choice of the image unchanged.
    scale: float = 1.0  # nucleus size multiplier: radii are radius_range * scale
    tissue: float = 0.0  # brightness of an unlabelled autofluorescent tissue texture (0: none)
    debris: int = 0  # unlabelled small bright irregular specks and blobs per image
    haze: int = 0  # unlabelled dim out-of-focus nucleus-like blobs per image
    dense: bool = False  # nuclei packed edge to edge in tissue-like patches (count: a cap)
    dim_fraction: float = 0.0  # share of nuclei rendered at 0.1-0.3 of full brightness
    # Hard cases for the size estimate (issue 16), also off by default:
    grain: float = 0.0  # contrast of a fine chromatin grain (bright spots ~2 px) inside nuclei
    hot_pixels: int = 0  # single pixels at full scale (camera defects, 16-bit outliers)
    specks: int = 0  # small saturated specks (2-4 px) far brighter than any nucleus
    defocus: float = 0.0  # extra blur, as a share of the mean nucleus radius (heavy defocus)
    # Unlabelled cell bodies around the nuclei, at this brightness relative to a nucleus (0: none):
    # the faint cytoplasmic stain and autofluorescence of cultured cells and tissue.
    cytoplasm: float = 0.0

    def __post_init__(self) -> None:
        radius, blur, noise = self.radius_range, self.blur_sigma_range, self.noise_level_range
        checks = {
            "height and width must be positive": self.height > 0 and self.width > 0,
            "need 0 <= min_cells <= max_cells": 0 <= self.min_cells <= self.max_cells,
            "need 0 < radius_range[0] <= radius_range[1]": 0 < radius[0] <= radius[1],
            "cluster_probability must be in [0, 1]": 0.0 <= self.cluster_probability <= 1.0,
            "max_overlap must be in [0, 1)": 0.0 <= self.max_overlap < 1.0,
            "need 0 <= blur_sigma_range[0] <= [1]": 0 <= blur[0] <= blur[1],
            "need 0 <= noise_level_range[0] <= [1]": 0 <= noise[0] <= noise[1],
            "illumination_strength must be in [0, 1)": 0.0 <= self.illumination_strength < 1.0,
            "bit_depth must be 8 or 16": self.bit_depth in (8, 16),
            "scale must be in [0.1, 10]": 0.1 <= self.scale <= 10.0,
            "tissue must be in [0, 1]": 0.0 <= self.tissue <= 1.0,
            "debris and haze must be non-negative": self.debris >= 0 and self.haze >= 0,
            "dim_fraction must be in [0, 1]": 0.0 <= self.dim_fraction <= 1.0,
            "grain must be in [0, 2]": 0.0 <= self.grain <= 2.0,
            "hot_pixels and specks must be non-negative": min(self.hot_pixels, self.specks) >= 0,
            "defocus must be in [0, 2]": 0.0 <= self.defocus <= 2.0,
            "cytoplasm must be in [0, 1]": 0.0 <= self.cytoplasm <= 1.0,
        }
        failed = [message for message, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"invalid SyntheticConfig: {'; '.join(failed)}")

    @property
    def radii(self) -> tuple[float, float]:
        """The radius range actually drawn from: ``radius_range`` times ``scale``."""
        if self.scale == 1.0:
            return self.radius_range
        return (self.radius_range[0] * self.scale, self.radius_range[1] * self.scale)

    @property
    def has_clutter(self) -> bool:
        """Whether any unlabelled negative (tissue, debris, haze) is rendered."""
        return self.tissue > 0 or self.debris > 0 or self.haze > 0 or self.cytoplasm > 0


@dataclass(frozen=True)
class SyntheticSample:
    """An image, its instance labels (0 background, 1..count in painting order) and the count."""

    image: np.ndarray
    labels: np.ndarray
    count: int


@dataclass(frozen=True)
class _Nucleus:
    """One drawn nucleus in a square box whose centre pixel is ``(half, half)``."""

    mask: np.ndarray  # bool, inside the boundary: what the labels get
    weight: np.ndarray  # float32 soft-edged intensity profile, slightly wider than the mask
    half: int
    radius: float  # geometric-mean semi-axis, sets the spacing of clustered neighbours
    area: int


def _draw_nucleus(rng: np.random.Generator, low: float, high: float) -> _Nucleus:
    """Draw a perturbed ellipse; the boundary is ``s = f(psi)`` in normalised polar coordinates."""
    # One call, as Python floats: per-call and numpy-scalar overheads dominate for small boxes.
    u = rng.random(7 + 2 * len(_HARMONIC_AMPLITUDES)).tolist()
    a = low + (high - low) * u[0]
    b = min(max(a * (0.7 + 0.3 * u[1]), low), high)  # nuclei are roundish: aspect <= 1.43
    theta = math.pi * u[2]
    edge = 0.8 + 1.2 * u[3]  # width of the soft edge
    dome = 0.35 * u[4]  # centre brighter than the rim, as for a thick nucleus
    oy, ox = u[5] - 0.5, u[6] - 0.5  # sub-pixel centre so outlines vary
    # Harmonic k contributes Re(c_k e^{ik psi}) = A_k cos(k psi) + B_k sin(k psi).
    coeffs = [
        amp * complex(2 * re - 1, 1 - 2 * im)
        for amp, re, im in zip(_HARMONIC_AMPLITUDES, u[7::2], u[8::2], strict=True)
    ]

    half = math.ceil(max(a, b) * (1.0 + 2.0 * sum(_HARMONIC_AMPLITUDES)) + edge / 2 + 1)
    ys = (np.arange(-half, half + 1, dtype=np.float32) - oy)[:, None]
    xs = (np.arange(-half, half + 1, dtype=np.float32) - ox)[None, :]
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    p = xs * (cos_t / a) + ys * (sin_t / a)
    q = ys * (cos_t / b) - xs * (sin_t / b)
    s2 = p * p + q * q
    s = np.sqrt(s2)
    # e^{i psi} as a complex array and Horner's rule: far fewer array ops than arctan2 + cos.
    z = (p + 1j * q) * (1.0 / np.maximum(s, 1e-6))
    poly = coeffs[-1]
    for c in coeffs[-2::-1]:
        poly = poly * z + c
    f = 1.0 + (poly * z**_FIRST_HARMONIC).real
    dist = f - s  # times the mean radius: ~ signed distance to the boundary in pixels
    ramp = np.minimum(np.maximum(dist * (math.sqrt(a * b) / edge) + 0.5, 0.0), 1.0)
    weight = ramp * (1.0 - dome * np.minimum(s2, 1.0))
    mask = dist > 0
    return _Nucleus(mask, weight, half, math.sqrt(a * b), int(np.count_nonzero(mask)))


@dataclass
class _Layout:
    """Labels and intensities painted so far, with the bookkeeping behind the overlap rule."""

    labels: np.ndarray
    intensity: np.ndarray
    max_overlap: float
    min_visible: int
    area: np.ndarray  # per label: in-image pixels when painted
    visible: np.ndarray  # per label: pixels not yet painted over
    centres: list[tuple[int, int]] = field(default_factory=list)
    radii: list[float] = field(default_factory=list)

    def try_place(self, nucleus: _Nucleus, cy: int, cx: int, brightness: float) -> bool:
        """Paint the nucleus centred on pixel (cy, cx) on top, unless that breaks a rule."""
        height, width = self.labels.shape
        side = nucleus.mask.shape[0]
        y0, x0 = cy - nucleus.half, cx - nucleus.half
        iy0, ix0 = max(y0, 0), max(x0, 0)
        iy1, ix1 = min(y0 + side, height), min(x0 + side, width)
        if iy1 <= iy0 or ix1 <= ix0:
            return False
        local = (slice(iy0 - y0, iy1 - y0), slice(ix0 - x0, ix1 - x0))
        window = (slice(iy0, iy1), slice(ix0, ix1))
        mask = nucleus.mask[local]
        inside = int(np.count_nonzero(mask))
        if inside < max(self.min_visible, 0.5 * nucleus.area):
            return False  # mostly outside the image
        under = self.labels[window][mask]
        under = under[under > 0]
        if under.size:
            if under.size > self.max_overlap * inside:
                return False
            covered = np.bincount(under)
            ids = np.flatnonzero(covered)
            left = self.visible[ids] - covered[ids]
            if np.any(left < self.min_visible) or np.any(
                left < (1.0 - self.max_overlap) * self.area[ids]
            ):
                return False
            self.visible[ids] = left
        label = len(self.centres) + 1
        self.labels[window][mask] = label
        self.area[label] = self.visible[label] = inside
        self.intensity[window] += brightness * nucleus.weight[local]
        self.centres.append((cy, cx))
        self.radii.append(nucleus.radius)
        return True


def _crowded(count: int, config: SyntheticConfig, placed: int) -> ValueError:
    low, high = config.radii
    return ValueError(
        f"cannot place {count} cells of radius {low:g}-{high:g} px in "
        f"{config.height}x{config.width} with max_overlap={config.max_overlap:g} "
        f"(only {placed} fitted); use fewer or smaller cells or a larger image"
    )


def _new_layout(config: SyntheticConfig, capacity: int) -> _Layout:
    height, width = config.height, config.width
    low = config.radii[0]
    return _Layout(
        labels=np.zeros((height, width), np.int32),
        intensity=np.zeros((height, width), np.float32),
        max_overlap=config.max_overlap,
        min_visible=min(MIN_VISIBLE_PIXELS, max(1, int(0.3 * math.pi * low * low))),
        area=np.zeros(capacity + 1, np.int64),
        visible=np.zeros(capacity + 1, np.int64),
    )


def _brightness(
    rng: np.random.Generator, extra: np.random.Generator, config: SyntheticConfig
) -> float:
    """Full brightness 0.4-1; a ``dim_fraction`` share at 0.1-0.3, as beside bright nuclei."""
    brightness = rng.uniform(0.4, 1.0)
    if config.dim_fraction > 0 and extra.random() < config.dim_fraction:
        brightness = extra.uniform(0.1, 0.3)
    return brightness


def _place_nuclei(
    rng: np.random.Generator, config: SyntheticConfig, count: int, extra: np.random.Generator
) -> _Layout:
    """Place nuclei one by one; fall back to smaller nuclei on free pixels when crowded."""
    height, width = config.height, config.width
    low, high = config.radii
    layout = _new_layout(config, count)
    if count * layout.min_visible > height * width:
        raise _crowded(count, config, 0)
    for n in range(count):
        brightness = _brightness(rng, extra, config)
        nucleus = _draw_nucleus(rng, low, high)
        placed = False
        for _ in range(_PLACEMENT_ATTEMPTS):
            if n and rng.random() < config.cluster_probability:
                j = int(rng.integers(n))
                angle = rng.uniform(0.0, 2.0 * math.pi)
                dist = rng.uniform(*_CLUSTER_SPACING) * (nucleus.radius + layout.radii[j])
                cy = round(layout.centres[j][0] + dist * math.sin(angle))
                cx = round(layout.centres[j][1] + dist * math.cos(angle))
            else:
                cy, cx = int(rng.integers(height)), int(rng.integers(width))
            if layout.try_place(nucleus, cy, cx, brightness):
                placed = True
                break
        for round_ in range(1, _FALLBACK_ROUNDS + 1):
            if placed:
                break
            free = np.flatnonzero(layout.labels.ravel() == 0)
            if free.size == 0:
                break
            nucleus = _draw_nucleus(rng, low, high - (high - low) * round_ / _FALLBACK_ROUNDS)
            for index in rng.choice(free, size=_PLACEMENT_ATTEMPTS):
                cy, cx = divmod(int(index), width)
                if layout.try_place(nucleus, cy, cx, brightness):
                    placed = True
                    break
        if not placed:
            raise _crowded(count, config, n)
    return layout


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to zero mean and unit standard deviation."""
    field_ = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    field_ -= field_.mean()
    field_ /= max(float(field_.std()), 1e-6)
    return field_


def _place_dense(
    rng: np.random.Generator, config: SyntheticConfig, cap: int | None, extra: np.random.Generator
) -> _Layout:
    """Nuclei of one size on a jittered hexagonal lattice, edge to edge, inside smooth patches.

    Tissue and confluent cultures pack nuclei so that most touch several neighbours; random
    placement under the overlap rule never gets there. Lattice sites whose nucleus would break
    the overlap rule are left empty, so the count is whatever fitted (at most ``cap``).
    """
    height, width = config.height, config.width
    low, high = config.radii
    r0 = rng.uniform(low, high)
    spacing = r0 * rng.uniform(1.75, 1.95)
    patches = _smooth_noise(rng, (height, width), max(4.0 * spacing, 2.0))
    patches = patches > np.quantile(patches, 1.0 - rng.uniform(0.4, 0.85))
    row_step = spacing * math.sqrt(3.0) / 2.0
    sites = [
        (j * row_step, i * spacing + (j % 2) * spacing / 2.0)
        for j in range(math.ceil(height / row_step) + 1)
        for i in range(math.ceil(width / spacing) + 1)
    ]
    jitter = rng.normal(0.0, 0.12 * spacing, size=(len(sites), 2))
    centres = np.rint(np.asarray(sites) + jitter).astype(int)
    inside = (centres[:, 0] >= 0) & (centres[:, 0] < height)
    inside &= (centres[:, 1] >= 0) & (centres[:, 1] < width)
    centres = centres[inside]
    centres = centres[patches[centres[:, 0], centres[:, 1]]]
    centres = centres[rng.permutation(len(centres))]
    if cap is not None:
        centres = centres[:cap]
    layout = _new_layout(config, len(centres))
    size_low, size_high = max(low, 0.85 * r0), min(high, 1.15 * r0)
    for cy, cx in centres.tolist():
        brightness = _brightness(rng, extra, config)
        for shrink in (1.0, 0.8):
            nucleus = _draw_nucleus(rng, size_low * shrink, size_high * shrink)
            if layout.try_place(nucleus, cy, cx, brightness):
                break
    return layout


def _impulses(
    rng: np.random.Generator,
    shape: tuple[int, int],
    blobs: int,
    per_blob: tuple[int, int],
    spread: float,
    sigma: float,
    peak: tuple[float, float],
) -> np.ndarray:
    """Blobs made of a few delta spikes each (spread px apart), blurred by one Gaussian pass.

    One filter for all blobs keeps the cost to one pass; a spike of height ``2 pi sigma^2 p``
    blurs into a spot of peak ``p``, and a few spikes close together into an irregular blob.
    """
    height, width = shape
    spikes = np.zeros(shape, np.float32)
    for _ in range(blobs):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        n = int(rng.integers(per_blob[0], per_blob[1] + 1))
        ys = np.clip(np.rint(cy + rng.normal(0, spread, n)), 0, height - 1).astype(int)
        xs = np.clip(np.rint(cx + rng.normal(0, spread, n)), 0, width - 1).astype(int)
        heights = rng.uniform(*peak, n) * (2.0 * math.pi * sigma * sigma) / math.sqrt(n)
        np.add.at(spikes, (ys, xs), heights.astype(np.float32))
    return ndimage.gaussian_filter(spikes, sigma)


def _tissue(rng: np.random.Generator, config: SyntheticConfig) -> np.ndarray:
    """Autofluorescent tissue: multi-scale cloudy texture plus a patchy network of fibres.

    The cloudy part sums smooth noise at three scales; the fibres are the zero crossings of
    band-pass noise (thin curved ridges, like membranes and collagen), faded in patches. The
    lengths follow the nucleus scale, as both grow with magnification.
    """
    shape = (config.height, config.width)
    unit = min(max(config.scale, 0.5), 4.0)
    cloudy = sum(
        weight * _smooth_noise(rng, shape, sigma * unit)
        for weight, sigma in ((0.5, 2.0), (0.8, 6.0), (1.0, 18.0))
    )
    cloudy = np.maximum(0.5 + 0.2 * cloudy, 0.0)
    band = _smooth_noise(rng, shape, 2.5 * unit) - 0.8 * _smooth_noise(rng, shape, 5.0 * unit)
    band /= max(float(band.std()), 1e-6)
    fibres = np.exp(-np.square(band / rng.uniform(0.12, 0.25)))
    fibres *= np.clip(0.5 + 0.5 * _smooth_noise(rng, shape, 12.0 * unit), 0.0, 1.0)
    texture = cloudy * rng.uniform(0.4, 1.0) + fibres * rng.uniform(0.5, 1.2)
    texture *= config.tissue / max(float(np.percentile(texture, 99.0)), 1e-6)
    return texture.astype(np.float32)


def _clutter(rng: np.random.Generator, config: SyntheticConfig) -> np.ndarray:
    """Unlabelled intensity that is not a nucleus: tissue texture, debris and haze."""
    shape = (config.height, config.width)
    low, high = config.radii
    clutter = np.zeros(shape, np.float32)
    if config.tissue > 0:
        clutter += _tissue(rng, config)
    if config.debris > 0:
        specks = int(rng.binomial(config.debris, 0.6))
        clutter += _impulses(rng, shape, specks, (1, 3), 1.0, rng.uniform(0.6, 1.0), (0.6, 1.4))
        lumpy_sigma = max(0.8, 0.15 * low)
        clutter += _impulses(
            rng, shape, config.debris - specks, (3, 6), 0.3 * low, lumpy_sigma, (0.6, 1.2)
        )
    if config.haze > 0:
        sigma = 0.5 * (low + high) * rng.uniform(0.7, 1.1)
        clutter += _impulses(rng, shape, config.haze, (1, 1), 0.0, sigma, (0.08, 0.3))
    return clutter


_BODY_SIZE = (1.4, 2.6)  # cell body semi-major axis, in nucleus radii
_BODY_LOBES = (1, 3)  # overlapping ellipses per body: irregular, sometimes branched outlines


def _cell_bodies(
    rng: np.random.Generator, config: SyntheticConfig, centres: list[tuple[int, int]]
) -> np.ndarray:
    """Faint, unlabelled cell bodies around the nuclei, off-centre and irregular.

    Hoechst and DAPI stain the cytoplasm faintly and cells autofluoresce, so on a real image
    each nucleus sits in a dim cell body with edges of its own; a network that has only seen
    nuclei on black counts those bodies as extra nuclei. Each body is one to three soft-edged
    ellipses, larger than the nucleus and shifted off it, with a patchy intensity.
    """
    height, width = config.height, config.width
    radius = 0.5 * (config.radii[0] + config.radii[1])
    bodies = np.zeros((height, width), np.float32)
    for cy, cx in centres:
        level = config.cytoplasm * rng.uniform(0.3, 1.0)
        for _ in range(int(rng.integers(_BODY_LOBES[0], _BODY_LOBES[1] + 1))):
            major = radius * rng.uniform(*_BODY_SIZE)
            minor = major * rng.uniform(0.35, 0.9)
            shift, direction, theta = (
                radius * rng.uniform(0.3, 1.5),
                *rng.uniform(0, 2 * math.pi, 2),
            )
            oy, ox = cy + shift * math.sin(direction), cx + shift * math.cos(direction)
            reach = int(major * 1.3) + 2
            y0, y1 = max(0, int(oy) - reach), min(height, int(oy) + reach + 1)
            x0, x1 = max(0, int(ox) - reach), min(width, int(ox) + reach + 1)
            if y1 <= y0 or x1 <= x0:
                continue
            yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            u = (yy - oy) * math.cos(theta) + (xx - ox) * math.sin(theta)
            v = -(yy - oy) * math.sin(theta) + (xx - ox) * math.cos(theta)
            inside = np.sqrt((u / major) ** 2 + (v / minor) ** 2)
            edge = 1.0 / (1.0 + np.exp((inside - 1.0) / 0.12))  # soft edge, ~a tenth of the body
            np.maximum(bodies[y0:y1, x0:x1], level * edge, out=bodies[y0:y1, x0:x1])
    patchy = np.clip(1.0 + 0.35 * _smooth_noise(rng, (height, width), 0.4 * radius), 0.3, 1.7)
    return (bodies * patchy).astype(np.float32)


def illumination_field(
    rng: np.random.Generator, height: int, width: int, strength: float
) -> np.ndarray:
    """Random quadratic surface spanning 1 +- strength (at most): smooth vignetting/tilt."""
    y = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    c = rng.standard_normal(5).tolist()  # Python floats keep the arithmetic in float32
    surface = (c[0] * y + c[1] * y * y) + (c[2] * x + c[3] * x * x) + c[4] * (y * x)
    low, high = float(surface.min()), float(surface.max())
    amplitude = strength * rng.uniform(0.5, 1.0)
    return 1.0 + amplitude * ((surface - low) * (2.0 / max(high - low, 1e-6)) - 1.0)


def _chromatin_grain(extra: np.random.Generator, config: SyntheticConfig) -> np.ndarray:
    """Fine bright chromatin spots (~2 px, whatever the nucleus size): multiplies the nuclei.

    Large nuclei imaged at high magnification are speckled, not smooth; at the Otsu level their
    spots read as many small nuclei (100 px nuclei once read as 21 px)."""
    spots = np.maximum(_smooth_noise(extra, (config.height, config.width), 1.0), 0.0)
    return (1.0 + config.grain * spots).astype(np.float32)


def _outliers(extra: np.random.Generator, config: SyntheticConfig, image: np.ndarray) -> None:
    """Hot pixels and saturated specks, far above any nucleus, added in place after the
    exposure (so they clip at full scale rather than dimming the nuclei)."""
    height, width = image.shape
    for _ in range(config.hot_pixels):
        image[int(extra.integers(height)), int(extra.integers(width))] = 2.0
    rows, cols = np.indices((9, 9)) - 4
    for _ in range(config.specks):
        radius = extra.uniform(1.0, 2.0)
        cy, cx = (
            int(extra.integers(4, max(5, height - 4))),
            int(extra.integers(4, max(5, width - 4))),
        )
        disc = (rows**2 + cols**2 <= radius**2) * 3.0
        window = image[cy - 4 : cy + 5, cx - 4 : cx + 5]
        np.maximum(window, disc[: window.shape[0], : window.shape[1]], out=window)


def _render(
    rng: np.random.Generator,
    config: SyntheticConfig,
    cells: np.ndarray,
    clutter: np.ndarray | None = None,
    extra: np.random.Generator | None = None,
) -> np.ndarray:
    """Texture, unlabelled clutter, background, illumination, focus blur, noise, quantisation."""
    shape = (config.height, config.width)
    # Chromatin grain grows with the nuclei (never below 1-2 px: the pixel grid sets that).
    grain = rng.standard_normal(shape, dtype=np.float32)
    texture = ndimage.gaussian_filter(grain, rng.uniform(1.0, 2.0) * max(config.scale, 1.0))
    texture *= rng.uniform(0.15, 0.3) / max(float(texture.std()), 1e-6)
    texture += 1.0
    np.maximum(texture, 0.0, out=texture)
    image = np.minimum(cells, 1.0)  # overlapping nuclei add up, then saturate
    image *= texture
    if extra is not None and config.grain > 0:
        image *= _chromatin_grain(extra, config)
    if clutter is not None:
        image += clutter  # autofluorescence adds to the stain, under and around the nuclei
    image += rng.uniform(0.02, 0.08)
    image *= illumination_field(rng, *shape, config.illumination_strength)
    sigma = rng.uniform(*config.blur_sigma_range)
    if extra is not None and config.defocus > 0:
        radius = 0.5 * (config.radii[0] + config.radii[1])
        sigma = float(np.hypot(sigma, config.defocus * radius))
    if sigma > 0.05:
        image = ndimage.gaussian_filter(image, sigma)
    # Exposure: the brightest pixel lands at 70-95 % of full scale (an empty field stays dark).
    image *= rng.uniform(0.7, 0.95) / max(float(image.max()), 0.5)
    if extra is not None and (config.hot_pixels or config.specks):
        _outliers(extra, config, image)
    read = rng.uniform(*config.noise_level_range)
    shot = read * read * rng.uniform(1.0, 4.0)  # shot variance per unit intensity
    noise_sigma = np.sqrt(np.maximum(image, 0.0) * shot + read * read)
    image += noise_sigma * rng.standard_normal(shape, dtype=np.float32)
    full_scale = 2**config.bit_depth - 1
    image *= full_scale
    np.clip(image, 0.0, full_scale, out=image)
    return np.rint(image).astype(np.uint8 if config.bit_depth == 8 else np.uint16)


def generate_sample(
    seed: int, config: SyntheticConfig = SyntheticConfig(), count: int | None = None
) -> SyntheticSample:
    """Generate one image; identical ``seed``, ``config`` and ``count`` give identical arrays.

    ``count`` defaults to a uniform draw from ``[min_cells, max_cells]``. Every label 1..count is
    visible (at least ``MIN_VISIBLE_PIXELS`` pixels for the default radii), so the count can be
    recovered from the labels. Raises ``ValueError`` when the nuclei cannot be fitted. With
    ``dense`` the count is whatever fills the packed patches, capped by ``count`` when given.
    """
    rng = np.random.default_rng(seed)
    extra = np.random.default_rng([seed, 1])  # draws of the options that are off by default
    if count is not None and count < 0:
        raise ValueError(f"count must be non-negative, got {count}")
    if config.dense:
        layout = _place_dense(rng, config, count, extra)
        count = len(layout.centres)
    else:
        if count is None:
            count = int(rng.integers(config.min_cells, config.max_cells + 1))
        layout = _place_nuclei(rng, config, count, extra)
    clutter = _clutter(extra, config) if config.has_clutter else None
    if config.cytoplasm > 0:  # its own generator: the other options' draws stay unchanged
        clutter += _cell_bodies(np.random.default_rng([seed, 3]), config, layout.centres)
    image = _render(rng, config, layout.intensity, clutter, extra)
    return SyntheticSample(image=image, labels=layout.labels, count=count)
