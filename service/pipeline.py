"""The path of one image: decode -> normalize -> tiles -> batcher -> stitch -> count.

CPU work (decoding, normalization, labelling, PNG encoding) runs in a thread pool of its own, so
the event loop only schedules; the forward pass runs in the batcher's inference workers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from model_training.checkpoint import CheckpointRecord
from model_training.counting import CellStats, cell_stats, drop_border_cells, label_cells
from service.batcher import Announcement, TileBatcher
from service.imaging import DecodedImage, decode_image
from service.schemas import CountOptions
from service.tiling import TileGrid, cut_tiles, plan_tiles, stitch


def _cpu_timed(task: Callable[[], Any]) -> tuple[Any, float]:
    start = time.thread_time()
    return task(), time.thread_time() - start


@dataclass
class Prepared:
    """An upload decoded, normalized and cut into tiles: ready for the batcher."""

    decoded: DecodedImage
    tiles: np.ndarray
    grid: TileGrid
    decode_ms: float
    prepare_ms: float


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
        on_cpu: Callable[[float], None] | None = None,
    ) -> None:
        self.record = record
        self.on_cpu = on_cpu  # CPU seconds of each pool task (metrics)
        self.batcher = batcher
        self.tile = tile
        self.margin = margin
        self.max_pixels = max_pixels
        self.executor = ThreadPoolExecutor(cpu_threads, thread_name_prefix="cellcount-cpu")

    async def run_cpu(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        task = partial(fn, *args, **kwargs)
        if self.on_cpu is None:
            return await loop.run_in_executor(self.executor, task)
        result, seconds = await loop.run_in_executor(self.executor, _cpu_timed, task)
        self.on_cpu(seconds)
        return result

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    def _tiles(self, decoded: DecodedImage) -> tuple[np.ndarray, TileGrid]:
        grid = plan_tiles(decoded.height, decoded.width, self.tile, self.margin)
        return cut_tiles(self.record.normalization.apply(decoded.plane), grid), grid

    def _prepare(self, data: bytes) -> Prepared:
        start = time.perf_counter()
        decoded = decode_image(data, self.max_pixels)
        decoded_at = time.perf_counter()
        tiles, grid = self._tiles(decoded)
        done = time.perf_counter()
        return Prepared(decoded, tiles, grid, (decoded_at - start) * 1e3, (done - decoded_at) * 1e3)

    async def prepare(self, data: bytes) -> Prepared:
        """Decode, normalize and tile one upload in one trip to the CPU pool."""
        return await self.run_cpu(self._prepare, data)

    def prepare_decoded(self, decoded: DecodedImage) -> Prepared:
        """For images that did not come as bytes (the start-up warm-up)."""
        tiles, grid = self._tiles(decoded)
        return Prepared(decoded, tiles, grid, 0.0, 0.0)

    def _postprocess(
        self,
        outputs: np.ndarray,
        grid: TileGrid,
        threshold: float,
        min_area: int,
        options: CountOptions,
    ) -> np.ndarray:
        probabilities = stitch(outputs, grid)
        labels = label_cells(probabilities, threshold, min_area, options.split_touching)
        if options.exclude_border:
            labels = drop_border_cells(labels)
        return labels

    async def segment(
        self,
        prepared: Prepared,
        options: CountOptions,
        deadline: float,
        announcement: Announcement | None = None,
    ) -> Segmentation:
        """Count the cells of one prepared image; ``deadline`` is a ``time.monotonic()`` value.

        ``announcement``: the request's (``batcher.announce``), which this submission fulfils.
        """
        threshold = self.record.threshold if options.threshold is None else options.threshold
        min_area = self.record.min_area if options.min_area is None else options.min_area
        submitted = time.perf_counter()
        if announcement is not None:
            announcement.fulfil()
        outputs = await self.batcher.submit(
            prepared.tiles, timeout=max(0.001, deadline - time.monotonic())
        )
        inferred = time.perf_counter()
        labels = await self.run_cpu(
            self._postprocess, outputs, prepared.grid, threshold, min_area, options
        )
        done = time.perf_counter()
        return Segmentation(
            decoded=prepared.decoded,
            labels=labels,
            count=int(labels.max(initial=0)),
            tiles=len(prepared.tiles),
            threshold=threshold,
            min_area=min_area,
            options=options,
            timings={
                "decode_ms": round(prepared.decode_ms, 2),
                "queue_and_inference_ms": round((inferred - submitted) * 1e3, 2),
                "postprocess_ms": round(prepared.prepare_ms + (done - inferred) * 1e3, 2),
            },
        )
