"""Whatever arrives, the service answers clearly, keeps serving everyone else, loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from model_training.checkpoint import CheckpointError
from service.serving.state import start_service
from service.settings import DEFAULT_CHECKPOINT, Settings
from tests.service.bad_inputs import corpus
from tests.service.conftest import (
    NATIVE_PRECISION,
    LiveServer,
    free_port,
    png_array,
    start_server,
    synthetic_png,
)

PINNED = {"warmup": False, "precision": NATIVE_PRECISION, "channels_last": True}


@pytest.fixture
def make_server() -> Iterator:
    """Start extra live servers with their own settings; all are stopped after the test."""
    started: list[tuple[LiveServer, object]] = []

    def make(**settings: object) -> LiveServer:
        live, thread = start_server(Settings(**{**PINNED, **settings}))
        started.append((live, thread))
        return live

    yield make
    for live, thread in started:
        live.server.should_exit = True
        thread.join(timeout=30)  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", corpus(), ids=lambda case: case.name)
def test_bad_input_corpus_gets_defined_answers(client, case):
    for path, field in (("/count", "files"), ("/segment", "file")):
        response = client.post(path, files={field: (case.filename, case.data)})
        assert response.status_code == case.status, (path, response.text)
        if case.code is not None:
            error = response.json()["error"]
            assert error["code"] == case.code and error["message"]
            assert case.says in error["message"], error["message"]
    assert client.get("/ready").status_code == 200


def test_requests_without_a_file_are_422(client):
    data, _ = synthetic_png(11)
    for path, field in (("/count", "files"), ("/segment", "file")):
        wrong_field = client.post(path, files={"image": ("a.png", data)})
        nothing = client.post(path)
        for response in (wrong_field, nothing):
            assert response.status_code == 422
            assert field in response.json()["error"]["message"]


def test_api_key_guards_the_api_but_not_the_probes(make_server):
    live = make_server(api_key="s3cret-key")
    data, _ = synthetic_png(11)
    with httpx.Client(base_url=live.url, timeout=60) as http:
        tiles_before = live.state.metrics.tiles._value.get()
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-key"}):
            response = http.post("/count", files={"files": ("a.png", data)}, headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
        assert http.get("/model").status_code == 401
        assert http.post("/inspect", files={"file": ("a.png", data)}).status_code == 401
        assert http.get("/metrics").status_code == 401
        assert live.state.metrics.tiles._value.get() == tiles_before  # the model was not touched
        assert http.get("/health").status_code == 200 and http.get("/ready").status_code == 200
        good = {"Authorization": "Bearer s3cret-key"}
        ok = http.post("/count", files={"files": ("a.png", data)}, headers=good)
        assert ok.status_code == 200 and http.get("/model", headers=good).status_code == 200


def test_cors_is_off_by_default_and_configurable(client, make_server):
    preflight = {"Origin": "https://lab.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.options("/count", headers=preflight).headers
    live = make_server(cors_origins="https://lab.example")
    with httpx.Client(base_url=live.url) as http:
        answer = http.options("/count", headers=preflight)
        assert answer.headers["access-control-allow-origin"] == "https://lab.example"


def test_request_size_limit_applies_before_parsing(make_server):
    live = make_server(max_request_bytes=20_000)
    data, _ = synthetic_png(11, size=(400, 400))
    assert len(data) > 20_000
    with httpx.Client(base_url=live.url, timeout=60) as http:
        declared = http.post("/count", files={"files": ("big.png", data)})
        assert declared.status_code == 413
        assert declared.json()["error"]["code"] == "request_too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: the body is counted as it comes
            yield b"--b\r\nContent-Disposition: form-data; name=files; filename=a.png\r\n\r\n"
            for start in range(0, len(data), 4096):
                yield data[start : start + 4096]
            yield b"\r\n--b--\r\n"

        chunked = http.post(
            "/count", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"}
        )
        assert chunked.status_code == 413
        assert chunked.json()["error"]["code"] == "request_too_large"
        assert http.get("/ready").status_code == 200


def test_full_queue_answers_503_with_retry_after_and_loses_nothing(make_server):
    live = make_server(  # a fixed 50 ms a tile, so the burst outruns the model on any machine
        queue_limit=2, max_batch_size=1, inference_workers=1, max_wait_ms=0, inference_delay_ms=50
    )
    images = [synthetic_png(300 + i, size=(256, 256))[0] for i in range(4)]

    async def burst() -> tuple[list[httpx.Response], list[bytes]]:
        async with httpx.AsyncClient(base_url=live.url, timeout=120) as http:
            alone = [
                (await http.post("/segment", files={"file": ("a.png", d)})).content for d in images
            ]
            responses = await asyncio.gather(
                *(
                    http.post("/segment", files={"file": ("a.png", images[i % 4])})
                    for i in range(24)
                )
            )
        return responses, alone

    responses, alone = asyncio.run(burst())
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503} and 503 in statuses and 200 in statuses
    for index, response in enumerate(responses):
        if response.status_code == 503:
            assert response.json()["error"]["code"] == "overloaded"
            assert int(response.headers["retry-after"]) >= 1
        else:
            assert np.array_equal(png_array(response.content), png_array(alone[index % 4]))


def test_deadline_answers_504_and_the_service_recovers(make_server):
    live = make_server(  # 0.5 s of sleep a tile: past the 0.05 s deadline on any machine
        request_timeout_s=0.05, max_batch_size=1, inference_workers=1, inference_delay_ms=500
    )
    big, _ = synthetic_png(5, size=(1500, 1500), count=100)
    with httpx.Client(base_url=live.url, timeout=60) as http:
        late = http.post("/count", files={"files": ("big.png", big)})
        assert late.status_code == 504 and late.json()["error"]["code"] == "timeout"
        assert http.get("/ready").status_code == 200
    assert live.state.batcher.pending == 0  # the expired tiles were dropped, not left queued


def test_client_disconnect_does_not_disturb_others(live_server):
    big, _ = synthetic_png(6, size=(1200, 1200), count=100)
    small, _ = synthetic_png(12, count=20)

    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=live_server.url, timeout=120) as http:

            async def impatient() -> None:
                with pytest.raises(httpx.TimeoutException):
                    await http.post("/count", files={"files": ("big.png", big)}, timeout=0.05)

            others = [http.post("/count", files={"files": ("s.png", small)}) for _ in range(6)]
            results = await asyncio.gather(impatient(), *others)
            return list(results[1:])

    expected = httpx.post(
        f"{live_server.url}/count", files={"files": ("s.png", small)}, timeout=60
    ).json()["results"][0]["count"]
    for response in asyncio.run(scenario()):
        assert response.status_code == 200
        assert response.json()["results"][0]["count"] == expected
    assert httpx.get(f"{live_server.url}/ready").status_code == 200
    # The abandoned request withdrew its announcement: lone requests still run without waiting.
    deadline = time.monotonic() + 30
    while live_server.state.batcher.expected and time.monotonic() < deadline:
        time.sleep(0.05)  # the abandoned handler unwinds once the server notices the disconnect
    assert live_server.state.batcher.expected == 0


def test_sigterm_lets_in_flight_requests_finish(tmp_path: Path):
    port = free_port()
    root = Path(__file__).resolve().parents[3]
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "CELLCOUNT_WARMUP": "false",
        "CELLCOUNT_MAX_BATCH_SIZE": "1",
        "CELLCOUNT_INFERENCE_WORKERS": "1",
        # In flight for seconds whatever the CPU: a fixed sleep per tile, far inside the
        # default 30 s grace period (tests/docker/test_entrypoint.py cuts one past it).
        "CELLCOUNT_INFERENCE_DELAY_MS": "2000",
    }
    process = subprocess.Popen(
        [str(root / "docker" / "entrypoint.sh")],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "service did not start"
            time.sleep(0.2)
        image, true_count = synthetic_png(7, size=(256, 256))

        async def in_flight() -> httpx.Response:
            async with httpx.AsyncClient(timeout=120) as http:
                request = asyncio.create_task(
                    http.post(
                        f"{url}/count",
                        files={"files": ("cells.png", image)},
                        params={"diameter": 16},  # one pass at the training size
                    )
                )
                while (await http.get(f"{url}/metrics")).text.find(
                    'cellcount_requests_in_progress{endpoint="/count"} 1.0'
                ) < 0:
                    assert not request.done(), "the request ended before SIGTERM"
                    await asyncio.sleep(0.01)
                process.send_signal(signal.SIGTERM)
                return await request

        response = asyncio.run(in_flight())
        assert response.status_code == 200
        assert abs(response.json()["results"][0]["count"] - true_count) <= max(3, true_count // 5)
        # uvicorn shuts down gracefully, then re-raises the signal, so SIGTERM is the exit cause.
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
        log = process.stdout.read().decode() if process.stdout else ""
        assert "Application shutdown complete" in log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_bad_checkpoints_stop_start_up_with_a_clear_message(tmp_path: Path):
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(DEFAULT_CHECKPOINT.read_bytes()[:100_000])
    pickled = tmp_path / "model.pt"
    pickled.write_bytes(b"\x80\x04\x95" + b"\x00" * 100)
    cases = [
        (Settings(checkpoint=tmp_path / "missing.safetensors"), "does not exist"),
        (Settings(checkpoint=truncated), "truncated.safetensors"),
        (Settings(checkpoint=pickled), "not a valid safetensors file"),
        (Settings(checkpoint_sha256="0" * 64), "refusing to serve a different model"),
    ]
    for settings, message in cases:
        with pytest.raises(CheckpointError, match=message):
            asyncio.run(start_service(settings))
