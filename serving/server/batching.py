"""Server-side dynamic batching with TF Serving's ``BatchingParameters``.

Each (servable version, signature) has a queue of tasks (one task = one request's inputs, batch
size = their 0th dimension). ``num_batch_threads`` workers share all queues. A worker takes the
oldest queue whose head batch is ready — it holds ``max_batch_size`` rows, or its first task has
waited ``batch_timeout_micros`` — then merges the compatible tasks (same inputs, dtypes and
non-batch dimensions) up to ``max_batch_size`` rows, concatenates along axis 0, pads to the next
``allowed_batch_sizes`` entry by repeating the first row, runs the signature once, and hands each
task its slice of every output.

- A task larger than ``max_batch_size`` → INVALID_ARGUMENT.
- Enqueuing beyond ``max_enqueued_batches`` full batches → UNAVAILABLE ("queue is full"), so an
  overloaded server sheds load instead of growing latency without bound.
- A caller that gives up (deadline) marks its task cancelled; it is skipped, not run.
- Callers either block (:meth:`BatchScheduler.run`, a thread per request) or await
  (:meth:`BatchScheduler.run_async`, from an event loop): a finished batch resolves the awaiting
  callers' futures with one ``call_soon_threadsafe`` per loop, not one wake-up per request.
- ``gather_on_loop=True`` (the REST front ends and the native gRPC one, whose requests reach the
  event loop in bursts or on sockets it reads itself): the task does not wake a batch thread.
  The loop runs the batch itself once it has read every request that already arrived — an
  iteration of the loop enqueued nothing new — or the batch is full, and only when a batch
  thread's share of the ``num_batch_threads`` parallelism is free and the signature's latest
  run, on at least as many values, took at most ``LOOP_BATCH_SECONDS``; otherwise a batch thread
  runs it. At most ``num_batch_threads`` batches run at once, the loop's included: a batch
  thread waits while loops hold every share, so a batch that times out meanwhile runs after the
  loop's, not beside it. ``batch_timeout_micros`` still holds: a batch that is not full waits
  for its timeout, and a loop that keeps reading new requests holds a batch at most
  ``GATHER_LIMIT_SECONDS`` beyond it. Requests from other sources (grpcio's gRPC server,
  blocking callers) wake a batch thread as before and share the same queues and batches. On a
  2-core machine this makes fuller batches and keeps the model call from sharing the cores and
  the GIL with the loop (serving/README.md: LeNet-5 at 32 REST clients ran batches of 32
  instead of 13–15, and answered 9–83 % more requests in five side-by-side rounds of six).
- ``stop`` answers every queued task UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time

import numpy as np

from serving.server.config import BatchingConfig
from serving.server.errors import Code, ServingError, from_exception, invalid_argument, unavailable
from serving.server.metrics import Metrics
from serving.server.servable import input_values

# A batch gathered on the event loop runs there when the signature's latest run, on at least as
# many input values, took at most LOOP_BATCH_SECONDS: the loop, and every request it serves,
# waits that long.
LOOP_BATCH_SECONDS = 0.010
# A loop that keeps reading new requests holds a batch that is not full at most this long after
# its first task's timeout (batch_timeout_micros), then runs it.
GATHER_LIMIT_SECONDS = 0.010


class _Task:
    __slots__ = ("inputs", "size", "key", "enqueued", "done", "future", "result", "error",
                 "cancelled", "requests")

    def __init__(self, inputs: dict[str, np.ndarray], size: int, key, future=None,
                 requests: int = 1):
        self.inputs = inputs
        self.size = size
        self.requests = requests  # the clients' requests merged into this task
        self.key = key
        self.enqueued = time.monotonic()
        self.future: asyncio.Future | None = future  # awaiting caller, else a blocking one:
        self.done = threading.Event() if future is None else None
        self.result: dict[str, np.ndarray] | None = None
        self.error: ServingError | None = None
        self.cancelled = False


def _resolve(tasks: list[_Task]) -> None:
    """On the callers' event loop: hand each awaiting task its result or error."""
    for t in tasks:
        if not t.future.done():
            if t.error is not None:
                t.future.set_exception(t.error)
            else:
                t.future.set_result(t.result)


def _deadline_exceeded() -> ServingError:
    return ServingError(Code.DEADLINE_EXCEEDED,
                        "Deadline exceeded while waiting for the batch to run")


class _Queue:
    def __init__(self, servable, signature):
        self.servable = servable
        self.signature = signature
        self.tasks: collections.deque[_Task] = collections.deque()
        self.rows = 0


