"""The HTTP API against a live server running the shipped checkpoint on real image bytes."""

from __future__ import annotations

import asyncio
import base64
import io

import httpx
import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.service.conftest import png_array, synthetic_png

KNOWN = [(11, 5), (12, 20), (13, 45), (14, 80)]  # (seed, true count) of 256x256 images


@pytest.mark.parametrize(("seed", "true_count"), KNOWN)
def test_count_matches_known_counts(client, seed, true_count):
    data, count = synthetic_png(seed, count=true_count)
    response = client.post("/count", files={"files": ("cells.png", data, "image/png")})
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    assert result["filename"] == "cells.png"
    assert (result["width"], result["height"]) == (256, 256)
    assert abs(result["count"] - count) <= max(1, round(0.05 * count))


def test_count_several_files_in_order_with_cells_and_mask(client):
    uploads = [synthetic_png(seed, count=n) for seed, n in KNOWN[:3]]
    files = [("files", (f"img{i}.png", data, "image/png")) for i, (data, _) in enumerate(uploads)]
    response = client.post(
        "/count", files=files, params={"include_cells": "true", "include_mask": "true"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["filename"] for r in body["results"]] == ["img0.png", "img1.png", "img2.png"]
    assert body["model"]["id"].startswith("unet32-dsb2018-synth-wide-v3@")
    for result in body["results"]:
        assert len(result["cells"]) == result["count"]
        cell = result["cells"][0]
        x, y, w, h = cell["bbox"]
        assert x <= cell["centroid"][0] <= x + w and y <= cell["centroid"][1] <= y + h
        mask = png_array(base64.b64decode(result["mask_png_base64"]))
        assert mask.shape == (256, 256) and set(np.unique(mask)) <= {0, 255}
        assert (mask > 0).sum() == sum(c["area"] for c in result["cells"])


def test_options_change_the_answer(client):
    data, _ = synthetic_png(13, count=45)
    base = client.post("/count", files={"files": ("a.png", data)}).json()["results"][0]
    strict = client.post(
        "/count", files={"files": ("a.png", data)}, params={"min_area": 100000}
    ).json()["results"][0]
    border = client.post(
        "/count", files={"files": ("a.png", data)}, params={"exclude_border": "true"}
    ).json()["results"][0]
    assert strict["count"] == 0 and strict["min_area"] == 100000
    assert border["count"] <= base["count"] and border["exclude_border"] is True


def test_burst_of_32_equals_each_image_alone(live_server):
    images = [synthetic_png(100 + i, size=(256, 256) if i % 3 else (300, 420))[0] for i in range(8)]

    async def post(http: httpx.AsyncClient, data: bytes) -> tuple[int, bytes]:
        response = await http.post("/segment", files={"file": ("x.png", data)})
        assert response.status_code == 200, response.text
        return int(response.headers["x-cell-count"]), response.content

    async def run() -> tuple[list, list]:
        async with httpx.AsyncClient(base_url=live_server.url, timeout=120) as http:
            alone = [await post(http, data) for data in images]
            burst = await asyncio.gather(*(post(http, images[i % 8]) for i in range(32)))
        return alone, burst

    alone, burst = asyncio.run(run())
    for index, (count, png) in enumerate(burst):
        expected_count, expected_png = alone[index % 8]
        assert count == expected_count
        assert np.array_equal(png_array(png), png_array(expected_png))


def test_segment_outputs(client):
    data, _ = synthetic_png(12, count=20)
    mask = client.post("/segment", files={"file": ("a.png", data)})
    assert mask.headers["content-type"] == "image/png"
    count = int(mask.headers["x-cell-count"])
    labels = client.post("/segment", files={"file": ("a.png", data)}, params={"output": "labels"})
    label_array = png_array(labels.content)
    assert label_array.dtype == np.uint16 and label_array.max() == count
    assert np.array_equal(label_array > 0, png_array(mask.content) > 0)
    overlay = png_array(
        client.post(
            "/segment", files={"file": ("a.png", data)}, params={"output": "overlay"}
        ).content
    )
    assert overlay.shape == (256, 256, 3)
    assert ((overlay == (255, 214, 0)).all(axis=-1)).sum() > 10 * count  # outlines drawn
    as_json = client.post(
        "/segment", files={"file": ("a.png", data)}, headers={"Accept": "application/json"}
    )
    body = as_json.json()
    assert body["count"] == count and body["output"] == "mask"
    assert np.array_equal(png_array(base64.b64decode(body["png_base64"])), png_array(mask.content))


def test_16_bit_tiff_counts_like_its_8_bit_png(client):
    data8, _ = synthetic_png(14, count=80)
    plane = png_array(data8).astype(np.uint16) * 257  # same picture, full 16-bit range
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, plane)
    c8 = client.post("/count", files={"files": ("a.png", data8)}).json()["results"][0]["count"]
    c16 = client.post("/count", files={"files": ("a.tif", buffer.getvalue())}).json()
    assert c16["results"][0]["count"] == c8


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"", 400, "empty_file"),
        (b"hello, this is text", 415, "unsupported_media_type"),
        (b"%PDF-1.7 something", 415, "unsupported_media_type"),
    ],
)
def test_bad_uploads_get_json_errors(client, payload, status, code):
    for path, field in (("/count", "files"), ("/segment", "file")):
        response = client.post(path, files={field: ("bad.png", payload)})
        assert response.status_code == status
        assert response.json()["error"]["code"] == code
        assert "bad.png" in response.json()["error"]["message"]


