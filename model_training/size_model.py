"""Nucleus size from the network itself: probe the frozen U-Net at three scales, regress.

Image statistics read texture, outliers and packing as nuclei (issue 16: grainy 100 px nuclei
read as 21 px, a packed field as one 255 px object, tissue as 1.5 px). The network tells a
nucleus from chromatin speckle, a clump or a hot pixel, but only near the size it learnt. So the
image is probed at three scales 4x apart (2, 1/2 and 1/8 network pixels per image pixel): for
any nucleus from ~4 to ~250 px, one of them shows it at 8-32 px, where the network segments it
whole. A few 64x64 windows per scale (the brightest parts of the image) run as one batch; from
each scale's probability map come the median size of its objects and how sure the network is of
them; a tiny network (``SizeModel``, fitted by ``model_training.fit_size_model``) picks among
the sizes the probes and the image statistics read (gates) and corrects the pick by at most
``RESIDUAL``, giving the log of the median nucleus diameter.

The windows are small on purpose: the probe costs a fixed ~20 k network pixels, a few percent of
one forward pass of a 1 Mpx upload (``bench/scale_estimate.py``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from model_training.counting import AMBIGUOUS_HIGH, AMBIGUOUS_LOW, EIGHT_CONNECTED, label_max
from model_training.scale import SizeEstimate, estimate_diameter, resize_plane

WINDOW = 64  # network pixels per probe window
PROBES: tuple[tuple[float, int], ...] = ((2.0, 2), (0.5, 2), (0.125, 1))  # (scale, windows)
FEATURES_PER_PROBE = 8
MIN_OBJECT_PX = 3  # network pixels: smaller components are noise, not nuclei
FORMAT = "cellcount-size-model/1"


def _windows(image: np.ndarray, side: int, count: int) -> list[tuple[int, int]]:
    """Top-left corners of ``count`` windows of ``side`` image pixels where the image is
    brightest (mean of the image clipped to [0, 1], so a saturated speck weighs little),
    on a half-window grid, greedily not overlapping by more than half."""
    height, width = image.shape
    if side >= height and side >= width:
        return [(0, 0)]
    clipped = np.clip(image, 0.0, 1.0, dtype=np.float64)
    integral = np.pad(clipped.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    step = max(1, side // 2)
    tops = list(range(0, max(1, height - side + 1), step)) or [0]
    lefts = list(range(0, max(1, width - side + 1), step)) or [0]
    candidates = []
    for top in tops:
        bottom = min(height, top + side)
        for left in lefts:
            right = min(width, left + side)
            total = (
                integral[bottom, right]
                - integral[top, right]
                - integral[bottom, left]
                + integral[top, left]
            )
            candidates.append((total, top, left))
    candidates.sort(reverse=True)
    chosen: list[tuple[int, int]] = []
    for _, top, left in candidates:
        if all(abs(top - t) >= step or abs(left - c) >= step for t, c in chosen):
            chosen.append((top, left))
        if len(chosen) == count:
            break
    return chosen


def probe_batch(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The probe windows of one normalized image, as one batch of WINDOW x WINDOW inputs.

    Returns the batch (n, 1, WINDOW, WINDOW), a mask of the pixels that hold image (windows
    larger than a small image are padded with zeros) and the probe index of each window."""
    inputs, valid, probe_of = [], [], []
    for index, (scale, count) in enumerate(PROBES):
        side = max(1, round(WINDOW / scale))
        for top, left in _windows(image, side, count):
            crop = image[top : top + side, left : left + side]
            resized = resize_plane(crop, scale)[:WINDOW, :WINDOW]
            window = np.zeros((WINDOW, WINDOW), np.float32)
            mask = np.zeros((WINDOW, WINDOW), bool)
            window[: resized.shape[0], : resized.shape[1]] = resized
            mask[: resized.shape[0], : resized.shape[1]] = True
            inputs.append(window)
            valid.append(mask)
            probe_of.append(index)
    return np.stack(inputs)[:, None], np.stack(valid), probe_of


@torch.inference_mode()
def probe_probabilities(model: torch.nn.Module, batch: np.ndarray) -> np.ndarray:
    """One forward pass over the probe batch (fp32, the model's device)."""
    device = next(model.parameters()).device
    logits = model(torch.from_numpy(np.ascontiguousarray(batch)).to(device))
    return torch.sigmoid(logits.float())[:, 0].cpu().numpy()


def probe_features(
    probabilities: np.ndarray, valid: np.ndarray, probe_of: list[int], prior: SizeEstimate
) -> np.ndarray:
    """The feature vector of one image: FEATURES_PER_PROBE per probe, then the prior's."""
    features = []
    for index, (scale, _) in enumerate(PROBES):
        picked = [i for i, p in enumerate(probe_of) if p == index]
        diameters, peaks, border, pixels, fg, ambiguous, candidate = [], [], 0, 0, 0, 0, 0
        for i in picked:
            p = np.where(valid[i], probabilities[i], 0.0)
            pixels += int(valid[i].sum())
            foreground = p > 0.5
            fg += int(foreground.sum())
            candidate += int((p >= AMBIGUOUS_LOW).sum())
            ambiguous += int(((p >= AMBIGUOUS_LOW) & (p <= AMBIGUOUS_HIGH)).sum())
            labels, count = ndimage.label(foreground, structure=EIGHT_CONNECTED)
            if count == 0:
                continue
            areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
            keep = areas >= MIN_OBJECT_PX
            diameters += list(2 * np.sqrt(areas[keep] / np.pi))
            peaks += list(label_max(p, labels, count)[1:][keep])
            edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
            border += int(np.isin(np.flatnonzero(keep) + 1, edge).sum())
        n = len(diameters)
        median = float(np.median(diameters)) if n else 0.0
        features += [
            math.log(median / scale) if n else 0.0,  # the size this probe reads, image px
            math.log(median / 16.0) if n else 0.0,  # how far from the learnt size it saw it
            1.0 if n >= 2 else 0.0,
            math.log1p(n),
            fg / max(pixels, 1),
            ambiguous / max(candidate, 1),
            float(np.mean(peaks)) if n else 0.0,
            border / max(n, 1),
        ]
    has_prior = prior.diameter_px is not None
    features += [math.log(prior.diameter_px) if has_prior else 0.0, 1.0 if has_prior else 0.0]
    return np.asarray(features, dtype=np.float32)


