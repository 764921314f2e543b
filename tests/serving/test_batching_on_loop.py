"""Batches gathered on the event loop (``BatchScheduler.run_async(..., gather_on_loop=True)``).

The loop runs a batch itself once an iteration enqueued nothing new, or the batch is full; only
when the signature is known to be quick and a batch thread's share of the parallelism is free;
``batch_timeout_micros`` still holds. Every case checks the values each caller gets back and
which thread ran each batch ("loop" or the batch thread).
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from serving.server.batching import GATHER_LIMIT_SECONDS, LOOP_BATCH_SECONDS, BatchScheduler
from serving.server.config import BatchingConfig
from serving.server.errors import Code, ServingError
from serving.server.servable import Signature
from tests.serving.test_server_batching import FakeServable

SERVABLE = FakeServable()  # one servable: tasks of one signature share a queue


class LoopSignature:
    """Doubles ``x``; records (runner, rows) per batch, where the runner is "loop" for the
    event-loop thread, else the thread's name; reports ``seconds`` as its run time
    (``last_run``, as ``Signature.run`` does); a batch of ``block_rows`` rows waits for
    ``release``."""

    name = "serving_default"
    ran_quickly = Signature.ran_quickly

    def __init__(self, seconds: float = 0.0001, block_rows: int = 0, known: bool = True):
        self.seconds = seconds
        self.block_rows = block_rows
        self.release = threading.Event()
        self.batches: list[tuple[str, int]] = []
        self.loop_thread: threading.Thread | None = None
        self.last_run = (1 << 30, seconds) if known else None
        self.running = self.most_running = 0  # batches running now, and at most at once
        self._count = threading.Lock()

    def run(self, inputs):
        x = inputs["x"]
        me = threading.current_thread()
        with self._count:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        self.batches.append(("loop" if me is self.loop_thread else me.name, len(x)))
        if len(x) == self.block_rows:
            assert self.release.wait(10)
        self.last_run = (max(x.size, (self.last_run or (0,))[0]), self.seconds)
        with self._count:
            self.running -= 1
        return {"y": 2 * x}


def _config(**kw) -> BatchingConfig:
    kw.setdefault("max_batch_size", 32)
    kw.setdefault("batch_timeout_micros", 0)
    kw.setdefault("num_batch_threads", 1)
    return BatchingConfig(**kw)


def _rows(value: float, rows: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.full((rows, 2), value, np.float32)}


def _on_a_loop(sched: BatchScheduler, sig: LoopSignature, scenario):
    """Runs ``scenario(gather)`` on a fresh event loop; ``gather(value, rows)`` awaits one
    gathered task and checks its result."""
    servable = SERVABLE

    async def gather(value, rows=1):
        out = await sched.run_async(servable, sig, _rows(value, rows), gather_on_loop=True)
        np.testing.assert_array_equal(out["y"], np.full((rows, 2), 2 * value, np.float32))
        return out

    async def main():
        sig.loop_thread = threading.current_thread()
        return await scenario(gather)

    try:
        return asyncio.run(main())
    finally:
        sched.stop()


def test_requests_of_one_iteration_run_as_one_batch_on_the_loop():
    sched, sig = BatchScheduler(_config()), LoopSignature()

    async def scenario(gather):
        await asyncio.gather(*(gather(i) for i in range(5)))
        await asyncio.gather(*(gather(10 + i) for i in range(3)))

    _on_a_loop(sched, sig, scenario)
    assert sig.batches == [("loop", 5), ("loop", 3)]
    assert (sched.batches_run, sched.tasks_run) == (2, 8)


def test_the_loop_waits_while_requests_keep_arriving():
    """Tasks enqueued over several iterations (one per iteration) still make one batch: the
    loop looks again after every iteration that enqueued one."""
    sched, sig = BatchScheduler(_config()), LoopSignature()

    async def scenario(gather):
        async def later(i):
            for _ in range(i):
                await asyncio.sleep(0)  # i loop iterations
            await gather(i)

        await asyncio.gather(*(later(i) for i in range(6)))

    _on_a_loop(sched, sig, scenario)
    assert sig.batches == [("loop", 6)]


def test_a_full_batch_runs_at_once_and_the_rest_follows():
    sched, sig = BatchScheduler(_config(max_batch_size=4)), LoopSignature()

    async def scenario(gather):
        await asyncio.gather(*(gather(i) for i in range(6)))

    _on_a_loop(sched, sig, scenario)
    assert sig.batches == [("loop", 4), ("loop", 2)]


def test_an_unknown_or_slow_signature_runs_on_the_batch_thread():
    sched = BatchScheduler(_config())
    unknown = LoopSignature(known=False)  # first batch: its time is unknown → thread

    async def twice(gather):
        await asyncio.gather(*(gather(i) for i in range(3)))
        await asyncio.gather(*(gather(i) for i in range(3)))  # now known to be quick → loop

    _on_a_loop(sched, unknown, twice)
    assert unknown.batches == [("deepline-batch-0", 3), ("loop", 3)]

    sched = BatchScheduler(_config())
    slow = LoopSignature(seconds=LOOP_BATCH_SECONDS * 1.5)
    _on_a_loop(sched, slow, twice)
    assert slow.batches == [("deepline-batch-0", 3)] * 2


def test_a_larger_batch_than_the_latest_run_goes_to_the_thread():
    sched, sig = BatchScheduler(_config()), LoopSignature()
    sig.last_run = (2 * 2, 0.0001)  # quick, at 2 rows of 2 values

    async def scenario(gather):
        await asyncio.gather(*(gather(i) for i in range(2)))
        await asyncio.gather(*(gather(i) for i in range(3)))  # 6 values: unknown → thread
        await asyncio.gather(*(gather(i) for i in range(3)))  # now known → loop

    _on_a_loop(sched, sig, scenario)
    assert sig.batches == [("loop", 2), ("deepline-batch-0", 3), ("loop", 3)]


def test_batch_timeout_still_holds_for_gathered_tasks():
    """A gathered batch that is not full waits for batch_timeout_micros, then runs; one that
    fills up runs before it."""
    timeout_s = 0.15
    sched = BatchScheduler(_config(max_batch_size=4, batch_timeout_micros=int(timeout_s * 1e6)))
    sig = LoopSignature()

    async def scenario(gather):
        start = time.monotonic()
        await asyncio.gather(gather(1), gather(2))
        waited = time.monotonic() - start
        start = time.monotonic()
        first = asyncio.ensure_future(asyncio.gather(gather(3), gather(4)))
        await asyncio.sleep(0.02)
        await asyncio.gather(gather(5), gather(6), first)  # the batch fills: runs at once
        return waited, time.monotonic() - start

    waited, filled = _on_a_loop(sched, sig, scenario)
    assert sig.batches == [("loop", 2), ("loop", 4)]
    assert timeout_s <= waited < timeout_s + 1.0
    assert filled < timeout_s


def test_a_loop_that_never_goes_quiet_runs_the_batch_after_the_gather_limit():
    """One new task every iteration, for longer than the gather limit: the first batch runs
    within about GATHER_LIMIT_SECONDS of its first task (batch_timeout_micros 0), not when the
    stream ends."""
    sched, sig = BatchScheduler(_config(max_batch_size=100_000)), LoopSignature()
    stream_s = 10 * GATHER_LIMIT_SECONDS

    async def scenario(gather):
        start = time.monotonic()
        first_done = []
        tasks = []
        while time.monotonic() - start < stream_s:
            tasks.append(asyncio.ensure_future(gather(len(tasks))))
            if not first_done and tasks[0].done():
                first_done.append(time.monotonic() - start)
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        return first_done

    first_done = _on_a_loop(sched, sig, scenario)
    assert first_done and GATHER_LIMIT_SECONDS <= first_done[0] < stream_s / 2
    assert len(sig.batches) >= 2 and all(r == "loop" for r, _ in sig.batches)


def test_a_busy_batch_thread_keeps_the_parallelism_and_then_takes_the_gathered_tasks():
    """num_batch_threads 1: while the thread runs a (blocking caller's) batch, the loop runs
    none; the thread takes the gathered tasks when it is done, merged with a blocking caller's
    task enqueued meanwhile."""
    sched, sig = BatchScheduler(_config()), LoopSignature(block_rows=7)
    servable = SERVABLE
    results = {}

    def blocking(key, value, rows):
        results[key] = sched.run(servable, sig, _rows(value, rows))

    async def scenario(gather):
        first = threading.Thread(target=blocking, args=("first", 1.0, 7))
        first.start()
        while not sig.batches:
            await asyncio.sleep(0.001)
        gathered = asyncio.ensure_future(asyncio.gather(gather(2.0), gather(3.0)))
        for _ in range(20):
            await asyncio.sleep(0)  # the loop looks, finds the only batch thread busy
        assert not gathered.done() and len(sig.batches) == 1
        second = threading.Thread(target=blocking, args=("second", 4.0, 1))
        second.start()
        await asyncio.sleep(0.05)
        sig.release.set()
        await gathered
        await asyncio.get_running_loop().run_in_executor(None, second.join, 10)
        first.join(10)

    _on_a_loop(sched, sig, scenario)
    assert sig.batches == [("deepline-batch-0", 7), ("deepline-batch-0", 3)]
    np.testing.assert_array_equal(results["first"]["y"], np.full((7, 2), 2.0))
    np.testing.assert_array_equal(results["second"]["y"], np.full((1, 2), 8.0))


def test_a_batch_on_the_loop_keeps_the_parallelism_from_the_batch_thread():
    """num_batch_threads 1: while the loop runs a batch, the batch thread runs none, even for a
    task whose timeout (0 here) has passed; that task runs once the loop's batch is over."""
    sched, sig = BatchScheduler(_config()), LoopSignature(block_rows=5)
    servable = SERVABLE
    results = {}

    enqueuing = threading.Event()

    def blocking():
        while not sig.batches:
            time.sleep(0.001)  # the loop's batch is running (and waits for release)
        enqueuing.set()
        results["blocking"] = sched.run(servable, sig, _rows(4.0, 2))

    def release_later():
        assert enqueuing.wait(10)
        time.sleep(0.2)  # time enough for a batch thread that ignored the share to start
        results["batches while the loop ran"] = list(sig.batches)
        sig.release.set()

    async def scenario(gather):
        helpers = [threading.Thread(target=blocking), threading.Thread(target=release_later)]
        for helper in helpers:
            helper.start()
        await gather(1.0, 5)  # runs on the loop, blocked until release_later sets release
        for helper in helpers:
            await asyncio.get_running_loop().run_in_executor(None, helper.join, 10)

    _on_a_loop(sched, sig, scenario)
    assert results["batches while the loop ran"] == [("loop", 5)]
    # then it runs on whichever runner looks first: the thread woken for the share, or the loop
    assert sig.batches[0] == ("loop", 5) and sig.batches[1][1] == 2 and len(sig.batches) == 2
    assert sig.batches[1][0] in ("loop", "deepline-batch-0")
    assert sig.most_running == 1
    np.testing.assert_array_equal(results["blocking"]["y"], np.full((2, 2), 8.0))


def test_gathered_and_thread_woken_tasks_merge():
    """A task that wakes the batch thread (gRPC's path) takes the gathered tasks already queued
    into its batch."""
    sched = BatchScheduler(_config(batch_timeout_micros=100_000))
    sig = LoopSignature()
    servable = SERVABLE

    async def scenario(gather):
        gathered = [asyncio.ensure_future(gather(i)) for i in range(3)]
        woken = asyncio.ensure_future(sched.run_async(servable, sig, _rows(9.0)))
        await asyncio.gather(*gathered)
        out = await woken
        np.testing.assert_array_equal(out["y"], np.full((1, 2), 18.0))

    _on_a_loop(sched, sig, scenario)
    assert [rows for _, rows in sig.batches] == [4]


def test_stop_answers_gathered_tasks_and_oversized_tasks_are_refused():
    sched = BatchScheduler(_config(max_batch_size=4, batch_timeout_micros=10_000_000))
    sig = LoopSignature()

    async def scenario(gather):
        with pytest.raises(ServingError) as too_big:
            await gather(1.0, rows=5)
        assert too_big.value.code is Code.INVALID_ARGUMENT
        pending = asyncio.ensure_future(gather(2.0))
        await asyncio.sleep(0.01)
        await asyncio.get_running_loop().run_in_executor(None, sched.stop)
        with pytest.raises(ServingError) as stopped:
            await pending
        return stopped.value.code

    assert _on_a_loop(sched, sig, scenario) is Code.UNAVAILABLE
    assert sig.batches == []


def test_errors_reach_every_gathered_caller():
    sched = BatchScheduler(_config())

    class Failing(LoopSignature):
        def run(self, inputs):
            super().run(inputs)
            raise ValueError("boom")

    sig = Failing()

    async def scenario(gather):
        return await asyncio.gather(*(gather(i) for i in range(3)), return_exceptions=True)

    errors = _on_a_loop(sched, sig, scenario)
    assert [type(e) for e in errors] == [ServingError] * 3
    assert all("boom" in e.message for e in errors)
    assert sig.batches == [("loop", 3)]


def test_a_batch_handed_to_the_thread_takes_its_share_at_once():
    """num_batch_threads 1: the loop hands a batch it does not know to be quick to the thread;
    the next batch, quick as it is, waits for that share instead of running beside it."""
    sched = BatchScheduler(_config(max_batch_size=3))
    sig = LoopSignature(block_rows=3)
    sig.last_run = (2 * 2, 0.0001)  # quick at 2 rows; 3 rows are unknown

    async def scenario(gather):
        pending = asyncio.ensure_future(asyncio.gather(*(gather(i) for i in range(5))))
        deadline = time.monotonic() + 10
        while not sig.batches and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        for _ in range(20):
            await asyncio.sleep(0)  # the loop looks again: the only share is taken
        assert len(sig.batches) == 1 and not pending.done()  # the thread holds the 3 rows
        sig.release.set()
        await pending

    _on_a_loop(sched, sig, scenario)
    assert sig.batches == [("deepline-batch-0", 3), ("deepline-batch-0", 2)]


def test_a_failed_look_leaves_the_next_task_to_schedule_one():
    sched, sig = BatchScheduler(_config()), LoopSignature()
    real, calls = sched._loop_batch, []

    def fails_once(loop, quiet):
        calls.append(quiet)
        if len(calls) == 1:
            raise RuntimeError("the look failed")
        return real(loop, quiet)

    sched._loop_batch = fails_once

    async def scenario(gather):
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: None)
        first = asyncio.ensure_future(gather(1.0))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not first.done()  # its look failed: it waits for the next one
        await asyncio.wait_for(asyncio.gather(first, gather(2.0)), 5)

    _on_a_loop(sched, sig, scenario)
    assert sig.batches == [("loop", 2)]