def test_truncated_png_and_stack_and_parameters(client):
    data, _ = synthetic_png(11)
    truncated = client.post("/count", files={"files": ("cut.png", data[: len(data) // 2])})
    assert truncated.status_code == 400 and truncated.json()["error"]["code"] == "invalid_image"
    stack = io.BytesIO()
    tifffile.imwrite(stack, np.zeros((3, 32, 32), dtype=np.uint8), photometric="minisblack")
    response = client.post("/count", files={"files": ("stack.tif", stack.getvalue())})
    assert response.status_code == 422 and response.json()["error"]["code"] == "plane_not_chosen"
    assert "Z=3" in response.json()["error"]["message"]
    assert "z=max" in response.json()["error"]["message"]
    bad = client.post("/count", files={"files": ("a.png", data)}, params={"threshold": 2})
    assert bad.status_code == 422 and "threshold" in bad.json()["error"]["message"]
    typo = client.post("/count", files={"files": ("a.png", data)}, params={"thresold": 0.9})
    assert typo.status_code == 422 and "thresold" in typo.json()["error"]["message"]
    missing = client.post("/count", files={"wrong": ("a.png", data)})
    assert missing.status_code == 422 and "files" in missing.json()["error"]["message"]
    too_many = client.post("/count", files=[("files", ("a.png", data))] * 9)
    assert too_many.status_code == 413 and too_many.json()["error"]["code"] == "too_many_files"
    one_bad = client.post(
        "/count", files=[("files", ("good.png", data)), ("files", ("bad.png", b"junk"))]
    )
    assert one_bad.status_code == 415 and "bad.png" in one_bad.json()["error"]["message"]
    assert one_bad.json()["error"]["filename"] == "bad.png"


def test_refused_requests_leave_no_announced_images_behind(client, live_server):
    """The batcher holds short batches back only for announced images; an image decoded for a
    request that is then refused must withdraw its announcement, or every later lone request
    would wait max_wait_ms for company that never comes."""
    data, _ = synthetic_png(11)
    for _ in range(3):
        refused = client.post(
            "/count", files=[("files", ("good.png", data)), ("files", ("bad.png", b"junk"))]
        )
        assert refused.status_code == 415
    assert client.post("/count", files={"files": ("a.png", b"")}).status_code == 400
    assert client.post("/count", files={"files": ("a.png", data)}).status_code == 200
    assert live_server.state.batcher.expected == 0


def test_failed_batch_fails_only_its_requests(client, live_server):
    data, _ = synthetic_png(11)
    batcher = live_server.state.batcher
    engine = batcher.infer

    def fail_once(tiles):
        """The batcher takes any callable: this one fails its first batch, then is the engine."""
        batcher.infer = engine
        raise RuntimeError("injected fault")

    batcher.infer = fail_once
    try:
        failed = client.post("/count", files={"files": ("a.png", data)})
    finally:
        batcher.infer = engine
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "inference_failed"
    assert "injected fault" in failed.json()["error"]["message"]
    assert client.get("/ready").status_code == 200
    assert client.post("/count", files={"files": ("a.png", data)}).status_code == 200


def test_health_ready_model_metrics_docs(client):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready"}
    info = client.get("/model").json()
    assert len(info["sha256"]) == 64 and info["record"]["base_channels"] == 32
    assert info["max_tile_size"] >= 256 and info["max_batch_size"] == 4
    # The test services keep no plan cache (tests/service/conftest.py): measured, no file.
    assert info["plan_source"] == "measured" and info["plan_cache"] is None
    data, _ = synthetic_png(11)
    client.post("/count", files={"files": ("a.png", data)})
    metrics = client.get("/metrics").text
    for name in (
        "cellcount_request_latency_seconds_bucket",
        "cellcount_batch_size_tiles_bucket",
        "cellcount_queue_depth_tiles",
        "cellcount_tiles_processed_total",
        "cellcount_cells_per_image_bucket",
        "cellcount_inference_cpu_seconds_total",
        "cellcount_cpu_pool_cpu_seconds_total",
        "process_cpu_seconds_total",
    ):
        assert name in metrics
    cpu = {
        line.split()[0]: float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith(("cellcount_inference_cpu", "cellcount_cpu_pool_cpu", "process_cpu"))
    }
    # Both pools have spent CPU on the requests so far, and neither more than the process.
    assert 0 < cpu["cellcount_inference_cpu_seconds_total"] < cpu["process_cpu_seconds_total"]
    assert 0 < cpu["cellcount_cpu_pool_cpu_seconds_total"] < cpu["process_cpu_seconds_total"]
    schema = client.get("/openapi.json").json()
    assert {"/count", "/segment", "/health", "/ready", "/model", "/metrics"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 200
    assert client.get("/nowhere").json()["error"]["code"] == "not_found"


def test_rgba_and_palette_images(client):
    data, _ = synthetic_png(12, count=20)
    plane = png_array(data)
    gray = client.post("/count", files={"files": ("g.png", data)}).json()["results"][0]["count"]
    for mode in ("RGBA", "P"):
        buffer = io.BytesIO()
        Image.fromarray(plane).convert(mode).save(buffer, format="PNG")
        result = client.post("/count", files={"files": ("c.png", buffer.getvalue())}).json()
        assert result["results"][0]["count"] == gray
