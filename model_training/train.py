"""Training CLI: the reference recipe by default, on folders and/or synthetic images.

    cellcount-train --data ../shared/datasets/dsb2018-fluo-train --data synthetic:2000 \
        --base-channels 16 --output runs/unet16

Defaults are the reference recipe: BCE with logits on foreground masks, Adam, lr 1e-3,
batch 64, 20 epochs. Folder data is split train/val/test with a fixed seed; only the train part
is trained on, the val part selects the epoch (and the threshold/min-area), the test part is
recorded in the checkpoint and left for ``cellcount-evaluate``. A fine-tune (``--init``) keeps
its parent's split whatever its ``--seed``. Several GPUs (or CPU processes
with gloo) through ``torchrun --nproc-per-node N -m model_training.train ...``.

``--augment wide`` trains for images unlike the training set (``model_training.data``): nuclei
rescaled 0.5-2x, intensity changes, and synthetic tissue, debris, haze, dense and dim images.
The record states the nucleus size trained at (``nucleus_diameter_px``, from the train masks)
so scale-aware inference can bring every image to it.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from model_training.checkpoint import (
    CheckpointRecord,
    file_sha256,
    load_checkpoint,
    read_record,
    save_checkpoint,
)
from model_training.data import (
    AUGMENTATIONS,
    SCALE_RANGE,
    ContactWeighting,
    CropDataset,
    FixedCrops,
    LabelledImage,
    SyntheticSpec,
    folder_pairs,
    load_folder,
    nucleus_diameters,
    parse_synthetic,
    split_names,
    synthetic_image,
    wide_synthetic_config,
)
from model_training.distributed import Distributed, choose_device
from model_training.evaluate import calibrate, predict_all
from model_training.inference import autocast_context
from model_training.losses import PixelWeightedBCE
from model_training.normalization import PercentileNormalization
from model_training.plots import plot_history
from model_training.synthetic import generate_sample
from model_training.unet import UNet

DEFAULT_SPLIT = (0.75, 0.1, 0.15)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cellcount-train", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data",
        action="append",
        required=True,
        help="labelled folder (images/ + masks/) or synthetic:N[:HxW]; repeat to mix",
    )
    parser.add_argument("--output", type=Path, default=Path("runs/train"))
    parser.add_argument("--name", default=None, help="checkpoint file name (default: unet<width>)")
    parser.add_argument("--base-channels", type=int, default=64)
    parser.add_argument(
        "--init",
        type=Path,
        metavar="CHECKPOINT",
        help="start from these weights (fine-tuning); its width overrides --base-channels",
    )
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64, help="global batch size")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--lr-schedule",
        choices=["constant", "cosine", "plateau"],
        default="constant",
        help="plateau: halve the lr after 4 epochs without a better validation cost",
    )
    parser.add_argument("--crop-size", type=int, default=256)
    parser.add_argument(
        "--contact-weight",
        type=float,
        default=0.0,
        help="weight the loss on the gaps between touching nuclei by up to 1 + this (the U-Net "
        "paper's separation weights; wide recipe only; 0: plain BCE, the reference)",
    )
    parser.add_argument(
        "--contact-sigma",
        type=float,
        default=3.0,
        help="reach of the contact weights in crop pixels (Gaussian sigma of d1 + d2)",
    )
    parser.add_argument(
        "--pixel-size-um",
        type=float,
        default=None,
        help="micrometres per pixel of the training images, recorded in the checkpoint so the "
        "service can scale images of known pixel size by it (DSB2018 records none)",
    )
    parser.add_argument(
        "--augment",
        choices=AUGMENTATIONS,
        default="basic",
        help="basic: flips, rotations, mild gain (reference); wide: 0.5-2x rescaling, "
        "intensity changes and out-of-domain synthetic images",
    )
    parser.add_argument(
        "--crops-per-image",
        type=float,
        default=4,
        help="random crops drawn per training folder image per epoch (may be fractional, "
        "for short epochs that save a best checkpoint early)",
    )
    parser.add_argument("--val-crops-per-image", type=int, default=2)
    parser.add_argument("--val-synthetic", type=int, default=32, help="synthetic validation images")
    parser.add_argument(
        "--split",
        default=None,
        help="train,val,test fractions (default 0.75,0.1,0.15; with --init: the init "
        "checkpoint's, so its held-out images stay held out)",
    )
    parser.add_argument(
        "--split-seed",
        type=int,
        default=None,
        help="seed of the folder split (default: --seed; with --init: the init checkpoint's)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--patience", type=int, default=0, help="stop after N epochs without a new best (0: never)"
    )
    parser.add_argument(
        "--time-limit", type=float, default=0.0, help="minutes; stop before exceeding (0: none)"
    )
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument(
        "--no-calibrate", action="store_true", help="keep threshold 0.5 and min area 0"
    )
    args = parser.parse_args(argv)
    inherit_split(args)
    return args


def inherit_split(args: argparse.Namespace) -> None:
    """Set ``split_fractions`` and ``split_seed``, from the init checkpoint's split by default.

    A fine-tune with another ``--seed`` must not draw a new split: the parent's validation and
    test images would land in training, and every held-out figure compared with the parent's
    would be measured on images the new weights saw.
    """
    inherited: dict = {}
    if args.init is not None:
        inherited = read_record(args.init).data.get("split") or {}
    default_fractions = inherited.get("fractions", DEFAULT_SPLIT)
    fractions = args.split.split(",") if args.split is not None else default_fractions
    args.split_fractions = tuple(float(v) for v in fractions)
    if args.split_seed is None:
        args.split_seed = int(inherited.get("seed", args.seed))


def code_version() -> str:
    """Short commit of the code that trained, '-dirty' when tracked files were modified."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True
        )
        return result.stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def write_history(history: list[dict[str, float]], output: Path) -> None:
    (output / "history.json").write_text(json.dumps(history, indent=2))
    with (output / "history.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    plot_history(history, output / "convergence.png")


def validation_loss(model, loader, device, precision, loss_fn, memory_format) -> float:
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for images, targets in loader:
            images = images.to(device, non_blocking=True).to(memory_format=memory_format)
            targets = targets.to(device, non_blocking=True)
            with autocast_context(device, precision):
                logits = model(images)
            total += float(loss_fn(logits.float(), targets)) * images.shape[0]
            count += images.shape[0]
    model.train()
    return total / max(count, 1)


@dataclass
class Hardware:
    """Where and how the run computes: the device, its precision and memory layout, the ranks."""

    ranks: Distributed
    device: torch.device

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def precision(self) -> str:
        return "bf16" if self.cuda else "fp32"

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.cuda else torch.contiguous_format


@dataclass
class TrainingData:
    """Everything read from the ``--data`` sources, before loaders are built."""

    train_images: list[LabelledImage] = field(default_factory=list)
    val_images: list[LabelledImage] = field(default_factory=list)
    val_synthetic: list[LabelledImage] = field(default_factory=list)
    synthetic: SyntheticSpec | None = None
    sources: list[dict] = field(default_factory=list)
    split_record: dict = field(default_factory=dict)


def load_data(args: argparse.Namespace, normalization: PercentileNormalization) -> TrainingData:
    """Read folders (train and val parts of their split) and set up the synthetic source."""
    data = TrainingData()
    for spec in args.data:
        parsed = parse_synthetic(spec)
        if parsed is not None:
            data.synthetic = parsed
            data.sources.append(
                {"kind": "synthetic", "spec": spec, "images_per_epoch": parsed.count}
            )
            continue
        names = [image.name for image, _ in folder_pairs(spec)]
        split = split_names(names, args.split_fractions, args.split_seed)
        data.train_images += load_folder(spec, normalization, split["train"])
        data.val_images += load_folder(spec, normalization, split["val"])
        data.sources.append(
            {
                "kind": "folder",
                "path": str(spec),
                "images": len(names),
                **{f"n_{key}": len(value) for key, value in split.items()},
            }
        )
        data.split_record = {
            "seed": args.split_seed,
            "fractions": list(args.split_fractions),
            **split,
        }
    if data.synthetic is not None and args.val_synthetic:
        data.val_synthetic = [
            synthetic_image(data.synthetic, "val", i, normalization, args.augment)
            for i in range(args.val_synthetic)
        ]
    return data


def training_diameters(
    data: TrainingData, augmentation: str, samples: int = 64
) -> tuple[float, tuple[float, float]]:
    """The nucleus size the network learns from: the folder train masks when there are any,
    otherwise the first ``samples`` synthetic training images of the run's recipe."""
    if data.train_images:
        return nucleus_diameters([item.labels for item in data.train_images])
    assert data.synthetic is not None
    config = data.synthetic.config
    labels = []
    for seed in range(samples):
        drawn = config
        if augmentation == "wide":
            drawn = wide_synthetic_config(config, np.random.default_rng([seed, 2]))
        labels.append(generate_sample(seed, drawn).labels)
    return nucleus_diameters(labels)


def make_loaders(
    args: argparse.Namespace,
    data: TrainingData,
    normalization: PercentileNormalization,
    hardware: Hardware,
) -> tuple[CropDataset, DistributedSampler | None, DataLoader, dict[str, DataLoader]]:
    """Random augmented training crops, sharded across ranks, and fixed validation crops per
    part (``folder``, ``synthetic``), so the history shows which part a change helps."""
    ranks = hardware.ranks
    weighted = args.contact_weight > 0
    contact = ContactWeighting(args.contact_weight, args.contact_sigma) if weighted else None
    train_set = CropDataset(
        data.train_images,
        max(1, round(len(data.train_images) * args.crops_per_image)),
        data.synthetic,
        args.crop_size,
        normalization,
        args.seed,
        augmentation=args.augment,
        contact=contact,
    )
    val_parts = {
        part: FixedCrops(images, args.val_crops_per_image, args.crop_size, args.seed + 1, contact)
        for part, images in (("folder", data.val_images), ("synthetic", data.val_synthetic))
        if images
    }
    if not val_parts:
        raise SystemExit(
            "no validation data: give a folder or synthetic:N with --val-synthetic > 0"
        )
    per_rank_batch = max(1, args.batch_size // ranks.world_size)
    sampler = (
        DistributedSampler(train_set, ranks.world_size, ranks.rank, shuffle=True, seed=args.seed)
        if ranks.enabled
        else None
    )
    loader_options = {"num_workers": args.workers, "pin_memory": hardware.cuda}
    if args.workers:
        loader_options["prefetch_factor"] = 4
    train_loader = DataLoader(
        train_set,
        batch_size=per_rank_batch,
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=len(train_set) >= args.batch_size,
        **loader_options,
    )
    val_loaders = {
        part: DataLoader(crops, batch_size=per_rank_batch, shuffle=False, **loader_options)
        for part, crops in val_parts.items()
    }
    return train_set, sampler, train_loader, val_loaders


def build_model(args: argparse.Namespace, hardware: Hardware) -> tuple[UNet, torch.nn.Module, dict]:
    """A fresh or ``--init`` U-Net on the device, its (DDP-wrapped) trainable form and the
    provenance of the initial weights."""
    init_record: dict = {}
    if args.init is not None:
        model, previous = load_checkpoint(args.init)
        digest = file_sha256(args.init)
        init_record = {"file": args.init.name, "sha256": digest, "training": previous.training}
    else:
        model = UNet(base_channels=args.base_channels)
    model = model.to(hardware.device).to(memory_format=hardware.memory_format).train()
    device_ids = [hardware.device.index] if hardware.cuda else None
    trainable = (
        DistributedDataParallel(model, device_ids=device_ids) if hardware.ranks.enabled else model
    )
    return model, trainable, init_record


def make_record(
    args: argparse.Namespace,
    argv: list[str] | None,
    name: str,
    normalization: PercentileNormalization,
    data: TrainingData,
    hardware: Hardware,
    init_record: dict,
) -> CheckpointRecord:
    """The checkpoint record as known before training: recipe, data, provenance, object size."""
    command = shlex.join(["cellcount-train", *(sys.argv[1:] if argv is None else argv)])
    diameter, diameter_range = training_diameters(data, args.augment)
    device = hardware.device
    return CheckpointRecord(
        name=name,
        base_channels=args.base_channels,
        tile_size=args.crop_size,
        normalization=normalization,
        nucleus_diameter_px=diameter,
        diameter_range_px=diameter_range,
        pixel_size_um=args.pixel_size_um,
        data={"sources": data.sources, "split": data.split_record},
        training={
            "command": command,
            "loss": "BCEWithLogits",
            **(
                {"contact_weight": args.contact_weight, "contact_sigma": args.contact_sigma}
                if args.contact_weight > 0
                else {}
            ),
            "optimizer": "Adam",
            "lr": args.lr,
            "lr_schedule": args.lr_schedule,
            "batch_size": args.batch_size,
            "epochs_planned": args.epochs,
            "crop_size": args.crop_size,
            "augmentation": args.augment,
            **({"scale_augmentation": list(SCALE_RANGE)} if args.augment == "wide" else {}),
            "seed": args.seed,
            "precision": hardware.precision,
            "device": torch.cuda.get_device_name(device) if hardware.cuda else "cpu",
            "world_size": hardware.ranks.world_size,
            **({"init_from": init_record} if init_record else {}),
        },
        code_version=code_version(),
    )


def make_schedulers(
    args: argparse.Namespace, optimizer: torch.optim.Optimizer
) -> tuple[torch.optim.lr_scheduler.LRScheduler | None, ReduceLROnPlateau | None]:
    """The per-epoch schedule (cosine) or the validation-driven one (plateau), or neither."""
    if args.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs), None
    if args.lr_schedule == "plateau":
        return None, ReduceLROnPlateau(optimizer, factor=0.5, patience=4)
    return None, None


def train_epoch(
    trainable: torch.nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    loss_fn: torch.nn.Module,
    hardware: Hardware,
    description: str,
) -> tuple[float, int]:
    """One pass over the training crops; returns this rank's mean loss and crops seen."""
    running, seen = 0.0, 0
    bar = tqdm(
        loader,
        desc=description,
        disable=not hardware.ranks.is_main,
        leave=False,
        mininterval=2.0,
    )
    for images, targets in bar:
        images = images.to(hardware.device, non_blocking=True)
        images = images.to(memory_format=hardware.memory_format)
        targets = targets.to(hardware.device, non_blocking=True)
        with autocast_context(hardware.device, hardware.precision):
            logits = trainable(images)
        loss = loss_fn(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running += float(loss.detach()) * images.shape[0]
        seen += images.shape[0]
        bar.set_postfix(loss=f"{running / seen:.4f}", refresh=False)
    return running / max(seen, 1), seen


def fit(
    args: argparse.Namespace,
    model: UNet,
    trainable: torch.nn.Module,
    loaders: tuple[CropDataset, DistributedSampler | None, DataLoader, dict[str, DataLoader]],
    record: CheckpointRecord,
    checkpoint_path: Path,
    hardware: Hardware,
) -> tuple[list[dict[str, float]], float, int]:
    """The epoch loop: train, validate on rank 0, save each new best, stop on patience or the
    time limit; returns the history, the best validation loss and its epoch."""
    train_set, sampler, train_loader, val_loaders = loaders
    ranks, device = hardware.ranks, hardware.device
    optimizer = torch.optim.Adam(trainable.parameters(), lr=args.lr)
    scheduler, plateau = make_schedulers(args, optimizer)
    loss_fn = PixelWeightedBCE()
    history: list[dict[str, float]] = []
    best_loss, best_epoch, started = math.inf, 0, time.monotonic()
    for epoch in range(1, args.epochs + 1):
        epoch_start = time.monotonic()
        train_set.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        description = f"epoch {epoch}/{args.epochs}"
        rank_loss, seen = train_epoch(
            trainable, train_loader, optimizer, loss_fn, hardware, description
        )
        if scheduler is not None:
            scheduler.step()
        train_loss = ranks.mean(rank_loss, device)
        epoch_seconds = time.monotonic() - epoch_start
        stop, val_loss = False, 0.0
        if ranks.is_main:
            part_losses = {
                part: validation_loss(
                    model, loader, device, hardware.precision, loss_fn, hardware.memory_format
                )
                for part, loader in val_loaders.items()
            }
            sizes = {part: len(loader.dataset) for part, loader in val_loaders.items()}
            # The epoch is selected on all validation crops together, each crop counting once.
            val_loss = sum(part_losses[p] * sizes[p] for p in sizes) / sum(sizes.values())
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "lr": optimizer.param_groups[0]["lr"],
                    "seconds": round(epoch_seconds, 2),
                    "train_images_per_second": round(seen * ranks.world_size / epoch_seconds, 1),
                    **(
                        {f"val_loss_{part}": loss for part, loss in part_losses.items()}
                        if len(part_losses) > 1
                        else {}
                    ),
                }
            )
            write_history(history, args.output)
            if val_loss < best_loss:
                best_loss, best_epoch = val_loss, epoch
                record.training.update(best_epoch=best_epoch, best_val_loss=val_loss)
                record.created = datetime.now(UTC).isoformat(timespec="seconds")
                save_checkpoint(checkpoint_path, model, record)
            print(
                f"epoch {epoch}: train {train_loss:.4f} val {val_loss:.4f} "
                f"({epoch_seconds:.0f}s, best epoch {best_epoch})",
                flush=True,
            )
            elapsed = (time.monotonic() - started) / 60
            stop = bool(args.patience and epoch - best_epoch >= args.patience) or bool(
                args.time_limit and elapsed + epoch_seconds / 60 * 1.5 > args.time_limit
            )
        if ranks.enabled:  # every rank follows rank 0's validation
            shared = torch.tensor([float(stop), val_loss], dtype=torch.float64, device=device)
            dist.broadcast(shared, 0)
            stop, val_loss = bool(shared[0].item()), float(shared[1].item())
        if plateau is not None:
            plateau.step(val_loss)
        if stop:
            break
    return history, best_loss, best_epoch


