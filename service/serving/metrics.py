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
        self.errors = Counter(
            "cellcount_errors", "Error responses by code", ["code"], registry=self.registry
        )

    def observe_batch(self, size: int, seconds: float, cpu_seconds: float = 0.0) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
        self.tiles.inc(size)
        self.inference_cpu.inc(cpu_seconds)

    def track_queue(self, depth: Callable[[], float]) -> None:
        self.queue_depth.set_function(depth)
