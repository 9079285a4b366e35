"""The evaluation CLI: scale-aware counting by default, the ood suite's bookkeeping."""

from __future__ import annotations

import json
from pathlib import Path

from model_training.evaluate import ImageResult, main, suite_specs, warning_rates
from model_training.validation_sets import validation_specs

CHECKPOINT = Path(__file__).resolve().parents[2] / "weights" / "unet16.safetensors"


def result(true: int, pred: int, warnings: str = "") -> ImageResult:
    return ImageResult("x", true, pred, 1.0, min(true, pred), 1.0, warnings=warnings)


def test_warning_rates_separate_bad_and_good_counts():
    rates = warning_rates(
        [result(10, 20, "ambiguous_foreground"), result(10, 10), result(10, 11, "tiny_nuclei")]
    )
    assert rates == {"bad_images": 1, "warned_bad": 1.0, "good_images": 2, "warned_good": 0.5}


def test_suite_keeps_dsb_groups_to_the_held_out_split():
    specs = suite_specs("ood")
    assert len(specs) == len(validation_specs())
    assert all(s.endswith(":heldout") for s in specs if s.startswith("ood:dsb-group:"))


def test_cli_counts_synthetic_images_and_reports_scale_and_warnings(tmp_path):
    output = tmp_path / "eval"
    args = ["--checkpoint", str(CHECKPOINT), "--data", "synthetic:3:128x128"]
    assert main([*args, "--output", str(output)]) == 0
    report = json.loads((output / "summary.json").read_text())
    assert report["diameter"] == "auto" and report["summary"]["n_images"] == 3
    assert report["summary"]["object_f1_iou50"] > 0.7
    header = (output / "per_image.csv").read_text().splitlines()[0]
    assert "scale" in header and "warnings" in header and "ambiguous_fraction" in header
    native = tmp_path / "native"
    assert main([*args, "--diameter", "native", "--output", str(native)]) == 0
    assert json.loads((native / "summary.json").read_text())["diameter"] == "native"


def test_suite_skips_the_real_other_lab_set_when_its_folder_is_absent(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("CELLCOUNT_AITSLAB", str(tmp_path / "nowhere"))
    assert "ood:aitslab" in suite_specs("ood")
    args = ["--checkpoint", str(CHECKPOINT), "--suite", "ood", "--sets", "ood:aitslab"]
    assert main([*args, "--output", str(tmp_path / "eval")]) == 0
    assert "skipped ood:aitslab" in capsys.readouterr().out


def test_suite_reads_the_other_lab_set_from_its_folder(tmp_path, monkeypatch):
    from tests.model_training.conftest import write_labelled_folder

    folder = write_labelled_folder(tmp_path / "aitslab", 3)
    monkeypatch.setenv("CELLCOUNT_AITSLAB", str(folder))
    output = tmp_path / "eval"
    args = ["--checkpoint", str(CHECKPOINT), "--suite", "ood", "--sets", "ood:aitslab"]
    assert main([*args, "--output", str(output)]) == 0
    report = json.loads((output / "summary.json").read_text())
    assert [row["set"] for row in report["sets"]] == ["ood:aitslab"]
    assert report["sets"][0]["n_images"] == 3
