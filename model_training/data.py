"""Training and evaluation data: labelled folders, the synthetic source, random crops.

Data sources are named by a spec string so that one ``--data`` flag can mix them:

- a folder path holding ``images/`` and ``masks/`` (matched by file stem);
- ``synthetic:N`` — N generated BBBC005-style images per epoch (training) or in the set
  (evaluation); ``synthetic:N:HxW`` sets the image size (default 256x256).

Every random choice derives from (seed, epoch, index), so a run is reproducible and workers of
a DataLoader or ranks of a distributed run never need to share random state.

Augmentation comes in two recipes (``--augment``): ``basic`` (flips, rotations, a mild gain and
offset: the reference recipe) and ``wide``, for images unlike the training set: nuclei rescaled
0.5-2x, gamma, contrast, dim nuclei beside bright ones, defocus, noise and uneven illumination,
with synthetic images that mix in tissue texture, debris, haze, dense packing, dim nuclei, cell
bodies, heavy defocus, chromatin grain and 16-bit outliers.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import Dataset

from model_training.image_io import list_images, read_image, read_labels
from model_training.normalization import PercentileNormalization
from model_training.synthetic import SyntheticConfig, generate_sample, illumination_field
from model_training.targets import contact_weights, separated_foreground

SPLITS = ("train", "val", "test")
AUGMENTATIONS = ("basic", "wide")
SCALE_RANGE = (0.5, 2.0)
"""Log-uniform range of the ``wide`` rescaling: the network should cope with 2x either way."""
# Disjoint synthetic seed ranges: no test or validation image is ever generated for training.
SYNTHETIC_SEED_BASE = {"train": 0, "val": 1_000_000_000, "test": 2_000_000_000}


@dataclass
class LabelledImage:
    """One image normalized for the network, its instance labels and its training target."""

    name: str
    image: np.ndarray  # float32, normalized
    labels: np.ndarray  # int32 instance labels
    target: np.ndarray  # float32 foreground with gaps between touching instances

    @property
    def count(self) -> int:
        return int(len(np.unique(self.labels)) - (1 if (self.labels == 0).any() else 0))


@dataclass(frozen=True)
class SyntheticSpec:
    count: int
    height: int = 256
    width: int = 256

    @property
    def config(self) -> SyntheticConfig:
        """1-100 cells as in BBBC005; images smaller than 256x256 get proportionally fewer."""
        max_cells = min(100, max(1, round(100 * self.height * self.width / 256**2)))
        return replace(SyntheticConfig(), height=self.height, width=self.width, max_cells=max_cells)


def parse_synthetic(spec: str) -> SyntheticSpec | None:
    """``synthetic:N[:HxW]`` -> SyntheticSpec; anything else -> None (a folder path)."""
    if not spec.startswith("synthetic"):
        return None
    parts = spec.split(":")
    try:
        count = int(parts[1]) if len(parts) > 1 else 1000
        height, width = (
            (int(v) for v in parts[2].lower().split("x")) if len(parts) > 2 else (256, 256)
        )
    except ValueError as error:
        raise ValueError(
            f"bad synthetic spec {spec!r}; expected synthetic:N or synthetic:N:HxW"
        ) from error
    return SyntheticSpec(count=count, height=height, width=width)


def folder_pairs(folder: str | Path) -> list[tuple[Path, Path]]:
    """(image, mask) paths of a labelled folder, matched by file stem."""
    folder = Path(folder)
    images_dir, masks_dir = folder / "images", folder / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise FileNotFoundError(f"{folder} must contain images/ and masks/ folders")
    masks = {p.stem: p for p in list_images(masks_dir)}
    pairs = [(p, masks[p.stem]) for p in list_images(images_dir) if p.stem in masks]
    if not pairs:
        raise FileNotFoundError(
            f"no image in {images_dir} has a mask of the same name in {masks_dir}"
        )
    return pairs


def split_names(
    names: list[str], fractions: tuple[float, float, float], seed: int
) -> dict[str, list[str]]:
    """Deterministic train/val/test split of file names (independent of listing order)."""
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(
            f"split fractions must be three non-negative numbers summing to 1: {fractions}"
        )
    ordered = sorted(names)
    order = np.random.default_rng(seed).permutation(len(ordered))
    n_test = round(fractions[2] * len(ordered))
    n_val = round(fractions[1] * len(ordered))
    test = sorted(ordered[i] for i in order[:n_test])
    val = sorted(ordered[i] for i in order[n_test : n_test + n_val])
    train = sorted(ordered[i] for i in order[n_test + n_val :])
    return {"train": train, "val": val, "test": test}


def nucleus_diameters(label_images: list[np.ndarray]) -> tuple[float, tuple[float, float]]:
    """Median equivalent diameter ``2 sqrt(area / pi)`` over all nuclei, and the 5th-95th
    percentile of the per-image medians: the size a network learnt and the range it saw."""
    pooled, medians = [], []
    for labels in label_images:
        areas = np.bincount(np.asarray(labels).ravel())[1:]
        diameters = 2.0 * np.sqrt(areas[areas > 0] / np.pi)
        if diameters.size:
            pooled.append(diameters)
            medians.append(float(np.median(diameters)))
    if not pooled:
        raise ValueError("no labelled nucleus to measure a diameter from")
    median = float(np.median(np.concatenate(pooled)))
    low, high = np.percentile(medians, [5.0, 95.0])
    return round(median, 2), (round(float(low), 2), round(float(high), 2))


def load_labelled(
    image_path: Path, mask_path: Path, normalization: PercentileNormalization
) -> LabelledImage:
    image = read_image(image_path)
    labels = read_labels(mask_path)
    if image.shape != labels.shape:
        raise ValueError(
            f"{image_path.name}: image {image.shape} and mask {labels.shape} differ in size"
        )
    return LabelledImage(
        name=image_path.name,
        image=normalization.apply(image),
        labels=labels,
        target=separated_foreground(labels),
    )


def load_folder(
    folder: str | Path,
    normalization: PercentileNormalization,
    names: list[str] | None = None,
) -> list[LabelledImage]:
    """Load a labelled folder, or only the named files of it."""
    pairs = folder_pairs(folder)
    if names is not None:
        wanted = set(names)
        pairs = [pair for pair in pairs if pair[0].name in wanted]
    return [load_labelled(image, mask, normalization) for image, mask in pairs]


def wide_synthetic_config(base: SyntheticConfig, rng: np.random.Generator) -> SyntheticConfig:
    """A random out-of-domain variant of ``base`` for ``wide`` training and validation.

    Each option is switched on independently, so most images combine one or two: resized
    nuclei, tissue texture (sometimes with hardly any nuclei: a pure negative), debris, haze,
    dense packing, dim nuclei, faint cell bodies around the nuclei, heavy defocus, chromatin grain,
    16-bit outliers. Cell counts follow the nucleus area so large nuclei still fit.
    """
    changes: dict = {}
    area = base.height * base.width / 256**2
    max_cells = base.max_cells
    if rng.random() < 0.4:
        scale = float(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))
        changes["scale"] = scale
        max_cells = max(1, round(base.max_cells / scale**2))
    if rng.random() < 0.25:
        changes["tissue"] = float(rng.uniform(0.2, 0.7))
        if rng.random() < 0.3:
            max_cells = min(max_cells, 5)
            changes["min_cells"] = 0
    if rng.random() < 0.25:
        changes["debris"] = max(1, round(int(rng.integers(5, 40)) * area))
    if rng.random() < 0.2:
        changes["haze"] = max(1, round(int(rng.integers(3, 15)) * area))
    if rng.random() < 0.15:
        changes["dense"] = True
    if rng.random() < 0.3:
        changes["dim_fraction"] = float(rng.uniform(0.1, 0.35))
    if rng.random() < 0.3:  # drawn after the above: the earlier options keep their draws
        changes["cytoplasm"] = float(rng.uniform(0.1, 0.45))
    # The size estimate's hard cases (issue 16), which the network itself should also see:
    # heavy defocus (blurred nuclei keep their true outlines as targets), chromatin grain, and
    # 16-bit outliers (hot pixels, saturated specks) that must neither count nor set the scale.
    if rng.random() < 0.15:
        changes["defocus"] = float(rng.uniform(0.2, 0.8))
    if rng.random() < 0.2:
        changes["grain"] = float(rng.uniform(0.3, 1.2))
    if rng.random() < 0.15:
        changes["bit_depth"] = 16
        changes["hot_pixels"] = int(rng.integers(1, 8))
        changes["specks"] = int(rng.integers(0, 4))
    changes["max_cells"] = max_cells
    changes["min_cells"] = min(changes.get("min_cells", base.min_cells), max_cells)
    return replace(base, **changes)


def synthetic_image(
    spec: SyntheticSpec,
    split: str,
    index: int,
    normalization: PercentileNormalization,
    augmentation: str = "basic",
) -> LabelledImage:
    """The index-th synthetic image of a split (fixed seeds, disjoint between splits).

    ``augmentation="wide"`` draws the image from the out-of-domain mix of ``wide`` training.
    """
    seed = SYNTHETIC_SEED_BASE[split] + index
    config = spec.config
    if augmentation == "wide":
        config = wide_synthetic_config(config, np.random.default_rng([seed, 2]))
    sample = generate_sample(seed, config)
    return LabelledImage(
        name=f"synthetic-{split}-{index:05d}.png",
        image=normalization.apply(sample.image),
        labels=sample.labels,
        target=separated_foreground(sample.labels),
    )


def _item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, index])


def random_crop(
    image: np.ndarray, target: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A size x size crop at a random position (reflect-padded when the image is smaller)."""
    pad_h, pad_w = max(0, size - image.shape[0]), max(0, size - image.shape[1])
    if pad_h or pad_w:
        widths = ((0, pad_h), (0, pad_w))
        image = np.pad(image, widths, mode="reflect")
        target = np.pad(target, widths, mode="reflect")
    top = int(rng.integers(0, image.shape[0] - size + 1))
    left = int(rng.integers(0, image.shape[1] - size + 1))
    return image[top : top + size, left : left + size], target[top : top + size, left : left + size]


