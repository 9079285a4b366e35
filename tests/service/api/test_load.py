"""Load on the running service: nothing lost, nothing mixed, overload answered at once.

Loopback only; the narrow model keeps it to seconds. Nothing here depends on the machine's
speed: where capacity matters, the engine is slowed by a fixed sleep per tile
(``inference_delay_ms``), so the work is sized in seconds of sleep, not in CPU cycles.
"""

from __future__ import annotations

import asyncio
import re

import httpx

from bench.load_without_loss import drive, mixed_images
from service.settings import PROJECT_ROOT, Settings
from tests.service.conftest import NATIVE_PRECISION, start_server

CHECKPOINT = PROJECT_ROOT / "weights" / "unet16.safetensors"


def test_1000_requests_at_concurrency_64_lose_nothing():
    settings = Settings(
        checkpoint=CHECKPOINT,
        queue_limit=48,  # below the 64 requests in flight: some may be refused, cleanly
        warmup=False,
        precision=NATIVE_PRECISION,
        channels_last=True,
        max_batch_size=2,
        inference_workers=2,
    )
    live, thread = start_server(settings)
    try:
        report = asyncio.run(drive(live.url, mixed_images(), requests=1000, concurrency=64))
    finally:
        live.server.should_exit = True
        thread.join(timeout=30)
    assert sum(report.statuses.values()) == 1000
    assert set(report.statuses) <= {200, 503}, report.statuses
    assert report.statuses[200] >= 1
    assert report.mismatches == [] and report.bad_503 == 0 and report.lost == 0


def _refusals(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        cause: float(value)
        for cause, value in re.findall(
            r'^cellcount_refusals_total\{cause="(\w+)"\} (\S+)$', text, re.M
        )
    }


def test_a_burst_beyond_capacity_gets_counts_or_immediate_503s_and_retries_get_every_count():
    timeout_s = 3.0
    settings = Settings(
        checkpoint=CHECKPOINT,
        warmup=False,
        precision=NATIVE_PRECISION,
        max_batch_size=1,
        inference_workers=1,
        inference_delay_ms=100,  # 10 tiles a second at most: 48 requests are ~5 s of work
        request_timeout_s=timeout_s,
    )
    live, thread = start_server(settings)
    try:
        images = mixed_images(6)[:2]  # 64x64 and 96x128: one tile each
        report = asyncio.run(drive(live.url, images, requests=48, concurrency=48, retry=True))
        refusals = _refusals(live.url)
    finally:
        live.server.should_exit = True
        thread.join(timeout=30)
    assert report.statuses[504] == 0, report.statuses
    assert set(report.statuses) <= {200, 503}, report.statuses
    assert report.statuses[503] >= 1, "a burst of 5 s of work against a 3 s deadline"
    assert report.lost == 0 and report.bad_503 == 0
    assert report.mismatches == []  # every retried count equals the image's count alone
    assert len(report.admitted_latency) == 48
    assert max(report.refused_latency) < timeout_s / 2  # refused at once, not at the deadline
    assert max(report.admitted_latency) < timeout_s
    assert refusals["expected_wait"] >= 1 and refusals["deadline"] == 0, refusals
