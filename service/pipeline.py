"""The path of one image: decode -> normalize -> tiles -> batcher -> stitch -> count.

CPU work (decoding, normalization, labelling, PNG encoding) runs in a thread pool of its own, so
the event loop only schedules; the forward pass runs in the batcher's inference workers.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from model_training.checkpoint import CheckpointRecord
from service.batcher import TileBatcher
from service.counting import CellStats, cell_stats, drop_border_cells, label_cells
from service.imaging import DecodedImage, decode_image
from service.schemas import CountOptions
from service.tiling import cut_tiles, plan_tiles, stitch


@dataclass
class Segmentation:
    decoded: DecodedImage
    labels: np.ndarray
    count: int
    tiles: int
    threshold: float
    min_area: int
    options: CountOptions
    timings: dict[str, float]

    def stats(self) -> list[CellStats]:
        return cell_stats(self.labels)


class CountingPipeline:
    def __init__(
        self,
        record: CheckpointRecord,
        batcher: TileBatcher,
        tile: int,
        margin: int,
        max_pixels: int,
        cpu_threads: int,
    ) -> None:
        self.record = record
        self.batcher = batcher
        self.tile = tile
        self.margin = margin
        self.max_pixels = max_pixels
        self.executor = ThreadPoolExecutor(cpu_threads, thread_name_prefix="cellcount-cpu")

    async def run_cpu(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, partial(fn, *args, **kwargs))

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def decode(self, data: bytes) -> tuple[DecodedImage, float]:
        start = time.perf_counter()
        decoded = await self.run_cpu(decode_image, data, self.max_pixels)
        return decoded, (time.perf_counter() - start) * 1e3

    def _prepare(self, plane: np.ndarray) -> tuple[np.ndarray, Any]:
        grid = plan_tiles(plane.shape[0], plane.shape[1], self.tile, self.margin)
        return cut_tiles(self.record.normalization.apply(plane), grid), grid

    def _postprocess(
        self, outputs: np.ndarray, grid: Any, threshold: float, min_area: int, options: CountOptions
    ) -> np.ndarray:
        probabilities = stitch(outputs, grid)
        labels = label_cells(probabilities, threshold, min_area, options.split_touching)
        if options.exclude_border:
            labels = drop_border_cells(labels)
        return labels

    async def segment(
        self, decoded: DecodedImage, options: CountOptions, deadline: float, decode_ms: float = 0.0
    ) -> Segmentation:
        """Count the cells of one decoded image; ``deadline`` is a ``time.monotonic()`` value."""
        threshold = self.record.threshold if options.threshold is None else options.threshold
        min_area = self.record.min_area if options.min_area is None else options.min_area
        start = time.perf_counter()
        tiles, grid = await self.run_cpu(self._prepare, decoded.plane)
        prepared = time.perf_counter()
        outputs = await self.batcher.submit(tiles, timeout=max(0.001, deadline - time.monotonic()))
        inferred = time.perf_counter()
        labels = await self.run_cpu(self._postprocess, outputs, grid, threshold, min_area, options)
        done = time.perf_counter()
        return Segmentation(
            decoded=decoded,
            labels=labels,
            count=int(labels.max(initial=0)),
            tiles=len(tiles),
            threshold=threshold,
            min_area=min_area,
            options=options,
            timings={
                "decode_ms": round(decode_ms, 2),
                "queue_and_inference_ms": round((inferred - prepared) * 1e3, 2),
                "postprocess_ms": round(((prepared - start) + (done - inferred)) * 1e3, 2),
            },
        )
