"""A live service (real uvicorn, real shipped checkpoint) shared by the service tests."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image

from model_training.synthetic import SyntheticConfig, generate_sample
from service.app import create_app
from service.serving.engine import cpu_has_native_bf16
from service.settings import Settings

# The fast precision a test may pin: bf16 only where the CPU runs it natively (emulated on an
# AVX2-only CPU, it is several times slower than fp32).
NATIVE_PRECISION = "bf16" if cpu_has_native_bf16() else "fp32"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    app: object
    server: uvicorn.Server

    @property
    def state(self):
        return self.app.state.service


def start_server(settings: Settings) -> tuple[LiveServer, threading.Thread]:
    app = create_app(settings)
    port = free_port()
    # Keep-alive longer than any idle gap under load: a client reusing a connection that the
    # server closes at that instant gets a ReadError (a harness race, not a service fault).
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=60
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    return LiveServer(f"http://127.0.0.1:{port}", app, server), thread


@pytest.fixture(scope="session", autouse=True)
def no_plan_cache_in_home() -> Iterator[None]:
    """Services started by tests measure their plan (or use the tmp_path cache a test names)
    and never write into the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CELLCOUNT_PLAN_CACHE_DIR", "")
        yield


@pytest.fixture(scope="session")
def live_server() -> Iterator[LiveServer]:
    # Batches of up to 4 tiles from 2 workers, so concurrent requests really share batches.
    settings = Settings(max_batch_size=4, inference_workers=2, max_wait_ms=5.0, max_files=8)
    live, thread = start_server(settings)
    yield live
    live.server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture
def client(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=120) as http:
        yield http


def synthetic_png(
    seed: int, size: tuple[int, int] = (256, 256), count: int | None = None, bit_depth: int = 8
) -> tuple[bytes, int]:
    """PNG bytes of a generated image and its true cell count."""
    config = SyntheticConfig(height=size[0], width=size[1], bit_depth=bit_depth)
    sample = generate_sample(seed, config, count=count)
    buffer = io.BytesIO()
    Image.fromarray(sample.image).save(buffer, format="PNG")
    return buffer.getvalue(), sample.count


def png_array(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)
