"""The ``cellcount`` CLI and the Python client, against the live server and a mock transport."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import tifffile

from service.cli.client import CellCountClient, CellCountError
from service.cli.main import CSV_COLUMNS, main
from tests.service.conftest import png_array, synthetic_png
from tests.service.microscopy_files import CHANNELS, nuclei, ome_tiff, stains
from tests.service.vendor_files import make_nd2

SIZE = (128, 128)  # small images keep the CPU model fast


def write_image(path: Path, seed: int) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    data, _ = synthetic_png(seed, size=SIZE, count=8)
    path.write_bytes(data)
    return data


def server_counts(client: httpx.Client, blobs: list[bytes], **params: str) -> list[int]:
    files = [("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(blobs)]
    response = client.post("/count", files=files, params=params)
    assert response.status_code == 200, response.text
    return [result["count"] for result in response.json()["results"]]


def cli_args(line: str, live_server) -> list[str]:
    return [*line.split(), "--url", live_server.url]


@pytest.fixture
def images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """A nested folder plus loose files, as relative paths (the CLI reports them as given)."""
    monkeypatch.chdir(tmp_path)
    blobs = {
        "data/b/z.png": write_image(Path("data/b/z.png"), 1),
        "data/a.png": write_image(Path("data/a.png"), 2),
        "data/b/c/d.png": write_image(Path("data/b/c/d.png"), 3),
        "single.png": write_image(Path("single.png"), 4),
    }
    Path("data/notes.txt").write_text("not an image, and not picked up from a folder")
    Path("junk.png").write_bytes(b"this is plain text, not a PNG")
    return blobs


def test_count_csv_in_input_order_with_error_row(live_server, client, images, capsys):
    code = main(cli_args("count data junk.png single.png --concurrency 3 -o out.csv", live_server))
    assert code == 1
    with open("out.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert CSV_COLUMNS[:4] == ("filename", "count", "width", "height")
    names = ["data/a.png", "data/b/c/d.png", "data/b/z.png", "junk.png", "single.png"]
    assert [row["filename"] for row in rows] == names
    good = [row for row in rows if row["filename"] != "junk.png"]
    expected = server_counts(client, [images[row["filename"]] for row in good])
    assert [int(row["count"]) for row in good] == expected
    assert all(row["error"] == "" and row["width"] == "128" for row in good)
    junk = rows[3]
    assert junk["count"] == "" and junk["error"].startswith("unsupported_media_type:")
    assert "1 of 5 images failed" in capsys.readouterr().err


def test_count_json_to_stdout_passes_options(live_server, client, images, capsys):
    line = "count data/a.png single.png --format json --exclude-border --min-area 5 --quiet"
    code = main(cli_args(line, live_server))
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["filename"] for row in rows] == ["data/a.png", "single.png"]
    assert all(row["exclude_border"] is True and row["min_area"] == 5 for row in rows)
    assert all(row["error"] is None for row in rows)
    blobs = [images["data/a.png"], images["single.png"]]
    expected = server_counts(client, blobs, exclude_border="true", min_area="5")
    assert [row["count"] for row in rows] == expected


def test_segment_writes_labels_png_and_prints_count(live_server, client, images, capsys):
    code = main(cli_args("segment data/a.png -o labels.png --output-kind labels", live_server))
    assert code == 0
    printed = int(capsys.readouterr().out.strip())
    assert printed == server_counts(client, [images["data/a.png"]])[0]
    labels = png_array(Path("labels.png").read_bytes())
    assert labels.shape == SIZE
    assert len(np.unique(labels[labels > 0])) == printed


def write_plate(folder: Path) -> dict[str, int]:
    """Four-channel OME-TIFFs named like a screen's sites: two wells, and one stray file."""
    folder.mkdir()
    truths = {}
    for seed, name in enumerate(["p1_A01_s1", "p1_A01_s2", "p1_B12_s1", "stray"]):
        plane, truth = nuclei(40 + seed, size=128)
        data = ome_tiff(stains(seed, plane), "CYX", CHANNELS, pixel_size_um=0.5)
        (folder / f"{name}.ome.tif").write_bytes(data)
        truths[name] = truth
    return truths


def test_count_a_plate_with_channels_units_and_per_well_totals(live_server, tmp_path, capsys):
    write_plate(tmp_path / "plate")
    out = tmp_path / "plate.csv"
    cells = tmp_path / "cells.csv"
    line = (
        f"count {tmp_path / 'plate'} -o {out} --quiet --group _(?P<well>[A-P]\\d{{2}})_ "
        f"--cells {cells}"
    )
    assert main(cli_args(line, live_server)) == 0
    with out.open(newline="") as stream:
        rows = {Path(row["filename"]).name.split(".")[0]: row for row in csv.DictReader(stream)}
    assert all(row["channel"] == "1" and row["channel_name"] == "DAPI" for row in rows.values())
    assert all(
        row["pixel_size_um"] == "0.5" and float(row["density_per_mm2"]) > 0 for row in rows.values()
    )
    assert all(float(row["mean_cell_area_um2"]) > 0 for row in rows.values())
    with (tmp_path / "plate.groups.csv").open(newline="") as stream:
        groups = {row["well"]: row for row in csv.DictReader(stream)}
    assert set(groups) == {"", "A01", "B12"}
    a01 = groups["A01"]
    assert a01["images"] == "2" and a01["failed"] == "0"
    expected = int(rows["p1_A01_s1"]["count"]) + int(rows["p1_A01_s2"]["count"])
    assert int(a01["count_total"]) == expected
    area = float(rows["p1_A01_s1"]["image_area_mm2"]) * 2
    assert float(a01["area_mm2"]) == pytest.approx(area, rel=1e-3)
    assert float(a01["density_per_mm2"]) == pytest.approx(expected / area, rel=1e-3)
    assert "match no --group" in capsys.readouterr().err
    with cells.open(newline="") as stream:
        table = list(csv.DictReader(stream))
    a01 = [cell for cell in table if "p1_A01_s1" in cell["filename"]]
    assert len(a01) == int(rows["p1_A01_s1"]["count"])
    first = a01[0]
    assert float(first["area_um2"]) == pytest.approx(int(first["area_px"]) * 0.25, rel=1e-3)
    assert float(first["x_um"]) == pytest.approx(float(first["x_px"]) * 0.5, abs=1e-3)