def image_features(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """Probe one normalized image and return its feature vector (see the module docstring)."""
    image = np.asarray(image, dtype=np.float32)
    batch, valid, probe_of = probe_batch(image)
    return probe_features(
        probe_probabilities(model, batch), valid, probe_of, estimate_diameter(image)
    )


def candidates(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The log-diameters the probes and the statistics read, (n, len(PROBES) + 1), and
    whether each read anything."""
    features = np.atleast_2d(features)
    sizes = [FEATURES_PER_PROBE * k for k in range(len(PROBES))]
    found = [FEATURES_PER_PROBE * k + 2 for k in range(len(PROBES))]
    values = np.concatenate([features[:, sizes], features[:, -2:-1]], axis=1)
    valid = np.concatenate([features[:, found], features[:, -1:]], axis=1) > 0
    return values, valid


RESIDUAL = 0.5  # the most (in log units) the model may move away from what a candidate read


@dataclass(frozen=True)
class SizeModel:
    """A gated choice among the sizes the probes (and the statistics) read, plus a bounded
    correction: standardize the features, one tanh hidden layer, then one gate per candidate
    (softmax over those that read anything) and a residual. Anchored to measured sizes, it
    needs few fitting images; the residual corrects a shared bias (defocus reads large)."""

    mean: np.ndarray
    std: np.ndarray
    hidden_weight: np.ndarray  # (hidden, features)
    hidden_bias: np.ndarray
    out_weight: np.ndarray  # (candidates + 1, hidden): gates, then the residual
    out_bias: np.ndarray
    provenance: dict

    def predict_log(self, features: np.ndarray) -> np.ndarray:
        """log median diameter per row; NaN where no candidate read anything."""
        x = (np.atleast_2d(features) - self.mean) / self.std
        out = np.tanh(x @ self.hidden_weight.T + self.hidden_bias) @ self.out_weight.T
        out = out + self.out_bias
        values, valid = candidates(features)
        gates = np.where(valid, out[:, :-1], -np.inf)
        gates = np.exp(gates - np.max(gates, axis=1, keepdims=True, initial=-1e30))
        weights = gates / np.maximum(gates.sum(axis=1, keepdims=True), 1e-30)
        mixed = (weights * np.where(valid, values, 0.0)).sum(axis=1)
        mixed = mixed + RESIDUAL * np.tanh(out[:, -1])
        return np.where(valid.any(axis=1), mixed, np.nan)

    def save(self, path: str | Path) -> None:
        body = {
            "format": FORMAT,
            "probes": PROBES,
            "window": WINDOW,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "hidden_weight": np.round(self.hidden_weight, 6).tolist(),
            "hidden_bias": np.round(self.hidden_bias, 6).tolist(),
            "out_weight": np.round(self.out_weight, 6).tolist(),
            "out_bias": np.round(self.out_bias, 6).tolist(),
            "provenance": self.provenance,
        }
        Path(path).write_text(json.dumps(body, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> SizeModel:
        body = json.loads(Path(path).read_text())
        if body.get("format") != FORMAT or tuple(map(tuple, body["probes"])) != PROBES:
            raise ValueError(f"{path} is not a {FORMAT} file for these probes")
        return cls(
            mean=np.asarray(body["mean"], np.float32),
            std=np.asarray(body["std"], np.float32),
            hidden_weight=np.asarray(body["hidden_weight"], np.float32),
            hidden_bias=np.asarray(body["hidden_bias"], np.float32),
            out_weight=np.asarray(body["out_weight"], np.float32),
            out_bias=np.asarray(body["out_bias"], np.float32),
            provenance=body.get("provenance", {}),
        )


def size_model_path(checkpoint: str | Path) -> Path:
    """Where a checkpoint's size model lives: beside it, ``<stem>.size.json``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".size.json")


def network_diameter(
    model: torch.nn.Module, size_model: SizeModel, image: np.ndarray
) -> SizeEstimate:
    """The median nucleus diameter of a normalized image, from the network's probes.

    None (no resize) when no probe found an object and the statistics found nothing either:
    an empty field."""
    features = image_features(model, image)
    log_diameter = float(size_model.predict_log(features)[0])
    statistics = float(np.exp(features[-2])) if features[-1] > 0 else None
    if not np.isfinite(log_diameter):
        return SizeEstimate(None, 0, from_network=True, statistics_px=statistics)
    objects = round(float(np.expm1(features[3::FEATURES_PER_PROBE][: len(PROBES)]).sum()))
    return SizeEstimate(
        float(np.exp(log_diameter)), objects, from_network=True, statistics_px=statistics
    )
