"""Dynamic batching of tiles from all concurrent requests into shared forward passes.

One FIFO of tiles and one consumer task on the event loop. The consumer takes a free worker
slot, then collects up to ``max_batch_size`` live tiles of the oldest tile's shape (fewer when
``batch_pixels`` caps big tiles), and runs the batch in a worker thread so the event loop never
blocks on torch. Tiles of other shapes keep their place in the queue. A request's future
resolves when its last tile is back.

Waiting for company: the consumer holds a short batch back (at most ``max_wait_ms`` after its
oldest tile arrived) only while more tiles are known to be on their way, i.e. images that a
request has announced (``announce``: being read and decoded) and not yet submitted. A lone
request on a quiet service runs at once instead of paying ``max_wait_ms`` for company that
cannot come.

Admission: a request whose expected completion (the work queued ahead plus its own, at the
measured throughput: ``service.serving.admission``) lies past its deadline is refused at once,
and so is one that would overflow the tile limit (``Overloaded`` -> 503 with Retry-After).

Failure isolation: a request past its deadline is marked cancelled and its queued tiles are
dropped unrun (``DeadlineExceeded`` -> 504); an exception in a forward pass fails only the
requests with tiles in that batch (``BatchFailed`` -> 500) and the next batch runs as usual.

Shutdown: ``drain(grace_s)`` (from the server's SIGTERM handler) cuts, shortly before the
server's grace period ends, every request that is still unfinished: it gets a 503 with
Retry-After (``BatcherStopped``) instead of the 500 of a request the server cancels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from service.serving.admission import Throughput, admits, retry_after

log = logging.getLogger("cellcount.batcher")

# How long before the server's grace period ends unfinished requests are cut (answered 503):
# enough for the answers to be written before the server cancels what is left.
CUT_MARGIN_SHARE = 0.1
CUT_MARGIN_BOUNDS_S = (0.5, 2.0)


class Overloaded(Exception):
    """Refused before queueing; the client should retry after ``retry_after`` seconds.

    ``cause``: ``queue_full`` (the tile limit, a memory bound) or ``expected_wait`` (the work
    ahead would not finish before the request's deadline)."""

    def __init__(self, message: str, retry_after: int, cause: str = "queue_full") -> None:
        super().__init__(f"{message}; retry in {retry_after} s")
        self.retry_after = retry_after
        self.cause = cause


class DeadlineExceeded(Exception):
    """The request was not finished within its deadline."""


class BatchFailed(Exception):
    """The forward pass of a batch holding this request's tiles raised."""


class BatcherStopped(Exception):
    """The service is shutting down; a replacement may answer after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Announcement:
    """The images one request has announced to the batcher.

    Each submission fulfils one (``fulfil`` right before ``submit``: nothing can run in between,
    so the consumer never sees the image neither announced nor queued). Leaving the ``with``
    block withdraws what is left, whatever ended the request: a refused file, an error, a client
    that went away. An announcement can therefore never outlive its request.
    """

    def __init__(self, batcher: TileBatcher, images: int) -> None:
        self.batcher = batcher
        self.left = images

    def __enter__(self) -> Announcement:
        self.batcher.expect(self.left)
        return self

    def fulfil(self) -> None:
        if self.left > 0:
            self.left -= 1
            self.batcher.expect(-1)

    def __exit__(self, *exc_info: object) -> None:
        if self.left > 0:
            self.batcher.expect(-self.left)
            self.left = 0


@dataclass(eq=False)
class _Request:
    tiles: np.ndarray
    future: asyncio.Future
    remaining: int
    results: np.ndarray | None = None
    cancelled: bool = False


@dataclass(eq=False)
class _Job:
    request: _Request
    index: int
    arrival: float = field(default_factory=time.monotonic)


BatchObserver = Callable[[int, float, float], None]  # tiles, wall seconds, CPU seconds
RefusalObserver = Callable[[str], None]  # queue_full, expected_wait, deadline or shutdown


class TileBatcher:
    def __init__(
        self,
        infer: Callable[[np.ndarray], np.ndarray],
        max_batch_size: int = 8,
        max_wait_ms: float = 2.0,
        workers: int = 1,
        queue_limit: int = 2048,
        on_batch: BatchObserver | None = None,
        batch_pixels: int | None = None,
        seconds_per_pixel: float = 1e-6,
        on_refusal: RefusalObserver | None = None,
    ) -> None:
        if max_batch_size < 1 or workers < 1 or queue_limit < 1:
            raise ValueError("max_batch_size, workers and queue_limit must all be >= 1")
        self.infer = infer
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.workers = workers
        self.queue_limit = queue_limit
        self.on_batch = on_batch
        self.batch_pixels = batch_pixels
        self._queue: deque[_Job] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._running: set[asyncio.Task] = set()
        self.on_refusal = on_refusal
        self._expected = 0  # images announced by ``expect`` and not yet submitted
        # Seeded by the warm-up plan, then measured: the expected wait and Retry-After.
        self.throughput = Throughput(seconds_per_pixel, workers)
        self._live: set[_Request] = set()  # submitted, not yet answered
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: BatcherStopped | None = None  # set by a shutdown cut

    # ---- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="cellcount-infer")
        self._task = asyncio.create_task(self._consume(), name="tile-batcher")

    async def stop(self) -> None:
        """Finish the batches already running, fail what is still queued."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        while self._queue:
            job = self._queue.popleft()
            if not job.request.cancelled and not job.request.future.done():
                job.request.future.set_exception(BatcherStopped("the service is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def drain(self, grace_s: float, retry_after_s: float = 5.0) -> None:
        """The server has begun to shut down and will cancel what is unfinished after
        ``grace_s``: cut it a little before, with a 503. Safe to call from a signal handler."""
        if self._loop is None or self._loop.is_closed():
            return
        low, high = CUT_MARGIN_BOUNDS_S
        delay = max(0.0, grace_s - min(high, max(low, CUT_MARGIN_SHARE * grace_s)))
        message = (
            f"the server is shutting down and this request could not finish within its "
            f"grace period of {grace_s:g} s"
        )
        stop = BatcherStopped(message, retry_after(retry_after_s))
        self._loop.call_soon_threadsafe(self._loop.call_later, delay, self.cut, stop)

    def cut(self, stop: BatcherStopped) -> int:
        """Answer every unfinished request with ``stop`` and refuse new ones; returns how many
        were cut. Their tiles that have not started never run."""
        self._stopped = stop
        cut = 0
        for request in list(self._live):
            if not request.future.done():
                request.cancelled = True
                request.future.set_exception(BatcherStopped(str(stop), stop.retry_after))
                cut += 1
        self._queue.clear()
        self._wakeup.set()
        if cut:
            log.warning("shutdown: %d request(s) cut with 503 (%s)", cut, stop)
            self._refused("shutdown", cut)
        return cut

    @property
    def pending(self) -> int:
        return len(self._queue)

    def queued_tiles(self) -> Counter[tuple[int, ...]]:
        """The live tiles waiting for a forward pass, by shape."""
        return Counter(
            job.request.tiles.shape[1:] for job in self._queue if not job.request.cancelled
        )

    def expected_wait(self) -> float:
        """Seconds before a tile submitted now would start, at the measured throughput."""
        return self.throughput.seconds_for(self.queued_tiles().items())

    def _refused(self, cause: str, requests: int = 1) -> None:
        if self.on_refusal is not None:
            for _ in range(requests):
                self.on_refusal(cause)

    @property
    def expected(self) -> int:
        """Images announced by ``expect`` and not yet submitted."""
        return self._expected

    # ---- producer side -------------------------------------------------------------------------
    def expect(self, images: int) -> None:
        """Announce (positive) or withdraw (negative) images whose tiles will be submitted soon."""
        self._expected = max(0, self._expected + images)
        if images < 0:
            self._wakeup.set()  # a batch held back for them need not wait any longer

    def announce(self, images: int) -> Announcement:
        """``with batcher.announce(n) as a:`` around a request's decoding and submissions."""
        return Announcement(self, images)

    async def submit(self, tiles: np.ndarray, timeout: float) -> np.ndarray:
        """Queue an image's tiles; returns their outputs in order, or raises."""
        if self._stopped is not None:
            self._refused("shutdown")
            raise BatcherStopped(str(self._stopped), self._stopped.retry_after)
        if self._task is None or self._task.done():
            raise BatcherStopped("the batcher is not running")
        count = len(tiles)
        if count == 0:
            return np.empty_like(tiles)
        if timeout <= 0:
            self._refused("deadline")
            raise DeadlineExceeded("the request's deadline passed before its tiles were queued")
        self._admit(tiles, timeout)
        loop = asyncio.get_running_loop()
        request = _Request(tiles=tiles, future=loop.create_future(), remaining=count)
        self._live.add(request)
        request.future.add_done_callback(lambda _: self._live.discard(request))
        now = time.monotonic()
        self._queue.extend(_Job(request, index, now) for index in range(count))
        self._wakeup.set()
        try:
            return await asyncio.wait_for(asyncio.shield(request.future), timeout)
        except TimeoutError as error:
            self._discard(request)
            self._refused("deadline")
            raise DeadlineExceeded(f"the request was not finished within {timeout:g} s") from error
        except asyncio.CancelledError:
            self._discard(request)  # client went away: its queued tiles are dropped
            raise

    def _admit(self, tiles: np.ndarray, timeout: float) -> None:
        """Refuse at once what would overflow the tile limit or finish past its deadline."""
        backlog = self.queued_tiles()
        drain_s = self.throughput.seconds_for(backlog.items())
        if self.pending + len(tiles) > self.queue_limit:
            self._refused("queue_full")
            raise Overloaded(
                f"{self.pending} tiles are queued (limit {self.queue_limit})",
                retry_after(drain_s),
            )
        own = self.throughput.seconds_for([(tiles.shape[1:], len(tiles))])
        expected = drain_s + own
        if not admits(expected, timeout, backlog.total()):
            self._refused("expected_wait")
            raise Overloaded(
                f"the work queued ahead would take about {drain_s:.1f} s and this request "
                f"{expected - drain_s:.1f} s more, past its deadline {timeout:.0f} s away",
                retry_after(drain_s),
                cause="expected_wait",
            )

    def _discard(self, request: _Request) -> None:
        """Mark a request abandoned and take its queued tiles out now (they never run)."""
        request.cancelled = True
        self._queue = deque(job for job in self._queue if job.request is not request)
        if not request.future.done():
            request.future.cancel()  # nobody waits for it any more

    # ---- consumer side -------------------------------------------------------------------------
    def _drop_dead_head(self) -> None:
        while self._queue and self._queue[0].request.cancelled:
            self._queue.popleft()

    async def _consume(self) -> None:
        slots = asyncio.Semaphore(self.workers)
        while True:
            self._drop_dead_head()
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await slots.acquire()
            self._drop_dead_head()
            # Wait for company of the oldest tile's shape, never past max_wait after it arrived,
            # and only while announced images are still on their way.
            while self._queue:
                shape, limit = self._batch_shape()
                if self._expected == 0 or self._count_shape(shape) >= limit:
                    break
                remaining = self._queue[0].arrival + self.max_wait - time.monotonic()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                self._drop_dead_head()
            batch = self._take_batch() if self._queue else []
            if not batch:
                slots.release()
                continue
            task = asyncio.create_task(self._execute(batch, slots))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _batch_shape(self) -> tuple[tuple[int, ...], int]:
        """Shape of the oldest tile and how many tiles of that shape make a full batch."""
        shape = self._queue[0].request.tiles.shape[1:]
        limit = self.max_batch_size
        if self.batch_pixels:
            limit = max(1, min(limit, self.batch_pixels // int(np.prod(shape))))
        return shape, limit

    def _count_shape(self, shape: tuple[int, ...]) -> int:
        return sum(1 for job in self._queue if job.request.tiles.shape[1:] == shape)

    def _take_batch(self) -> list[_Job]:
        """Up to a full batch of live tiles shaped like the oldest; the rest keep their order."""
        shape, limit = self._batch_shape()
        batch: list[_Job] = []
        rest: deque[_Job] = deque()
        while self._queue:
            job = self._queue.popleft()
            if job.request.cancelled:
                continue
            if len(batch) < limit and job.request.tiles.shape[1:] == shape:
                batch.append(job)
            else:
                rest.append(job)
                if len(batch) >= limit:
                    break
        rest.extend(self._queue)
        self._queue = rest
        return batch

    async def _execute(self, batch: list[_Job], slots: asyncio.Semaphore) -> None:
        loop = asyncio.get_running_loop()
        try:
            tiles = np.stack([job.request.tiles[job.index] for job in batch])
            started = time.monotonic()
            try:
                outputs, cpu_seconds = await loop.run_in_executor(
                    self._executor, self._infer_timed, tiles
                )
            except Exception as error:
                self._fail(batch, error)
                return
            seconds = time.monotonic() - started
            self.throughput.observe(tiles.shape[1:], len(batch), seconds)
            if self.on_batch is not None:
                self.on_batch(len(batch), seconds, cpu_seconds)
            for job, output in zip(batch, outputs, strict=True):
                request = job.request
                if request.future.done():
                    continue
                if request.results is None:
                    request.results = np.empty(
                        (len(request.tiles), *output.shape), dtype=output.dtype
                    )
                request.results[job.index] = output
                request.remaining -= 1
                if request.remaining == 0:
                    request.future.set_result(request.results)
        finally:
            slots.release()

    def _infer_timed(self, tiles: np.ndarray) -> tuple[np.ndarray, float]:
        """The forward pass and the CPU time this worker thread spent on it (its intra-op
        helper threads, if any, are not counted)."""
        start = time.thread_time()
        outputs = self.infer(tiles)
        return outputs, time.thread_time() - start

    @staticmethod
    def _fail(batch: list[_Job], error: Exception) -> None:
        message = (
            f"inference failed for a batch of {len(batch)} tiles: {type(error).__name__}: {error}"
        )
        for request in {id(job.request): job.request for job in batch}.values():
            abandoned, request.cancelled = request.cancelled, True
            if not abandoned and not request.future.done():
                request.future.set_exception(BatchFailed(message))
