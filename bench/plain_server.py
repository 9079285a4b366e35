"""Baseline for ``bench/service_throughput.py``: the plain FastAPI way to serve the same model.

    HOST=127.0.0.1 PORT=8001 PLAIN_PRECISION=fp32 PLAIN_CHANNELS_LAST=0 \
        .venv/bin/python bench/plain_server.py

One request, one forward pass of the whole (padded) image, no batching, no tiling: what a
straightforward deployment would do. The endpoint is a sync ``def`` on purpose, so FastAPI runs
it in its thread pool and concurrent requests run concurrent forward passes, each with torch's
default intra-op threads. Inference mode comes from the environment so that the benchmark can put
it in the same mode the service measured for itself: ``PLAIN_PRECISION`` (fp32|bf16),
``PLAIN_CHANNELS_LAST`` (0|1), ``PLAIN_DEVICE`` (auto|cpu|cuda); the checkpoint from
``CELLCOUNT_CHECKPOINT``.
"""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI, File, HTTPException, UploadFile
from PIL import Image

from model_training.checkpoint import CheckpointRecord, load_checkpoint
from model_training.counting import label_cells
from model_training.image_io import to_grayscale
from model_training.inference import autocast_context, pad_to_multiple
from service.serving.engine import resolve_device
from service.settings import DEFAULT_CHECKPOINT


@dataclass
class PlainModel:
    model: torch.nn.Module
    record: CheckpointRecord
    device: torch.device
    precision: str
    memory_format: torch.memory_format

    @torch.inference_mode()
    def count(self, data: bytes) -> int:
        with Image.open(io.BytesIO(data)) as image:
            plane = to_grayscale(np.asarray(image))
        height, width = plane.shape
        normalized = pad_to_multiple(self.record.normalization.apply(plane))
        batch = torch.from_numpy(np.ascontiguousarray(normalized))[None, None].to(self.device)
        batch = batch.to(memory_format=self.memory_format)
        with autocast_context(self.device, self.precision):
            logits = self.model(batch)
        probabilities = torch.sigmoid(logits.float())[0, 0, :height, :width].cpu().numpy()
        labels = label_cells(probabilities, self.record.threshold, self.record.min_area)
        return int(labels.max(initial=0))


def load_plain_model() -> PlainModel:
    """Everything from the environment, read once at start-up."""
    precision = os.environ.get("PLAIN_PRECISION", "fp32")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"PLAIN_PRECISION must be fp32 or bf16, got {precision!r}")
    channels_last = os.environ.get("PLAIN_CHANNELS_LAST", "0").strip().lower() in ("1", "true")
    device = resolve_device(os.environ.get("PLAIN_DEVICE", "auto"))
    checkpoint = Path(os.environ.get("CELLCOUNT_CHECKPOINT") or DEFAULT_CHECKPOINT)
    model, record = load_checkpoint(checkpoint, device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.eval().to(memory_format=memory_format)
    return PlainModel(model, record, device, precision, memory_format)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.plain = load_plain_model()
    yield


app = FastAPI(title="cellcount plain baseline", lifespan=lifespan)


@app.get("/ready")
def ready() -> dict[str, str]:
    """Answers only once the lifespan has loaded the model (uvicorn serves after start-up)."""
    return {"status": "ready"}


@app.post("/count")
def count(files: Annotated[list[UploadFile], File()]) -> dict[str, int]:
    if len(files) != 1:
        raise HTTPException(422, f"send exactly one file, got {len(files)}")
    plain: PlainModel = app.state.plain
    return {"count": plain.count(files[0].file.read())}


if __name__ == "__main__":
    uvicorn.run(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8001")),
        log_level=os.environ.get("LOG_LEVEL", "warning"),
    )
