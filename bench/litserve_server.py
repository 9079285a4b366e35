"""Peer for ``bench/service_throughput.py``: the same model served by LitServe.

    .venv/bin/pip install litserve   # not a project dependency: the benchmark's peer only
    HOST=127.0.0.1 PORT=8002 PLAIN_PRECISION=fp32 .venv/bin/python bench/litserve_server.py

LitServe (Lightning AI) is a serving framework built on FastAPI: requests are queued to worker
processes that run ``decode_request`` -> ``predict`` -> ``encode_response``, with optional
dynamic batching. Here ``predict`` is the plain baseline's own ``count`` (decode, normalize, one
eager forward pass of the padded image, the same counting code; ``bench/plain_server.py``), so
the two peers differ only in the serving machinery. The image comes as base64 in JSON
(``{"image": ...}``), the form LitServe's own image examples use: a multipart form cannot cross
LitServe's queue to its worker processes (its ``UploadFile`` does not pickle: measured, a 500).
``LITSERVE_WORKERS`` (default 1) sets ``workers_per_device``; each worker process gets
``cores / workers`` torch threads. Batching is off: whole images of different sizes do not
stack, and on a CPU batch 1 is fastest (``docs/architecture.md``).
"""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path

import litserve as ls
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.plain_server import PlainModel, load_plain_model
from service.serving.engine import available_cores

WORKERS = int(os.environ.get("LITSERVE_WORKERS", "1"))


class CountAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        torch.set_num_threads(max(1, available_cores() // WORKERS))
        self.plain: PlainModel = load_plain_model()

    def decode_request(self, request: dict[str, str]) -> bytes:
        return base64.b64decode(request["image"])

    def predict(self, data: bytes) -> int:
        return self.plain.count(data)

    def encode_response(self, output: int) -> dict[str, int]:
        return {"count": output}


def main() -> None:
    server = ls.LitServer(
        CountAPI(api_path="/count"),
        accelerator="cpu" if os.environ.get("PLAIN_DEVICE", "cpu") == "cpu" else "cuda",
        workers_per_device=WORKERS,
        timeout=300,
        healthcheck_path="/ready",  # where bench/service_throughput.py waits for every server
    )
    server.run(
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8002")),
        log_level=os.environ.get("LOG_LEVEL", "warning"),
        generate_client_file=False,
    )


if __name__ == "__main__":
    main()
