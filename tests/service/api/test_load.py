"""About 1000 requests at concurrency 64, mixed sizes: every answer a success equal to the
image's answer alone, or a deliberate 503 with Retry-After. Loopback only; the narrow model
keeps it to seconds."""

from __future__ import annotations

import asyncio

from bench.load_without_loss import drive, mixed_images
from service.settings import PROJECT_ROOT, Settings
from tests.service.conftest import start_server


def test_1000_requests_at_concurrency_64_lose_nothing():
    settings = Settings(
        checkpoint=PROJECT_ROOT / "weights" / "unet16.safetensors",
        queue_limit=48,  # below the 64 requests in flight: some must be refused, cleanly
        warmup=False,
        precision="bf16",
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
    assert report.statuses[200] >= 300  # most served; the rest refused with Retry-After
    assert report.mismatches == [] and report.bad_503 == 0
