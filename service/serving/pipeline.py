"""The path of one request: decode -> normalize -> size estimate -> resize -> tiles -> batcher
-> stitch -> label -> back to the uploaded grid -> quality.

The pipeline owns a request from its bytes to its cells: it announces the images to the batcher,
schedules the CPU work, fulfils the announcement as each image is submitted, and records the
metrics. Routes check limits, call :meth:`CountingPipeline.count` and shape the answer.

CPU work (decoding, normalization, labelling) runs in a thread pool of its own, so the event loop
only schedules; the forward pass runs in the batcher's inference workers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np

from model_training.checkpoint import CheckpointRecord
from model_training.counting import CellStats, cell_stats, drop_border_cells
from model_training.inference import Cells, network_min_area, probabilities_to_cells
from model_training.quality import Quality, capped_warning
from model_training.scale import (
    ScalePlan,
    SizeEstimate,
    diameter_bounds,
    plan_scale,
    refine_plan,
    resize_plane,
    scale_cap,
)
from service.errors import ApiError
from service.files.decoding import decode_image
from service.files.imaging import DecodedImage
from service.files.planes import PlaneRequest
from service.files.units import PixelSize, pixel_size, requested_diameter
from service.options import CountOptions
from service.serving.admission import ADMIT_SHARE
from service.serving.batcher import Announcement, TileBatcher
from service.serving.failures import as_api_error
from service.serving.metrics import ServiceMetrics
from service.serving.tiling import TileGrid, cut_tiles, plan_tiles, stitch
from service.serving.work_budget import affordable_scale, pass_seconds
from service.settings import DEFAULT_MAX_DECODED_BYTES


def _cpu_timed(task: Callable[[], Any]) -> tuple[Any, float]:
    start = time.thread_time()
    return task(), time.thread_time() - start


@dataclass
class Upload:
    """Bytes of one uploaded file and the name it came with."""

    name: str
    data: bytes


@dataclass
class Prepared:
    """An upload decoded, normalized, brought to the training scale and cut into tiles."""

    decoded: DecodedImage
    tiles: np.ndarray
    grid: TileGrid
    plan: ScalePlan  # the nucleus diameter in upload pixels and the resize it implies
    pixel_size: PixelSize
    decode_ms: float
    prepare_ms: float


@dataclass
class Segmentation:
    decoded: DecodedImage
    labels: np.ndarray  # in the uploaded image's pixels
    count: int
    tiles: int
    threshold: float
    min_area: int
    options: CountOptions
    plan: ScalePlan
    pixel_size: PixelSize
    quality: Quality
    timings: dict[str, float]

    @property
    def diameter_px(self) -> float | None:
        return self.plan.diameter_px

    @property
    def diameter_source(self) -> str:
        return self.plan.source

    @property
    def scale(self) -> float:
        return self.plan.scale

    def stats(self) -> list[CellStats]:
        return cell_stats(self.labels)

    @property
    def mean_cell_area_px(self) -> float | None:
        return np.count_nonzero(self.labels) / self.count if self.count else None


class CountingPipeline:
    def __init__(
        self,
        record: CheckpointRecord,
        batcher: TileBatcher,
        tile: int,
        margin: int,
        max_pixels: int,
        cpu_threads: int,
        metrics: ServiceMetrics | None = None,
        max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
        size_estimator: Callable[[np.ndarray], SizeEstimate] | None = None,
        work_budget_s: float = float("inf"),
    ) -> None:
        self.record = record
        self.work_budget_s = work_budget_s  # network seconds a resize may bring one image to
        self.size_estimator = size_estimator  # None: image statistics
        self.metrics = metrics
        self.batcher = batcher
        self.tile = tile
        self.margin = margin
        self.max_pixels = max_pixels
        self.max_decoded_bytes = max_decoded_bytes
        self.executor = ThreadPoolExecutor(cpu_threads, thread_name_prefix="cellcount-cpu")

    # -- the request ------------------------------------------------------------------------

    async def count(
        self, uploads: list[Upload], options: CountOptions, deadline: float
    ) -> list[Segmentation]:
        """Count every upload; ``deadline`` is a ``time.monotonic()`` value.

        Every file is decoded before any is counted, so a broken file refuses the whole request
        (an :class:`ApiError` naming it) without spending model time. The images are announced
        to the batcher first (it may hold a short batch back for them); the block withdraws
        whatever was not submitted, however the request ends.
        """
        self.check_options(options)
        with self.batcher.announce(len(uploads)) as announcement:
            outcomes = await asyncio.gather(
                *(self.run_cpu(self._prepare, upload.data, options) for upload in uploads),
                return_exceptions=True,
            )
            prepared = _raise_first(uploads, outcomes)
            outcomes = await asyncio.gather(
                *(self._segment(item, options, deadline, announcement) for item in prepared),
                return_exceptions=True,
            )
            segmentations = _raise_first(uploads, outcomes)
        if self.metrics is not None:
            for seg in segmentations:
                self.metrics.images.inc()
                self.metrics.formats.labels(seg.decoded.format).inc()
                self.metrics.cell_count.observe(seg.count)
        return segmentations

    async def count_plane(
        self, plane: np.ndarray, options: CountOptions, deadline: float
    ) -> Segmentation:
        """Count an image that did not come as bytes (the start-up warm-up)."""
        decoded = DecodedImage(plane=np.asarray(plane, dtype=np.float32), format="png")
        with self.batcher.announce(1) as announcement:
            prepared = self._prepare_decoded(decoded, options, 0.0)
            return await self._segment(prepared, options, deadline, announcement)

    def check_options(self, options: CountOptions) -> None:
        """A pinned diameter must lie where the resize factor is allowed (422 otherwise)."""
        if options.diameter_um is not None and options.diameter != "auto":
            raise ApiError(
                422,
                "invalid_parameters",
                "diameter and diameter_um: send one of them (pixels or micrometres)",
            )
        low, high = self.diameter_bounds
        if isinstance(options.diameter, float) and not low <= options.diameter <= high:
            raise ApiError(
                422,
                "invalid_parameters",
                f"diameter: {options.diameter:g} px is outside [{low:g}, {high:g}] px, the sizes "
                "this model can be rescaled to (or use 'auto')",
            )

    @property
    def diameter_bounds(self) -> tuple[float, float]:
        return diameter_bounds(self.record.nucleus_diameter_px)

    # -- the steps --------------------------------------------------------------------------

    async def run_cpu(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        task = partial(fn, *args, **kwargs)
        if self.metrics is None:
            return await loop.run_in_executor(self.executor, task)
        result, seconds = await loop.run_in_executor(self.executor, _cpu_timed, task)
        self.metrics.pool_cpu.inc(seconds)
        return result

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    def _prepare(self, data: bytes, options: CountOptions) -> Prepared:
        """Decode, normalize, estimate the scale and tile one upload (one CPU-pool trip)."""
        start = time.perf_counter()
        request = PlaneRequest(
            channel=options.channel, z=options.z, t=options.t, position=options.position
        )
        decoded = decode_image(data, self.max_pixels, request, self.max_decoded_bytes)
        return self._prepare_decoded(decoded, options, (time.perf_counter() - start) * 1e3)

    def _prepare_decoded(
        self, decoded: DecodedImage, options: CountOptions, decode_ms: float
    ) -> Prepared:
        start = time.perf_counter()
        size = pixel_size(options, decoded)
        diameter, source = requested_diameter(options, size, self.record, self.diameter_bounds)
        plane = self.record.normalization.apply(decoded.plane)
        plan = plan_scale(
            plane,
            diameter,
            self.record.nucleus_diameter_px,
            self.max_pixels,
            source,
            self.size_estimator,
            max_scale=self.affordable_scale(plane.shape, self.work_budget_s, low=1.0),
        )
        tiles, grid = self._tiles(plane, plan)
        prepare_ms = (time.perf_counter() - start) * 1e3
        return Prepared(decoded, tiles, grid, plan, size, decode_ms, prepare_ms)

    def affordable_scale(self, shape: tuple[int, ...], budget_s: float, low: float) -> float:
        """The largest resize from ``low`` up to the pixel cap whose pass fits ``budget_s``
        at the measured throughput (``work_budget``); ``low`` when none does."""
        high = scale_cap(shape, self.max_pixels)
        if budget_s == float("inf"):
            return high
        throughput = self.batcher.throughput
        return affordable_scale(
            lambda scale: pass_seconds(throughput, shape, scale, self.tile, self.margin),
            budget_s,
            low,
            high,
        )

    def _tiles(self, plane: np.ndarray, plan: ScalePlan) -> tuple[np.ndarray, TileGrid]:
        network = resize_plane(plane, plan.scale)
        grid = plan_tiles(network.shape[0], network.shape[1], self.tile, self.margin)
        return cut_tiles(network, grid), grid

    def _retiled(self, prepared: Prepared, plan: ScalePlan) -> Prepared:
        """The same upload cut again at another scale (normalized anew rather than kept: a
        second pass is rare, and holding every normalized plane would double the memory)."""
        start = time.perf_counter()
        plane = self.record.normalization.apply(prepared.decoded.plane)
        tiles, grid = self._tiles(plane, plan)
        spent = (time.perf_counter() - start) * 1e3
        return replace(
            prepared, tiles=tiles, grid=grid, plan=plan, prepare_ms=prepared.prepare_ms + spent
        )

    def _postprocess(
        self,
        outputs: np.ndarray,
        prepared: Prepared,
        threshold: float,
        min_area: int,
        options: CountOptions,
    ) -> Cells:
        cells = probabilities_to_cells(
            stitch(outputs, prepared.grid),
            prepared.plan,
            self.record,
            prepared.decoded.plane.shape,
            threshold,
            min_area,
            options.split_touching,
            options.reject_unsure,
        )
        if options.exclude_border:
            cells = replace(cells, labels=drop_border_cells(cells.labels))
        return cells

    async def _segment(
        self,
        prepared: Prepared,
        options: CountOptions,
        deadline: float,
        announcement: Announcement,
    ) -> Segmentation:
        threshold = self.record.threshold if options.threshold is None else options.threshold
        min_area = self.record.min_area if options.min_area is None else options.min_area
        announcement.fulfil()
        inference_s = postprocess_s = 0.0
        tiles = 0
        shape = prepared.decoded.plane.shape
        cap = scale_cap(shape, self.max_pixels)
        for second_pass in (False, True):  # a second pass only when refine_plan asks for one
            submitted = time.perf_counter()
            outputs = await self.batcher.submit(
                prepared.tiles, timeout=max(0.001, deadline - time.monotonic())
            )
            inferred = time.perf_counter()
            cells = await self.run_cpu(
                self._postprocess,
                outputs,
                prepared,
                threshold,
                network_min_area(self.record, options.min_area, prepared.plan),
                options,
            )
            inference_s += inferred - submitted
            postprocess_s += time.perf_counter() - inferred
            tiles += len(prepared.tiles)
            network_diameter = cells.quality.network_diameter_px
            trained = self.record.nucleus_diameter_px
            refined = refine_plan(prepared.plan, network_diameter, trained, cap)
            if second_pass or refined is None:
                break
            # The second pass is work the service chooses: it gets what is left of the budget
            # and of the deadline, or the first pass stands (and says what was held back).
            left_s = min(
                self.work_budget_s - inference_s, ADMIT_SHARE * (deadline - time.monotonic())
            )
            affordable = self.affordable_scale(shape, left_s, low=prepared.plan.scale)
            if affordable < refined.scale:
                held = refine_plan(prepared.plan, network_diameter, trained, affordable)
                if held is None:
                    cells = _held_back(cells, refined)
                    prepared = replace(prepared, plan=cells.plan)
                    break
                refined = held
            prepared = await self.run_cpu(self._retiled, prepared, refined)
        return Segmentation(
            decoded=prepared.decoded,
            labels=cells.labels,
            count=int(cells.labels.max(initial=0)),
            tiles=tiles,
            threshold=threshold,
            min_area=min_area,
            options=options,
            plan=prepared.plan,
            pixel_size=prepared.pixel_size,
            quality=cells.quality,
            timings={
                "decode_ms": round(prepared.decode_ms, 2),
                "queue_and_inference_ms": round(inference_s * 1e3, 2),
                "postprocess_ms": round(prepared.prepare_ms + postprocess_s * 1e3, 2),
            },
        )


def _held_back(cells: Cells, wanted: ScalePlan) -> Cells:
    """First-pass cells whose second pass (at ``wanted``) did not fit the work budget."""
    plan = replace(cells.plan, wanted_scale=wanted.asked_scale)
    warning = capped_warning(wanted.diameter_px, wanted.asked_scale, cells.plan.scale)
    quality = replace(cells.quality, warnings=[*cells.quality.warnings, warning])
    return replace(cells, plan=plan, quality=quality)


def _raise_first(uploads: list[Upload], outcomes: list[Any]) -> list[Any]:
    """The results, or the first failure as the client sees it (naming its file)."""
    for upload, outcome in zip(uploads, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            raise as_api_error(outcome, upload.name)  # type: ignore[arg-type]
    return outcomes
