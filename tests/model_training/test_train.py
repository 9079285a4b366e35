"""A real (tiny) training run through the CLI, single process and two gloo processes."""

import json
import os
import subprocess
import sys

from model_training import evaluate, train
from model_training.checkpoint import load_checkpoint
from model_training.data import nucleus_diameters
from model_training.image_io import read_labels

TINY = [
    "--base-channels",
    "4",
    "--batch-size",
    "8",
    "--crop-size",
    "64",
    "--workers",
    "0",
    "--device",
    "cpu",
    "--val-synthetic",
    "4",
    "--lr",
    "3e-3",
]


def test_loss_falls_and_artifacts_are_written(tmp_path):
    out = tmp_path / "run"
    train.main(["--data", "synthetic:48:64x64", "--epochs", "4", "--output", str(out), *TINY])
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < 0.9 * history[0]["train_loss"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert (out / "history.csv").read_text().startswith("epoch,train_loss,val_loss")
    assert (out / "convergence.png").read_bytes()[:4] == b"\x89PNG"
    _model, record = load_checkpoint(out / "unet4.safetensors")
    best = min(history, key=lambda row: row["val_loss"])
    assert record.training["best_epoch"] == best["epoch"]
    assert record.training["command"].startswith("cellcount-train --data synthetic:48:64x64")
    assert 0 < record.threshold < 1 and "validation" in record.metrics


def test_folder_split_is_recorded_and_evaluated(tmp_path, labelled_folder):
    out = tmp_path / "run"
    train.main(
        [
            "--data",
            str(labelled_folder),
            "--epochs",
            "1",
            "--split",
            "0.6,0.2,0.2",
            "--output",
            str(out),
            "--no-calibrate",
            *TINY,
        ]
    )
    checkpoint = out / "unet4.safetensors"
    _, record = load_checkpoint(checkpoint)
    split = record.data["split"]
    assert len(split["test"]) == 2 and not set(split["test"]) & set(split["train"])
    eval_dir = tmp_path / "eval"
    evaluate.main(
        [
            "--checkpoint",
            str(checkpoint),
            "--data",
            str(labelled_folder),
            "--subset",
            "test",
            "--output",
            str(eval_dir),
            "--record-as",
            "folder-test",
        ]
    )
    rows = (eval_dir / "per_image.csv").read_text().splitlines()
    assert rows[0].startswith("filename,true_count,pred_count")
    assert sorted(r.split(",")[0] for r in rows[1:]) == sorted(split["test"])
    assert (eval_dir / "counts.png").read_bytes()[:4] == b"\x89PNG"
    _, updated = load_checkpoint(checkpoint)
    assert updated.metrics["folder-test"]["summary"]["n_images"] == 2


def test_torchrun_two_gloo_processes(tmp_path):
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "model_training.train",
        "--data",
        "synthetic:16:64x64",
        "--epochs",
        "2",
        "--output",
        str(out),
        *TINY,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 2
    _, record = load_checkpoint(out / "unet4.safetensors")
    assert record.training["world_size"] == 2


def test_fine_tuning_starts_from_given_weights(tmp_path):
    first = tmp_path / "first"
    train.main(["--data", "synthetic:16:64x64", "--epochs", "1", "--output", str(first), *TINY])
    second = tmp_path / "second"
    train.main(
        [
            "--data",
            "synthetic:16:64x64",
            "--epochs",
            "1",
            "--output",
            str(second),
            "--init",
            str(first / "unet4.safetensors"),
            *TINY[2:],
        ]
    )  # width from the record
    before = json.loads((first / "history.json").read_text())[0]
    after = json.loads((second / "history.json").read_text())[0]
    assert after["train_loss"] < before["train_loss"]
    _, record = load_checkpoint(second / "unet4.safetensors")
    assert len(record.training["init_from"]["sha256"]) == 64


def test_fine_tuning_keeps_the_parent_split_whatever_its_seed(tmp_path, labelled_folder):
    first, second = tmp_path / "first", tmp_path / "second"
    common = ["--data", str(labelled_folder), "--epochs", "1", "--no-calibrate"]
    train.main([*common, "--split", "0.6,0.2,0.2", "--output", str(first), *TINY])
    parent = load_checkpoint(first / "unet4.safetensors")[1].data["split"]
    init = ["--init", str(first / "unet4.safetensors")]
    train.main([*common, *init, "--seed", "7", "--output", str(second), *TINY[2:]])
    child = load_checkpoint(second / "unet4.safetensors")[1].data["split"]
    assert child == parent  # its held-out images stay held out
    args = train.parse_args([*common, *init, "--seed", "7", "--split-seed", "7"])
    assert (args.split_seed, args.split_fractions) == (7, (0.6, 0.2, 0.2))
    assert train.split_names(
        sorted(parent["train"] + parent["val"] + parent["test"]), (0.6, 0.2, 0.2), 7
    ) != {
        key: parent[key] for key in ("train", "val", "test")
    }  # a new seed would have drawn another split


def test_wide_run_records_its_recipe_and_the_synthetic_nucleus_size(tmp_path):
    out = tmp_path / "wide"
    train.main(
        [
            "--data",
            "synthetic:16:64x64",
            "--epochs",
            "1",
            "--augment",
            "wide",
            "--contact-weight",
            "5",
            "--output",
            str(out),
            "--no-calibrate",
            *TINY,
        ]
    )
    _, record = load_checkpoint(out / "unet4.safetensors")
    assert record.training["augmentation"] == "wide"
    assert record.training["contact_weight"] == 5.0 and record.training["contact_sigma"] == 3.0
    assert record.training["scale_augmentation"] == [0.5, 2.0]
    # Default synthetic radii 5-10 px (scaled 0.6-1.6x in part of the wide mix): ~15 px.
    assert 10 < record.nucleus_diameter_px < 22
    low, high = record.diameter_range_px
    assert low < record.nucleus_diameter_px < high


def test_folder_run_takes_the_nucleus_size_from_its_train_masks(tmp_path, labelled_folder):
    out = tmp_path / "run"
    arguments = ["--data", str(labelled_folder), "--data", "synthetic:8:64x64", "--epochs", "1"]
    train.main([*arguments, "--output", str(out), "--no-calibrate", *TINY])
    _, record = load_checkpoint(out / "unet4.safetensors")
    train_names = record.data["split"]["train"]
    labels = [read_labels(labelled_folder / "masks" / name) for name in train_names]
    assert (record.nucleus_diameter_px, record.diameter_range_px) == nucleus_diameters(labels)
    assert record.training["augmentation"] == "basic"
    (row,) = json.loads((out / "history.json").read_text())
    parts = (row["val_loss_folder"], row["val_loss_synthetic"])
    assert min(parts) < row["val_loss"] < max(parts)  # the crop-weighted mean of the parts
