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


def _in_progress(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    match = re.search(
        r'^cellcount_requests_in_progress\{endpoint="/count"\} (\S+)$', text, re.MULTILINE
    )
    return float(match[1]) if match else 0.0


# The engine sleeps this long per tile (CELLCOUNT_INFERENCE_DELAY_MS): the work is sized in
# seconds of sleep, not in CPU speed, so the one request finishes well within the grace period
# and the other cannot, on any machine.
TILE_DELAY_S = 1.0
GRACE_S = 6


def test_sigterm_finishes_what_can_finish_and_cuts_the_rest_with_503(tmp_path: Path):
    running = start_entrypoint(
        free_port(),
        tmp_path,
        env={
            "GRACEFUL_TIMEOUT": str(GRACE_S),
            "CELLCOUNT_INFERENCE_DELAY_MS": str(int(TILE_DELAY_S * 1000)),
            "CELLCOUNT_MAX_TILE_SIZE": "256",  # the big image: dozens of 256x256 tiles
        },
    )
    try:
        wait_ready(running)
        small, _ = synthetic_png(3, size=(256, 256))  # one tile: about TILE_DELAY_S
        big, _ = synthetic_png(4, size=(1024, 1024))  # 36 tiles: far past the grace period
        answers: dict[str, httpx.Response] = {}

        def post(name: str, data: bytes) -> None:
            answers[name] = httpx.post(
                f"{running.url}/count",
                files={"files": (f"{name}.png", data)},
                params={"diameter": 16},  # at the training size: no resize, no second pass
                timeout=120,
            )

        clients = [
            threading.Thread(target=post, args=("small", small)),
            threading.Thread(target=post, args=("big", big)),
        ]
        deadline = time.monotonic() + 60
        for client in clients:  # the small one first: its tile is ahead of the big one's
            client.start()
            expected = clients.index(client) + 1
            while _in_progress(running.url) < expected:
                assert client.is_alive(), answers
                assert time.monotonic() < deadline, "the requests never arrived"
                time.sleep(0.01)
        time.sleep(0.2)  # both decoded and queued

        sent = time.monotonic()
        running.terminate()
        for client in clients:
            client.join(GRACE_S + 30)
        cut_after = time.monotonic() - sent
        code = running.process.wait(timeout=GRACE_S + 30)
        took = time.monotonic() - sent
    finally:
        running.stop()
    log = running.output()
    assert answers["small"].status_code == 200, (answers["small"].text, log[-2000:])
    cut = answers["big"]
    assert cut.status_code == 503, (cut.status_code, cut.text, log[-2000:])
    assert cut.json()["error"]["code"] == "shutting_down"
    assert int(cut.headers["Retry-After"]) >= 1
    assert cut_after < GRACE_S + 5  # answered when the grace period ended, not after
    assert "cut with 503" in log, log[-2000:]
    assert "Exception in ASGI application" not in log, log[-3000:]
    assert "Application shutdown complete" in log, log[-2000:]
    assert took < GRACE_S + 30
    # As PID 1 (in the container) the process exits 0 after the drain. Elsewhere uvicorn re-raises
    # the SIGTERM it caught once it has shut down, so the status says "terminated by SIGTERM".
    assert code == (0 if running.as_pid1 else -15), log[-2000:]