def test_count_passes_plane_options_and_group_needs_an_output(live_server, tmp_path, capsys):
    write_plate(tmp_path / "plate")
    path = tmp_path / "plate" / "p1_A01_s1.ome.tif"
    line = f"count {path} --format json --quiet --channel cy3 --pixel-size-um 0.25 --position 0"
    assert main(cli_args(line, live_server)) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["channel_name"] == "Cy3" and row["pixel_size_um"] == 0.25 and row["position"] == 0
    assert row["pixel_size_source"] == "given"
    assert main(cli_args(f"count {path} --group x", live_server)) == 2
    assert "--group needs --output" in capsys.readouterr().err


def test_segment_to_tiff_writes_32_bit_labels(live_server, tmp_path, capsys):
    write_plate(tmp_path / "plate")
    path = tmp_path / "plate" / "p1_B12_s1.ome.tif"
    out = tmp_path / "labels.tif"
    assert main(cli_args(f"segment {path} -o {out} --output-kind labels", live_server)) == 0
    printed = int(capsys.readouterr().out.strip())
    labels = tifffile.imread(out)
    assert labels.dtype == np.uint32 and labels.max() == printed


def test_client_raises_server_error_for_text(live_server):
    with CellCountClient(live_server.url) as cc, pytest.raises(CellCountError) as caught:
        cc.count(("notes.txt", b"hello, this is text"))
    assert caught.value.status == 415
    assert caught.value.code == "unsupported_media_type"
    assert "not a PNG" in caught.value.message


def mock_client(statuses: list[int], seen: list[httpx.Request]) -> CellCountClient:
    """A client whose server answers ``statuses`` in turn (Retry-After 0 keeps it instant)."""

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status = statuses[min(len(seen), len(statuses)) - 1]
        if status == 200:
            return httpx.Response(200, json={"results": [{"count": 3}], "model": {}})
        body = {"error": {"code": f"code{status}", "message": "nope"}}
        return httpx.Response(status, json=body, headers={"Retry-After": "0"})

    return CellCountClient("http://test", api_key="k", transport=httpx.MockTransport(answer))


def test_client_retries_503_then_succeeds_and_sends_key():
    seen: list[httpx.Request] = []
    with mock_client([503, 503, 200], seen) as cc:
        assert cc.count(b"x", threshold=0.4, split_touching=True) == [{"count": 3}]
    assert len(seen) == 3
    assert seen[-1].headers["authorization"] == "Bearer k"
    assert seen[-1].url.params["split_touching"] == "true"
    assert seen[-1].url.params["threshold"] == "0.4"
    assert b"x" in seen[-1].read()  # the file is resent on every attempt


@pytest.mark.parametrize(("statuses", "attempts"), [([422], 1), ([429], 1), ([503], 5)])
def test_client_gives_up(statuses, attempts):
    seen: list[httpx.Request] = []
    with mock_client(statuses, seen) as cc, pytest.raises(CellCountError) as caught:
        cc.count(b"x")
    assert len(seen) == attempts
    assert (caught.value.status, caught.value.code) == (statuses[0], f"code{statuses[0]}")


def test_inspect_and_count_each_position_of_a_multipoint_nd2(live_server, tmp_path, capsys):
    pytest.importorskip("nd2")
    plane, _ = nuclei(61, size=128)

    def planes(t, c, z, h, w):  # DAPI (channel 0) of position p holds 1/(p+1) of the image
        position = z // 100
        if c:
            return np.zeros((h, w), np.uint16)
        cut = plane.copy()
        cut[:, w // (position + 1) :] = 0
        return cut

    path = tmp_path / "multipoint.nd2"
    path.write_bytes(make_nd2({"P": 3, "Z": 1}, height=128, width=128, planes=planes))
    assert main(cli_args(f"inspect {path}", live_server)) == 0
    (info,) = json.loads(capsys.readouterr().out)
    assert info["positions"] == 3 and info["needs"] == ["position"]

    out = tmp_path / "counts.csv"
    assert main(cli_args(f"count {path} --each-position -o {out} --quiet", live_server)) == 0
    with out.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["position"] for row in rows] == ["0", "1", "2"]
    counts = [int(row["count"]) for row in rows]
    assert counts[0] > counts[1] > counts[2] > 0  # each position was counted on its own planes
    assert main(cli_args(f"count {path} -o {out} --quiet", live_server)) == 1  # needs one