def calibrate_and_save(
    args: argparse.Namespace,
    model: UNet,
    record: CheckpointRecord,
    checkpoint_path: Path,
    validation: list[LabelledImage],
    hardware: Hardware,
) -> None:
    """Reload the best weights, choose threshold and min-area on validation, write the record."""
    model.load_state_dict(load_file(str(checkpoint_path), device=str(hardware.device)))
    model.eval()
    if not args.no_calibrate and validation:
        predictions = list(
            predict_all(model, validation, hardware.device, hardware.precision, progress=False)
        )
        threshold, min_area, summary = calibrate(predictions)
        record.threshold, record.min_area = threshold, min_area
        record.metrics["validation"] = {
            "summary": summary,
            "note": "selection split; not a test figure",
        }
        print(f"calibrated on validation: threshold {threshold}, min_area {min_area}: {summary}")
    save_checkpoint(checkpoint_path, model, record)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.init is not None:
        args.base_channels = read_record(args.init).base_channels
    ranks = Distributed()
    hardware = Hardware(ranks, choose_device(args.device, ranks.local_rank))
    ranks.start(hardware.device)
    torch.manual_seed(args.seed)
    if hardware.cuda:
        torch.backends.cudnn.benchmark = True
    normalization = PercentileNormalization()
    if ranks.is_main:
        args.output.mkdir(parents=True, exist_ok=True)
    name = args.name or f"unet{args.base_channels}"

    data = load_data(args, normalization)
    loaders = make_loaders(args, data, normalization, hardware)
    model, trainable, init_record = build_model(args, hardware)
    record = make_record(args, argv, name, normalization, data, hardware, init_record)
    checkpoint_path = args.output / f"{name}.safetensors"
    history, best_loss, best_epoch = fit(
        args, model, trainable, loaders, record, checkpoint_path, hardware
    )
    if ranks.is_main:
        record.training["epochs_run"] = len(history)
        validation = data.val_images + data.val_synthetic
        calibrate_and_save(args, model, record, checkpoint_path, validation, hardware)
        print(f"checkpoint: {checkpoint_path} (best epoch {best_epoch}, val loss {best_loss:.4f})")
    ranks.barrier()
    ranks.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
