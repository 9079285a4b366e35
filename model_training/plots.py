"""PNG plots for training runs and evaluations (matplotlib, headless Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_history(history: list[dict[str, float]], path: str | Path) -> None:
    """Train and validation cost per epoch, best validation epoch marked."""
    epochs = [row["epoch"] for row in history]
    figure, axes = plt.subplots(figsize=(6, 4), dpi=120)
    axes.plot(epochs, [row["train_loss"] for row in history], label="train", marker=".")
    axes.plot(epochs, [row["val_loss"] for row in history], label="validation", marker=".")
    best = min(history, key=lambda row: row["val_loss"])
    axes.axvline(best["epoch"], color="grey", linestyle=":", label=f"best (epoch {best['epoch']})")
    axes.set_xlabel("epoch")
    axes.set_ylabel("BCE with logits")
    axes.set_yscale("log")
    axes.set_title("Convergence")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def plot_counts(
    true_counts: list[int], pred_counts: list[int], path: str | Path, title: str = ""
) -> None:
    """Predicted vs. true count per image, with the identity line."""
    figure, axes = plt.subplots(figsize=(5, 5), dpi=120)
    top = max([*true_counts, *pred_counts, 1]) * 1.05
    axes.plot([0, top], [0, top], color="grey", linewidth=1, label="pred = true")
    axes.scatter(true_counts, pred_counts, s=12, alpha=0.7)
    axes.set_xlim(0, top)
    axes.set_ylim(0, top)
    axes.set_xlabel("true count")
    axes.set_ylabel("predicted count")
    axes.set_title(title or "Predicted vs. true count")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def save_overlay(
    image: np.ndarray, predicted: np.ndarray, truth: np.ndarray, path: str | Path, title: str
) -> None:
    """The image with the predicted cells outlined in yellow and the true ones in cyan, for
    looking at failures (the model card's "where it fails")."""
    from skimage.segmentation import find_boundaries

    low, high = np.percentile(image, (1, 99.8))
    grey = np.clip((image - low) / max(high - low, 1e-6), 0, 1)
    rgb = np.stack([grey] * 3, axis=-1)
    rgb[find_boundaries(truth, mode="inner")] = (0.0, 0.9, 0.9)
    rgb[find_boundaries(predicted, mode="inner")] = (1.0, 0.9, 0.0)
    height, width = image.shape
    scale = min(1.0, 640 / max(height, width))
    figure, axes = plt.subplots(figsize=(width * scale / 100, height * scale / 100 + 0.3), dpi=100)
    axes.imshow(rgb, interpolation="nearest")
    axes.set_title(title, fontsize=7)
    axes.axis("off")
    figure.tight_layout(pad=0.1)
    figure.savefig(path)
    plt.close(figure)
