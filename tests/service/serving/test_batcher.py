"""Batcher mechanics with a transparent stand-in for the forward pass (tiles x 2).

The mechanism under test (batch formation, deadlines, queue bounds, failure isolation) does not
depend on what the forward pass computes; the real model runs in test_api.py and test_seams.py.
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from service.serving.batcher import (
    BatcherStopped,
    BatchFailed,
    DeadlineExceeded,
    Overloaded,
    TileBatcher,
)


class Recorder:
    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[int] = []
        self.delay = delay
        self.fail_when: float | None = None
        self.lock = threading.Lock()
        self.active = self.peak = 0  # forward passes running at once, and the most seen

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        with self.lock:
            self.batches.append(len(tiles))
            self.active += 1
            self.peak = max(self.peak, self.active)
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            self.active -= 1
        if self.fail_when is not None and (tiles == self.fail_when).any():
            raise RuntimeError("poisoned tile")
        return tiles * 2


def tiles(value: float, count: int = 1) -> np.ndarray:
    return np.full((count, 4, 4), value, dtype=np.float32)


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_batches_and_get_their_own_results():
    recorder = Recorder()

    async def scenario():
        batcher = TileBatcher(recorder, max_batch_size=8, max_wait_ms=50, workers=1)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit(tiles(i, 2), 5) for i in range(4)))
        await batcher.stop()
        return results

    results = run(scenario())
    for index, result in enumerate(results):
        assert np.array_equal(result, tiles(index, 2) * 2)
    assert recorder.batches == [8]


def test_batch_size_cap_and_no_wait_when_full():
    recorder = Recorder()

    async def scenario():
        batcher = TileBatcher(recorder, max_batch_size=3, max_wait_ms=1000, workers=1)
        await batcher.start()
        start = time.monotonic()
        await batcher.submit(tiles(1, 7), 5)
        elapsed = time.monotonic() - start
        await batcher.stop()
        return elapsed

    elapsed = run(scenario())
    assert recorder.batches[:2] == [3, 3] and sum(recorder.batches) == 7
    assert elapsed < 1.5  # only the last, partial batch waited for company


def test_failed_batch_fails_only_its_requests():
    recorder = Recorder(delay=0.05)
    recorder.fail_when = 13.0

    async def scenario():
        batcher = TileBatcher(recorder, max_batch_size=2, max_wait_ms=20, workers=1)
        await batcher.start()
        good_before = asyncio.create_task(batcher.submit(tiles(1, 2), 5))
        await asyncio.sleep(0.01)
        bad = asyncio.create_task(batcher.submit(tiles(13, 2), 5))
        await asyncio.sleep(0.01)
        good_after = asyncio.create_task(batcher.submit(tiles(2, 2), 5))
        outcome = await asyncio.gather(good_before, bad, good_after, return_exceptions=True)
        await batcher.stop()
        return outcome

    before, bad, after = run(scenario())
    assert isinstance(bad, BatchFailed) and "poisoned tile" in str(bad)
    assert np.array_equal(before, tiles(1, 2) * 2) and np.array_equal(after, tiles(2, 2) * 2)


def test_full_queue_refuses_with_retry_after():
    recorder = Recorder(delay=0.2)

    async def scenario():
        batcher = TileBatcher(recorder, max_batch_size=1, max_wait_ms=0, workers=1, queue_limit=3)
        await batcher.start()
        first = asyncio.create_task(batcher.submit(tiles(1, 3), 5))
        await asyncio.sleep(0.05)  # one tile running, two queued
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(tiles(2, 2), 5)
        result = await first
        await batcher.stop()
        return refused.value, result

    refused, result = run(scenario())
    assert refused.retry_after >= 1
    assert np.array_equal(result, tiles(1, 3) * 2)


def test_deadline_drops_the_queued_tiles():
    recorder = Recorder(delay=0.1)

    async def scenario():
        batcher = TileBatcher(recorder, max_batch_size=1, max_wait_ms=0, workers=1)
        await batcher.start()
        with pytest.raises(DeadlineExceeded):
            await batcher.submit(tiles(1, 10), 0.15)
        await asyncio.sleep(0.3)
        pending = batcher.pending
        await batcher.stop()
        return pending

    assert run(scenario()) == 0
    assert sum(recorder.batches) < 10  # the tiles after the deadline never ran


def test_two_workers_run_batches_in_parallel():
    recorder = Recorder(delay=0.5)

    async def scenario():
        batcher = TileBatcher(recorder, max_batch_size=1, max_wait_ms=0, workers=2)
        await batcher.start()
        await asyncio.gather(batcher.submit(tiles(1), 30), batcher.submit(tiles(2), 30))
        await batcher.stop()

    run(scenario())
    assert recorder.batches == [1, 1] and recorder.peak == 2  # the two passes overlapped


def test_batches_hold_one_shape_and_respect_the_pixel_budget():
    shapes: list[tuple[int, ...]] = []

    def infer(batch: np.ndarray) -> np.ndarray:
        shapes.append(batch.shape)
        return batch * 2

    async def scenario():
        batcher = TileBatcher(infer, max_batch_size=8, max_wait_ms=50, workers=1, batch_pixels=64)
        await batcher.start()
        small = np.ones((4, 4, 4), dtype=np.float32)  # 16 px each: up to 4 per batch
        large = np.ones((2, 8, 8), dtype=np.float32) * 3  # 64 px each: one per batch
        out = await asyncio.gather(batcher.submit(small, 5), batcher.submit(large, 5))
        await batcher.stop()
        return out

    small_out, large_out = run(scenario())
    assert np.array_equal(small_out, np.full((4, 4, 4), 2.0))
    assert np.array_equal(large_out, np.full((2, 8, 8), 6.0))
    assert sorted(shapes) == [(1, 8, 8), (1, 8, 8), (4, 4, 4)]


def test_a_lone_tile_runs_at_once_when_nothing_is_announced():
    recorder = Recorder()

    async def scenario():
        batcher = TileBatcher(recorder, max_batch_size=8, max_wait_ms=5000, workers=1)
        await batcher.start()
        started = time.monotonic()
        await batcher.submit(tiles(1), 10)
        elapsed = time.monotonic() - started
        await batcher.stop()
        return elapsed

    assert run(scenario()) < 2.5  # nowhere near max_wait_ms: no company was on its way
    assert recorder.batches == [1]


def test_a_short_batch_waits_for_announced_images_and_not_for_withdrawn_ones():
    recorder = Recorder()

    async def scenario():
        batcher = TileBatcher(recorder, max_batch_size=8, max_wait_ms=5000, workers=1)
        await batcher.start()
        with batcher.announce(2) as announcement:  # two images are being decoded
            announcement.fulfil()
            first = asyncio.create_task(batcher.submit(tiles(1), 10))
            await asyncio.sleep(0.2)
            assert recorder.batches == []  # held back: another announced image is on its way
            announcement.fulfil()
            second = asyncio.create_task(batcher.submit(tiles(2), 10))
            outputs = await asyncio.gather(first, second)
        with batcher.announce(2) as announcement:
            announcement.fulfil()
            third = asyncio.create_task(batcher.submit(tiles(3), 10))
            await asyncio.sleep(0.2)
            assert recorder.batches == [2]  # third waits for the other announced image...
            started = time.monotonic()
        # ...which leaving the block withdraws (as when its request is refused or abandoned)
        await third
        waited = time.monotonic() - started
        await batcher.stop()
        return outputs, waited, batcher.expected

    outputs, waited, expected = run(scenario())
    assert np.array_equal(outputs[0], tiles(1) * 2) and np.array_equal(outputs[1], tiles(2) * 2)
    assert recorder.batches == [2, 1]
    assert waited < 2.5 and expected == 0


def test_a_request_that_cannot_finish_in_time_is_refused_at_once():
    recorder = Recorder(delay=0.1)  # 0.1 s per batch of one 4x4 tile
    refusals: list[str] = []

    async def scenario():
        batcher = TileBatcher(
            recorder, max_batch_size=1, max_wait_ms=0, workers=1, on_refusal=refusals.append
        )
        await batcher.start()
        await batcher.submit(tiles(0), 5)  # measured: the estimate now knows 0.1 s a tile
        backlog = asyncio.create_task(batcher.submit(tiles(1, 10), 30))  # ~1 s of work
        await asyncio.sleep(0.05)
        asked = time.monotonic()
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(tiles(2, 2), 0.5)  # needs ~1.1 s: cannot make 0.5 s
        waited = time.monotonic() - asked
        admitted = await batcher.submit(tiles(3, 2), 30)  # the same work with time to spare
        await backlog
        await batcher.stop()
        return refused.value, waited, admitted

    refused, waited, admitted = run(scenario())
    assert refused.cause == "expected_wait"
    assert waited < 0.5  # at once, not at the deadline
    assert refused.retry_after >= 1
    assert np.array_equal(admitted, tiles(3, 2) * 2)
    assert refusals == ["expected_wait"]


def test_an_idle_batcher_tries_any_request():
    async def scenario():
        batcher = TileBatcher(
            Recorder(), max_batch_size=4, max_wait_ms=0, workers=1, seconds_per_pixel=1.0
        )
        await batcher.start()
        result = await batcher.submit(tiles(1, 4), 0.5)  # "64 s" by the seed, but nothing ahead
        await batcher.stop()
        return result

    assert np.array_equal(run(scenario()), tiles(1, 4) * 2)


def test_the_estimate_follows_the_measured_batches():
    async def scenario():
        batcher = TileBatcher(
            Recorder(delay=0.05), max_batch_size=1, max_wait_ms=0, workers=1, seconds_per_pixel=1.0
        )
        await batcher.start()
        await batcher.submit(tiles(1, 3), 5)
        await batcher.stop()
        return batcher.throughput.seconds_per_pixel

    per_pixel = run(scenario())
    assert 0.04 / 16 < per_pixel < 1.0 / 16  # the 1 s seed gone after the first batch


def test_shutdown_cut_answers_unfinished_requests_and_refuses_new_ones():
    recorder = Recorder(delay=0.1)
    refusals: list[str] = []

    async def scenario():
        batcher = TileBatcher(
            recorder, max_batch_size=1, max_wait_ms=0, workers=1, on_refusal=refusals.append
        )
        await batcher.start()
        short = asyncio.create_task(batcher.submit(tiles(1), 30))
        await asyncio.sleep(0.01)
        long = asyncio.create_task(batcher.submit(tiles(2, 50), 30))  # ~5 s of work
        batcher.drain(1.0, retry_after_s=7.2)  # cut 0.5 s before the 1 s grace period ends
        finished = await short
        with pytest.raises(BatcherStopped) as cut:
            await long
        with pytest.raises(BatcherStopped):
            await batcher.submit(tiles(3), 30)
        await batcher.stop()
        return finished, cut.value

    finished, cut = run(scenario())
    assert np.array_equal(finished, tiles(1) * 2)
    assert cut.retry_after == 8 and "grace period of 1 s" in str(cut)
    assert sum(recorder.batches) < 20  # the cut tiles never ran
    assert refusals == ["shutdown", "shutdown"]
