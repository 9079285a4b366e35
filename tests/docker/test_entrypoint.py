"""docker/entrypoint.sh run as the container runs it: ready, counts, probes, drains on SIGTERM."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.docker.conftest import (
    RunningService,
    healthcheck_argv,
    k8s_object,
    load_compose,
    parse_dockerfile,
    start_entrypoint,
    wait_ready,
)
from tests.service.conftest import free_port, synthetic_png


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    running = start_entrypoint(free_port(), tmp_path_factory.mktemp("app"))
    try:
        wait_ready(running)
        yield running
    finally:
        running.stop()


def test_ready_and_counts_an_image(service: RunningService):
    with httpx.Client(base_url=service.url, timeout=60) as http:
        assert http.get("/health").status_code == 200
        assert http.get("/ready").json() == {"status": "ready"}
        data, true_count = synthetic_png(7)
        response = http.post("/count", files={"files": ("cells.png", data, "image/png")})
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert result["filename"] == "cells.png"
    assert abs(result["count"] - true_count) <= max(3, true_count // 5)


def test_served_checkpoint_is_the_one_named_by_the_environment(service: RunningService):
    info = httpx.get(f"{service.url}/model", timeout=10).json()
    assert Path(info["path"]).resolve() == (
        Path(__file__).parents[2] / "weights/unet32.safetensors"
    )
    assert info["device"] == "cpu"


def _run_check(argv: list[str], port: int) -> int:
    """Run a health-check command as Docker would, with this venv's python."""
    assert argv[0] == "python"
    env = {**os.environ, "PORT": str(port)}
    result = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30)
    return result.returncode


def test_image_healthcheck_passes_when_ready_and_fails_when_down(service: RunningService):
    (value,) = parse_dockerfile().final.values("HEALTHCHECK")
    argv = healthcheck_argv(value)
    assert _run_check(argv, service.port) == 0
    assert _run_check(argv, free_port()) != 0, "nothing listening must count as unhealthy"


def test_compose_healthcheck_passes_when_ready(service: RunningService):
    for name, definition in load_compose()["services"].items():
        test = definition["healthcheck"]["test"]
        assert test[0] == "CMD", name
        assert _run_check(test[1:], service.port) == 0, name


def test_kubernetes_probe_paths_answer(service: RunningService):
    (container,) = k8s_object("Deployment")["spec"]["template"]["spec"]["containers"]
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        path = container[key]["httpGet"]["path"]
        assert httpx.get(f"{service.url}{path}", timeout=10).status_code == 200, key


def _queued_tiles(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    match = re.search(r"^cellcount_queue_depth_tiles (\S+)$", text, re.MULTILINE)
    return float(match[1]) if match else 0.0


def test_sigterm_drains_the_request_in_flight_and_exits_zero(tmp_path: Path):
    running = start_entrypoint(free_port(), tmp_path)
    try:
        wait_ready(running)
        # Four tiles through one worker with batch 1: queued tiles show the request is in flight.
        data, _ = synthetic_png(3, size=(1536, 1536))
        answer: dict[str, httpx.Response] = {}

        def post() -> None:
            answer["response"] = httpx.post(
                f"{running.url}/count", files={"files": ("big.png", data)}, timeout=60
            )

        client = threading.Thread(target=post)
        client.start()
        deadline = time.monotonic() + 30
        while _queued_tiles(running.url) == 0:
            assert client.is_alive(), "the request finished before it could be interrupted"
            assert time.monotonic() < deadline, "the request never queued"
            time.sleep(0.01)

        sent = time.monotonic()
        running.terminate()
        client.join(60)
        assert answer["response"].status_code == 200, "the request in flight must finish"
        grace = 10  # GRACEFUL_TIMEOUT given to the script
        code = running.process.wait(timeout=grace + 15)
        took = time.monotonic() - sent
    finally:
        running.stop()
    log = running.output()
    assert "Application shutdown complete" in log, log[-2000:]
    assert took < grace + 15
    # As PID 1 (in the container) the process exits 0 after the drain. Elsewhere uvicorn re-raises
    # the SIGTERM it caught once it has shut down, so the status says "terminated by SIGTERM".
    assert code == (0 if running.as_pid1 else -15), log[-2000:]
