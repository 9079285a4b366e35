"""Start-up: each step logged with its duration."""

from __future__ import annotations

import asyncio
import logging

from service.settings import Settings
from service.state import start_service, stop_service

# Every tuning choice pinned: the "measurement" is instant.
PINNED = {
    "device": "cpu",
    "precision": "fp32",
    "channels_last": False,
    "max_batch_size": 1,
    "inference_workers": 1,
    "torchscript": False,
}


def test_start_up_logs_each_step_with_its_duration(caplog):
    async def start_and_stop() -> None:
        await stop_service(await start_service(Settings(**PINNED)))

    with caplog.at_level(logging.INFO, logger="cellcount.service"):
        asyncio.run(start_and_stop())
    steps = [r.getMessage() for r in caplog.records if "start-up:" in r.getMessage()]
    names = ["resolve device", "load and verify checkpoint", "plan inference", "start batcher"]
    for name, message in zip([*names, "warm-up image"], steps, strict=True):
        assert message.startswith(f"start-up: {name}") and message.endswith(("ms", " s"))