class BatchScheduler:
    """Merges concurrent ``run`` calls per (servable, signature) into batched executions."""

    def __init__(self, config: BatchingConfig, metrics: Metrics | None = None):
        self.config = config
        self.metrics = metrics
        self._queues: dict[tuple[int, str], _Queue] = {}
        self._cond = threading.Condition()
        self._stopped = False
        self._active = 0  # batches running or handed to a thread (threads and event loops)
        self._handed: collections.deque = collections.deque()  # (queue, tasks) for a thread
        self._gatherer: _LoopGatherer | None = None  # of the latest gather_on_loop caller
        self._deferred = False  # a loop left a ready batch to the threads (all were busy)
        self._share_waiters = 0  # batch threads waiting for a share that loops hold
        self.batches_run = 0
        self.tasks_run = 0
        self._threads = [threading.Thread(target=self._worker, name=f"deepline-batch-{i}",
                                          daemon=True) for i in range(config.threads)]
        for t in self._threads:
            t.start()

    # -- caller side ------------------------------------------------------------------------------
    def run(self, servable, signature, inputs: dict[str, np.ndarray],
            timeout_s: float | None = None) -> dict[str, np.ndarray]:
        """Enqueue and block until the batch holding these inputs has run."""
        task = self._enqueue(servable, signature, inputs, None)
        if not task.done.wait(timeout_s):
            task.cancelled = True
            if not task.done.is_set():
                raise _deadline_exceeded()
        if task.error is not None:
            raise task.error
        return task.result

    async def run_async(self, servable, signature, inputs: dict[str, np.ndarray],
                        timeout_s: float | None = None,
                        gather_on_loop: bool = False, requests: int = 1) -> dict[str, np.ndarray]:
        """:meth:`run` for a coroutine: awaits the batch without blocking the event loop while
        other requests arrive; with ``gather_on_loop``, the loop may run the batch itself once
        it has read them (see the module docstring). ``requests``: how many clients' requests
        ``inputs`` holds, merged along the 0th dimension (for the batching metrics)."""
        loop = asyncio.get_running_loop()
        task = self._enqueue(servable, signature, inputs, loop.create_future(),
                             notify=not gather_on_loop, requests=requests)
        if gather_on_loop:
            gatherer = self._gatherer
            if gatherer is None or gatherer.loop is not loop:
                # (another loop's gatherer still runs the looks it has scheduled)
                gatherer = self._gatherer = _LoopGatherer(self, loop)
            gatherer.arrived()
        timer = None
        if timeout_s is not None:
            def expire():
                if not task.future.done():
                    task.cancelled = True
                    task.future.set_exception(_deadline_exceeded())

            timer = loop.call_later(timeout_s, expire)
        try:
            return await task.future
        except asyncio.CancelledError:
            task.cancelled = True  # the caller went away: skip the task
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def merge_ranges(self, rows) -> list[tuple[int, int]]:
        """[first, last) ranges of consecutive requests, of ``rows[k]`` rows each, that one task
        can merge: up to ``max_batch_size`` rows together (a larger request stays alone, and
        its task is refused when enqueued)."""
        limit = self.config.max_batch_size
        ranges, first, size = [], 0, 0
        for k, n in enumerate(rows):
            if k > first and size + n > limit:
                ranges.append((first, k))
                first, size = k, 0
            size += n
        ranges.append((first, len(rows)))
        return ranges

    def _enqueue(self, servable, signature, inputs: dict[str, np.ndarray], future,
                 notify: bool = True, requests: int = 1) -> _Task:
        size = None
        for alias, arr in inputs.items():
            if arr.ndim == 0:
                raise invalid_argument("Batching session Run() input tensors must have at least "
                                       f"one dimension (input '{alias}' is a scalar)")
            if size is None:
                size = arr.shape[0]
            elif arr.shape[0] != size:
                raise invalid_argument("Batching session Run() input tensors must have equal "
                                       "0th-dimension size")
        size = size or 0
        max_size = self.config.max_batch_size
        if size > max_size:
            raise invalid_argument(
                f"Task size {size} is larger than maximum input batch size {max_size}")
        key = tuple((a, x.dtype.str, x.shape[1:]) for a, x in sorted(inputs.items()))
        task = _Task(inputs, size, key, future, requests)
        qkey = (id(servable), signature.name)
        with self._cond:
            if self._stopped:
                raise unavailable("The batch scheduler is shutting down")
            q = self._queues.get(qkey)
            if q is None or q.servable is not servable:
                q = self._queues[qkey] = _Queue(servable, signature)
            limit = self.config.max_enqueued_batches * max_size
            if q.rows + size > limit:
                raise unavailable("The batch scheduling queue to which this task was submitted "
                                  "is full")
            q.tasks.append(task)
            q.rows += size
            if notify:
                self._cond.notify()
        return task

    def drop(self, servable) -> None:
        """Forget the queues of an unloaded servable (pending tasks still complete)."""
        with self._cond:
            for key in [k for k, q in self._queues.items() if q.servable is servable]:
                if not self._queues[key].tasks:
                    del self._queues[key]

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            pending = [t for q in self._queues.values() for t in q.tasks]
            pending += [t for _, tasks in self._handed for t in tasks]
            self._handed.clear()
            for q in self._queues.values():
                q.tasks.clear()
                q.rows = 0
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=5)
        err = unavailable("The batch scheduler is shutting down")
        for t in pending:
            t.error = err
        self._finish(pending)

    @staticmethod
    def _finish(tasks: list[_Task], on_loop=None) -> None:
        """Wake blocking callers; resolve awaiting ones with one callback per event loop, or
        directly for those of ``on_loop``, the loop this runs on."""
        by_loop: dict = {}
        for t in tasks:
            if t.future is None:
                t.done.set()
            else:
                by_loop.setdefault(t.future.get_loop(), []).append(t)
        for loop, waiting in by_loop.items():
            if loop is on_loop:
                _resolve(waiting)
                continue
            try:
                loop.call_soon_threadsafe(_resolve, waiting)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

    # -- worker side -----------------------------------------------------------------------------
    def _ready_queue(self, now: float, extra_wait_s: float = 0.0):
        """(the oldest queue whose head batch is ready, else None; the earliest time another
        becomes ready by its timeout, else None). Call with ``_cond`` held. A queue is ready when
        it holds ``max_batch_size`` rows or its first task has waited ``batch_timeout_micros``
        plus ``extra_wait_s``."""
        timeout = self.config.batch_timeout_micros / 1e6 + extra_wait_s
        max_size = self.config.max_batch_size
        ready, wake = None, None
        for q in self._queues.values():
            while q.tasks and q.tasks[0].cancelled:
                q.rows -= q.tasks.popleft().size
            if not q.tasks:
                continue
            due = q.tasks[0].enqueued + timeout
            if q.rows >= max_size or now >= due:
                if ready is None or q.tasks[0].enqueued < ready.tasks[0].enqueued:
                    ready = q
            else:
                wake = due if wake is None else min(wake, due)
        return ready, wake

    def _next_batch(self):
        with self._cond:
            while True:
                if self._stopped:
                    return None
                if self._handed:
                    return self._handed.popleft()  # counted in _active when handed
                if self._active >= len(self._threads):  # loops run batches on every share
                    self._share_waiters += 1
                    try:
                        self._cond.wait()  # (_release_share wakes a share waiter)
                    finally:
                        self._share_waiters -= 1
                    continue
                now = time.monotonic()
                ready, wake = self._ready_queue(now)
                if ready is not None:
                    self._active += 1
                    return ready, self._take(ready, self.config.max_batch_size)
                self._cond.wait(None if wake is None else max(wake - now, 0.0))

    def _loop_batch(self, loop, quiet: bool):
        """On ``loop``: run one ready batch there or hand it to a batch thread (see the module
        docstring). ``quiet``: the loop's latest iteration enqueued nothing. Returns when to
        look again: 0 (at once), seconds from now, or None (nothing is waiting)."""
        max_size = self.config.max_batch_size
        with self._cond:
            if self._stopped:
                return None
            now = time.monotonic()
            ready, wake = self._ready_queue(now, 0.0 if quiet else GATHER_LIMIT_SECONDS)
            if ready is None:
                if not quiet:
                    return 0  # more requests may be arriving: look again next iteration
                return None if wake is None else wake - now
            if self._active >= len(self._threads):
                self._deferred = True  # the batch's next free runner takes it
                return None
            tasks = self._take(ready, max_size)
            if not tasks:
                return 0
            values = sum(input_values(t.inputs) for t in tasks)
            self._active += 1  # this batch takes a share now, on the loop or a thread
            if not ready.signature.ran_quickly(values, LOOP_BATCH_SECONDS):
                self._handed.append((ready, tasks))
                self._cond.notify()
                return 0
        self._process(ready, tasks, on_loop=loop)  # (it releases the share)
        return 0

    @staticmethod
    def _take(q: _Queue, max_size: int) -> list[_Task]:
        key = q.tasks[0].key
        taken, rows, keep = [], 0, collections.deque()
        while q.tasks:
            t = q.tasks.popleft()
            if t.cancelled:
                q.rows -= t.size
                continue
            if t.key == key and rows + t.size <= max_size:
                taken.append(t)
                rows += t.size
                q.rows -= t.size
            else:
                keep.append(t)
                if rows >= max_size:
                    break
        keep.extend(q.tasks)
        q.tasks = keep
        return taken

    def _padded_size(self, rows: int) -> int:
        for s in self.config.allowed_batch_sizes:
            if s >= rows:
                return s
        return rows

    def _worker(self) -> None:
        while True:
            item = self._next_batch()
            if item is None:
                return
            q, tasks = item
            if tasks:
                self._process(q, tasks)  # (it releases the share)
            else:
                self._release_share(on_loop=None)

    def _release_share(self, on_loop) -> None:
        """A batch's model call is over: its share of the parallelism is free, before its
        answers go out (so the next batch, which those answers may bring, finds it free)."""
        with self._cond:
            self._active -= 1
            wake = self._share_waiters or (on_loop is not None and self._deferred)
            self._deferred = False  # the next runner (this thread, or one woken here) looks
            if wake:  # a thread waits for a share, or a loop left a ready batch to the threads
                self._cond.notify()

    def _process(self, q: _Queue, tasks: list[_Task], on_loop=None) -> None:
        try:
            rows = sum(t.size for t in tasks)
            padded = self._padded_size(rows)
            merged = {}
            for alias in tasks[0].inputs:
                parts = [t.inputs[alias] for t in tasks]
                if padded > rows:
                    first = parts[0][:1]
                    parts.append(np.repeat(first, padded - rows, axis=0))
                merged[alias] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
            outputs = q.signature.run(merged)
            for name, value in outputs.items():
                if value.ndim == 0:
                    raise ServingError(Code.FAILED_PRECONDITION,
                                       f"Batched output tensor '{name}' has 0 dimensions")
                if value.shape[0] != padded:
                    raise ServingError(
                        Code.FAILED_PRECONDITION,
                        f"Batched output tensor's 0th dimension does not equal the sum of the 0th "
                        f"dimension sizes of the input tensors (output '{name}': "
                        f"{value.shape[0]} vs {padded})")
            start = 0
            for t in tasks:
                t.result = {k: v[start:start + t.size] for k, v in outputs.items()}
                start += t.size
        except Exception as exc:  # noqa: BLE001 - every task must be answered
            err = from_exception(exc)
            for t in tasks:
                t.error = err
        finally:
            self._release_share(on_loop)
            self.batches_run += 1
            self.tasks_run += len(tasks)
            if self.metrics is not None:
                self.metrics.batch_size.observe(self._padded_size(sum(t.size for t in tasks)),
                                                q.servable.name)
                self.metrics.batched_requests.inc(q.servable.name,
                                                  amount=sum(t.requests for t in tasks))
            self._finish(tasks, on_loop)


class _LoopGatherer:
    """Runs the batches of one event loop's ``gather_on_loop`` tasks once that loop has read
    the requests that already arrived: every task enqueued schedules a look one iteration
    later; a look that follows an iteration with new tasks looks again one iteration later."""

    def __init__(self, scheduler: BatchScheduler, loop: asyncio.AbstractEventLoop):
        self.scheduler = scheduler
        self.loop = loop
        self.fresh = False  # a task arrived since the latest look
        self.pending: asyncio.Handle | asyncio.TimerHandle | None = None

    def arrived(self) -> None:
        self.fresh = True
        if self.pending is None:
            self.pending = self.loop.call_soon(self.look)
        elif isinstance(self.pending, asyncio.TimerHandle):
            self.pending.cancel()  # a new task may fill the batch before the timer
            self.pending = self.loop.call_soon(self.look)

    def look(self) -> None:
        self.pending = None  # (so a failed look leaves the next task to schedule one)
        quiet, self.fresh = not self.fresh, False
        again = self.scheduler._loop_batch(self.loop, quiet)
        if again is not None:
            self.pending = (self.loop.call_soon(self.look) if again <= 0
                            else self.loop.call_later(again, self.look))
