"""Bare-model throughput: training and inference, per batch size, precision and memory format.

    .venv/bin/python bench/model_throughput.py --base-channels 16 \
        --checkpoint weights/unet16.safetensors

Prints one table per section, with every row's ratio against plain fp32 contiguous batch 1
measured in the same run, and (with a checkpoint) how far bf16 masks stray from fp32 masks on
synthetic images, the check that must pass before any path adopts bf16. Timings are medians of
``--repeats`` timed calls after warm-up; quote ratios, the machine is noisy.
"""

from __future__ import annotations

import argparse
import platform

import numpy as np
import torch
from timing import median_ms  # bench/timing.py, beside this script

from model_training.checkpoint import load_checkpoint
from model_training.counting import label_cells
from model_training.data import parse_synthetic, synthetic_image
from model_training.inference import autocast_context, predict_probabilities
from model_training.normalization import PercentileNormalization
from model_training.unet import UNet


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def inference_table(model, device, size, batch_sizes, repeats) -> list[tuple]:
    rows = []
    for fmt_name, fmt in (
        ("contiguous", torch.contiguous_format),
        ("channels_last", torch.channels_last),
    ):
        net = model.to(memory_format=fmt)
        for precision in ("fp32", "bf16"):
            for batch in batch_sizes:
                x = torch.randn(batch, 1, size, size, device=device).to(memory_format=fmt)

                def run(net=net, x=x, precision=precision) -> None:
                    with torch.inference_mode(), autocast_context(device, precision):
                        net(x)
                    sync(device)

                seconds = median_ms(run, repeats, warmup=2) / 1000
                rows.append((fmt_name, precision, batch, batch / seconds, seconds * 1000 / batch))
    model.to(memory_format=torch.contiguous_format)
    return rows


def training_table(base_channels, device, size, batch_sizes, repeats) -> list[tuple]:
    rows = []
    cuda = device.type == "cuda"
    fmt = torch.channels_last if cuda else torch.contiguous_format
    precision = "bf16" if cuda else "fp32"
    for batch in batch_sizes:
        torch.manual_seed(0)
        model = UNet(base_channels).to(device).to(memory_format=fmt)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        x = torch.randn(batch, 1, size, size, device=device).to(memory_format=fmt)
        y = (torch.rand(batch, 1, size, size, device=device) > 0.7).float()

        def step(model=model, optimizer=optimizer, x=x, y=y, loss_fn=loss_fn) -> None:
            with autocast_context(device, precision):
                logits = model(x)
            loss = loss_fn(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sync(device)

        seconds = median_ms(step, repeats, warmup=2) / 1000
        rows.append((precision, fmt_name(fmt), batch, batch / seconds))
    return rows


def fmt_name(fmt: torch.memory_format) -> str:
    return "channels_last" if fmt == torch.channels_last else "contiguous"


def mask_agreement(checkpoint: str, device: torch.device, n_images: int) -> list[tuple]:
    """bf16 vs fp32 on trained weights: pixel agreement of masks and count differences."""
    model, record = load_checkpoint(checkpoint, device)
    spec = parse_synthetic("synthetic:1:256x256")
    norm = PercentileNormalization()
    rows = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        model.to(memory_format=fmt)
        disagree, total, count_diffs = 0, 0, []
        for index in range(n_images):
            item = synthetic_image(spec, "test", index, norm)
            p32 = predict_probabilities(model, item.image, device, "fp32")
            p16 = predict_probabilities(model, item.image, device, "bf16")
            m32, m16 = p32 > record.threshold, p16 > record.threshold
            disagree += int((m32 != m16).sum())
            total += m32.size
            c32 = label_cells(p32, record.threshold, record.min_area).max()
            c16 = label_cells(p16, record.threshold, record.min_area).max()
            count_diffs.append(abs(int(c32) - int(c16)))
        rows.append(
            (fmt_name(fmt), n_images, 1 - disagree / total, max(count_diffs), sum(count_diffs))
        )
    model.to(memory_format=torch.contiguous_format)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-channels", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-sizes", default="1,2,4,8")
    parser.add_argument("--train-batch-sizes", default="8")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--checkpoint", help="trained weights for the bf16 mask-agreement check")
    parser.add_argument("--agreement-images", type=int, default=20)
    args = parser.parse_args()
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine()
    )
    print(
        f"# device: {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
    print(
        f"# width {args.base_channels}, {args.size}x{args.size} inputs, median of {args.repeats}\n"
    )

    torch.manual_seed(0)
    model = UNet(args.base_channels).to(device).eval()
    if args.checkpoint:
        model, _ = load_checkpoint(args.checkpoint, device)
    batches = [int(b) for b in args.batch_sizes.split(",")]
    rows = inference_table(model, device, args.size, batches, args.repeats)
    baseline = next(r[3] for r in rows if r[:3] == ("contiguous", "fp32", batches[0]))
    print("## inference (bare model)")
    print("| memory format | precision | batch | images/s | ms/image | vs fp32 contiguous b1 |")
    print("|---|---|---:|---:|---:|---:|")
    for fmt, precision, batch, ips, ms in rows:
        print(f"| {fmt} | {precision} | {batch} | {ips:.1f} | {ms:.1f} | {ips / baseline:.2f}x |")

    print("\n## training step (Adam, BCE with logits)")
    print("| precision | memory format | batch | images/s |")
    print("|---|---|---:|---:|")
    train_batches = [int(b) for b in args.train_batch_sizes.split(",")]
    for precision, fmt, batch, ips in training_table(
        args.base_channels, device, args.size, train_batches, args.repeats
    ):
        print(f"| {precision} | {fmt} | {batch} | {ips:.1f} |")

    if args.checkpoint:
        print(f"\n## bf16 vs fp32 masks on trained weights ({args.checkpoint})")
        print("| memory format | images | pixel agreement | max count diff | total count diff |")
        print("|---|---:|---:|---:|---:|")
        for fmt, n, agreement, worst, total in mask_agreement(
            args.checkpoint, device, args.agreement_images
        ):
            print(f"| {fmt} | {n} | {agreement:.5f} | {worst} | {total} |")
    np.set_printoptions()


if __name__ == "__main__":
    main()