def augment(
    image: np.ndarray, target: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Flips, 90-degree rotations and a mild random intensity gain/offset."""
    turns = int(rng.integers(0, 4))
    image, target = np.rot90(image, turns), np.rot90(target, turns)
    if rng.random() < 0.5:
        image, target = image[:, ::-1], target[:, ::-1]
    gain = float(np.exp(rng.normal(0.0, 0.25)))
    offset = float(rng.normal(0.0, 0.03))
    return image * gain + offset, target


def rescaled_crop(
    image: np.ndarray,
    labels: np.ndarray,
    size: int,
    factor: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """A size x size crop of the image resized by ``factor`` (labels by nearest neighbour).

    Only the source window the crop needs is resampled, so cost follows the crop, not the
    image. Shrinking is preceded by a Gaussian low-pass of the width pixel-area averaging
    would have, so small nuclei do not alias into speckle.
    """
    window = math.ceil(size / factor) + 2
    pad_h, pad_w = max(0, window - image.shape[0]), max(0, window - image.shape[1])
    if pad_h or pad_w:
        widths = ((0, pad_h), (0, pad_w))
        image = np.pad(image, widths, mode="reflect")
        labels = np.pad(labels, widths, mode="reflect")
    top = int(rng.integers(0, image.shape[0] - window + 1))
    left = int(rng.integers(0, image.shape[1] - window + 1))
    source = image[top : top + window, left : left + window]
    source_labels = labels[top : top + window, left : left + window]
    return resample(source, source_labels, factor, (size, size))


def resample(
    image: np.ndarray, labels: np.ndarray, factor: float, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Resize image (bilinear, low-passed first when shrinking) and labels (nearest) by
    ``factor`` into ``shape``, anchored at the top-left corner with pixel grids aligned."""
    image = np.asarray(image, dtype=np.float32)
    if factor < 1.0:
        image = ndimage.gaussian_filter(image, 0.5 * math.sqrt(1.0 / factor**2 - 1.0))
    # Output pixel centre o maps to input (o + 0.5) / factor - 0.5.
    step, offset = 1.0 / factor, 0.5 / factor - 0.5
    options = {"matrix": [step, step], "offset": offset, "output_shape": shape}
    resized = ndimage.affine_transform(image, order=1, mode="reflect", **options)
    resized_labels = ndimage.affine_transform(labels, order=0, mode="nearest", **options)
    return resized, resized_labels


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _dim_nuclei(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dim a random share of the nuclei to 0.25-0.6 of their contrast above the background.

    Real fields mix bright and dim nuclei and the dim ones are the ones missed. Not dimmer:
    a DSB nucleus that is already faint would vanish and teach the network to label nothing.
    The dimming map is widened and smoothed by a pixel so the soft rim dims along with it.
    """
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if ids.size == 0:
        return image
    chosen = ids[rng.random(ids.size) < rng.uniform(0.15, 0.4)]
    if chosen.size == 0:
        return image
    amount = np.zeros(int(labels.max()) + 1, np.float32)
    amount[chosen] = 1.0 - np.exp(rng.uniform(np.log(0.25), np.log(0.6), chosen.size))
    dimming = ndimage.gaussian_filter(ndimage.grey_dilation(amount[labels], size=3), 1.0)
    background = labels == 0
    level = float(np.median(image[background])) if background.any() else float(image.min())
    return level + (image - level) * (1.0 - dimming)


def wide_intensity(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The ``wide`` intensity changes, each applied with its own probability, in optical order:
    dim nuclei, uneven illumination, defocus, gamma, contrast, then camera noise."""
    image = np.asarray(image, dtype=np.float32)
    if rng.random() < 0.3:
        image = _dim_nuclei(image, labels, rng)
    if rng.random() < 0.4:
        image = image * illumination_field(rng, *image.shape, float(rng.uniform(0.1, 0.5)))
    if rng.random() < 0.25:
        image = ndimage.gaussian_filter(image, rng.uniform(0.5, 2.0))
    if rng.random() < 0.5:
        gamma = _log_uniform(rng, 0.6, 1.7)
        image = np.maximum(image, 0.0) ** gamma + np.minimum(image, 0.0)
    if rng.random() < 0.5:
        mean = float(image.mean())
        image = mean + (image - mean) * _log_uniform(rng, 0.6, 1.6)
    if rng.random() < 0.5:
        shot, read = rng.uniform(0.0, 0.08), rng.uniform(0.0, 0.06)
        sigma = np.sqrt(np.maximum(image, 0.0) * shot * shot + read * read)
        image = image + sigma * rng.standard_normal(image.shape, dtype=np.float32)
    return image.astype(np.float32)


def augment_wide(
    image: np.ndarray,
    labels: np.ndarray,
    size: int,
    rng: np.random.Generator,
    contact: ContactWeighting | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``wide`` recipe on one image: a rescaled random crop, then the basic geometric and
    gain changes and the wide intensity changes; the target is rebuilt from the rescaled
    labels so contact gaps stay two pixels wide at every scale. With ``contact`` the target
    has a second channel, the crop's ``contact_weights`` (loss weights, computed at the crop's
    own scale so that sigma means the same pixels whatever the rescaling)."""
    if rng.random() < 0.8:
        factor = _log_uniform(rng, *SCALE_RANGE)
        image, labels = rescaled_crop(image, labels, size, factor, rng)
    else:
        image, labels = random_crop(image, labels, size, rng)
    image = wide_intensity(image, labels, rng)
    image, labels = augment(image, labels, rng)
    return image, with_contact_weights(separated_foreground(labels), labels, contact)


@dataclass(frozen=True)
class ContactWeighting:
    """Loss weights on the gaps between touching nuclei (``targets.contact_weights``)."""

    strength: float
    sigma: float


def with_contact_weights(
    target: np.ndarray, labels: np.ndarray, contact: ContactWeighting | None
) -> np.ndarray:
    """``target`` as it is, or stacked over the ``contact_weights`` of the same ``labels``
    crop: the (2, H, W) target the weighted loss reads."""
    if contact is None:
        return target
    return np.stack([target, contact_weights(labels, contact.strength, contact.sigma)])


def _to_tensors(image: np.ndarray, target: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, H, W) image and (C, H, W) target: C is 1, or 2 with a loss-weight channel."""
    target = np.ascontiguousarray(target, dtype=np.float32)
    return (
        torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)[None]),
        torch.from_numpy(target[None] if target.ndim == 2 else target),
    )


