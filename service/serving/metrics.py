"""Prometheus metrics of one app instance (own registry, so several apps can live in a test)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
COUNT_BUCKETS = (0, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 5000)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, memory, fds
        self.request_latency = Histogram(
            "cellcount_request_latency_seconds",
            "Latency of counting requests by endpoint",
            ["endpoint", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "cellcount_requests_in_progress",
            "Counting requests being handled (decoding, queued, in a forward pass or labelling)",
            ["endpoint"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "cellcount_batch_size_tiles",
            "Tiles per forward pass",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "cellcount_batch_seconds",
            "Duration of one forward pass",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tiles = Counter(
            "cellcount_tiles_processed", "Tiles run through the model", registry=self.registry
        )
        self.formats = Counter(
            "cellcount_images_by_format",
            "Images counted, by the file format they came in (png, ome-tiff, czi, ...)",
            ["format"],
            registry=self.registry,
        )
        self.images = Counter(
            "cellcount_images_processed", "Images counted", registry=self.registry
        )
        self.cell_count = Histogram(
            "cellcount_cells_per_image",
            "Cells counted per image",
            buckets=COUNT_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "cellcount_queue_depth_tiles",
            "Tiles waiting for a forward pass",
            registry=self.registry,
        )
        # Where the CPU goes (thread CPU time, not wall time): the forward passes in the
        # inference workers and decoding/labelling/encoding in the CPU pool; the process total
        # (process_cpu_seconds_total) minus both is the event loop: HTTP, parsing, scheduling.
        self.inference_cpu = Counter(
            "cellcount_inference_cpu_seconds",
            "CPU time of the inference worker threads in forward passes",
            registry=self.registry,
        )
        self.pool_cpu = Counter(
            "cellcount_cpu_pool_cpu_seconds",
            "CPU time of the decode/post-processing pool threads",
            registry=self.registry,
        )
        self.expected_wait = Gauge(
            "cellcount_expected_wait_seconds",
            "Expected seconds before a tile submitted now starts (queued work / throughput)",
            registry=self.registry,
        )
        self.refusals = Counter(
            "cellcount_refusals",
            "Requests refused or cut, by cause: queue_full and expected_wait (503 at once), "
            "deadline (504), shutdown (503 while draining)",
            ["cause"],
            registry=self.registry,
        )
        for cause in ("queue_full", "expected_wait", "deadline", "shutdown"):
            self.refusals.labels(cause)
        self.errors = Counter(
            "cellcount_errors", "Error responses by code", ["code"], registry=self.registry
        )

    def observe_batch(self, size: int, seconds: float, cpu_seconds: float = 0.0) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
        self.tiles.inc(size)
        self.inference_cpu.inc(cpu_seconds)

    def track_queue(self, depth: Callable[[], float], wait: Callable[[], float]) -> None:
        self.queue_depth.set_function(depth)
        self.expected_wait.set_function(wait)

    def observe_refusal(self, cause: str) -> None:
        self.refusals.labels(cause).inc()
