"""PNG plots for training runs and evaluations (matplotlib, headless Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

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
