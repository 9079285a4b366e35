"""Training CLI: the reference recipe by default, on folders and/or synthetic images.

    cellcount-train --data ../shared/datasets/dsb2018-fluo-train --data synthetic:2000 \
        --base-channels 16 --output runs/unet16

Defaults are the reference recipe: BCE with logits on foreground masks, Adam, lr 1e-3,
batch 64, 20 epochs. Folder data is split train/val/test with a fixed seed; only the train part
is trained on, the val part selects the epoch (and the threshold/min-area), the test part is
recorded in the checkpoint and left for ``cellcount-evaluate``. Several GPUs (or CPU processes
with gloo) through ``torchrun --nproc-per-node N -m model_training.train ...``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import ConcatDataset, DataLoader, DistributedSampler
from tqdm import tqdm

from model_training.checkpoint import (
    CheckpointRecord,
    load_checkpoint,
    read_record,
    save_checkpoint,
)
from model_training.data import (
    CropDataset,
    FixedCrops,
    folder_pairs,
    load_folder,
    parse_synthetic,
    split_names,
    synthetic_image,
)
from model_training.distributed import Distributed, choose_device
from model_training.evaluate import calibrate, predict_all
from model_training.inference import autocast_context
from model_training.normalization import PercentileNormalization
from model_training.plots import plot_history
from model_training.unet import UNet


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
        "--crops-per-image",
        type=int,
        default=4,
        help="random crops drawn per training folder image per epoch",
    )
    parser.add_argument("--val-crops-per-image", type=int, default=2)
    parser.add_argument("--val-synthetic", type=int, default=32, help="synthetic validation images")
    parser.add_argument("--split", default="0.75,0.1,0.15", help="train,val,test fractions")
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
    args.split_fractions = tuple(float(v) for v in args.split.split(","))
    return args


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.init is not None:
        args.base_channels = read_record(args.init).base_channels
    ranks = Distributed()
    device = choose_device(args.device, ranks.local_rank)
    ranks.start(device)
    torch.manual_seed(args.seed)
    cuda = device.type == "cuda"
    precision = "bf16" if cuda else "fp32"
    memory_format = torch.channels_last if cuda else torch.contiguous_format
    if cuda:
        torch.backends.cudnn.benchmark = True
    normalization = PercentileNormalization()
    output: Path = args.output
    if ranks.is_main:
        output.mkdir(parents=True, exist_ok=True)
    name = args.name or f"unet{args.base_channels}"

    # ---- data -----------------------------------------------------------------------------
    train_images, val_images, split_record, synthetic = [], [], {}, None
    sources: list[dict] = []
    for spec in args.data:
        parsed = parse_synthetic(spec)
        if parsed is not None:
            synthetic = parsed
            sources.append({"kind": "synthetic", "spec": spec, "images_per_epoch": parsed.count})
            continue
        names = [image.name for image, _ in folder_pairs(spec)]
        split = split_names(names, args.split_fractions, args.seed)
        train_images += load_folder(spec, normalization, split["train"])
        val_images += load_folder(spec, normalization, split["val"])
        sources.append(
            {
                "kind": "folder",
                "path": str(spec),
                "images": len(names),
                **{f"n_{key}": len(value) for key, value in split.items()},
            }
        )
        split_record = {"seed": args.seed, "fractions": list(args.split_fractions), **split}
    val_synthetic = []
    if synthetic is not None and args.val_synthetic:
        val_synthetic = [
            synthetic_image(synthetic, "val", i, normalization) for i in range(args.val_synthetic)
        ]
    train_set = CropDataset(
        train_images,
        len(train_images) * args.crops_per_image,
        synthetic,
        args.crop_size,
        normalization,
        args.seed,
    )
    val_parts = [
        FixedCrops(images, args.val_crops_per_image, args.crop_size, args.seed + 1)
        for images in (val_images, val_synthetic)
        if images
    ]
    if not val_parts:
        raise SystemExit(
            "no validation data: give a folder or synthetic:N with --val-synthetic > 0"
        )
    val_set = ConcatDataset(val_parts)
    per_rank_batch = max(1, args.batch_size // ranks.world_size)
    sampler = (
        DistributedSampler(train_set, ranks.world_size, ranks.rank, shuffle=True, seed=args.seed)
        if ranks.enabled
        else None
    )
    loader_options = {"num_workers": args.workers, "pin_memory": cuda}
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
    val_loader = DataLoader(val_set, batch_size=per_rank_batch, shuffle=False, **loader_options)

    # ---- model ----------------------------------------------------------------------------
    init_record: dict = {}
    if args.init is not None:
        model, previous = load_checkpoint(args.init)
        digest = hashlib.sha256(args.init.read_bytes()).hexdigest()
        init_record = {"file": args.init.name, "sha256": digest, "training": previous.training}
    else:
        model = UNet(base_channels=args.base_channels)
    model = model.to(device).to(memory_format=memory_format).train()
    trainable = (
        DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
        if ranks.enabled
        else model
    )
    optimizer = torch.optim.Adam(trainable.parameters(), lr=args.lr)
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None
    if args.lr_schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    elif args.lr_schedule == "plateau":
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    command = shlex.join(["cellcount-train", *(sys.argv[1:] if argv is None else argv)])
    record = CheckpointRecord(
        name=name,
        base_channels=args.base_channels,
        tile_size=args.crop_size,
        normalization=normalization,
        data={"sources": sources, "split": split_record},
        training={
            "command": command,
            "loss": "BCEWithLogits",
            "optimizer": "Adam",
            "lr": args.lr,
            "lr_schedule": args.lr_schedule,
            "batch_size": args.batch_size,
            "epochs_planned": args.epochs,
            "crop_size": args.crop_size,
            "seed": args.seed,
            "precision": precision,
            "device": torch.cuda.get_device_name(device) if cuda else "cpu",
            "world_size": ranks.world_size,
            **({"init_from": init_record} if init_record else {}),
        },
        code_version=code_version(),
    )
    checkpoint_path = output / f"{name}.safetensors"

    # ---- loop -----------------------------------------------------------------------------
    history: list[dict[str, float]] = []
    best_loss, best_epoch, started = math.inf, 0, time.monotonic()
    for epoch in range(1, args.epochs + 1):
        epoch_start = time.monotonic()
        train_set.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        running, seen = 0.0, 0
        bar = tqdm(
            train_loader,
            desc=f"epoch {epoch}/{args.epochs}",
            disable=not ranks.is_main,
            leave=False,
            mininterval=2.0,
        )
        for images, targets in bar:
            images = images.to(device, non_blocking=True).to(memory_format=memory_format)
            targets = targets.to(device, non_blocking=True)
            with autocast_context(device, precision):
                logits = trainable(images)
            loss = loss_fn(logits.float(), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += float(loss.detach()) * images.shape[0]
            seen += images.shape[0]
            bar.set_postfix(loss=f"{running / seen:.4f}", refresh=False)
        if scheduler is not None:
            scheduler.step()
        train_loss = ranks.mean(running / max(seen, 1), device)
        epoch_seconds = time.monotonic() - epoch_start
        stop, val_loss = False, 0.0
        if ranks.is_main:
            val_loss = validation_loss(model, val_loader, device, precision, loss_fn, memory_format)
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "lr": optimizer.param_groups[0]["lr"],
                    "seconds": round(epoch_seconds, 2),
                    "train_images_per_second": round(seen * ranks.world_size / epoch_seconds, 1),
                }
            )
            write_history(history, output)
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

    # ---- threshold and min-area on the validation images, then the final record -----------
    if ranks.is_main:
        record.training["epochs_run"] = len(history)
        model.load_state_dict(load_file(str(checkpoint_path), device=str(device)))
        model.eval()
        whole_val = val_images + val_synthetic
        if not args.no_calibrate and whole_val:
            predictions = list(predict_all(model, whole_val, device, precision, progress=False))
            threshold, min_area, summary = calibrate(predictions)
            record.threshold, record.min_area = threshold, min_area
            record.metrics["validation"] = {
                "summary": summary,
                "note": "selection split; not a test figure",
            }
            print(
                f"calibrated on validation: threshold {threshold}, min_area {min_area}: {summary}"
            )
        save_checkpoint(checkpoint_path, model, record)
        print(f"checkpoint: {checkpoint_path} (best epoch {best_epoch}, val loss {best_loss:.4f})")
    ranks.barrier()
    ranks.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