class CropDataset(Dataset):
    """``length`` augmented random crops per epoch from labelled images and/or synthetic ones.

    Item ``i`` draws from the folder images when ``i < n_folder`` and generates a synthetic image
    otherwise; call ``set_epoch`` before each epoch (workers are forked afterwards and see it).
    """

    def __init__(
        self,
        images: list[LabelledImage],
        n_folder: int,
        synthetic: SyntheticSpec | None,
        crop_size: int,
        normalization: PercentileNormalization,
        seed: int,
        augment_data: bool = True,
        augmentation: str = "basic",
        contact: ContactWeighting | None = None,
    ) -> None:
        if augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {augmentation!r}")
        if contact is not None and not (augment_data and augmentation == "wide"):
            raise ValueError("contact weights are built with the wide recipe's targets")
        if images and n_folder <= 0:
            raise ValueError("n_folder must be positive when folder images are given")
        self.images = images
        self.n_folder = n_folder if images else 0
        self.synthetic = synthetic
        self.n_synthetic = synthetic.count if synthetic else 0
        self.crop_size = crop_size
        self.normalization = normalization
        self.seed = seed
        self.augment_data = augment_data
        self.wide = augment_data and augmentation == "wide"
        self.contact = contact
        self.epoch = 0
        if len(self) == 0:
            raise ValueError("the training data is empty: give a folder and/or synthetic:N")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n_folder + self.n_synthetic

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = _item_rng(self.seed, self.epoch, index)
        if index < self.n_folder:
            source = self.images[int(rng.integers(0, len(self.images)))]
            image, target, labels = source.image, source.target, source.labels
        else:
            assert self.synthetic is not None
            # Training seeds stay below the validation/test ranges.
            digest = hashlib.blake2b(f"{self.seed}/{self.epoch}/{index}".encode(), digest_size=8)
            seed = int.from_bytes(digest.digest(), "little") % SYNTHETIC_SEED_BASE["val"]
            config = self.synthetic.config
            if self.wide:
                config = wide_synthetic_config(config, rng)
            sample = generate_sample(seed, config)
            image = self.normalization.apply(sample.image)
            labels = sample.labels
            target = None if self.wide else separated_foreground(labels)
        if self.wide:
            return _to_tensors(*augment_wide(image, labels, self.crop_size, rng, self.contact))
        image, target = random_crop(image, target, self.crop_size, rng)
        if self.augment_data:
            image, target = augment(image, target, rng)
        return _to_tensors(image, target)


class FixedCrops(Dataset):
    """Deterministic validation crops: the same pixels every epoch, so costs are comparable.
    With ``contact`` they carry the training's loss weights, so that the best epoch is chosen
    on the cost the run minimizes."""

    def __init__(
        self,
        images: list[LabelledImage],
        crops_per_image: int,
        crop_size: int,
        seed: int,
        contact: ContactWeighting | None = None,
    ):
        self.items: list[tuple[int, int, int]] = []
        self.images = images
        self.crop_size = crop_size
        self.contact = contact
        rng = np.random.default_rng(seed)
        for number, item in enumerate(images):
            height, width = item.image.shape
            for _ in range(crops_per_image):
                top = int(rng.integers(0, max(1, height - crop_size + 1)))
                left = int(rng.integers(0, max(1, width - crop_size + 1)))
                self.items.append((number, top, left))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        number, top, left = self.items[index]
        item = self.images[number]
        image, target, labels = item.image, item.target, item.labels
        pad_h = max(0, self.crop_size - image.shape[0])
        pad_w = max(0, self.crop_size - image.shape[1])
        if pad_h or pad_w:
            widths = ((0, pad_h), (0, pad_w))
            image = np.pad(image, widths, mode="reflect")
            target = np.pad(target, widths, mode="reflect")
            labels = np.pad(labels, widths, mode="reflect")
        window = (slice(top, top + self.crop_size), slice(left, left + self.crop_size))
        target = with_contact_weights(target[window], labels[window], self.contact)
        return _to_tensors(image[window], target)
